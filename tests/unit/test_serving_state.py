"""How promotions and rollbacks change what serves: pure planning, table-driven."""

from __future__ import annotations

import pytest

from registry.audit import Action
from registry.serving_state import (
    NoPreviousChampion,
    ServingState,
    plan_promotion,
    plan_rollback,
    previous_champion,
)
from registry.types import Stage

BEFORE = ServingState("m", champion=1, canary=2, canary_share=10, shadow=3)


@pytest.mark.parametrize(
    ("version", "target", "traffic", "after", "retired"),
    [
        (2, Stage.CHAMPION, None, ServingState("m", champion=2, shadow=3), (1,)),
        (4, Stage.CHAMPION, None, ServingState("m", 4, 2, 10, 3), (1,)),
        (2, Stage.CANARY, 25, ServingState("m", 1, 2, 25, 3), ()),
        (3, Stage.CANARY, 5, ServingState("m", champion=1, canary=3, canary_share=5), (2,)),
        (4, Stage.SHADOW, None, ServingState("m", 1, 2, 10, 4), (3,)),
        (2, Stage.RETIRED, None, ServingState("m", champion=1, shadow=3), (2,)),
        (1, Stage.RETIRED, None, ServingState("m", canary=2, canary_share=10, shadow=3), (1,)),
    ],
)
def test_plan_promotion(
    version: int, target: Stage, traffic: int | None, after: ServingState, retired: tuple
) -> None:
    plan = plan_promotion(BEFORE, version, target, traffic)
    assert plan.after == after
    assert plan.retired == retired


def test_there_is_only_ever_one_holder_per_stage() -> None:
    plan = plan_promotion(BEFORE, 3, Stage.CHAMPION)
    holders = [plan.after.champion, plan.after.canary, plan.after.shadow]
    assert holders.count(3) == 1 and plan.after.stage_of(3) is Stage.CHAMPION


def test_rollback_restores_previous_and_clears_the_rest() -> None:
    plan = plan_rollback(BEFORE, previous=5)
    assert plan.after == ServingState("m", champion=5)
    assert plan.retired == (1, 2, 3)
    assert plan.after.describe() == "champion v5, canary -, shadow -"


@pytest.mark.parametrize(
    ("changes", "previous"),
    [
        ([(Action.PROMOTE, 1), (Action.PROMOTE, 2)], 1),
        ([(Action.PROMOTE, 1), (Action.PROMOTE, 2), (Action.PROMOTE, 3)], 2),
        # two rollbacks in a row go two champions back, never back to the one rolled back from
        ([(Action.PROMOTE, 1), (Action.PROMOTE, 2), (Action.PROMOTE, 3), (Action.ROLLBACK, 2)], 1),
        ([(Action.PROMOTE, 1), (Action.PROMOTE, 2), (Action.ROLLBACK, 1), (Action.PROMOTE, 4)], 1),
    ],
)
def test_previous_champion_walks_a_stack(changes: list, previous: int) -> None:
    assert previous_champion("m", changes) == previous


@pytest.mark.parametrize(
    "changes",
    [[], [(Action.PROMOTE, 1)], [(Action.PROMOTE, 1), (Action.PROMOTE, 2), (Action.ROLLBACK, 1)]],
)
def test_no_previous_champion_is_a_clear_error(changes: list) -> None:
    with pytest.raises(NoPreviousChampion, match="'m' has no previous champion"):
        previous_champion("m", changes)


def test_state_describes_itself() -> None:
    assert BEFORE.describe() == "champion v1, canary v2 at 10%, shadow v3"
    assert BEFORE.as_dict()["canary_share"] == 10
