"""The registry commands' contract with CI: exit codes, stderr messages, --json on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.config import parse_train_config
from pipelines.flows.train import run_training
from tests.data_factory import messy_frame

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture
def model(modelyard_env: Path, tmp_path: Path, unique_name: str) -> str:
    from modelyard.settings import get_settings

    csv = tmp_path / "d.csv"
    messy_frame(rows=200).to_csv(csv, index=False)
    config = parse_train_config(
        {
            "model_name": unique_name,
            "data": {"path": str(csv)},
            "target": "churned",
            "task": "classification",
        }
    )
    for _ in range(3):
        run_training(config, get_settings())
    return unique_name


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def write_policy(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return str(path)


def test_exit_0_with_json_result_then_status_and_history(model: str, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, "min_improvement: -1\n")
    done = run(
        "promote",
        model,
        "2",
        "--to",
        "canary",
        "--traffic",
        "20",
        "--policy",
        policy,
        "--reason",
        "ci run 7",
        "--json",
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["applied"] and result["after"]["canary"] == 2
    assert result["after"]["canary_share"] == 20

    status = json.loads(run("status", model, "--json").stdout)
    assert status == {
        "model": model,
        "champion": 1,
        "canary": 2,
        "canary_share": 20,
        "shadow": None,
    }
    history = json.loads(run("history", model, "--json").stdout)
    last = history[-1]
    assert (last["action"], last["version"], last["to_stage"], last["reason"]) == (
        "promote",
        2,
        "canary",
        "ci run 7",
    )
    assert last["actor"] and last["evidence"]["gates"]


def test_exit_1_when_a_gate_refuses_with_each_gate_printed(model: str, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, "metric_gates: [{metric: accuracy, min: 0.9999}]\n")
    refused = run("promote", model, "2", "--to", "shadow", "--policy", policy)
    assert refused.exit_code == 1
    assert "metric:accuracy" in refused.stderr and "FAIL" in refused.stderr
    assert ">= 0.9999" in refused.stderr or "0.9999" in refused.stderr
    dry = run("promote", model, "2", "--to", "shadow", "--policy", policy, "--dry-run")
    assert dry.exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("promote", "ghost", "1", "--to", "shadow"), "no registered model named 'ghost'"),
        (("promote", "{model}", "9", "--to", "shadow"), "has no version 9"),
        (("promote", "{model}", "2", "--to", "prod"), "--to must be one of"),
        (("promote", "{model}", "2", "--to", "shadow", "--policy", "/nope.yaml"), "does not exist"),
        (("rollback", "{model}"), "no previous champion"),
    ],
)
def test_exit_2_for_usage_and_configuration_errors(model: str, args: tuple, message: str) -> None:
    result = run(*(a.format(model=model) for a in args))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_exit_3_when_the_champion_is_not_the_one_expected(model: str, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, "min_improvement: -1\n")
    stale = run(
        "promote", model, "2", "--to", "shadow", "--policy", policy, "--expect-champion", "3"
    )
    assert stale.exit_code == 3
    assert "expected champion v3" in stale.stderr and "now champion v1" in stale.stderr
    fresh = run(
        "promote", model, "2", "--to", "shadow", "--policy", policy, "--expect-champion", "1"
    )
    assert fresh.exit_code == 0, fresh.output


def test_rollback_in_one_command(model: str, tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path,
        "min_improvement: -1\nrequire_approval_for_champion: false\ncanary: {steps: [100]}\n",
    )
    assert run("promote", model, "3", "--to", "champion", "--policy", policy).exit_code == 0
    back = run("rollback", model, "--reason", "error rate", "--json")
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout)["after"]["champion"] == 1
    assert "rolled" in back.stderr and "back to v1" in back.stderr
