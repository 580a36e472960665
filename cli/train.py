"""``modelyard train`` and ``modelyard data``: run the training flow from a YAML file or flags."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
import yaml

from cli.output import err, handle_errors, out, print_json, quiet_libraries
from modelyard.logs import configure_logging
from modelyard.settings import get_settings

data_app = typer.Typer(help="Built-in data sets.", no_args_is_help=True)


def _overrides(
    *,
    data: Path | None,
    builtin: str | None,
    estimator: str | None,
    params: list[str] | None,
    test_size: float | None,
    seed: int | None,
    **fields: Any,
) -> dict[str, Any]:
    """Flags as a partial config mapping; only flags the user gave appear."""
    result: dict[str, Any] = {k: v for k, v in fields.items() if v not in (None, [], False)}
    source = {"path": str(data) if data else None, "builtin": builtin}
    if data or builtin:
        result["data"] = {k: v for k, v in source.items() if v is not None}
    chosen: dict[str, Any] = {}
    if estimator:
        chosen["class_path"] = estimator
    if params:
        chosen["params"] = dict(_parse_param(item) for item in params)
    if chosen:
        result["estimator"] = chosen
    split = {k: v for k, v in {"test_size": test_size, "seed": seed}.items() if v is not None}
    if split:
        result["split"] = split
    return result


def _parse_param(item: str) -> tuple[str, Any]:
    """``max_depth=5`` gives 5, ``alpha=0.1`` gives 0.1, ``solver=lbfgs`` gives 'lbfgs'."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"--param {item!r} must look like name=value")
    return key, yaml.safe_load(value)


@handle_errors
def train_command(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML training config."),
    data: Path | None = typer.Option(None, "--data", help="CSV or Parquet file to train on."),
    builtin: str | None = typer.Option(None, "--builtin", help="Built-in data set name."),
    target: str | None = typer.Option(None, "--target", help="Column to predict."),
    task: str | None = typer.Option(None, "--task", help="classification or regression."),
    model_name: str | None = typer.Option(None, "--model-name", help="Registered model name."),
    feature: list[str] | None = typer.Option(None, "--feature", help="Feature column (repeat)."),
    estimator: str | None = typer.Option(
        None,
        "--estimator",
        help="Estimator import path, e.g. sklearn.ensemble.RandomForestClassifier.",
    ),
    param: list[str] | None = typer.Option(None, "--param", help="Estimator param name=value."),
    test_size: float | None = typer.Option(None, "--test-size"),
    seed: int | None = typer.Option(None, "--seed"),
    allow_new_categories: bool = typer.Option(
        False, "--allow-new-categories", help="Accept categories the model's contract lacks."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train a model and register it as a new version (the first version becomes champion)."""
    from pipelines.config import load_train_config, parse_train_config

    settings = get_settings()
    configure_logging("WARNING" if as_json else settings.log_level)
    quiet_libraries()
    overrides = _overrides(
        data=data,
        builtin=builtin,
        target=target,
        task=task,
        model_name=model_name,
        features=feature,
        estimator=estimator,
        params=param,
        test_size=test_size,
        seed=seed,
        allow_new_categories=allow_new_categories,
    )
    if config is not None:
        train_config = load_train_config(config, overrides)
    else:
        train_config = parse_train_config(overrides, source="command-line flags")

    from pipelines.flows.train import train

    if not as_json:
        err.print(f"training {train_config.model_name} on {train_config.data.describe()} ...")
    result = asyncio.run(train(train_config))
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    _print_result(result)


def _print_result(result: Any) -> None:
    metric = result.primary_metric
    line = (
        f"registered [bold]{result.model_name}[/bold] version {result.version} "
        f"({metric} {result.metrics[metric]:.4f}"
    )
    if result.champion_version is not None and metric in result.champion_metrics:
        line += f"; champion v{result.champion_version}: {result.champion_metrics[metric]:.4f}"
    line += ")"
    if result.became_champion:
        line += " -> [green]champion[/green] (first version)"
    out.print(line)
    out.print(
        f"rows {result.rows} (dropped {result.dropped_rows} without a label), "
        f"data {result.data_fingerprint}, run {result.run_id}"
    )


@data_app.command("list")
def list_datasets() -> None:
    """List the built-in data sets."""
    from pipelines.datasets import BUILTIN_DATASETS

    for d in BUILTIN_DATASETS.values():
        out.print(f"{d.name:14} target={d.target:12} {d.task:15} {d.description}")


@data_app.command("export")
@handle_errors
def export_dataset(name: str, destination: Path) -> None:
    """Write a built-in data set as CSV."""
    from pipelines.datasets import export_builtin

    path = export_builtin(name, destination)
    out.print(f"wrote {path}")
