"""The whole loop on embedded defaults, as one story (``make demo``; a smaller one in the e2e test).

train v1 → champion → serve behind the gateway → traffic with labels → the world changes → the
monitor finds drift and writes its report → retrain → v2 shadow → canary steps → champion; then a
stale candidate (trained on the old world) that live labels expose and the loop rolls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import pandas as pd

from modelyard.settings import Settings
from monitoring.verdict import MonitoringPolicy
from pipelines.config import parse_train_config
from pipelines.demo.world import Batch, as_frame, penguins, sample
from pipelines.flows.monitor import MonitorResult, run_monitoring
from pipelines.flows.retrain import run_retraining
from pipelines.flows.train import TrainResult, train
from pipelines.steps.rollout import RolloutStep, advance_model
from registry.policy import PromotionPolicy, parse_policy
from registry.promotion import Promoter, open_promoter

DEFAULT_MODEL = "penguins"
CHANGE_REASON = "rollout step"


class Narrator(Protocol):
    def chapter(self, title: str) -> None: ...

    def say(self, text: str) -> None: ...


@dataclass(frozen=True)
class DemoSize:
    """How much traffic each phase sends; the e2e test uses a smaller one."""

    baseline: int = 300
    changed: int = 400
    per_step: int = 120
    concurrency: int = 8


@dataclass
class DemoReport:
    model: str = DEFAULT_MODEL
    trained: list[TrainResult] = field(default_factory=list)
    monitors: list[MonitorResult] = field(default_factory=list)
    rollout: list[RolloutStep] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    verdict_to_canary_s: float | None = None
    requests_sent: int = 0
    errors: int = 0


def demo_policy() -> PromotionPolicy:
    """Short observation windows, so the story fits in minutes; the gates are the real ones."""
    return parse_policy(
        {
            "min_improvement": 0.0,
            "require_approval_for_champion": True,
            "shadow": {"min_observation": {"requests": 80, "minutes": 0}},
            "canary": {"steps": [25, 50, 100], "min_observation": {"requests": 40, "minutes": 0}},
            "rollback": {"max_error_rate": 0.05, "max_quality_drop": 0.05},
        }
    )


def monitoring_policy() -> MonitoringPolicy:
    return MonitoringPolicy(min_window_rows=150, max_quality_drop=0.1)


def run_story(settings: Settings, narrator: Narrator, size: DemoSize = DemoSize()) -> DemoReport:
    """Tell the story; every process it starts is stopped before it returns.

    The model is ``penguins``, or ``penguins-2``, ``-3``... when an earlier run left one: each
    run starts from a first version, as the story needs.
    """
    from infra.targets import get_target

    promoter = open_promoter(settings, actor="modelyard-demo")
    report = DemoReport(model=free_model_name(promoter))
    target = get_target("local", settings)
    try:
        with _gateway(settings, target) as url:
            scene = Scene(settings, narrator, report, promoter, target, url, size, report.model)
            scene.tell()
    finally:
        target.remove(report.model)
    return report


def free_model_name(promoter: Promoter) -> str:
    taken = {m.name for m in promoter.registry.list_models()}
    if DEFAULT_MODEL not in taken:
        return DEFAULT_MODEL
    return next(
        f"{DEFAULT_MODEL}-{n}" for n in range(2, 10_000) if f"{DEFAULT_MODEL}-{n}" not in taken
    )


@dataclass
class Scene:
    """Everything the chapters share: the stores, the served model, the gateway, the traffic."""

    settings: Settings
    narrator: Narrator
    report: DemoReport
    promoter: Promoter
    target: Any
    gateway: str
    size: DemoSize
    model: str
    key: str = ""
    base: pd.DataFrame = field(default_factory=penguins)

    def tell(self) -> None:
        self.key = _api_key(self.settings, self.model)
        verdict, verdict_at = self.detect()
        if verdict.action != "retrain":
            self.narrator.say("the monitor did not ask for retraining: the story stops here")
            return
        with _timed(self.report, "retrain"):
            self.narrator.chapter("6. Retrain on recent labelled traffic (the retrain flow)")
            second = run_retraining(self.model, reason="; ".join(verdict.reasons))
            self.report.trained.append(second)
            self.narrator.say(
                f"v{second.version}: accuracy {second.metrics['accuracy']:.3f} vs champion "
                f"v{second.champion_version} {second.champion_metrics.get('accuracy', 0):.3f}"
                " on the same rows"
            )
        with _timed(self.report, "rollout v2"):
            self.narrator.chapter("7. Roll out: shadow, canary steps, champion (advance steps)")
            self.advance_until_settled(first_seed=10, verdict_at=verdict_at)
        with _timed(self.report, "round 2"):
            self.narrator.chapter("8. Round two: a stale candidate trained on the old world")
            self.stale_round()

    def detect(self) -> tuple[MonitorResult, float]:
        """Chapters 1-5: train, serve, traffic, change, drift verdict (and when it came)."""
        with _timed(self.report, "train v1"):
            self.narrator.chapter("1. Train v1 on the built-in penguins data (Prefect flow)")
            first = asyncio.run(train(parse_train_config(_config(self.model))))
            self.report.trained.append(first)
            self.narrator.say(
                f"{self.model} v{first.version} registered, accuracy "
                f"{first.metrics['accuracy']:.3f}, champion: {first.became_champion}"
            )
        with _timed(self.report, "serve v1"):
            self.narrator.chapter("2. Build its Bento and serve it behind the gateway")
            self.sync()
            _wait_until_routable(
                self.gateway, self.key, self.model, sample(self.base, 1, 0).rows[0]
            )
        with _timed(self.report, "traffic, old world"):
            self.narrator.chapter(
                f"3. {self.size.baseline} requests from today's world, labels arrive later"
            )
            self.traffic(sample(self.base, self.size.baseline, 1))
            self.monitor(self.size.baseline)
        with _timed(self.report, "traffic, changed world"):
            self.narrator.chapter(
                "4. The world changes: longer bills and flippers, heavier birds, Dream re-labelled"
            )
            self.traffic(sample(self.base, self.size.changed, 2, changed=True))
        with _timed(self.report, "monitor"):
            self.narrator.chapter("5. The drift job judges the last window against the reference")
            verdict = self.monitor(self.size.changed)
        return verdict, time.perf_counter()

    def stale_round(self) -> None:
        stale = self.settings.home / "datasets" / f"{self.model}-old-world.parquet"
        stale.parent.mkdir(parents=True, exist_ok=True)
        as_frame(sample(self.base, 400, 99)).to_parquet(stale, index=False)
        third = asyncio.run(train(parse_train_config(_config(self.model, path=str(stale)))))
        self.report.trained.append(third)
        self.narrator.say(
            f"v{third.version}: accuracy {third.metrics['accuracy']:.3f} on its own held-out "
            f"rows, champion {third.champion_metrics.get('accuracy', 0):.3f}"
        )
        self.advance_until_settled(first_seed=50)

    def advance_until_settled(
        self, *, first_seed: int, verdict_at: float | None = None, max_steps: int = 12
    ) -> None:
        """Advance, send a batch of changed-world traffic, advance again, until it settles."""
        for seed in range(first_seed, first_seed + max_steps):
            step = self.advance()
            if step.change == "canary" and verdict_at and self.report.verdict_to_canary_s is None:
                self.report.verdict_to_canary_s = time.perf_counter() - verdict_at
            if step.change in ("champion", "rolled back", "nothing to do"):
                return
            self.traffic(sample(self.base, self.size.per_step, seed, changed=True))

    def advance(self) -> RolloutStep:
        step = advance_model(
            self.settings, self.promoter, self.model, policy=demo_policy(), approve=True
        )
        self.report.rollout.append(step)
        reasons = f" ({'; '.join(step.reasons)[:160]})" if step.reasons else ""
        self.narrator.say(f"advance: v{step.version} {step.change}{reasons}")
        if step.applied:
            self.sync()
        return step

    def sync(self) -> None:
        from infra.sync import sync_serving

        deployed = sync_serving(self.settings, self.target, self.model)
        self.narrator.say(
            "serving: "
            + ", ".join(f"v{d.version} {d.stage} {d.traffic}% at {d.url}" for d in deployed)
        )

    def monitor(self, rows: int) -> MonitorResult:
        result = run_monitoring(
            self.settings, self.model, last_rows=rows, policy=monitoring_policy()
        )
        self.report.monitors.append(result)
        drifted = (
            ", ".join(
                f"{c['column']} ({c['method']} {c['score']:.3g})" for c in result.drifted_columns
            )
            or "none"
        )
        say = self.narrator.say
        say(f"{len(result.drifted_columns)}/{len(result.columns)} columns drifted: {drifted}")
        say(
            f"dataset drift: {'yes' if result.drifted else 'no'}; action: {result.action}; "
            f"report: {result.report_html}"
        )
        for reason in result.reasons:
            say(f"  {reason}")
        return result

    def traffic(self, batch: Batch) -> None:
        """Send each row as one request from one of 50 callers, then post its label."""
        url = self.settings.sql_url
        before = _logged(url, self.model)
        sent, failed = asyncio.run(
            _send_all(self.gateway, self.key, self.model, batch, self.size.concurrency)
        )
        self.report.requests_sent += sent
        self.report.errors += failed
        _wait_for_log(url, self.model, before + sent - failed)


async def _send_all(
    gateway: str, key: str, model: str, batch: Batch, concurrency: int
) -> tuple[int, int]:
    limit = asyncio.Semaphore(concurrency)
    failures = 0
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=30) as client:

        async def one(index: int) -> None:
            nonlocal failures
            async with limit:
                answer = await client.post(
                    f"/v1/models/{model}/predict",
                    json={"dataframe_records": [batch.rows[index]]},
                    headers={"x-routing-key": f"caller-{index % 50}"},
                )
                if answer.status_code != 200:
                    failures += 1
                    return
                await client.post(
                    "/v1/feedback",
                    json={
                        "request_id": answer.headers["x-request-id"],
                        "labels": [batch.labels[index]],
                    },
                )

        await asyncio.gather(*(one(i) for i in range(len(batch.rows))))
    return len(batch.rows), failures


def _logged(url: str, model: str) -> int:
    from monitoring.inference_log import read_requests

    frame = read_requests(url, model)
    return int((frame["route"] != "shadow").sum()) if len(frame) else 0


def _wait_for_log(url: str, model: str, rows: int, timeout_s: float = 15.0) -> None:
    """The gateway writes its log in batches off the request path, and shadow answers after the
    live ones: wait until the live rows are in and the log stops growing."""
    from monitoring.inference_log import read_requests

    deadline = time.monotonic() + timeout_s
    last = -1
    while time.monotonic() < deadline:
        frame = read_requests(url, model)
        live = int((frame["route"] != "shadow").sum()) if len(frame) else 0
        if live >= rows and len(frame) == last:
            return
        last = len(frame)
        time.sleep(0.4)


def _wait_until_routable(
    gateway: str, key: str, model: str, row: dict[str, Any], timeout_s: float = 30.0
) -> None:
    """The gateway learns what serves by polling the registry (~1 s): wait for a first answer."""
    deadline = time.monotonic() + timeout_s
    headers = {"authorization": f"Bearer {key}"}
    time.sleep(1.2)  # one poll of the gateway's routing table
    while time.monotonic() < deadline:
        answer = httpx.post(
            f"{gateway}/v1/models/{model}/predict",
            headers=headers,
            json={"dataframe_records": [row]},
            timeout=10,
        )
        if answer.status_code == 200:
            return
        time.sleep(0.3)


def _api_key(settings: Settings, model: str) -> str:
    from serving.gateway.keys import SqlKeyStore

    store = SqlKeyStore.from_settings(settings)
    store.migrate()
    _, raw = store.create(f"demo-{uuid.uuid4().hex[:6]}", [model])
    store.close()
    return raw


def _config(model: str, path: str | None = None) -> dict[str, Any]:
    return {
        "model_name": model,
        "data": {"path": path} if path else {"builtin": "penguins"},
        "target": "species",
        "task": "classification",
        "intended_use": "Demo: penguin species from body measurements.",
        "limitations": "Trained on three islands of the Palmer archipelago, 2007-2009.",
        "retrain": {"data": "labelled", "labelled_rows": 400},
    }


@contextlib.contextmanager
def _timed(report: DemoReport, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        report.timings[name] = time.perf_counter() - started


@contextlib.contextmanager
def _gateway(settings: Settings, target: Any) -> Iterator[str]:
    """The real gateway (uvicorn) on a free loopback port, in a thread of this process."""
    import uvicorn

    from serving.gateway.server import build_app

    app = build_app(settings, list_running=lambda: target.status(None))
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="on", access_log=False, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
