"""Reading and writing OCI image layouts, and turning ``docker save`` archives into them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from infra.images.archive import layout_from_docker_archive
from infra.images.errors import ImageLayoutError
from infra.images.layout import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    Descriptor,
    LayoutWriter,
    blob_path,
    iter_file,
    read_layout,
)
from tests.fakes.oci_registry import write_docker_archive, write_oci_layout


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_reads_manifest_config_and_layers_with_exact_bytes(tmp_path: Path) -> None:
    image = write_oci_layout(tmp_path, {"app/a.txt": b"a"}, tag="v7", extra_layer=b"x" * 1000)
    layout = read_layout(tmp_path)
    [manifest] = layout.manifests
    assert manifest.raw == image.manifest
    assert manifest.digest == image.manifest_digest == sha256(manifest.raw)
    assert manifest.media_type == OCI_MANIFEST
    assert manifest.descriptor.annotations[REF_NAME] == "v7"
    assert manifest.config is not None and manifest.config.digest == sha256(image.config)
    assert [layer.digest for layer in manifest.layers] == image.layer_digests
    assert {b.digest for b in manifest.blobs()} == set(image.blobs)
    assert manifest.blobs()[0] == manifest.config  # configs first
    for blob in manifest.blobs():
        assert layout.blob_path(blob.digest).read_bytes() == image.blobs[blob.digest]
    assert layout.select("anything") is manifest  # the only image


def test_a_layer_is_a_real_gzip_tar(tmp_path: Path) -> None:
    write_oci_layout(tmp_path, {"app/model.txt": b"weights"})
    [manifest] = read_layout(tmp_path).manifests
    path = blob_path(tmp_path, manifest.layers[0].digest)
    with tarfile.open(path, "r:gz") as tar:
        member = tar.extractfile("app/model.txt")
        assert member is not None and member.read() == b"weights"


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("drop-layer", "is missing"),
        ("corrupt-layer", "does not hash to"),
        ("truncate-layer", "bytes but its descriptor says"),
        ("drop-manifest", "manifest blob sha256:"),
        ("drop-oci-layout", "oci-layout is missing"),
        ("bad-index", "index.json is not JSON"),
        ("empty-index", "lists no manifests"),
    ],
)
def test_a_damaged_layout_names_the_problem(tmp_path: Path, damage: str, problem: str) -> None:
    image = write_oci_layout(tmp_path)
    layer = blob_path(tmp_path, image.layer_digests[0])
    if damage == "drop-layer":
        layer.unlink()
    elif damage == "corrupt-layer":
        data = bytearray(layer.read_bytes())
        data[-1] ^= 0xFF
        layer.write_bytes(bytes(data))
    elif damage == "truncate-layer":
        layer.write_bytes(layer.read_bytes()[:-1])
    elif damage == "drop-manifest":
        blob_path(tmp_path, image.manifest_digest).unlink()
    elif damage == "drop-oci-layout":
        (tmp_path / "oci-layout").unlink()
    elif damage == "bad-index":
        (tmp_path / "index.json").write_text("{")
    else:
        (tmp_path / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    with pytest.raises(ImageLayoutError) as caught:
        read_layout(tmp_path)
    assert problem in str(caught.value)
    assert str(tmp_path) in str(caught.value)


def test_without_verify_only_sizes_are_checked(tmp_path: Path) -> None:
    image = write_oci_layout(tmp_path)
    layer = blob_path(tmp_path, image.layer_digests[0])
    data = bytearray(layer.read_bytes())
    data[-1] ^= 0xFF
    layer.write_bytes(bytes(data))
    read_layout(tmp_path, verify=False)  # same size: accepted
    with pytest.raises(ImageLayoutError):
        read_layout(tmp_path, verify=True)


def test_a_digest_cannot_escape_the_layout(tmp_path: Path) -> None:
    with pytest.raises(ImageLayoutError, match="bad digest"):
        blob_path(tmp_path, "sha256:../../etc/passwd")
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:../x", "size": 1}],
    }
    write_oci_layout(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ImageLayoutError, match="bad digest"):
        read_layout(tmp_path)


def test_an_unknown_manifest_media_type_is_refused(tmp_path: Path) -> None:
    image = write_oci_layout(tmp_path)
    index = json.loads((tmp_path / "index.json").read_text())
    index["manifests"][0]["mediaType"] = "application/vnd.example+json"
    (tmp_path / "index.json").write_text(json.dumps(index))
    read_layout(tmp_path)  # the manifest's own mediaType wins
    body = json.loads(image.manifest)
    body["mediaType"] = "application/vnd.example+json"
    writer = LayoutWriter(tmp_path)
    stored = writer.add_bytes(json.dumps(body).encode(), OCI_MANIFEST)
    writer.write_index([stored])
    with pytest.raises(ImageLayoutError, match=r"application/vnd\.example"):
        read_layout(tmp_path)


def test_an_index_of_images_and_selecting_by_tag(tmp_path: Path) -> None:
    first = write_oci_layout(tmp_path / "a", {"a": b"1"})
    second = write_oci_layout(tmp_path / "b", {"b": b"2"})
    root = tmp_path / "both"
    writer = LayoutWriter(root)
    descriptors = []
    for image, tag in ((first, "registry.io/x:v1"), (second, "v2")):
        for data in [*image.blobs.values(), image.manifest]:
            writer.add_bytes(data, "application/octet-stream")
        descriptors.append(
            Descriptor(OCI_MANIFEST, image.manifest_digest, len(image.manifest), {REF_NAME: tag})
        )
    writer.write_index(descriptors)
    layout = read_layout(root)
    assert layout.select("v2").digest == second.manifest_digest
    assert layout.select("v1").digest == first.manifest_digest  # a full reference as ref name
    with pytest.raises(ImageLayoutError, match="none is named 'v9'"):
        layout.select("v9")

    # A multi-platform index: children come with it, their blobs gathered once.
    index_bytes = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [d.to_json() for d in descriptors],
        }
    ).encode()
    stored = writer.add_bytes(index_bytes, OCI_INDEX)
    writer.write_index([stored])
    [index] = read_layout(root).manifests
    assert index.is_index and index.raw == index_bytes
    assert [c.digest for c in index.children] == [first.manifest_digest, second.manifest_digest]
    assert {b.digest for b in index.blobs()} == set(first.blobs) | set(second.blobs)


def test_writer_stores_by_content_and_streams(tmp_path: Path) -> None:
    writer = LayoutWriter(tmp_path)
    chunks = [os.urandom(1000) for _ in range(5)]
    stored = writer.add_stream(iter(chunks), "application/octet-stream")
    data = b"".join(chunks)
    assert stored.digest == sha256(data) and stored.size == len(data)
    assert blob_path(tmp_path, stored.digest).read_bytes() == data
    assert not list((tmp_path / "blobs" / "sha256").glob(".partial-*"))
    assert b"".join(iter_file(blob_path(tmp_path, stored.digest), 1500, 2000)) == data[1500:3500]


# --- docker save archives


def test_docker_archive_becomes_a_pushable_layout(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    layers = [{"app/one.txt": b"one" * 100}, {"app/two.txt": b"two"}]
    config = write_docker_archive(archive, layers, gzip_layers=(1,))
    root = layout_from_docker_archive(archive, tmp_path / "layout", ref_name="v3")
    [manifest] = read_layout(root).manifests  # every digest verified
    assert manifest.media_type == DOCKER_MANIFEST
    assert manifest.descriptor.annotations[REF_NAME] == "v3"
    assert manifest.config is not None and manifest.config.media_type == DOCKER_CONFIG
    stored_config = json.loads(blob_path(root, manifest.config.digest).read_bytes())
    assert stored_config == config  # the Healthcheck survives
    assert [layer.media_type for layer in manifest.layers] == [DOCKER_LAYER_GZIP] * 2
    for layer, diff_id in zip(manifest.layers, config["rootfs"]["diff_ids"], strict=True):
        content = gzip.decompress(blob_path(root, layer.digest).read_bytes())
        assert sha256(content) == diff_id


def test_docker_archive_conversion_is_deterministic(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    write_docker_archive(archive, [{"a": b"a" * 5000}])
    first = read_layout(layout_from_docker_archive(archive, tmp_path / "one")).manifests[0]
    second = read_layout(layout_from_docker_archive(archive, tmp_path / "two")).manifests[0]
    assert first.digest == second.digest


def test_a_layer_that_does_not_match_its_diff_id_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    write_docker_archive(archive, [{"a": b"a"}])
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    members["0/layer.tar"] = members["0/layer.tar"].replace(b"a", b"b", 1)
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ImageLayoutError, match="not to its diff_id"):
        layout_from_docker_archive(broken, tmp_path / "layout")


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    with pytest.raises(ImageLayoutError, match="cannot convert this docker save archive"):
        layout_from_docker_archive(tmp_path / "junk.tar", tmp_path / "layout")
