"""What guards each production variant: Application Auto Scaling on invocations per instance,
and a CloudWatch alarm on its 5XX error rate that a guarded endpoint update rolls back on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from infra.aws.clients import aws_errors
from infra.aws.naming import alarm_name, scaling_policy_name, scaling_resource_id
from infra.aws.plan import (
    SCALABLE_DIMENSION,
    alarm_request,
    scalable_target_request,
    scaling_policy_request,
)

if TYPE_CHECKING:
    from infra.aws.clients import AwsClients
    from modelyard.settings import AwsSettings


def put_alarms(clients: AwsClients, endpoint: str, versions: Iterable[int], rate: float) -> None:
    """Create or update the variants' error-rate alarms. Raises ``CloudCallFailed``."""
    for version in sorted(versions):
        request = alarm_request(endpoint, version, rate)
        with aws_errors(f"put alarm {request['AlarmName']}"):
            clients.cloudwatch.put_metric_alarm(**request)


def drop_alarms(clients: AwsClients, endpoint: str, versions: Iterable[int]) -> None:
    """Delete the variants' alarms that exist. Raises ``CloudCallFailed``."""
    names = [alarm_name(endpoint, v) for v in sorted(versions)]
    if not names:
        return
    with aws_errors(f"delete alarms of {endpoint}"):
        found = clients.cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", [])
        existing = [alarm["AlarmName"] for alarm in found]
        if existing:
            clients.cloudwatch.delete_alarms(AlarmNames=existing)


def ensure_scaling(
    clients: AwsClients, endpoint: str, versions: Iterable[int], aws: AwsSettings
) -> None:
    """Register each variant as a scalable target with its target-tracking policy (both calls
    update what exists). The variants must be in service. Raises ``CloudCallFailed``."""
    for version in sorted(versions):
        with aws_errors(f"register autoscaling of {scaling_resource_id(endpoint, version)}"):
            clients.autoscaling.register_scalable_target(
                **scalable_target_request(endpoint, version, aws)
            )
            clients.autoscaling.put_scaling_policy(**scaling_policy_request(endpoint, version, aws))


def drop_scaling(clients: AwsClients, endpoint: str, versions: Iterable[int]) -> None:
    """Delete the variants' scaling policies and deregister them, where registered.

    SageMaker refuses to update an endpoint away from a variant that is still a scalable target,
    so this runs before such an update. Raises ``CloudCallFailed``.
    """
    ids = {scaling_resource_id(endpoint, v): v for v in versions}
    if not ids:
        return
    with aws_errors(f"deregister autoscaling of {endpoint}"):
        described = clients.autoscaling.describe_scalable_targets(
            ServiceNamespace="sagemaker",
            ResourceIds=sorted(ids),
            ScalableDimension=SCALABLE_DIMENSION,
        )
        for target in described.get("ScalableTargets", []):
            resource = target["ResourceId"]
            _delete_policy(clients, resource, scaling_policy_name(endpoint, ids[resource]))
            clients.autoscaling.deregister_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension=SCALABLE_DIMENSION,
            )


def _delete_policy(clients: AwsClients, resource: str, policy: str) -> None:
    found = clients.autoscaling.describe_scaling_policies(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
        PolicyNames=[policy],
    ).get("ScalingPolicies", [])
    if any(p["PolicyName"] == policy and p["ResourceId"] == resource for p in found):
        clients.autoscaling.delete_scaling_policy(
            PolicyName=policy,
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension=SCALABLE_DIMENSION,
        )
