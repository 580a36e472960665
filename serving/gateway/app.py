"""The model gateway as a raw ASGI callable: keys, limits, routing, fallback, shadow, cache, log.

``POST /v1/models/{name}/predict`` takes MLflow scoring payloads and answers what the model
service answers (``{"predictions", "model", "version"}``), with ``X-Modelyard-Model``,
``X-Modelyard-Version``, ``X-Modelyard-Route`` and ``X-Request-Id`` headers. ``POST /v1/feedback``
attaches labels to an earlier answer; ``GET /metrics`` is Prometheus text; ``GET /healthz`` and
``GET /readyz`` are for probes.

The request path, in order: key (401), scope (403), model (404), rate limit (429), body size
(413), JSON (400), route, cache, forward with retries and fallbacks (503 when nothing answers),
respond; then, after the response: metrics, the inference log, the cache write, the shadow's
comparison. The model service checks the rows (422, passed through untouched). Every error is
JSON; only a bug in the gateway itself answers 500. No API key is ever logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx

from serving.gateway.answering import Answerer, LogThrottle, Outcome
from serving.gateway.asgi import (
    JSON_TYPE,
    ClientDisconnected,
    Receive,
    RequestHeaders,
    Scope,
    Send,
    error_body,
    new_request_id,
    parse_json_object,
    read_body,
    send_response,
)
from serving.gateway.breaker import BreakerBoard, CircuitState
from serving.gateway.cache import CachePolicy, ResponseCache
from serving.gateway.errors import (
    GatewayError,
    MethodNotAllowed,
    RateLimited,
    RouteNotFound,
    Unauthorized,
)
from serving.gateway.gate import Gate
from serving.gateway.metrics import UNKNOWN, GatewayMetrics
from serving.gateway.ports import InferenceLog, KeyStore, RateLimiter
from serving.gateway.recorder import Answered, InferenceRecorder, parse_feedback
from serving.gateway.routing import Upstream, choose_route
from serving.gateway.shadow import ShadowRunner
from serving.gateway.table_source import TableSource
from serving.gateway.upstream import Forwarder, ForwardPolicy, new_client

logger = logging.getLogger(__name__)

PREDICT_PREFIX = "/v1/models/"
PREDICT_SUFFIX = "/predict"
FEEDBACK_PATH = "/v1/feedback"
METRICS_PATH = "/metrics"
HEALTH_PATHS = ("/healthz", "/livez")
READY_PATH = "/readyz"
Closer = Callable[[], Awaitable[None] | None]


@dataclass(frozen=True)
class GatewayConfig:
    """The gateway's knobs; ``server.GatewaySettings`` reads them from the environment."""

    max_body_bytes: int = 8 * 1024 * 1024
    forward: ForwardPolicy = field(default_factory=ForwardPolicy)
    cache: CachePolicy = field(default_factory=CachePolicy)
    breaker_failures: int = 5
    breaker_cooldown_s: float = 5.0
    shadow_max_in_flight: int = 32
    log_queue_size: int = 10_000
    shutdown_grace_s: float = 5.0
    max_connections: int = 256


@dataclass(slots=True)
class _Exchange:
    """One request's state for its metrics and error answer. Labels stay ``-`` until the model
    is known to the routing table: a caller must not mint metric labels with made-up names."""

    request_id: str
    started: float
    model: str = UNKNOWN
    version: str = UNKNOWN
    route: str = UNKNOWN
    responded: bool = False


class GatewayApp:
    """The ASGI application. Build with ``server.build_app``, or directly in tests.

    ``client`` defaults to the gateway's own pooled client (``upstream.new_client``), which also
    gives the forwarder its fast path; pass one to test with ``httpx.MockTransport``.
    """

    def __init__(
        self,
        *,
        key_store: KeyStore,
        limiter: RateLimiter,
        inference_log: InferenceLog,
        tables: TableSource,
        client: httpx.AsyncClient | None = None,
        cache: ResponseCache | None = None,
        config: GatewayConfig | None = None,
        closers: Sequence[Closer] = (),
    ) -> None:
        self.config = config = config or GatewayConfig()
        self.tables = tables
        self.gate = Gate(key_store, limiter, tables)
        self._owns_client = client is None
        pool = None
        if client is None:
            client, pool = new_client(max_connections=config.max_connections)
        self.client = client
        self._closers = tuple(closers)
        self.breakers: BreakerBoard[Upstream] = BreakerBoard(
            failure_threshold=config.breaker_failures, cooldown_s=config.breaker_cooldown_s
        )
        self.metrics = GatewayMetrics(self._routed_breaker_states)
        self.forwarder = Forwarder(
            client, self.breakers, config.forward, raw=pool, on_retry=self._count_retry
        )
        self.throttle = LogThrottle()
        self.answerer = Answerer(
            self.forwarder, self.metrics, cache=cache, cache_policy=config.cache,
            throttle=self.throttle,
        )  # fmt: skip
        self.recorder = InferenceRecorder(
            inference_log,
            max_pending=config.log_queue_size,
            on_failure=self.metrics.log_failures.inc,
        )
        self.shadows = ShadowRunner(
            self.forwarder, self.recorder, self.metrics, max_in_flight=config.shadow_max_in_flight
        )
        self._started = False
        self._starting = asyncio.Lock()

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def startup(self) -> None:
        """Start the log writer and the routing tables' refresh. Raises what they raise."""
        async with self._starting:  # once, though the first requests may all ask at once
            if self._started:
                return
            self.recorder.start()
            await self.tables.start()
            self._started = True

    async def shutdown(self) -> None:
        """Stop refreshing, let shadows finish (briefly), flush the log, close every client."""
        await self.tables.stop()
        await self.shadows.close(self.config.shutdown_grace_s)
        await self.recorder.close()
        if self.answerer.cache is not None:
            await self.answerer.cache.close()
        if self._owns_client:
            await self.client.aclose()
        for close in self._closers:
            result = close()
            if result is not None:
                await result
        self._started = False

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("the gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = _Exchange(new_request_id(), time.perf_counter())
        try:
            if not self._started:  # an ASGI server that runs no lifespan: start on first use
                await self.startup()
            await self._dispatch(scope, receive, send, exchange)
        except GatewayError as exc:
            await self._refuse(send, exc, exchange)
        except ClientDisconnected:
            return
        except Exception:
            logger.exception("request %s failed inside the gateway", exchange.request_id)
            failure = GatewayError(
                f"the gateway failed on this request (a bug); its log has the details under "
                f"request id {exchange.request_id}"
            )
            await self._refuse(send, failure, exchange)

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, exchange: _Exchange
    ) -> None:
        """Raises ``RouteNotFound``, ``MethodNotAllowed`` and whatever the endpoint raises."""
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(PREDICT_PREFIX) and path.endswith(PREDICT_SUFFIX):
            model = path[len(PREDICT_PREFIX) : -len(PREDICT_SUFFIX)]
            if model and "/" not in model:
                _require(method, "POST", path)
                await self._predict(model, scope, receive, send, exchange)
                return
        elif path == FEEDBACK_PATH:
            _require(method, "POST", path)
            await self._feedback(scope, receive, send, exchange)
            return
        elif path == METRICS_PATH:
            _require(method, "GET", path)
            body, content_type = self.metrics.render()
            await self._send_plain(send, 200, body, content_type.encode(), exchange)
            return
        elif path in HEALTH_PATHS or path == READY_PATH:
            _require(method, "GET", path)
            await self._health(send, exchange, ready_check=path == READY_PATH)
            return
        raise RouteNotFound(
            f"no endpoint at {path[:200]!r}",
            hint="predict at POST /v1/models/NAME/predict; labels at POST /v1/feedback",
        )

    # --- predict ------------------------------------------------------------------------------

    async def _predict(
        self, model: str, scope: Scope, receive: Receive, send: Send, exchange: _Exchange
    ) -> None:
        headers = RequestHeaders.from_scope(scope)
        api_key = await self.gate.authenticate(headers)
        if self.tables.table(model) is not None:
            exchange.model = model
        table = await self.gate.table_for(model, api_key)
        exchange.model = model
        await self.gate.limit(api_key)
        body = await read_body(receive, self.config.max_body_bytes, headers.content_length)
        document = parse_json_object(body)
        route = choose_route(table, headers.routing_key or api_key.key_id)
        exchange.route = route.assigned
        exchange.version = str(route.primary.upstream.version)
        forward_headers = {"content-type": "application/json", "x-request-id": exchange.request_id}
        live = None
        if table.shadow is not None:
            live = self.shadows.launch(
                table.shadow, body, forward_headers, exchange.request_id, document
            )
        answered: Answered | None = None
        try:
            outcome = await self.answerer.answer(route, body, document, forward_headers)
            await self._respond(send, model, outcome, exchange)
            latency_ms = (time.perf_counter() - exchange.started) * 1000
            answer = outcome.answer
            answered = Answered(
                exchange.request_id, model, answer.upstream.version, outcome.candidate.route,
                document, answer.body, latency_ms, answer.status,
            )  # fmt: skip
        finally:
            if live is not None and not live.done():
                live.set_result(answered)
        await self._after(outcome, answered, exchange)

    async def _respond(self, send: Send, model: str, outcome: Outcome, exchange: _Exchange) -> None:
        answer = outcome.answer
        headers = [
            (b"content-type", answer.content_type.encode("latin-1")),
            (b"x-request-id", exchange.request_id.encode()),
            (b"x-modelyard-model", model.encode()),
            (b"x-modelyard-version", str(answer.upstream.version).encode()),
            (b"x-modelyard-route", outcome.candidate.route.encode()),
        ]
        if outcome.cache_state is not None:
            headers.append((b"x-modelyard-cache", outcome.cache_state.encode()))
        exchange.responded = True
        await send_response(send, answer.status, answer.body, headers)

    async def _after(self, outcome: Outcome, answered: Answered, exchange: _Exchange) -> None:
        """Metrics, cache write and log record: after the response, so never on its latency.
        Failures here are logged; the caller already has its answer."""
        try:
            elapsed = answered.latency_ms / 1000
            version, route, status = str(answered.version), answered.route, answered.status
            self.metrics.observe_answer(answered.model, answered.version, route, status, elapsed)
            self.metrics.overhead.observe(max(0.0, elapsed - outcome.upstream_s))
            if status >= 400:
                self.metrics.errors.labels(
                    answered.model, version, route, f"upstream_{status}"
                ).inc()
            await self.answerer.store(outcome)
            await self.recorder.put(answered)
        except Exception:
            logger.exception("after answering request %s", exchange.request_id)

    # --- feedback, metrics, health -------------------------------------------------------------

    async def _feedback(
        self, scope: Scope, receive: Receive, send: Send, exchange: _Exchange
    ) -> None:
        """Any valid key may label an answer: the request id names it, and ids are unguessable."""
        headers = RequestHeaders.from_scope(scope)
        api_key = await self.gate.authenticate(headers)
        await self.gate.limit(api_key)
        body = await read_body(receive, self.config.max_body_bytes, headers.content_length)
        record = parse_feedback(parse_json_object(body))
        await self.recorder.put(record)
        reply = {"request_id": record.request_id, "labels": len(record.labels)}
        await self._send_plain(send, 202, json.dumps(reply).encode(), JSON_TYPE, exchange)

    async def _health(self, send: Send, exchange: _Exchange, *, ready_check: bool) -> None:
        ready = self._started or not ready_check
        reply = {"status": "ok" if ready else "starting", "models": sorted(self.tables.tables())}
        await self._send_plain(
            send, 200 if ready else 503, json.dumps(reply).encode(), JSON_TYPE, exchange
        )

    async def _send_plain(
        self, send: Send, status: int, body: bytes, content_type: bytes, exchange: _Exchange
    ) -> None:
        headers = [(b"content-type", content_type), (b"x-request-id", exchange.request_id.encode())]
        exchange.responded = True
        await send_response(send, status, body, headers)

    async def _refuse(self, send: Send, error: GatewayError, exchange: _Exchange) -> None:
        """Answer ``error`` as JSON with its status (nothing, when a response already went)."""
        if exchange.responded:
            return
        kind = type(error).__name__
        self.metrics.observe_error(
            exchange.model, exchange.version, exchange.route, kind, error.status
        )
        headers = [(b"content-type", JSON_TYPE), (b"x-request-id", exchange.request_id.encode())]
        if isinstance(error, RateLimited):
            self.metrics.rate_limited.labels(exchange.model).inc()
            headers.append((b"retry-after", str(max(1, math.ceil(error.retry_after_s))).encode()))
        elif isinstance(error, Unauthorized):
            headers.append((b"www-authenticate", b"Bearer"))
        elif isinstance(error, MethodNotAllowed):
            headers.append((b"allow", error.allowed.encode()))
        if error.status >= 500 and self.throttle.allows(kind, exchange.model):
            logger.warning(
                "request %s: %s %s: %s", exchange.request_id, error.status, kind, error.message
            )
        exchange.responded = True
        await send_response(send, error.status, error_body(error, exchange.request_id), headers)

    # --- metrics helpers ------------------------------------------------------------------------

    def _routed_breaker_states(self) -> dict[Upstream, CircuitState]:
        """Breakers of upstreams some table still routes to (others are history)."""
        routed = {u for table in self.tables.tables().values() for u in table.upstreams()}
        return {u: s for u, s in self.breakers.states().items() if u in routed}

    def _count_retry(self, upstream: Upstream, why: str) -> None:
        self.metrics.retries.labels(upstream.model, str(upstream.version)).inc()
        logger.debug("retrying %s v%s: %s", upstream.model, upstream.version, why)


def _require(method: str, allowed: str, path: str) -> None:
    """Raises ``MethodNotAllowed`` unless ``method`` is ``allowed``."""
    if method != allowed:
        raise MethodNotAllowed(f"{path} takes {allowed}, not {method}", allowed=allowed)
