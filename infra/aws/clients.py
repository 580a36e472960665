"""boto3 clients from the standard credential chain, and botocore's errors in our own words.

Credentials come from boto3's chain (environment, profile files, SSO, web identity, the ECS task
role, the EC2 instance role); the region from ``MODELYARD_AWS__REGION``, else the chain's own
(``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile). Nothing is called until a client is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from infra.errors import CloudCallFailed, CredentialsNotFound, TargetConfigError

if TYPE_CHECKING:
    import boto3

    from modelyard.settings import Settings

TARGET = "aws"
LOOKED_FOR = (
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), AWS_PROFILE in "
    "~/.aws/credentials or ~/.aws/config (SSO included), AWS_WEB_IDENTITY_TOKEN_FILE, "
    "the ECS task role, the EC2 instance role"
)
REGION_HINT = "set MODELYARD_AWS__REGION (or AWS_REGION / AWS_DEFAULT_REGION), e.g. eu-west-1"
# Error codes by which AWS says the credentials themselves are wrong (not a missing permission).
CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "AuthFailure",
    }
)


class AwsClients:
    """The clients one target (or one ECR call) uses, built lazily from one boto3 session."""

    def __init__(self, settings: Settings, session: boto3.Session | None = None) -> None:
        import boto3

        self.session = session if session is not None else boto3.Session()
        region = settings.aws.region or self.session.region_name
        if not region:
            raise TargetConfigError(TARGET, "no AWS region is configured", hint=REGION_HINT)
        self.region: str = region

    def client(self, service: str) -> Any:
        """A client for ``service`` in the target's region (standard retry mode)."""
        from botocore.config import Config

        config = Config(retries={"mode": "standard"}, user_agent_extra="modelyard")
        with aws_errors(f"create a {service} client"):
            return self.session.client(service, region_name=self.region, config=config)

    @cached_property
    def sagemaker(self) -> Any:
        return self.client("sagemaker")

    @cached_property
    def autoscaling(self) -> Any:
        return self.client("application-autoscaling")

    @cached_property
    def cloudwatch(self) -> Any:
        return self.client("cloudwatch")

    @cached_property
    def ecr(self) -> Any:
        return self.client("ecr")


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` ("" for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Translate botocore's errors raised inside the block.

    Raises ``CredentialsNotFound`` (none found, or AWS rejects them), ``TargetConfigError`` (no
    region), ``CloudCallFailed`` with AWS's error code and message for anything else.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        WaiterError,
    )

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise CredentialsNotFound(TARGET, LOOKED_FOR, cause=str(exc)) from exc
    except NoRegionError as exc:
        raise TargetConfigError(TARGET, "no AWS region is configured", hint=REGION_HINT) from exc
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", str(exc))
        if code in CREDENTIAL_CODES:
            raise CredentialsNotFound(TARGET, LOOKED_FOR, cause=f"{code}: {message}") from exc
        raise CloudCallFailed(TARGET, action, f"{code}: {message}") from exc
    except WaiterError as exc:
        last = exc.last_response or {}
        reason = last.get("FailureReason") or last.get("Error", {}).get("Message") or ""
        detail = f"{exc.kwargs.get('reason', exc)}" + (f": {reason}" if reason else "")
        raise CloudCallFailed(TARGET, action, detail) from exc
    except BotoCoreError as exc:
        raise CloudCallFailed(TARGET, action, str(exc)) from exc
