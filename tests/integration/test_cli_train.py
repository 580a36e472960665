"""The ``modelyard`` command as a user types it, in a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data_factory import messy_frame

# Each call is a real process (~5 s of imports): SQLite only here; the flow tests cover PostgreSQL.
pytestmark = [
    pytest.mark.usefixtures("prefect_server"),
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),
]
MODELYARD = str(Path(sys.executable).parent / "modelyard")


def modelyard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    return subprocess.run(
        [MODELYARD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


def test_train_flags_form_registers_champion_then_challenger(
    modelyard_env: Path, tmp_path: Path, unique_name: str
) -> None:
    csv = tmp_path / "never_seen.csv"
    messy_frame(rows=300, seed=11).to_csv(csv, index=False)
    args = [
        "train",
        "--data",
        str(csv),
        "--target",
        "churned",
        "--task",
        "classification",
        "--model-name",
        unique_name,
    ]
    first = modelyard(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"registered {unique_name} version 1" in first.stdout
    assert "champion" in first.stdout

    second = modelyard(
        *args,
        "--estimator",
        "sklearn.tree.DecisionTreeClassifier",
        "--param",
        "max_depth=4",
        "--json",
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["version"] == 2 and result["champion_version"] == 1
    assert set(result["champion_metrics"]) == set(result["metrics"])

    models = json.loads(modelyard("models", "--json", cwd=tmp_path).stdout)
    assert {"name": unique_name, "aliases": {"champion": 1}, "description": ""} in models
    versions = json.loads(modelyard("versions", unique_name, "--json", cwd=tmp_path).stdout)
    assert [v["stage"] for v in versions] == ["champion", "candidate"]
    assert versions[1]["lineage"]["rows"] == str(result["rows"])


def test_regression_and_errors_exit_2_with_a_message(
    modelyard_env: Path, tmp_path: Path, unique_name: str
) -> None:
    csv = tmp_path / "r.csv"
    messy_frame(rows=200, task="regression").to_csv(csv, index=False)
    ok = modelyard(
        "train",
        "--data",
        str(csv),
        "--target",
        "revenue",
        "--task",
        "regression",
        "--model-name",
        unique_name,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr

    wrong = modelyard(
        "train",
        "--data",
        str(csv),
        "--target",
        "plan",
        "--task",
        "regression",
        "--model-name",
        unique_name + "x",
        cwd=tmp_path,
    )
    assert wrong.returncode == 2
    assert "regression target 'plan' must be numeric" in wrong.stderr
    assert "Traceback" not in wrong.stderr

    missing = modelyard("versions", "ghost-model", cwd=tmp_path)
    assert missing.returncode == 2 and "no registered model named 'ghost-model'" in missing.stderr
