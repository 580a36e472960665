"""ECR, the image registry of the ``aws`` target: repositories and the registry's credentials.

The images floor (``infra.images``) pushes with any OCI client; from here it gets a repository
that exists and a username/password pair from ``GetAuthorizationToken`` (valid 12 hours).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from infra.aws.clients import TARGET, AwsClients, aws_errors
from infra.aws.naming import MANAGED_BY, TAG_MANAGED
from infra.errors import CloudCallFailed

if TYPE_CHECKING:
    import boto3

    from modelyard.settings import Settings

# <account>.dkr.ecr.<region>.amazonaws.com[.cn]: a registry host that names its account and region
ECR_HOST = re.compile(
    r"(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
)


def parse_ecr_host(registry: str | None) -> tuple[str, str] | None:
    """(account, region) of an ECR registry host (a path after it is ignored), else None."""
    host = (registry or "").split("/", 1)[0]
    match = ECR_HOST.fullmatch(host)
    return (match.group("account"), match.group("region")) if match else None


def _clients(settings: Settings, session: boto3.Session | None) -> tuple[AwsClients, str | None]:
    """Clients in the image registry's region (from its host when it is ECR's), and its account."""
    parsed = parse_ecr_host(settings.images.registry)
    if parsed is None:
        return AwsClients(settings, session), None
    account, region = parsed
    aws = settings.aws.model_copy(update={"region": region})
    return AwsClients(settings.model_copy(update={"aws": aws}), session), account


def ensure_repository(
    settings: Settings, name: str, *, session: boto3.Session | None = None
) -> str:
    """The URI of ECR repository ``name``, created when missing (scan on push, mutable tags:
    ``v3`` is rebuilt when a version's Bento changes).

    Raises ``CloudCallFailed`` (e.g. an invalid name, no permission), ``CredentialsNotFound``,
    ``TargetConfigError`` (no region).
    """
    clients, account = _clients(settings, session)
    registry = {"registryId": account} if account else {}
    with aws_errors(f"describe ECR repository {name}"):
        try:
            found = clients.ecr.describe_repositories(repositoryNames=[name], **registry)
            return str(found["repositories"][0]["repositoryUri"])
        except clients.ecr.exceptions.RepositoryNotFoundException:
            pass
    with aws_errors(f"create ECR repository {name}"):
        try:
            created = clients.ecr.create_repository(
                repositoryName=name,
                imageTagMutability="MUTABLE",
                imageScanningConfiguration={"scanOnPush": True},
                tags=[{"Key": TAG_MANAGED, "Value": MANAGED_BY}],
                **registry,
            )
        except clients.ecr.exceptions.RepositoryAlreadyExistsException:  # created meanwhile
            found = clients.ecr.describe_repositories(repositoryNames=[name], **registry)
            return str(found["repositories"][0]["repositoryUri"])
    return str(created["repository"]["repositoryUri"])


def registry_credentials(
    settings: Settings, *, session: boto3.Session | None = None
) -> tuple[str, str, str]:
    """(registry host, username, password) for ECR from ``GetAuthorizationToken``.

    The registry is ``MODELYARD_IMAGES__REGISTRY``'s when that is an ECR host (its account and
    region), else the caller's account in ``MODELYARD_AWS__REGION``. Raises
    ``CredentialsNotFound``, ``TargetConfigError`` (no region), ``CloudCallFailed``.
    """
    clients, account = _clients(settings, session)
    with aws_errors("get an ECR authorization token"):
        if account:
            answer = clients.ecr.get_authorization_token(registryIds=[account])
        else:
            answer = clients.ecr.get_authorization_token()
    data = answer.get("authorizationData") or []
    if not data:
        raise CloudCallFailed(TARGET, "get an ECR authorization token", "ECR returned no token")
    return decode_token(data[0]["authorizationToken"], data[0]["proxyEndpoint"])


def decode_token(token: str, proxy_endpoint: str) -> tuple[str, str, str]:
    """ECR's base64 ``AWS:<password>`` token and ``https://<host>`` endpoint as
    (host, username, password). Raises ``CloudCallFailed`` for a token of another shape."""
    from infra.images.auth import ecr_credentials

    try:
        username, password = ecr_credentials(token)
    except ValueError as exc:
        raise CloudCallFailed(TARGET, "read the ECR token", str(exc)) from exc
    host = re.sub(r"^https?://", "", proxy_endpoint).rstrip("/")
    return host, username, password
