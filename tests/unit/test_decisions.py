"""Pure promotion and rollback decisions: each gate passing and failing, transitions, canary."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from registry.decisions import (
    CANARY_TRAFFIC_TAG,
    Decision,
    GateResult,
    Observations,
    canary_share,
    decide_promotion,
    decide_rollback,
    next_canary_share,
)
from registry.errors import RegistryError
from registry.policy import DEFAULT_POLICY, PromotionPolicy, parse_policy
from registry.types import ModelVersion, Stage

DIRECTIONS = {"accuracy": "max", "f1_macro": "max", "rmse": "min"}
# No approval, no canary ramp, no evidence minimums: each test switches on the gate it exercises.
BARE: dict[str, Any] = {
    "require_approval_for_champion": False,
    "canary": {"steps": [100], "min_observation": {"requests": 0, "minutes": 0}},
    "shadow": {"min_observation": {"requests": 0, "minutes": 0}},
    "rollback": {"max_error_rate": None},
}
GOOD = Observations(
    requests=5000,
    minutes=60,
    error_rate=0.001,
    latency_p99_ms=80,
    agreement_with_champion=0.97,
    quality_delta=0.01,
    prediction_drift=0.05,
)


def policy(**changes: Any) -> PromotionPolicy:
    raw = {**BARE, **changes}
    return parse_policy(raw)


def version(
    stage: Stage = Stage.CANDIDATE,
    *,
    number: int = 7,
    metrics: dict[str, float] | None = None,
    champion_metrics: dict[str, float] | None = None,
    primary: str | None = "accuracy",
    share: int | None = None,
    champion_version: int | None = 3,
    tags: dict[str, str] | None = None,
) -> ModelVersion:
    """A version as the training flow tags it; ``stage`` via tag, ``share`` as the canary share."""
    all_tags = {
        "modelyard.stage": stage.value,
        "modelyard.metric_directions": json.dumps(DIRECTIONS),
    }
    if primary is not None:
        all_tags["modelyard.primary_metric"] = primary
    metrics = {"accuracy": 0.90, "rmse": 2.0} if metrics is None else metrics
    all_tags.update({f"modelyard.metric.{k}": repr(v) for k, v in metrics.items()})
    if champion_metrics is None:
        champion_metrics = {"accuracy": 0.88, "rmse": 2.2}
    all_tags.update(
        {f"modelyard.champion_metric.{k}": repr(v) for k, v in champion_metrics.items()}
    )
    if champion_version is not None and champion_metrics:
        all_tags["modelyard.champion_version"] = str(champion_version)
    if share is not None:
        all_tags[CANARY_TRAFFIC_TAG] = str(share)
    all_tags.update(tags or {})
    return ModelVersion(name="iris", version=number, tags=all_tags)


CHAMPION = ModelVersion(name="iris", version=3, aliases=("champion",))
RAMP = {"steps": [5, 25, 50, 100], "min_observation": {"requests": 0, "minutes": 0}}


def gate(decision: Decision, name: str) -> GateResult:
    matches = [g for g in decision.gates if g.name == name]
    assert len(matches) == 1, f"expected one {name!r} gate in {[g.name for g in decision.gates]}"
    return matches[0]


def promote(
    candidate: ModelVersion,
    target: Stage,
    pol: PromotionPolicy | None = None,
    obs: Observations | None = GOOD,
    champion: ModelVersion | None = CHAMPION,
    **kwargs: Any,
) -> Decision:
    return decide_promotion(candidate, champion, pol or policy(), obs, target=target, **kwargs)


# --- transitions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (Stage.CANDIDATE, Stage.SHADOW, True),
        (Stage.CANDIDATE, Stage.CANARY, True),
        (Stage.CANDIDATE, Stage.CHAMPION, True),
        (Stage.CANDIDATE, Stage.RETIRED, True),
        (Stage.CANDIDATE, Stage.CANDIDATE, False),
        (Stage.SHADOW, Stage.CANARY, True),
        (Stage.SHADOW, Stage.CHAMPION, True),
        (Stage.SHADOW, Stage.RETIRED, True),
        (Stage.SHADOW, Stage.SHADOW, False),
        (Stage.SHADOW, Stage.CANDIDATE, False),
        (Stage.CANARY, Stage.CANARY, True),
        (Stage.CANARY, Stage.CHAMPION, True),
        (Stage.CANARY, Stage.RETIRED, True),
        (Stage.CANARY, Stage.SHADOW, False),
        (Stage.CHAMPION, Stage.CHAMPION, False),
        (Stage.CHAMPION, Stage.CANARY, False),
        (Stage.CHAMPION, Stage.SHADOW, False),
        (Stage.CHAMPION, Stage.RETIRED, True),
        (Stage.RETIRED, Stage.SHADOW, True),
        (Stage.RETIRED, Stage.CANARY, True),
        (Stage.RETIRED, Stage.CHAMPION, True),
        (Stage.RETIRED, Stage.RETIRED, False),
        (Stage.RETIRED, Stage.CANDIDATE, False),
    ],
)
def test_transition_gate(current: Stage, target: Stage, allowed: bool) -> None:
    decision = promote(version(current, share=10), target, policy(canary=RAMP), champion=None)
    transition = gate(decision, "transition")
    assert transition.passed is allowed
    assert transition.measured == f"{current.value} -> {target.value}"
    if not allowed:
        assert not decision.allowed


@pytest.mark.parametrize(
    ("current", "target", "why"),
    [
        (Stage.CHAMPION, Stage.CHAMPION, "a champion can only be retired"),
        (Stage.SHADOW, Stage.CANDIDATE, "no version goes back to candidate"),
        (Stage.CANARY, Stage.SHADOW, "a canary can move to: canary, champion, retired"),
        (Stage.RETIRED, Stage.RETIRED, "a retired can move to: canary, champion, shadow"),
    ],
)
def test_illegal_transition_is_the_only_gate(current: Stage, target: Stage, why: str) -> None:
    strict = policy(metric_gates=[{"metric": "accuracy", "min": 0.99}])
    decision = promote(version(current), target, strict)
    assert [g.name for g in decision.gates] == ["transition"]
    (reason,) = decision.reasons
    assert reason.startswith(f"transition: {current.value} -> {target.value} is not allowed: {why}")
    assert decision.refused_gates == decision.gates


def test_retiring_skips_every_other_gate() -> None:
    strict = policy(metric_gates=[{"metric": "accuracy", "min": 0.99}])
    decision = promote(version(Stage.CANARY, metrics={}), Stage.RETIRED, strict, obs=None)
    assert decision.allowed
    assert [g.name for g in decision.gates] == ["transition"]
    assert decision.traffic is None


def test_retiring_the_champion_warns_that_none_is_left() -> None:
    champion = ModelVersion(name="iris", version=3, aliases=("champion",))
    decision = promote(champion, Stage.RETIRED, champion=champion)
    assert decision.allowed
    assert "no champion until another version is promoted" in decision.reasons[-1]


def test_champion_of_another_model_is_a_caller_error() -> None:
    other = ModelVersion(name="penguins", version=1)
    with pytest.raises(RegistryError, match=r"another model \('penguins' v1\)"):
        promote(version(), Stage.SHADOW, champion=other)


def test_allowed_decision_lists_every_gate_and_one_reason() -> None:
    pol = policy(
        metric_gates=[{"metric": "accuracy", "min": 0.8}],
        behavioural_checks=["typo_invariance"],
        require_approval_for_champion=True,
    )
    obs = Observations(behavioural={"typo_invariance": True})
    decision = promote(version(), Stage.CHAMPION, pol, obs, approved=True)
    assert decision.allowed
    assert [g.name for g in decision.gates] == [
        "transition",
        "rollout",
        "metric:accuracy",
        "improvement",
        "behavioural:typo_invariance",
        "approval",
    ]
    assert decision.reasons == ("candidate -> champion: all 6 gates passed",)
    assert decision.refused_gates == ()


# --- metric gates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "metrics", "passed", "measured", "threshold"),
    [
        ({"min": 0.85}, {"accuracy": 0.9}, True, "0.9", ">= 0.85"),
        ({"min": 0.85}, {"accuracy": 0.85}, True, "0.85", ">= 0.85"),
        ({"min": 0.95}, {"accuracy": 0.9}, False, "0.9", ">= 0.95"),
        ({"max": 0.95}, {"accuracy": 0.96}, False, "0.96", "<= 0.95"),
        ({"min": 0.5, "max": 0.95}, {"accuracy": 0.9}, True, "0.9", ">= 0.5 and <= 0.95"),
        ({"min": 0.5}, {"rmse": 1.0}, False, "not measured", ">= 0.5"),
        ({"min": 0.5}, {"accuracy": float("nan")}, False, "not measured", ">= 0.5"),
    ],
)
def test_metric_gate(
    bounds: dict[str, float],
    metrics: dict[str, float],
    passed: bool,
    measured: str,
    threshold: str,
) -> None:
    pol = policy(metric_gates=[{"metric": "accuracy", **bounds}])
    decision = promote(version(metrics=metrics), Stage.SHADOW, pol, champion=None)
    result = gate(decision, "metric:accuracy")
    assert (result.passed, result.measured, result.threshold) == (passed, measured, threshold)
    assert decision.allowed is passed


def test_metric_gate_messages() -> None:
    pol = policy(
        metric_gates=[{"metric": "accuracy", "min": 0.95}, {"metric": "f1_macro", "min": 0}]
    )
    decision = promote(version(), Stage.SHADOW, pol, champion=None)
    assert decision.reasons == (
        "metric:accuracy: accuracy 0.9 is outside >= 0.95",
        "metric:f1_macro: f1_macro not measured",
    )


# --- improvement over the champion --------------------------------------------------------------


@pytest.mark.parametrize(
    ("primary", "mine", "theirs", "min_improvement", "passed", "measured"),
    [
        ("accuracy", 0.90, 0.88, 0.0, True, "+0.02"),
        ("accuracy", 0.88, 0.88, 0.0, True, "+0"),
        ("accuracy", 0.87, 0.88, 0.0, False, "-0.01"),
        ("accuracy", 0.85, 0.80, 0.05, True, "+0.05"),  # 0.04999... in floating point
        ("accuracy", 0.84, 0.80, 0.05, False, "+0.04"),
        ("accuracy", 0.87, 0.88, -0.02, True, "-0.01"),
        ("rmse", 1.8, 2.0, 0.0, True, "+0.2"),  # lower is better
        ("rmse", 2.1, 2.0, 0.0, False, "-0.1"),
        ("rmse", 1.9, 2.0, 0.2, False, "+0.1"),
    ],
)
def test_improvement_is_direction_aware(
    primary: str,
    mine: float,
    theirs: float,
    min_improvement: float,
    passed: bool,
    measured: str,
) -> None:
    candidate = version(
        metrics={primary: mine}, champion_metrics={primary: theirs}, primary=primary
    )
    decision = promote(candidate, Stage.SHADOW, policy(min_improvement=min_improvement))
    result = gate(decision, "improvement")
    assert (result.passed, result.measured) == (passed, measured)
    assert f"vs champion v3 {theirs:g} on the same rows" in result.message


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (version(champion_metrics={}), "the champion's accuracy on the candidate's held-out rows"),
        (
            version(champion_metrics={}, tags={"modelyard.champion_eval_error": "shape mismatch"}),
            "was not recorded: shape mismatch",
        ),
        (version(champion_metrics={"rmse": 2.0}), "champion's accuracy on the candidate's"),
        (version(metrics={"rmse": 2.0}), "candidate's accuracy not measured"),
        (version(primary=None), "no primary metric recorded (tag modelyard.primary_metric)"),
        (version(primary="f1_macro", metrics={"f1_macro": 0.9}), "champion's f1_macro"),
        (version(primary="logloss"), "direction of logloss unknown"),
        (
            version(tags={"modelyard.metric_directions": "not json"}),
            "direction of accuracy unknown",
        ),
        (
            version(champion_version=2),
            "scores on these rows are of v2, but the champion is now v3",
        ),
    ],
)
def test_improvement_fails_without_a_fair_comparison(candidate: ModelVersion, message: str) -> None:
    decision = promote(candidate, Stage.SHADOW)
    result = gate(decision, "improvement")
    assert not result.passed
    assert result.measured == "not measured"
    assert message in result.message
    assert not decision.allowed


def test_improvement_passes_without_a_champion() -> None:
    decision = promote(version(champion_metrics={}), Stage.CHAMPION, champion=None)
    result = gate(decision, "improvement")
    assert (result.passed, result.message) == (True, "no champion to compare")
    assert decision.allowed


# --- behavioural checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "passed", "measured"),
    [
        ({"typo_invariance": True}, True, "passed"),
        ({"typo_invariance": False}, False, "failed"),
        ({"other": True}, False, "not reported"),
        (None, False, "not reported"),
    ],
)
def test_behavioural_check(reported: dict[str, bool] | None, passed: bool, measured: str) -> None:
    obs = None if reported is None else Observations(behavioural=reported)
    pol = policy(behavioural_checks=["typo_invariance"])
    decision = promote(version(), Stage.SHADOW, pol, obs)
    result = gate(decision, "behavioural:typo_invariance")
    assert (result.passed, result.measured) == (passed, measured)
    assert decision.allowed is passed


# --- approval -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("required", "approved", "target", "allowed", "has_gate"),
    [
        (True, False, Stage.CHAMPION, False, True),
        (True, True, Stage.CHAMPION, True, True),
        (False, False, Stage.CHAMPION, True, False),
        (True, False, Stage.CANARY, True, False),
    ],
)
def test_approval_gate(
    required: bool, approved: bool, target: Stage, allowed: bool, has_gate: bool
) -> None:
    pol = policy(
        require_approval_for_champion=required,
        canary={"steps": [100] if target is Stage.CHAMPION else [5, 100]},
    )
    decision = promote(version(), target, pol, approved=approved)
    assert decision.allowed is allowed
    names = [g.name for g in decision.gates]
    assert ("approval" in names) is has_gate
    if required and not approved and has_gate:
        assert "approval: champion needs an explicit approval" in decision.reasons


# --- canary steps and traffic -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "current", "expected"),
    [
        ([5, 25, 50, 100], None, 5),
        ([5, 25, 50, 100], 5, 25),
        ([5, 25, 50, 100], 25, 50),
        ([5, 25, 50, 100], 50, 100),
        ([5, 25, 50, 100], 100, None),
        ([5, 25, 50, 100], 10, 25),  # between steps after an explicit share
        ([100], None, 100),
    ],
)
def test_next_canary_share(steps: list[int], current: int | None, expected: int | None) -> None:
    assert next_canary_share(current, policy(canary={"steps": steps})) == expected


@pytest.mark.parametrize(
    ("current", "share", "traffic", "allowed", "expected_traffic", "message"),
    [
        (Stage.CANDIDATE, None, None, True, 5, "canary at 5%"),
        (Stage.SHADOW, None, None, True, 5, "canary at 5%"),
        (Stage.CANARY, 5, None, True, 25, "canary at 25%"),
        (Stage.CANARY, 25, None, True, 50, "canary at 50%"),
        (Stage.CANARY, 50, None, False, 100, "no canary step left after 50%: promote to champion"),
        (Stage.CANARY, None, None, False, None, "the canary's current share is unknown"),
        (Stage.CANARY, None, 30, True, 30, "canary at 30%"),
        (Stage.CANDIDATE, None, 12, True, 12, "canary at 12%"),
        (Stage.CANARY, 5, 10, True, 10, "canary at 10%"),
        (Stage.CANARY, 25, 10, False, 10, "the canary already serves 25%"),
        (Stage.CANDIDATE, None, 100, False, 100, "a canary serves 1% to 99%"),
        (Stage.CANDIDATE, None, 0, False, 0, "a canary serves 1% to 99%"),
    ],
)
def test_canary_traffic(
    current: Stage,
    share: int | None,
    traffic: int | None,
    allowed: bool,
    expected_traffic: int | None,
    message: str,
) -> None:
    decision = promote(
        version(current, share=share), Stage.CANARY, policy(canary=RAMP), traffic=traffic
    )
    result = gate(decision, "traffic")
    assert result.passed is allowed
    assert message in result.message
    assert decision.allowed is allowed
    assert decision.traffic == expected_traffic


def test_policy_without_ramp_has_no_canary() -> None:
    decision = promote(version(), Stage.CANARY, policy(canary={"steps": [100]}))
    assert not decision.allowed
    assert "no canary ramp (steps: [100]): promote to champion" in gate(decision, "traffic").message


@pytest.mark.parametrize("target", [Stage.SHADOW, Stage.CHAMPION, Stage.RETIRED])
def test_traffic_is_only_for_a_canary(target: Stage) -> None:
    decision = promote(version(), target, traffic=20)
    result = gate(decision, "traffic")
    assert (result.passed, result.threshold) == (False, "only for a canary")
    assert decision.traffic is None


def test_canary_share_reads_the_tag_of_a_canary_only() -> None:
    assert canary_share(version(Stage.CANARY, share=25)) == 25
    assert canary_share(version(Stage.CHAMPION, share=25)) is None
    assert canary_share(version(Stage.CANARY, tags={CANARY_TRAFFIC_TAG: "lots"})) is None


@pytest.mark.parametrize(
    ("current", "share", "steps", "passed", "measured"),
    [
        (Stage.CANARY, 50, [5, 25, 50, 100], True, "canary at 50%"),
        (Stage.CANARY, 25, [5, 25, 50, 100], False, "canary at 25%"),
        (Stage.CANARY, None, [5, 25, 50, 100], False, "canary"),
        (Stage.SHADOW, None, [5, 25, 50, 100], False, "shadow"),
        (Stage.CANDIDATE, None, [5, 25, 50, 100], False, "candidate"),
        (Stage.CANDIDATE, None, [100], True, "candidate"),
        (Stage.SHADOW, None, [100], True, "shadow"),
        (Stage.CANARY, 60, [5, 60, 100], True, "canary at 60%"),
    ],
)
def test_rollout_gate_for_champion(
    current: Stage, share: int | None, steps: list[int], passed: bool, measured: str
) -> None:
    pol = policy(canary={"steps": steps, "min_observation": {"requests": 0, "minutes": 0}})
    decision = promote(version(current, share=share), Stage.CHAMPION, pol)
    result = gate(decision, "rollout")
    assert (result.passed, result.measured) == (passed, measured)
    assert decision.allowed is passed
    if not passed:
        assert "the policy ramps a canary through" in result.message


@pytest.mark.parametrize(
    ("current", "passed"),
    [(Stage.CANDIDATE, False), (Stage.RETIRED, False), (Stage.SHADOW, True)],
)
def test_shadow_required_before_canary(current: Stage, passed: bool) -> None:
    pol = policy(shadow={"required": True}, canary=RAMP)
    decision = promote(version(current), Stage.CANARY, pol)
    assert gate(decision, "rollout").passed is passed
    assert decision.allowed is passed


# --- evidence of the current shadow or canary stage ---------------------------------------------


EVIDENCE: dict[str, Any] = {
    "max_latency_ms": 200,
    "shadow": {
        "min_observation": {"requests": 1000, "minutes": 30},
        "min_agreement_with_champion": 0.9,
    },
    "canary": {"steps": [5, 25, 50, 100], "min_observation": {"requests": 500, "minutes": 10}},
    "rollback": {"max_error_rate": 0.01, "max_quality_drop": 0.02, "max_prediction_drift": 0.3},
}


@pytest.mark.parametrize(
    ("change", "name", "measured", "threshold"),
    [
        ({"requests": 999}, "observed_requests", "999", ">= 1000"),
        ({"requests": None}, "observed_requests", "not observed", ">= 1000"),
        ({"minutes": 29.5}, "observed_minutes", "29.5", ">= 30"),
        ({"latency_p99_ms": 201}, "latency_p99_ms", "201", "<= 200"),
        ({"latency_p99_ms": None}, "latency_p99_ms", "not observed", "<= 200"),
        ({"error_rate": 0.02}, "error_rate", "0.02", "<= 0.01"),
        ({"error_rate": float("nan")}, "error_rate", "not observed", "<= 0.01"),
        ({"agreement_with_champion": 0.85}, "agreement_with_champion", "0.85", ">= 0.9"),
        ({"agreement_with_champion": None}, "agreement_with_champion", "not observed", ">= 0.9"),
        ({"quality_delta": -0.03}, "quality_vs_champion", "-0.03", "drop <= 0.02"),
        ({"prediction_drift": 0.4}, "prediction_drift", "0.4", "<= 0.3"),
    ],
)
def test_shadow_evidence_gate_fails(
    change: dict[str, Any], name: str, measured: str, threshold: str
) -> None:
    pol = policy(**EVIDENCE)
    obs = replace(GOOD, **change)
    decision = promote(version(Stage.SHADOW), Stage.CANARY, pol, obs)
    result = gate(decision, name)
    assert (result.passed, result.measured, result.threshold) == (False, measured, threshold)
    assert decision.refused_gates == (result,)


def test_shadow_evidence_all_pass() -> None:
    decision = promote(version(Stage.SHADOW), Stage.CANARY, policy(**EVIDENCE), GOOD)
    assert decision.allowed, decision.reasons
    assert {g.name for g in decision.gates} >= {
        "observed_requests",
        "observed_minutes",
        "latency_p99_ms",
        "error_rate",
        "agreement_with_champion",
        "quality_vs_champion",
        "prediction_drift",
    }


def test_missing_observations_fail_required_evidence_only() -> None:
    decision = promote(version(Stage.SHADOW), Stage.CANARY, policy(**EVIDENCE), obs=None)
    refused = {g.name: g.measured for g in decision.refused_gates}
    assert refused == {
        "observed_requests": "not observed",
        "observed_minutes": "not observed",
        "latency_p99_ms": "not observed",
        "error_rate": "not observed",
        "agreement_with_champion": "not observed",
    }
    # Labelled feedback and drift may lag behind: unmeasured, they do not block.
    assert gate(decision, "quality_vs_champion").passed
    assert gate(decision, "prediction_drift").passed


def test_canary_uses_its_own_minimum_and_no_agreement_gate() -> None:
    obs = replace(GOOD, requests=600, minutes=12)
    decision = promote(version(Stage.CANARY, share=5), Stage.CANARY, policy(**EVIDENCE), obs)
    assert decision.allowed, decision.reasons
    assert gate(decision, "observed_requests").threshold == ">= 500"
    assert "agreement_with_champion" not in [g.name for g in decision.gates]
    assert decision.traffic == 25


def test_canary_to_champion_needs_evidence_of_its_last_step() -> None:
    pol = policy(**EVIDENCE)
    obs = replace(GOOD, requests=499)
    decision = promote(version(Stage.CANARY, share=50), Stage.CHAMPION, pol, obs)
    assert [g.name for g in decision.refused_gates] == ["observed_requests"]
    assert decision.reasons == ("observed_requests: observed_requests 499 < 500",)


@pytest.mark.parametrize(
    ("max_latency_ms", "rollback_latency", "expected"),
    [(200, 300, "<= 200"), (300, 200, "<= 200"), (None, 250, "<= 250"), (150, None, "<= 150")],
)
def test_latency_gate_uses_the_stricter_ceiling(
    max_latency_ms: float | None, rollback_latency: float | None, expected: str
) -> None:
    pol = policy(max_latency_ms=max_latency_ms, rollback={"max_latency_p99_ms": rollback_latency})
    decision = promote(version(Stage.SHADOW), Stage.CANARY, pol)
    assert gate(decision, "latency_p99_ms").threshold == expected


def test_agreement_passes_without_a_champion() -> None:
    decision = promote(version(Stage.SHADOW), Stage.CANARY, policy(**EVIDENCE), champion=None)
    result = gate(decision, "agreement_with_champion")
    assert (result.passed, result.message) == (True, "no champion to compare")


def test_candidate_needs_no_observed_evidence() -> None:
    decision = promote(version(), Stage.CANARY, policy(**EVIDENCE), obs=None)
    assert decision.allowed, decision.reasons
    assert [g.name for g in decision.gates] == ["transition", "traffic", "improvement"]


def test_default_policy_walks_a_version_to_champion() -> None:
    steps = []
    for current, share in [
        (Stage.CANDIDATE, None),
        (Stage.SHADOW, None),
        (Stage.CANARY, 5),
        (Stage.CANARY, 25),
        (Stage.CANARY, 50),
    ]:
        candidate = version(current, share=share)
        target = (
            Stage.CHAMPION
            if share == 50
            else (Stage.SHADOW if current is Stage.CANDIDATE else Stage.CANARY)
        )
        decision = decide_promotion(
            candidate, CHAMPION, DEFAULT_POLICY, GOOD, target=target, approved=True
        )
        assert decision.allowed, decision.reasons
        steps.append((target.value, decision.traffic))
    assert steps == [
        ("shadow", None),
        ("canary", 5),
        ("canary", 25),
        ("canary", 50),
        ("champion", None),
    ]


# --- rollback -----------------------------------------------------------------------------------


TRIGGERS = policy(
    rollback={
        "max_error_rate": 0.05,
        "max_latency_p99_ms": 300,
        "max_quality_drop": 0.02,
        "max_prediction_drift": 0.3,
    }
)


@pytest.mark.parametrize(
    ("obs", "champion_obs", "fired", "reason"),
    [
        (GOOD, None, [], "no rollback trigger fired (4 checked)"),
        (Observations(), None, [], "no rollback trigger fired (4 checked)"),
        (Observations(error_rate=0.08), None, ["error_rate"], "error_rate 0.08 exceeds 0.05"),
        (Observations(error_rate=0.05), None, [], "no rollback trigger fired (4 checked)"),
        (
            Observations(error_rate=0.08),
            Observations(error_rate=0.01),
            ["error_rate"],
            "error_rate 0.08 exceeds 0.05 (champion 0.01)",
        ),
        (
            Observations(error_rate=0.08),
            Observations(error_rate=0.09),
            [],
            "no rollback trigger fired (4 checked)",
        ),
        (
            Observations(latency_p99_ms=450),
            None,
            ["latency_p99_ms"],
            "latency_p99_ms 450 exceeds 300",
        ),
        (
            Observations(quality_delta=-0.05),
            None,
            ["quality_vs_champion"],
            "quality -0.05 vs champion on labelled feedback: exceeds drop 0.02",
        ),
        (Observations(quality_delta=-0.02), None, [], "no rollback trigger fired (4 checked)"),
        (
            Observations(prediction_drift=0.31),
            Observations(prediction_drift=0.1),
            ["prediction_drift"],
            "prediction_drift 0.31 exceeds 0.3 (champion 0.1)",
        ),
        (
            Observations(error_rate=0.2, latency_p99_ms=900),
            None,
            ["error_rate", "latency_p99_ms"],
            "error_rate 0.2 exceeds 0.05",
        ),
        (Observations(error_rate=float("nan")), None, [], "no rollback trigger fired (4 checked)"),
    ],
)
def test_rollback_triggers(
    obs: Observations, champion_obs: Observations | None, fired: list[str], reason: str
) -> None:
    decision = decide_rollback(obs, champion_obs, TRIGGERS)
    assert decision.rollback is bool(fired)
    assert [g.name for g in decision.fired] == fired
    assert decision.reasons[0] == reason
    assert len(decision.gates) == 4


def test_shared_cause_is_explained_not_fired() -> None:
    decision = decide_rollback(
        Observations(error_rate=0.08), Observations(error_rate=0.09), TRIGGERS
    )
    result = next(g for g in decision.gates if g.name == "error_rate")
    assert result.passed
    assert "the champion measures 0.09: the cause is shared" in result.message


def test_rollback_with_no_triggers_set() -> None:
    pol = policy(rollback={"max_error_rate": None})
    decision = decide_rollback(Observations(error_rate=1.0), None, pol)
    assert (decision.rollback, decision.gates) == (False, ())
    assert decision.reasons == ("no rollback trigger fired (0 checked)",)
