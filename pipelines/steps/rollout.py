"""One step of a model's rollout: candidate → shadow → canary steps → champion, or roll back.

The evidence for a version is the live traffic it answered since it entered its current stage
(read from the inference log); the decision is the registry's (gates and rollback triggers); a
refused gate means "not yet", and the next run looks again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from infra.deploy import deploy_serving
from infra.targets import DeployedVersion, get_target
from modelyard.settings import Settings
from monitoring.inference_log import read_requests
from monitoring.observations import VersionStats, version_stats
from registry.audit import Outcome
from registry.decisions import Observations, decide_rollback, next_canary_share
from registry.policy import PromotionPolicy
from registry.promotion import Promoter, PromotionRefused
from registry.types import TAG_PREFIX, ModelVersion, Stage

logger = logging.getLogger(__name__)
Change = Literal["shadow", "canary", "champion", "rolled back", "waiting", "nothing to do"]


@dataclass(frozen=True)
class RolloutStep:
    """What one ``advance`` run did for one model, and why."""

    model: str
    version: int | None
    change: Change
    applied: bool
    reasons: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)


def observe(
    settings: Settings, promoter: Promoter, name: str, version: int, champion: int | None
) -> VersionStats:
    """What live traffic says about ``version`` since it entered its current stage."""
    since = stage_entered_at(promoter, name, version)
    requests = read_requests(settings.sql_url, name, since=since)
    task = promoter.registry.get_version(name, version).tags.get(TAG_PREFIX + "task")
    return version_stats(
        requests, version, champion, "regression" if task == "regression" else "classification"
    )


def stage_entered_at(promoter: Promoter, name: str, version: int) -> datetime | None:
    """When the version's latest applied change happened (the start of its evidence window)."""
    applied = [
        e
        for e in promoter.audit.history(name)
        if e.version == version and e.outcome is Outcome.APPLIED
    ]
    return applied[-1].at if applied else None


def as_observations(stats: VersionStats) -> Observations:
    return Observations(
        requests=stats.requests,
        minutes=stats.minutes,
        error_rate=stats.error_rate,
        latency_p99_ms=stats.latency_p99_ms,
        agreement_with_champion=stats.agreement_with_champion,
        quality_delta=stats.quality_delta,
    )


def advance_model(
    settings: Settings,
    promoter: Promoter,
    name: str,
    *,
    policy: PromotionPolicy | None = None,
    approve: bool = False,
) -> RolloutStep:
    """Move ``name`` one step along its rollout, or roll a worse canary or shadow back."""
    policy = policy or promoter.policy(name)
    state = promoter.state(name)
    trial = state.canary if state.canary is not None else state.shadow
    if trial is None:
        return _start_newest_candidate(promoter, name, state.champion, policy)
    stats = observe(settings, promoter, name, trial, state.champion)
    champion_stats = (
        observe(settings, promoter, name, state.champion, None) if state.champion else None
    )
    verdict = decide_rollback(
        as_observations(stats), as_observations(champion_stats) if champion_stats else None, policy
    )
    evidence = {"stats": vars(stats), "gates": [vars(g) for g in verdict.gates]}
    if verdict.rollback:
        reason = "automatic rollback: " + "; ".join(verdict.reasons)
        promoter.promote(
            name, trial, Stage.RETIRED, reason=reason, policy=policy, evidence=evidence
        )
        return RolloutStep(name, trial, "rolled back", True, tuple(verdict.reasons), evidence)
    target, traffic = _next_stage(state.canary == trial, state.canary_share, policy)
    return _try(promoter, name, trial, target, traffic, stats, policy, approve, evidence)


def follow_registry(settings: Settings, name: str) -> list[DeployedVersion] | None:
    """Make the configured deploy target serve what the registry now says for ``name`` (its
    ``set_traffic`` carries the canary share); None when the target does not serve ``name``,
    so a rollout step never starts serving a model nobody deployed."""
    target = get_target(settings.deploy_target, settings)
    if not target.status(name):
        return None
    return deploy_serving(settings, target, name)


def _next_stage(is_canary: bool, share: int, policy: PromotionPolicy) -> tuple[Stage, int | None]:
    if not is_canary:
        first = next_canary_share(None, policy)
        return (Stage.CHAMPION, None) if first in (None, 100) else (Stage.CANARY, first)
    following = next_canary_share(share, policy)
    return (Stage.CHAMPION, None) if following in (None, 100) else (Stage.CANARY, following)


def _try(
    promoter: Promoter,
    name: str,
    version: int,
    target: Stage,
    traffic: int | None,
    stats: VersionStats,
    policy: PromotionPolicy,
    approve: bool,
    evidence: dict[str, Any],
) -> RolloutStep:
    try:
        promoter.promote(
            name,
            version,
            target,
            traffic=traffic,
            approved=approve,
            observations=as_observations(stats),
            policy=policy,
            reason=f"rollout step after {stats.requests} requests",
            evidence=evidence,
        )
    except PromotionRefused as refused:
        waiting = tuple(f"{g.name}: {g.message}" for g in refused.decision.refused_gates)
        return RolloutStep(name, version, "waiting", False, waiting, evidence)
    change: Change = "champion" if target is Stage.CHAMPION else "canary"
    return RolloutStep(
        name, version, change, True, (f"{target.value} {traffic or ''}".strip(),), evidence
    )


def _start_newest_candidate(
    promoter: Promoter, name: str, champion: int | None, policy: PromotionPolicy
) -> RolloutStep:
    """The newest candidate newer than the champion goes to shadow, through the gates."""
    candidates = [
        v
        for v in promoter.registry.list_versions(name)
        if v.stage is Stage.CANDIDATE and (champion is None or v.version > champion)
    ]
    if not candidates:
        return RolloutStep(
            name, None, "nothing to do", False, ("no candidate newer than champion",)
        )
    newest: ModelVersion = candidates[-1]
    try:
        promoter.promote(
            name,
            newest.version,
            Stage.SHADOW,
            policy=policy,
            reason="rollout: new candidate mirrors live traffic",
        )
    except PromotionRefused as refused:
        reasons = tuple(f"{g.name}: {g.message}" for g in refused.decision.refused_gates)
        return RolloutStep(name, newest.version, "waiting", False, reasons)
    return RolloutStep(name, newest.version, "shadow", True, ("candidate passed the gates",))
