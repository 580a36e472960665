"""The distribution API client on the edges a local registry never shows: relative and foreign
upload locations, a registry that stores another digest, a token expiring mid-upload, an
unreachable host, transient failures tried again. The ordinary paths run against a real registry
in test_image_push."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from infra.errors import ImagePushFailed
from infra.images.errors import RegistryUnavailable
from infra.images.layout import read_layout
from infra.images.push import RegistrySession, manifest_digest, push_layout
from infra.images.reference import parse_reference
from infra.images.retry import RetryPolicy
from tests.fakes.oci_registry import SampleImage, write_oci_layout

Handler = Callable[[httpx.Request], httpx.Response]
NO_WAIT = RetryPolicy(attempts=3, first_delay_s=0.0, max_delay_s=0.0)


class ScriptedRegistry:
    """Just enough of a registry: no blob is present, uploads land where Location says, and
    ``tweak`` may answer a request differently."""

    def __init__(self, upload_location: str = "/v2/p/blobs/uploads/u1?_state=abc") -> None:
        self.upload_location = upload_location
        self.calls: list[tuple[str, str, bytes]] = []
        self.authorization: list[tuple[str, str | None]] = []  # (host, Authorization)
        self.stored: dict[str, bytes] = {}
        self.tweak: Callable[[httpx.Request], httpx.Response | None] = lambda request: None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.calls.append((request.method, str(request.url), body))
        self.authorization.append((request.url.host, request.headers.get("Authorization")))
        if (tweaked := self.tweak(request)) is not None:
            return tweaked
        path = request.url.path
        if request.method == "GET" and path == "/v2/":
            return httpx.Response(200)
        if request.method == "HEAD":
            present = "/blobs/" in path and path.rsplit("/", 1)[-1] in self.stored
            return httpx.Response(200 if present else 404)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": self.upload_location})
        if request.method == "PUT" and "digest" in request.url.params:
            digest = request.url.params["digest"]
            self.stored[digest] = body
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        if request.method == "PUT" and "/manifests/" in path:
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        return httpx.Response(500)


def registry_error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    """An answer in the distribution API's error format."""
    body = {"errors": [{"code": code, "message": message}]}
    return httpx.Response(status, json=body, headers=headers)


def push(
    tmp_path: Path,
    registry: Handler,
    reference: str = "reg.io/p:v1",
    auth: tuple[str, str] | None = None,
    retry: RetryPolicy = NO_WAIT,
) -> SampleImage:
    image = write_oci_layout(tmp_path / "layout")
    with httpx.Client(transport=httpx.MockTransport(registry)) as http:
        push_layout(tmp_path / "layout", reference, client=http, auth=auth, retry=retry)
    return image


def test_https_unless_loopback_or_insecure() -> None:
    def base(text: str, insecure: bool = False) -> str:
        return RegistrySession(parse_reference(text), insecure=insecure).base

    assert base("reg.io/p:v1") == "https://reg.io"
    assert base("reg.io/p:v1", insecure=True) == "http://reg.io"
    assert base("127.0.0.1:5000/p:v1") == "http://127.0.0.1:5000"
    assert base("localhost:5000/p:v1") == "http://localhost:5000"
    assert base("docker.io/me/p:v1") == "https://registry-1.docker.io"


def test_relative_location_keeps_its_state_and_gets_the_digest(tmp_path: Path) -> None:
    registry = ScriptedRegistry()
    image = push(tmp_path, registry)
    puts = [url for method, url, _ in registry.calls if method == "PUT" and "uploads" in url]
    assert len(puts) == len(image.blobs)
    for url in puts:
        request_url = httpx.URL(url)
        assert request_url.host == "reg.io" and request_url.scheme == "https"
        assert request_url.params["_state"] == "abc"
        assert request_url.params["digest"] in image.blobs
    assert registry.stored == image.blobs


def test_an_absolute_upload_location_on_another_host_is_followed(tmp_path: Path) -> None:
    registry = ScriptedRegistry(upload_location="https://uploads.example/session/9?sig=s")
    registry.tweak = lambda request: (
        httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="reg"'})
        if request.url.host == "reg.io" and "Authorization" not in request.headers
        else None
    )
    image = push(tmp_path, registry, auth=("u", "p"))
    puts = [httpx.URL(url) for method, url, _ in registry.calls if method == "PUT"][:-1]
    assert {u.host for u in puts} == {"uploads.example"}
    assert all(u.params["sig"] == "s" for u in puts)
    assert registry.stored == image.blobs
    # The credentials go to the registry only, never to the storage host.
    sent = {(host, authorization is not None) for host, authorization in registry.authorization}
    assert sent == {("reg.io", False), ("reg.io", True), ("uploads.example", False)}


def test_a_registry_that_stores_another_manifest_digest_is_an_error(tmp_path: Path) -> None:
    registry = ScriptedRegistry()
    wrong = "sha256:" + "0" * 64

    def other_digest(request: httpx.Request) -> httpx.Response | None:
        if request.method == "PUT" and "/manifests/" in request.url.path:
            return httpx.Response(201, headers={"Docker-Content-Digest": wrong})
        return None

    registry.tweak = other_digest
    with pytest.raises(ImagePushFailed, match=f"stored manifest 'v1' as {wrong}"):
        push(tmp_path, registry)


def test_an_expired_token_mid_upload_logs_in_again_and_resends_the_whole_body(
    tmp_path: Path,
) -> None:
    registry = ScriptedRegistry()
    state = {"refused": False, "tokens": 0}

    def expire_once(request: httpx.Request) -> httpx.Response | None:
        if request.url.host == "auth.reg.io":
            state["tokens"] += 1
            return httpx.Response(200, json={"token": f"t{state['tokens']}"})
        if request.method == "PUT" and "uploads" in request.url.path and not state["refused"]:
            state["refused"] = True
            challenge = 'Bearer realm="https://auth.reg.io/token",service="reg.io"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return None

    registry.tweak = expire_once
    image = push(tmp_path, registry)
    assert registry.stored == image.blobs  # every blob whole, the refused one re-sent
    refused_then_sent = [
        (url, body) for method, url, body in registry.calls if method == "PUT" and "uploads" in url
    ]
    assert refused_then_sent[0] == refused_then_sent[1]
    assert state["tokens"] == 1


def test_registry_errors_carry_code_url_and_a_hint(tmp_path: Path) -> None:
    registry = ScriptedRegistry()
    registry.tweak = lambda request: (
        registry_error(404, "NAME_UNKNOWN", "repository name not known")
        if request.method == "POST"
        else None
    )
    with pytest.raises(ImagePushFailed) as caught:
        push(tmp_path, registry)
    message = str(caught.value)
    assert "registry reg.io" in message
    assert "POST https://reg.io/v2/p/blobs/uploads/ answered HTTP 404" in message
    assert "NAME_UNKNOWN: repository name not known" in message
    assert "create the repository first" in message


def test_manifest_digest_falls_back_to_hashing_the_manifest() -> None:
    body = b'{"schemaVersion": 2}'

    def no_header(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(200)
        return httpx.Response(200, content=body)

    with httpx.Client(transport=httpx.MockTransport(no_header)) as http:
        found = manifest_digest("reg.io/p:v1", client=http)
    assert found == "sha256:" + hashlib.sha256(body).hexdigest()


def test_an_unreachable_registry_says_where_and_how(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(RegistryUnavailable) as caught:
        push(tmp_path, refuse)
    assert "GET https://reg.io/v2/" in str(caught.value)
    assert "ConnectError: connection refused" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value)
    assert "MODELYARD_IMAGES__INSECURE" in str(caught.value)


def test_a_reference_without_tag_cannot_be_pushed(tmp_path: Path) -> None:
    write_oci_layout(tmp_path)
    with pytest.raises(ValueError, match="no tag"):
        push_layout(tmp_path, "reg.io/p")


def test_a_pinned_reference_must_match_the_layout(tmp_path: Path) -> None:
    write_oci_layout(tmp_path)
    with pytest.raises(ImagePushFailed, match="pins sha256:0000"):
        push_layout(tmp_path, "reg.io/p@sha256:" + "0" * 64)


def calls_of(registry: ScriptedRegistry, method: str, part: str) -> list[str]:
    return [url for m, url, _ in registry.calls if m == method and part in url]


def test_a_busy_registry_is_waited_for_as_its_retry_after_asks(tmp_path: Path) -> None:
    registry = ScriptedRegistry()
    busy = {"left": 2}

    def busy_twice(request: httpx.Request) -> httpx.Response | None:
        if request.method == "PUT" and "/manifests/" in request.url.path and busy["left"]:
            busy["left"] -= 1
            return registry_error(429, "TOOMANYREQUESTS", "slow down", **{"Retry-After": "3"})
        return None

    registry.tweak = busy_twice
    image = write_oci_layout(tmp_path / "layout")
    manifest = read_layout(tmp_path / "layout").select("v1")
    waits: list[float] = []
    policy = RetryPolicy(attempts=4, first_delay_s=0.5, max_delay_s=10.0)
    with httpx.Client(transport=httpx.MockTransport(registry)) as http:
        session = RegistrySession(
            parse_reference("reg.io/p:v1"), client=http, retry=policy, sleep=waits.append
        )
        assert session.put_manifest(manifest, "v1") == image.manifest_digest
    assert waits == [3.0, 3.0]  # Retry-After beat the 0.5 s and 1 s back-off
    assert len(calls_of(registry, "PUT", "/manifests/")) == 3


def test_a_lost_answer_to_a_blob_put_does_not_upload_it_twice(tmp_path: Path) -> None:
    registry = ScriptedRegistry()
    lost = {"once": True}

    def drop_the_answer(request: httpx.Request) -> httpx.Response:
        answer = registry(request)
        if request.method == "PUT" and "digest" in request.url.params and lost["once"]:
            lost["once"] = False  # the blob landed; the connection broke before its answer
            raise httpx.ReadError("connection reset by peer", request=request)
        return answer

    image = push(tmp_path, drop_the_answer)
    assert registry.stored == image.blobs
    assert len(calls_of(registry, "PUT", "digest=")) == len(image.blobs)
    assert len(calls_of(registry, "POST", "uploads")) == len(image.blobs)


def test_a_failed_chunk_starts_the_blob_over_in_a_fresh_session(tmp_path: Path) -> None:
    registry = ScriptedRegistry()
    sessions = iter(range(1, 100))
    patches: list[tuple[str, str, int]] = []  # (session, Content-Range, status answered)

    def fail_one_later_chunk(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST":
            location = f"/v2/p/blobs/uploads/s{next(sessions)}"
            return httpx.Response(202, headers={"Location": location})
        if request.method != "PATCH":
            return None
        session = request.url.path.rsplit("/", 1)[-1]
        content_range = request.headers["Content-Range"]
        fail = not content_range.startswith("0-") and not any(s == 502 for *_, s in patches)
        patches.append((session, content_range, 502 if fail else 202))
        if fail:
            return httpx.Response(502, text="bad gateway")
        return httpx.Response(202, headers={"Location": request.url.path})

    registry.tweak = fail_one_later_chunk
    image = write_oci_layout(tmp_path / "layout", extra_layer=random.Random(3).randbytes(100))
    with httpx.Client(transport=httpx.MockTransport(registry)) as http:
        push_layout(tmp_path / "layout", "reg.io/p:v1", client=http, retry=NO_WAIT, chunk_size=16)
    failed = [(session, rng) for session, rng, status in patches if status == 502]
    assert len(failed) == 1
    failed_session = failed[0][0]
    after = patches[patches.index((*failed[0], 502)) + 1 :]
    # The broken session is abandoned; the blob goes up again from byte 0 in a new one.
    assert all(session != failed_session for session, _, _ in after)
    assert after[0][1].startswith("0-")
    # Every blob was finished (this fake does not reassemble chunks: test_image_push does).
    assert set(registry.stored) == set(image.blobs)


def test_a_refusal_is_not_tried_again(tmp_path: Path) -> None:
    registry = ScriptedRegistry()
    registry.tweak = lambda request: (
        registry_error(400, "MANIFEST_INVALID", "bad")
        if request.method == "PUT" and "/manifests/" in request.url.path
        else None
    )
    with pytest.raises(ImagePushFailed) as caught:
        push(tmp_path, registry)
    assert not isinstance(caught.value, RegistryUnavailable)
    assert "MANIFEST_INVALID: bad" in str(caught.value) and "gave up" not in str(caught.value)
    assert len(calls_of(registry, "PUT", "/manifests/")) == 1


def test_a_registry_down_for_every_try_gives_up_with_its_last_words(tmp_path: Path) -> None:
    registry = ScriptedRegistry()
    registry.tweak = lambda request: (
        registry_error(503, "UNAVAILABLE", "maintenance") if request.url.path == "/v2/" else None
    )
    with pytest.raises(RegistryUnavailable) as caught:
        push(tmp_path, registry)
    message = str(caught.value)
    assert "answered HTTP 503: UNAVAILABLE: maintenance (gave up after 3 attempts)" in message
    assert "MODELYARD_IMAGES__PUSH_ATTEMPTS" in message
    assert len(calls_of(registry, "GET", "/v2/")) == 3
    assert registry.stored == {}


def test_one_attempt_never_waits() -> None:
    calls: list[str] = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return registry_error(503, "UNAVAILABLE", "maintenance")

    waits: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(down)) as http:
        session = RegistrySession(
            parse_reference("reg.io/p:v1"),
            client=http,
            retry=RetryPolicy(attempts=1),
            sleep=waits.append,
        )
        with pytest.raises(RegistryUnavailable) as caught:
            session.check_api()
    assert calls == ["GET"] and waits == []
    assert "gave up" not in str(caught.value)
