"""Apply promotion and rollback decisions to the registry, under the audit log's claim.

The order of every change: read the audit sequence, read the state, decide (pure), claim the
next sequence number (exactly one concurrent caller wins), then move MLflow aliases and tags. A
failure while moving them restores the state before and is recorded against the claim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.actor import current_actor
from registry.audit import Action, AuditEntry, AuditLog, ConcurrentChange, Outcome
from registry.decisions import CANARY_TRAFFIC_TAG, Decision, Observations, decide_promotion
from registry.errors import RegistryError
from registry.mlflow_registry import MlflowRegistry
from registry.model_card import CardHistoryLine, render_model_card
from registry.policy import PromotionPolicy, policy_for
from registry.serving_state import (
    Plan,
    ServingState,
    plan_promotion,
    plan_rollback,
    previous_champion,
)
from registry.types import MODEL_CARD_ARTIFACT, TAG_PREFIX, Stage

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)
STAGE_TAG = TAG_PREFIX + "stage"
LAST_CHANGE_TAG = TAG_PREFIX + "last_change"


class PromotionRefused(RegistryError):
    """A gate refused the change (exit code 1); ``decision`` holds every gate."""

    exit_code = 1

    def __init__(self, model: str, version: int, decision: Decision) -> None:
        refused = "; ".join(f"{g.name}: {g.message}" for g in decision.refused_gates)
        super().__init__(f"{model} v{version} may not become {decision.target.value}: {refused}")
        self.decision = decision


class StaleState(RegistryError):
    """The caller expected another serving state than the one found (exit code 3)."""

    exit_code = 3

    def __init__(self, expected: ServingState, current: ServingState) -> None:
        super().__init__(
            f"model {current.model!r} changed: expected {expected.describe()}, "
            f"but it is now {current.describe()}",
            hint="re-read the state and retry",
        )
        self.current = current


@dataclass(frozen=True)
class ChangeResult:
    """What a promotion or rollback did (or, for a dry run, would do)."""

    model: str
    version: int
    action: Action
    target: Stage
    before: ServingState
    after: ServingState
    retired: tuple[int, ...]
    applied: bool
    decision: Decision | None = None
    entry: AuditEntry | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "action": self.action.value,
            "target": self.target.value,
            "applied": self.applied,
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "retired": list(self.retired),
            "gates": [g.__dict__ for g in self.decision.gates] if self.decision else [],
            "audit_id": self.entry.id if self.entry else None,
        }


def open_promoter(settings: Settings, *, actor: str | None = None) -> Promoter:
    """A ``Promoter`` on the configured registry and audit database (migrated if needed)."""
    audit = AuditLog.from_settings(settings)
    audit.migrate()
    return Promoter(
        MlflowRegistry.from_settings(settings),
        audit,
        policy_folder=settings.policy_dir,
        actor=actor,
    )


class Promoter:
    """Promotions, rollbacks and the serving state of models, with gates and an audit trail."""

    def __init__(
        self,
        registry: MlflowRegistry,
        audit: AuditLog,
        *,
        policy_folder: Path | None = None,
        actor: str | None = None,
    ) -> None:
        self.registry = registry
        self.audit = audit
        self.policy_folder = policy_folder
        self.actor = actor or current_actor()

    def state(self, name: str) -> ServingState:
        """What serves ``name`` now, from its aliases and canary-share tag. Raises ModelNotFound."""
        model = self.registry.get_model(name)
        canary = model.aliases.get(Stage.CANARY.value)
        share = int(model.tags.get(CANARY_TRAFFIC_TAG, "0") or 0) if canary is not None else 0
        return ServingState(
            name,
            champion=model.aliases.get(Stage.CHAMPION.value),
            canary=canary,
            canary_share=share,
            shadow=model.aliases.get(Stage.SHADOW.value),
        )

    def policy(self, name: str) -> PromotionPolicy:
        return policy_for(name, self.policy_folder)

    def promote(
        self,
        name: str,
        version: int,
        target: Stage,
        *,
        traffic: int | None = None,
        approved: bool = False,
        reason: str = "",
        observations: Observations | None = None,
        policy: PromotionPolicy | None = None,
        dry_run: bool = False,
        evidence: dict[str, Any] | None = None,
        expected: ServingState | None = None,
    ) -> ChangeResult:
        """Move ``version`` to ``target`` if every gate passes.

        ``expected`` is the state the caller based its request on; another one found is a
        conflict. Raises ``PromotionRefused`` (a gate said no), ``ConcurrentChange`` or
        ``StaleState`` (someone else changed the model), ``ModelNotFound``/``VersionNotFound``,
        ``PolicyError``.
        """
        seq = self.audit.latest_seq(name)
        before = self.state(name)
        candidate = self.registry.get_version(name, version)
        champion = self.registry.get_version(name, before.champion) if before.champion else None
        decision = decide_promotion(
            candidate,
            champion,
            policy or self.policy(name),
            observations,
            target=target,
            approved=approved,
            traffic=traffic,
        )
        action = _action_for(candidate.stage, target)
        entry = AuditEntry(
            model=name,
            action=action,
            actor=self.actor,
            version=version,
            from_stage=candidate.stage.value,
            to_stage=target.value,
            traffic_share=decision.traffic,
            reason=reason,
            evidence=_evidence(decision, candidate.metrics, candidate.champion_metrics, evidence),
        )
        plan = plan_promotion(before, version, target, decision.traffic)
        if expected is not None and expected != before:
            if not dry_run:
                self.audit.record(replace(entry, outcome=Outcome.CONFLICT))
            raise StaleState(expected, before)
        if not decision.allowed:
            if not dry_run:
                self.audit.record(replace(entry, outcome=Outcome.REFUSED))
            raise PromotionRefused(name, version, decision)
        result = ChangeResult(
            name,
            version,
            action,
            target,
            before,
            plan.after,
            plan.retired,
            applied=False,
            decision=decision,
        )
        if dry_run:
            return result
        claimed = self._claim(entry, seq)
        self._apply(name, before, plan, claimed)
        self.publish_model_card(name, version)
        return replace(result, applied=True, entry=claimed)

    def rollback(
        self,
        name: str,
        *,
        reason: str = "",
        dry_run: bool = False,
        evidence: dict[str, Any] | None = None,
        expected: ServingState | None = None,
    ) -> ChangeResult:
        """Restore the previous champion and clear canary and shadow, in one step.

        Raises ``NoPreviousChampion``, ``ConcurrentChange``/``StaleState``, ``ModelNotFound``.
        """
        seq = self.audit.latest_seq(name)
        before = self.state(name)
        if expected is not None and expected != before:
            raise StaleState(expected, before)
        previous = previous_champion(name, self.audit.champion_history(name))
        plan = plan_rollback(before, previous)
        entry = AuditEntry(
            model=name,
            action=Action.ROLLBACK,
            actor=self.actor,
            version=previous,
            from_stage=_stage_name(before.stage_of(previous)),
            to_stage=Stage.CHAMPION.value,
            reason=reason or "rollback",
            evidence={"before": before.as_dict(), **(evidence or {})},
        )
        result = ChangeResult(
            name,
            previous,
            Action.ROLLBACK,
            Stage.CHAMPION,
            before,
            plan.after,
            plan.retired,
            applied=False,
        )
        if dry_run:
            return result
        claimed = self._claim(entry, seq)
        self._apply(name, before, plan, claimed)
        self.publish_model_card(name, previous)
        return replace(result, applied=True, entry=claimed)

    def record_first_champion(self, name: str, version: int, reason: str) -> AuditEntry:
        """Make a model's first version champion, through the same claim as any promotion."""
        seq = self.audit.latest_seq(name)
        before = self.state(name)
        entry = AuditEntry(
            model=name,
            action=Action.PROMOTE,
            actor=self.actor,
            version=version,
            from_stage=Stage.CANDIDATE.value,
            to_stage=Stage.CHAMPION.value,
            reason=reason,
        )
        claimed = self._claim(entry, seq)
        self._apply(name, before, plan_promotion(before, version, Stage.CHAMPION), claimed)
        return claimed

    def publish_model_card(self, name: str, version: int) -> None:
        """(Re)write the version's model card with its history so far; a failure only warns."""
        try:
            found = self.registry.get_version(name, version)
            if not found.run_id:
                return
            contract = self.registry.version_contract(found)
            history = [
                CardHistoryLine(
                    e.at.strftime("%Y-%m-%d %H:%M UTC"), e.describe(), e.actor, e.reason
                )
                for e in self.audit.history(name)
                if e.version == version and e.outcome is Outcome.APPLIED
            ]
            card = render_model_card(
                found,
                contract,
                history,
                limitations=found.tags.get(TAG_PREFIX + "limitations", ""),
            )
            self.registry.write_run_text(found.run_id, card, MODEL_CARD_ARTIFACT)
        except (RegistryError, ValueError, OSError) as exc:
            logger.warning("model card of %s v%s not written: %s", name, version, exc)

    def _claim(self, entry: AuditEntry, seq: int) -> AuditEntry:
        try:
            return self.audit.claim(entry, seq)
        except ConcurrentChange:
            self.audit.record(replace(entry, outcome=Outcome.CONFLICT))
            raise

    def _apply(self, name: str, before: ServingState, plan: Plan, claimed: AuditEntry) -> None:
        try:
            write_state(self.registry, before, plan.after)
            self._tag_versions(name, plan, claimed)
        except Exception as exc:
            logger.error("applying %s failed, restoring %s", claimed.describe(), before.describe())
            try:
                write_state(self.registry, plan.after, before)
            finally:
                self.audit.record(
                    replace(
                        claimed,
                        id=None,
                        claim_seq=None,
                        ref_seq=claimed.claim_seq,
                        outcome=Outcome.FAILED,
                        reason=f"apply failed: {exc}",
                    )
                )
            raise

    def _tag_versions(self, name: str, plan: Plan, claimed: AuditEntry) -> None:
        stamp = claimed.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        summary = f"{stamp} {claimed.describe()} by {claimed.actor}: {claimed.reason or '-'}"
        for version in plan.retired:
            self.registry.set_version_tags(
                name,
                version,
                {
                    STAGE_TAG: Stage.RETIRED.value,
                    LAST_CHANGE_TAG: summary,
                },
            )
        for stage in (Stage.CHAMPION, Stage.CANARY, Stage.SHADOW):
            holder = plan.after.holder(stage)
            if holder is not None and holder == claimed.version:
                tags = {STAGE_TAG: stage.value, LAST_CHANGE_TAG: summary}
                if stage is Stage.CANARY:
                    tags[CANARY_TRAFFIC_TAG] = str(plan.after.canary_share)
                self.registry.set_version_tags(name, holder, tags)


def write_state(registry: MlflowRegistry, before: ServingState, after: ServingState) -> None:
    """Move aliases from ``before`` to ``after``.

    New holders are set before old ones are removed, and a canary's share is written before its
    alias appears and zeroed before it goes, so a reader never routes to a half-made canary.
    """
    name = after.model
    if after.canary is None and before.canary is not None:
        registry.set_model_tags(name, {CANARY_TRAFFIC_TAG: "0"})
    for stage in (Stage.CHAMPION, Stage.SHADOW, Stage.CANARY):
        new, old = after.holder(stage), before.holder(stage)
        if stage is Stage.CANARY and new is not None:
            registry.set_model_tags(name, {CANARY_TRAFFIC_TAG: str(after.canary_share)})
        if new is not None and new != old:
            registry.set_alias(name, stage.value, new)
        elif new is None and old is not None:
            registry.delete_alias(name, stage.value)


def _action_for(current: Stage, target: Stage) -> Action:
    if target is Stage.RETIRED:
        return Action.RETIRE
    if current is Stage.CANARY and target is Stage.CANARY:
        return Action.TRAFFIC
    return Action.PROMOTE


def _stage_name(stage: Stage | None) -> str:
    return (stage or Stage.CANDIDATE).value


def _evidence(
    decision: Decision,
    metrics: dict[str, float],
    champion_metrics: dict[str, float],
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "gates": [
            {"name": g.name, "passed": g.passed, "threshold": g.threshold, "measured": g.measured}
            for g in decision.gates
        ],
        "metrics": metrics,
        "champion_metrics": champion_metrics,
        "decided_at": datetime.now(UTC).isoformat(),
        **(extra or {}),
    }
