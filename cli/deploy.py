"""``modelyard deploy``: put registry versions on a deploy target and move traffic between them.

``modelyard deploy NAME --target aws`` deploys what the registry serves for NAME (champion,
canary at its share, shadow); ``--version N`` deploys one version. ``traffic``, ``status`` and
``remove`` act on what the target runs. Kubernetes writes manifests with ``--output DIR`` or
applies them to the current cluster with ``--apply``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.table import Table
from typer.core import TyperGroup

from cli.output import err, fail, handle_errors, out, print_json, quiet_libraries
from infra.deploy import (
    deploy_serving,
    deploy_version,
    parse_shares,
    referenced_images,
    shift_traffic,
)
from infra.targets import DeployedVersion, get_target, known_targets
from modelyard.settings import get_settings
from registry.types import SERVING_STAGES, Stage

if TYPE_CHECKING:
    from infra.targets import DeployTarget
    from modelyard.settings import Settings


class _UpByDefault(TyperGroup):
    """Route ``deploy NAME ...`` to ``deploy up NAME ...``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["up", *args]
        return super().parse_args(ctx, args)


deploy_app = typer.Typer(
    cls=_UpByDefault,
    help="`deploy NAME --target T` deploys; `traffic`, `status`, `remove` act on what T runs.",
    no_args_is_help=True,
)

TARGET_HELP = (
    "Deploy target: " + ", ".join(known_targets()) + " (default: MODELYARD_DEPLOY_TARGET)."
)
STAGE_NAMES = ", ".join(s.value for s in SERVING_STAGES)


@deploy_app.command("up")
@handle_errors
def up_command(
    name: str = typer.Argument(..., help="Registered model."),
    target: str | None = typer.Option(None, "--target", "-t", help=TARGET_HELP),
    version: int | None = typer.Option(
        None,
        "--version",
        "-v",
        help="Deploy only this version (default: what the registry serves).",
    ),
    stage: str | None = typer.Option(None, "--stage", help=f"With --version: {STAGE_NAMES}."),
    image: str | None = typer.Option(
        None, "--image", help="With --version: run this OCI image instead of building one."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Kubernetes: write manifests to this folder (no cluster)."
    ),
    apply: bool = typer.Option(False, "--apply", help="Kubernetes: apply to the current cluster."),
    canary_percent: int | None = typer.Option(
        None, "--canary-percent", min=0, max=100, help="Canary share when the registry has none."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print what runs as JSON."),
) -> None:
    """Deploy NAME's serving versions (or one version) on a target and report what runs."""
    if version is None and (stage or image):
        raise fail("--stage and --image need --version (they describe one version)")
    settings = get_settings()
    quiet_libraries()
    deploy_target = _target(settings, target, output, apply)
    build = referenced_images() if output is not None else None
    if target_is_kubernetes(deploy_target):
        deploy_target.apply_gateway()  # type: ignore[attr-defined]  # namespace, RBAC, gateway
    if version is None:
        deployed = deploy_serving(
            settings, deploy_target, name, canary_percent=canary_percent, build=build
        )
    else:
        deployed = deploy_version(
            settings, deploy_target, name, version, stage=_stage(stage), image=image, build=build
        )
    _report(deployed, as_json)
    if output is not None and not as_json:
        err.print(f"manifests in {output}; push the images they name before applying them")


@deploy_app.command("traffic")
@handle_errors
def traffic_command(
    name: str = typer.Argument(..., help="Registered model."),
    shares: list[str] = typer.Argument(..., help="VERSION=PERCENT pairs, e.g. 1=90 2=10."),
    target: str | None = typer.Option(None, "--target", "-t", help=TARGET_HELP),
    output: Path | None = typer.Option(None, "--output", "-o", help="Kubernetes manifests folder."),
    apply: bool = typer.Option(False, "--apply", help="Kubernetes: the current cluster."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Shift NAME's traffic between deployed versions with the platform's own traffic split."""
    try:
        parsed = parse_shares(shares)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    deploy_target = _target(get_settings(), target, output, apply)
    _report(shift_traffic(deploy_target, name, parsed), as_json)


@deploy_app.command("status")
@handle_errors
def status_command(
    name: str | None = typer.Argument(None, help="Only this model."),
    target: str | None = typer.Option(None, "--target", "-t", help=TARGET_HELP),
    output: Path | None = typer.Option(None, "--output", "-o", help="Kubernetes manifests folder."),
    apply: bool = typer.Option(False, "--apply", help="Kubernetes: the current cluster."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """What the target runs: version, stage, state, traffic share, URL."""
    deploy_target = _target(get_settings(), target, output, apply)
    deployed = deploy_target.status(name)
    if not deployed and not as_json:
        out.print(f"nothing deployed on {deploy_target.name}{f' for {name}' if name else ''}")
        return
    _report(deployed, as_json)


@deploy_app.command("remove")
@handle_errors
def remove_command(
    name: str = typer.Argument(..., help="Registered model."),
    version: int | None = typer.Option(None, "--version", "-v", help="Only this version."),
    target: str | None = typer.Option(None, "--target", "-t", help=TARGET_HELP),
    output: Path | None = typer.Option(None, "--output", "-o", help="Kubernetes manifests folder."),
    apply: bool = typer.Option(False, "--apply", help="Kubernetes: the current cluster."),
) -> None:
    """Remove one version (its traffic goes to the champion first) or all of NAME's."""
    deploy_target = _target(get_settings(), target, output, apply)
    removed = deploy_target.remove(name, version)
    for d in removed:
        out.print(f"removed {name} v{d.version} ({d.stage.value}) from {deploy_target.name}")
    if not removed:
        out.print(f"nothing deployed on {deploy_target.name} for {name}")


# --- helpers ----------------------------------------------------------------------------------


def _target(settings: Settings, name: str | None, output: Path | None, apply: bool) -> DeployTarget:
    chosen = name or settings.deploy_target
    if chosen != "kubernetes":
        if output is not None or apply:
            raise fail(f"--output and --apply are for --target kubernetes, not {chosen}")
        return get_target(chosen, settings)
    if (output is None) == (not apply):
        raise fail("--target kubernetes needs either --output DIR (write manifests) or --apply")
    from infra.kubernetes.target import KubernetesTarget

    return KubernetesTarget(settings, output_dir=output) if output else KubernetesTarget(settings)


def target_is_kubernetes(target: DeployTarget) -> bool:
    return target.name == "kubernetes"


def _stage(value: str | None) -> Stage | None:
    if value is None:
        return None
    names = {s.value: s for s in SERVING_STAGES}
    if value not in names:
        raise fail(f"--stage {value!r} is not one of: {STAGE_NAMES}")
    return names[value]


def _report(deployed: list[DeployedVersion], as_json: bool) -> None:
    if as_json:
        print_json([d.to_dict() for d in deployed])
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("model", overflow="fold")
    for column in ("v", "stage", "state", "share"):
        table.add_column(column, no_wrap=True)
    table.add_column("url", overflow="fold")
    for d in deployed:
        table.add_row(d.model, str(d.version), d.stage.value, d.state.value, f"{d.traffic}%", d.url)
    out.print(table)
