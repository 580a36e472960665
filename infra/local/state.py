"""The local target's state file: which versions run, on which port, under which process.

One JSON file, ``<home>/serving/state.json``, shared by every shell: ``modelyard serve`` writes it,
``serve status`` and ``serve stop`` read it from elsewhere. Writers take an exclusive ``flock`` on a
sibling lock file (the state file itself is replaced on each write, so locking it would lock a file
that is about to vanish) and replace the file atomically, so readers never see half a file and
need no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from infra.errors import StateCorrupted, StateLocked
from infra.targets import DeployState
from registry.types import Stage

LOCK_POLL_SECONDS = 0.05


class ProcessRecord(BaseModel):
    """One version's server: what it serves and the process that serves it."""

    version: int
    stage: Stage
    bento_tag: str
    working_dir: str | None = None
    port: int
    pid: int | None = None
    # Field 22 of /proc/<pid>/stat: tells our process from a later one that reused its pid.
    start_time: int | None = None
    # A marker put in the server's environment; its workers inherit it even though they run in
    # sessions of their own, which is how we find them to stop them.
    instance: str
    state: DeployState = DeployState.STARTING
    started_at: float = 0.0
    restarts: int = 0
    log: str = ""


class SupervisorRecord(BaseModel):
    """The process that restarts a model's crashed servers (a foreground or detached supervisor)."""

    pid: int
    start_time: int | None = None
    started_at: float = 0.0
    log: str | None = None


class ModelState(BaseModel):
    versions: dict[int, ProcessRecord] = Field(default_factory=dict)
    traffic: dict[int, int] = Field(default_factory=dict)
    supervisor: SupervisorRecord | None = None

    def stages(self) -> dict[int, Stage]:
        return {v: record.stage for v, record in self.versions.items()}


class ServingState(BaseModel):
    """The whole file: models by name."""

    format: Literal[1] = 1  # bumped, with a migration, when the layout changes
    models: dict[str, ModelState] = Field(default_factory=dict)

    def model(self, name: str) -> ModelState:
        """The model's entry, created empty when missing (dropped again on save if still empty)."""
        return self.models.setdefault(name, ModelState())


def state_path(home: Path) -> Path:
    """Where the local target keeps its state under the settings' home folder."""
    return home / "serving" / "state.json"


def parse_state(text: str, path: Path) -> ServingState:
    """The state in ``text``. Raises ``StateCorrupted`` naming ``path`` when it is not valid."""
    try:
        return ServingState.model_validate_json(text)
    except ValidationError as exc:
        raise StateCorrupted(path, str(exc).splitlines()[0]) from exc


def dump_state(state: ServingState) -> str:
    """The file's text; empty model entries are left out."""
    kept = {name: m for name, m in state.models.items() if m.versions or m.supervisor}
    return ServingState(models=kept).model_dump_json(indent=2) + "\n"


def load_state(path: Path) -> ServingState:
    """The state on disk, or an empty one when there is no file yet.

    Raises ``StateCorrupted`` when the file is not a valid state.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ServingState()
    return parse_state(text, path)


def save_state(path: Path, state: ServingState) -> None:
    """Write ``state`` atomically: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(dump_state(state))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout: float = 10.0) -> Iterator[None]:
    """Hold ``flock`` on ``<path>.lock``. Raises ``StateLocked`` after ``timeout`` seconds."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # Each call opens its own file description, so two holders in one process also exclude.
    with open(lock_path, "a+b") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StateLocked(path, timeout) from None
                time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def locked_state(path: Path, timeout: float = 10.0) -> Iterator[ServingState]:
    """Read-modify-write under the lock: yields the state, saves it if the block succeeds.

    An exception in the block leaves the file as it was. Raises ``StateLocked`` or
    ``StateCorrupted``.
    """
    with exclusive_lock(path, timeout):
        state = load_state(path)
        yield state
        save_state(path, state)
