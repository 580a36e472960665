"""Logging in to a registry: anonymous, Basic, or the distribution spec's Bearer token flow.

A registry answers 401 with ``WWW-Authenticate``: ``Basic realm=...`` (htpasswd, ECR) means send
the username and password on every request; ``Bearer realm=...,service=...,scope=...`` (Docker
Hub, Artifact Registry, ACR, GHCR) means ask the realm for a token, with the username and password
as Basic credentials, and send that token. Every cloud fits the (username, password) pair:

- ECR: ``("AWS", password)`` decoded from ``ecr.get_authorization_token`` (:func:`ecr_credentials`);
- Artifact Registry: ``("oauth2accesstoken", <OAuth access token>)`` (:func:`gcp_credentials`);
- ACR: ``("00000000-0000-0000-0000-000000000000", <ACR refresh token>)``, the refresh token being
  an Entra ID (AAD) access token exchanged at the registry (:func:`acr_refresh_token`).

The tokens are obtained by each cloud's package (``infra/aws`` etc.); no cloud SDK is imported here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from infra.errors import ImagePushFailed
from infra.images.errors import describe_error_body

if TYPE_CHECKING:
    from modelyard.settings import Settings

Auth = tuple[str, str]  # (username, password)
ECR_USERNAME = "AWS"
GCP_USERNAME = "oauth2accesstoken"
ACR_USERNAME = "00000000-0000-0000-0000-000000000000"
CREDENTIALS_HINT = (
    "set MODELYARD_IMAGES__USERNAME and MODELYARD_IMAGES__PASSWORD, or check the cloud login "
    "that provides them"
)

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*,?')
_SCHEME = re.compile(rf"[\s,]*({_TOKEN})(?=\s|,|$)")


# --- credentials, from tokens obtained elsewhere


def ecr_credentials(authorization_token: str) -> Auth:
    """ECR's ``authorizationData[].authorizationToken`` is base64 of ``AWS:<password>``.

    Raises ``ValueError`` when it is not.
    """
    try:
        decoded = base64.b64decode(authorization_token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("the ECR authorization token is not base64 of USER:PASSWORD") from exc
    username, sep, password = decoded.partition(":")
    if not sep or not username or not password:
        raise ValueError("the ECR authorization token is not base64 of USER:PASSWORD")
    return username, password


def gcp_credentials(access_token: str) -> Auth:
    """Artifact Registry takes an OAuth access token as the password of ``oauth2accesstoken``."""
    return GCP_USERNAME, _non_empty(access_token, "GCP access token")


def acr_credentials(refresh_token: str) -> Auth:
    """ACR takes its own refresh token (see :func:`acr_refresh_token`) as the password of the
    all-zero user."""
    return ACR_USERNAME, _non_empty(refresh_token, "ACR refresh token")


def acr_refresh_token(
    registry_host: str,
    aad_access_token: str,
    *,
    tenant: str | None = None,
    client: httpx.Client | None = None,
) -> str:
    """Exchange an Entra ID access token (scope ``https://management.azure.com/.default`` or
    ACR's own) for an ACR refresh token at ``https://<registry>/oauth2/exchange``.

    Raises ``ImagePushFailed`` with the registry's answer when it refuses.
    """
    form = {
        "grant_type": "access_token",
        "service": registry_host,
        "access_token": aad_access_token,
    }
    if tenant:
        form["tenant"] = tenant
    url = f"https://{registry_host}/oauth2/exchange"
    http = client or httpx.Client(timeout=30)
    try:
        response = http.post(url, data=form)
    except httpx.HTTPError as exc:
        raise ImagePushFailed(f"cannot reach ACR {registry_host} at {url}: {exc}") from exc
    finally:
        if client is None:
            http.close()
    token = _json_field(response, "refresh_token")
    if response.status_code != 200 or not token:
        raise ImagePushFailed(
            f"ACR {registry_host} refused the Entra ID token at {url} (HTTP "
            f"{response.status_code}): {describe_error_body(response.content)}",
            hint="the identity needs the AcrPush role on the registry",
        )
    return token


def settings_credentials(settings: Settings) -> Auth | None:
    """``MODELYARD_IMAGES__USERNAME``/``__PASSWORD`` when both are set, else anonymous."""
    images = settings.images
    return (images.username, images.password) if images.username and images.password else None


def basic_authorization(auth: Auth) -> str:
    """The ``Authorization`` header value for Basic credentials."""
    username, password = auth
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _non_empty(value: str, what: str) -> str:
    if not value or not value.strip():
        raise ValueError(f"the {what} is empty")
    return value.strip()


# --- challenges


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: its scheme (lowercase) and parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """``WWW-Authenticate`` header values -> challenges, in order.

    ``Bearer realm="https://a/token",service="reg",scope="repository:x:pull,push"`` holds one;
    a header may hold several (``Bearer ..., Basic realm="x"``); quoted values may hold commas.
    """
    challenges: list[Challenge] = []
    for value in values:
        position = 0
        while True:
            scheme = _SCHEME.match(value, position)
            if scheme is None:
                break
            position = scheme.end()
            params: dict[str, str] = {}
            while (param := _PARAM.match(value, position)) is not None:
                params[param.group(1).lower()] = _unquote(param.group(2))
                position = param.end()
            challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def repository_scope(repository: str, actions: Sequence[str]) -> str:
    """``repository:<name>:pull,push``: what a token is asked to allow."""
    return f"repository:{repository}:{','.join(actions)}"


def request_token(
    http: httpx.Client,
    challenge: Challenge,
    scopes: Sequence[str],
    auth: Auth | None,
    *,
    registry: str,
) -> str:
    """Ask the challenge's realm for a token covering ``scopes`` (with ``auth`` as Basic
    credentials when given); returns the token.

    Raises ``ImagePushFailed`` naming the registry and the realm when it refuses.
    """
    realm = challenge.realm
    if not realm or not realm.startswith(("https://", "http://")):
        raise ImagePushFailed(f"registry {registry} sent a Bearer challenge with no usable realm")
    params = httpx.QueryParams(
        [("service", challenge.params["service"])] if challenge.params.get("service") else []
    )
    for scope in dict.fromkeys(s for s in scopes if s):
        params = params.add("scope", scope)
    headers = {"Authorization": basic_authorization(auth)} if auth else {}
    try:
        response = http.get(realm, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise ImagePushFailed(
            f"registry {registry}: token server {realm} unreachable: {exc}"
        ) from exc
    token = _json_field(response, "token") or _json_field(response, "access_token")
    if response.status_code != 200 or not token:
        who = f"user {auth[0]!r}" if auth else "anonymous access"
        raise ImagePushFailed(
            f"registry {registry}: token server {realm} refused {who} (HTTP "
            f"{response.status_code}): {describe_error_body(response.content) or 'no token'}",
            hint=CREDENTIALS_HINT,
        )
    return token


def _json_field(response: httpx.Response, key: str) -> str | None:
    try:
        value = response.json().get(key)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None
