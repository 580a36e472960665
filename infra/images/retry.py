"""When a registry call is worth trying again, and how long to wait first: pure, no I/O.

Registries behind load balancers answer 429, 502, 503 or 504 under load, and uploads of big
layers meet dropped connections; containerd and go-containerregistry retry those with a growing
back-off. Anything else (a 4xx naming a problem, a refused digest) fails at once: trying again
would only hide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 408 Request Timeout and 500 are included because registries (ECR, Artifact Registry) answer
# them for timeouts of their own storage back-ends.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the waits between them double from ``first_delay_s`` up to
    ``max_delay_s``. A registry's ``Retry-After`` lengthens a wait, never past ``max_delay_s``.

    No jitter: one client pushes one image, so there is no herd of clients to spread out, and
    fixed waits keep a push's duration predictable.
    """

    attempts: int = 4
    first_delay_s: float = 0.5
    max_delay_s: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be at least 1, got {self.attempts}")
        if self.first_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError(
                f"retry delays must not be negative, got first={self.first_delay_s} "
                f"max={self.max_delay_s}"
            )

    def delay(self, failed_attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after try number ``failed_attempt`` (1-based) failed."""
        backoff = min(self.max_delay_s, self.first_delay_s * 2 ** (failed_attempt - 1))
        if retry_after_s is None:
            return backoff
        return min(self.max_delay_s, max(backoff, retry_after_s))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """The seconds a ``Retry-After`` header asks for: delta-seconds or an HTTP date (RFC 9110
    §10.2.3); None when absent or unreadable (then the back-off alone decides)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


DEFAULT_RETRY = RetryPolicy()
