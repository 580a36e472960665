"""Registry logins: challenge parsing, the clouds' credential shapes, the token flow's requests."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs

import httpx
import pytest

from infra.errors import ImagePushFailed
from infra.images.auth import (
    ACR_USERNAME,
    Challenge,
    acr_credentials,
    acr_refresh_token,
    basic_authorization,
    ecr_credentials,
    gcp_credentials,
    parse_challenges,
    repository_scope,
    request_token,
    settings_credentials,
)
from infra.images.errors import describe_error_body
from modelyard.settings import ImageSettings, Settings


def test_bearer_challenge_with_commas_inside_quotes() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:team/penguins:pull,push"'
    )
    assert parse_challenges([header]) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "registry.example",
                "scope": "repository:team/penguins:pull,push",
            },
        )
    ]


def test_several_challenges_escapes_and_case() -> None:
    values = [
        'BEARER realm="https://a/t", Basic realm="say \\"hi\\""',
        "Basic realm=plain",
    ]
    challenges = parse_challenges(values)
    assert [c.scheme for c in challenges] == ["bearer", "basic", "basic"]
    assert challenges[0].realm == "https://a/t"
    assert challenges[1].realm == 'say "hi"'
    assert challenges[2].realm == "plain"
    assert parse_challenges([""]) == []
    assert parse_challenges(["Negotiate"]) == [Challenge("negotiate", {})]


def test_ecr_token_is_base64_of_user_and_password() -> None:
    token = base64.b64encode(b"AWS:eyJwYXlsb2Fk:with:colons").decode()
    assert ecr_credentials(token) == ("AWS", "eyJwYXlsb2Fk:with:colons")
    with pytest.raises(ValueError, match="base64 of USER:PASSWORD"):
        ecr_credentials("not base64!")
    with pytest.raises(ValueError, match="base64 of USER:PASSWORD"):
        ecr_credentials(base64.b64encode(b"no-colon").decode())


def test_gcp_and_acr_usernames() -> None:
    assert gcp_credentials("ya29.token ") == ("oauth2accesstoken", "ya29.token")
    assert acr_credentials("refresh") == ("00000000-0000-0000-0000-000000000000", "refresh")
    with pytest.raises(ValueError, match="GCP access token is empty"):
        gcp_credentials(" ")
    with pytest.raises(ValueError, match="ACR refresh token is empty"):
        acr_credentials("")


def test_basic_header_and_settings() -> None:
    assert (
        basic_authorization(("alice", "s3:cret"))
        == "Basic " + base64.b64encode(b"alice:s3:cret").decode()
    )
    both = Settings(images=ImageSettings(username="u", password="p"))
    only_user = Settings(images=ImageSettings(username="u"))
    assert settings_credentials(both) == ("u", "p")
    assert settings_credentials(only_user) is None
    assert repository_scope("team/p", ["pull", "push"]) == "repository:team/p:pull,push"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            b'{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry",'
            b'"detail":"sha256:abc"},{"code":"DENIED","message":"no"}]}',
            "MANIFEST_BLOB_UNKNOWN: blob unknown to registry (sha256:abc); DENIED: no",
        ),
        (b'{"details":"incorrect username or password"}', "incorrect username or password"),
        (b'{"error":"invalid_grant"}', "invalid_grant"),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b"", ""),
    ],
)
def test_registry_error_words(body: bytes, words: str) -> None:
    assert describe_error_body(body) == words


def test_token_request_carries_service_scopes_and_basic_credentials() -> None:
    seen: list[httpx.Request] = []

    def token_server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"access_token": "tok"})  # ACR/GCP's key

    challenge = Challenge(
        "bearer", {"realm": "https://auth.example/token", "service": "reg", "scope": "x"}
    )
    with httpx.Client(transport=httpx.MockTransport(token_server)) as http:
        token = request_token(
            http, challenge, ["repository:p:pull,push", "x", "x"], ("u", "pw"), registry="reg.io"
        )
    assert token == "tok"
    [request] = seen
    assert request.url.host == "auth.example"
    assert parse_qs(request.url.query.decode()) == {
        "service": ["reg"],
        "scope": ["repository:p:pull,push", "x"],
    }
    assert request.headers["Authorization"] == basic_authorization(("u", "pw"))


def test_token_refused_names_registry_realm_and_user() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(401, json={"details": "incorrect username or password"})
    )
    challenge = Challenge("bearer", {"realm": "https://auth.example/token"})
    with httpx.Client(transport=transport) as http, pytest.raises(ImagePushFailed) as caught:
        request_token(http, challenge, [], ("alice", "bad"), registry="reg.io")
    message = str(caught.value)
    for part in ("reg.io", "https://auth.example/token", "'alice'", "HTTP 401", "incorrect"):
        assert part in message
    with httpx.Client(transport=transport) as http, pytest.raises(ImagePushFailed, match="realm"):
        request_token(http, Challenge("bearer", {}), [], None, registry="reg.io")


def test_acr_exchange_posts_the_entra_token() -> None:
    seen: list[httpx.Request] = []

    def acr(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"refresh_token": "acr-refresh"})

    with httpx.Client(transport=httpx.MockTransport(acr)) as http:
        token = acr_refresh_token("me.azurecr.io", "aad-token", tenant="t1", client=http)
    assert token == "acr-refresh"
    assert acr_credentials(token) == (ACR_USERNAME, "acr-refresh")
    [request] = seen
    assert str(request.url) == "https://me.azurecr.io/oauth2/exchange"
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["access_token"],
        "service": ["me.azurecr.io"],
        "access_token": ["aad-token"],
        "tenant": ["t1"],
    }


def test_acr_exchange_refused() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED"}]})
    )
    with httpx.Client(transport=transport) as http, pytest.raises(ImagePushFailed) as caught:
        acr_refresh_token("me.azurecr.io", "aad", client=http)
    assert "me.azurecr.io" in str(caught.value) and "UNAUTHORIZED" in str(caught.value)
    assert "AcrPush" in str(caught.value)
