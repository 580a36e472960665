"""Promotion policy files: defaults, validation messages, and which file a model gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.errors import RegistryError
from registry.policy import (
    DEFAULT_POLICY,
    MetricGate,
    PolicyError,
    PromotionPolicy,
    load_policy,
    parse_policy,
    policy_for,
)

BUNDLED_DEFAULT = Path(__file__).parents[2] / "registry" / "policies" / "default.yaml"

VALID = """
metric_gates:
  - metric: accuracy
    min: 0.8
  - metric: rmse
    max: 3.5
min_improvement: 0.01
behavioural_checks: [typo_invariance]
max_latency_ms: 250
require_approval_for_champion: false
shadow:
  required: true
  min_observation: {requests: 50, minutes: 0}
  min_agreement_with_champion: 0.9
canary:
  steps: [10, 50, 100]
  min_observation: {requests: 1000, minutes: 30}
rollback:
  max_error_rate: 0.02
  max_latency_p99_ms: 400
  max_quality_drop: 0.03
  max_prediction_drift: 0.2
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_default_policy_values() -> None:
    assert DEFAULT_POLICY.canary.steps == (5, 25, 50, 100)
    assert DEFAULT_POLICY.min_improvement == 0.0
    assert DEFAULT_POLICY.require_approval_for_champion is True
    assert DEFAULT_POLICY.metric_gates == ()
    assert DEFAULT_POLICY.rollback.max_error_rate == 0.05


def test_bundled_default_yaml_equals_default_policy() -> None:
    assert load_policy(BUNDLED_DEFAULT) == DEFAULT_POLICY


def test_default_policy_is_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        DEFAULT_POLICY.min_improvement = 1.0


def test_valid_file_loads_every_field(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "m.yaml", VALID))
    assert policy.metric_gates == (
        MetricGate(metric="accuracy", min=0.8),
        MetricGate(metric="rmse", max=3.5),
    )
    assert policy.min_improvement == 0.01
    assert policy.behavioural_checks == ("typo_invariance",)
    assert policy.max_latency_ms == 250
    assert policy.require_approval_for_champion is False
    assert policy.shadow.required is True
    assert policy.shadow.min_observation.requests == 50
    assert policy.shadow.min_agreement_with_champion == 0.9
    assert policy.canary.steps == (10, 50, 100)
    assert policy.canary.min_observation.minutes == 30
    assert policy.rollback.max_prediction_drift == 0.2


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "empty.yaml", "")) == DEFAULT_POLICY


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "p.yaml", "canary:\n  steps: [50, 100]\n"))
    assert policy.canary.steps == (50, 100)
    assert policy.canary.min_observation == DEFAULT_POLICY.canary.min_observation
    assert policy.rollback == DEFAULT_POLICY.rollback


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("min_improvment: 0.1\n", "min_improvment: unknown field"),
        ("canary:\n  stepz: [5, 100]\n", "canary.stepz: unknown field"),
        ("canary:\n  steps: [5, 5, 100]\n", "canary.steps: steps must be strictly increasing"),
        ("canary:\n  steps: [50, 25, 100]\n", "strictly increasing, got [50, 25, 100]"),
        ("canary:\n  steps: [5, 50]\n", "canary.steps: the last step must be 100, got 50"),
        ("canary:\n  steps: [0, 100]\n", "every step must be in (0, 100], got [0]"),
        ("canary:\n  steps: [5, 150]\n", "every step must be in (0, 100], got [150]"),
        ("canary:\n  steps: []\n", "canary.steps: give at least one step"),
        ("metric_gates:\n  - metric: accuracy\n", "metric_gates.0: metric gate 'accuracy' needs"),
        (
            "metric_gates:\n  - {metric: f1, min: 0.9, max: 0.5}\n",
            "metric gate 'f1' has min 0.9 > max 0.5",
        ),
        (
            "metric_gates:\n  - {metric: f1, min: 0.5}\n  - {metric: f1, max: 0.9}\n",
            "one gate per metric; repeated: f1",
        ),
        ("behavioural_checks: [a, a]\n", "behavioural checks are repeated"),
        ("rollback:\n  max_error_rate: 1.5\n", "rollback.max_error_rate: Input should be less"),
        ("shadow:\n  min_observation: {requests: -1}\n", "shadow.min_observation.requests"),
        ("shadow:\n  min_agreement_with_champion: 2\n", "shadow.min_agreement_with_champion"),
        ("max_latency_ms: 0\n", "max_latency_ms: Input should be greater than 0"),
        ("min_improvement: .nan\n", "min_improvement: Input should be a finite number"),
        ("require_approval_for_champion: maybe\n", "require_approval_for_champion"),
    ],
)
def test_invalid_field_is_named_with_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert f"invalid promotion policy {path}" in message
    assert expected in message


def test_every_bad_field_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "min_improvement: x\ncanary:\n  steps: [5, 50]\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "min_improvement: Input should be a valid number" in caught.value.message
    assert "canary.steps: the last step must be 100" in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- 5\n- 100\n", "must hold a mapping of fields, not list"),
        ("canary: [unclosed\n", "is not valid YAML"),
        ("just a string\n", "must hold a mapping of fields, not str"),
    ],
)
def test_file_that_is_not_a_policy_mapping(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "odd.yaml", text)
    with pytest.raises(PolicyError, match="promotion policy file") as caught:
        load_policy(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.message == f"promotion policy file {path} does not exist"
    assert isinstance(caught.value, RegistryError)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_parse_policy_names_its_source() -> None:
    with pytest.raises(PolicyError, match=r"invalid promotion policy cli: shadows: unknown field"):
        parse_policy({"shadows": {}}, source="cli")


@pytest.mark.parametrize(
    ("files", "expected_steps"),
    [
        (
            {
                "iris.yaml": "canary: {steps: [10, 100]}",
                "default.yaml": "canary: {steps: [1, 100]}",
            },
            (10, 100),
        ),
        (
            {
                "other.yaml": "canary: {steps: [10, 100]}",
                "default.yaml": "canary: {steps: [1, 100]}",
            },
            (1, 100),
        ),
        ({"other.yaml": "canary: {steps: [10, 100]}"}, DEFAULT_POLICY.canary.steps),
        ({}, DEFAULT_POLICY.canary.steps),
    ],
)
def test_policy_for_prefers_model_file_then_default_file(
    tmp_path: Path, files: dict[str, str], expected_steps: tuple[int, ...]
) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    assert policy_for("iris", tmp_path).canary.steps == expected_steps


def test_policy_for_without_folder_is_the_default() -> None:
    assert policy_for("iris", None) is DEFAULT_POLICY


def test_policy_for_reports_an_invalid_model_file(tmp_path: Path) -> None:
    path = write(tmp_path, "iris.yaml", "canary: {steps: [5]}")
    write(tmp_path, "default.yaml", "")
    with pytest.raises(PolicyError, match="the last step must be 100") as caught:
        policy_for("iris", tmp_path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name", ["../secrets", "a/b", "", ".hidden"])
def test_policy_for_refuses_names_that_are_not_file_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(PolicyError, match="cannot name a policy file"):
        policy_for(name, tmp_path)


def test_policy_is_comparable_and_hashable() -> None:
    # Frozen models compare by value: a flow can tell whether the policy changed between runs.
    assert PromotionPolicy() == DEFAULT_POLICY
    assert hash(PromotionPolicy()) == hash(DEFAULT_POLICY)
