"""Pushing images to a real OCI registry (docker-registry, CNCF distribution) on loopback:
anonymous, behind htpasswd Basic auth, and behind the Bearer token flow; then reading back what
the registry holds, byte for byte."""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from infra.errors import ImagePushFailed, NoContainerEngine
from infra.images.archive import layout_from_docker_archive
from infra.images.build import build_image_layout, ensure_image
from infra.images.errors import ImageLayoutError, RegistryUnavailable
from infra.images.layout import MANIFEST_TYPES, blob_path, read_layout
from infra.images.push import RegistrySession, manifest_digest, push_layout
from infra.images.reference import image_reference, parse_reference
from infra.images.retry import RetryPolicy
from modelyard.settings import ImageSettings, Settings
from serving.bento.containerize import Engine, detect_engine
from tests.fakes.oci_registry import (
    oci_registry,
    oci_registry_with_token_auth,
    write_docker_archive,
    write_oci_layout,
)

ACCEPT = {"Accept": ", ".join(MANIFEST_TYPES)}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One anonymous registry for the module; each test pushes to its own repository."""
    with oci_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


class Recorder:
    """An httpx client whose requests are counted (method, path kind)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.client = httpx.Client(event_hooks={"request": [self.requests.append]})

    def kinds(self) -> Counter[tuple[str, str]]:
        def kind(request: httpx.Request) -> str:
            path = request.url.path
            if "/blobs/uploads/" in path:
                return "upload"
            return "blob" if "/blobs/" in path else "manifest" if "/manifests/" in path else path

        return Counter((r.method, kind(r)) for r in self.requests)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_push_then_read_every_byte_back(registry: str, tmp_path: Path) -> None:
    image = write_oci_layout(tmp_path, {"app/model.pkl": b"\x00weights" * 50}, tag="v1")
    reference = f"{registry}/modelyard-readback:v1"
    digest = push_layout(tmp_path, reference)
    assert digest == image.manifest_digest
    got = httpx.get(f"http://{registry}/v2/modelyard-readback/manifests/v1", headers=ACCEPT)
    assert got.status_code == 200
    assert got.content == image.manifest  # the exact bytes, not re-serialised
    assert got.headers["Docker-Content-Digest"] == image.manifest_digest
    assert got.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
    for blob_digest, data in image.blobs.items():
        blob = httpx.get(
            f"http://{registry}/v2/modelyard-readback/blobs/{blob_digest}", follow_redirects=True
        )
        assert blob.status_code == 200
        assert blob.content == data and sha256(blob.content) == blob_digest


def test_a_second_push_uploads_no_blob(registry: str, tmp_path: Path) -> None:
    image = write_oci_layout(tmp_path, {"a": b"a"}, extra_layer=b"b" * 100)
    reference = f"{registry}/modelyard-again:v1"
    first, second = Recorder(), Recorder()
    push_layout(tmp_path, reference, client=first.client)
    push_layout(tmp_path, reference, client=second.client)
    blobs = len(image.blobs)
    assert first.kinds()[("POST", "upload")] == blobs
    assert first.kinds()[("PUT", "upload")] == blobs
    assert second.kinds() == Counter(
        {("GET", "/v2/"): 1, ("HEAD", "blob"): blobs, ("PUT", "manifest"): 1}
    )
    # The same blobs under another tag of another repository: uploaded there (no mount).
    third = Recorder()
    push_layout(tmp_path, f"{registry}/modelyard-other:v9", client=third.client)
    assert third.kinds()[("POST", "upload")] == blobs


def test_a_blob_over_the_threshold_goes_up_in_chunks(registry: str, tmp_path: Path) -> None:
    noise = random.Random(7).randbytes(200 * 1024)  # incompressible: the layer stays big
    image = write_oci_layout(tmp_path, {"a": b"small"}, extra_layer=noise)
    chunk = 64 * 1024
    big = [d for d, data in image.blobs.items() if len(data) > chunk]
    assert len(big) == 1
    recorder = Recorder()
    push_layout(
        tmp_path, f"{registry}/modelyard-chunks:v1", client=recorder.client, chunk_size=chunk
    )
    patches = [r for r in recorder.requests if r.method == "PATCH"]
    assert len(patches) == math.ceil(len(image.blobs[big[0]]) / chunk)
    ranges = [r.headers["Content-Range"] for r in patches]
    assert ranges[0] == f"0-{chunk - 1}" and ranges[1] == f"{chunk}-{2 * chunk - 1}"
    assert all(int(r.headers["Content-Length"]) <= chunk for r in patches)
    back = httpx.get(f"http://{registry}/v2/modelyard-chunks/blobs/{big[0]}", follow_redirects=True)
    assert back.content == image.blobs[big[0]]


def test_manifest_digest_of_present_and_absent_tags(registry: str, tmp_path: Path) -> None:
    image = write_oci_layout(tmp_path)
    push_layout(tmp_path, f"{registry}/modelyard-lookup:v1")
    assert manifest_digest(f"{registry}/modelyard-lookup:v1") == image.manifest_digest
    assert manifest_digest(f"{registry}/modelyard-lookup@{image.manifest_digest}") == (
        image.manifest_digest
    )
    assert manifest_digest(f"{registry}/modelyard-lookup:v2") is None
    assert manifest_digest(f"{registry}/modelyard-never-pushed:v1") is None


def test_a_layout_missing_a_blob_fails_before_sending_anything(
    registry: str, tmp_path: Path
) -> None:
    image = write_oci_layout(tmp_path)
    blob_path(tmp_path, image.layer_digests[0]).unlink()
    recorder = Recorder()
    with pytest.raises(ImageLayoutError) as caught:
        push_layout(tmp_path, f"{registry}/modelyard-missing:v1", client=recorder.client)
    assert image.layer_digests[0] in str(caught.value) and "is missing" in str(caught.value)
    assert recorder.requests == []


def test_the_registry_refuses_a_manifest_whose_blobs_it_lacks(
    registry: str, tmp_path: Path
) -> None:
    write_oci_layout(tmp_path)
    [manifest] = read_layout(tmp_path).manifests
    reference = parse_reference(f"{registry}/modelyard-orphan:v1")
    with RegistrySession(reference) as session, pytest.raises(ImagePushFailed) as caught:
        session.put_manifest(manifest, "v1")
    message = str(caught.value)
    assert f"registry {registry}" in message
    assert f"PUT http://{registry}/v2/modelyard-orphan/manifests/v1 answered HTTP 400" in message
    assert "MANIFEST_BLOB_UNKNOWN" in message


def test_a_docker_save_archive_is_pushed_with_its_config_intact(
    registry: str, tmp_path: Path
) -> None:
    archive = tmp_path / "image.tar"
    write_docker_archive(archive, [{"app/a": b"a"}, {"app/b": b"b"}], gzip_layers=(0,))
    layout = layout_from_docker_archive(archive, tmp_path / "layout")
    digest = push_layout(layout, f"{registry}/modelyard-archive:v1")
    got = httpx.get(f"http://{registry}/v2/modelyard-archive/manifests/v1", headers=ACCEPT)
    assert sha256(got.content) == digest
    assert got.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    config_digest = got.json()["config"]["digest"]
    config = httpx.get(
        f"http://{registry}/v2/modelyard-archive/blobs/{config_digest}", follow_redirects=True
    )
    assert config.json()["config"]["Healthcheck"]["Test"][0] == "CMD"


# --- logins


def test_basic_auth(tmp_path: Path) -> None:
    write_oci_layout(tmp_path / "layout")
    with oci_registry(tmp_path, htpasswd=("alice", "s3cret")) as host:
        reference = f"{host}/modelyard-private:v1"
        digest = push_layout(tmp_path / "layout", reference, auth=("alice", "s3cret"))
        assert manifest_digest(reference, ("alice", "s3cret")) == digest

        with pytest.raises(ImagePushFailed) as wrong:
            push_layout(tmp_path / "layout", reference, auth=("alice", "wrong"))
        assert f"registry {host}" in str(wrong.value)
        assert "user 'alice' was refused" in str(wrong.value)
        assert "UNAUTHORIZED" in str(wrong.value)
        assert "MODELYARD_IMAGES__PASSWORD" in str(wrong.value)

        with pytest.raises(ImagePushFailed, match="it needs credentials"):
            manifest_digest(reference)


def test_bearer_token_flow(tmp_path: Path) -> None:
    image = write_oci_layout(tmp_path / "layout")
    with oci_registry_with_token_auth(tmp_path, ("oauth2accesstoken", "ya29.tok")) as (
        host,
        tokens,
    ):
        reference = f"{host}/team/modelyard-tokens:v1"
        assert push_layout(
            tmp_path / "layout", reference, auth=("oauth2accesstoken", "ya29.tok")
        ) == (image.manifest_digest)
        assert tokens.requests[0]["user"] == "oauth2accesstoken"
        assert tokens.requests[0]["service"] == "modelyard-test-registry"
        assert "repository:team/modelyard-tokens:pull,push" in tokens.requests[0]["scopes"]
        assert len(tokens.requests) == 1  # one token served the whole push

        with pytest.raises(ImagePushFailed) as wrong:
            push_layout(tmp_path / "layout", reference, auth=("oauth2accesstoken", "expired"))
        assert f"registry {host}" in str(wrong.value)
        assert f"token server {tokens.url} refused user 'oauth2accesstoken'" in str(wrong.value)


# --- ensure_image


def no_engine() -> Engine:
    return detect_engine(which=lambda name: None)


def must_not_build(settings: Settings, bento_tag: str, out_dir: Path) -> Path:
    raise AssertionError("the image is in the registry: nothing should be built")


def test_ensure_image_reuses_builds_and_pins(registry: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", images=ImageSettings(registry=registry))
    pushed = write_oci_layout(tmp_path / "v1")
    push_layout(tmp_path / "v1", image_reference(settings, "penguins", 1))

    found = ensure_image(settings, "penguins", 1, "penguins:abc", build=must_not_build)
    assert found == f"{registry}/modelyard-penguins@{pushed.manifest_digest}"

    built: list[str] = []

    def build(settings: Settings, bento_tag: str, out_dir: Path) -> Path:
        built.append(bento_tag)
        write_oci_layout(out_dir, {"app/v2": b"two"})
        return out_dir

    image = ensure_image(settings, "penguins", 2, "penguins:def", build=build)
    assert built == ["penguins:def"]
    digest = manifest_digest(f"{registry}/modelyard-penguins:v2")
    assert image == f"{registry}/modelyard-penguins@{digest}"
    assert not list((tmp_path / "home").glob("image-*"))  # the build folder is cleaned up

    with pytest.raises(NoContainerEngine) as caught:
        ensure_image(
            settings,
            "penguins",
            3,
            "penguins:ghi",
            build=partial(build_image_layout, detect=no_engine),
        )
    for part in ("docker", "DOCKER_HOST", "buildah", "--image REF"):
        assert part in str(caught.value)


def test_ensure_image_logs_in_with_the_settings(tmp_path: Path) -> None:
    write_oci_layout(tmp_path / "layout")
    with oci_registry(tmp_path, htpasswd=("ci", "pw")) as host:
        images = ImageSettings(registry=host, username="ci", password="pw")
        settings = Settings(home=tmp_path / "home", images=images)
        push_layout(
            tmp_path / "layout", image_reference(settings, "penguins", 1), auth=("ci", "pw")
        )
        image = ensure_image(settings, "penguins", 1, "penguins:abc", build=must_not_build)
        assert image.startswith(f"{host}/modelyard-penguins@sha256:")


class FlakyNetwork(httpx.BaseTransport):
    """The real registry behind a network that breaks once in each of four ways: a 503 before
    the registry sees an upload's POST, a chunk lost to a timeout, a blob PUT whose answer is
    lost after the blob landed, and a 502 for the manifest PUT."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.broken: Counter[str] = Counter()
        self.forwarded: list[httpx.Request] = []

    def _once(self, fault: str) -> bool:
        self.broken[fault] += 1
        return self.broken[fault] == 1

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        if method == "POST" and self._once("post"):
            return httpx.Response(503, headers={"Retry-After": "0"}, text="overloaded")
        later_chunk = method == "PATCH" and not request.headers["Content-Range"].startswith("0-")
        if later_chunk and self._once("patch"):
            raise httpx.ReadTimeout("timed out sending a chunk", request=request)
        if method == "PUT" and "/manifests/" in path and self._once("manifest"):
            return httpx.Response(502, text="bad gateway")
        self.forwarded.append(request)
        response = self.real.handle_request(request)
        blob_put = method == "PUT" and "digest" in request.url.params
        if blob_put and response.status_code == 201 and self._once("lost"):
            response.read()
            response.close()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response

    def close(self) -> None:
        self.real.close()


def test_a_flaky_network_is_ridden_out_and_every_byte_arrives(
    registry: str, tmp_path: Path
) -> None:
    noise = random.Random(11).randbytes(150 * 1024)  # incompressible: goes up in chunks
    image = write_oci_layout(tmp_path, {"a": b"small"}, extra_layer=noise)
    chunk = 64 * 1024
    network = FlakyNetwork()
    no_wait = RetryPolicy(attempts=3, first_delay_s=0.0, max_delay_s=0.0)
    reference = f"{registry}/modelyard-flaky:v1"
    with httpx.Client(transport=network) as client:
        digest = push_layout(tmp_path, reference, client=client, chunk_size=chunk, retry=no_wait)
    assert digest == image.manifest_digest
    assert all(network.broken[fault] >= 2 for fault in ("post", "patch", "manifest", "lost"))
    # Each blob was finished exactly once: the one whose answer was lost was found by a HEAD.
    finished = Counter(
        r.url.params["digest"] for r in network.forwarded if "digest" in r.url.params
    )
    assert finished == Counter(dict.fromkeys(image.blobs, 1))
    assert manifest_digest(reference) == image.manifest_digest
    for blob_digest, data in image.blobs.items():
        url = f"http://{registry}/v2/modelyard-flaky/blobs/{blob_digest}"
        assert httpx.get(url, follow_redirects=True).content == data


def test_push_attempts_come_from_the_settings(tmp_path: Path) -> None:
    calls: list[str] = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        return httpx.Response(503, text="down for maintenance")

    images = ImageSettings(registry="reg.example", push_attempts=2)
    settings = Settings(home=tmp_path / "home", images=images)
    with (
        httpx.Client(transport=httpx.MockTransport(down)) as client,
        pytest.raises(RegistryUnavailable) as caught,
    ):
        ensure_image(settings, "penguins", 1, "penguins:abc", build=must_not_build, client=client)
    assert calls == ["HEAD /v2/modelyard-penguins/manifests/v1"] * 2  # one wait of 0.5 s
    assert "down for maintenance (gave up after 2 attempts)" in str(caught.value)
