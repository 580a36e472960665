"""Manifests as YAML files in a folder that ``kubectl apply -R -f DIR`` (or a GitOps tool) applies.

Layout: ``00-gateway.yaml`` (the Namespace, the gateway and its RBAC; its name sorts before every
model folder, so ``kubectl`` creates the Namespace before anything in it), then one folder per
model, named by its slug, with one multi-document file per version: ``penguins/v3.yaml`` holds
that version's Deployment, Service and HorizontalPodAutoscaler. Each file is written whole to a
temporary file and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import yaml

from infra.errors import DeployError
from infra.kubernetes.manifests import Manifest, traffic_patch
from infra.kubernetes.names import model_slug

GATEWAY_FILE = "00-gateway.yaml"


def dump_documents(documents: Iterable[Manifest]) -> str:
    """``documents`` as one multi-document YAML text, keys in the order they were built."""
    return yaml.safe_dump_all(list(documents), sort_keys=False, explicit_start=True)


def load_documents(text: str) -> list[Manifest]:
    """The non-empty documents of a multi-document YAML text."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def write_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


class ManifestFolder:
    """The output folder: version files written, patched and deleted like cluster objects."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def version_path(self, model: str, version: int) -> Path:
        return self.root / model_slug(model) / f"v{version}.yaml"

    @property
    def gateway_path(self) -> Path:
        return self.root / GATEWAY_FILE

    def write_gateway(self, documents: list[Manifest]) -> Path:
        """Write the Namespace, gateway and RBAC file."""
        return write_atomically(self.gateway_path, dump_documents(documents))

    def write_version(self, model: str, version: int, documents: list[Manifest]) -> Path:
        """Write (or replace) one version's file."""
        return write_atomically(self.version_path(model, version), dump_documents(documents))

    def deployments(self, model: str | None = None) -> list[Manifest]:
        """The Deployment of every version file (of ``model``'s folder, when given).

        Raises ``DeployError`` for a file that is not YAML.
        """
        folders = [self.root / model_slug(model)] if model is not None else self._model_folders()
        found = []
        for folder in folders:
            for path in sorted(folder.glob("v*.yaml")):
                found += [d for d in self._read(path) if d.get("kind") == "Deployment"]
        return found

    def set_traffic(self, model: str, version: int, share: int) -> None:
        """Rewrite a version file with ``share`` in its Deployment's traffic annotation."""
        path = self.version_path(model, version)
        documents = self._read(path)
        patch = traffic_patch(share)["metadata"]["annotations"]
        for document in documents:
            if document.get("kind") == "Deployment":
                document["metadata"].setdefault("annotations", {}).update(patch)
        write_atomically(path, dump_documents(documents))

    def delete_version(self, model: str, version: int) -> None:
        """Delete a version's file, and the model's folder once it is empty."""
        path = self.version_path(model, version)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty, or already gone
            path.parent.rmdir()

    def _model_folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _read(self, path: Path) -> list[Manifest]:
        try:
            return load_documents(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise DeployError(
                f"{path} is not valid YAML: {exc}", hint="fix or delete the file"
            ) from exc
