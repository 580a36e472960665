"""The ``monitor`` flow: a window of live answers (or a batch file) judged against the reference.

Reference statistics are profiled once per version and cached; the verdicts come from the fast
path (same tests and thresholds as Evidently's DataDriftPreset); Evidently writes the HTML report.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import BaseModel

from modelyard.settings import Settings, get_settings
from monitoring.alerts import alert_message, send_alert
from monitoring.verdict import MonitoringPolicy
from pipelines.events import emit_verdict
from pipelines.steps import monitor as steps
from registry.mlflow_registry import MlflowRegistry
from registry.types import Stage

logger = logging.getLogger(__name__)


class MonitorResult(BaseModel):
    """A monitoring run's verdict, for the CLI (exit code), the loop and machines."""

    model: str
    version: int
    window_rows: int
    drifted: bool
    drift_share: float
    drifted_columns: list[dict[str, Any]]
    columns: list[dict[str, Any]]
    prediction_drift: dict[str, Any] | None
    quality: list[dict[str, Any]]
    quality_delta: float | None
    action: str
    reasons: list[str]
    report_html: str
    report_json: str
    mlflow_run_id: str | None
    alert_sent: bool
    seconds: float


def run_monitoring(
    settings: Settings,
    model: str,
    *,
    version: int | None = None,
    last_rows: int | None = None,
    since_minutes: float | None = None,
    batch: Path | None = None,
    policy: MonitoringPolicy | None = None,
) -> MonitorResult:
    """Judge the champion (or ``version``) on its recent answers; write and log the reports."""
    started = time.perf_counter()
    registry = MlflowRegistry.from_settings(settings)
    target = registry.get_version(model, version if version is not None else Stage.CHAMPION.value)
    policy = policy or steps.monitoring_policy(model, settings.policy_dir)
    contract = registry.version_contract(target)
    reference = steps.load_reference(registry, target)
    cache = settings.home / "profiles" / model / f"v{target.version}.npz"
    profile = steps.reference_profile(reference, contract, cache)
    window = steps.current_window(
        settings,
        model,
        target.version,
        last_rows=last_rows,
        since_minutes=since_minutes,
        batch=batch,
    )
    drift, prediction, quality, delta, verdict = steps.judge(
        profile, window, contract, policy, target.metrics
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = settings.reports / model / f"v{target.version}" / stamp
    result = MonitorResult(
        model=model,
        version=target.version,
        window_rows=len(window),
        drifted=drift.drifted,
        drift_share=drift.share,
        drifted_columns=[c for c in steps.drift_summary(drift) if c["drifted"]],
        columns=steps.drift_summary(drift),
        prediction_drift=vars(prediction) if prediction is not None else None,
        quality=[vars(q) for q in quality],
        quality_delta=delta,
        action=verdict.action,
        reasons=list(verdict.reasons),
        report_html=str(folder / "drift_report.html"),
        report_json=str(folder / "summary.json"),
        mlflow_run_id=None,
        alert_sent=False,
        seconds=0.0,
    )
    html, summary = steps.write_reports(reference, window, profile, folder, result.model_dump())
    run_id = steps.log_to_mlflow(
        registry,
        target,
        [html, summary],
        {
            "drift_share": drift.share,
            "drifted_columns": float(drift.count),
            "window_rows": float(len(window)),
            "quality_delta": delta if delta is not None else float("nan"),
        },
    )
    alerted = _alert(settings, result) if verdict.action != "none" else False
    return result.model_copy(
        update={
            "mlflow_run_id": run_id,
            "alert_sent": alerted,
            "seconds": time.perf_counter() - started,
        }
    )


def _alert(settings: Settings, result: MonitorResult) -> bool:
    message = alert_message(
        result.model,
        result.version,
        result.action,
        [c["column"] for c in result.drifted_columns],
        result.drift_share,
        result.reasons,
        result.report_html,
    )
    return send_alert(message, settings.alert_webhook_url)


@flow(name="monitor")
async def monitor(
    model: str,
    version: int | None = None,
    last_rows: int | None = None,
    since_minutes: float | None = None,
) -> MonitorResult:
    """Judge a model's recent live traffic; returns the verdict (none, alert or retrain).

    The verdict is also emitted as the Prefect event ``modelyard.monitor.verdict``: the
    ``retrain`` deployment's trigger starts retraining from it (``pipelines.events``).
    """
    result = run_monitoring(
        get_settings(), model, version=version, last_rows=last_rows, since_minutes=since_minutes
    )
    try:  # a missing events backend must never fail a monitoring run
        emit_verdict(result)
    except Exception as exc:
        logger.warning("verdict event for %s not emitted: %s", model, exc)
    return result
