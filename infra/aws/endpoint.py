"""Reading what SageMaker runs (one model's endpoint with its variants, Models and their tags),
waiting for it to settle, and deleting what may already be gone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from infra.aws.clients import TARGET, aws_errors, error_code
from infra.aws.naming import MANAGED_BY, TAG_MANAGED, TAG_MODEL, tags_to_dict
from infra.aws.view import EndpointView, build_view, sibling_arn
from infra.errors import CloudCallFailed

if TYPE_CHECKING:
    from infra.aws.clients import AwsClients


def is_not_found(exc: BaseException) -> bool:
    """SageMaker's "no such resource": a ValidationException saying it could not find it."""
    code = error_code(exc)
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
    if code in {"ResourceNotFound", "ResourceNotFoundException"}:
        return True
    return code == "ValidationException" and (
        "Could not find" in message or "does not exist" in message
    )


def describe(clients: AwsClients, operation: str, **params: Any) -> dict[str, Any] | None:
    """``sagemaker.<operation>(**params)``, or None when the resource does not exist.

    Raises ``CloudCallFailed``/``CredentialsNotFound`` for any other failure.
    """
    from botocore.exceptions import ClientError

    with aws_errors(f"{operation} {next(iter(params.values()), '')}"):
        try:
            result: dict[str, Any] = getattr(clients.sagemaker, operation)(**params)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
    return result


def read_endpoint(clients: AwsClients, endpoint: str) -> EndpointView | None:
    """The endpoint named ``endpoint`` as it runs now, or None when there is none.

    Raises ``CloudCallFailed`` or ``CredentialsNotFound``.
    """
    described = describe(clients, "describe_endpoint", EndpointName=endpoint)
    if described is None:
        return None
    config_name = described.get("EndpointConfigName", "")
    config = describe(clients, "describe_endpoint_config", EndpointConfigName=config_name) or {}
    models = {
        spec["ModelName"]
        for key in ("ProductionVariants", "ShadowProductionVariants")
        for spec in config.get(key, [])
    }
    arn = described.get("EndpointArn", "")
    model_tags = {name: resource_tags(clients, sibling_arn(arn, "model", name)) for name in models}
    return build_view(described, config, model_tags)


def resource_tags(clients: AwsClients, arn: str) -> dict[str, str]:
    """A SageMaker resource's tags ({} when it is gone)."""
    from botocore.exceptions import ClientError

    tags: list[dict[str, str]] = []
    with aws_errors(f"list tags of {arn}"):
        try:
            for page in clients.sagemaker.get_paginator("list_tags").paginate(ResourceArn=arn):
                tags += page.get("Tags", [])
        except ClientError as exc:
            if is_not_found(exc):
                return {}
            raise
    return tags_to_dict(tags)


def managed_endpoints(clients: AwsClients, name_contains: str) -> Iterator[tuple[str, str]]:
    """(model, endpoint) for every endpoint Modelyard made, found by its tags.

    ``name_contains`` (the endpoint prefix) narrows the listing when set.
    """
    params = {"NameContains": name_contains} if name_contains else {}
    with aws_errors("list endpoints"):
        pages = list(clients.sagemaker.get_paginator("list_endpoints").paginate(**params))
    for page in pages:
        for summary in page.get("Endpoints", []):
            tags = resource_tags(clients, summary["EndpointArn"])
            if tags.get(TAG_MANAGED) == MANAGED_BY and tags.get(TAG_MODEL):
                yield tags[TAG_MODEL], summary["EndpointName"]


def delete_if_present(clients: AwsClients, operation: str, **params: Any) -> None:
    """``sagemaker.<operation>(**params)``, a delete that is done when the resource is gone.

    Raises ``CloudCallFailed`` for any other failure.
    """
    from botocore.exceptions import ClientError

    with aws_errors(f"{operation} {next(iter(params.values()), '')}"):
        try:
            getattr(clients.sagemaker, operation)(**params)
        except ClientError as exc:
            if not is_not_found(exc):
                raise


def wait_in_service(clients: AwsClients, endpoint: str, config: dict[str, int]) -> None:
    """Poll with boto3's ``endpoint_in_service`` waiter (``config``: Delay, MaxAttempts).

    Raises ``CloudCallFailed`` with SageMaker's FailureReason when it fails or times out.
    """
    with aws_errors(f"wait for endpoint {endpoint} to be in service"):
        waiter = clients.sagemaker.get_waiter("endpoint_in_service")
        waiter.wait(EndpointName=endpoint, WaiterConfig=config)


def wait_deleted(clients: AwsClients, endpoint: str, config: dict[str, int]) -> None:
    """Poll with boto3's ``endpoint_deleted`` waiter. Raises ``CloudCallFailed``."""
    with aws_errors(f"wait for endpoint {endpoint} to be deleted"):
        waiter = clients.sagemaker.get_waiter("endpoint_deleted")
        waiter.wait(EndpointName=endpoint, WaiterConfig=config)


def await_config(
    clients: AwsClients, endpoint: str, config_name: str, config: dict[str, int]
) -> None:
    """Wait until in service, then check ``config_name`` is the one serving: a blue/green update
    whose alarm fired ends in service on the previous config.

    Raises ``CloudCallFailed`` (failed, timed out, or rolled back with SageMaker's reason).
    """
    wait_in_service(clients, endpoint, config)
    described = describe(clients, "describe_endpoint", EndpointName=endpoint) or {}
    serving = described.get("EndpointConfigName")
    if serving != config_name:
        reason = described.get("FailureReason") or "no reason given"
        raise CloudCallFailed(
            TARGET,
            f"update endpoint {endpoint} to config {config_name}",
            f"SageMaker rolled the update back to config {serving}: {reason}",
        )
