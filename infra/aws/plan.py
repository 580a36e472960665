"""What one model's SageMaker endpoint should look like, and the request bodies that get it there.

All pure: values in, values (boto3 keyword arguments) out. The target in ``target.py`` reads the
endpoint, asks these functions what to send, and sends it.

Where versions run:
  * every answering version (champion, canary) is a production variant whose weight is its
    traffic percent;
  * a shadow goes in SageMaker's shadow slot (``ShadowProductionVariants``: SageMaker mirrors the
    production traffic to it) when it is the only shadow beside exactly one answering variant,
    the only case SageMaker allows; otherwise it runs as a production variant at weight 0, and
    is mirrored by whoever reads ``status`` (its URL names the variant to invoke).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from infra.aws.naming import (
    MANAGED_BY,
    TAG_BENTO,
    TAG_MANAGED,
    TAG_MODEL,
    TAG_STAGE,
    TAG_VERSION,
    alarm_name,
    dict_to_tags,
    scaling_policy_name,
    scaling_resource_id,
    variant_name,
)
from infra.aws.view import Layout
from registry.types import Stage

if TYPE_CHECKING:
    from modelyard.settings import AwsSettings

SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"
DEFAULT_BAKE_SECONDS = 300  # how long a guarded update watches the alarms before finishing
ALARM_PERIOD_SECONDS = 60
ALARM_EVALUATION_PERIODS = 3
ALARM_DATAPOINTS = 2


def plan_layout(
    models: Mapping[int, str], stages: Mapping[int, Stage], shares: Mapping[int, int]
) -> Layout:
    """The layout running ``models`` (version -> SageMaker Model) in ``stages`` at ``shares``.

    See the module docstring for where a shadow goes. With no answering version left, the
    production variants get weight 1 each: SageMaker needs a positive weight somewhere.
    """
    shadows = sorted(v for v in models if stages[v] is Stage.SHADOW)
    answering = sorted(v for v in models if stages[v] is not Stage.SHADOW)
    slot = shadows if len(shadows) == 1 and len(answering) == 1 else []
    production = {v: models[v] for v in sorted(models) if v not in slot}
    weights = {v: float(shares.get(v, 0)) if v in answering else 0.0 for v in production}
    if not any(weights.values()):
        weights = dict.fromkeys(production, 1.0)
    return Layout(production, {v: models[v] for v in slot}, weights)


def endpoint_config_request(
    name: str, layout: Layout, aws: AwsSettings, model: str
) -> dict[str, Any]:
    """``create_endpoint_config`` arguments; a shadow slot mirrors all production traffic (its
    weight equals the production variant's)."""
    mirror = max(layout.weights.values(), default=1.0)
    request: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [
            _variant_spec(v, layout.production[v], layout.weights[v], aws)
            for v in sorted(layout.production)
        ],
        "Tags": dict_to_tags({TAG_MANAGED: MANAGED_BY, TAG_MODEL: model}),
    }
    if layout.shadow_slot:
        request["ShadowProductionVariants"] = [
            _variant_spec(v, layout.shadow_slot[v], mirror, aws) for v in sorted(layout.shadow_slot)
        ]
    return request


def _variant_spec(version: int, model_name: str, weight: float, aws: AwsSettings) -> dict[str, Any]:
    return {
        "VariantName": variant_name(version),
        "ModelName": model_name,
        "InitialInstanceCount": aws.initial_instance_count,
        "InstanceType": aws.instance_type,
        "InitialVariantWeight": weight,
    }


def create_model_request(
    name: str, image: str, role_arn: str, model: str, version: int, stage: Stage, bento_tag: str
) -> dict[str, Any]:
    """``create_model`` arguments: one container running ``image``, the version's facts in tags."""
    return {
        "ModelName": name,
        "PrimaryContainer": {"Image": image, "Mode": "SingleModel"},
        "ExecutionRoleArn": role_arn,
        "Tags": dict_to_tags(version_tags(model, version, stage, bento_tag)),
    }


def version_tags(model: str, version: int, stage: Stage, bento_tag: str) -> dict[str, str]:
    return {
        TAG_MANAGED: MANAGED_BY,
        TAG_MODEL: model,
        TAG_VERSION: str(version),
        TAG_STAGE: stage.value,
        TAG_BENTO: bento_tag,
    }


def update_endpoint_request(
    endpoint: str,
    config: str,
    *,
    guarded: bool,
    alarms: Iterable[str] = (),
    bake_seconds: int = DEFAULT_BAKE_SECONDS,
) -> dict[str, Any]:
    """``update_endpoint`` arguments moving ``endpoint`` to ``config``.

    Instance counts the autoscaler reached are kept; weights come from the new config. When
    ``guarded`` (the variant names are unchanged: SageMaker's deployment guardrails require it),
    the update is a blue/green deployment that shifts all traffic at once, then bakes for
    ``bake_seconds`` and rolls back by itself if one of ``alarms`` fires meanwhile.
    """
    request: dict[str, Any] = {
        "EndpointName": endpoint,
        "EndpointConfigName": config,
        "RetainAllVariantProperties": True,
        "ExcludeRetainedVariantProperties": [{"VariantPropertyType": "DesiredWeight"}],
    }
    names = sorted(set(alarms))
    if guarded:
        deployment: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "ALL_AT_ONCE",
                    "WaitIntervalInSeconds": bake_seconds,
                },
                "TerminationWaitInSeconds": 0,
                "MaximumExecutionTimeoutInSeconds": max(600, 3 * bake_seconds + 1800),
            },
        }
        if names:
            deployment["AutoRollbackConfiguration"] = {
                "Alarms": [{"AlarmName": name} for name in names[:10]]
            }
        request["DeploymentConfig"] = deployment
    return request


def weights_request(endpoint: str, weights: Mapping[int, float]) -> dict[str, Any]:
    """``update_endpoint_weights_and_capacities`` arguments: only weights, so the autoscaler
    keeps the instance counts."""
    return {
        "EndpointName": endpoint,
        "DesiredWeightsAndCapacities": [
            {"VariantName": variant_name(v), "DesiredWeight": float(weights[v])}
            for v in sorted(weights)
        ],
    }


# --- the guards of a production variant: autoscaling and its rollback alarm -----------------


def alarm_request(endpoint: str, version: int, error_rate: float) -> dict[str, Any]:
    """``put_metric_alarm`` arguments: the variant's 5XX errors over its invocations, above
    ``error_rate`` in 2 of 3 minutes. No traffic is no data, which is not breaching."""
    dimensions = [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "VariantName", "Value": variant_name(version)},
    ]

    def metric(query_id: str, metric_name: str) -> dict[str, Any]:
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/SageMaker",
                    "MetricName": metric_name,
                    "Dimensions": dimensions,
                },
                "Period": ALARM_PERIOD_SECONDS,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }

    return {
        "AlarmName": alarm_name(endpoint, version),
        "AlarmDescription": (
            f"5XX share of {endpoint} {variant_name(version)} above {error_rate:g}; "
            "rolls back a guarded SageMaker update (modelyard)"
        ),
        "Metrics": [
            metric("errors", "Invocation5XXErrors"),
            metric("invocations", "Invocations"),
            {
                "Id": "error_rate",
                "Expression": "errors / invocations",
                "Label": "5XX error rate",
                "ReturnData": True,
            },
        ],
        "EvaluationPeriods": ALARM_EVALUATION_PERIODS,
        "DatapointsToAlarm": ALARM_DATAPOINTS,
        "Threshold": error_rate,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "Tags": [{"Key": TAG_MANAGED, "Value": MANAGED_BY}],
    }


def scalable_target_request(endpoint: str, version: int, aws: AwsSettings) -> dict[str, Any]:
    """``register_scalable_target`` arguments: the variant scales between the configured
    initial and maximum instance counts."""
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": scaling_resource_id(endpoint, version),
        "ScalableDimension": SCALABLE_DIMENSION,
        "MinCapacity": aws.initial_instance_count,
        "MaxCapacity": max(aws.max_instance_count, aws.initial_instance_count),
    }


def scaling_policy_request(endpoint: str, version: int, aws: AwsSettings) -> dict[str, Any]:
    """``put_scaling_policy`` arguments: track invocations per instance."""
    return {
        "PolicyName": scaling_policy_name(endpoint, version),
        "ServiceNamespace": "sagemaker",
        "ResourceId": scaling_resource_id(endpoint, version),
        "ScalableDimension": SCALABLE_DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(aws.target_invocations_per_instance),
            "PredefinedMetricSpecification": {"PredefinedMetricType": SCALING_METRIC},
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    }
