"""Promotion and rollback decisions: pure functions from versions, a policy and observations.

Nothing here reads or writes the registry; a separate step applies a ``Decision``. Every gate the
policy sets yields a ``GateResult``, passed or not, so a CLI can print the whole table.

Transitions (``target`` by current stage; anything else is refused by the ``transition`` gate):

* candidate or retired -> shadow, canary, champion (a retired version re-enters like a candidate,
  so an old version can be brought back through the same gates);
* shadow -> canary, champion;  canary -> canary (a larger share), champion;
* any stage but retired -> retired, with no other gate (taking a version down is always allowed);
* nothing -> candidate, and a stage to itself (except canary) is refused.

Reaching champion also passes the ``rollout`` gate: when the policy has a canary ramp, the version
must be a canary at the last step below 100%.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from registry.errors import RegistryError
from registry.policy import PromotionPolicy, RollbackTriggers
from registry.types import TAG_PREFIX, ModelVersion, Stage

CANARY_TRAFFIC_TAG = TAG_PREFIX + "canary_traffic"
PRIMARY_METRIC_TAG = TAG_PREFIX + "primary_metric"
DIRECTIONS_TAG = TAG_PREFIX + "metric_directions"
CHAMPION_VERSION_TAG = TAG_PREFIX + "champion_version"
CHAMPION_EVAL_ERROR_TAG = TAG_PREFIX + "champion_eval_error"
NOT_MEASURED = "not measured"
NOT_OBSERVED = "not observed"
# Deltas such as 0.85 - 0.80 come out as 0.04999...; a threshold of 0.05 must still pass.
_TOLERANCE = 1e-9

_LATER: dict[Stage, frozenset[Stage]] = {
    Stage.CANDIDATE: frozenset({Stage.SHADOW, Stage.CANARY, Stage.CHAMPION}),
    Stage.SHADOW: frozenset({Stage.CANARY, Stage.CHAMPION}),
    Stage.CANARY: frozenset({Stage.CANARY, Stage.CHAMPION}),
    Stage.CHAMPION: frozenset(),
    Stage.RETIRED: frozenset({Stage.SHADOW, Stage.CANARY, Stage.CHAMPION}),
}


@dataclass(frozen=True)
class Observations:
    """What the gateway and monitoring measured for one version in its current stage or step.

    ``None`` means not measured. ``quality_delta`` is the version's quality minus the champion's
    on the same labelled requests, positive when the version is better (direction already
    applied). ``behavioural`` maps each behavioural check to whether it passed.
    """

    requests: int | None = None
    minutes: float | None = None
    error_rate: float | None = None
    latency_p99_ms: float | None = None
    agreement_with_champion: float | None = None
    quality_delta: float | None = None
    prediction_drift: float | None = None
    behavioural: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    """One gate: its name, the verdict, the threshold and measured value as text, and why."""

    name: str
    passed: bool
    threshold: str
    measured: str
    message: str


@dataclass(frozen=True)
class Decision:
    """Whether ``target`` is allowed, at which canary share, with every gate and the reasons."""

    allowed: bool
    target: Stage
    traffic: int | None
    gates: tuple[GateResult, ...]
    reasons: tuple[str, ...]

    @property
    def refused_gates(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.passed)


@dataclass(frozen=True)
class RollbackDecision:
    """Whether to roll back; a gate that did not pass is a trigger that fired."""

    rollback: bool
    reasons: tuple[str, ...]
    gates: tuple[GateResult, ...]

    @property
    def fired(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.passed)


def next_canary_share(current: int | None, policy: PromotionPolicy) -> int | None:
    """The policy's first canary step above ``current`` (the first step when None).

    100 means the next step is champion; None means no step is left.
    """
    steps = policy.canary.steps
    if current is None:
        return steps[0]
    return next((step for step in steps if step > current), None)


def canary_share(version: ModelVersion) -> int | None:
    """The share a canary serves, from its ``modelyard.canary_traffic`` tag; None if unrecorded."""
    raw = version.tags.get(CANARY_TRAFFIC_TAG)
    if raw is None or version.stage is not Stage.CANARY:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def decide_promotion(
    candidate: ModelVersion,
    champion: ModelVersion | None,
    policy: PromotionPolicy,
    observations: Observations | None,
    *,
    target: Stage,
    approved: bool = False,
    traffic: int | None = None,
) -> Decision:
    """Decide whether ``candidate`` may move to ``target`` under ``policy``.

    ``champion`` is the model's current champion (None before it has one), ``observations`` the
    evidence of the candidate's current stage, ``traffic`` an explicit canary share (1..99).
    An illegal transition is refused by its own gate without evaluating the others.
    Raises ``RegistryError`` when ``champion`` belongs to another model (a caller's mistake).
    """
    if champion is not None and champion.name != candidate.name:
        raise RegistryError(
            f"cannot compare {candidate.name!r} v{candidate.version} with a champion of "
            f"another model ({champion.name!r} v{champion.version})",
            hint="pass the champion of the same registered model",
        )
    current = candidate.stage
    transition = _transition_gate(current, target)
    if not transition.passed:
        return _decision(target, None, [transition], current)
    if target is Stage.RETIRED:
        gates = [transition]
        if traffic is not None:
            gates.append(_refuse("traffic", "only for a canary", str(traffic), "retiring"))
        return _decision(target, None, gates, current)
    share, traffic_gate = _traffic_gate(candidate, policy, target, traffic)
    gates = [transition, *([traffic_gate] if traffic_gate else [])]
    gates += _rollout_gates(candidate, policy, target)
    gates += _metric_gates(candidate, policy)
    gates.append(_improvement_gate(candidate, champion, policy))
    gates += _behavioural_gates(policy, observations)
    if current in (Stage.SHADOW, Stage.CANARY):
        gates += _evidence_gates(current, champion, policy, observations)
    if target is Stage.CHAMPION and policy.require_approval_for_champion:
        gates.append(_approval_gate(approved))
    return _decision(target, share, gates, current)


def decide_rollback(
    observations: Observations,
    champion_observations: Observations | None,
    policy: PromotionPolicy,
) -> RollbackDecision:
    """Whether a shadow or canary should be rolled back: any trigger of ``policy.rollback`` fired.

    A trigger fires when its threshold is exceeded and, when the champion's value for the same
    signal is known, the version is also worse than the champion: if both are as bad, the cause is
    shared (data, upstream) and rolling back would not help. Unmeasured signals never fire.
    Raises nothing.
    """
    gates = _trigger_gates(policy.rollback, observations, champion_observations)
    fired = [g for g in gates if not g.passed]
    if fired:
        reasons = tuple(g.message for g in fired)
    else:
        reasons = (f"no rollback trigger fired ({len(gates)} checked)",)
    return RollbackDecision(rollback=bool(fired), reasons=reasons, gates=tuple(gates))


def _decision(
    target: Stage, share: int | None, gates: list[GateResult], current: Stage
) -> Decision:
    refused = [g for g in gates if not g.passed]
    if refused:
        reasons = tuple(f"{g.name}: {g.message}" for g in refused)
    else:
        reasons = (f"{current.value} -> {target.value}: all {len(gates)} gates passed",)
        if current is Stage.CHAMPION and target is Stage.RETIRED:
            reasons += ("the model has no champion until another version is promoted",)
    return Decision(not refused, target, share, tuple(gates), reasons)


def _transition_gate(current: Stage, target: Stage) -> GateResult:
    legal = _LATER[current] | ({Stage.RETIRED} if current is not Stage.RETIRED else set())
    allowed = ", ".join(sorted(s.value for s in legal)) or "none"
    move = f"{current.value} -> {target.value}"
    if target in legal:
        return GateResult("transition", True, allowed, move, f"{move} is allowed")
    if current is Stage.CHAMPION and target is not Stage.RETIRED:
        why = "a champion can only be retired; promote another version to replace it"
    elif target is Stage.CANDIDATE:
        why = "no version goes back to candidate; retire it instead"
    else:
        why = f"a {current.value} can move to: {allowed}"
    return GateResult("transition", False, allowed, move, f"{move} is not allowed: {why}")


def _traffic_gate(
    candidate: ModelVersion, policy: PromotionPolicy, target: Stage, traffic: int | None
) -> tuple[int | None, GateResult | None]:
    if target is not Stage.CANARY:
        if traffic is None:
            return None, None
        return None, _refuse("traffic", "only for a canary", str(traffic), target.value)
    current = canary_share(candidate)
    if candidate.stage is Stage.CANARY and current is None and traffic is None:
        return None, _refuse(
            "traffic",
            "next canary step",
            f"{CANARY_TRAFFIC_TAG} not recorded",
            "the canary's current share is unknown; give the share explicitly",
        )
    share = traffic if traffic is not None else next_canary_share(current, policy)
    floor = current or 0
    threshold = f"{floor + 1}..99"
    if share is None or not floor < share < 100:
        shown = "none" if share is None else str(share)
        why = _traffic_refusal(share, current, traffic is not None)
        return share, _refuse("traffic", threshold, f"{shown}%", why)
    return share, GateResult("traffic", True, threshold, f"{share}%", f"canary at {share}%")


def _traffic_refusal(share: int | None, current: int | None, explicit: bool) -> str:
    if not explicit and current is None:
        return "the policy has no canary ramp (steps: [100]): promote to champion"
    if not explicit:
        return f"no canary step left after {current}%: promote to champion"
    if share is not None and current is not None and share <= current:
        return f"the canary already serves {current}%; a promotion only raises its share"
    return "a canary serves 1% to 99%; 100% is champion"


def _rollout_gates(
    candidate: ModelVersion, policy: PromotionPolicy, target: Stage
) -> list[GateResult]:
    current = candidate.stage
    if target is Stage.CANARY and policy.shadow.required:
        passed = current in (Stage.SHADOW, Stage.CANARY)
        message = "shadowed first" if passed else "the policy requires a shadow stage first"
        return [GateResult("rollout", passed, "after shadow", current.value, message)]
    if target is not Stage.CHAMPION:
        return []
    ramp = [step for step in policy.canary.steps if step < 100]
    if not ramp:
        return [GateResult("rollout", True, "no canary ramp", current.value, "no ramp to climb")]
    share = canary_share(candidate)
    threshold = f"canary at {ramp[-1]}%"
    measured = f"canary at {share}%" if share is not None else current.value
    if current is Stage.CANARY and share is not None and share >= ramp[-1]:
        return [GateResult("rollout", True, threshold, measured, "canary ramp completed")]
    steps = ", ".join(f"{s}%" for s in ramp)
    why = f"the policy ramps a canary through {steps} before champion; version is {measured}"
    return [_refuse("rollout", threshold, measured, why)]


def _metric_gates(candidate: ModelVersion, policy: PromotionPolicy) -> list[GateResult]:
    gates = []
    metrics = candidate.metrics
    for gate in policy.metric_gates:
        name = f"metric:{gate.metric}"
        bounds = [f">= {gate.min:g}"] if gate.min is not None else []
        bounds += [f"<= {gate.max:g}"] if gate.max is not None else []
        threshold = " and ".join(bounds)
        value = _finite(metrics.get(gate.metric))
        if value is None:
            gates.append(_refuse(name, threshold, NOT_MEASURED, f"{gate.metric} {NOT_MEASURED}"))
            continue
        low = gate.min is not None and value < gate.min
        high = gate.max is not None and value > gate.max
        verdict = "outside" if low or high else "within"
        message = f"{gate.metric} {value:g} is {verdict} {threshold}"
        gates.append(GateResult(name, not (low or high), threshold, f"{value:g}", message))
    return gates


def _improvement_gate(
    candidate: ModelVersion, champion: ModelVersion | None, policy: PromotionPolicy
) -> GateResult:
    threshold = f"delta >= {policy.min_improvement:g}"
    if champion is None:
        return GateResult("improvement", True, threshold, "-", "no champion to compare")
    metric, direction, problem = _primary_metric(candidate)
    if problem:
        return _refuse("improvement", threshold, NOT_MEASURED, problem)
    mine = _finite(candidate.metrics.get(metric))
    theirs = _finite(candidate.champion_metrics.get(metric))
    problem = _comparison_problem(candidate, champion, metric, mine, theirs)
    if problem or mine is None or theirs is None:
        return _refuse("improvement", threshold, NOT_MEASURED, problem)
    delta = mine - theirs if direction == "max" else theirs - mine
    passed = delta >= policy.min_improvement - _TOLERANCE
    message = (
        f"{metric} ({direction}) {mine:g} vs champion v{champion.version} {theirs:g} on the same "
        f"rows: delta {delta:+g} {'meets' if passed else 'is below'} {policy.min_improvement:g}"
    )
    return GateResult("improvement", passed, threshold, f"{delta:+g}", message)


def _primary_metric(candidate: ModelVersion) -> tuple[str, str, str]:
    """The primary metric and its direction ("max"/"min"), or a problem explaining why not."""
    metric = candidate.tags.get(PRIMARY_METRIC_TAG, "")
    if not metric:
        return "", "", f"no primary metric recorded (tag {PRIMARY_METRIC_TAG})"
    try:
        directions = json.loads(candidate.tags.get(DIRECTIONS_TAG, "{}"))
    except json.JSONDecodeError:
        directions = {}
    direction = directions.get(metric) if isinstance(directions, dict) else None
    if direction not in ("max", "min"):
        return metric, "", f"direction of {metric} unknown (tag {DIRECTIONS_TAG})"
    return metric, direction, ""


def _comparison_problem(
    candidate: ModelVersion,
    champion: ModelVersion,
    metric: str,
    mine: float | None,
    theirs: float | None,
) -> str:
    # The champion's score must come from the candidate's held-out rows and from the champion
    # serving now; a score of an older champion compares against a model nobody serves.
    scored = candidate.tags.get(CHAMPION_VERSION_TAG)
    if scored is not None and scored != str(champion.version):
        return (
            f"the champion's scores on these rows are of v{scored}, but the champion is now "
            f"v{champion.version}: retrain or re-score the candidate against it"
        )
    if mine is None:
        return f"candidate's {metric} {NOT_MEASURED}"
    if theirs is None:
        error = candidate.tags.get(CHAMPION_EVAL_ERROR_TAG)
        detail = f": {error}" if error else ""
        return f"the champion's {metric} on the candidate's held-out rows was not recorded{detail}"
    return ""


def _behavioural_gates(
    policy: PromotionPolicy, observations: Observations | None
) -> list[GateResult]:
    reported = observations.behavioural if observations is not None else {}
    gates = []
    for check in policy.behavioural_checks:
        name = f"behavioural:{check}"
        if check not in reported:
            gates.append(_refuse(name, "passed", "not reported", f"{check} was not reported"))
            continue
        passed = bool(reported[check])
        measured = "passed" if passed else "failed"
        gates.append(GateResult(name, passed, "passed", measured, f"{check} {measured}"))
    return gates


def _evidence_gates(
    current: Stage,
    champion: ModelVersion | None,
    policy: PromotionPolicy,
    observations: Observations | None,
) -> list[GateResult]:
    """Gates on what the current shadow or canary stage observed; missing evidence fails."""
    obs = observations or Observations()
    shadow = current is Stage.SHADOW
    minimum = policy.shadow.min_observation if shadow else policy.canary.min_observation
    gates = []
    if minimum.requests > 0:
        gates.append(_bound_gate("observed_requests", minimum.requests, obs.requests, floor=True))
    if minimum.minutes > 0:
        gates.append(_bound_gate("observed_minutes", minimum.minutes, obs.minutes, floor=True))
    # The stricter of the promotion ceiling and the rollback trigger: a version that would be
    # rolled back for latency must not advance either.
    ceilings = [c for c in (policy.max_latency_ms, policy.rollback.max_latency_p99_ms) if c]
    if ceilings:
        gates.append(_bound_gate("latency_p99_ms", min(ceilings), obs.latency_p99_ms))
    if policy.rollback.max_error_rate is not None:
        gates.append(_bound_gate("error_rate", policy.rollback.max_error_rate, obs.error_rate))
    agreement = policy.shadow.min_agreement_with_champion
    if shadow and agreement is not None:
        measured = obs.agreement_with_champion if champion is not None else None
        gates.append(_bound_gate("agreement_with_champion", agreement, measured, floor=True))
        if champion is None:
            gates[-1] = _passed(gates[-1], "-", "no champion to compare")
    # Labelled feedback and drift may lag: without them these pass, as a rollback trigger would.
    if policy.rollback.max_quality_drop is not None:
        gates.append(_quality_gate(policy.rollback.max_quality_drop, _finite(obs.quality_delta)))
    if policy.rollback.max_prediction_drift is not None:
        drift = _finite(obs.prediction_drift)
        gates.append(_trigger_gate("prediction_drift", policy.rollback.max_prediction_drift, drift))
    return gates


def _trigger_gates(
    triggers: RollbackTriggers, obs: Observations, champion: Observations | None
) -> list[GateResult]:
    gates = []
    for name, limit in (
        ("error_rate", triggers.max_error_rate),
        ("latency_p99_ms", triggers.max_latency_p99_ms),
        ("prediction_drift", triggers.max_prediction_drift),
    ):
        if limit is not None:
            theirs = _finite(getattr(champion, name)) if champion is not None else None
            gates.append(_trigger_gate(name, limit, _finite(getattr(obs, name)), theirs))
    if triggers.max_quality_drop is not None:
        gates.append(_quality_gate(triggers.max_quality_drop, _finite(obs.quality_delta)))
    return gates


def _trigger_gate(
    name: str, limit: float, mine: float | None, theirs: float | None = None
) -> GateResult:
    threshold = f"<= {limit:g}"
    if mine is None:
        return GateResult(name, True, threshold, NOT_MEASURED, f"{name} {NOT_MEASURED}")
    if mine <= limit:
        return GateResult(name, True, threshold, f"{mine:g}", f"{name} {mine:g} <= {limit:g}")
    if theirs is not None and mine <= theirs:
        message = (
            f"{name} {mine:g} exceeds {limit:g} but the champion measures {theirs:g}: "
            "the cause is shared, rolling back would not help"
        )
        return GateResult(name, True, threshold, f"{mine:g}", message)
    versus = f" (champion {theirs:g})" if theirs is not None else ""
    return _refuse(name, threshold, f"{mine:g}", f"{name} {mine:g} exceeds {limit:g}{versus}")


def _quality_gate(max_drop: float, delta: float | None) -> GateResult:
    threshold = f"drop <= {max_drop:g}"
    name = "quality_vs_champion"
    if delta is None:
        return GateResult(name, True, threshold, NOT_MEASURED, "no labelled feedback yet")
    passed = -delta <= max_drop + _TOLERANCE
    verdict = "within" if passed else "exceeds"
    message = f"quality {delta:+g} vs champion on labelled feedback: {verdict} drop {max_drop:g}"
    return GateResult(name, passed, threshold, f"{delta:+g}", message)


def _bound_gate(
    name: str, limit: float, measured: float | None, *, floor: bool = False
) -> GateResult:
    """A required observation at least (``floor``) or at most ``limit``; unobserved fails."""
    sign = ">=" if floor else "<="
    value = _finite(measured)
    if value is None:
        return _refuse(name, f"{sign} {limit:g}", NOT_OBSERVED, f"{name} {NOT_OBSERVED}")
    passed = value >= limit if floor else value <= limit
    shown = sign if passed else {">=": "<", "<=": ">"}[sign]
    message = f"{name} {value:g} {shown} {limit:g}"
    return GateResult(name, passed, f"{sign} {limit:g}", f"{value:g}", message)


def _passed(gate: GateResult, measured: str, message: str) -> GateResult:
    return GateResult(gate.name, True, gate.threshold, measured, message)


def _approval_gate(approved: bool) -> GateResult:
    if approved:
        return GateResult("approval", True, "required", "approved", "approved for champion")
    return _refuse("approval", "required", "not approved", "champion needs an explicit approval")


def _refuse(name: str, threshold: str, measured: str, message: str) -> GateResult:
    return GateResult(name, False, threshold, measured, message)


def _finite(value: float | None) -> float | None:
    # nan compares false with everything, so a nan would pass every ceiling: treat it as absent.
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
