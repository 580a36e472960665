"""Token-bucket rate limits: in-process by default, in Redis when several gateways share them.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_second``; each request takes one.
A new bucket starts full. An idle bucket refills to full, so a bucket nobody used for
``burst / rate`` seconds is the same as no bucket: both limiters forget it then (eviction in
process, key expiry in Redis) without changing any decision.

With Redis, one Lua script reads, refills and takes in one atomic step and reads the clock with
Redis's own ``TIME``: every gateway replica updates the same bucket by the same clock, so the
number allowed across replicas is exactly what one bucket allows, whatever the replicas' clocks.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from modelyard.errors import ConfigurationError
from serving.gateway.errors import LimiterUnavailable
from serving.gateway.ports import LimitDecision, RateLimiter

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)

RATE_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
}  # fmt: skip
_RATE_PATTERN = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/\s*([a-z]+)\s*)?")
# Float sums such as 0.1 * 10 can land a hair under 1.0: a token due is a token given.
EPSILON = 1e-9
DEFAULT_KEY_PREFIX = "modelyard:ratelimit:"
DEFAULT_REDIS_TIMEOUT_S = 0.5
MAX_BUCKETS = 100_000


def parse_rate(text: str) -> float:
    """Requests per second from ``"10/s"``, ``"600/m"``, ``"3600/h"`` or a bare ``"5"`` (per s).

    Raises ``ConfigurationError`` naming the offending text for anything else, or a rate <= 0.
    """
    match = _RATE_PATTERN.fullmatch(text.lower())
    unit = (match.group(2) or "s") if match else None
    if match is None or unit not in RATE_UNITS:
        raise ConfigurationError(
            f"cannot read {text!r} as a rate",
            hint="write N/s, N/m or N/h (N per second, minute or hour), e.g. 10/s or 600/m",
        )
    rate = float(match.group(1)) / RATE_UNITS[unit]
    if not math.isfinite(rate) or rate <= 0:
        raise ConfigurationError(f"a rate must be more than zero, got {text!r}")
    return rate


def default_burst(rate_per_second: float) -> float:
    """One second's worth of requests, and at least one, so slow rates can still be used."""
    return max(1.0, rate_per_second)


def bucket_name(key_id: str, model: str | None = None) -> str:
    """The bucket of a key, or of a key's calls to one model (per-model limits)."""
    return f"key:{key_id}" if model is None else f"key:{key_id}:model:{model}"


def check_limits(rate_per_second: float, burst: float) -> None:
    """Raises ``ValueError`` unless the rate is positive and the bucket holds at least a token."""
    if not (math.isfinite(rate_per_second) and rate_per_second > 0):
        raise ValueError(f"rate_per_second must be a positive number, got {rate_per_second!r}")
    if not (math.isfinite(burst) and burst >= 1):
        raise ValueError(f"burst must be at least 1 (one request), got {burst!r}")


def take_token(
    tokens: float, elapsed_s: float, rate_per_second: float, burst: float
) -> tuple[LimitDecision, float]:
    """The pure token-bucket step: refill for ``elapsed_s``, then take one token if there is one.

    Returns the decision and the tokens left. Time running backwards refills nothing.
    """
    tokens = min(burst, tokens + max(0.0, elapsed_s) * rate_per_second)
    if tokens >= 1.0 - EPSILON:
        left = max(0.0, tokens - 1.0)
        return LimitDecision(allowed=True, retry_after_s=0.0, remaining=left), left
    wait = (1.0 - tokens) / rate_per_second
    return LimitDecision(allowed=False, retry_after_s=wait, remaining=tokens), tokens


class InProcessLimiter:
    """Token buckets in this process's memory: exact for one gateway process.

    Safe from asyncio tasks and threads alike (a lock guards each step; nothing awaits inside).
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_buckets: int = MAX_BUCKETS
    ) -> None:
        self._clock = clock
        self._max_buckets = max_buckets
        self._lock = threading.Lock()
        # bucket -> [tokens, clock reading of the last update]; dict order is last-update order
        self._buckets: dict[str, list[float]] = {}

    async def acquire(self, bucket: str, rate_per_second: float, burst: float) -> LimitDecision:
        """Take one token from ``bucket``. Raises ``ValueError`` for a bad rate or burst."""
        return self.acquire_nowait(bucket, rate_per_second, burst)

    def acquire_nowait(self, bucket: str, rate_per_second: float, burst: float) -> LimitDecision:
        """:meth:`acquire` for synchronous callers. Raises ``ValueError`` for bad limits."""
        check_limits(rate_per_second, burst)
        with self._lock:
            now = self._clock()
            state = self._buckets.pop(bucket, None)
            tokens, last = (burst, now) if state is None else (state[0], state[1])
            decision, left = take_token(tokens, now - last, rate_per_second, burst)
            self._buckets[bucket] = [left, now]
            if len(self._buckets) > self._max_buckets:
                self._evict()
        return decision

    def __len__(self) -> int:
        return len(self._buckets)

    async def close(self) -> None:
        """Nothing to release; here so both limiters can be closed alike."""

    def _evict(self) -> None:
        # The least recently used bucket first; it is usually full again, so nothing changes.
        # If not, its next caller gets a full burst: lenient, and only past max_buckets buckets.
        oldest = next(iter(self._buckets))
        del self._buckets[oldest]


# KEYS[1]: the bucket. ARGV: rate per second, burst. Returns {allowed, tokens left, retry after}
# with the floats as strings (Redis truncates Lua numbers in replies to integers). Reading TIME
# before writing is allowed since Redis 5 (effects replication; the only mode in Redis 7).
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
local elapsed = math.max(0, now - at) / 1000000
tokens = math.min(burst, tokens + elapsed * rate)
local allowed = 0
local retry = 0
if tokens >= 1 - 1e-9 then
  allowed = 1
  tokens = math.max(0, tokens - 1)
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, string.format('%.17g', tokens), string.format('%.17g', retry)}
"""


class RedisLimiter:
    """Token buckets in Redis, shared by every gateway replica pointed at the same Redis."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout_s: float = DEFAULT_REDIS_TIMEOUT_S,
    ) -> None:
        """No connection is made until the first :meth:`acquire`.

        Raises ``ConfigurationError`` if ``url`` is not a Redis URL.
        """
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        self.url = redact_url(url)
        self._prefix = key_prefix
        try:
            # One immediate retry, only for a pooled connection Redis closed meanwhile: failing
            # closed must be fast, and a retried script can at worst take one token too many.
            self._client = Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"cannot use {self.url!r} as the rate limiter's Redis: {exc}",
                hint="set MODELYARD_REDIS_URL to e.g. redis://host:6379/0",
            ) from exc
        self._script = self._client.register_script(TOKEN_BUCKET_LUA)

    async def acquire(self, bucket: str, rate_per_second: float, burst: float) -> LimitDecision:
        """Take one token from ``bucket``, atomically across every client of this Redis.

        Raises ``ValueError`` for a bad rate or burst, ``LimiterUnavailable`` when Redis cannot
        be reached or refuses the script (the caller then refuses the request: fail closed).
        """
        from redis.exceptions import RedisError

        check_limits(rate_per_second, burst)
        try:
            reply = await self._script(
                keys=[self._prefix + bucket], args=[repr(rate_per_second), repr(burst)]
            )
        except (RedisError, OSError, TimeoutError) as exc:
            raise LimiterUnavailable(
                f"the rate limiter cannot reach Redis at {self.url} ({exc}); requests from "
                "rate-limited keys are refused until it answers",
                hint="check that Redis is running and MODELYARD_REDIS_URL points at it",
            ) from exc
        return _decision(reply)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _decision(reply: Any) -> LimitDecision:
    allowed, tokens, retry = reply
    return LimitDecision(
        allowed=int(allowed) == 1, retry_after_s=float(retry), remaining=float(tokens)
    )


def redact_url(url: str) -> str:
    """The URL with its password, if any, replaced by ``***``: safe for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def limiter_from_settings(settings: Settings) -> RateLimiter:
    """Redis when ``MODELYARD_REDIS_URL`` is set (exact across replicas), else in-process.

    Raises ``ConfigurationError`` for a malformed Redis URL.
    """
    if settings.redis_url:
        limiter = RedisLimiter(settings.redis_url)
        logger.info("rate limits are kept in Redis at %s", limiter.url)
        return limiter
    return InProcessLimiter()
