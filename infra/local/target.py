"""The ``local`` deploy target: each version is a ``bentoml serve`` process on a loopback port.

Everything another shell needs (versions, ports, pids, traffic shares) is in the state file, so
``status``, ``remove`` and ``set_traffic`` work from any process. Records are written before a
server is waited on and removed before it is stopped: a supervisor reading the file never restarts
a version that is being removed, and a start cut short leaves a record that ``remove`` can clean.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from infra.errors import DeployError, ServerStartFailed, VersionNotDeployed
from infra.local.process import (
    HOST,
    ServerSpec,
    StartedServer,
    free_port,
    is_alive,
    port_is_free,
    start_server,
    stop_server,
    wait_ready,
)
from infra.local.state import ModelState, ProcessRecord, load_state, locked_state, state_path
from infra.targets import (
    DeployedVersion,
    Deployment,
    DeployState,
    DeployTarget,
    rebalance_traffic,
    register_target,
    sort_key,
    validate_traffic,
)

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)


def bentoml_home(settings: Settings) -> Path:
    """``BENTOML_HOME`` when set, else ``<home>/bentoml``.

    Must match ``serving.bento.build.bentoml_home``, which builds the Bentos we serve; it is
    repeated here because infra should not import the Bento builder (and bentoml) to serve.
    """
    explicit = os.environ.get("BENTOML_HOME")
    return Path(explicit).expanduser().resolve() if explicit else settings.home / "bentoml"


@register_target("local")
class LocalTarget(DeployTarget):
    """Versions served by ``bentoml serve`` processes on this machine's loopback interface."""

    def __init__(
        self,
        settings: Settings,
        *,
        ready_timeout: float = 120.0,
        stop_timeout: float = 10.0,
        cancel: threading.Event | None = None,
    ) -> None:
        super().__init__(settings)
        self.state_file = state_path(settings.home)
        self.log_dir = self.state_file.parent / "logs"
        self.bentoml_home = bentoml_home(settings)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        # Set by a supervisor on SIGINT/SIGTERM so a start in progress stops waiting.
        self.cancel = cancel
        # Servers this object started, kept to collect their exit status (no zombies).
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # --- the port ---------------------------------------------------------------------------

    def deploy(self, spec: Deployment) -> DeployedVersion:
        """Start ``spec`` unless it already runs; see :meth:`DeployTarget.deploy`.

        Raises ``ServerStartFailed`` with the server's log tail, ``DeployCancelled``.
        """
        return self.deploy_all([spec])[0]

    def deploy_all(self, specs: Iterable[Deployment]) -> list[DeployedVersion]:
        """Start every spec at once, then wait for each: N versions take about as long as one.

        On failure the servers this call started are stopped and forgotten. Raises
        ``ServerStartFailed``, ``DeployCancelled`` or ``DeployError`` for a version given twice.
        """
        wanted = list(specs)
        _refuse_duplicates(wanted)
        started: list[tuple[Deployment, StartedServer]] = []
        try:
            for spec in wanted:
                server = self._launch(spec)
                if server is not None:
                    started.append((spec, server))
            for spec, server in started:
                self._await(spec.model, spec.version, server)
        except BaseException:
            self._discard(started)
            raise
        return [self._deployed(spec.model, spec.version) for spec in wanted]

    def set_traffic(self, model: str, shares: Mapping[int, int]) -> None:
        """Store ``model``'s shares. Raises ``InvalidTraffic`` or ``VersionNotDeployed``."""
        with locked_state(self.state_file) as state:
            entry = state.model(model)
            entry.traffic = validate_traffic(model, shares, entry.stages())

    def status(self, model: str | None = None) -> list[DeployedVersion]:
        """Versions in the state file with their live state. Raises ``StateCorrupted``."""
        state = load_state(self.state_file)
        found = [
            _to_deployed(name, record, entry.traffic.get(version, 0))
            for name, entry in state.models.items()
            if model is None or name == model
            for version, record in entry.versions.items()
        ]
        return sorted(found, key=sort_key)

    def remove(self, model: str, version: int | None = None) -> list[DeployedVersion]:
        """Forget the version(s), then stop their processes (in parallel).

        Raises ``VersionNotDeployed`` for a named version that is not in the state.
        """
        with locked_state(self.state_file) as state:
            entry = state.model(model)
            if version is not None and version not in entry.versions:
                raise VersionNotDeployed(model, version, entry.versions)
            chosen = [version] if version is not None else sorted(entry.versions)
            shares = dict(entry.traffic)
            removed = [entry.versions.pop(v) for v in chosen]
            entry.traffic = rebalance_traffic(entry.traffic, entry.stages())
        result = [_to_deployed(model, record, shares.get(record.version, 0)) for record in removed]
        self._stop_all(removed)
        return result

    # --- for the supervisor -----------------------------------------------------------------

    def models(self) -> list[str]:
        """Models with a version or a supervisor in the state."""
        return sorted(load_state(self.state_file).models)

    def desired(self, model: str) -> list[Deployment]:
        """What the state says should run for ``model`` (the supervisor's to-do list)."""
        entry = load_state(self.state_file).models.get(model, ModelState())
        return [_to_spec(model, record) for _, record in sorted(entry.versions.items())]

    def record(self, model: str, version: int) -> ProcessRecord | None:
        """The stored record of one version, or None."""
        return load_state(self.state_file).models.get(model, ModelState()).versions.get(version)

    def restart(self, model: str, version: int, *, restarts: int | None = None) -> DeployedVersion:
        """Stop what is left of a version's server and start it again, on its port when free.

        Stores ``restarts`` as its restart count (default: one more than before). Raises
        ``VersionNotDeployed`` when the version is no longer in the state, ``ServerStartFailed``
        (the version stays, marked crashed), ``DeployCancelled``.
        """
        record = self.record(model, version)
        if record is None:
            raise VersionNotDeployed(model, version, [])
        count = record.restarts + 1 if restarts is None else restarts
        self._stop_record(record)
        server = self._launch(_to_spec(model, record), previous=record, restarts=count)
        if server is None:  # another process restarted it meanwhile
            return self._deployed(model, version)
        try:
            self._await(model, version, server)
        except ServerStartFailed:
            self._stop_started(server)
            self.mark(model, version, DeployState.CRASHED, instance=server.spec.instance)
            raise
        return self._deployed(model, version)

    def mark(
        self, model: str, version: int, state: DeployState, *, instance: str | None = None
    ) -> None:
        """Record ``state`` for a version (only for server ``instance`` when given)."""
        with locked_state(self.state_file) as current:
            record = current.model(model).versions.get(version)
            if record is not None and instance in (None, record.instance):
                record.state = state

    # --- starting and stopping --------------------------------------------------------------

    def _launch(
        self, spec: Deployment, *, previous: ProcessRecord | None = None, restarts: int = 0
    ) -> StartedServer | None:
        """Start ``spec``'s server and record it; None when it already runs as asked."""
        if previous is None:
            previous = self.record(spec.model, spec.version)
            if previous is not None and _serves(previous, spec):
                self._set_stage(spec)
                return None
            if previous is not None:  # dead, or another Bento: its workers may hold the port
                self._stop_record(previous)
        with locked_state(self.state_file) as state:
            entry = state.model(spec.model)
            current = entry.versions.get(spec.version)
            if _instance(current) != _instance(previous):
                if current is None:  # removed meanwhile (a restart racing a remove)
                    raise VersionNotDeployed(spec.model, spec.version, entry.versions)
                if _serves(current, spec):  # another process started it meanwhile
                    return None
                raise DeployError(f"{spec.model} v{spec.version} changed while starting; retry")
            port = _choose_port(previous.port if previous else None)
            server, child = start_server(self._server_spec(spec, port))
            self._children[server.pid] = child
            entry.versions[spec.version] = _new_record(spec, server, restarts)
            entry.traffic = rebalance_traffic(entry.traffic, entry.stages())
        logger.info("started %s v%s (pid %s) on %s", spec.model, spec.version, server.pid, port)
        return server

    def _await(self, model: str, version: int, server: StartedServer) -> None:
        """Wait for readiness, then mark it running; stop it if it was removed meanwhile."""
        child = self._children.get(server.pid)
        wait_ready(server, timeout=self.ready_timeout, cancel=self.cancel, child=child)
        with locked_state(self.state_file) as state:
            record = state.model(model).versions.get(version)
            if record is not None and record.instance == server.spec.instance:
                record.state = DeployState.RUNNING
                return
        self._stop_started(server)
        raise DeployError(f"{model} v{version} was removed while it started")

    def _discard(self, started: list[tuple[Deployment, StartedServer]]) -> None:
        """Undo a failed ``deploy_all``: forget and stop what it started."""
        with locked_state(self.state_file) as state:
            for spec, server in started:
                entry = state.model(spec.model)
                if _instance(entry.versions.get(spec.version)) == server.spec.instance:
                    del entry.versions[spec.version]
                    entry.traffic = rebalance_traffic(entry.traffic, entry.stages())
        for _, server in started:
            self._stop_started(server)

    def _set_stage(self, spec: Deployment) -> None:
        with locked_state(self.state_file) as state:
            entry = state.model(spec.model)
            record = entry.versions.get(spec.version)
            if record is not None:
                record.stage = spec.stage
                entry.traffic = rebalance_traffic(entry.traffic, entry.stages())

    def _stop_started(self, server: StartedServer) -> None:
        child = self._children.pop(server.pid, None)
        pid, start_time, instance = server.pid, server.start_time, server.spec.instance
        stop_server(pid, start_time, instance, timeout=self.stop_timeout, child=child)

    def _stop_record(self, record: ProcessRecord) -> None:
        if record.pid is None:
            return
        child = self._children.pop(record.pid, None)
        if stop_server(
            record.pid, record.start_time, record.instance, timeout=self.stop_timeout, child=child
        ):
            logger.warning("v%s did not stop on SIGTERM; killed it", record.version)

    def _stop_all(self, records: list[ProcessRecord]) -> None:
        if len(records) <= 1:
            for record in records:
                self._stop_record(record)
            return
        with ThreadPoolExecutor(max_workers=len(records)) as pool:
            list(pool.map(self._stop_record, records))

    def _server_spec(self, spec: Deployment, port: int) -> ServerSpec:
        return ServerSpec(
            model=spec.model,
            version=spec.version,
            target=spec.bento_tag,
            port=port,
            instance=f"{spec.model}-v{spec.version}-{uuid.uuid4().hex[:12]}",
            log_path=self.log_dir / f"{spec.model}-v{spec.version}.log",
            bentoml_home=self.bentoml_home,
            working_dir=spec.working_dir,
            env={"MODELYARD_STAGE": spec.stage.value},
        )

    def _deployed(self, model: str, version: int) -> DeployedVersion:
        entry = load_state(self.state_file).models.get(model, ModelState())
        record = entry.versions.get(version)
        if record is None:
            raise VersionNotDeployed(model, version, entry.versions)
        return _to_deployed(model, record, entry.traffic.get(version, 0))


def _refuse_duplicates(specs: list[Deployment]) -> None:
    seen: set[tuple[str, int]] = set()
    for spec in specs:
        key = (spec.model, spec.version)
        if key in seen:
            raise DeployError(f"{spec.model} v{spec.version} is listed twice in one deploy")
        seen.add(key)


def _serves(record: ProcessRecord, spec: Deployment) -> bool:
    """The record's server runs and serves the same Bento from the same place."""
    same_source = record.bento_tag == spec.bento_tag and record.working_dir == _dir(spec)
    return same_source and record.pid is not None and is_alive(record.pid, record.start_time)


def _instance(record: ProcessRecord | None) -> str | None:
    return record.instance if record is not None else None


def _choose_port(preferred: int | None) -> int:
    """The version's previous port when free (stable URLs), else a fresh one from the OS."""
    if preferred is not None and port_is_free(preferred):
        return preferred
    return free_port()


def _dir(spec: Deployment) -> str | None:
    return str(spec.working_dir) if spec.working_dir is not None else None


def _new_record(spec: Deployment, server: StartedServer, restarts: int) -> ProcessRecord:
    return ProcessRecord(
        version=spec.version,
        stage=spec.stage,
        bento_tag=spec.bento_tag,
        working_dir=_dir(spec),
        port=server.spec.port,
        pid=server.pid,
        start_time=server.start_time,
        instance=server.spec.instance,
        state=DeployState.STARTING,
        started_at=time.time(),
        restarts=restarts,
        log=str(server.spec.log_path),
    )


def _to_spec(model: str, record: ProcessRecord) -> Deployment:
    working_dir = Path(record.working_dir) if record.working_dir else None
    return Deployment(model, record.version, record.stage, record.bento_tag, working_dir)


def _to_deployed(model: str, record: ProcessRecord, traffic: int) -> DeployedVersion:
    alive = record.pid is not None and is_alive(record.pid, record.start_time)
    state = record.state if alive or record.state is DeployState.FAILED else DeployState.CRASHED
    return DeployedVersion(
        model=model,
        version=record.version,
        stage=record.stage,
        url=f"http://{HOST}:{record.port}",
        pid=record.pid,
        state=state,
        traffic=traffic,
        bento_tag=record.bento_tag,
        restarts=record.restarts,
    )
