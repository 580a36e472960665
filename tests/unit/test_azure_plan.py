"""Azure ML names, tags and the endpoint's routing state (pure: no SDK, no network)."""

from __future__ import annotations

import pytest

from infra.azure.plan import (
    MAX_NAME,
    EndpointState,
    check_mirror_percent,
    deploy_state,
    deployment_name,
    deployment_tags,
    endpoint_name,
    endpoint_tags,
    inference_config,
    is_valid_name,
    mirror_for,
    read_endpoint_state,
    stage_from_tags,
    traffic_by_deployment,
    version_of,
    with_traffic,
    with_version,
    without_versions,
)
from infra.errors import TargetConfigError
from infra.targets import Deployment, DeployState
from registry.types import Stage

CHAMPION, CANARY, SHADOW = Stage.CHAMPION, Stage.CANARY, Stage.SHADOW


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["penguins", "churn-v2", "abc", "a1b2c3"])
def test_a_valid_lowercase_name_is_kept(model: str) -> None:
    assert endpoint_name(model) == model


@pytest.mark.parametrize(
    ("model", "start"),
    [
        ("Penguins", "penguins-"),
        ("iris_model", "iris-model-"),
        ("Penguins_V2.final", "penguins-v2-final-"),
        ("1st-model", "m-1st-model-"),
        ("ab", "ab-"),
        ("x" * 40, "x" * 25 + "-"),
        ("---", "m-"),
        ("", "m-"),
        ("modèle été", "mod-le-t-"),
    ],
)
def test_other_names_are_sanitised_with_a_digest(model: str, start: str) -> None:
    name = endpoint_name(model)

    assert name.startswith(start)
    assert is_valid_name(name), name
    assert len(name) <= MAX_NAME
    assert name == endpoint_name(model)  # stable


def test_names_differing_only_in_case_or_punctuation_get_different_endpoints() -> None:
    names = {endpoint_name(m) for m in ["my-model", "My-Model", "my_model", "my.model"]}

    assert len(names) == 4


def test_long_names_stay_distinct_after_truncation() -> None:
    first, second = endpoint_name("a" * 40 + "1"), endpoint_name("a" * 40 + "2")

    assert first != second
    assert len(first) == len(second) == MAX_NAME


def test_deployment_names_round_trip() -> None:
    assert deployment_name(3) == "version-3"
    assert is_valid_name(deployment_name(0))
    assert version_of("version-12") == 12
    assert version_of("VERSION-5") == 5
    assert version_of("blue") is None
    assert version_of("version-x") is None


@pytest.mark.parametrize("version", [-1, 10**30])
def test_versions_that_cannot_be_named_are_refused(version: int) -> None:
    with pytest.raises(ValueError, match="cannot be named"):
        deployment_name(version)


@pytest.mark.parametrize(
    ("name", "valid"),
    [("ab", False), ("abc", True), ("a-b", True), ("-ab", False), ("ab-", False), ("1ab", False)],
)
def test_azure_name_rules(name: str, valid: bool) -> None:
    assert is_valid_name(name) is valid


# --- what a deployment runs -------------------------------------------------------------------


def test_the_container_routes_are_bentoml_s() -> None:
    config = inference_config()

    assert config["scoring_route"] == {"port": 3000, "path": "/predict"}
    assert config["liveness_route"]["path"] == "/livez"
    assert config["readiness_route"]["path"] == "/readyz"


def test_deployment_tags_say_what_runs() -> None:
    spec = Deployment("penguins", 3, CANARY, "penguins:abc", image="reg.test/penguins:v3")

    assert deployment_tags(spec) == {
        "modelyard-model": "penguins",
        "modelyard-version": "3",
        "modelyard-stage": "canary",
        "modelyard-bento": "penguins:abc",
        "modelyard-image": "reg.test/penguins:v3",
    }


@pytest.mark.parametrize(
    ("provisioning", "state"),
    [
        ("Succeeded", DeployState.RUNNING),
        ("Creating", DeployState.STARTING),
        ("Updating", DeployState.STARTING),
        ("Failed", DeployState.FAILED),
        ("Canceled", DeployState.FAILED),
        (None, DeployState.STARTING),
        ("SomethingNew", DeployState.STARTING),
    ],
)
def test_provisioning_states(provisioning: str | None, state: DeployState) -> None:
    assert deploy_state(provisioning) is state


@pytest.mark.parametrize("percent", [0, 51, 100, -5, True])
def test_azure_mirrors_at_most_half_the_requests(percent: int) -> None:
    with pytest.raises(TargetConfigError) as caught:
        check_mirror_percent(percent)
    assert "MODELYARD_AZURE__SHADOW_MIRROR_PERCENT" in str(caught.value.hint)


def test_a_mirror_azure_accepts_passes() -> None:
    assert check_mirror_percent(50) == 50
    assert check_mirror_percent(1) == 1


# --- routing state ----------------------------------------------------------------------------


def test_the_first_answering_version_takes_all_the_traffic() -> None:
    state = with_version(EndpointState(), 1, CHAMPION, 10)

    assert state == EndpointState({1: CHAMPION}, {1: 100}, {})


def test_a_new_canary_gets_nothing_until_traffic_is_set() -> None:
    state = with_version(EndpointState({1: CHAMPION}, {1: 100}), 2, CANARY, 10)

    assert state.traffic == {1: 100, 2: 0}
    assert with_traffic(state, {1: 90, 2: 10}).traffic == {1: 90, 2: 10}


def test_a_shadow_is_mirrored_and_gets_no_share() -> None:
    state = with_version(EndpointState({1: CHAMPION}, {1: 100}), 2, SHADOW, 20)

    assert state.traffic == {1: 100, 2: 0}
    assert state.mirror == {2: 20}


def test_promoting_the_shadow_stops_its_mirror() -> None:
    state = EndpointState({1: CHAMPION, 2: SHADOW}, {1: 100, 2: 0}, {2: 20})

    assert with_version(state, 2, CANARY, 20).mirror == {}


def test_azure_mirrors_to_one_deployment_the_newest_shadow() -> None:
    assert mirror_for({1: CHAMPION, 2: SHADOW, 3: SHADOW}, 10) == {3: 10}
    assert mirror_for({1: CHAMPION}, 99) == {}  # no shadow: the percent is not even checked


def test_a_removed_canary_s_traffic_goes_to_the_champion() -> None:
    state = EndpointState({1: CHAMPION, 2: CANARY}, {1: 90, 2: 10})

    after = without_versions(state, [2], 10)

    assert after == EndpointState({1: CHAMPION}, {1: 100}, {})


def test_a_removed_shadow_takes_its_mirror_along() -> None:
    state = EndpointState({1: CHAMPION, 2: SHADOW}, {1: 100, 2: 0}, {2: 10})

    assert without_versions(state, [2], 10) == EndpointState({1: CHAMPION}, {1: 100}, {})


def test_without_a_champion_the_biggest_share_takes_the_rest() -> None:
    state = EndpointState({1: CHAMPION, 2: CANARY, 3: CANARY}, {1: 50, 2: 30, 3: 20})

    assert without_versions(state, [1], 10).traffic == {2: 80, 3: 20}


def test_traffic_by_deployment_leaves_zeros_out() -> None:
    assert traffic_by_deployment({1: 90, 2: 10, 3: 0}) == {"version-1": 90, "version-2": 10}
    assert traffic_by_deployment({}) == {}


def test_endpoint_tags_keep_others_and_replace_stages() -> None:
    existing = {"team": "ml", "modelyard-stage-v1": "champion", "modelyard-stage-v9": "canary"}
    state = EndpointState({1: CANARY, 2: CHAMPION})

    assert endpoint_tags("penguins", state, existing) == {
        "team": "ml",
        "modelyard-model": "penguins",
        "modelyard-stage-v1": "canary",
        "modelyard-stage-v2": "champion",
    }


def test_reading_an_endpoint_prefers_its_stage_tags_and_ignores_others_deployments() -> None:
    state = read_endpoint_state(
        {
            "modelyard-model": "penguins",
            "modelyard-stage-v2": "champion",
            "modelyard-stage-v7": "x",
        },
        {"version-1": 30, "version-2": 70, "blue": 0},
        {"version-3": 10},
        {1: CHAMPION, 2: CANARY, 3: SHADOW},
    )

    assert state.stages == {1: CHAMPION, 2: CHAMPION, 3: SHADOW}
    assert state.traffic == {1: 30, 2: 70}
    assert state.mirror == {3: 10}


def test_routes_to_versions_no_longer_deployed_are_dropped() -> None:
    state = read_endpoint_state({}, {"version-1": 100, "version-2": 0}, None, {1: CHAMPION})

    assert state == EndpointState({1: CHAMPION}, {1: 100}, {})


def test_a_deployment_s_own_stage_tag() -> None:
    assert stage_from_tags({"modelyard-stage": "shadow"}) is SHADOW
    assert stage_from_tags({"modelyard-stage": "bogus"}) is Stage.CANDIDATE
    assert stage_from_tags(None) is Stage.CANDIDATE
