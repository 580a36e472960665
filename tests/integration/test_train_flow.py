"""The real ``train`` flow (Prefect run, MLflow store) on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipelines.config import parse_train_config
from pipelines.errors import DataError
from registry.mlflow_registry import MlflowRegistry
from registry.types import Stage
from tests.data_factory import messy_frame

pytestmark = pytest.mark.usefixtures("prefect_server")


def run_flow(step_tasks: bool = False, **raw):
    from pipelines.flows.train import train

    return asyncio.run(train(parse_train_config(raw), step_tasks=step_tasks))


def registry() -> MlflowRegistry:
    from modelyard.settings import get_settings

    return MlflowRegistry.from_settings(get_settings())


def test_first_version_is_champion_second_records_both_scores(
    modelyard_env: Path, tmp_path: Path, unique_name: str
) -> None:
    csv = tmp_path / "customers.csv"
    messy_frame(rows=400).to_csv(csv, index=False)
    base = {
        "model_name": unique_name,
        "data": {"path": str(csv)},
        "target": "churned",
        "task": "classification",
    }

    first = run_flow(**base)
    assert first.version == 1 and first.became_champion
    v1 = registry().get_version(unique_name, 1)
    assert v1.stage is Stage.CHAMPION
    assert v1.metrics["accuracy"] == pytest.approx(first.metrics["accuracy"])
    for tag in ("data_fingerprint", "rows", "git_commit", "config_hash", "flow_run_id"):
        assert v1.tags[f"modelyard.{tag}"], tag
    assert v1.tags["modelyard.flow_run_id"] != "none"  # it really ran as a Prefect flow

    second = run_flow(
        step_tasks=True,
        **base,
        estimator={
            "class_path": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": 20, "random_state": 0},
        },
    )
    v2 = registry().get_version(unique_name, 2)
    assert second.version == 2 and not second.became_champion
    assert v2.stage is Stage.CANDIDATE
    assert v2.tags["modelyard.champion_version"] == "1"
    assert set(v2.champion_metrics) == {"accuracy", "f1_macro", "roc_auc"}
    assert v2.metrics["accuracy"] == pytest.approx(second.metrics["accuracy"])
    assert registry().get_model(unique_name).aliases == {"champion": 1}


def test_registered_model_scores_raw_rows_and_keeps_reference(
    modelyard_env: Path, tmp_path: Path, unique_name: str
) -> None:
    import mlflow

    from pipelines.steps.tracking import reference_frame

    csv = tmp_path / "d.parquet"
    messy_frame(rows=200).to_parquet(csv, index=False)
    result = run_flow(
        model_name=unique_name, data={"path": str(csv)}, target="churned", task="classification"
    )
    model = mlflow.pyfunc.load_model(f"models:/{unique_name}@champion")
    rows = messy_frame(rows=5, seed=9).drop(columns="churned")
    assert set(model.predict(rows)) <= {"yes", "no"}
    contract = registry().version_contract(registry().get_version(unique_name, 1))
    assert contract.column("plan").categories == ["basic", "plus", "pro"]
    reference = reference_frame(result.run_id)
    assert {"prediction", "churned", "tenure"} <= set(reference.columns)
    assert len(reference) == 160  # the training split of 200 rows


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.assign(churned="no"), "single class"),
        (lambda f: f.drop(columns="churned"), "target column 'churned' is not in the data"),
        (lambda f: f.assign(plan="enterprise"), "unknown categories"),
    ],
)
def test_bad_data_registers_nothing(
    modelyard_env: Path, tmp_path: Path, unique_name: str, mutate, message: str
) -> None:
    csv = tmp_path / "good.csv"
    messy_frame(rows=200).to_csv(csv, index=False)
    base = {"model_name": unique_name, "target": "churned", "task": "classification"}
    run_flow(**base, data={"path": str(csv)})
    bad = tmp_path / "bad.csv"
    mutate(messy_frame(rows=200, seed=1)).to_csv(bad, index=False)
    with pytest.raises(DataError, match=message):
        run_flow(**base, data={"path": str(bad)})
    assert [v.version for v in registry().list_versions(unique_name)] == [1]


def test_regression_on_a_builtin_data_set(modelyard_env: Path, unique_name: str) -> None:
    result = run_flow(
        model_name=unique_name,
        data={"builtin": "diabetes"},
        target="progression",
        task="regression",
    )
    assert result.primary_metric == "rmse" and result.metrics["r2"] > 0.2
    assert registry().get_version(unique_name, 1).stage is Stage.CHAMPION
