"""A short-lived cache of serving states, for readers on a hot path (the gateway's routing).

A promotion is visible to readers within ``ttl`` seconds; within that window a lookup costs a
dictionary read instead of a registry round trip (2.5-6 ms).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from registry.serving_state import ServingState
from registry.types import Stage


class ServingStateCache:
    """``read(name)`` through a per-model cache that expires after ``ttl`` seconds."""

    def __init__(
        self,
        read: Callable[[str], ServingState],
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, ServingState]] = {}
        self._lock = threading.Lock()

    def state(self, name: str) -> ServingState:
        """The model's serving state, at most ``ttl`` seconds old. Raises what ``read`` raises."""
        now = self._clock()
        cached = self._entries.get(name)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        fresh = self._read(name)
        with self._lock:
            self._entries[name] = (now, fresh)
        return fresh

    def resolve(self, name: str, alias: str) -> int | None:
        """The version holding ``alias`` (champion, canary or shadow), or None."""
        return self.state(name).holder(Stage(alias))

    def invalidate(self, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self._entries.clear()
            else:
                self._entries.pop(name, None)
