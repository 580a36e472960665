"""The gateway's optional response cache: in-process LRU, and Redis when configured.

A key holds the model, the version that answered and a digest of the input in canonical JSON
(sorted keys, no whitespace), so two spellings of the same rows share an entry and a promotion,
which changes the version, can never serve an answer of the version before. Only 200 answers are
stored. A cache that fails (Redis down) is a miss, never an error for the caller.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

KEY_PREFIX = "modelyard:gateway:answer"
ALL_MODELS = "*"


class ResponseCache(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The stored answer body, None on a miss (or when the store cannot be reached)."""
        ...

    async def set(self, key: str, body: bytes) -> None:
        """Store an answer body; failures are logged, never raised."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class CachePolicy:
    """Which models' answers are cached: none by default, ``*`` for every model."""

    models: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, names: Iterable[str]) -> CachePolicy:
        return cls(frozenset(n.strip() for n in names if n.strip()))

    def caches(self, model: str) -> bool:
        return model in self.models or ALL_MODELS in self.models


def canonical_input(document: Any) -> bytes:
    """The input in one spelling: sorted keys, no whitespace, NaN kept (MLflow clients send it)."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    ).encode()


def cache_key(model: str, version: int, canonical: bytes) -> str:
    """The entry of one model version's answer to one canonical input."""
    digest = hashlib.blake2b(canonical, digest_size=16).hexdigest()
    return f"{KEY_PREFIX}:{model}:{version}:{digest}"


class LruCache:
    """Answers in this process's memory, the least recently used dropped past ``max_entries``
    or ``max_bytes``; entries older than ``ttl_s`` (when given) count as misses."""

    def __init__(
        self,
        max_entries: int = 10_000,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, body = entry
        if self.ttl_s is not None and self._clock() - stored_at > self.ttl_s:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return body

    async def set(self, key: str, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        self._drop(key)
        self._entries[key] = (self._clock(), body)
        self._bytes += len(body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])


class RedisCache:
    """Answers in Redis, shared by every gateway replica, expiring after ``ttl_s``.

    Timeouts are short: a slow Redis must cost a cache miss, not the caller's latency.
    """

    def __init__(self, url: str, *, ttl_s: float = 3600.0, timeout_s: float = 0.05) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self.ttl_ms = int(ttl_s * 1000)
        self._warned_at = float("-inf")

    async def get(self, key: str) -> bytes | None:
        try:
            found = await self._client.get(key)
        except Exception as exc:  # any Redis failure is a miss, never an error
            self._warn("read", exc)
            return None
        if found is None:
            return None
        return found if isinstance(found, bytes) else str(found).encode()

    async def set(self, key: str, body: bytes) -> None:
        try:
            await self._client.set(key, body, px=self.ttl_ms)
        except Exception as exc:
            self._warn("write", exc)

    async def close(self) -> None:
        await self._client.aclose()

    def _warn(self, doing: str, exc: Exception) -> None:
        """One warning a minute at most: a Redis outage must not flood the log."""
        now = time.monotonic()
        if now - self._warned_at >= 60.0:
            self._warned_at = now
            logger.warning("response cache: cannot %s Redis (%s); serving without it", doing, exc)


class TieredCache:
    """The in-process LRU in front of Redis: hot answers cost no network round trip."""

    def __init__(self, local: ResponseCache, remote: ResponseCache) -> None:
        self.local = local
        self.remote = remote

    async def get(self, key: str) -> bytes | None:
        body = await self.local.get(key)
        if body is None:
            body = await self.remote.get(key)
            if body is not None:
                await self.local.set(key, body)
        return body

    async def set(self, key: str, body: bytes) -> None:
        await self.local.set(key, body)
        await self.remote.set(key, body)

    async def close(self) -> None:
        await self.local.close()
        await self.remote.close()


def build_cache(
    redis_url: str | None, *, max_entries: int = 10_000, ttl_s: float = 3600.0
) -> ResponseCache:
    """An LRU, with Redis behind it when ``redis_url`` is set."""
    local = LruCache(max_entries, ttl_s=ttl_s)
    if not redis_url:
        return local
    return TieredCache(local, RedisCache(redis_url, ttl_s=ttl_s))
