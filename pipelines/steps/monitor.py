"""Monitoring steps: reference, window, drift and quality, reports, MLflow, alert."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from modelyard.contract import DataContract
from modelyard.settings import Settings
from monitoring.drift import DriftResult, compute_drift
from monitoring.evidently_adapter import write_report
from monitoring.inference_log import read_window
from monitoring.quality import ColumnQuality, data_quality
from monitoring.reference import ReferenceProfile, build_profile, load_profile, save_profile
from monitoring.verdict import MonitoringPolicy, Verdict, drift_verdict, load_policy
from pipelines.errors import DataError
from pipelines.steps.load import read_table
from registry.mlflow_registry import MlflowRegistry
from registry.types import REFERENCE_ARTIFACT, TAG_PREFIX, ModelVersion

logger = logging.getLogger(__name__)
PREDICTION = "prediction"
SHADOW = "shadow"


def monitoring_policy(model: str, folder: Path) -> MonitoringPolicy:
    """``<folder>/monitoring/<model>.yaml``, else ``.../default.yaml``, else the defaults."""
    for candidate in (
        folder / "monitoring" / f"{model}.yaml",
        folder / "monitoring" / "default.yaml",
    ):
        if candidate.is_file():
            return load_policy(candidate)
    return MonitoringPolicy()


def load_reference(registry: MlflowRegistry, version: ModelVersion) -> pd.DataFrame:
    """The reference sample logged when ``version`` was trained (features, target, prediction)."""
    if not version.run_id:
        raise DataError(f"{version.name} v{version.version} has no training run to compare with")
    with tempfile.TemporaryDirectory() as folder:
        local = registry.download_run_artifact(version.run_id, REFERENCE_ARTIFACT, Path(folder))
        return pd.read_parquet(local)


def reference_profile(
    reference: pd.DataFrame, contract: DataContract, cache: Path
) -> ReferenceProfile:
    """Features and the prediction, profiled once per version and kept in ``cache``."""
    if cache.exists():
        return load_profile(cache)
    kinds: dict[str, Any] = {c.name: c.kind for c in contract.columns}
    kinds[PREDICTION] = "categorical" if contract.task == "classification" else "numeric"
    profile = build_profile(reference[list(kinds)], kinds)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_profile(profile, cache)
    return profile


def current_window(
    settings: Settings,
    name: str,
    version: int,
    *,
    last_rows: int | None,
    since_minutes: float | None,
    batch: Path | None,
) -> pd.DataFrame:
    """Rows to judge: a batch file, or the live answers in the inference log (not the shadow's)."""
    if batch is not None:
        return read_table(batch)
    since = datetime.now(UTC) - timedelta(minutes=since_minutes) if since_minutes else None
    window = read_window(settings.sql_url, name, version=version, last_rows=last_rows, since=since)
    return window[window["route"] != SHADOW] if "route" in window.columns else window


def judge(
    profile: ReferenceProfile,
    window: pd.DataFrame,
    contract: DataContract,
    policy: MonitoringPolicy,
    training_metrics: dict[str, float],
) -> tuple[DriftResult, Any, list[ColumnQuality], float | None, Verdict]:
    """Data drift over the features, prediction drift, data quality, quality delta, verdict."""
    if window.empty:
        raise DataError("the window has no rows to judge")
    features = [c.name for c in contract.columns]
    has_prediction = PREDICTION in window.columns and window[PREDICTION].notna().any()
    columns = features + ([PREDICTION] if has_prediction else [])
    result = compute_drift(
        profile_subset(profile, columns), window[columns], drift_share=policy.drift_share
    )
    feature_drift = DriftResult.from_columns(
        tuple(c for c in result.columns if c.column != PREDICTION), policy.drift_share, len(window)
    )
    prediction_drift = result.column(PREDICTION) if has_prediction else None
    quality = data_quality(window, contract)
    delta = quality_delta(window, contract, training_metrics)
    verdict = drift_verdict(feature_drift, len(window), policy, quality_delta=delta)
    return feature_drift, prediction_drift, quality, delta, verdict


def profile_subset(profile: ReferenceProfile, columns: list[str]) -> ReferenceProfile:
    missing = [c for c in columns if c not in profile.columns]
    if missing:
        raise DataError(f"the reference profile lacks column(s) {missing}")
    return ReferenceProfile({name: profile.columns[name] for name in columns}, profile.rows)


def quality_delta(
    window: pd.DataFrame, contract: DataContract, training_metrics: dict[str, float]
) -> float | None:
    """Quality on the window's labelled rows minus the held-out value, higher is better."""
    target = "label" if "label" in window.columns else contract.target
    if target not in window.columns or PREDICTION not in window.columns:
        return None
    labelled = window[window[target].notna() & window[PREDICTION].notna()]
    if labelled.empty:
        return None
    if contract.task == "classification" and "accuracy" in training_metrics:
        hits = labelled[PREDICTION].astype(str) == labelled[target].astype(str)
        return float(hits.mean()) - training_metrics["accuracy"]
    if contract.task == "regression" and "mae" in training_metrics:
        errors = (pd.to_numeric(labelled[PREDICTION]) - pd.to_numeric(labelled[target])).abs()
        return training_metrics["mae"] - float(errors.mean())
    return None


def write_reports(
    reference: pd.DataFrame,
    window: pd.DataFrame,
    profile: ReferenceProfile,
    folder: Path,
    summary: dict[str, Any],
) -> tuple[Path, Path]:
    """Evidently's HTML report for people (sampled when large) and our JSON summary."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {name: column.kind for name, column in profile.columns.items()}
    kinds = {k: v for k, v in kinds.items() if k in window.columns and k in reference.columns}
    html = folder / "drift_report.html"
    write_report(
        reference[list(kinds)], window[list(kinds)], html, folder / "evidently.json", columns=kinds
    )
    summary_path = folder / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, default=_plain))
    return html, summary_path


def log_to_mlflow(
    registry: MlflowRegistry, version: ModelVersion, files: list[Path], metrics: dict[str, float]
) -> str:
    """A monitoring run under the model's experiment, tagged with the version it judged."""
    return registry.log_run(
        version.name,
        f"monitor-v{version.version}",
        tags={
            TAG_PREFIX + "monitors_version": str(version.version),
            TAG_PREFIX + "kind": "monitoring",
        },
        metrics={k: v for k, v in metrics.items() if v is not None and math.isfinite(v)},
        files=files,
        artifact_path="monitoring",
    )


def drift_summary(result: DriftResult) -> list[dict[str, Any]]:
    return [asdict(column) for column in result.columns]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, datetime | Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
