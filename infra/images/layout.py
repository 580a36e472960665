"""OCI image layouts on disk: ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>``.

:func:`read_layout` reads the manifests ``index.json`` names (image manifests or image indexes,
OCI or Docker media types), checks every blob they reference is there with the right size and,
by default, the right digest, and keeps each manifest's exact bytes: a registry addresses a
manifest by the digest of those bytes, so they are pushed as read, never re-serialised.
:class:`LayoutWriter` writes one (used to convert ``docker save`` archives).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from infra.images.errors import ImageLayoutError
from infra.images.reference import DIGEST

OCI_LAYOUT_FILE = "oci-layout"
OCI_LAYOUT_VERSION = "1.0.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST, *INDEX_TYPES)
REF_NAME = "org.opencontainers.image.ref.name"
MANIFEST_MAX_BYTES = 4 * 1024 * 1024  # registries refuse bigger ones (distribution: 4 MiB)
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Descriptor:
    """What points at a blob or manifest: its media type, digest and size."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data


@dataclass(frozen=True)
class Manifest:
    """An image manifest (a config and layers) or an image index (child manifests), with the
    exact bytes it is stored and pushed as."""

    descriptor: Descriptor
    raw: bytes
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    children: tuple[Manifest, ...] = ()

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def blobs(self) -> list[Descriptor]:
        """Every blob (not manifest) this manifest needs, each once, configs before layers."""
        seen: dict[str, Descriptor] = {}
        for child in self.children:
            for blob in child.blobs():
                seen.setdefault(blob.digest, blob)
        own = [self.config] if self.config is not None else []
        for blob in (*own, *self.layers):
            seen.setdefault(blob.digest, blob)
        return list(seen.values())


@dataclass(frozen=True)
class OciLayout:
    """A layout directory and the manifests its ``index.json`` lists."""

    root: Path
    manifests: tuple[Manifest, ...]

    def blob_path(self, digest: str) -> Path:
        return blob_path(self.root, digest)

    def select(self, tag: str | None = None) -> Manifest:
        """The one manifest to push: the only one, else the one whose ref-name annotation is
        ``tag``. Raises ``ImageLayoutError`` listing the names when that is not one manifest."""
        if len(self.manifests) == 1:
            return self.manifests[0]
        matching = [m for m in self.manifests if tag and _ref_name_matches(m, tag)]
        if len(matching) == 1:
            return matching[0]
        names = ", ".join(m.descriptor.annotations.get(REF_NAME, m.digest) for m in self.manifests)
        raise ImageLayoutError(
            self.root,
            f"index.json lists {len(self.manifests)} images ({names or 'none'}) and "
            f"{'none' if not matching else 'several'} is named {tag!r}",
        )


def _ref_name_matches(manifest: Manifest, tag: str) -> bool:
    name = manifest.descriptor.annotations.get(REF_NAME, "")
    return name == tag or name.endswith(f":{tag}")


# --- reading


def read_layout(root: Path, *, verify: bool = True) -> OciLayout:
    """Read the layout at ``root``; with ``verify`` every blob's digest is checked by reading it
    (streamed), else only that it exists with its size.

    Raises ``ImageLayoutError`` naming the missing file, bad JSON, wrong size or wrong digest.
    """
    root = Path(root)
    marker = _read_json(root, root / OCI_LAYOUT_FILE)
    if not isinstance(marker, dict) or "imageLayoutVersion" not in marker:
        raise ImageLayoutError(root, f"{OCI_LAYOUT_FILE} has no imageLayoutVersion")
    index = _read_json(root, root / "index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ImageLayoutError(root, "index.json lists no manifests")
    manifests = tuple(
        read_manifest(root, parse_descriptor(root, entry, "index.json"), verify=verify)
        for entry in entries
    )
    return OciLayout(root=root, manifests=manifests)


def read_manifest(root: Path, descriptor: Descriptor, *, verify: bool = True) -> Manifest:
    """The manifest ``descriptor`` points at, its blobs (or children) checked."""
    where = f"manifest {descriptor.digest}"
    if descriptor.size > MANIFEST_MAX_BYTES:
        raise ImageLayoutError(root, f"{where} is {descriptor.size} bytes (at most 4 MiB)")
    raw = _read_blob_bytes(root, descriptor)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ImageLayoutError(root, f"{where} is not JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("schemaVersion") != 2:
        raise ImageLayoutError(root, f"{where} is not a schemaVersion 2 manifest")
    media_type = _manifest_media_type(root, descriptor, body)
    descriptor = Descriptor(media_type, descriptor.digest, descriptor.size, descriptor.annotations)
    if media_type in INDEX_TYPES:
        children = tuple(
            read_manifest(root, parse_descriptor(root, entry, where), verify=verify)
            for entry in _list_field(root, body, "manifests", where)
        )
        return Manifest(descriptor, raw, children=children)
    if not isinstance(body.get("config"), dict):
        raise ImageLayoutError(root, f"{where} has no config descriptor")
    config = parse_descriptor(root, body["config"], where)
    layers = tuple(
        parse_descriptor(root, entry, where) for entry in _list_field(root, body, "layers", where)
    )
    for blob in (config, *layers):
        check_blob(root, blob, verify=verify)
    return Manifest(descriptor, raw, config=config, layers=layers)


def _manifest_media_type(root: Path, descriptor: Descriptor, body: dict[str, Any]) -> str:
    """The manifest's own ``mediaType`` (OCI makes it optional), else its descriptor's; either
    way one a registry stores as a manifest."""
    declared = body.get("mediaType") or descriptor.media_type
    if declared not in MANIFEST_TYPES:
        raise ImageLayoutError(
            root,
            f"manifest {descriptor.digest} has media type {declared!r}, not one of "
            + ", ".join(MANIFEST_TYPES),
        )
    return str(declared)


def parse_descriptor(root: Path, entry: object, where: str) -> Descriptor:
    """A descriptor from its JSON, checked: media type, ``alg:hex`` digest, size >= 0."""
    if not isinstance(entry, dict):
        raise ImageLayoutError(root, f"{where} holds a descriptor that is not an object")
    media_type, digest, size = entry.get("mediaType"), entry.get("digest"), entry.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ImageLayoutError(root, f"{where} holds a descriptor with no mediaType")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ImageLayoutError(root, f"{where} holds a descriptor with bad digest {digest!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ImageLayoutError(root, f"{where}: {digest} has bad size {size!r}")
    annotations = entry.get("annotations") or {}
    return Descriptor(media_type, digest, size, {str(k): str(v) for k, v in annotations.items()})


def check_blob(root: Path, blob: Descriptor, *, verify: bool = True) -> None:
    """The blob's file exists with its size and (``verify``) its digest.

    Raises ``ImageLayoutError`` naming the file.
    """
    path = blob_path(root, blob.digest)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageLayoutError(
            root, f"blob {blob.digest} ({blob.media_type}) is missing: {exc}"
        ) from exc
    if size != blob.size:
        raise ImageLayoutError(
            root, f"blob {path.name} is {size} bytes but its descriptor says {blob.size}"
        )
    if verify and file_digest(path, blob.digest.split(":")[0]) != blob.digest:
        raise ImageLayoutError(root, f"blob {path} does not hash to {blob.digest}")


def blob_path(root: Path, digest: str) -> Path:
    """``root/blobs/<alg>/<hex>``, for a digest already checked against the grammar (so no path
    can escape ``root``)."""
    if not DIGEST.fullmatch(digest):
        raise ImageLayoutError(root, f"bad digest {digest!r}")
    algorithm, hex_digest = digest.split(":", 1)
    return Path(root) / "blobs" / algorithm / hex_digest


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """``alg:hex`` of a file, read in chunks (never whole into memory)."""
    with path.open("rb") as handle:
        return f"{algorithm}:{hashlib.file_digest(handle, algorithm).hexdigest()}"


def bytes_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def iter_file(path: Path, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
    """``length`` bytes of ``path`` from ``offset`` (to the end when None), in 1 MiB chunks."""
    with path.open("rb") as handle:
        handle.seek(offset)
        left = length
        while left is None or left > 0:
            chunk = handle.read(READ_CHUNK if left is None else min(READ_CHUNK, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


def _read_blob_bytes(root: Path, descriptor: Descriptor) -> bytes:
    path = blob_path(root, descriptor.digest)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImageLayoutError(
            root, f"manifest blob {descriptor.digest} is missing: {exc}"
        ) from exc
    if len(raw) != descriptor.size or bytes_digest(raw) != descriptor.digest:
        raise ImageLayoutError(
            root, f"manifest blob {path} does not match its descriptor's size or digest"
        )
    return raw


def _read_json(root: Path, path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise ImageLayoutError(root, f"{path.name} is missing or unreadable: {exc}") from exc
    except ValueError as exc:
        raise ImageLayoutError(root, f"{path.name} is not JSON: {exc}") from exc


def _list_field(root: Path, body: dict[str, Any], key: str, where: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise ImageLayoutError(root, f"{where} has no {key} list")
    return value


# --- writing


class LayoutWriter:
    """Writes an OCI image layout: blobs by content, then ``index.json`` naming the images."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        marker = json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION})
        (self.root / OCI_LAYOUT_FILE).write_text(marker)

    def add_bytes(self, data: bytes, media_type: str) -> Descriptor:
        """Store ``data`` as a blob; returns its descriptor."""
        return self.add_stream([data], media_type)

    def add_stream(self, chunks: Iterable[bytes], media_type: str) -> Descriptor:
        """Store a blob written chunk by chunk, hashed on the way (never whole in memory)."""
        digest = hashlib.sha256()
        size = 0
        handle, temporary = tempfile.mkstemp(dir=self.blobs, prefix=".partial-")
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            os.replace(temporary, self.blobs / digest.hexdigest())
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return Descriptor(media_type, f"sha256:{digest.hexdigest()}", size)

    def add_file_object(self, source: BinaryIO, media_type: str) -> Descriptor:
        return self.add_stream(iter(lambda: source.read(READ_CHUNK), b""), media_type)

    def write_index(self, manifests: Iterable[Descriptor]) -> Path:
        """``index.json`` listing ``manifests`` (with their ref-name annotations)."""
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [m.to_json() for m in manifests],
        }
        (self.root / "index.json").write_text(json.dumps(index, indent=2))
        return self.root
