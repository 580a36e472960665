"""Prefect deployments as a data scientist uses them, against a real server on a loopback port.

``scripts/prefect-up.sh`` starts the server (a free port, SQLite in a temporary PREFECT_HOME),
the process work pool and a worker; ``prefect --no-prompt deploy --all`` reads the repository's
prefect.yaml with the dev environment file. Then, on the worker: the train deployment into a
MODELYARD_HOME given as a job variable; and the loop: train, drifted live traffic, the monitor
deployment's verdict event, the automation its trigger made starting the retrain deployment, a new
candidate version. ``scripts/prefect-down.sh`` stops everything by process group, and the fixture
checks that no process it started is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
T = TypeVar("T")
# Live answers of the champion on shifted penguins, written to the inference log as the gateway
# would (run in a subprocess: MLflow's global state stays out of the test process).
LOG_DRIFTED_TRAFFIC = """
import asyncio, uuid
import palmerpenguins
from modelyard.settings import get_settings
from monitoring.inference_log import InferenceRecord
from pipelines.steps.register import load_champion
from pipelines.steps.tracking import connect
from registry.mlflow_registry import MlflowRegistry
from serving.gateway.log_writer import SqlInferenceLog

settings = get_settings()
connect(settings)
registry = MlflowRegistry.from_settings(settings)
champion = registry.get_version("penguins", "champion")
rows = palmerpenguins.load_penguins().drop(columns="species").dropna().head(300)
rows = rows.assign(bill_length_mm=rows.bill_length_mm + 25, body_mass_g=rows.body_mass_g * 1.6)
answers = load_champion(registry, champion).predict(rows)

async def write():
    log = SqlInferenceLog.from_settings(settings)
    log.migrate()
    for inputs, answer in zip(rows.to_dict("records"), answers):
        await log.write(InferenceRecord(
            request_id=uuid.uuid4().hex, model="penguins", version=champion.version,
            route="champion", inputs=[inputs], predictions=[str(answer)], latency_ms=3.0,
            status=200,
        ))
    await log.close()

asyncio.run(write())
"""
EMIT_VERDICT = """
import json, sys
from types import SimpleNamespace
from pipelines.events import emit_verdict
for fields in json.loads(sys.argv[1]):
    assert emit_verdict(SimpleNamespace(**fields)), fields
"""


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    api_url: str
    worker_home: Path
    pids: dict[str, int]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Prefect, Modelyard or MLflow setting."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MODELYARD_", "MLFLOW_"))
    }
    return {**keep, **extra}


def run(
    command: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("prefect-stack")
    state = base / "state"
    env = clean_env(
        PREFECT_HOME=str(base / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="2",
        MODELYARD_PREFECT_STATE=str(state),
        MODELYARD_HOME=str(base / "worker-home"),  # flow runs' state unless told otherwise
        VENV_BIN=str(VENV_BIN),
    )
    pids: dict[str, int] = {}
    try:
        run(["bash", "scripts/prefect-up.sh"], env, timeout=180)
        pids = {n: int((state / f"{n}.pid").read_text()) for n in ("server", "worker")}
        api_url = (state / "api_url").read_text().strip()
        assert api_url.startswith("http://127.0.0.1:")
        yield Stack({**env, "PREFECT_API_URL": api_url}, api_url, base / "worker-home", pids)
    finally:
        subprocess.run(["bash", "scripts/prefect-down.sh"], cwd=ROOT, env=env, timeout=60)
        left = {name: pid for name, pid in pids.items() if alive(pid)}
        for pid in left.values():  # never leave a process behind, even when the script failed
            os.killpg(pid, signal.SIGKILL)
        assert not left, f"prefect-down.sh left {left} running"
        assert not list(state.glob("*.pid"))


def api(stack: Stack, call: Callable[[Any], Awaitable[T]]) -> T:
    """``call(client)`` with a client of this stack's server (not the test harness's)."""
    from prefect.client.orchestration import PrefectClient

    async def main() -> T:
        async with PrefectClient(stack.api_url) as client:
            return await call(client)

    return asyncio.run(main())


def wait_for(what: str, check: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def deployed(stack: Stack) -> dict[str, Any]:
    """``prefect --no-prompt deploy --all`` with the dev environment file, twice (idempotent)."""
    deploy = (
        "set -a; . infra/prefect/env/dev.env; set +a; "
        'exec "$VENV_BIN/prefect" --no-prompt deploy --all'
    )
    for _ in range(2):
        run(["bash", "-c", deploy], stack.env, timeout=180)

    async def read(client: Any) -> dict[str, Any]:
        deployments = await client.read_deployments()
        flows = {f.id: f.name for f in await client.read_flows()}
        return {f"{flows[d.flow_id]}/{d.name}": d for d in deployments}

    return api(stack, read)


def test_every_flow_is_deployed_with_schedules_and_one_retrain_automation(
    stack: Stack, deployed: dict[str, Any]
) -> None:
    assert {"train/penguins", "monitor/penguins", "advance/rollout", "retrain/on-drift"} <= set(
        deployed
    )
    for deployment in deployed.values():
        assert deployment.work_pool_name == "modelyard-process"
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
        ]
        assert deployment.tags == ["modelyard", "dev"]
    assert [
        s.schedule.interval.total_seconds() for s in deployed["monitor/penguins"].schedules
    ] == [3600]
    assert not deployed["monitor/penguins"].schedules[0].active  # dev: schedules start paused
    assert deployed["advance/rollout"].parameters == {"models": None}
    retrain_id = deployed["retrain/on-drift"].id

    async def automations(client: Any) -> list[Any]:
        return [
            a
            for a in await client.read_automations()
            if any(getattr(x, "deployment_id", None) == retrain_id for x in a.actions)
        ]

    [automation] = api(stack, automations)  # deployed twice, still one
    assert automation.name == "modelyard-retrain-on-drift"
    assert automation.trigger.expect == {"modelyard.monitor.verdict"}


def run_on_worker(
    stack: Stack, deployment: Any, timeout: float = 150, **options: Any
) -> tuple[Any, Any]:
    """Start a run of ``deployment`` (``parameters=``, ``job_variables=``) and wait for its end."""

    async def start(client: Any) -> Any:
        return await client.create_flow_run_from_deployment(deployment.id, **options)

    flow_run = api(stack, start)
    return flow_run, final_state(stack, flow_run, timeout)


def final_state(stack: Stack, flow_run: Any, timeout: float = 150) -> Any:
    """Wait for ``flow_run`` to end on the worker; its final state."""

    async def read(client: Any) -> Any:
        state = (await client.read_flow_run(flow_run.id)).state
        return state if state is not None and state.is_final() else None

    return wait_for(f"run {flow_run.name} to finish", lambda: api(stack, read), timeout)


def retrain_runs(stack: Stack, deployment: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async def read(client: Any) -> list[Any]:
        return await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )

    return api(stack, read)


def verdict_events(stack: Stack, flow_run: Any) -> list[Any]:
    """``modelyard.monitor.verdict`` events that Prefect relates to ``flow_run``."""
    from prefect.events.filters import EventFilter, EventNameFilter

    async def read(client: Any) -> list[Any]:
        page = await client.read_events(
            EventFilter(event=EventNameFilter(name=["modelyard.monitor.verdict"])),
            limit=50,  # the server's maximum (the client's default, 100, is refused)
        )
        return list(page.events)

    run_id = f"prefect.flow-run.{flow_run.id}"
    return [e for e in api(stack, read) if any(r.id == run_id for r in e.related)]


def registry_at(home: Path) -> Any:
    from modelyard.settings import Settings
    from registry.mlflow_registry import MlflowRegistry

    return MlflowRegistry.from_settings(
        Settings(home=home, tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    )


def test_train_deployment_runs_on_the_worker_and_registers_a_version(
    stack: Stack, deployed: dict[str, Any], tmp_path: Path
) -> None:
    home = tmp_path / "run-home"
    flow_run, final = run_on_worker(
        stack, deployed["train/penguins"], job_variables={"env": {"MODELYARD_HOME": str(home)}}
    )

    assert final.is_completed(), final
    [version] = registry_at(home).list_versions("penguins")
    assert version.version == 1
    assert version.tags["modelyard.flow_run_id"] == str(flow_run.id)
    assert not (stack.worker_home / "mlflow.db").exists()  # the job variable won


def test_monitor_verdict_starts_retraining_through_the_automation(
    stack: Stack, deployed: dict[str, Any], tmp_path: Path
) -> None:
    """The whole loop on the worker, in the worker's own MODELYARD_HOME."""
    _, trained = run_on_worker(stack, deployed["train/penguins"])
    assert trained.is_completed(), trained
    run([sys.executable, "-c", LOG_DRIFTED_TRAFFIC], stack.env, timeout=120)
    policies = tmp_path / "policies"
    (policies / "monitoring").mkdir(parents=True)
    (policies / "monitoring" / "default.yaml").write_text(
        "min_window_rows: 100\nalert_share: 0.2\nretrain_share: 0.25\n"
    )
    retrain = deployed["retrain/on-drift"]
    before = {r.id for r in retrain_runs(stack, retrain)}

    # Only this run's policy (a job variable) judges 300 rows enough: the default wants 1000.
    monitor_run, judged = run_on_worker(
        stack,
        deployed["monitor/penguins"],
        parameters={"model": "penguins", "last_rows": 300, "since_minutes": None},
        job_variables={"env": {"MODELYARD_POLICY_DIR": str(policies)}},
    )
    assert judged.is_completed(), judged
    [verdict] = wait_for(
        "the monitor's verdict event", lambda: verdict_events(stack, monitor_run) or None, 30
    )
    assert verdict.payload["action"] == "retrain", verdict.payload

    [started] = wait_for(
        "the automation to start retrain/on-drift",
        lambda: [r for r in retrain_runs(stack, retrain) if r.id not in before] or None,
        timeout=60,
    )
    assert started.created_by is not None and started.created_by.type == "AUTOMATION"
    assert started.parameters["model"] == "penguins"
    assert started.parameters["reason"].startswith("monitor verdict: drift share 0.")
    retrained = final_state(stack, started)
    assert retrained.is_completed(), retrained
    newest = registry_at(stack.worker_home).list_versions("penguins")[-1]
    assert newest.version == 2 and "champion" not in newest.aliases  # a candidate
    assert newest.tags["modelyard.retrain_reason"] == started.parameters["reason"]


def test_only_retrain_verdicts_start_retraining(stack: Stack, deployed: dict[str, Any]) -> None:
    """Verdicts sent by ``emit_verdict`` from a plain process (no flow run) reach the trigger."""
    verdict = {
        "version": 3,
        "drifted": True,
        "window_rows": 5000,
        "drifted_columns": [{"column": "bill_length_mm"}],
        "reasons": ["drift share 0.75 reaches 0.5"],
        "quality_delta": None,
        "report_html": "/tmp/report.html",
    }
    events = [
        {**verdict, "model": "calm-model", "action": "none", "drift_share": 0.0},
        {**verdict, "model": "watched-model", "action": "alert", "drift_share": 0.3},
        {**verdict, "model": "drifted-model", "action": "retrain", "drift_share": 0.75},
    ]
    run([sys.executable, "-c", EMIT_VERDICT, json.dumps(events)], stack.env, timeout=60)
    retrain = deployed["retrain/on-drift"]
    sent = {e["model"] for e in events}

    def started_here() -> list[Any]:
        return [r for r in retrain_runs(stack, retrain) if r.parameters.get("model") in sent]

    [started] = wait_for(
        "the automation to start retrain/on-drift", lambda: started_here() or None, 60
    )
    assert started.parameters == {
        "model": "drifted-model",
        "reason": "monitor verdict: drift share 0.75",
    }
    assert started.created_by is not None and started.created_by.type == "AUTOMATION"
    time.sleep(2)  # the other verdicts were sent first: they must not have started anything
    assert [r.id for r in started_here()] == [started.id]
