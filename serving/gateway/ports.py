"""What the gateway's request path needs from its collaborators, as small typed ports.

The ASGI app (``app.py``) is written against these; ``keys.py``, ``ratelimit.py`` and
``log_writer.py`` implement them (SQL, in-process and Redis), and tests may pass their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from monitoring.inference_log import FeedbackRecord, InferenceRecord


@dataclass(frozen=True)
class ApiKey:
    """An authenticated caller. ``scopes`` None means every model (admin keys)."""

    key_id: str
    name: str
    scopes: frozenset[str] | None
    admin: bool = False
    rate_per_second: float | None = None  # None: not limited

    def allows(self, model: str) -> bool:
        return self.admin or self.scopes is None or model in self.scopes


class KeyStore(Protocol):
    async def authenticate(self, presented: str) -> ApiKey | None:
        """The key matching ``presented`` (hash compared in constant time), None if unknown or
        revoked. Never logs ``presented``."""
        ...


@dataclass(frozen=True)
class LimitDecision:
    allowed: bool
    retry_after_s: float = 0.0
    remaining: float = 0.0


class RateLimiter(Protocol):
    async def acquire(self, bucket: str, rate_per_second: float, burst: float) -> LimitDecision:
        """Take one token from ``bucket`` (token bucket refilled at ``rate_per_second`` up to
        ``burst``). Raises ``LimiterUnavailable`` when its backing store cannot be reached."""
        ...


class InferenceLog(Protocol):
    async def write(self, record: InferenceRecord) -> None:
        """Queue a record; waits (backpressure) when the bounded queue is full, never drops."""
        ...

    async def write_feedback(self, record: FeedbackRecord) -> None: ...

    async def close(self) -> None:
        """Flush everything queued, then stop."""
        ...
