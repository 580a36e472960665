"""The image of a model version: built from its Bento and pushed, unless the registry has it.

``bentoml containerize`` builds with the engine found (Docker when a daemon answers, else
buildah: ``serving.bento.containerize``); the image is then exported as a ``docker save``
archive (``docker save`` / ``buildah push IMAGE docker-archive:FILE``), turned into an OCI layout
(``infra.images.archive``) and pushed through the distribution API (``infra.images.push``), so
no ``docker login`` or registry configuration of the engine is needed.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from infra.errors import NoContainerEngine
from infra.images.archive import layout_from_docker_archive
from infra.images.auth import Auth, settings_credentials
from infra.images.push import manifest_digest, push_layout
from infra.images.reference import image_reference, parse_reference
from infra.images.retry import RetryPolicy
from serving.bento.containerize import Engine, containerize, detect_engine
from serving.errors import ContainerEngineNotFound, ContainerizeError

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)

EXPORT_TIMEOUT_S = 1800
NO_ENGINE_HINT = (
    "start a Docker daemon, or point DOCKER_HOST at a Docker-compatible socket (e.g. "
    "`podman system service`), or install buildah; or build the image elsewhere and deploy it "
    "with `--image REF`"
)
LayoutBuilder = Callable[["Settings", str, Path], Path]
Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def find_engine(detect: Callable[[], Engine] = detect_engine) -> Engine:
    """The container engine to build with.

    Raises ``NoContainerEngine`` naming docker, ``DOCKER_HOST``, buildah and ``--image REF``.
    """
    try:
        return detect()
    except ContainerEngineNotFound as exc:
        raise NoContainerEngine(
            f"cannot build a model image on this machine: {exc.message}", hint=NO_ENGINE_HINT
        ) from exc


def export_command(engine: Engine, image: str, archive: Path) -> list[str]:
    """The command that writes ``image`` as a ``docker save`` archive at ``archive``."""
    if engine.name == "docker":
        return [engine.binary, "save", "--output", str(archive), image]
    return [engine.binary, "push", image, f"docker-archive:{archive}"]


def run_export(command: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ContainerizeError(f"`{' '.join(command)}` could not run: {exc}") from exc


def build_image_layout(
    settings: Settings,
    bento_tag: str,
    out_dir: Path,
    *,
    detect: Callable[[], Engine] = detect_engine,
    run: Runner = run_export,
) -> Path:
    """Build the Bento ``bento_tag``'s image and write it as an OCI layout at ``out_dir``.

    Raises ``NoContainerEngine`` first when nothing can build; then ``containerize``'s errors
    (``BentoNotFound``, ``DockerfileRejected``, ``ContainerizeError``), ``ContainerizeError``
    when the export fails and ``ImageLayoutError`` for an unusable archive.
    """
    engine = find_engine(detect)
    built = containerize(bento_tag, settings, engine=engine)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    archive = out_dir.parent / f"{out_dir.name}.docker-archive.tar"
    try:
        done = run(export_command(engine, built.image, archive))
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout or "").strip().splitlines()[-20:])
            raise ContainerizeError(f"{engine.name} could not export {built.image}:\n{tail}")
        tag = built.image.rsplit(":", 1)[-1] if ":" in built.image else "latest"
        return layout_from_docker_archive(archive, out_dir, image=built.image, ref_name=tag)
    finally:
        archive.unlink(missing_ok=True)


def ensure_image(
    settings: Settings,
    model: str,
    version: int,
    bento_tag: str,
    *,
    auth: Auth | None = None,
    build: LayoutBuilder = build_image_layout,
    client: httpx.Client | None = None,
) -> str:
    """The image of ``model`` v``version`` in ``settings.images.registry``, pushed if missing.

    Returns it pinned by digest, ``host/repo@sha256:...``: what runs is exactly what was pushed
    even if the tag is overwritten later, and every platform accepts that form (SageMaker takes a
    tag or a digest, not both). When the tag ``v<version>`` is already there, nothing is built.
    ``auth`` defaults to ``MODELYARD_IMAGES__USERNAME``/``__PASSWORD``.

    Raises ``TargetConfigError`` (no registry set), ``NoContainerEngine``, the build's errors and
    ``ImagePushFailed``.
    """
    reference = image_reference(settings, model, version)
    auth = auth or settings_credentials(settings)
    insecure = settings.images.insecure
    retry = RetryPolicy(attempts=settings.images.push_attempts)
    pushed = manifest_digest(reference, auth, insecure=insecure, client=client, retry=retry)
    if pushed is not None:
        logger.info("%s is already in the registry (%s): not rebuilt", reference, pushed)
        return str(parse_reference(reference).pinned(pushed))
    work_root = settings.ensure_home()
    with tempfile.TemporaryDirectory(prefix="image-", dir=work_root) as work:
        layout = build(settings, bento_tag, Path(work) / "layout")
        digest = push_layout(
            layout, reference, auth=auth, insecure=insecure, client=client, retry=retry
        )
    return str(parse_reference(reference).pinned(digest))
