"""Printing and exit codes shared by every command: results to stdout, messages to stderr."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from modelyard.errors import ModelyardError

P = ParamSpec("P")
R = TypeVar("R")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def print_json(value: Any) -> None:
    """Machine output: one JSON document on stdout, nothing else there."""
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    return typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into a one-line message on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ModelyardError as exc:
            raise fail(str(exc), exc.exit_code) from exc

    return wrapper


def quiet_libraries() -> None:
    """Prefect's and MLflow's INFO lines, tracebacks and progress bars drown ours.

    Prefect still sends every run's logs to its API (the UI shows them); only its console
    handler is turned down. ``MODELYARD_LOG_LEVEL=DEBUG`` keeps everything.
    """
    if os.environ.get("MODELYARD_LOG_LEVEL", "").upper() == "DEBUG":
        return
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
