"""The aws target's real boto3 code path against moto (in-process), with the SageMaker calls moto
lacks emulated in tests/fakes/aws.py (UpdateEndpoint, shadow variants). Each test asserts what
the platform holds (read back with separate clients) and the requests the target sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra.aws.ecr import ensure_repository, registry_credentials
from infra.aws.naming import parse_invoke_url
from infra.aws.target import AwsTarget
from infra.errors import (
    CloudCallFailed,
    CredentialsNotFound,
    DeployError,
    ImageRequired,
    InvalidTraffic,
    TargetConfigError,
    VersionNotDeployed,
)
from infra.targets import Deployment, DeployState, get_target
from modelyard.settings import AwsSettings, ImageSettings, Settings
from registry.types import Stage
from tests.fakes.aws import ACCOUNT, AwsEmulator, aws_environment, emulated_aws

REGISTRY = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
MODEL = "penguins"
MUTATING = ("Create", "Update", "Delete", "Put", "Register", "Deregister", "Add")


def spec(version: int, stage: Stage, image_tag: str | None = None) -> Deployment:
    tag = image_tag or f"v{version}"
    return Deployment(
        MODEL, version, stage, f"penguins_service:b{version}", image=f"{REGISTRY}/penguins:{tag}"
    )


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[tuple[AwsEmulator, AwsTarget]]:
    with emulated_aws(Settings(home=tmp_path)) as pair:
        yield pair


def view(target: AwsTarget, model: str = MODEL) -> dict[int, tuple[str, int]]:
    return {d.version: (d.stage.value, d.traffic) for d in target.status(model)}


def held_weights(emulator: AwsEmulator) -> dict[str, float]:
    """The weights SageMaker (moto) holds, read with a client of its own."""
    described = emulator.client("sagemaker").describe_endpoint(EndpointName=MODEL)
    return {v["VariantName"]: v.get("CurrentWeight", 0.0) for v in described["ProductionVariants"]}


def scalable_variants(emulator: AwsEmulator) -> list[str]:
    found = emulator.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )["ScalableTargets"]
    return sorted(t["ResourceId"] for t in found)


def alarms(emulator: AwsEmulator) -> list[str]:
    found = emulator.client("cloudwatch").describe_alarms()["MetricAlarms"]
    return sorted(a["AlarmName"] for a in found)


def sagemaker_models(emulator: AwsEmulator) -> list[str]:
    return sorted(m["ModelName"] for m in emulator.client("sagemaker").list_models()["Models"])


def endpoint_configs(emulator: AwsEmulator) -> list[str]:
    found = emulator.client("sagemaker").list_endpoint_configs()["EndpointConfigs"]
    return sorted(c["EndpointConfigName"] for c in found)


def canary_at_10(target: AwsTarget) -> None:
    target.deploy(spec(1, Stage.CHAMPION))
    target.deploy(spec(2, Stage.CANARY))
    target.set_traffic(MODEL, {1: 90, 2: 10})


# --- the staged rollout ----------------------------------------------------------------------


def test_the_first_version_is_the_champion_with_all_traffic(
    aws: tuple[AwsEmulator, AwsTarget],
) -> None:
    emulator, target = aws
    deployed = target.deploy(spec(1, Stage.CHAMPION))

    assert (deployed.stage, deployed.traffic, deployed.state) == (
        Stage.CHAMPION,
        100,
        DeployState.RUNNING,
    )
    invoke = parse_invoke_url(deployed.url)
    assert invoke.url == (
        "https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/penguins/invocations"
    )
    assert invoke.target_variant == "v1"
    assert held_weights(emulator) == {"v1": 100.0}
    [model] = emulator.requests("CreateModel")
    assert model["PrimaryContainer"]["Image"] == f"{REGISTRY}/penguins:v1"
    assert model["ExecutionRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/modelyard-sagemaker"
    assert scalable_variants(emulator) == ["endpoint/penguins/variant/v1"]
    assert alarms(emulator) == ["modelyard-penguins-v1-5xx-rate"]
    [policy] = emulator.requests("PutScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"


def test_a_second_version_gets_no_traffic_until_shifted_to_90_10(
    aws: tuple[AwsEmulator, AwsTarget],
) -> None:
    emulator, target = aws
    target.deploy(spec(1, Stage.CHAMPION))
    added = target.deploy(spec(2, Stage.CANARY))
    assert added.traffic == 0
    assert view(target) == {1: ("champion", 100), 2: ("canary", 0)}
    [update] = emulator.requests("UpdateEndpoint")
    assert "DeploymentConfig" not in update  # a new variant: guardrails need the same names
    assert update["RetainAllVariantProperties"] is True

    target.set_traffic(MODEL, {1: 90, 2: 10})

    assert view(target) == {1: ("champion", 90), 2: ("canary", 10)}
    assert held_weights(emulator) == {"v1": 90.0, "v2": 10.0}
    assert emulator.requests("UpdateEndpointWeightsAndCapacities") == [
        {
            "EndpointName": "penguins",
            "DesiredWeightsAndCapacities": [
                {"VariantName": "v1", "DesiredWeight": 90.0},
                {"VariantName": "v2", "DesiredWeight": 10.0},
            ],
        }
    ]
    assert scalable_variants(emulator) == [
        "endpoint/penguins/variant/v1",
        "endpoint/penguins/variant/v2",
    ]


def test_promoting_the_canary_to_100_retires_the_old_champion(
    aws: tuple[AwsEmulator, AwsTarget],
) -> None:
    emulator, target = aws
    canary_at_10(target)

    target.deploy(spec(2, Stage.CHAMPION))
    target.set_traffic(MODEL, {2: 100})
    removed = target.remove(MODEL, 1)

    assert [(d.version, d.traffic) for d in removed] == [(1, 0)]
    assert view(target) == {2: ("champion", 100)}
    assert held_weights(emulator) == {"v2": 100.0}
    assert scalable_variants(emulator) == ["endpoint/penguins/variant/v2"]
    assert alarms(emulator) == ["modelyard-penguins-v2-5xx-rate"]
    assert [m for m in sagemaker_models(emulator) if "-v1-" in m] == []
    assert len(endpoint_configs(emulator)) == 1  # each replaced config is deleted


def test_rolling_back_a_canary_gives_the_champion_all_traffic(
    aws: tuple[AwsEmulator, AwsTarget],
) -> None:
    emulator, target = aws
    canary_at_10(target)

    removed = target.remove(MODEL, 2)

    assert [(d.version, d.stage, d.traffic) for d in removed] == [(2, Stage.CANARY, 10)]
    assert view(target) == {1: ("champion", 100)}
    # traffic moved to the champion before the variant went
    weights = emulator.requests("UpdateEndpointWeightsAndCapacities")[-1]
    assert weights["DesiredWeightsAndCapacities"] == [
        {"VariantName": "v1", "DesiredWeight": 100.0},
        {"VariantName": "v2", "DesiredWeight": 0.0},
    ]
    operations = emulator.operations()
    last_weights = (
        len(operations) - 1 - operations[::-1].index("UpdateEndpointWeightsAndCapacities")
    )
    assert "UpdateEndpoint" in operations[last_weights:]
    assert [m for m in sagemaker_models(emulator) if "-v2-" in m] == []


def test_removing_everything_leaves_nothing_behind(aws: tuple[AwsEmulator, AwsTarget]) -> None:
    emulator, target = aws
    canary_at_10(target)

    removed = target.remove(MODEL)

    assert sorted(d.version for d in removed) == [1, 2]
    assert target.status(MODEL) == []
    assert target.status() == []
    assert emulator.client("sagemaker").list_endpoints()["Endpoints"] == []
    assert endpoint_configs(emulator) == []
    assert sagemaker_models(emulator) == []
    assert scalable_variants(emulator) == []
    assert alarms(emulator) == []
    assert target.remove(MODEL) == []


def test_a_shadow_is_mirrored_by_sagemaker_and_has_no_share(
    aws: tuple[AwsEmulator, AwsTarget],
) -> None:
    emulator, target = aws
    target.deploy(spec(1, Stage.CHAMPION))
    shadow = target.deploy(spec(2, Stage.SHADOW))

    assert view(target) == {1: ("champion", 100), 2: ("shadow", 0)}
    assert parse_invoke_url(shadow.url).shadow_variant == "v2"
    config = emulator.requests("CreateEndpointConfig")[-1]
    assert [v["VariantName"] for v in config["ShadowProductionVariants"]] == ["v2"]
    assert [v["VariantName"] for v in config["ProductionVariants"]] == ["v1"]
    described = emulator.client("sagemaker").describe_endpoint(EndpointName=MODEL)
    assert [v["VariantName"] for v in described["ShadowProductionVariants"]] == ["v2"]
    with pytest.raises(InvalidTraffic, match="shadow"):
        target.set_traffic(MODEL, {1: 90, 2: 10})

    # beside a champion and a canary, SageMaker allows no shadow slot: a 0-weight variant
    target.deploy(spec(3, Stage.CANARY))
    target.set_traffic(MODEL, {1: 90, 3: 10})
    assert view(target) == {1: ("champion", 90), 3: ("canary", 10), 2: ("shadow", 0)}
    assert held_weights(emulator) == {"v1": 90.0, "v2": 0.0, "v3": 10.0}
    moved = {d.version: parse_invoke_url(d.url) for d in target.status(MODEL)}
    assert moved[2].target_variant == "v2"


def test_a_new_image_for_a_version_is_a_guarded_blue_green_update(
    aws: tuple[AwsEmulator, AwsTarget],
) -> None:
    emulator, target = aws
    target.deploy(spec(1, Stage.CHAMPION))
    first_model = sagemaker_models(emulator)

    target.deploy(spec(1, Stage.CHAMPION, image_tag="v1-rebuilt"))

    [update] = emulator.requests("UpdateEndpoint")
    assert update["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 60},
            "TerminationWaitInSeconds": 0,
            "MaximumExecutionTimeoutInSeconds": 1980,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "modelyard-penguins-v1-5xx-rate"}]},
    }
    # the exact request the target sent is one SageMaker's service model accepts
    offline = boto3.Session(region_name="eu-west-1").client("sagemaker")
    with Stubber(offline) as stubber:
        arn = f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint/penguins"
        stubber.add_response("update_endpoint", {"EndpointArn": arn}, expected_params=update)
        offline.update_endpoint(**update)
        stubber.assert_no_pending_responses()
    assert view(target) == {1: ("champion", 100)}
    client = emulator.client("sagemaker")
    now = sagemaker_models(emulator)
    assert len(now) == 1 and now != first_model
    model = client.describe_model(ModelName=now[0])
    assert model["PrimaryContainer"]["Image"] == f"{REGISTRY}/penguins:v1-rebuilt"


def test_an_update_sagemaker_rolled_back_is_an_error(aws: tuple[AwsEmulator, AwsTarget]) -> None:
    emulator, target = aws
    target.deploy(spec(1, Stage.CHAMPION))
    emulator.roll_back_next_update("Alarm modelyard-penguins-v1-5xx-rate fired while baking")

    with pytest.raises(CloudCallFailed, match=r"rolled the update back.*5xx-rate fired"):
        target.deploy(spec(1, Stage.CHAMPION, image_tag="v1-bad"))
    assert view(target) == {1: ("champion", 100)}


def test_a_canary_turned_shadow_stops_answering(aws: tuple[AwsEmulator, AwsTarget]) -> None:
    emulator, target = aws
    canary_at_10(target)
    target.deploy(spec(3, Stage.SHADOW))  # beside two answering versions: a 0-weight variant
    updates = len(emulator.requests("UpdateEndpoint"))

    target.deploy(spec(2, Stage.SHADOW))

    assert len(emulator.requests("UpdateEndpoint")) == updates  # same variants, new weights
    assert held_weights(emulator) == {"v1": 100.0, "v2": 0.0, "v3": 0.0}
    assert view(target) == {1: ("champion", 100), 2: ("shadow", 0), 3: ("shadow", 0)}


def test_deploying_what_runs_changes_nothing(aws: tuple[AwsEmulator, AwsTarget]) -> None:
    emulator, target = aws
    canary_at_10(target)
    before = len(emulator.calls)

    target.deploy_all([spec(1, Stage.CHAMPION), spec(2, Stage.CANARY)])
    target.set_traffic(MODEL, {1: 90, 2: 10})

    sent = emulator.operations()[before:]
    assert [op for op in sent if op.startswith(MUTATING)] == []


def test_a_stage_change_is_a_tag_not_a_redeploy(aws: tuple[AwsEmulator, AwsTarget]) -> None:
    emulator, target = aws
    canary_at_10(target)
    updates = len(emulator.requests("UpdateEndpoint"))

    target.deploy(spec(2, Stage.CHAMPION))

    assert len(emulator.requests("UpdateEndpoint")) == updates
    assert emulator.requests("AddTags")[-1]["Tags"] == [
        {"Key": "modelyard:stage", "Value": "champion"}
    ]
    assert view(target) == {1: ("champion", 90), 2: ("champion", 10)}


def test_status_lists_every_model_modelyard_deployed(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, aws=AwsSettings(endpoint_prefix="team-a-"))
    with emulated_aws(settings) as (emulator, target):
        make_foreign_endpoint(emulator.client("sagemaker"), "team-a-foreign")
        target.deploy(spec(1, Stage.CHAMPION))
        target.deploy(
            Deployment("Fraud Detector", 4, Stage.CHAMPION, "f:1", image=f"{REGISTRY}/f:v4")
        )
        listed = [(d.model, d.version, d.url.split("/")[4]) for d in target.status()]
        assert listed == [
            ("Fraud Detector", 4, target.endpoint_of("Fraud Detector")),
            ("penguins", 1, "team-a-penguins"),
        ]


def make_foreign_endpoint(client: Any, name: str) -> None:
    """An endpoint Modelyard did not make (no tags): status must not list it."""
    client.create_model(ModelName=name, PrimaryContainer={"Image": f"{REGISTRY}/x:1"})
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
    }
    client.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    client.create_endpoint(EndpointName=name, EndpointConfigName=name)


# --- errors ----------------------------------------------------------------------------------


def test_a_version_without_an_image_is_refused_before_any_call(
    aws: tuple[AwsEmulator, AwsTarget],
) -> None:
    emulator, target = aws
    with pytest.raises(ImageRequired, match="penguins v1 has none"):
        target.deploy(Deployment(MODEL, 1, Stage.CHAMPION, "b:1"))
    with pytest.raises(DeployError, match="working_dir"):
        target.deploy(Deployment(MODEL, 1, Stage.CHAMPION, "b:1", Path("."), image="r.test/i:1"))
    assert emulator.calls == []


def test_no_execution_role_names_the_setting(tmp_path: Path) -> None:
    with aws_environment():
        settings = Settings(home=tmp_path, aws=AwsSettings(region="eu-west-1"))
        target = get_target("aws", settings)
        with pytest.raises(TargetConfigError) as caught:
            target.deploy(spec(1, Stage.CHAMPION))
    assert "MODELYARD_AWS__ROLE_ARN" in str(caught.value.hint)


def test_an_endpoint_modelyard_did_not_make_is_left_alone(
    aws: tuple[AwsEmulator, AwsTarget],
) -> None:
    emulator, target = aws
    make_foreign_endpoint(emulator.client("sagemaker"), MODEL)

    assert target.status(MODEL) == []  # its variant is not a Modelyard version
    with pytest.raises(DeployError, match="not made by Modelyard"):
        target.deploy(spec(1, Stage.CHAMPION))
    with pytest.raises(DeployError, match="not made by Modelyard"):
        target.remove(MODEL)
    described = emulator.client("sagemaker").describe_endpoint(EndpointName=MODEL)
    assert described["EndpointConfigName"] == MODEL
    assert not [op for op in emulator.operations() if op.startswith(MUTATING)]


def test_unknown_versions_and_bad_shares_are_refused(aws: tuple[AwsEmulator, AwsTarget]) -> None:
    _, target = aws
    with pytest.raises(VersionNotDeployed):
        target.remove(MODEL, 1)
    canary_at_10(target)
    with pytest.raises(VersionNotDeployed, match="deployed: v1, v2"):
        target.remove(MODEL, 7)
    with pytest.raises(InvalidTraffic, match="sum to 80"):
        target.set_traffic(MODEL, {1: 70, 2: 10})


def test_missing_credentials_say_where_they_were_looked_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask for
    settings = Settings(home=tmp_path, aws=AwsSettings(region="eu-west-1"))

    with pytest.raises(CredentialsNotFound) as caught:
        get_target("aws", settings).status("penguins")

    message = str(caught.value)
    assert "Unable to locate credentials" in message
    assert "AWS_ACCESS_KEY_ID" in message and "~/.aws/credentials" in message


def test_a_platform_error_is_reported_with_its_message(aws: tuple[AwsEmulator, AwsTarget]) -> None:
    emulator, target = aws
    emulator.fail_next(
        "CreateEndpoint",
        "ResourceLimitExceeded",
        "The account-level service limit 'ml.m5.large for endpoint usage' is 0 Instances",
    )
    with pytest.raises(CloudCallFailed) as caught:
        target.deploy(spec(1, Stage.CHAMPION))
    assert str(caught.value).startswith("aws target: create endpoint penguins failed:")
    assert "ResourceLimitExceeded: The account-level service limit" in str(caught.value)


def test_an_endpoint_whose_config_was_deleted_by_hand_is_not_guessed_at(
    aws: tuple[AwsEmulator, AwsTarget],
) -> None:
    emulator, target = aws
    target.deploy(spec(1, Stage.CHAMPION))
    [config] = endpoint_configs(emulator)
    emulator.client("sagemaker").delete_endpoint_config(EndpointConfigName=config)

    assert [(d.version, d.traffic) for d in target.status(MODEL)] == [(1, 100)]
    with pytest.raises(DeployError, match=f"config {config}, which is gone"):
        target.deploy(spec(2, Stage.CANARY))
    assert [d.version for d in target.remove(MODEL)] == [1]
    assert emulator.client("sagemaker").list_endpoints()["Endpoints"] == []


# --- ECR -------------------------------------------------------------------------------------


def test_ecr_repositories_are_created_once_and_tokens_decoded(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, aws=AwsSettings(region="eu-west-1"))
    with emulated_aws(settings) as (emulator, _):
        uri = ensure_repository(settings, "modelyard-penguins")
        assert uri == f"{REGISTRY}/modelyard-penguins"
        assert ensure_repository(settings, "modelyard-penguins") == uri
        ecr = emulator.client("ecr")
        [repository] = ecr.describe_repositories()["repositories"]
        assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repository["imageTagMutability"] == "MUTABLE"

        host, username, password = registry_credentials(settings)
        assert (host, username) == (REGISTRY, "AWS")
        assert password == f"{ACCOUNT}-auth-token"

        with pytest.raises(CloudCallFailed, match="InvalidParameterException"):
            ensure_repository(settings, "Not_A_Valid_Name")


def test_ecr_follows_the_image_registrys_account_and_region(tmp_path: Path) -> None:
    other = f"{ACCOUNT}.dkr.ecr.us-east-2.amazonaws.com"
    settings = Settings(
        home=tmp_path,
        aws=AwsSettings(region="eu-west-1"),
        images=ImageSettings(registry=f"{other}/models"),
    )
    with emulated_aws(settings):
        session = boto3.Session()
        assert registry_credentials(settings, session=session)[0] == other
        assert ensure_repository(settings, "models/p", session=session) == f"{other}/models/p"
