"""Retrain: the champion's own config, on the data its retrain spec names."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from modelyard.settings import Settings
from monitoring.inference_log import read_window
from pipelines.config import TrainConfig, merge_mappings, parse_train_config
from pipelines.errors import DataError
from pipelines.steps.load import load_data
from registry.mlflow_registry import MlflowRegistry
from registry.types import ModelVersion

TRAIN_CONFIG_ARTIFACT = "train_config.json"


def champion_config(registry: MlflowRegistry, champion: ModelVersion) -> TrainConfig:
    """The config the champion was trained with (logged beside it)."""
    if not champion.run_id:
        raise DataError(f"{champion.name} v{champion.version} has no run: no config to retrain")
    raw = registry.read_json_artifact(champion.run_id, TRAIN_CONFIG_ARTIFACT)
    return parse_train_config(raw, source=f"{champion.name} v{champion.version}")


def labelled_traffic(settings: Settings, config: TrainConfig) -> pd.DataFrame:
    """The newest live rows with a label, as training rows (features plus the target column)."""
    window = read_window(
        settings.sql_url, config.model_name, last_rows=config.retrain.labelled_rows
    )
    if window.empty:
        return window
    live = window[(window["route"] != "shadow") & window["label"].notna()]
    features = [
        c
        for c in live.columns
        if c not in {"prediction", "label", "request_id", "version", "route", "at"}
    ]
    rows = live[features].copy()
    rows[config.target] = live["label"].to_numpy()
    return rows.reset_index(drop=True)


def retraining_config(
    settings: Settings, registry: MlflowRegistry, champion: ModelVersion, reason: str
) -> TrainConfig:
    """The champion's config pointed at fresh data, written to the state folder as Parquet.

    Raises ``DataError`` when the spec asks for labelled rows and none have arrived.
    """
    config = champion_config(registry, champion)
    spec = config.retrain
    parts = []
    if spec.data in ("original", "original+labelled"):
        parts.append(load_data(config.data, settings.home / "datasets"))
    if spec.data in ("labelled", "original+labelled"):
        labelled = labelled_traffic(settings, config)
        if labelled.empty and spec.data == "labelled":
            raise DataError(f"no labelled traffic for {config.model_name} to retrain on yet")
        parts.append(labelled)
    rows = pd.concat(parts, ignore_index=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = settings.home / "datasets" / f"{config.model_name}-retrain-{stamp}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(path, index=False)
    return parse_train_config(
        merge_mappings(
            config.model_dump(mode="json"),
            {
                "data": {"path": str(path), "builtin": None},
                "allow_new_categories": spec.allow_new_categories,
                "tags": {**config.tags, "modelyard.retrain_reason": reason[:500]},
            },
        ),
        source="retraining",
    )
