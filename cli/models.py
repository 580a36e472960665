"""``modelyard models`` and ``modelyard versions``: what the registry holds."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from cli.output import handle_errors, out, print_json
from modelyard.settings import get_settings

LINEAGE_TAGS = ("data_fingerprint", "rows", "git_commit", "config_hash", "flow_run_id")


def _registry() -> Any:
    from registry.mlflow_registry import MlflowRegistry

    return MlflowRegistry.from_settings(get_settings())


@handle_errors
def models_command(as_json: bool = typer.Option(False, "--json")) -> None:
    """List registered models with their aliases."""
    models = _registry().list_models()
    if as_json:
        print_json(
            [{"name": m.name, "aliases": m.aliases, "description": m.description} for m in models]
        )
        return
    table = Table("model", "aliases")
    for m in models:
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items())) or "-"
        table.add_row(m.name, aliases)
    out.print(table if models else "no registered models yet: run `modelyard train`")


@handle_errors
def versions_command(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """List a model's versions with their stage, metrics and lineage."""
    versions = _registry().list_versions(name)
    rows = [_version_row(v) for v in versions]
    if as_json:
        print_json(rows)
        return
    table = Table("version", "stage", "metrics", "vs champion", "data", "rows", "commit")
    for row in rows:
        table.add_row(
            str(row["version"]),
            row["stage"],
            _fmt(row["metrics"]),
            _fmt(row["champion_metrics"]) or "-",
            row["lineage"].get("data_fingerprint", "-"),
            row["lineage"].get("rows", "-"),
            row["lineage"].get("git_commit", "-")[:12],
        )
    out.print(table)


def _version_row(v: Any) -> dict[str, Any]:
    lineage = {
        key: v.tags[f"modelyard.{key}"] for key in LINEAGE_TAGS if f"modelyard.{key}" in v.tags
    }
    return {
        "name": v.name,
        "version": v.version,
        "stage": v.stage.value,
        "aliases": list(v.aliases),
        "metrics": v.metrics,
        "champion_version": v.tags.get("modelyard.champion_version"),
        "champion_metrics": v.champion_metrics,
        "lineage": lineage,
        "run_id": v.run_id,
        "created_at": v.created_at.isoformat() if v.created_at else None,
    }


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={val:.3f}" for k, val in sorted(metrics.items()))
