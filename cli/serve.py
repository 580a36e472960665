"""``modelyard serve``: run what the registry says should serve, show what runs, stop it.

``modelyard serve NAME`` is short for ``modelyard serve start NAME``. Wire with
``app.add_typer(serve.serve_app, name="serve")``.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.table import Table
from typer.core import TyperGroup

from cli.output import err, handle_errors, out, print_json, quiet_libraries
from infra.errors import DeployCancelled
from infra.sync import build_deployment, desired_deployments
from infra.targets import DeployedVersion, Deployment, get_target, roll_out
from modelyard.logs import configure_logging
from modelyard.settings import get_settings

if TYPE_CHECKING:
    from infra.local.target import LocalTarget
    from infra.targets import DeployTarget
    from modelyard.settings import Settings


class _StartByDefault(TyperGroup):
    """Route ``serve NAME ...`` to ``serve start NAME ...``; a model named like a subcommand
    needs the explicit form (``modelyard serve start stop``)."""

    # ``Any``: Typer runs on its own vendored copy of click, whose Context type is private.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["start", *args]
        return super().parse_args(ctx, args)


serve_app = typer.Typer(
    cls=_StartByDefault,
    help="`serve NAME` serves NAME's champion, canary and shadow; `status` shows; `stop` ends.",
    no_args_is_help=True,
)

TARGET_HELP = "Deploy target by name: local (default), kubernetes, aws, gcp, azure."
DEFAULT_CANARY_PERCENT = 10


@serve_app.command("start")
@handle_errors
def start_command(
    name: str = typer.Argument(..., help="Registered model to serve."),
    detach: bool = typer.Option(
        False, "--detach", "-d", help="Return once ready; a background supervisor keeps it up."
    ),
    target: str = typer.Option("local", "--target", help=TARGET_HELP),
    canary_percent: int | None = typer.Option(
        None,
        "--canary-percent",
        min=0,
        max=100,
        help=f"Canary's traffic share (default: the registry's, else {DEFAULT_CANARY_PERCENT}).",
    ),
    ready_timeout: float = typer.Option(
        120.0, "--ready-timeout", help="Seconds a server may take to answer /readyz."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print what runs as JSON."),
) -> None:
    """Serve NAME's champion, plus canary and shadow when set; runs until Ctrl-C unless --detach."""
    from infra.local.supervisor import ensure_unsupervised
    from infra.local.target import LocalTarget

    settings = get_settings()
    configure_logging("WARNING" if as_json else settings.log_level)
    quiet_libraries()
    deploy_target = get_target(target, settings)
    if isinstance(deploy_target, LocalTarget):
        deploy_target.ready_timeout = ready_timeout
        ensure_unsupervised(deploy_target, name)  # before building Bentos for nothing
    specs, recorded_share = resolve_deployments(settings, name)
    share = _first(canary_percent, recorded_share, DEFAULT_CANARY_PERCENT)
    if not isinstance(deploy_target, LocalTarget):  # remote targets keep themselves up
        _report(roll_out(deploy_target, name, specs, canary_percent=share), as_json)
    elif detach:
        _start_detached(deploy_target, name, specs, share, as_json)
    else:
        _start_foreground(deploy_target, name, specs, share, as_json)


@serve_app.command("status")
@handle_errors
def status_command(
    name: str | None = typer.Argument(None, help="Only this model."),
    target: str = typer.Option("local", "--target", help=TARGET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """List each served version with its stage, state, traffic share and URL."""
    deploy_target = get_target(target, get_settings())
    deployed = deploy_target.status(name)
    supervisors = _supervisors(deploy_target, {d.model for d in deployed})
    if as_json:
        print_json(_rows(deployed, supervisors))
        return
    if not deployed:
        out.print(f"nothing is being served{f' for {name}' if name else ''}")
        return
    _print_table(deployed, supervisors)


@serve_app.command("stop")
@handle_errors
def stop_command(
    name: str | None = typer.Argument(None, help="Only this model (default: all)."),
    target: str = typer.Option("local", "--target", help=TARGET_HELP),
) -> None:
    """Stop the supervisor, then every server, of NAME or of all models."""
    from infra.local.supervisor import stop_supervisor
    from infra.local.target import LocalTarget

    deploy_target = get_target(target, get_settings())
    local = deploy_target if isinstance(deploy_target, LocalTarget) else None
    models = [name] if name else _served_models(deploy_target)
    stopped = 0
    for model in models:
        running = deploy_target.status(model)
        pid = stop_supervisor(local, model) if local is not None else None
        if pid is not None:  # it stops its servers on its way out
            stopped += 1
            err.print(f"stopped the supervisor of {model} (pid {pid})")
        deploy_target.remove(model)  # whatever no supervisor stopped
        for d in running:
            stopped += 1
            out.print(f"stopped {model} v{d.version} ({d.stage.value}, pid {d.pid})")
    if not stopped:
        out.print(f"nothing to stop{f' for {name}' if name else ''}")


# --- what to serve ----------------------------------------------------------------------------


def resolve_deployments(settings: Settings, name: str) -> tuple[list[Deployment], int | None]:
    """What the registry serves for ``name``, each version with its Bento (see infra.sync)."""
    return desired_deployments(settings, name, build=_deployment)


# A module attribute, so tests can serve a stand-in instead of building Bentos.
_deployment = build_deployment


# --- starting ---------------------------------------------------------------------------------


def _start_foreground(
    target: LocalTarget, name: str, specs: list[Deployment], canary_percent: int, as_json: bool
) -> None:
    from infra.local.supervisor import stop_on_signals, supervise

    stop = threading.Event()
    target.cancel = stop

    def start() -> None:
        deployed = roll_out(target, name, specs, canary_percent=canary_percent)
        _report(deployed, as_json, {name: os.getpid()})
        err.print(f"serving {name}; Ctrl-C stops it (or `modelyard serve stop {name}`)")

    with stop_on_signals(stop):
        try:
            supervise(target, name, stop=stop, start=start)
        except DeployCancelled as exc:
            err.print(f"stopped before {name} was ready")
            raise typer.Exit(130) from exc
    err.print(f"stopped {name}")


def _start_detached(
    target: LocalTarget, name: str, specs: list[Deployment], canary_percent: int, as_json: bool
) -> None:
    from infra.local.supervisor import spawn_supervisor

    try:
        deployed = roll_out(target, name, specs, canary_percent=canary_percent)
        supervisor = spawn_supervisor(target, name)
    except BaseException:
        target.remove(name)  # all or nothing: no server left without a supervisor
        raise
    _report(deployed, as_json, {name: supervisor.pid})
    if not as_json:
        err.print(f"supervisor pid {supervisor.pid}; `modelyard serve stop {name}` stops it all")


def _first(*values: int | None) -> int:
    return next(v for v in values if v is not None)


# --- printing ---------------------------------------------------------------------------------


def _report(
    deployed: list[DeployedVersion], as_json: bool, supervisors: dict[str, int] | None = None
) -> None:
    if as_json:
        print_json(_rows(deployed, supervisors or {}))
    else:
        _print_table(deployed, supervisors or {})


def _rows(deployed: list[DeployedVersion], supervisors: dict[str, int]) -> list[dict[str, Any]]:
    return [d.to_dict() | {"supervisor_pid": supervisors.get(d.model)} for d in deployed]


def _print_table(deployed: list[DeployedVersion], supervisors: dict[str, int]) -> None:
    # Fits 80 columns: only a long model name folds; a cut URL or stage would be useless.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("model", overflow="fold")
    for column in ("v", "stage", "state", "share", "url", "pid", "restarts"):
        table.add_column(column, no_wrap=True)
    for d in deployed:
        table.add_row(
            d.model,
            str(d.version),
            d.stage.value,
            d.state.value,
            f"{d.traffic}%",
            d.url,
            str(d.pid or "-"),
            str(d.restarts),
        )
    out.print(table)
    for model in sorted({d.model for d in deployed}):
        pid = supervisors.get(model)
        line = f"supervisor pid {pid}" if pid else "no supervisor: crashed servers stay down"
        err.print(f"{model}: {line}")


def _supervisors(target: DeployTarget, models: set[str]) -> dict[str, int]:
    from infra.local.supervisor import live_supervisor
    from infra.local.target import LocalTarget

    if not isinstance(target, LocalTarget):
        return {}
    found = {model: live_supervisor(target, model) for model in models}
    return {model: record.pid for model, record in found.items() if record is not None}


def _served_models(target: DeployTarget) -> list[str]:
    from infra.local.target import LocalTarget

    if isinstance(target, LocalTarget):
        return target.models()
    return sorted({d.model for d in target.status()})
