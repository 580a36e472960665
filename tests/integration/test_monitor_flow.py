"""The monitor job on a real store and inference log: drift found, reports written, exit codes."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from monitoring.inference_log import InferenceRecord
from monitoring.verdict import MonitoringPolicy
from pipelines.config import parse_train_config
from pipelines.flows.monitor import run_monitoring
from pipelines.flows.train import run_training
from tests.data_factory import messy_frame


def settings():
    from modelyard.settings import get_settings

    return get_settings()


def train(name: str, tmp_path: Path) -> int:
    csv = tmp_path / "train.csv"
    messy_frame(rows=1500).to_csv(csv, index=False)
    config = parse_train_config(
        {
            "model_name": name,
            "data": {"path": str(csv)},
            "target": "churned",
            "task": "classification",
        }
    )
    return run_training(config, settings()).version


def log_traffic(name: str, version: int, frame: pd.DataFrame, shift: float = 0.0) -> None:
    from pipelines.steps.register import load_champion
    from registry.mlflow_registry import MlflowRegistry
    from serving.gateway.log_writer import SqlInferenceLog

    registry = MlflowRegistry.from_settings(settings())
    model = load_champion(registry, registry.get_version(name, version))
    rows = frame.drop(columns="churned").copy()
    rows["spend"] = rows["spend"] + shift
    predictions = model.predict(rows)

    async def write() -> None:
        log = SqlInferenceLog.from_settings(settings())
        log.migrate()
        for index, (record, label) in enumerate(
            zip(rows.to_dict("records"), predictions, strict=True)
        ):
            clean = {k: (None if pd.isna(v) else v) for k, v in record.items()}
            await log.write(
                InferenceRecord(
                    request_id=uuid.uuid4().hex,
                    model=name,
                    version=version,
                    route="champion",
                    inputs=[clean],
                    predictions=[str(label)],
                    latency_ms=3.0 + index % 5,
                    status=200,
                )
            )
        await log.close()

    asyncio.run(write())


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_shifted_traffic_is_drift_and_retrain_with_reports(
    modelyard_env: Path, tmp_path: Path, unique_name: str
) -> None:
    version = train(unique_name, tmp_path)
    log_traffic(unique_name, version, messy_frame(rows=600, seed=5), shift=40.0)
    policy = MonitoringPolicy(min_window_rows=200, alert_share=0.2, retrain_share=0.25)
    result = run_monitoring(settings(), unique_name, last_rows=600, policy=policy)
    assert result.window_rows == 600
    drifted = {c["column"] for c in result.drifted_columns}
    assert "spend" in drifted and "tenure" not in drifted
    assert result.action == "retrain"
    assert Path(result.report_html).stat().st_size > 100_000  # Evidently's report, plotly inside
    summary = json.loads(Path(result.report_json).read_text())
    assert summary["version"] == version and summary["action"] == "retrain"
    assert result.mlflow_run_id
    assert (modelyard_env / "profiles" / unique_name / f"v{version}.npz").exists()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_cli_exit_codes_for_batches(modelyard_env: Path, tmp_path: Path, unique_name: str) -> None:
    train(unique_name, tmp_path)
    same = tmp_path / "same.csv"
    messy_frame(rows=800, seed=8).drop(columns="churned").to_csv(same, index=False)
    moved = tmp_path / "moved.parquet"
    frame = messy_frame(rows=800, seed=9).drop(columns="churned")
    frame["tenure"] = frame["tenure"] * 3
    frame["spend"] = frame["spend"] + 50
    frame.to_parquet(moved, index=False)
    runner = CliRunner()
    calm = runner.invoke(app, ["monitor", unique_name, "--current", str(same), "--json"])
    assert calm.exit_code == 0, calm.output
    assert json.loads(calm.stdout)["drifted"] is False
    drift = runner.invoke(app, ["monitor", unique_name, "--current", str(moved)])
    assert drift.exit_code == 1, drift.output
    assert "drift" in drift.stderr and "tenure" in drift.stdout
    missing = runner.invoke(app, ["monitor", unique_name, "--current", str(tmp_path / "x.csv")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
