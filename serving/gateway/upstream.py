"""Forward a request body to a model server: one pooled HTTP client, retries within a time
budget, and a circuit breaker per upstream.

What is retried: connection errors, timeouts and 5xx answers (a model server restarting, or one
shedding load). What is not: any answer under 500, which is the model server's verdict on the
request (422 for rows that break the model's contract) and goes back to the caller untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from serving.gateway.breaker import BreakerBoard
from serving.gateway.errors import UpstreamFailed
from serving.gateway.routing import Upstream

if TYPE_CHECKING:
    from serving.gateway.transport import PooledTransport

JSON = "application/json"
VERSION_HEADER = "x-modelyard-version"  # the model service names the version that answered
VERSION_HEADER_BYTES = VERSION_HEADER.encode()


@dataclass(frozen=True)
class ForwardPolicy:
    """How hard to try one upstream. ``budget_s`` bounds a whole request, fallbacks included."""

    attempts: int = 3
    budget_s: float = 10.0
    attempt_timeout_s: float = 5.0
    backoff_s: float = 0.01  # doubled after each failed attempt
    shadow_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    """An upstream's answer (status under 500), and the time spent waiting on that upstream."""

    upstream: Upstream
    status: int
    body: bytes
    content_type: str
    upstream_s: float
    attempts: int


def new_client(
    *, max_connections: int = 256, max_keepalive: int = 128, keepalive_expiry_s: float = 4.0
) -> tuple[httpx.AsyncClient, PooledTransport | None]:
    """The gateway's one HTTP client, and the connection pool under it when that is ours.

    The pool is ``transport.PooledTransport`` when httptools is installed (it comes with
    ``uvicorn[standard]``), else httpx's own, which costs more CPU per request and far more
    under concurrency. Idle connections expire before servers' usual 5 s idle timeout (uvicorn's
    default), so a request seldom lands on a connection the server is closing.
    ``trust_env=False``: proxy variables must not capture loopback or cluster traffic.
    """
    pool: PooledTransport | None
    transport: httpx.AsyncBaseTransport
    try:
        from serving.gateway.transport import PooledTransport
    except ImportError:
        pool = None
        transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_keepalive,
                keepalive_expiry=keepalive_expiry_s,
            )
        )
    else:
        pool = transport = PooledTransport(
            max_connections=max_connections,
            max_idle_per_host=max_keepalive,
            idle_expiry_s=keepalive_expiry_s,
        )
    client = httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(5.0),
        trust_env=False,
        follow_redirects=False,
        headers={"accept-encoding": "identity", "user-agent": "modelyard-gateway"},
    )
    return client, pool


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: str
    version: str | None  # the version the model service says answered, when it says


class Forwarder:
    """Sends request bodies to upstreams through ``client`` under ``policy``.

    With ``raw`` (the ``PooledTransport`` under ``client``, as ``new_client`` builds it), requests
    skip httpx's client layer and go straight to the pool: same connections, a third less CPU.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        breakers: BreakerBoard[Upstream],
        policy: ForwardPolicy | None = None,
        *,
        raw: PooledTransport | None = None,
        on_retry: Callable[[Upstream, str], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.breakers = breakers
        self.policy = policy or ForwardPolicy()
        self._raw = raw
        self._on_retry = on_retry
        self._clock = clock
        self._sleep = sleep

    async def forward(
        self,
        upstream: Upstream,
        body: bytes,
        headers: Mapping[str, str],
        deadline: float,
        *,
        attempts: int | None = None,
    ) -> Answer:
        """POST ``body`` to ``upstream``, retrying failures until ``deadline`` (on ``clock``).

        Raises ``UpstreamFailed`` when its circuit is open, when every attempt failed, or when
        the deadline passed; the error carries the time spent waiting on the upstream.
        """
        breaker = self.breakers.get(upstream)
        tries = attempts or self.policy.attempts
        spent, reason, last_status = 0.0, "no attempt made: the time budget was spent", None
        for attempt in range(1, tries + 1):
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            if not breaker.allow():
                raise UpstreamFailed(
                    f"{_name(upstream)} is cut off by its circuit breaker after "
                    f"{breaker.failures} failures in a row",
                    upstream_s=spent,
                )
            started = self._clock()
            reply, reason = await self._attempt(upstream, body, headers, remaining)
            spent += self._clock() - started
            if reply is not None and reply.status < 500:
                breaker.record_success()
                return Answer(
                    upstream, reply.status, reply.body, reply.content_type, spent, attempt
                )
            breaker.record_failure()
            if reply is not None:
                reason, last_status = f"it answered HTTP {reply.status}", reply.status
            if attempt < tries:
                await self._backoff(upstream, attempt, deadline, reason)
        raise UpstreamFailed(
            f"{_name(upstream)} failed: {reason}", upstream_status=last_status, upstream_s=spent
        )

    async def _attempt(
        self, upstream: Upstream, body: bytes, headers: Mapping[str, str], remaining: float
    ) -> tuple[_Reply | None, str]:
        """One try: the reply, or None and why it failed. Raises ``UpstreamFailed`` when
        another version than the table says answered (its port reused by another server: the
        table is stale), which no retry can fix."""
        timeout = min(remaining, self.policy.attempt_timeout_s)
        try:
            # httpx's timeouts bound each read and write, not the whole exchange: a server that
            # trickles bytes could outlast them. This holds the attempt to its budget.
            async with asyncio.timeout(timeout):
                reply = await self._post(upstream.url, body, headers, timeout)
        except (httpx.TransportError, TimeoutError) as exc:
            return None, _describe(exc)
        if reply.version is not None and reply.version != str(upstream.version):
            raise UpstreamFailed(
                f"{_name(upstream)} answered as version {reply.version}: the routing table is stale"
            )
        return reply, ""

    async def _post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> _Reply:
        """Raises ``httpx.TransportError``."""
        if self._raw is not None:
            raw = await self._raw.post(url, body, headers)
            content_type = raw.header(b"content-type") or JSON
            return _Reply(raw.status, raw.body, content_type, raw.header(VERSION_HEADER_BYTES))
        response = await self.client.post(url, content=body, headers=headers, timeout=timeout)
        content_type = response.headers.get("content-type", JSON)
        return _Reply(
            response.status_code,
            response.content,
            content_type,
            response.headers.get(VERSION_HEADER),
        )

    async def _backoff(self, upstream: Upstream, attempt: int, deadline: float, why: str) -> None:
        if self._on_retry is not None:
            self._on_retry(upstream, why)
        pause = self.policy.backoff_s * 2 ** (attempt - 1)
        await self._sleep(max(0.0, min(pause, deadline - self._clock())))


def _name(upstream: Upstream) -> str:
    return f"{upstream.model} v{upstream.version} at {upstream.url}"


def _describe(exc: Exception) -> str:
    """A short cause for messages: the exception's class says more than its often empty text."""
    if isinstance(exc, TimeoutError):
        return "no answer within the time budget"
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
