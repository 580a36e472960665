"""The response cache: canonical inputs, keys per model version, LRU bounds, tiers."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from typing import Any

from serving.gateway.cache import (
    CachePolicy,
    LruCache,
    TieredCache,
    cache_key,
    canonical_input,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_canonical_input_ignores_key_order_and_whitespace() -> None:
    a = {"dataframe_records": [{"b": 1, "a": "x"}]}
    b = {"dataframe_records": [{"a": "x", "b": 1}]}
    assert canonical_input(a) == canonical_input(b) == b'{"dataframe_records":[{"a":"x","b":1}]}'


def test_canonical_input_tells_values_apart() -> None:
    base = {"inputs": {"a": [1, 2]}}
    assert canonical_input(base) != canonical_input({"inputs": {"a": [2, 1]}})
    assert canonical_input({"inputs": {"a": 1}}) != canonical_input({"inputs": {"a": 1.5}})
    # NaN is what some MLflow clients send for a missing value; it must not collide with null.
    assert canonical_input({"a": math.nan}) != canonical_input({"a": None})


def test_key_changes_with_model_and_version() -> None:
    canonical = canonical_input({"inputs": {"a": 1}})
    keys = {
        cache_key("m", 1, canonical),
        cache_key("m", 2, canonical),
        cache_key("n", 1, canonical),
    }
    assert len(keys) == 3, "a promotion (new version) must never hit the old version's answers"


def test_lru_evicts_the_least_recently_used() -> None:
    async def scenario() -> None:
        cache = LruCache(max_entries=2)
        await cache.set("a", b"1")
        await cache.set("b", b"2")
        assert await cache.get("a") == b"1"  # a is now the most recent
        await cache.set("c", b"3")
        assert await cache.get("b") is None
        assert await cache.get("a") == b"1" and await cache.get("c") == b"3"
        assert len(cache) == 2

    run(scenario())


def test_lru_bounds_bytes_and_skips_oversized_answers() -> None:
    async def scenario() -> None:
        cache = LruCache(max_entries=100, max_bytes=10)
        await cache.set("big", b"x" * 11)
        assert await cache.get("big") is None
        await cache.set("a", b"12345")
        await cache.set("b", b"12345")
        await cache.set("c", b"1")
        assert await cache.get("a") is None and await cache.get("c") == b"1"

    run(scenario())


def test_lru_entries_expire_after_ttl() -> None:
    async def scenario() -> None:
        clock = Clock()
        cache = LruCache(ttl_s=10, clock=clock)
        await cache.set("a", b"1")
        clock.now = 9.9
        assert await cache.get("a") == b"1"
        clock.now = 10.1
        assert await cache.get("a") is None and len(cache) == 0

    run(scenario())


def test_tiered_cache_fills_the_local_tier_from_the_remote() -> None:
    async def scenario() -> None:
        local, remote = LruCache(), LruCache()
        tiered = TieredCache(local, remote)
        await remote.set("k", b"answer")
        assert await tiered.get("k") == b"answer"
        assert await local.get("k") == b"answer"
        await tiered.set("j", b"2")
        assert await remote.get("j") == b"2" and await local.get("j") == b"2"

    run(scenario())


def test_policy_names_models_or_all() -> None:
    assert not CachePolicy().caches("m")
    assert CachePolicy.parse(["a", " b ", ""]).caches("b")
    assert not CachePolicy.parse(["a"]).caches("b")
    assert CachePolicy.parse(["*"]).caches("anything")
