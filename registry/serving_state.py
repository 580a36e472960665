"""What serves a model, and how a promotion or rollback changes it: pure values and functions.

``ServingState`` is read from MLflow aliases plus the canary's share (a registered-model tag);
``plan_*`` functions compute the state after a change, and which versions it retires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from registry.audit import Action
from registry.errors import RegistryError
from registry.types import Stage


@dataclass(frozen=True)
class ServingState:
    """Which version holds each serving stage of one model, and the canary's share in percent."""

    model: str
    champion: int | None = None
    canary: int | None = None
    canary_share: int = 0
    shadow: int | None = None

    def stage_of(self, version: int) -> Stage | None:
        for stage in (Stage.CHAMPION, Stage.CANARY, Stage.SHADOW):
            if self.holder(stage) == version:
                return stage
        return None

    def holder(self, stage: Stage) -> int | None:
        return {
            Stage.CHAMPION: self.champion,
            Stage.CANARY: self.canary,
            Stage.SHADOW: self.shadow,
        }.get(stage)

    def describe(self) -> str:
        parts = [f"champion {_v(self.champion)}"]
        canary = f"canary {_v(self.canary)}"
        if self.canary is not None:
            canary += f" at {self.canary_share}%"
        parts += [canary, f"shadow {_v(self.shadow)}"]
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "champion": self.champion,
            "canary": self.canary,
            "canary_share": self.canary_share if self.canary is not None else 0,
            "shadow": self.shadow,
        }


@dataclass(frozen=True)
class Plan:
    """The state after a change, and the versions it takes out of service."""

    after: ServingState
    retired: tuple[int, ...] = field(default=())


class NoPreviousChampion(RegistryError):
    def __init__(self, model: str) -> None:
        super().__init__(
            f"model {model!r} has no previous champion to roll back to",
            hint="the history shows no earlier champion; promote a version instead",
        )


def plan_promotion(
    before: ServingState, version: int, target: Stage, traffic: int | None = None
) -> Plan:
    """The state once ``version`` holds ``target``; the version displaced from it retires."""
    after = _without(before, version)
    displaced = before.holder(target)
    if target is Stage.CHAMPION:
        after = replace(after, champion=version)
    elif target is Stage.CANARY:
        after = replace(after, canary=version, canary_share=traffic or before.canary_share)
    elif target is Stage.SHADOW:
        after = replace(after, shadow=version)
    elif target is not Stage.RETIRED:
        raise ValueError(f"cannot plan a promotion to {target.value}")
    retired = () if displaced in (None, version) else (displaced,)
    if target is Stage.RETIRED:
        retired = (version,)
    return Plan(after, tuple(v for v in retired if v is not None))


def plan_rollback(before: ServingState, previous: int) -> Plan:
    """Back to ``previous`` as champion; canary and shadow are cleared, everything else retires."""
    leaving = {before.champion, before.canary, before.shadow} - {None, previous}
    after = ServingState(before.model, champion=previous)
    return Plan(after, tuple(sorted(v for v in leaving if v is not None)))


def previous_champion(model: str, changes: Sequence[tuple[Action, int]]) -> int:
    """The champion a rollback restores, from the claimed champion changes in order.

    Promotions stack up and each rollback steps one down, so two rollbacks in a row go two
    champions back rather than returning to the version just rolled back from.
    Raises ``NoPreviousChampion``.
    """
    stack: list[int] = []
    for action, version in changes:
        if action is Action.ROLLBACK:
            while stack and stack[-1] != version:
                stack.pop()
            if not stack:
                stack.append(version)
        else:
            stack.append(version)
    if len(stack) < 2:
        raise NoPreviousChampion(model)
    return stack[-2]


def _without(state: ServingState, version: int) -> ServingState:
    """``state`` with ``version`` removed from whichever stage it held."""
    if state.champion == version:
        state = replace(state, champion=None)
    if state.canary == version:
        state = replace(state, canary=None, canary_share=0)
    if state.shadow == version:
        state = replace(state, shadow=None)
    return state


def _v(version: int | None) -> str:
    return "-" if version is None else f"v{version}"
