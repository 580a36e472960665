"""botocore's errors in Modelyard's words, the region rule, and ECR's token format."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    WaiterError,
)

from infra.aws.clients import AwsClients, aws_errors
from infra.aws.ecr import decode_token, parse_ecr_host
from infra.errors import CloudCallFailed, CredentialsNotFound, TargetConfigError
from modelyard.settings import AwsSettings, Settings


def client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "CreateEndpoint")


def test_a_platform_error_keeps_its_code_and_message() -> None:
    with pytest.raises(CloudCallFailed) as caught, aws_errors("create endpoint penguins"):
        raise client_error("ResourceLimitExceeded", "The account-level service limit is 0")
    assert str(caught.value) == (
        "aws target: create endpoint penguins failed: "
        "ResourceLimitExceeded: The account-level service limit is 0"
    )
    assert isinstance(caught.value.__cause__, ClientError)


def test_missing_credentials_name_every_place_looked_in() -> None:
    with pytest.raises(CredentialsNotFound) as caught, aws_errors("list endpoints"):
        raise NoCredentialsError()
    message = str(caught.value)
    for place in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "~/.aws/credentials", "instance role"):
        assert place in message


@pytest.mark.parametrize("code", ["UnrecognizedClientException", "ExpiredTokenException"])
def test_credentials_aws_rejects_are_credential_errors(code: str) -> None:
    with pytest.raises(CredentialsNotFound, match=code), aws_errors("list endpoints"):
        raise client_error(code, "The security token included in the request is invalid.")


def test_a_missing_permission_is_a_platform_error_not_a_credential_one() -> None:
    with pytest.raises(CloudCallFailed, match="AccessDeniedException"), aws_errors("x"):
        raise client_error("AccessDeniedException", "not authorized to perform CreateModel")


def test_no_region_names_the_setting() -> None:
    with pytest.raises(TargetConfigError) as caught, aws_errors("x"):
        raise NoRegionError()
    assert "MODELYARD_AWS__REGION" in str(caught.value.hint)


def test_a_failed_wait_carries_sagemakers_failure_reason() -> None:
    error = WaiterError(
        name="EndpointInService",
        reason="Waiter encountered a terminal failure state",
        last_response={"EndpointStatus": "Failed", "FailureReason": "image not found"},
    )
    with pytest.raises(CloudCallFailed, match="image not found"), aws_errors("wait"):
        raise error


def test_an_unreachable_service_is_a_platform_error() -> None:
    with pytest.raises(CloudCallFailed, match="Could not connect"), aws_errors("x"):
        raise EndpointConnectionError(endpoint_url="https://api.sagemaker.example")


def test_no_region_anywhere_is_refused_before_any_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(TargetConfigError, match="no AWS region") as caught:
        AwsClients(Settings(home=tmp_path))
    assert "MODELYARD_AWS__REGION" in str(caught.value.hint)
    clients = AwsClients(Settings(home=tmp_path, aws=AwsSettings(region="eu-central-1")))
    assert clients.region == "eu-central-1"


def test_an_ecr_token_is_host_user_and_password() -> None:
    token = base64.b64encode(b"AWS:s3cr:et").decode()
    assert decode_token(token, "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com") == (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        "AWS",
        "s3cr:et",
    )


@pytest.mark.parametrize("token", ["not base64!", base64.b64encode(b"no-colon").decode()])
def test_a_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(CloudCallFailed, match="ECR token"):
        decode_token(token, "https://x")


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", ("123456789012", "eu-west-1")),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/models", ("123456789012", "cn-north-1")),
        ("europe-docker.pkg.dev/project/models", None),
        ("127.0.0.1:5000", None),
        (None, None),
    ],
)
def test_an_ecr_registry_host_names_its_account_and_region(
    registry: str | None, expected: tuple[str, str] | None
) -> None:
    assert parse_ecr_host(registry) == expected
