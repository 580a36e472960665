"""A ``docker save`` archive (also ``buildah push IMAGE docker-archive:FILE``) -> an OCI layout.

Every archive flavour has ``manifest.json`` (``[{"Config": ..., "RepoTags": [...], "Layers":
[...]}]``); Docker 25+ adds an OCI ``index.json`` beside it, which is not needed. The config is
kept byte for byte (so Docker's ``Healthcheck`` survives, which an OCI config would drop) and the
manifest is Docker's schema 2. Layers are stored gzip-compressed: uncompressed tars (the classic
format) are compressed here, deterministically (no timestamp), so the same image gives the same
digests again; already-compressed ones (containerd's image store) are copied as they are. Each
layer's uncompressed digest must equal the config's ``rootfs.diff_ids`` entry.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from infra.images.errors import ImageLayoutError
from infra.images.layout import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    READ_CHUNK,
    REF_NAME,
    Descriptor,
    LayoutWriter,
)

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_LEVEL = 6  # gzip's and Docker's default: a fair trade of CPU for upload size


def layout_from_docker_archive(
    archive: Path, out_dir: Path, *, image: str | None = None, ref_name: str = "latest"
) -> Path:
    """Write the image ``image`` (or the archive's only one) as an OCI layout at ``out_dir``,
    its index entry named ``ref_name``; returns ``out_dir``.

    Raises ``ImageLayoutError`` for an unreadable archive, a missing member, several images and
    none named ``image``, or a layer whose content does not match the config's diff_ids.
    """
    try:
        with tarfile.open(archive) as tar:
            entry = _pick_image(
                archive, json.loads(_member(tar, archive, "manifest.json").read()), image
            )
            config_raw = _member(tar, archive, entry["Config"]).read()
            diff_ids = _diff_ids(archive, config_raw)
            layer_names = entry.get("Layers") or []
            if len(layer_names) != len(diff_ids):
                raise ImageLayoutError(
                    archive,
                    f"{len(layer_names)} layers but the config lists {len(diff_ids)} diff_ids",
                )
            writer = LayoutWriter(out_dir)
            config = writer.add_bytes(config_raw, DOCKER_CONFIG)
            layers = [
                _add_layer(writer, archive, _member(tar, archive, name), diff_id)
                for name, diff_id in zip(layer_names, diff_ids, strict=True)
            ]
    except (OSError, tarfile.TarError, zlib.error, ValueError, KeyError, TypeError) as exc:
        # Reading the archive or writing the layout (e.g. a full disk): either way, no image.
        raise ImageLayoutError(archive, f"cannot convert this docker save archive: {exc}") from exc
    manifest = docker_manifest(config, layers)
    stored = writer.add_bytes(manifest, DOCKER_MANIFEST)
    writer.write_index(
        [Descriptor(DOCKER_MANIFEST, stored.digest, stored.size, {REF_NAME: ref_name})]
    )
    return Path(out_dir)


def docker_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """Docker's schema 2 image manifest for ``config`` and ``layers``, as the bytes to store."""
    body = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    return json.dumps(body, indent=3).encode()


def _pick_image(archive: Path, entries: Any, image: str | None) -> dict[str, Any]:
    if not isinstance(entries, list) or not entries:
        raise ImageLayoutError(archive, "manifest.json lists no images")
    if len(entries) == 1:
        return dict(entries[0])
    named = [e for e in entries if image and image in (e.get("RepoTags") or [])]
    if len(named) != 1:
        tags = [tag for e in entries for tag in (e.get("RepoTags") or [])]
        raise ImageLayoutError(
            archive, f"it holds {len(entries)} images ({', '.join(tags)}); none is {image!r}"
        )
    return dict(named[0])


def _member(tar: tarfile.TarFile, archive: Path, name: str) -> IO[bytes]:
    """A member's content (links followed, as ``docker save`` links repeated layers)."""
    try:
        handle = tar.extractfile(name)
    except KeyError as exc:
        raise ImageLayoutError(archive, f"member {name!r} is missing") from exc
    if handle is None:
        raise ImageLayoutError(archive, f"member {name!r} is not a file")
    return handle


def _diff_ids(archive: Path, config_raw: bytes) -> list[str]:
    diff_ids = json.loads(config_raw).get("rootfs", {}).get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ImageLayoutError(archive, "the image config has no rootfs.diff_ids")
    return diff_ids


def _add_layer(writer: LayoutWriter, archive: Path, source: IO[bytes], diff_id: str) -> Descriptor:
    """Store one layer gzip-compressed; its uncompressed content must hash to ``diff_id``."""
    head = source.read(4)
    if head.startswith(ZSTD_MAGIC):
        raise ImageLayoutError(archive, "zstd-compressed layers are not supported; use gzip")
    uncompressed = hashlib.sha256()
    if head.startswith(GZIP_MAGIC):
        stored = writer.add_stream(_copy_gzip(head, source, uncompressed), DOCKER_LAYER_GZIP)
    else:
        stored = writer.add_stream(_compress(head, source, uncompressed), DOCKER_LAYER_GZIP)
    if f"sha256:{uncompressed.hexdigest()}" != diff_id:
        raise ImageLayoutError(
            archive,
            f"a layer's content hashes to sha256:{uncompressed.hexdigest()}, "
            f"not to its diff_id {diff_id}",
        )
    return stored


def _chunks(head: bytes, source: IO[bytes]) -> Iterator[bytes]:
    yield head
    yield from iter(lambda: source.read(READ_CHUNK), b"")


def _compress(head: bytes, source: IO[bytes], uncompressed: Any) -> Iterator[bytes]:
    # wbits 31: a gzip wrapper with mtime 0, so equal content gives an equal digest.
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    for chunk in _chunks(head, source):
        uncompressed.update(chunk)
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


def _copy_gzip(head: bytes, source: IO[bytes], uncompressed: Any) -> Iterator[bytes]:
    """The compressed bytes unchanged, decompressed on the way only to hash the content
    (gzip may hold several members back to back)."""
    decompressor = zlib.decompressobj(31)
    for chunk in _chunks(head, source):
        data = chunk
        while data:
            uncompressed.update(decompressor.decompress(data))
            data = decompressor.unused_data
            if data:
                decompressor = zlib.decompressobj(31)
        yield chunk
