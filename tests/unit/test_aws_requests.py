"""Every request body the plan builds is one AWS accepts: sent through real boto3 clients with
botocore's ``Stubber`` (the client validates the parameters against the service model, the
stubber checks they arrive unchanged and that the canned answer has the real response shape),
then checked for what botocore leaves out (enums, patterns, maximum lengths and ranges).

``UpdateEndpoint`` with a blue/green ``DeploymentConfig`` is the call moto cannot answer: this is
where its exact request is held against SageMaker's service model.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from infra.aws.naming import alarm_name, model_name
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
from modelyard.settings import AwsSettings
from registry.types import Stage
from tests.fakes.aws import problems_with

AWS = AwsSettings()
ENDPOINT = "penguins"
ENDPOINT_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/penguins"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/modelyard-penguins:v2"
ROLE = "arn:aws:iam::123456789012:role/modelyard-sagemaker"


def offline_client(service: str) -> Any:
    return boto3.Session(
        aws_access_key_id="offline", aws_secret_access_key="offline", region_name="eu-west-1"
    ).client(service)


def sent_through_stubber(
    service: str, method: str, request: dict[str, Any], answer: dict[str, Any]
) -> None:
    """Send ``request`` with boto3; fail unless it validates and arrives exactly as built."""
    client = offline_client(service)
    with Stubber(client) as stubber:
        stubber.add_response(method, answer, expected_params=request)
        getattr(client, method)(**request)
        stubber.assert_no_pending_responses()
    operation = client.meta.method_to_api_mapping[method]
    shape = client.meta.service_model.operation_model(operation).input_shape
    assert problems_with(shape, request) == []


def guarded_update() -> dict[str, Any]:
    alarms = [alarm_name(ENDPOINT, 1), alarm_name(ENDPOINT, 2)]
    return update_endpoint_request(ENDPOINT, "penguins-0123456789ab", guarded=True, alarms=alarms)


def test_the_blue_green_update_with_auto_rollback_matches_the_service_model() -> None:
    request = guarded_update()
    assert request["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": "modelyard-penguins-v1-5xx-rate"},
        {"AlarmName": "modelyard-penguins-v2-5xx-rate"},
    ]
    sent_through_stubber("sagemaker", "update_endpoint", request, {"EndpointArn": ENDPOINT_ARN})


def test_the_plain_update_matches_the_service_model() -> None:
    request = update_endpoint_request(ENDPOINT, "penguins-0123456789ab", guarded=False)
    sent_through_stubber("sagemaker", "update_endpoint", request, {"EndpointArn": ENDPOINT_ARN})


def sagemaker_requests() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    models = {1: model_name(ENDPOINT, 1, IMAGE), 2: model_name(ENDPOINT, 2, IMAGE)}
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:"
    for stages in ({1: Stage.CHAMPION, 2: Stage.CANARY}, {1: Stage.CHAMPION, 2: Stage.SHADOW}):
        layout = plan_layout(models, stages, {1: 90, 2: 10 if stages[2] is Stage.CANARY else 0})
        yield (
            "create_endpoint_config",
            endpoint_config_request("penguins-0123456789ab", layout, AWS, "penguins"),
            {"EndpointConfigArn": arn + "endpoint-config/penguins-0123456789ab"},
        )
    yield (
        "create_model",
        create_model_request(models[2], IMAGE, ROLE, "penguins", 2, Stage.CANARY, "penguins:x1"),
        {"ModelArn": arn + "model/" + models[2]},
    )
    yield (
        "update_endpoint_weights_and_capacities",
        weights_request(ENDPOINT, {1: 90.0, 2: 10.0}),
        {"EndpointArn": arn + "endpoint/penguins"},
    )


@pytest.mark.parametrize(
    ("method", "request_body", "answer"), list(sagemaker_requests()), ids=lambda x: str(x)[:40]
)
def test_sagemaker_requests_match_the_service_model(
    method: str, request_body: dict[str, Any], answer: dict[str, Any]
) -> None:
    sent_through_stubber("sagemaker", method, request_body, answer)


def test_the_alarm_matches_cloudwatchs_service_model() -> None:
    sent_through_stubber("cloudwatch", "put_metric_alarm", alarm_request(ENDPOINT, 2, 0.05), {})


def test_the_autoscaling_requests_match_the_service_model() -> None:
    sent_through_stubber(
        "application-autoscaling",
        "register_scalable_target",
        scalable_target_request(ENDPOINT, 2, AWS),
        {},
    )
    sent_through_stubber(
        "application-autoscaling",
        "put_scaling_policy",
        scaling_policy_request(ENDPOINT, 2, AWS),
        {"PolicyARN": "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:x"},
    )


# --- the checks can fail ---------------------------------------------------------------------


def test_botocore_refuses_a_blue_green_policy_missing_its_wait_interval() -> None:
    request = guarded_update()
    del request["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"][
        "WaitIntervalInSeconds"
    ]
    with pytest.raises(ParamValidationError, match="WaitIntervalInSeconds"):
        sent_through_stubber("sagemaker", "update_endpoint", request, {"EndpointArn": ENDPOINT_ARN})


def test_what_botocore_lets_through_the_model_check_catches() -> None:
    request = guarded_update()
    policy = request["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    policy["TrafficRoutingConfiguration"]["Type"] = "SOMETIMES"
    policy["MaximumExecutionTimeoutInSeconds"] = 99_999
    request["EndpointName"] = "bad_name"
    shape = offline_client("sagemaker").meta.service_model.operation_model("UpdateEndpoint")
    problems = problems_with(shape.input_shape, request)
    assert len(problems) == 3, problems
    assert any("SOMETIMES" in p for p in problems)
    assert any("99999 is over 28800" in p for p in problems)
    assert any("bad_name" in p for p in problems)
