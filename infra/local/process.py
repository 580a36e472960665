"""Start, watch and stop ``bentoml serve`` processes on loopback ports (Linux: reads ``/proc``).

Each server starts in a session of its own, so no terminal signal reaches it by accident. BentoML's
process manager (circus) starts every worker with ``setsid`` too, so a worker is in neither the
server's process group nor its session, and it outlives a ``kill -9`` of the server while still
holding the port. To find every process of one server we put a marker in the server's environment,
which its workers inherit, and look for it in ``/proc/<pid>/environ``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from infra.errors import DeployCancelled, ServerStartFailed

HOST = "127.0.0.1"
MARKER_ENV = "MODELYARD_SERVE_INSTANCE"
PROC = Path("/proc")
POLL_SECONDS = 0.1
KILL_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class ServerSpec:
    """How to start a server: ``target`` is a Bento tag, or ``module:Class`` in ``working_dir``."""

    model: str
    version: int
    target: str
    port: int
    instance: str
    log_path: Path
    bentoml_home: Path
    working_dir: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StartedServer:
    """A server process just started: enough to wait for it, find it again and stop it."""

    spec: ServerSpec
    pid: int
    start_time: int | None
    log_offset: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.spec.port}"


@dataclass(frozen=True)
class ProcStat:
    state: str
    pgrp: int
    start_time: int


def serve_argv(target: str, port: int) -> list[str]:
    """The command line; ``python -m bentoml`` so the server runs in this interpreter's env."""
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", HOST, "--port", str(port)]


def server_env(spec: ServerSpec) -> dict[str, str]:
    """The server's environment: ours, plus BentoML's home, the marker and what it serves."""
    env = dict(os.environ)
    env.update(spec.env)
    env.update(
        {
            "BENTOML_HOME": str(spec.bentoml_home),
            "BENTOML_DO_NOT_TRACK": "True",  # no usage pings from an offline machine
            "PYTHONUNBUFFERED": "1",  # so the log has the last lines when a server dies
            MARKER_ENV: spec.instance,
            "MODELYARD_MODEL_NAME": spec.model,
            "MODELYARD_MODEL_VERSION": str(spec.version),
        }
    )
    return env


def start_server(spec: ServerSpec) -> tuple[StartedServer, subprocess.Popen[bytes]]:
    """Start ``bentoml serve`` for ``spec`` without waiting for it; output goes to its log.

    Raises ``ServerStartFailed`` when the process cannot be started at all.
    """
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    spec.bentoml_home.mkdir(parents=True, exist_ok=True)
    argv = serve_argv(spec.target, spec.port)
    with open(spec.log_path, "ab") as log:
        offset = log.tell()
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"=== {stamp} modelyard: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            child = subprocess.Popen(
                argv,
                cwd=spec.working_dir,
                env=server_env(spec),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServerStartFailed(
                spec.model, spec.version, f"could not start: {exc}", spec.log_path, ""
            ) from exc
    started = StartedServer(spec, child.pid, process_start_time(child.pid), offset)
    return started, child


def wait_ready(
    server: StartedServer,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    child: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll ``GET /readyz`` until it answers 200 while the process stays alive.

    Raises ``ServerStartFailed`` (with the log's last lines) when the process exits or ``timeout``
    passes, ``DeployCancelled`` when ``cancel`` is set meanwhile. Leaves the process to the caller.
    """
    deadline = time.monotonic() + timeout
    # The environment's proxy settings must not catch loopback requests.
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while True:
            if not is_alive(server.pid, server.start_time):
                code = child.poll() if child is not None else None
                ended = f"exited (code {code})" if code is not None else "exited"
                raise _start_failed(server, f"{ended} before answering /readyz")
            if _answers_ready(client, server.url) and is_alive(server.pid, server.start_time):
                return
            if cancel is not None and cancel.is_set():
                raise DeployCancelled(
                    f"start of {server.spec.model} v{server.spec.version} cut short"
                )
            if time.monotonic() >= deadline:
                raise _start_failed(
                    server, f"did not answer {server.url}/readyz in {timeout:.0f} s"
                )
            time.sleep(POLL_SECONDS)


def _answers_ready(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(f"{url}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _start_failed(server: StartedServer, reason: str) -> ServerStartFailed:
    spec = server.spec
    tail = log_tail(spec.log_path, server.log_offset)
    return ServerStartFailed(spec.model, spec.version, reason, spec.log_path, tail)


def stop_server(
    pid: int,
    start_time: int | None,
    instance: str,
    *,
    timeout: float = 10.0,
    child: subprocess.Popen[bytes] | None = None,
) -> bool:
    """Stop a server and every process of it: SIGTERM, wait up to ``timeout``, then SIGKILL.

    Safe on a server already gone, or on a pid since reused by another program (``start_time``
    tells them apart). Returns True when it had to SIGKILL something.
    """
    leader_ours = is_alive(pid, start_time)
    if leader_ours:
        # The server stops its own workers on SIGTERM; signalling them too would make it respawn.
        _signal_group(pid, signal.SIGTERM)
    else:
        # No server left to stop them: signal the orphaned workers directly.
        _signal_all(server_processes(pid, start_time, instance), signal.SIGTERM)
    killed = False
    if not _wait_gone(pid, start_time, instance, timeout):
        killed = True
        if leader_ours:
            _signal_group(pid, signal.SIGKILL)
        _signal_all(server_processes(pid, start_time, instance), signal.SIGKILL)
        _wait_gone(pid, start_time, instance, KILL_WAIT_SECONDS)
    _reap(pid, child)
    return killed


def server_processes(pid: int, start_time: int | None, instance: str) -> list[int]:
    """Live processes of one server: those carrying its marker, and those left in its group.

    The group is only trusted while ``pid`` is not reused: the kernel does not hand out a pid that
    is still some group's id, so a different process at ``pid`` means our group is empty.
    """
    found = set(marked_processes(instance))
    stat = read_stat(pid)
    if stat is None or start_time is None or stat.start_time == start_time:
        found.update(group_members(pid))
    return sorted(found)


def marked_processes(instance: str) -> list[int]:
    """Live (not zombie) processes whose environment carries ``instance``'s marker."""
    needle = f"{MARKER_ENV}={instance}".encode()
    found: list[int] = []
    for pid in _all_pids():
        try:
            environ = (PROC / str(pid) / "environ").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        if needle in environ.split(b"\0") and _is_live_stat(read_stat(pid)):
            found.append(pid)
    return found


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    members = []
    for pid in _all_pids():
        stat = read_stat(pid)
        if stat is not None and stat.pgrp == pgid and _is_live_stat(stat):
            members.append(pid)
    return members


def is_alive(pid: int, start_time: int | None = None) -> bool:
    """True when ``pid`` runs (not a zombie) and, given ``start_time``, is the one we started."""
    if not PROC.is_dir():  # no /proc: existence only, no protection against a reused pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = read_stat(pid)
    if not _is_live_stat(stat):
        return False
    return start_time is None or (stat is not None and stat.start_time == start_time)


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot; None when it does not exist."""
    stat = read_stat(pid)
    return stat.start_time if stat is not None else None


def read_stat(pid: int) -> ProcStat | None:
    """State, process group and start time from ``/proc/<pid>/stat``; None when gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return ProcStat(state=fields[0], pgrp=int(fields[2]), start_time=int(fields[19]))
    except (IndexError, ValueError):
        return None


def free_port() -> int:
    """A loopback port the OS says is free now (it can be taken again before the server binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (with SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def log_tail(path: Path, offset: int = 0, lines: int = 30) -> str:
    """The last ``lines`` lines written to ``path`` after byte ``offset`` ('' when unreadable)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _is_live_stat(stat: ProcStat | None) -> bool:
    return stat is not None and stat.state not in ("Z", "X")


def _all_pids() -> list[int]:
    try:
        return [int(entry) for entry in os.listdir(PROC) if entry.isdigit()]
    except OSError:
        return []


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _signal_all(pids: Iterable[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _wait_gone(pid: int, start_time: int | None, instance: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while server_processes(pid, start_time, instance):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def _reap(pid: int, child: subprocess.Popen[bytes] | None) -> None:
    """Collect the exit status of a server this process started, so no zombie stays behind."""
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1.0)
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
