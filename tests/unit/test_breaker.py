"""The circuit breaker's state machine, on a clock the test moves."""

from __future__ import annotations

import pytest

from serving.gateway.breaker import BreakerBoard, CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, threshold: int = 3, cooldown: float = 5.0) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, cooldown_s=cooldown, clock=clock)


def test_opens_after_threshold_failures_in_a_row() -> None:
    b = breaker(Clock())
    for _ in range(2):
        b.record_failure()
        assert b.state is CircuitState.CLOSED and b.allow()
    b.record_failure()
    assert b.state is CircuitState.OPEN
    assert not b.allow()


def test_a_success_resets_the_count() -> None:
    b = breaker(Clock())
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state is CircuitState.CLOSED and b.failures == 2


def test_after_cooldown_exactly_one_probe_goes_through() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.2
    assert b.allow()
    assert b.state is CircuitState.HALF_OPEN
    assert not b.allow(), "a second request while the probe is out must be refused"


def test_a_successful_probe_closes() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 5
    assert b.allow()
    b.record_success()
    assert b.state is CircuitState.CLOSED and b.allow() and b.failures == 0


def test_a_failed_probe_opens_for_another_cooldown() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 5
    assert b.allow()
    b.record_failure()
    assert b.state is CircuitState.OPEN
    clock.now += 4
    assert not b.allow()
    clock.now += 1
    assert b.allow()


def test_a_probe_that_never_reports_is_replaced_after_a_cooldown() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 5
    assert b.allow()  # this probe's request is cancelled: no success, no failure
    clock.now += 5
    assert b.allow()


def test_threshold_of_one_opens_on_the_first_failure() -> None:
    b = breaker(Clock(), threshold=1)
    b.record_failure()
    assert b.state is CircuitState.OPEN


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold must be at least 1, got 0"),
        ({"cooldown_s": -1.0}, "cooldown_s must not be negative, got -1.0"),
    ],
)
def test_refuses_nonsense_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_board_keeps_one_breaker_per_upstream_and_forgets_the_rest() -> None:
    board: BreakerBoard[str] = BreakerBoard(failure_threshold=1, clock=Clock())
    board.get("a").record_failure()
    assert board.get("a") is board.get("a")
    assert board.states() == {"a": CircuitState.OPEN}
    board.get("b")
    board.forget_except({"b"})
    assert board.states() == {"b": CircuitState.CLOSED}
