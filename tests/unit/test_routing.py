"""Routing decisions: canary shares within binomial bounds, sticky callers, fallback order."""

from __future__ import annotations

import math

import pytest

from registry.serving_state import ServingState
from serving.gateway.errors import NoHealthyUpstream
from serving.gateway.routing import (
    BUCKETS,
    CANARY,
    CHAMPION,
    FALLBACK,
    RouteTable,
    Upstream,
    build_table,
    caller_bucket,
    choose_route,
)

MODEL = "churn"
CALLERS = [f"caller-{i}" for i in range(10_000)]


def up(version: int, model: str = MODEL) -> Upstream:
    return Upstream(model, version, f"http://127.0.0.1:{9000 + version}/predict")


def table(share: int, *, model: str = MODEL, previous: bool = False) -> RouteTable:
    return RouteTable(
        model,
        champion=up(1, model),
        canary=up(2, model),
        canary_share=share,
        previous=up(0, model) if previous else None,
    )


def canary_count(share: int, callers: list[str] = CALLERS) -> int:
    routes = [choose_route(table(share), caller).assigned for caller in callers]
    return sum(route == CANARY for route in routes)


@pytest.mark.parametrize("share", [1, 5, 10, 25, 50, 90])
def test_canary_share_is_honoured_within_binomial_bounds(share: int) -> None:
    n, p = len(CALLERS), share / 100
    sd = math.sqrt(n * p * (1 - p))
    got = canary_count(share)
    # 4.5 standard deviations: a correct hash fails this about once in 150,000 runs.
    assert abs(got - n * p) <= 4.5 * sd, f"{got} of {n} callers on the canary at {share}%"


@pytest.mark.parametrize("share", [0, 100])
def test_share_zero_and_hundred_are_exact(share: int) -> None:
    assert canary_count(share) == len(CALLERS) * share // 100


def test_a_caller_sticks_to_its_version() -> None:
    for caller in CALLERS[:200]:
        first = choose_route(table(30), caller)
        again = [choose_route(table(30), caller) for _ in range(20)]
        assert {r.primary.upstream.version for r in again} == {first.primary.upstream.version}


def test_raising_the_share_only_moves_callers_to_the_canary() -> None:
    before = {c for c in CALLERS if choose_route(table(10), c).assigned == CANARY}
    after = {c for c in CALLERS if choose_route(table(30), c).assigned == CANARY}
    assert before <= after
    assert len(after) > len(before)


def test_assignment_is_independent_per_model() -> None:
    on_a = {c for c in CALLERS if choose_route(table(50, model="a"), c).assigned == CANARY}
    on_b = {c for c in CALLERS if choose_route(table(50, model="b"), c).assigned == CANARY}
    both = len(on_a & on_b)
    # Independent halves overlap on about a quarter of the callers.
    assert abs(both - len(CALLERS) / 4) <= 4.5 * math.sqrt(len(CALLERS) * 0.25 * 0.75)


def test_bucket_is_stable_across_processes() -> None:
    # blake2b, not hash(): the same caller lands in the same bucket in every gateway replica.
    assert caller_bucket("churn", "alice") == 3065  # pinned: changing it moves every caller
    assert all(0 <= caller_bucket(MODEL, c) < BUCKETS for c in CALLERS[:100])


def test_canary_falls_back_to_champion_then_previous() -> None:
    caller = next(c for c in CALLERS if caller_bucket(MODEL, c) < 1000)
    route = choose_route(table(10, previous=True), caller)
    assert route.assigned == CANARY
    assert [(c.route, c.upstream.version) for c in route.candidates] == [
        (CANARY, 2),
        (CHAMPION, 1),
        (FALLBACK, 0),
    ]


def test_champion_falls_back_to_previous() -> None:
    caller = next(c for c in CALLERS if caller_bucket(MODEL, c) >= 1000)
    route = choose_route(table(10, previous=True), caller)
    assert route.assigned == CHAMPION
    assert [(c.route, c.upstream.version) for c in route.candidates] == [
        (CHAMPION, 1),
        (FALLBACK, 0),
    ]


def test_without_a_running_champion_the_canary_takes_everyone() -> None:
    only_canary = RouteTable(MODEL, canary=up(2), canary_share=5)
    routes = {choose_route(only_canary, c).assigned for c in CALLERS[:500]}
    assert routes == {CANARY}


def test_nothing_running_is_a_clear_503() -> None:
    with pytest.raises(NoHealthyUpstream, match=r"no version of model 'churn' is running") as info:
        choose_route(RouteTable(MODEL), "alice")
    assert info.value.status == 503


def test_build_table_keeps_only_running_versions() -> None:
    state = ServingState(MODEL, champion=3, canary=4, canary_share=20, shadow=5)
    urls = {3: "http://a/predict", 5: "http://c/predict"}
    built = build_table(state, urls, previous=2)
    assert built.champion == Upstream(MODEL, 3, "http://a/predict")
    assert built.canary is None and built.canary_share == 0
    assert built.shadow == Upstream(MODEL, 5, "http://c/predict")
    assert built.previous is None  # v2 is not running


def test_build_table_clamps_the_share_and_ignores_a_previous_that_serves() -> None:
    state = ServingState(MODEL, champion=3, canary=4, canary_share=250)
    urls = {v: f"http://h/{v}" for v in (2, 3, 4)}
    assert build_table(state, urls, previous=2).canary_share == 100
    assert build_table(state, urls, previous=3).previous is None
    assert build_table(state, urls, previous=2).previous == Upstream(MODEL, 2, "http://h/2")


def test_a_version_is_never_tried_twice() -> None:
    same = RouteTable(MODEL, champion=up(1), previous=up(1))
    assert len(choose_route(same, "x").candidates) == 1
