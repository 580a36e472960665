"""Where versions run on an endpoint, what SageMaker's descriptions mean, and the request bodies."""

from __future__ import annotations

import pytest

from infra.aws.naming import TAG_BENTO, TAG_STAGE
from infra.aws.plan import (
    alarm_request,
    create_model_request,
    endpoint_config_request,
    plan_layout,
    scalable_target_request,
    scaling_policy_request,
    update_endpoint_request,
    weights_request,
)
from infra.aws.view import Layout, build_view, deploy_state, percents_from_weights, sibling_arn
from infra.targets import DeployState
from modelyard.settings import AwsSettings
from registry.types import Stage

CHAMPION, CANARY, SHADOW = Stage.CHAMPION, Stage.CANARY, Stage.SHADOW
AWS = AwsSettings(instance_type="ml.c5.large", initial_instance_count=2, max_instance_count=5)
MODELS = {1: "penguins-v1-aaaa", 2: "penguins-v2-bbbb", 3: "penguins-v3-cccc"}


# --- weights and percents --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "percents"),
    [
        ({1: 90.0, 2: 10.0}, {1: 90, 2: 10}),
        ({1: 1.0, 2: 3.0}, {1: 25, 2: 75}),
        ({1: 1.0, 2: 1.0, 3: 1.0}, {1: 34, 2: 33, 3: 33}),
        ({1: 0.9, 2: 0.1}, {1: 90, 2: 10}),
        ({1: 2.0}, {1: 100}),
        ({1: 0.0, 2: 0.0}, {1: 0, 2: 0}),
        ({}, {}),
    ],
)
def test_weights_become_whole_percents(weights: dict[int, float], percents: dict[int, int]) -> None:
    assert percents_from_weights(weights) == percents


@pytest.mark.parametrize("weights", [{1: 1 / 3, 2: 1 / 3, 3: 1 / 3}, {1: 7.0, 2: 11.0, 3: 13.0}])
def test_positive_weights_always_sum_to_100(weights: dict[int, float]) -> None:
    assert sum(percents_from_weights(weights).values()) == 100


# --- layout: which slot each version takes ---------------------------------------------------


def test_the_champion_alone_is_one_variant_with_all_the_weight() -> None:
    layout = plan_layout({1: MODELS[1]}, {1: CHAMPION}, {1: 100})
    assert layout == Layout({1: MODELS[1]}, {}, {1: 100.0})


def test_a_shadow_beside_one_answering_version_takes_sagemakers_shadow_slot() -> None:
    layout = plan_layout({1: MODELS[1], 2: MODELS[2]}, {1: CHAMPION, 2: SHADOW}, {1: 100, 2: 0})
    assert layout.production == {1: MODELS[1]}
    assert layout.shadow_slot == {2: MODELS[2]}
    assert layout.weights == {1: 100.0}


def test_a_shadow_beside_champion_and_canary_is_a_production_variant_at_weight_0() -> None:
    stages = {1: CHAMPION, 2: CANARY, 3: SHADOW}
    layout = plan_layout(MODELS, stages, {1: 90, 2: 10, 3: 0})
    assert layout.shadow_slot == {}
    assert layout.weights == {1: 90.0, 2: 10.0, 3: 0.0}


def test_two_shadows_both_run_as_production_variants_at_weight_0() -> None:
    layout = plan_layout(MODELS, {1: CHAMPION, 2: SHADOW, 3: SHADOW}, {1: 100})
    assert layout.shadow_slot == {}
    assert layout.weights == {1: 100.0, 2: 0.0, 3: 0.0}


def test_with_nothing_answering_sagemaker_still_gets_a_positive_weight() -> None:
    layout = plan_layout({2: MODELS[2]}, {2: SHADOW}, {})
    assert layout.weights == {2: 1.0}


def test_layouts_compare_by_variants_and_by_models() -> None:
    one = Layout({1: "m1", 2: "m2"}, {}, {1: 90.0, 2: 10.0})
    reweighted = Layout({1: "m1", 2: "m2"}, {}, {1: 50.0, 2: 50.0})
    reimaged = Layout({1: "m1-new", 2: "m2"}, {}, {1: 90.0, 2: 10.0})
    grown = Layout({1: "m1", 2: "m2", 3: "m3"}, {}, {})
    assert one.same_models(reweighted)
    assert not one.same_models(reimaged) and one.same_variants(reimaged)
    assert not one.same_variants(grown)
    assert not Layout({1: "m1"}, {2: "m2"}).same_variants(Layout({1: "m1", 2: "m2"}))


# --- request bodies --------------------------------------------------------------------------


def test_the_endpoint_config_has_one_variant_per_version_with_settings_capacity() -> None:
    layout = plan_layout({1: MODELS[1], 2: MODELS[2]}, {1: CHAMPION, 2: CANARY}, {1: 90, 2: 10})
    request = endpoint_config_request("penguins-abc", layout, AWS, "penguins")
    assert request["EndpointConfigName"] == "penguins-abc"
    assert "ShadowProductionVariants" not in request
    assert request["ProductionVariants"] == [
        {
            "VariantName": "v1",
            "ModelName": MODELS[1],
            "InitialInstanceCount": 2,
            "InstanceType": "ml.c5.large",
            "InitialVariantWeight": 90.0,
        },
        {
            "VariantName": "v2",
            "ModelName": MODELS[2],
            "InitialInstanceCount": 2,
            "InstanceType": "ml.c5.large",
            "InitialVariantWeight": 10.0,
        },
    ]


def test_the_shadow_slot_mirrors_all_production_traffic() -> None:
    layout = plan_layout({1: MODELS[1], 2: MODELS[2]}, {1: CHAMPION, 2: SHADOW}, {1: 100})
    request = endpoint_config_request("penguins-abc", layout, AWS, "penguins")
    [production] = request["ProductionVariants"]
    [shadow] = request["ShadowProductionVariants"]
    assert (shadow["VariantName"], shadow["ModelName"]) == ("v2", MODELS[2])
    assert shadow["InitialVariantWeight"] == production["InitialVariantWeight"] == 100.0


def test_a_model_runs_the_image_with_the_role_and_carries_its_facts_in_tags() -> None:
    request = create_model_request(
        "penguins-v3-cccc", "reg/img:v3", "arn:aws:iam::1:role/r", "penguins", 3, CANARY, "b:1"
    )
    assert request["PrimaryContainer"]["Image"] == "reg/img:v3"
    assert request["ExecutionRoleArn"] == "arn:aws:iam::1:role/r"
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags[TAG_STAGE] == "canary" and tags[TAG_BENTO] == "b:1"


def test_an_update_that_changes_the_variants_is_plain_and_keeps_instance_counts() -> None:
    request = update_endpoint_request("penguins", "penguins-new", guarded=False, alarms=["a"])
    assert request == {
        "EndpointName": "penguins",
        "EndpointConfigName": "penguins-new",
        "RetainAllVariantProperties": True,
        "ExcludeRetainedVariantProperties": [{"VariantPropertyType": "DesiredWeight"}],
    }


def test_a_guarded_update_bakes_and_rolls_back_on_the_variants_alarms() -> None:
    request = update_endpoint_request(
        "penguins", "penguins-new", guarded=True, alarms=["b", "a", "b"], bake_seconds=120
    )
    deployment = request["DeploymentConfig"]
    policy = deployment["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "ALL_AT_ONCE",
        "WaitIntervalInSeconds": 120,
    }
    assert policy["MaximumExecutionTimeoutInSeconds"] >= 600
    assert deployment["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": "a"}, {"AlarmName": "b"}]
    }


def test_traffic_changes_send_weights_only() -> None:
    assert weights_request("penguins", {2: 10.0, 1: 90.0}) == {
        "EndpointName": "penguins",
        "DesiredWeightsAndCapacities": [
            {"VariantName": "v1", "DesiredWeight": 90.0},
            {"VariantName": "v2", "DesiredWeight": 10.0},
        ],
    }


def test_the_alarm_is_the_variants_5xx_rate_over_the_configured_threshold() -> None:
    request = alarm_request("penguins", 2, 0.05)
    assert request["Threshold"] == 0.05
    assert request["TreatMissingData"] == "notBreaching"
    queries = {q["Id"]: q for q in request["Metrics"]}
    assert queries["error_rate"]["Expression"] == "errors / invocations"
    assert [q["Id"] for q in request["Metrics"] if q["ReturnData"]] == ["error_rate"]
    stat = queries["errors"]["MetricStat"]
    assert stat["Metric"]["MetricName"] == "Invocation5XXErrors"
    assert stat["Metric"]["Dimensions"] == [
        {"Name": "EndpointName", "Value": "penguins"},
        {"Name": "VariantName", "Value": "v2"},
    ]


def test_autoscaling_spans_the_configured_instance_counts() -> None:
    target = scalable_target_request("penguins", 2, AWS)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 5)
    assert target["ResourceId"] == "endpoint/penguins/variant/v2"
    tiny = AwsSettings(initial_instance_count=3, max_instance_count=1)
    assert scalable_target_request("p", 1, tiny)["MaxCapacity"] == 3
    policy = scaling_policy_request("penguins", 2, AWS)["TargetTrackingScalingPolicyConfiguration"]
    assert policy["TargetValue"] == float(AWS.target_invocations_per_instance)


# --- reading SageMaker's descriptions --------------------------------------------------------

ENDPOINT_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/penguins"


def described(**extra: object) -> dict[str, object]:
    return {
        "EndpointName": "penguins",
        "EndpointArn": ENDPOINT_ARN,
        "EndpointConfigName": "penguins-cfg",
        "EndpointStatus": "InService",
        "ProductionVariants": [
            {"VariantName": "v1", "CurrentWeight": 3.0, "DesiredWeight": 3.0},
            {"VariantName": "v2"},  # SageMaker omits weights it has not applied yet
            {"VariantName": "AllTraffic", "CurrentWeight": 5.0},
        ],
        "ShadowProductionVariants": [{"VariantName": "v3", "CurrentWeight": 3.0}],
        **extra,
    }


CONFIG = {
    "ProductionVariants": [
        {"VariantName": "v1", "ModelName": MODELS[1], "InitialVariantWeight": 3.0},
        {"VariantName": "v2", "ModelName": MODELS[2], "InitialVariantWeight": 1.0},
    ],
    "ShadowProductionVariants": [{"VariantName": "v3", "ModelName": MODELS[3]}],
}
TAGS = {
    MODELS[1]: {TAG_STAGE: "champion", TAG_BENTO: "penguins:one"},
    MODELS[2]: {TAG_STAGE: "canary"},
    MODELS[3]: {TAG_STAGE: "shadow"},
}


def test_the_view_rebuilds_versions_stages_and_weights_from_sagemaker() -> None:
    view = build_view(described(), CONFIG, TAGS)
    assert [(v.version, v.stage, v.model_name, v.weight, v.shadow_slot) for v in view.variants] == [
        (1, CHAMPION, MODELS[1], 3.0, False),
        (2, CANARY, MODELS[2], 1.0, False),  # the configured weight until SageMaker reports one
        (3, SHADOW, MODELS[3], 3.0, True),
    ]
    assert view.shares() == {1: 75, 2: 25, 3: 0}
    assert view.by_version()[1].bento_tag == "penguins:one"
    assert view.layout() == Layout({1: MODELS[1], 2: MODELS[2]}, {3: MODELS[3]}, {1: 3.0, 2: 1.0})


def test_a_version_without_a_stage_tag_is_a_candidate_or_a_shadow_by_slot() -> None:
    view = build_view(described(), CONFIG, {})
    assert [v.stage for v in view.variants] == [Stage.CANDIDATE, Stage.CANDIDATE, SHADOW]


def test_an_endpoint_still_being_created_shows_its_configured_variants() -> None:
    creating = described(EndpointStatus="Creating")
    del creating["ProductionVariants"], creating["ShadowProductionVariants"]
    view = build_view(creating, CONFIG, TAGS)
    assert [(v.version, v.weight) for v in view.variants] == [(1, 3.0), (2, 1.0), (3, 0.0)]
    assert deploy_state(view.status, view.variants[0].statuses) is DeployState.STARTING


@pytest.mark.parametrize(
    ("endpoint", "variant", "state"),
    [
        ("InService", [], DeployState.RUNNING),
        ("InService", ["Baking"], DeployState.RUNNING),
        ("InService", ["ActivatingTraffic"], DeployState.STARTING),
        ("InService", ["Deleting"], DeployState.CRASHED),
        ("Creating", [], DeployState.STARTING),
        ("Updating", [], DeployState.STARTING),
        ("SystemUpdating", [], DeployState.RUNNING),
        ("Failed", [], DeployState.FAILED),
        ("UpdateRollbackFailed", [], DeployState.FAILED),
        ("OutOfService", [], DeployState.CRASHED),
    ],
)
def test_endpoint_and_variant_statuses_map_to_deploy_states(
    endpoint: str, variant: list[str], state: DeployState
) -> None:
    assert deploy_state(endpoint, variant) is state


def test_a_model_arn_is_derived_from_the_endpoints() -> None:
    assert sibling_arn(ENDPOINT_ARN, "model", "m-v1") == (
        "arn:aws:sagemaker:eu-west-1:123456789012:model/m-v1"
    )
