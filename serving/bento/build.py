"""Build a Bento from one registry version: import the MLflow model, generate a build context.

``build_bento(name, "3")`` or ``build_bento(name, "champion")`` resolves the alias once to a
concrete version, imports that MLflow model into BentoML's model store as ``<name>:v<version>``
and builds a Bento from a generated build context in a temporary folder outside the repository:
the service code, an entry module, a ``requirements.txt`` pinning the installed versions of
everything the service imports (the whole dependency closure, so ``bentoml build`` resolves
nothing), a Dockerfile template adding a health check, and a ``bentofile.yaml`` whose labels carry
the model name, version, data fingerprint and git commit. The Bento's version is a hash of that
context, so building the same registry version twice gives the same tag.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelyard.contract import DataContract
from modelyard.settings import Settings
from registry.errors import RegistryError
from registry.mlflow_registry import MlflowRegistry
from registry.types import TAG_PREFIX, ModelVersion
from serving.bento.batching import BatchingMode
from serving.bento.dockerfile import SERVICE_PORT, blocking, check_dockerfile
from serving.bento.service import ServedModel
from serving.bento.store import BentoInfo, bento_info, bentoml_home, bentoml_stores
from serving.errors import BuildError, DockerfileRejected

logger = logging.getLogger(__name__)

CONTRACT_ARTIFACT = "contract.json"  # logged by every training run (pipelines.steps.tracking)
ENTRY_MODULE = "modelyard_service"
DOCKERFILE_TEMPLATE = "Dockerfile.template"
# What the service imports; their whole dependency closure is pinned.
SERVICE_DISTRIBUTIONS = (
    "bentoml",
    "mlflow-skinny",
    "scikit-learn",
    "pandas",
    "numpy",
    "scipy",
    "skops",
    "pydantic",
)
# Our modules the service needs, copied into the Bento (paths relative to the repository root).
SERVICE_SOURCES = (
    "modelyard/__init__.py",
    "modelyard/errors.py",
    "modelyard/contract.py",
    "serving/__init__.py",
    "serving/errors.py",
    "serving/bento/__init__.py",
    "serving/bento/batching.py",
    "serving/bento/payload.py",
    "serving/bento/service.py",
)
TAG_NAME_MAX = 63
BUILD_TIMEOUT_S = 600
HEALTHCHECK = (
    "HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 "
    'CMD ["python", "-c", "import urllib.request; '
    f"urllib.request.urlopen('http://127.0.0.1:{SERVICE_PORT}/readyz', timeout=4)\"]"
)


@dataclass(frozen=True)
class BuildOptions:
    """How the service batches, and which base image the Dockerfile starts from."""

    batching: BatchingMode = "queue"
    max_batch_size: int = 64
    max_latency_ms: int = 10_000
    base_image: str | None = None


def build_bento(
    name: str,
    version_or_alias: str | int,
    settings: Settings,
    *,
    options: BuildOptions | None = None,
    registry: MlflowRegistry | None = None,
) -> BentoInfo:
    """Build (or find, when built before from the same inputs) the Bento of one version.

    Raises ``ModelNotFound``/``VersionNotFound`` (registry), ``BuildError`` and
    ``DockerfileRejected`` (its Dockerfile failed the lint or our checks; the Bento is removed).
    """
    options = options or BuildOptions()
    registry = registry or MlflowRegistry.from_settings(settings)
    version = registry.get_version(name, version_or_alias)  # an alias resolves here, once
    home = bentoml_home(settings)
    with tempfile.TemporaryDirectory(prefix="modelyard-bento-") as scratch, bentoml_stores(home):
        work = Path(scratch)
        served = served_model(registry, version, work / "contract")
        model_tag = import_model(registry, version, served, settings, work / "download")
        context = work / "context"
        labels = bento_labels(served, model_tag)
        write_build_context(context, model_tag, served, labels, options)
        return build_from_context(context, served, model_tag, home)


def served_model(registry: MlflowRegistry, version: ModelVersion, scratch: Path) -> ServedModel:
    """The version's identity, lineage and data contract, as the service will read them."""
    return ServedModel(
        name=version.name,
        version=version.version,
        contract=read_contract(registry, version, scratch),
        run_id=version.run_id,
        data_fingerprint=version.tags.get(TAG_PREFIX + "data_fingerprint", "unknown"),
        git_commit=version.tags.get(TAG_PREFIX + "git_commit", "unknown"),
    )


def read_contract(registry: MlflowRegistry, version: ModelVersion, scratch: Path) -> DataContract:
    """The data contract logged by the run that produced ``version``."""
    try:
        path = registry.download_version_artifact(
            version.name, version.version, CONTRACT_ARTIFACT, scratch
        )
        return DataContract.model_validate_json(path.read_text())
    except (RegistryError, OSError, ValueError) as exc:
        raise BuildError(
            f"{version.name} version {version.version} has no readable {CONTRACT_ARTIFACT}: {exc}",
            hint="train it with `modelyard train`, which logs the data contract with the model",
        ) from exc


def import_model(
    registry: MlflowRegistry,
    version: ModelVersion,
    served: ServedModel,
    settings: Settings,
    scratch: Path,
) -> str:
    """Import the version's MLflow model as ``<name>:v<version>``; reuse an identical import."""
    import bentoml
    from bentoml.exceptions import NotFound

    tag = f"{bento_name(version.name)}:v{version.version}"
    try:
        existing = bentoml.models.get(tag)
    except NotFound:
        existing = None
    if existing is not None:
        if _same_model(dict(existing.info.metadata), served):
            return tag
        logger.warning("BentoML model %s came from another run; importing again", tag)
        bentoml.models.delete(tag)
    local = download_model(registry, version, settings, scratch)
    check_signature(local, served.contract)
    bentoml.mlflow.import_model(
        tag,
        model_uri=str(local),
        labels=bento_labels(served, tag),
        metadata=served.to_metadata(),
    )
    return tag


def _same_model(metadata: dict[str, Any], served: ServedModel) -> bool:
    found = metadata.get("modelyard", {})
    return bool(
        found.get("name") == served.name
        and found.get("version") == served.version
        and found.get("run_id") == (served.run_id or "")
    )


def download_model(
    registry: MlflowRegistry, version: ModelVersion, settings: Settings, destination: Path
) -> Path:
    """The version's MLflow model folder, fetched with our store's URIs.

    ``models:/`` URIs are resolved through the registry client rather than MLflow's global
    registry URI, which ``mlflow.artifacts.download_artifacts`` would use for them.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    destination.mkdir(parents=True, exist_ok=True)
    try:
        location = registry.client.get_model_version_download_uri(
            version.name, str(version.version)
        )
        local = download_artifacts(
            artifact_uri=location,
            dst_path=str(destination),
            tracking_uri=settings.mlflow_tracking_uri,
        )
    except (MlflowException, OSError) as exc:
        raise BuildError(f"cannot download the model of {version.uri}: {exc}") from exc
    return Path(local)


def check_signature(model_folder: Path, contract: DataContract) -> None:
    """The MLflow signature and the data contract must name the same input columns."""
    try:
        mlmodel = yaml.safe_load((model_folder / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BuildError(f"{model_folder} is not an MLflow model: {exc}") from exc
    inputs = (mlmodel.get("signature") or {}).get("inputs")
    if not inputs:
        return
    columns = [c.get("name") for c in json.loads(inputs)]
    if columns != contract.feature_names:
        raise BuildError(
            f"the model's signature expects columns {columns} but its data contract lists "
            f"{contract.feature_names}; retrain the model so both come from the same data"
        )


def bento_name(model_name: str) -> str:
    """A BentoML tag name for a registry name: lowercase, at most 63 characters.

    Names that had to change get a short hash of the original, so ``Penguins`` and
    ``penguins`` never share a tag.
    """
    lowered = model_name.lower()
    if lowered == model_name and len(lowered) <= TAG_NAME_MAX and lowered[-1].isalnum():
        return lowered
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:8]
    stem = lowered[: TAG_NAME_MAX - len(digest) - 1].rstrip("-._")
    return f"{stem}-{digest}" if stem else digest


def bento_labels(served: ServedModel, model_tag: str) -> dict[str, str]:
    return {
        "modelyard.model": served.name,
        "modelyard.version": str(served.version),
        "modelyard.data_fingerprint": served.data_fingerprint,
        "modelyard.git_commit": served.git_commit,
        "modelyard.run_id": served.run_id or "",
        "modelyard.bento_model": model_tag,
    }


def pinned_requirements(roots: Iterable[str] = SERVICE_DISTRIBUTIONS) -> list[str]:
    """``name==version`` for ``roots`` and everything they need, as installed here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset()) for root in roots]
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise BuildError(
                f"the service needs {name}, which is not installed here",
                hint="install the project with `make install`",
            ) from exc
        pins[canonicalize_name(dist.metadata["Name"])] = dist.version
        environments = [{"extra": ""}] + [{"extra": e} for e in sorted(extras)]
        for raw in dist.requires or []:
            requirement = Requirement(raw)
            marker = requirement.marker
            if marker is None or any(marker.evaluate(env) for env in environments):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return [f"{name}=={pins[name]}" for name in sorted(pins)]


def entry_module(model_tag: str, options: BuildOptions) -> str:
    """The Bento's service module: one call to ``create_service`` with this build's choices."""
    return (
        '"""Generated by `modelyard build`; do not edit."""\n\n'
        "from serving.bento.service import create_service\n\n"
        "ModelService = create_service(\n"
        f"    {model_tag!r},\n"
        f"    batching={options.batching!r},\n"
        f"    max_batch_size={options.max_batch_size!r},\n"
        f"    max_latency_ms={options.max_latency_ms!r},\n"
        ")\n"
    )


def dockerfile_template() -> str:
    """BentoML's Dockerfile with a health check after its entrypoint block."""
    return (
        "{% extends bento_base_template %}\n"
        "{% block SETUP_BENTO_ENTRYPOINT %}\n"
        "{{ super() }}\n"
        f"{HEALTHCHECK}\n"
        "{% endblock %}\n"
    )


def bentofile(
    served: ServedModel, model_tag: str, labels: dict[str, str], options: BuildOptions
) -> str:
    """The ``bentofile.yaml``: stable key order and content, no timestamps."""
    docker: dict[str, Any] = {"python_version": "3.11", "dockerfile_template": DOCKERFILE_TEMPLATE}
    if options.base_image:
        docker["base_image"] = options.base_image
    config = {
        "service": f"{ENTRY_MODULE}:ModelService",
        "name": model_tag.split(":", 1)[0],
        "description": f"Modelyard: {served.name} version {served.version}",
        "labels": labels,
        "include": [f"{ENTRY_MODULE}.py", "bentofile.yaml", "modelyard/*.py", "serving/**/*.py"],
        "exclude": ["__pycache__", "*.pyc"],
        "models": [model_tag],
        "python": {"requirements_txt": "requirements.txt", "lock_packages": False},
        "docker": docker,
    }
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def write_build_context(
    context: Path,
    model_tag: str,
    served: ServedModel,
    labels: dict[str, str],
    options: BuildOptions,
) -> None:
    """Everything ``bentoml build`` reads, generated into ``context``."""
    root = repository_root()
    for relative in SERVICE_SOURCES:
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, target)
    (context / f"{ENTRY_MODULE}.py").write_text(entry_module(model_tag, options))
    (context / "requirements.txt").write_text("\n".join(pinned_requirements()) + "\n")
    (context / DOCKERFILE_TEMPLATE).write_text(dockerfile_template())
    (context / "bentofile.yaml").write_text(bentofile(served, model_tag, labels, options))


def repository_root() -> Path:
    """The folder holding our packages (``serving/bento/build.py`` is three levels down)."""
    return Path(__file__).resolve().parents[2]


def context_digest(context: Path) -> str:
    """A hash of every file in the build context, by relative path and content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(path.relative_to(context).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def run_bentoml_build(context: Path, version: str, home: Path) -> None:
    """``bentoml build`` in ``context``: BentoML reads the bentofile's files relative to the
    working directory and refuses paths outside it, so it runs in its own process there."""
    command = [sys.executable, "-m", "bentoml", "build", ".", "--version", version, "-o", "tag"]
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("PYTHONPATH", None)  # the service must import the context's copy of our code
    try:
        done = subprocess.run(
            command,
            cwd=context,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"bentoml build could not run: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-20:]
        raise BuildError("bentoml build failed:\n" + "\n".join(detail))


def build_from_context(context: Path, served: ServedModel, model_tag: str, home: Path) -> BentoInfo:
    """Build the Bento (unless one with the same content hash exists) and check its Dockerfile."""
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    name = model_tag.split(":", 1)[0]
    tag = f"{name}:v{served.version}-{context_digest(context)[:12]}"
    try:
        bento = bentoml.bentos.get(tag)
    except NotFound:
        run_bentoml_build(context, tag.split(":", 1)[1], home)
        try:
            bento = bentoml.bentos.get(tag)
        except BentoMLException as exc:
            raise BuildError(f"bentoml build reported success but {tag} is missing") from exc
    info = bento_info(bento)
    findings = check_dockerfile(info.dockerfile_path, port=SERVICE_PORT)
    if blocking(findings):
        bentoml.bentos.delete(tag)
        raise DockerfileRejected(str(info.dockerfile_path), blocking(findings))
    return dataclasses.replace(info, findings=tuple(findings))
