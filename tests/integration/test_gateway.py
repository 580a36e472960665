"""The gateway over real HTTP: uvicorn on an ephemeral loopback port, in front of real
``bentoml serve`` processes of the echo service (one per version, each reporting the version it
was started as) and, where a test needs an upstream to misbehave on purpose (slow, 422, 500),
a small ASGI model server under uvicorn. Keys and the inference log are the real SQL ones on a
SQLite file; the routing table is injected so each test sets exactly what it routes to.

Every server is stopped in its fixture's teardown (BentoML's workers too: they run in sessions
of their own, so they are found by the environment marker ``infra.local.process`` puts on them).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from infra.local.process import (
    ServerSpec,
    StartedServer,
    free_port,
    server_processes,
    start_server,
    stop_server,
    wait_ready,
)
from monitoring.inference_log import INFERENCE_LOG
from registry.serving_state import ServingState
from serving.gateway.app import GatewayApp, GatewayConfig
from serving.gateway.keys import SqlKeyStore
from serving.gateway.log_writer import SqlInferenceLog
from serving.gateway.ports import ApiKey
from serving.gateway.ratelimit import InProcessLimiter
from serving.gateway.routing import RouteTable, Upstream, caller_bucket
from serving.gateway.table_source import RegistryTableSource, StaticTableSource
from serving.gateway.upstream import ForwardPolicy
from tests.gateway_fakes import MemoryKeyStore, MemoryLog

pytestmark = pytest.mark.slow

ECHO_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "echo_service"
ECHO_PATH = "/echo"
READY_TIMEOUT_S = 120.0
BODY = {"payload": {"dataframe_records": [{"tenure": 3, "plan": "basic"}]}}
MAX_BODY = 64 * 1024


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Echo:
    """One ``bentoml serve`` of the echo service, started as ``version``."""

    version: int
    server: StartedServer
    child: Any

    @property
    def url(self) -> str:
        return self.server.url + ECHO_PATH

    def kill(self) -> None:
        """SIGKILL the server and every worker of it: a crash, not a shutdown."""
        spec = self.server.spec
        for pid in server_processes(self.server.pid, self.server.start_time, spec.instance):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        spec = self.server.spec
        stop_server(self.server.pid, self.server.start_time, spec.instance, child=self.child)


@dataclass
class Stub:
    """A model server that misbehaves on demand; answers like the model service."""

    name: str
    version: int
    status: int = 200
    delay_s: float = 0.0
    predictions: list[Any] = field(default_factory=lambda: ["yes"])
    calls: int = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.calls += 1
        if self.delay_s:
            # asyncio may wake a timer up to its clock resolution early: sleep until the full
            # delay has passed, so the answer is never faster than the test claims.
            until = time.perf_counter() + self.delay_s
            while (left := until - time.perf_counter()) > 0:
                await asyncio.sleep(left)
        if self.status == 200:
            body = {"predictions": self.predictions, "model": self.name, "version": self.version}
        else:
            body = {"error": "the rows do not match the model's input contract", "fields": ["x"]}
        raw = httpx.Response(self.status, json=body).content
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": raw})


class UvicornThread:
    """An ASGI app served by uvicorn in a thread, on a socket the OS gave a free port."""

    def __init__(self, app: Any, *, lifespan: Literal["on", "off"] = "on") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, lifespan=lifespan, access_log=False, log_config=None, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"


def start_echo(version: int, home: Path) -> Echo:
    spec = ServerSpec(
        model="echo",
        version=version,
        target="service:Echo",
        port=free_port(),
        instance=f"gateway-test-v{version}-{uuid.uuid4().hex[:8]}",
        log_path=home / f"echo-v{version}.log",
        bentoml_home=home / "bentoml",
        working_dir=ECHO_DIR,
    )
    server, child = start_server(spec)
    return Echo(version, server, child)


@pytest.fixture(scope="module")
def echoes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Echo]]:
    """Echo servers for versions 1, 2 and 3, started together (each takes ~4 s)."""
    home = tmp_path_factory.mktemp("echo")
    started: dict[int, Echo] = {}
    try:
        for version in (1, 2, 3):
            started[version] = start_echo(version, home)
        for echo in started.values():
            wait_ready(echo.server, timeout=READY_TIMEOUT_S, child=echo.child)
        yield started
    finally:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(Echo.stop, started.values()))


@dataclass
class Gateway:
    url: str
    app: GatewayApp
    tables: StaticTableSource
    keys: dict[str, str]
    log_url: str
    client: httpx.Client

    def post(
        self, model: str, key: str = "admin", body: Any = BODY, **headers: str
    ) -> httpx.Response:
        sent = {"Authorization": f"Bearer {self.keys[key]}", **headers} if key else headers
        return self.client.post(f"{self.url}/v1/models/{model}/predict", json=body, headers=sent)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", trust_env=False, timeout=5).text

    def logged(self, request_id: str) -> dict[str, Any]:
        engine = sa.create_engine(self.log_url)
        query = sa.select(INFERENCE_LOG).where(INFERENCE_LOG.c.request_id == request_id)
        with engine.connect() as conn:
            rows = {row.route: row for row in conn.execute(query)}
        engine.dispose()
        return rows


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway with real SQL keys and log on SQLite, and a routing table the tests set."""
    home = tmp_path_factory.mktemp("gateway")
    db = f"sqlite:///{home / 'gateway.db'}"
    store = SqlKeyStore(db)
    store.migrate()
    keys = {
        "admin": store.create("ops", None, admin=True)[1],
        "scoped": store.create("team-a", ["other"])[1],
        "limited": store.create("trial", ["*"], rate=1.0)[1],
    }
    log = SqlInferenceLog(db, flush_interval_s=0.05)
    log.migrate()
    tables = StaticTableSource()
    config = GatewayConfig(
        max_body_bytes=MAX_BODY,
        forward=ForwardPolicy(attempts=3, budget_s=3.0, backoff_s=0.01, shadow_timeout_s=5.0),
        breaker_failures=3,
        breaker_cooldown_s=1.0,
    )
    app = GatewayApp(
        key_store=store,
        limiter=InProcessLimiter(),
        inference_log=log,
        tables=tables,
        config=config,
        closers=[store.close],
    )
    with UvicornThread(app) as served, httpx.Client(trust_env=False, timeout=10) as client:
        yield Gateway(served.url, app, tables, keys, db, client)


@pytest.fixture
def stub_server() -> Iterator[tuple[Stub, str]]:
    stub = Stub("stubbed", 9)
    with UvicornThread(stub, lifespan="off") as served:
        yield stub, served.url + ECHO_PATH


def unique_model() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def echo_table(model: str, echoes: dict[int, Echo], **stages: Any) -> RouteTable:
    """A table whose stages (champion=1, canary=2, ...) point at the echo servers."""
    share = stages.pop("canary_share", 0)
    ups = {stage: Upstream(model, v, echoes[v].url) for stage, v in stages.items()}
    return RouteTable(model, canary_share=share, **ups)


# --- routing ----------------------------------------------------------------------------------


def test_canary_share_and_stickiness_over_real_servers(
    gateway: Gateway, echoes: dict[int, Echo]
) -> None:
    model = unique_model()
    gateway.tables.set(echo_table(model, echoes, champion=1, canary=2, canary_share=30))
    callers = [f"user-{i}" for i in range(300)]
    versions = {}
    for caller in callers:
        response = gateway.post(model, **{"X-Routing-Key": caller})
        assert response.status_code == 200, response.text
        # The process that answered is the one the headers name.
        assert response.json()["version"] == response.headers["x-modelyard-version"]
        versions[caller] = response.headers["x-modelyard-version"]
        expected = "canary" if versions[caller] == "2" else "champion"
        assert response.headers["x-modelyard-route"] == expected
    on_canary = sum(v == "2" for v in versions.values())
    sd = math.sqrt(300 * 0.3 * 0.7)
    assert abs(on_canary - 90) <= 4.5 * sd, f"{on_canary} of 300 callers on the canary at 30%"
    assert on_canary == sum(caller_bucket(model, c) < 3000 for c in callers)
    for caller in callers[:30]:
        again = gateway.post(model, **{"X-Routing-Key": caller})
        assert again.headers["x-modelyard-version"] == versions[caller], "a caller must stick"


def test_promotion_is_visible_in_the_headers_as_soon_as_the_table_changes(
    gateway: Gateway, echoes: dict[int, Echo]
) -> None:
    model = unique_model()
    gateway.tables.set(echo_table(model, echoes, champion=1))
    assert gateway.post(model).headers["x-modelyard-version"] == "1"
    gateway.tables.set(echo_table(model, echoes, champion=2))
    response = gateway.post(model)
    assert response.headers["x-modelyard-version"] == "2"
    assert response.headers["x-modelyard-route"] == "champion"
    assert response.json()["version"] == "2"


def test_registry_polling_routes_a_promotion_within_seconds(echoes: dict[int, Echo]) -> None:
    """The registry-backed table source on a real gateway: change the state, see the header."""

    @dataclass(frozen=True)
    class Running:
        model: str
        version: int
        url: str
        state: str = "running"

    model = unique_model()
    state = {"now": ServingState(model, champion=1)}
    running = [Running(model, v, echoes[v].server.url) for v in (1, 2)]
    tables = RegistryTableSource(
        lambda name: state["now"], lambda: running, interval_s=0.2, predict_path=ECHO_PATH
    )
    key = "my_polling000_secret"

    app = GatewayApp(
        key_store=MemoryKeyStore({key: ApiKey("polling000", "ops", None, admin=True)}),
        limiter=InProcessLimiter(),
        inference_log=MemoryLog(),
        tables=tables,
    )
    with UvicornThread(app) as served:
        url, headers = f"{served.url}/v1/models/{model}/predict", {"X-API-Key": key}
        first = httpx.post(url, json=BODY, headers=headers, trust_env=False, timeout=5)
        assert first.headers["x-modelyard-version"] == "1"
        state["now"] = ServingState(model, champion=2)
        changed_at = time.monotonic()
        while time.monotonic() - changed_at < 5:
            response = httpx.post(url, json=BODY, headers=headers, trust_env=False, timeout=5)
            if response.headers["x-modelyard-version"] == "2":
                break
            time.sleep(0.05)
        took = time.monotonic() - changed_at
        assert response.headers["x-modelyard-version"] == "2", "promotion never showed"
        assert took < 2.0, f"promotion took {took:.2f} s to show"


# --- every status over HTTP -------------------------------------------------------------------


def test_every_error_status_is_json_with_a_clear_message(
    gateway: Gateway, echoes: dict[int, Echo], stub_server: tuple[Stub, str]
) -> None:
    model = unique_model()
    gateway.tables.set(echo_table(model, echoes, champion=1))
    url = f"{gateway.url}/v1/models/{model}/predict"
    admin = {"Authorization": f"Bearer {gateway.keys['admin']}"}

    def check(response: httpx.Response, status: int, error_type: str, words: str) -> None:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error["type"] == error_type and words in error["message"], error
        assert error["request_id"] == response.headers["x-request-id"]

    assert gateway.post(model).status_code == 200
    check(gateway.post(model, key=""), 401, "Unauthorized", "no API key")
    wrong = {"Authorization": "Bearer my_aaaaaaaaaa_wrongsecret"}
    check(gateway.post(model, key="", **wrong), 401, "Unauthorized", "not valid")
    check(gateway.post(model, key="scoped"), 403, "Forbidden", f"may not call model {model!r}")
    check(gateway.post("no-such-model"), 404, "UnknownModel", "no model named 'no-such-model'")
    malformed = httpx.post(url, content=b'{"payload": ', headers=admin, trust_env=False)
    check(malformed, 400, "BadRequest", "not valid JSON")
    huge = {"payload": {"x": "y" * (MAX_BODY + 1)}}
    check(gateway.post(model, body=huge), 413, "PayloadTooLarge", f"at most {MAX_BODY}")
    assert gateway.post(model, key="limited").status_code == 200
    limited = gateway.post(model, key="limited")
    check(limited, 429, "RateLimited", "over its limit of 1 requests per second")
    assert limited.headers["retry-after"] == "1"
    dead = unique_model()
    gateway.tables.set(
        RouteTable(dead, champion=Upstream(dead, 1, f"http://127.0.0.1:{free_port()}/echo"))
    )
    check(
        gateway.post(dead), 503, "NoHealthyUpstream", f"no version of model {dead!r} could answer"
    )


def test_upstream_4xx_passes_through_untouched(
    gateway: Gateway, echoes: dict[int, Echo], stub_server: tuple[Stub, str]
) -> None:
    stub, stub_url = stub_server
    model = unique_model()
    gateway.tables.set(RouteTable(model, champion=Upstream(model, 9, stub_url)))
    stub.status = 422
    response = gateway.post(model)
    assert response.status_code == 422
    assert response.json() == {
        "error": "the rows do not match the model's input contract",
        "fields": ["x"],
    }
    assert stub.calls == 1, "a 422 is the model's verdict: never retried"
    # BentoML's own 400 for a body its API does not take passes through as well.
    echo_model = unique_model()
    gateway.tables.set(echo_table(echo_model, echoes, champion=1))
    bento_400 = gateway.post(echo_model, body={"dataframe_records": [{"a": 1}]})
    assert bento_400.status_code == 400 and "validation error" in bento_400.json()["error"]


# --- shadow, fallback, breaker ----------------------------------------------------------------


def test_a_slow_shadow_never_delays_the_caller_and_both_answers_are_logged(
    gateway: Gateway, echoes: dict[int, Echo], stub_server: tuple[Stub, str]
) -> None:
    stub, stub_url = stub_server
    stub.delay_s = 1.5
    model = unique_model()
    table = echo_table(model, echoes, champion=1)
    gateway.tables.set(table)
    baseline = min(_timed(lambda: gateway.post(model)) for _ in range(5))
    gateway.tables.set(
        RouteTable(model, champion=table.champion, shadow=Upstream(model, 9, stub_url))
    )
    timings, request_ids = [], []
    for _ in range(5):
        started = time.perf_counter()
        response = gateway.post(model)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.headers["x-modelyard-version"] == "1"
        request_ids.append(response.headers["x-request-id"])
    assert max(timings) < baseline + 0.5, f"callers waited {max(timings):.3f} s with a 1.5 s shadow"
    deadline = time.monotonic() + 10
    while set(gateway.logged(request_ids[-1])) != {"champion", "shadow"}:
        assert time.monotonic() < deadline, "the shadow's answer never reached the log"
        time.sleep(0.1)
    rows = gateway.logged(request_ids[-1])
    assert rows["shadow"].version == 9 and rows["champion"].version == 1
    assert rows["shadow"].latency_ms >= 1500 > rows["champion"].latency_ms
    assert stub.calls == 5


def test_fallback_when_an_upstream_is_killed_mid_test(
    gateway: Gateway, echoes: dict[int, Echo]
) -> None:
    """v3 is champion with v1 as the previous champion; v3 dies under load: no caller fails."""
    model = unique_model()
    gateway.tables.set(echo_table(model, echoes, champion=3, previous=1))
    results: list[tuple[int, str, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(trust_env=False, timeout=10) as client:
            headers = {"Authorization": f"Bearer {gateway.keys['admin']}"}
            while not stop.is_set():
                r = client.post(
                    f"{gateway.url}/v1/models/{model}/predict", json=BODY, headers=headers
                )
                results.append((r.status_code, r.headers.get("x-modelyard-version", ""),
                                r.headers.get("x-modelyard-route", "")))  # fmt: skip

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(load) for _ in range(4)]
        _wait_until(lambda: len(results) >= 40, 20, "load before the kill")
        echoes[3].kill()
        killed_at = len(results)
        _wait_until(lambda: len(results) >= killed_at + 80, 30, "load after the kill")
        stop.set()
        for worker in workers:
            worker.result()
    assert {status for status, _, _ in results} == {200}, "a caller saw the kill"
    assert {v for _, v, _ in results[:killed_at]} == {"3"}
    after = results[killed_at + 8 :]
    assert {(v, route) for _, v, route in after} == {("1", "fallback")}
    metrics = gateway.metrics()
    assert f'circuit_state{{model="{model}",url="{echoes[3].url}",version="3"}} 2.0' in metrics
    assert f'fallbacks_total{{from_version="3",model="{model}",to_version="1"}}' in metrics


def test_breaker_opens_on_5xx_and_probes_after_the_cooldown(
    gateway: Gateway, echoes: dict[int, Echo], stub_server: tuple[Stub, str]
) -> None:
    stub, stub_url = stub_server
    stub.status = 500
    model = unique_model()
    canary = Upstream(model, 9, stub_url)
    champion = Upstream(model, 1, echoes[1].url)
    gateway.tables.set(RouteTable(model, champion=champion, canary=canary, canary_share=100))
    for _ in range(6):
        response = gateway.post(model)
        assert response.status_code == 200 and response.headers["x-modelyard-route"] == "champion"
    assert stub.calls == 3, "three 500s open the breaker; the canary is then skipped"
    state = f'circuit_state{{model="{model}",url="{stub_url}",version="9"}}'
    assert f"{state} 2.0" in gateway.metrics()
    stub.status = 200
    time.sleep(1.1)  # the cooldown: the next request is the probe
    response = gateway.post(model)
    assert response.headers["x-modelyard-route"] == "canary" and stub.calls == 4
    assert f"{state} 0.0" in gateway.metrics()


# --- metrics and logs -------------------------------------------------------------------------


def test_metrics_text_has_every_family(gateway: Gateway, echoes: dict[int, Echo]) -> None:
    model = unique_model()
    gateway.tables.set(echo_table(model, echoes, champion=1))
    gateway.post(model)
    response = httpx.get(f"{gateway.url}/metrics", trust_env=False)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for family in (
        "modelyard_gateway_requests_total",
        "modelyard_gateway_errors_total",
        "modelyard_gateway_request_duration_seconds_bucket",
        "modelyard_gateway_overhead_seconds_bucket",
        "modelyard_gateway_rate_limited_total",
        "modelyard_gateway_circuit_state",
        "modelyard_gateway_shadow_requests_total",
        "modelyard_gateway_shadow_disagreement_ratio",
    ):
        assert family in response.text, family
    assert (
        f'requests_total{{model="{model}",route="champion",status="200",version="1"}}'
        in response.text
    )


def test_no_key_in_any_log_line(
    gateway: Gateway, echoes: dict[int, Echo], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    model = unique_model()
    gateway.tables.set(echo_table(model, echoes, champion=1))
    gateway.post(model)
    gateway.post(model, key="scoped")
    gateway.post(model, key="", **{"Authorization": "Bearer my_bbbbbbbbbb_not-a-secret-1"})
    gateway.post(model, key="", **{"X-API-Key": "not-a-secret-2"})
    gateway.post(model, key="", **{"Authorization": "not-a-secret-3"})
    dead = unique_model()
    gateway.tables.set(
        RouteTable(dead, champion=Upstream(dead, 1, f"http://127.0.0.1:{free_port()}/echo"))
    )
    assert gateway.post(dead).status_code == 503
    lines = [record.getMessage() for record in caplog.records]
    assert any("could answer" in line for line in lines), "the 503 should have been logged"
    secrets = [*gateway.keys.values(), "not-a-secret-1", "not-a-secret-2", "not-a-secret-3"]
    for line in lines:
        for secret in secrets:
            assert secret not in line


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# --- the production wiring --------------------------------------------------------------------


def test_build_app_follows_the_registry_and_the_local_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``server.build_app`` with every default (SQL keys and log, registry-backed tables over
    the local target's ``bentoml serve`` processes): a promotion in the MLflow registry shows
    in the response headers within seconds, without a restart."""
    from infra.local.target import LocalTarget
    from infra.targets import Deployment
    from modelyard.settings import get_settings
    from registry.mlflow_registry import MlflowRegistry
    from registry.types import Stage
    from serving.gateway.server import GatewaySettings, build_app

    home = tmp_path / "home"
    monkeypatch.setenv("MODELYARD_HOME", str(home))
    monkeypatch.setenv("MODELYARD_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MODELYARD_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_home()
    model = unique_model()
    registry = MlflowRegistry.from_settings(settings)
    for _ in range(2):
        registry.register_version(model, str(tmp_path))
    registry.set_alias(model, Stage.CHAMPION.value, 1)
    key = SqlKeyStore.from_settings(settings)
    key.migrate()
    _, secret = key.create("ops", None, admin=True)
    target = LocalTarget(settings)
    try:
        target.deploy_all(
            [Deployment(model, v, Stage.CHAMPION if v == 1 else Stage.CANARY, "service:Echo",
                        ECHO_DIR) for v in (1, 2)]
        )  # fmt: skip
        gateway = GatewaySettings(predict_path=ECHO_PATH, poll_interval_s=0.3)
        app = build_app(settings, list_running=target.status, gateway=gateway)
        with UvicornThread(app) as served, httpx.Client(trust_env=False, timeout=10) as client:
            url = f"{served.url}/v1/models/{model}/predict"
            headers = {"Authorization": f"Bearer {secret}"}
            first = client.post(url, json=BODY, headers=headers)
            assert first.status_code == 200, first.text
            assert first.headers["x-modelyard-version"] == "1" == first.json()["version"]
            registry.set_alias(model, Stage.CHAMPION.value, 2)  # the promotion
            promoted_at = time.monotonic()
            while (
                client.post(url, json=BODY, headers=headers).headers["x-modelyard-version"] != "2"
            ):
                assert time.monotonic() - promoted_at < 5, "the promotion never showed"
                time.sleep(0.05)
            assert time.monotonic() - promoted_at < 3
            assert client.post(f"{served.url}/v1/models/nope/predict", headers=headers,
                               json=BODY).status_code == 404  # fmt: skip
    finally:
        target.remove(model)
        get_settings.cache_clear()
    rows = _logged_rows(settings.sql_url, first.headers["x-request-id"])
    assert [(r.route, r.version) for r in rows] == [("champion", 1)]


def _logged_rows(url: str, request_id: str) -> list[Any]:
    engine = sa.create_engine(url)
    query = sa.select(INFERENCE_LOG).where(INFERENCE_LOG.c.request_id == request_id)
    with engine.connect() as conn:
        rows = list(conn.execute(query))
    engine.dispose()
    return rows


# --- the Redis response cache -----------------------------------------------------------------


@pytest.mark.redis
def test_redis_cache_round_trips_and_a_dead_redis_is_a_miss() -> None:
    from serving.gateway.cache import RedisCache, build_cache, cache_key, canonical_input
    from tests.conftest import REDIS_URL

    async def scenario() -> None:
        key = cache_key(unique_model(), 1, canonical_input({"inputs": {"a": [1]}}))
        cache = RedisCache(REDIS_URL, ttl_s=5)
        assert await cache.get(key) is None
        await cache.set(key, b'{"predictions": [1]}')
        assert await cache.get(key) == b'{"predictions": [1]}'
        await cache.close()
        tiered = build_cache(REDIS_URL)
        assert await tiered.get(key) == b'{"predictions": [1]}'  # from Redis into the LRU
        await tiered.close()
        dead = RedisCache(f"redis://127.0.0.1:{free_port()}/0")
        started = time.perf_counter()
        assert await dead.get(key) is None
        await dead.set(key, b"x")  # logged, not raised
        assert time.perf_counter() - started < 1.0
        await dead.close()

    asyncio.run(scenario())
