"""``promote``, ``rollback``, ``status`` and ``history``: the registry commands CI gates on.

Exit codes: 0 done (or would be, with --dry-run); 1 a gate refused; 2 usage or configuration
error; 3 conflict with a concurrent change. Messages go to stderr, --json results to stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cli.output import err, fail, handle_errors, out, print_json
from modelyard.settings import get_settings

TARGETS = ("candidate", "shadow", "canary", "champion", "retired")


def _promoter() -> Any:
    from registry.promotion import open_promoter

    return open_promoter(get_settings())


def _observations(path: Path | None) -> Any:
    """Observations measured elsewhere (gateway, monitoring), as a JSON file of named values."""
    if path is None:
        return None
    from registry.decisions import Observations

    try:
        raw = json.loads(path.read_text())
        return Observations(**raw)
    except FileNotFoundError as exc:
        raise fail(f"evidence file {path} does not exist") from exc
    except (json.JSONDecodeError, TypeError) as exc:
        raise fail(f"evidence file {path} is not a JSON object of observations: {exc}") from exc


def promote_command(
    name: str,
    version: int,
    to: str = typer.Option(..., "--to", help="candidate|shadow|canary|champion|retired"),
    traffic: int | None = typer.Option(None, "--traffic", help="Canary share in percent."),
    approve: bool = typer.Option(False, "--approve", help="Explicit approval for champion."),
    reason: str = typer.Option("", "--reason", help="Why: kept in the audit history."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide, change nothing."),
    policy: Path | None = typer.Option(None, "--policy", help="Promotion policy YAML."),
    evidence: Path | None = typer.Option(
        None, "--evidence", help="JSON observations: requests, minutes, error_rate, ..."
    ),
    expect_champion: int | None = typer.Option(
        None, "--expect-champion", help="Fail with exit 3 unless this version is champion."
    ),
    from_registry: str | None = typer.Option(None, "--from-registry", help="Source registry URI."),
    to_registry: str | None = typer.Option(None, "--to-registry", help="Target registry URI."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Promote a version to a stage, through the policy's gates; every attempt is audited."""
    if to not in TARGETS:
        raise fail(f"--to must be one of {', '.join(TARGETS)}, not {to!r}")
    if to == "candidate":
        _copy_between_registries(name, version, from_registry, to_registry, as_json)
        return
    if from_registry or to_registry:
        raise fail("--from-registry/--to-registry go with --to candidate")
    _promote(
        name,
        version,
        to,
        traffic,
        approve,
        reason,
        dry_run,
        policy,
        evidence,
        expect_champion,
        as_json,
    )


@handle_errors
def _promote(
    name: str,
    version: int,
    to: str,
    traffic: int | None,
    approve: bool,
    reason: str,
    dry_run: bool,
    policy_path: Path | None,
    evidence: Path | None,
    expect_champion: int | None,
    as_json: bool,
) -> None:
    from registry.policy import load_policy
    from registry.promotion import PromotionRefused
    from registry.types import Stage

    promoter = _promoter()
    policy = load_policy(policy_path) if policy_path else None
    try:
        result = promoter.promote(
            name,
            version,
            Stage(to),
            traffic=traffic,
            approved=approve,
            reason=reason,
            observations=_observations(evidence),
            policy=policy,
            dry_run=dry_run,
            expected=_expected(promoter, name, expect_champion),
        )
    except PromotionRefused as refused:
        _print_gates(refused.decision.gates)
        if as_json:
            print_json(
                {
                    "model": name,
                    "version": version,
                    "target": to,
                    "applied": False,
                    "gates": [g.__dict__ for g in refused.decision.gates],
                }
            )
        raise
    if result.decision is not None:
        _print_gates(result.decision.gates)
    verb = "would move" if dry_run else "moved"
    err.print(f"{verb} {name} v{version} to {to}: {result.after.describe()}")
    if result.retired:
        err.print(f"retired: {', '.join(f'v{v}' for v in result.retired)}")
    if as_json:
        print_json(result.as_dict())


@handle_errors
def _copy_between_registries(
    name: str, version: int, source: str | None, target: str | None, as_json: bool
) -> None:
    from registry.mlflow_registry import MlflowRegistry

    if not source or not target:
        raise fail(
            "--to candidate copies between registries: give --from-registry and --to-registry"
        )
    artifacts = get_settings().mlflow_artifact_location
    copied = MlflowRegistry(target, artifact_root=artifacts).copy_version_from(
        MlflowRegistry(source), name, version
    )
    err.print(f"copied {name} v{version} from {source} to {target} as v{copied.version}")
    if as_json:
        print_json(
            {
                "model": name,
                "source_version": version,
                "version": copied.version,
                "registry": target,
                "tags": copied.tags,
            }
        )


@handle_errors
def rollback_command(
    name: str,
    reason: str = typer.Option("", "--reason", help="Why: kept in the audit history."),
    dry_run: bool = typer.Option(False, "--dry-run"),
    expect_champion: int | None = typer.Option(
        None, "--expect-champion", help="Fail with exit 3 unless this version is champion."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Restore the previous champion in one step and clear canary and shadow."""
    promoter = _promoter()
    result = promoter.rollback(
        name,
        reason=reason,
        dry_run=dry_run,
        expected=_expected(promoter, name, expect_champion),
    )
    verb = "would roll" if dry_run else "rolled"
    err.print(f"{verb} {name} back to v{result.version}: {result.after.describe()}")
    if as_json:
        print_json(result.as_dict())


@handle_errors
def status_command(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """What serves a model: champion, canary (with its share) and shadow."""
    state = _promoter().state(name)
    if as_json:
        print_json(state.as_dict())
        return
    out.print(f"{name}: {state.describe()}")


@handle_errors
def history_command(
    name: str,
    limit: int | None = typer.Option(None, "--limit", help="Only the newest N changes."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every change of stage, traffic, approval and rollback: who, when, why, with evidence."""
    promoter = _promoter()
    promoter.registry.get_model(name)  # an unknown model is an error, not an empty history
    entries = promoter.audit.history(name, limit=limit)
    if as_json:
        print_json([e.as_dict() for e in entries])
        return
    table = Table("#", "when (UTC)", "change", "outcome", "by", "why")
    for e in entries:
        table.add_row(
            str(e.id),
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.describe(),
            e.outcome.value,
            e.actor,
            e.reason or "-",
        )
    out.print(table if entries else f"no changes recorded for {name}")


def _expected(promoter: Any, name: str, champion: int | None) -> Any:
    """The state read now, if it has the champion the caller expects; else a conflict (exit 3).

    Passing it on makes the promoter fail too if anything changes between this read and its own.
    """
    if champion is None:
        return None
    from dataclasses import replace

    from registry.promotion import StaleState

    state = promoter.state(name)
    if state.champion != champion:
        raise StaleState(replace(state, champion=champion), state)
    return state


def _print_gates(gates: Any) -> None:
    table = Table("gate", "result", "threshold", "measured", "why", title="promotion gates")
    for g in gates:
        verdict = "[green]pass[/green]" if g.passed else "[red]FAIL[/red]"
        table.add_row(g.name, verdict, g.threshold, g.measured, g.message)
    err.print(table)
