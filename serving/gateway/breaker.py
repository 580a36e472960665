"""A circuit breaker per upstream: a state machine over an injected clock, no I/O.

closed --(``failure_threshold`` failures in a row)--> open --(``cooldown_s`` later, one request
let through as a probe)--> half-open --(probe succeeds)--> closed, or --(probe fails)--> open.

While open, the gateway skips the upstream at once and goes to the next in its fallback order,
instead of spending the caller's time budget on retries against a server that keeps failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from enum import StrEnum
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Gauge values for the metrics: 0 healthy, 1 probing, 2 cut off.
STATE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


class CircuitBreaker:
    """The breaker of one upstream. Not thread-safe: the gateway uses it from one event loop."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Raises ``ValueError`` for a threshold under 1 or a negative cooldown."""
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if cooldown_s < 0:
            raise ValueError(f"cooldown_s must not be negative, got {cooldown_s}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._since = 0.0  # when it opened, or when the current probe was let through

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def failures(self) -> int:
        """Failures in a row since the last success."""
        return self._failures

    def allow(self) -> bool:
        """Whether a request may go to the upstream now.

        Once the cooldown has passed, an open breaker lets exactly one request through (the
        probe) and turns half-open; further requests are refused until the probe reports. A
        probe that never reports (its request was cancelled) is replaced after another cooldown.
        """
        if self._state is CircuitState.CLOSED:
            return True
        now = self._clock()
        if now - self._since < self.cooldown_s:
            return False
        self._state = CircuitState.HALF_OPEN
        self._since = now
        return True

    def record_success(self) -> None:
        """The upstream answered (any status under 500): close."""
        self._state = CircuitState.CLOSED
        self._failures = 0

    def record_failure(self) -> None:
        """The upstream failed (connection error, timeout, 5xx): count, and open at the
        threshold; a failed probe opens again for another cooldown."""
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN or (
            self._state is CircuitState.CLOSED and self._failures >= self.failure_threshold
        ):
            self._state = CircuitState.OPEN
            self._since = self._clock()


class BreakerBoard(Generic[K]):
    """One breaker per upstream key, made on first use with the same settings."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._breakers: dict[K, CircuitBreaker] = {}

    def get(self, key: K) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(
                failure_threshold=self.failure_threshold,
                cooldown_s=self.cooldown_s,
                clock=self._clock,
            )
            self._breakers[key] = breaker
        return breaker

    def states(self) -> dict[K, CircuitState]:
        """Every known upstream's state (for the metrics)."""
        return {key: breaker.state for key, breaker in self._breakers.items()}

    def forget_except(self, keep: set[K]) -> None:
        """Drop the breakers of upstreams no longer routed to, so the board does not grow."""
        for key in [k for k in self._breakers if k not in keep]:
            del self._breakers[key]
