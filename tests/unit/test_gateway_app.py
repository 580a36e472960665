"""The gateway's request path, in process: the ASGI app driven through ``httpx.ASGITransport``
with upstreams answered by ``httpx.MockTransport`` (no network). The same behaviours over real
HTTP against real model servers are in ``tests/integration/test_gateway.py``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from serving.gateway.app import GatewayApp, GatewayConfig
from serving.gateway.cache import CachePolicy, LruCache
from serving.gateway.errors import LimiterUnavailable
from serving.gateway.ports import LimitDecision
from serving.gateway.ratelimit import InProcessLimiter
from serving.gateway.routing import RouteTable, Upstream, caller_bucket
from serving.gateway.table_source import StaticTableSource
from serving.gateway.upstream import ForwardPolicy
from tests.gateway_fakes import (
    ADMIN_KEY,
    LIMITED_KEY,
    SCOPED_KEY,
    MemoryKeyStore,
    MemoryLog,
    standard_keys,
)

MODEL = "churn"
ROWS = {"dataframe_records": [{"tenure": 3, "plan": "basic"}]}
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def url(version: int) -> str:
    return f"http://v{version}.upstream/predict"


def up(version: int) -> Upstream:
    return Upstream(MODEL, version, url(version))


@dataclass
class Behaviour:
    """What one fake model server does: fail (connection refused), answer a status, be slow."""

    status: int = 200
    refuse: bool = False
    delay_s: float = 0.0
    fail_first: int = 0  # answer 503 this many times, then normally
    predictions: list[Any] = field(default_factory=lambda: ["yes"])


class Upstreams:
    """A MockTransport whose answers per version the test sets; counts calls per version."""

    def __init__(self) -> None:
        self.behaviour: dict[int, Behaviour] = {}
        self.calls: Counter[int] = Counter()
        self.headers: list[httpx.Headers] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        version = int(request.url.host.removeprefix("v").split(".")[0])
        self.calls[version] += 1
        self.headers.append(request.headers)
        b = self.behaviour.setdefault(version, Behaviour())
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        if b.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        if b.fail_first:
            b.fail_first -= 1
            return httpx.Response(503, json={"error": "overloaded"})
        if b.status != 200:
            return httpx.Response(b.status, json={"error": "bad rows", "fields": ["plan"]})
        body = {"predictions": b.predictions, "model": MODEL, "version": version}
        return httpx.Response(200, json=body, headers={"x-modelyard-version": str(version)})


@dataclass
class Rig:
    app: GatewayApp
    client: httpx.AsyncClient
    upstreams: Upstreams
    tables: StaticTableSource
    log: MemoryLog

    async def predict(self, body: Any = ROWS, headers: dict[str, str] | None = None,
                      model: str = MODEL) -> httpx.Response:  # fmt: skip
        return await self.client.post(
            f"/v1/models/{model}/predict", json=body, headers=AUTH if headers is None else headers
        )


@contextlib.asynccontextmanager
async def rig(table: RouteTable, *, limiter: Any = None, cached: bool = False,
              **config: Any) -> AsyncIterator[Rig]:  # fmt: skip
    """A started gateway over ``table`` with fake upstreams; shut down (log flushed) after."""
    upstreams = Upstreams()
    tables = StaticTableSource([table])
    log = MemoryLog()
    policy = ForwardPolicy(attempts=3, budget_s=2.0, backoff_s=0.001, shadow_timeout_s=5.0)
    settings: dict[str, Any] = {"forward": policy, "breaker_failures": 3, "breaker_cooldown_s": 60}
    app = GatewayApp(
        key_store=MemoryKeyStore(standard_keys(MODEL)),
        limiter=limiter or InProcessLimiter(),
        inference_log=log,
        tables=tables,
        client=httpx.AsyncClient(transport=httpx.MockTransport(upstreams.handle)),
        cache=LruCache() if cached else None,
        config=GatewayConfig(**{**settings, **config}),
    )
    await app.startup()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        try:
            yield Rig(app, client, upstreams, tables, log)
        finally:
            if app._started:
                await app.shutdown()
            await app.client.aclose()


def caller_on(canary: bool, share: int) -> str:
    """A routing key the hash puts on the canary (or not) at ``share`` percent."""
    for i in range(10_000):
        key = f"user-{i}"
        if (caller_bucket(MODEL, key) < share * 100) == canary:
            return key
    raise AssertionError("no such caller")


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    detail: dict[str, Any] = response.json()["error"]
    return detail


TWO = RouteTable(MODEL, champion=up(1), canary=up(2), canary_share=50)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


pytestmark = pytest.mark.anyio


# --- answering -------------------------------------------------------------------------------


async def test_answers_with_the_upstream_body_and_routing_headers() -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        response = await r.predict()
        assert response.status_code == 200
        assert response.json() == {"predictions": ["yes"], "model": MODEL, "version": 1}
        assert response.headers["x-modelyard-model"] == MODEL
        assert response.headers["x-modelyard-version"] == "1"
        assert response.headers["x-modelyard-route"] == "champion"
        request_id = response.headers["x-request-id"]
        sent = r.upstreams.headers[0]
        assert sent["x-request-id"] == request_id
        assert "authorization" not in sent and "x-api-key" not in sent, "keys stay at the gateway"
    record = r.log.routes_of(request_id)["champion"]
    assert record.inputs == ROWS["dataframe_records"]
    assert record.predictions == ["yes"] and record.status == 200 and record.version == 1
    assert r.log.closed


async def test_x_api_key_header_works_too() -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        response = await r.predict(headers={"X-API-Key": SCOPED_KEY})
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "rows"),
    [
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}},
         [{"a": 1, "b": 2}, {"a": 3, "b": 4}]),
        ({"inputs": {"a": [1, 2], "b": ["x", "y"]}}, [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]),
        ({"inputs": [{"a": 1}]}, [{"a": 1}]),
    ],
)  # fmt: skip
async def test_every_mlflow_payload_is_forwarded_and_logged_as_rows(
    body: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        response = await r.predict(body)
        assert response.status_code == 200
    assert r.log.records[0].inputs == rows


async def test_route_is_sticky_per_routing_key_and_per_api_key() -> None:
    async with rig(TWO) as r:
        for canary in (True, False):
            key = caller_on(canary, 50)
            versions = set()
            for _ in range(10):
                response = await r.predict(headers={**AUTH, "X-Routing-Key": key})
                versions.add(response.headers["x-modelyard-version"])
            assert versions == {"2" if canary else "1"}
        by_key = {(await r.predict()).headers["x-modelyard-route"] for _ in range(10)}
        assert len(by_key) == 1, "without a routing key the API key decides, always the same way"


# --- failures: retries, fallback, breaker ------------------------------------------------------


async def test_retries_5xx_within_the_budget() -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        r.upstreams.behaviour[1] = Behaviour(fail_first=2)
        response = await r.predict()
        assert response.status_code == 200
        assert r.upstreams.calls[1] == 3
        metrics = (await r.client.get("/metrics")).text
        assert 'modelyard_gateway_upstream_retries_total{model="churn",version="1"} 2.0' in metrics


async def test_a_failing_canary_falls_back_to_the_champion() -> None:
    async with rig(TWO) as r:
        r.upstreams.behaviour[2] = Behaviour(refuse=True)
        response = await r.predict(headers={**AUTH, "X-Routing-Key": caller_on(True, 50)})
        assert response.status_code == 200
        assert response.headers["x-modelyard-version"] == "1"
        assert response.headers["x-modelyard-route"] == "champion"


async def test_a_failing_champion_falls_back_to_the_previous_champion() -> None:
    async with rig(RouteTable(MODEL, champion=up(2), previous=up(1))) as r:
        r.upstreams.behaviour[2] = Behaviour(status=200, fail_first=100)
        response = await r.predict()
        assert response.status_code == 200
        assert response.headers["x-modelyard-version"] == "1"
        assert response.headers["x-modelyard-route"] == "fallback"


async def test_the_breaker_stops_calls_to_a_dead_upstream() -> None:
    async with rig(TWO) as r:
        r.upstreams.behaviour[2] = Behaviour(refuse=True)
        headers = {**AUTH, "X-Routing-Key": caller_on(True, 50)}
        for _ in range(5):
            assert (await r.predict(headers=headers)).status_code == 200
        assert r.upstreams.calls[2] == 3, "3 failures open the breaker; then v2 is skipped"
        metrics = (await r.client.get("/metrics")).text
        assert (
            'circuit_state{model="churn",url="http://v2.upstream/predict",version="2"} 2.0'
            in metrics
        )


async def test_nothing_healthy_is_a_503_naming_each_failure() -> None:
    async with rig(TWO) as r:
        r.upstreams.behaviour[1] = Behaviour(refuse=True)
        r.upstreams.behaviour[2] = Behaviour(fail_first=100)
        response = await r.predict(headers={**AUTH, "X-Routing-Key": caller_on(True, 50)})
        assert response.status_code == 503
        error = error_of(response)
        assert error["type"] == "NoHealthyUpstream"
        assert "no version of model 'churn' could answer" in error["message"]
        assert "churn v2" in error["message"] and "HTTP 503" in error["message"]
        assert "churn v1" in error["message"] and "ConnectError" in error["message"]


async def test_a_slow_upstream_is_cut_at_the_budget() -> None:
    policy = ForwardPolicy(attempts=1, budget_s=0.2, attempt_timeout_s=5.0)
    async with rig(RouteTable(MODEL, champion=up(1)), forward=policy) as r:
        r.upstreams.behaviour[1] = Behaviour(delay_s=2.0)
        started = time.perf_counter()
        response = await r.predict()
        assert response.status_code == 503
        assert time.perf_counter() - started < 1.0


# --- shadow ----------------------------------------------------------------------------------


async def test_a_slow_shadow_never_delays_the_caller_and_is_logged_beside() -> None:
    table = RouteTable(MODEL, champion=up(1), shadow=up(3))
    async with rig(table) as r:
        r.upstreams.behaviour[3] = Behaviour(delay_s=0.5, predictions=["no"])
        started = time.perf_counter()
        response = await r.predict()
        assert time.perf_counter() - started < 0.25
        assert response.headers["x-modelyard-version"] == "1"
        request_id = response.headers["x-request-id"]
        await asyncio.sleep(0.7)
        metrics = (await r.client.get("/metrics")).text
        assert 'shadow_disagreement_ratio{model="churn",version="3"} 1.0' in metrics
    rows = r.log.routes_of(request_id)
    assert set(rows) == {"champion", "shadow"}
    assert rows["shadow"].predictions == ["no"] and rows["champion"].predictions == ["yes"]


async def test_a_dead_shadow_changes_nothing_for_the_caller() -> None:
    async with rig(RouteTable(MODEL, champion=up(1), shadow=up(3))) as r:
        r.upstreams.behaviour[3] = Behaviour(refuse=True)
        response = await r.predict()
        assert response.status_code == 200
    assert {rec.route for rec in r.log.records} == {"champion"}


# --- cache -----------------------------------------------------------------------------------


async def test_cache_hits_by_canonical_input_and_misses_after_a_promotion() -> None:
    policy = CachePolicy.parse([MODEL])
    async with rig(RouteTable(MODEL, champion=up(1)), cached=True, cache=policy) as r:
        first = await r.predict({"dataframe_records": [{"a": 1, "b": 2}]})
        again = await r.client.post(
            f"/v1/models/{MODEL}/predict",
            content=b'{ "dataframe_records" : [ {"b": 2, "a": 1} ] }',
            headers=AUTH,
        )
        assert first.headers["x-modelyard-cache"] == "miss"
        assert again.headers["x-modelyard-cache"] == "hit" and again.json() == first.json()
        assert r.upstreams.calls[1] == 1
        r.tables.set(RouteTable(MODEL, champion=up(2)))
        promoted = await r.predict({"dataframe_records": [{"a": 1, "b": 2}]})
        assert promoted.headers["x-modelyard-cache"] == "miss"
        assert promoted.json()["version"] == 2
        metrics = (await r.client.get("/metrics")).text
        assert 'modelyard_gateway_cache_hit_ratio{model="churn"} 0.333' in metrics


# --- every error status ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "no API key in the request"),
        ({"Authorization": "Bearer my_nope000000_wrong"}, "the API key is not valid"),
        ({"X-API-Key": "garbage"}, "the API key is not valid"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "the Authorization header is not a Bearer token"),
    ],
)
async def test_401_without_a_valid_key(headers: dict[str, str], message: str) -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        response = await r.predict(headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        error = error_of(response)
        assert error["type"] == "Unauthorized" and message in error["message"]
        assert "Bearer KEY" in error["hint"]
        assert r.upstreams.calls.total() == 0


async def test_403_for_a_model_outside_the_key_scope_known_or_not() -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        for model in ("secret-model", "does-not-exist"):
            response = await r.predict(headers={"X-API-Key": LIMITED_KEY}, model=model)
            assert response.status_code == 403
            assert f"may not call model {model!r}" in error_of(response)["message"]


async def test_404_for_an_unknown_model_and_an_unknown_path() -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        response = await r.predict(model="nope")
        assert response.status_code == 404
        assert error_of(response) | {"request_id": ""} == {
            "type": "UnknownModel",
            "message": "no model named 'nope' is registered",
            "hint": "`modelyard models` lists them",
            "request_id": "",
        }
        response = await r.client.get("/v2/whatever", headers=AUTH)
        assert response.status_code == 404 and error_of(response)["type"] == "RouteNotFound"


async def test_405_for_the_wrong_method() -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        response = await r.client.get(f"/v1/models/{MODEL}/predict", headers=AUTH)
        assert response.status_code == 405 and response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "the request body is not valid JSON"),
        (b"", "the request body is empty"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"a": "\xff"}', "not UTF-8"),
    ],
)
async def test_400_for_malformed_json(content: bytes, message: str) -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        response = await r.client.post(f"/v1/models/{MODEL}/predict", content=content, headers=AUTH)
        assert response.status_code == 400
        assert message in error_of(response)["message"]
        assert r.upstreams.calls.total() == 0


async def test_413_for_a_body_over_the_limit_declared_or_streamed() -> None:
    async with rig(RouteTable(MODEL, champion=up(1)), max_body_bytes=1000) as r:
        big = {"dataframe_records": [{"a": "x" * 2000}]}
        response = await r.predict(big)
        assert response.status_code == 413
        assert "at most 1000" in error_of(response)["message"]

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b" " * 100

        streamed = await r.client.post(
            f"/v1/models/{MODEL}/predict", content=chunks(), headers=AUTH
        )
        assert streamed.status_code == 413


async def test_422_from_the_model_service_passes_through_untouched() -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        r.upstreams.behaviour[1] = Behaviour(status=422)
        response = await r.predict()
        assert response.status_code == 422
        assert response.json() == {"error": "bad rows", "fields": ["plan"]}
        assert response.headers["x-modelyard-version"] == "1"
        assert r.upstreams.calls[1] == 1, "a 4xx is the model's verdict: never retried"
    assert r.log.records[0].status == 422 and r.log.records[0].predictions is None


async def test_429_with_retry_after_once_the_key_is_over_its_rate() -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        limited = {"X-API-Key": LIMITED_KEY}
        assert (await r.predict(headers=limited)).status_code == 200
        response = await r.predict(headers=limited)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert "over its limit of 1 requests per second" in error_of(response)["message"]
        metrics = (await r.client.get("/metrics")).text
        assert 'modelyard_gateway_rate_limited_total{model="churn"} 1.0' in metrics


async def test_503_when_the_rate_limiter_is_unreachable() -> None:
    class DownLimiter:
        async def acquire(self, bucket: str, rate: float, burst: float) -> LimitDecision:
            raise LimiterUnavailable("the rate limiter cannot reach Redis at redis://x")

    async with rig(RouteTable(MODEL, champion=up(1)), limiter=DownLimiter()) as r:
        response = await r.predict(headers={"X-API-Key": LIMITED_KEY})
        assert response.status_code == 503
        assert error_of(response)["type"] == "LimiterUnavailable"
        assert (await r.predict()).status_code == 200, "unlimited keys never ask the limiter"


async def test_503_when_no_version_runs() -> None:
    async with rig(RouteTable(MODEL)) as r:
        response = await r.predict()
        assert response.status_code == 503
        assert "no version of model 'churn' is running" in error_of(response)["message"]


@pytest.mark.parametrize(
    "content",
    [b'{"inputs": 1e999999}', b'{"a": NaN}', b'{"a": "\\ud800"}', b"{" * 10_000, b"\x00"],
)
async def test_odd_bodies_never_yield_a_500(content: bytes) -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        response = await r.client.post(f"/v1/models/{MODEL}/predict", content=content, headers=AUTH)
        assert response.status_code in (200, 400)


# --- feedback, metrics, logs -----------------------------------------------------------------


async def test_feedback_attaches_labels() -> None:
    async with rig(RouteTable(MODEL, champion=up(1))) as r:
        answer = await r.predict()
        request_id = answer.headers["x-request-id"]
        response = await r.client.post(
            "/v1/feedback", json={"request_id": request_id, "labels": ["no"]}, headers=AUTH
        )
        assert response.status_code == 202
        assert response.json() == {"request_id": request_id, "labels": 1}
        bad = await r.client.post("/v1/feedback", json={"labels": ["no"]}, headers=AUTH)
        assert bad.status_code == 400 and "needs 'request_id'" in error_of(bad)["message"]
        assert (await r.client.post("/v1/feedback", json={})).status_code == 401
    assert [(f.request_id, f.labels) for f in r.log.feedback] == [(request_id, ["no"])]


async def test_metrics_by_model_version_and_route() -> None:
    async with rig(TWO) as r:
        for i in range(20):
            await r.predict(headers={**AUTH, "X-Routing-Key": f"user-{i}"})
        await r.predict(model="nope")
        text = (await r.client.get("/metrics")).text
    for needle in (
        'modelyard_gateway_requests_total{model="churn",route="champion",status="200",version="1"}',
        'modelyard_gateway_requests_total{model="churn",route="canary",status="200",version="2"}',
        'modelyard_gateway_request_duration_seconds_bucket{le="0.005",model="churn",route="canary"',
        "modelyard_gateway_overhead_seconds_bucket",
        'modelyard_gateway_errors_total{error="UnknownModel",model="-",route="-",version="-"} 1.0',
        'modelyard_gateway_circuit_state{model="churn",url="http://v1.upstream/predict",'
        'version="1"} 0.0',
    ):
        assert needle in text, needle


async def test_no_key_appears_in_any_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with rig(RouteTable(MODEL, champion=up(1), shadow=up(3))) as r:
        r.upstreams.behaviour[3] = Behaviour(refuse=True)
        await r.predict()
        await r.predict(headers={"Authorization": "Bearer my_wrong00000_not-a-real-secret"})
        await r.predict(headers={"Authorization": "my_raw0000000_no-scheme-secret"})
        await r.predict(headers={"X-API-Key": SCOPED_KEY}, model="forbidden")
        r.upstreams.behaviour[1] = Behaviour(refuse=True)
        await r.predict(headers={"X-API-Key": SCOPED_KEY})
    text = "\n".join(record.getMessage() for record in caplog.records)
    text += "\n".join(str(record.exc_info) for record in caplog.records)
    assert "no version of model 'churn' could answer" in text  # the 503 was logged
    for secret in (ADMIN_KEY, SCOPED_KEY, "not-a-real-secret", "no-scheme-secret", "secret-"):
        assert secret not in text


async def test_shutdown_flushes_the_log_and_waits_for_shadows() -> None:
    async with rig(RouteTable(MODEL, champion=up(1), shadow=up(3))) as r:
        r.upstreams.behaviour[3] = Behaviour(delay_s=0.3)
        response = await r.predict()
        request_id = response.headers["x-request-id"]
        await r.app.shutdown()
    assert set(r.log.routes_of(request_id)) == {"champion", "shadow"}
    assert r.log.closed
