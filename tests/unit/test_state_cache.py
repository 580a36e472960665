from __future__ import annotations

from registry.serving_state import ServingState
from registry.state_cache import ServingStateCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reads_once_per_ttl_and_sees_changes_after_it() -> None:
    reads: list[str] = []
    champion = {"m": 1}

    def read(name: str) -> ServingState:
        reads.append(name)
        return ServingState(name, champion=champion[name])

    clock = Clock()
    cache = ServingStateCache(read, ttl=2.0, clock=clock)
    assert cache.resolve("m", "champion") == 1
    champion["m"] = 2
    clock.now = 1.9
    assert cache.resolve("m", "champion") == 1 and reads == ["m"]
    clock.now = 2.1
    assert cache.resolve("m", "champion") == 2 and reads == ["m", "m"]
    assert cache.resolve("m", "canary") is None


def test_invalidate_forces_a_fresh_read() -> None:
    reads: list[str] = []
    cache = ServingStateCache(lambda n: reads.append(n) or ServingState(n), clock=Clock())
    cache.state("a")
    cache.invalidate("a")
    cache.state("a")
    cache.invalidate()
    cache.state("a")
    assert reads == ["a", "a", "a"]
