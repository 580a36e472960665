"""The local deploy target on real ``bentoml serve`` processes (the echo service in
``tests/fixtures``) on ephemeral loopback ports: deploy, status, crash and restart, stop, and no
process left behind, including BentoML's workers, which run in sessions of their own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from typer.testing import CliRunner

from infra.errors import ServerStartFailed
from infra.local.process import MARKER_ENV, group_members, is_alive, marked_processes
from infra.local.supervisor import RestartPolicy, reconcile_once, stop_supervisor
from infra.local.target import LocalTarget
from infra.targets import Deployment, DeployState
from modelyard.settings import Settings
from registry.types import Stage

pytestmark = pytest.mark.slow

ECHO_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "echo_service"
T = TypeVar("T")


def _echo(model: str, version: int, stage: Stage) -> Deployment:
    return Deployment(model, version, stage, "service:Echo", ECHO_DIR)


def _processes_of(model: str) -> list[int]:
    """Every live process started for ``model`` by any test, found by its environment marker."""
    prefix = f"{MARKER_ENV}={model}-v".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path("/proc", entry, "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(prefix) for item in environ.split(b"\0")) and is_alive(int(entry)):
            found.append(int(entry))
    return found


def _wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=5, trust_env=False)


def _echo_version(url: str) -> str:
    response = httpx.post(f"{url}/echo", json={"payload": {"x": 1}}, timeout=5, trust_env=False)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    assert body["payload"] == {"x": 1}
    return str(body["version"])


@pytest.fixture
def home(tmp_path: Path, unique_name: str) -> Iterator[Path]:
    """A fresh state folder; afterwards, stop whatever a test left and prove nothing is left."""
    home = tmp_path / "home"
    yield home
    target = LocalTarget(Settings(home=home))
    for model in target.models():
        stop_supervisor(target, model)
        target.remove(model)
    assert _processes_of(unique_name) == []


@pytest.fixture
def target(home: Path) -> LocalTarget:
    return LocalTarget(Settings(home=home), ready_timeout=60)


def test_two_versions_serve_restart_and_stop_cleanly(target: LocalTarget, unique_name: str) -> None:
    name = unique_name
    deployed = target.deploy_all([_echo(name, 1, Stage.CHAMPION), _echo(name, 2, Stage.CANARY)])

    assert [(d.version, d.stage, d.state) for d in deployed] == [
        (1, Stage.CHAMPION, DeployState.RUNNING),
        (2, Stage.CANARY, DeployState.RUNNING),
    ]
    assert deployed[0].url != deployed[1].url
    for d in deployed:
        assert d.url.startswith("http://127.0.0.1:")
        assert _get(f"{d.url}/readyz").status_code == 200
        assert _echo_version(d.url) == str(d.version)  # each URL is served by its own version

    target.set_traffic(name, {1: 90, 2: 10})
    listed = target.status(name)
    assert [(d.version, d.stage.value, d.url, d.traffic) for d in listed] == [
        (1, "champion", deployed[0].url, 90),
        (2, "canary", deployed[1].url, 10),
    ]

    crashed = target.record(name, 2)
    assert crashed is not None and crashed.pid is not None
    os.kill(crashed.pid, signal.SIGKILL)
    _wait_for(lambda: not is_alive(crashed.pid, crashed.start_time), 5, "the kill")
    assert target.status(name)[1].state is DeployState.CRASHED
    # BentoML's worker outlives its server: it is an orphan now, still holding the port.
    assert marked_processes(crashed.instance) != []

    report = reconcile_once(target, target.desired(name), RestartPolicy())

    assert report.restarted == [(name, 2)]
    assert report.kept == [(name, 1)]
    assert report.errors == []
    restarted = target.record(name, 2)
    assert restarted is not None and restarted.pid != crashed.pid
    assert restarted.restarts == 1
    assert restarted.state is DeployState.RUNNING
    url = f"http://127.0.0.1:{restarted.port}"
    assert _get(f"{url}/readyz").status_code == 200
    assert _echo_version(url) == "2"
    assert marked_processes(crashed.instance) == []  # the orphaned worker is gone
    assert target.traffic(name) == {1: 90, 2: 10}

    records = [target.record(name, 1), restarted]
    removed = target.remove(name)

    assert sorted(d.version for d in removed) == [1, 2]
    for record in records:
        assert record is not None and record.pid is not None
        assert not is_alive(record.pid, record.start_time)
        assert group_members(record.pid) == []
        assert marked_processes(record.instance) == []
    assert target.status(name) == []
    assert _processes_of(name) == []


def test_a_server_that_dies_at_start_reports_its_log(target: LocalTarget, unique_name: str) -> None:
    broken = Deployment(unique_name, 1, Stage.CHAMPION, "service:Missing", ECHO_DIR)

    with pytest.raises(ServerStartFailed) as caught:
        target.deploy(broken)

    message = str(caught.value)
    assert f"server for {unique_name} v1 exited" in message
    assert "before answering /readyz" in message
    assert "Missing" in caught.value.log_tail
    assert caught.value.log_tail in message
    assert caught.value.log_path == target.log_dir / f"{unique_name}-v1.log"
    assert target.status(unique_name) == []
    assert _processes_of(unique_name) == []


@pytest.fixture
def registry_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> Iterator[Path]:
    """Settings for the CLI: this test's home and an SQLite registry in it."""
    from modelyard.settings import get_settings

    monkeypatch.setenv("MODELYARD_HOME", str(home))
    monkeypatch.setenv("MODELYARD_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    for key in ("PREFECT_LOGGING_LEVEL", "MLFLOW_LOGGING_LEVEL"):  # the CLI sets them
        monkeypatch.setenv(key, "WARNING")
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def test_cli_serves_detached_from_the_registry_restarts_and_stops(
    registry_env: Path, monkeypatch: pytest.MonkeyPatch, unique_name: str
) -> None:
    import cli.serve
    from modelyard.settings import get_settings
    from registry.mlflow_registry import MlflowRegistry

    name = unique_name
    registry = MlflowRegistry.from_settings(get_settings())
    for version in (1, 2):
        registry.register_version(name, f"file:///nowhere/{version}")
    registry.set_alias(name, "champion", 1)
    registry.set_alias(name, "canary", 2)
    registry.set_version_tags(name, 2, {"modelyard.canary_traffic": "25"})
    # Building a Bento is serving/bento's job; serve the echo service in its place.
    monkeypatch.setattr(
        cli.serve, "_deployment", lambda _r, _s, model, version, stage: _echo(model, version, stage)
    )
    runner = CliRunner()

    started = runner.invoke(cli.serve.serve_app, [name, "--detach", "--json"])

    assert started.exit_code == 0, started.output
    rows = json.loads(started.stdout)
    assert [(r["version"], r["stage"], r["traffic"], r["state"]) for r in rows] == [
        (1, "champion", 75, "running"),
        (2, "canary", 25, "running"),  # the share the registry records
    ]
    supervisor = rows[0]["supervisor_pid"]
    assert supervisor and is_alive(supervisor)

    os.kill(rows[1]["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        shown = runner.invoke(cli.serve.serve_app, ["status", name, "--json"])
        canary = json.loads(shown.stdout)[1]
        fresh = canary["pid"] != rows[1]["pid"] and canary["state"] == "running"
        return canary if fresh else None

    canary = _wait_for(restarted, 30, "the supervisor to restart the canary")
    assert canary["restarts"] == 1
    assert canary["supervisor_pid"] == supervisor
    assert _echo_version(canary["url"]) == "2"

    stopped = runner.invoke(cli.serve.serve_app, ["stop", name])

    assert stopped.exit_code == 0, stopped.output
    assert f"stopped the supervisor of {name} (pid {supervisor})" in stopped.output
    assert not is_alive(supervisor)
    assert _processes_of(name) == []
    assert json.loads(runner.invoke(cli.serve.serve_app, ["status", "--json"]).stdout) == []


# Runs ``modelyard serve`` in the foreground with the echo service in place of a built Bento.
FOREGROUND_DRIVER = f"""
import sys
from pathlib import Path
import cli.serve
from infra.targets import Deployment
echo = Path({str(ECHO_DIR)!r})
cli.serve._deployment = lambda _r, _s, model, version, stage: Deployment(
    model, version, stage, "service:Echo", echo
)
cli.serve.serve_app(sys.argv[1:], prog_name="modelyard serve")
"""


def test_foreground_serve_stops_everything_on_ctrl_c(
    registry_env: Path, tmp_path: Path, unique_name: str
) -> None:
    from modelyard.settings import get_settings
    from registry.mlflow_registry import MlflowRegistry

    name = unique_name
    registry = MlflowRegistry.from_settings(get_settings())
    registry.register_version(name, "file:///nowhere/1")
    registry.set_alias(name, "champion", 1)
    target = LocalTarget(get_settings())
    command = [sys.executable, "-c", FOREGROUND_DRIVER, name]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as serving:
        try:
            shown = _wait_for(
                lambda: [d for d in target.status(name) if d.state is DeployState.RUNNING],
                60,
                "the foreground command to serve",
            )
            assert _echo_version(shown[0].url) == "1"
            record = target.record(name, 1)
            assert record is not None

            serving.send_signal(signal.SIGINT)
            _, errors = serving.communicate(timeout=30)
        finally:
            if serving.poll() is None:
                serving.kill()

    assert serving.returncode == 0, errors.decode()
    assert f"stopped {name}" in errors.decode()
    assert target.status(name) == []
    assert target.models() == []  # no supervisor left recorded either
    assert marked_processes(record.instance) == []
