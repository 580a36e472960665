"""Keep a model's local servers up: start what is missing, restart what crashed, stop on a signal.

What to run is read from the state file on every tick, so ``deploy`` and ``remove`` from another
shell take effect. One supervisor per model, recorded in the state so ``modelyard serve stop`` can
end it by pid; it stops the model's servers on its way out. :func:`reconcile_once` is one tick
with no loop and no signals; :func:`decide` is its pure core.

Run detached as ``python -m infra.local.supervisor MODEL`` (what ``modelyard serve --detach`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from types import FrameType

from infra.errors import AlreadyServing, DeployCancelled, DeployError
from infra.local.process import is_alive, log_tail, process_start_time
from infra.local.state import ProcessRecord, SupervisorRecord, load_state, locked_state
from infra.local.target import LocalTarget
from infra.targets import Deployment, DeployState

logger = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class RestartPolicy:
    """How hard to try: the first restart is immediate, then the wait doubles up to a cap."""

    max_restarts: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    # A server that stayed up this long has its earlier restarts forgiven.
    stable_after: float = 300.0

    def delay(self, restarts: int) -> float:
        """Seconds to wait after the last start before restart number ``restarts + 1``."""
        if restarts <= 0:
            return 0.0
        return float(min(self.backoff * 2 ** (restarts - 1), self.max_backoff))


class Action(StrEnum):
    DEPLOY = "deploy"  # missing, another Bento, or another stage: deploy() sorts it out
    KEEP = "keep"
    RESTART = "restart"
    WAIT = "wait"  # crashed, in its backoff
    GIVE_UP = "give_up"  # crashed once too often: mark failed
    FAILED = "failed"  # already given up on


@dataclass(frozen=True)
class Decision:
    action: Action
    restarts: int = 0  # restarts so far (after forgiveness) when the action is RESTART


@dataclass
class ReconcileReport:
    """What one tick did, as (model, version) pairs."""

    deployed: list[tuple[str, int]] = field(default_factory=list)
    kept: list[tuple[str, int]] = field(default_factory=list)
    restarted: list[tuple[str, int]] = field(default_factory=list)
    waiting: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def decide(
    spec: Deployment,
    record: ProcessRecord | None,
    alive: bool,
    policy: RestartPolicy,
    now: float,
) -> Decision:
    """What to do about one desired version, given its record and whether its server runs."""
    if record is None or not _same_source(record, spec) or (alive and record.stage != spec.stage):
        return Decision(Action.DEPLOY)
    if alive:
        return Decision(Action.KEEP)
    if record.state is DeployState.FAILED:
        return Decision(Action.FAILED)
    restarts = 0 if now - record.started_at >= policy.stable_after else record.restarts
    if restarts >= policy.max_restarts:
        return Decision(Action.GIVE_UP, restarts)
    if now < record.started_at + policy.delay(restarts):
        return Decision(Action.WAIT, restarts)
    return Decision(Action.RESTART, restarts)


def reconcile_once(
    target: LocalTarget,
    desired: Iterable[Deployment],
    policy: RestartPolicy | None = None,
    now: float | None = None,
) -> ReconcileReport:
    """One supervision tick over ``desired``; a failing version does not stop the others.

    Blocks while servers it (re)starts get ready. Raises ``DeployCancelled`` when the target's
    cancel event is set during a start.
    """
    policy = policy or RestartPolicy()
    report = ReconcileReport()
    for spec in desired:
        record = target.record(spec.model, spec.version)
        decision = decide(
            spec, record, _running(record), policy, time.time() if now is None else now
        )
        try:
            _apply(target, spec, decision, report)
        except DeployCancelled:
            raise
        except DeployError as exc:
            logger.error("%s v%s: %s", spec.model, spec.version, exc)
            report.errors.append(f"{spec.model} v{spec.version}: {exc}")
    return report


def _apply(
    target: LocalTarget, spec: Deployment, decision: Decision, report: ReconcileReport
) -> None:
    key = (spec.model, spec.version)
    if decision.action is Action.DEPLOY:
        target.deploy(spec)
        report.deployed.append(key)
    elif decision.action is Action.RESTART:
        logger.warning("%s v%s is down; restart %d", *key, decision.restarts + 1)
        target.restart(spec.model, spec.version, restarts=decision.restarts + 1)
        report.restarted.append(key)
    elif decision.action is Action.GIVE_UP:
        logger.error("%s v%s crashed %d times; giving up", *key, decision.restarts)
        target.mark(spec.model, spec.version, DeployState.FAILED)
        report.failed.append(key)
    elif decision.action is Action.FAILED:
        report.failed.append(key)
    elif decision.action is Action.WAIT:
        report.waiting.append(key)
    else:
        report.kept.append(key)


def _running(record: ProcessRecord | None) -> bool:
    return record is not None and record.pid is not None and is_alive(record.pid, record.start_time)


def _same_source(record: ProcessRecord, spec: Deployment) -> bool:
    working_dir = str(spec.working_dir) if spec.working_dir is not None else None
    return record.bento_tag == spec.bento_tag and record.working_dir == working_dir


# --- the loop ---------------------------------------------------------------------------------


def supervise(
    target: LocalTarget,
    model: str,
    *,
    stop: threading.Event,
    policy: RestartPolicy | None = None,
    interval: float = 1.0,
    start: Callable[[], object] | None = None,
    log: str | None = None,
) -> None:
    """Own ``model``'s servers until ``stop`` is set, then stop them all.

    ``start`` runs first, under the claim (the foreground command deploys there). Returns early,
    leaving nothing to stop, when the state lists no version any more (removed elsewhere).
    Raises ``AlreadyServing`` when another live supervisor owns the model.
    """
    claim(target, model, log=log)
    emptied = False
    try:
        if start is not None:
            start()
        emptied = _watch(target, model, stop, policy or RestartPolicy(), interval)
    finally:
        if not emptied:
            removed = target.remove(model)
            logger.info("stopped %s: %s", model, ", ".join(f"v{d.version}" for d in removed))
        release(target, model)


def _watch(
    target: LocalTarget, model: str, stop: threading.Event, policy: RestartPolicy, interval: float
) -> bool:
    """Tick until ``stop``; True when the model's versions were all removed by someone else."""
    while not stop.wait(interval):
        desired = target.desired(model)
        if not desired:
            logger.info("no version of %s left to supervise", model)
            return True
        try:
            reconcile_once(target, desired, policy)
        except DeployCancelled:
            break
    return False


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into ``stop.set()`` while the block runs (main thread).

    A flag rather than an exception: a signal must not land between starting a server and
    recording it, which would leave a process nobody knows about.
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


# --- who supervises a model -------------------------------------------------------------------


def live_supervisor(target: LocalTarget, model: str) -> SupervisorRecord | None:
    """The model's supervisor if it still runs."""
    entry = load_state(target.state_file).models.get(model)
    record = entry.supervisor if entry is not None else None
    if record is not None and is_alive(record.pid, record.start_time):
        return record
    return None


def ensure_unsupervised(target: LocalTarget, model: str) -> None:
    """Raises ``AlreadyServing`` when a live process other than this one supervises ``model``."""
    record = live_supervisor(target, model)
    if record is not None and record.pid != os.getpid():
        raise AlreadyServing(model, record.pid)


def claim(target: LocalTarget, model: str, *, log: str | None = None) -> None:
    """Record this process as ``model``'s supervisor. Raises ``AlreadyServing``."""
    with locked_state(target.state_file) as state:
        entry = state.model(model)
        current = entry.supervisor
        others = current is not None and current.pid != os.getpid()
        if current is not None and others and is_alive(current.pid, current.start_time):
            raise AlreadyServing(model, current.pid)
        pid = os.getpid()
        entry.supervisor = SupervisorRecord(
            pid=pid, start_time=process_start_time(pid), started_at=time.time(), log=log
        )


def release(target: LocalTarget, model: str) -> None:
    """Forget this process as ``model``'s supervisor (a newer one's record is left alone)."""
    with locked_state(target.state_file) as state:
        entry = state.model(model)
        if entry.supervisor is not None and entry.supervisor.pid == os.getpid():
            entry.supervisor = None


def stop_supervisor(target: LocalTarget, model: str, timeout: float = 30.0) -> int | None:
    """SIGTERM ``model``'s supervisor and wait while it stops its servers; SIGKILL after
    ``timeout``. Returns its pid, or None when none was running."""
    record = live_supervisor(target, model)
    if record is None or record.pid == os.getpid():
        return None
    with contextlib.suppress(ProcessLookupError):  # it may have just ended on its own
        os.kill(record.pid, signal.SIGTERM)
    if not _wait_dead(record, timeout):
        logger.warning("supervisor %s of %s ignored SIGTERM; killing it", record.pid, model)
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
        _wait_dead(record, 5.0)
    with locked_state(target.state_file) as state:
        entry = state.model(model)
        if entry.supervisor is not None and entry.supervisor.pid == record.pid:
            entry.supervisor = None
    return record.pid


def _wait_dead(record: SupervisorRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(record.pid, record.start_time):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def spawn_supervisor(
    target: LocalTarget, model: str, *, interval: float = 1.0, wait: float = 15.0
) -> SupervisorRecord:
    """Start ``python -m infra.local.supervisor MODEL`` in its own session and wait for its claim.

    Raises ``DeployError`` with its log tail when it exits or does not claim within ``wait``.
    """
    log_path = target.log_dir / f"supervisor-{model}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "infra.local.supervisor", model, "--interval", str(interval)]
    env = dict(os.environ, MODELYARD_HOME=str(target.settings.home))
    with open(log_path, "ab") as log:
        offset = log.tell()
        child = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        record = live_supervisor(target, model)
        if record is not None and record.pid == child.pid:
            return record
        if child.poll() is not None:
            break
        time.sleep(0.1)
    tail = log_tail(log_path, offset)
    raise DeployError(f"the supervisor for {model} did not start:\n{tail}", hint=f"log: {log_path}")


# --- detached entry point ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.local.supervisor MODEL``: supervise already deployed versions."""
    from modelyard.logs import configure_logging
    from modelyard.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m infra.local.supervisor")
    parser.add_argument("model")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--max-restarts", type=int, default=RestartPolicy.max_restarts)
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    stop = threading.Event()
    target = LocalTarget(settings, cancel=stop)
    policy = RestartPolicy(max_restarts=args.max_restarts)
    log = str(target.log_dir / f"supervisor-{args.model}.log")
    with stop_on_signals(stop):
        try:
            supervise(target, args.model, stop=stop, policy=policy, interval=args.interval, log=log)
        except AlreadyServing as exc:
            logger.error("%s", exc)
            return 2
    return 0


if __name__ == "__main__":
    # Run the module under its package name, so its loggers are the ``infra`` ones that
    # configure_logging sets up (not ``__main__``).
    from infra.local.supervisor import main as package_main

    sys.exit(package_main())
