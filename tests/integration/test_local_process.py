"""Process helpers of the local target on real (small) processes: liveness, zombies, pid reuse,
and stopping a server's whole tree, including workers that left its session (as BentoML's do)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.process import (
    MARKER_ENV,
    free_port,
    group_members,
    is_alive,
    log_tail,
    marked_processes,
    port_is_free,
    process_start_time,
    read_stat,
    server_processes,
    stop_server,
)

# A fake server: it starts a "worker" in a session of its own, like circus does, then waits.
FAKE_SERVER = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    if sys.argv[1] == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              start_new_session=True)
    print("worker", worker.pid, flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; killed (with anything carrying their marker) at the end."""
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def _fake_server(
    spawned: list[subprocess.Popen[bytes]], instance: str, mode: str = "normal"
) -> tuple[subprocess.Popen[bytes], int]:
    env = dict(os.environ, **{MARKER_ENV: instance})
    child = subprocess.Popen(
        [sys.executable, "-c", FAKE_SERVER, mode],
        env=env,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    spawned.append(child)
    assert child.stdout is not None
    worker = int(child.stdout.readline().split()[1])
    return child, worker


def _sleeper(spawned: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    spawned.append(child)
    return child


def test_alive_means_running_and_the_same_start_time(spawned: list) -> None:
    child = _sleeper(spawned)
    started = process_start_time(child.pid)

    assert started is not None
    assert is_alive(child.pid, started)
    assert is_alive(child.pid)
    assert not is_alive(child.pid, started + 1)  # as if the pid were reused


def test_a_zombie_is_not_alive(spawned: list) -> None:
    child = _sleeper(spawned)
    started = process_start_time(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    time.sleep(0.2)

    stat = read_stat(child.pid)
    assert stat is not None and stat.state == "Z"  # not reaped yet
    assert not is_alive(child.pid, started)
    child.wait()
    assert read_stat(child.pid) is None


def test_stat_parsing_survives_odd_command_names(spawned: list) -> None:
    code = "open('/proc/self/comm', 'w').write('a) b (c'); import time; time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    spawned.append(child)
    time.sleep(0.3)

    stat = read_stat(child.pid)

    assert stat is not None
    assert stat.pgrp == child.pid
    assert stat.start_time == process_start_time(child.pid)


def test_stop_reaches_workers_in_their_own_session(spawned: list) -> None:
    instance = f"t-{uuid.uuid4().hex}"
    leader, worker = _fake_server(spawned, instance)
    start_time = process_start_time(leader.pid)

    assert sorted(server_processes(leader.pid, start_time, instance)) == sorted(
        [leader.pid, worker]
    )
    assert group_members(leader.pid) == [leader.pid]  # the worker is elsewhere

    killed = stop_server(leader.pid, start_time, instance, timeout=0.5, child=leader)

    # The fake server does not stop its worker on SIGTERM, so the worker needed SIGKILL.
    assert killed
    assert marked_processes(instance) == []
    assert not is_alive(worker)
    assert leader.returncode is not None  # reaped


def test_stop_after_kill_9_removes_the_orphaned_worker(spawned: list) -> None:
    instance = f"t-{uuid.uuid4().hex}"
    leader, worker = _fake_server(spawned, instance)
    start_time = process_start_time(leader.pid)
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait()

    assert marked_processes(instance) == [worker]  # an orphan, still holding whatever it held
    killed = stop_server(leader.pid, start_time, instance, timeout=5)

    assert not killed  # the orphan took SIGTERM
    assert marked_processes(instance) == []


def test_a_server_ignoring_sigterm_is_killed(spawned: list) -> None:
    instance = f"t-{uuid.uuid4().hex}"
    leader, _ = _fake_server(spawned, instance, mode="ignore-term")
    start_time = process_start_time(leader.pid)
    time.sleep(0.2)  # let it install its handler

    began = time.monotonic()
    killed = stop_server(leader.pid, start_time, instance, timeout=0.5, child=leader)

    assert killed
    assert time.monotonic() - began < 5
    assert marked_processes(instance) == []


def test_stop_leaves_a_process_that_reused_the_pid_alone(spawned: list) -> None:
    stranger = _sleeper(spawned)
    start_time = process_start_time(stranger.pid)
    assert start_time is not None

    stop_server(stranger.pid, start_time - 1, f"t-{uuid.uuid4().hex}", timeout=0.5)

    assert is_alive(stranger.pid, start_time)


def test_ports_from_the_os_are_free_until_bound() -> None:
    port = free_port()
    assert port_is_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not port_is_free(port)


def test_log_tail_reads_only_after_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("old run\n")
    offset = log.stat().st_size
    with open(log, "a") as handle:
        handle.write("".join(f"line {i}\n" for i in range(50)))

    tail = log_tail(log, offset, lines=3)

    assert tail == "line 47\nline 48\nline 49"
    assert "old run" not in log_tail(log, offset)
    assert log_tail(tmp_path / "missing.log") == ""
