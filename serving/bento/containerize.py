"""Build an OCI image from a Bento: Docker where a daemon answers, else buildah.

The Bento's Dockerfile is linted and checked first (``serving.bento.dockerfile``); then
``bentoml containerize`` runs with the engine found, so the image is exactly BentoML's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from modelyard.settings import Settings
from serving.bento.dockerfile import SERVICE_PORT, Finding, blocking, check_dockerfile
from serving.bento.store import bentoml_env, find_bento
from serving.errors import ContainerEngineNotFound, ContainerizeError, DockerfileRejected

EngineName = Literal["docker", "buildah"]
DAEMON_TIMEOUT_S = 15
CONTAINERIZE_TIMEOUT_S = 3600
INSTALL_HINT = (
    "start a Docker daemon (or point DOCKER_HOST at a Docker-compatible socket such as "
    "`podman system service`), or install buildah (Debian: `apt-get install buildah`)"
)


@dataclass(frozen=True)
class Engine:
    name: EngineName
    binary: str


@dataclass(frozen=True)
class ContainerImage:
    image: str
    bento: str
    engine: EngineName
    findings: tuple[Finding, ...] = ()


def docker_daemon_answers(binary: str) -> bool:
    """``docker info`` succeeds only when a daemon (local or ``DOCKER_HOST``) answers."""
    try:
        done = subprocess.run(
            [binary, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=DAEMON_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def detect_engine(
    *,
    which: Callable[[str], str | None] = shutil.which,
    daemon_answers: Callable[[str], bool] = docker_daemon_answers,
) -> Engine:
    """Docker when its daemon answers, else buildah on PATH.

    Raises ``ContainerEngineNotFound`` saying what was looked for and how to get one.
    """
    looked: list[str] = []
    docker = which("docker")
    if docker is None:
        looked.append("docker: not on PATH")
    elif daemon_answers(docker):
        return Engine("docker", docker)
    else:
        looked.append(f"docker: {docker} is installed but `docker info` reached no daemon")
    buildah = which("buildah")
    if buildah is not None:
        return Engine("buildah", buildah)
    looked.append("buildah: not on PATH")
    raise ContainerEngineNotFound(
        "no container engine to build the image with (" + "; ".join(looked) + ")",
        hint=INSTALL_HINT,
    )


def containerize(
    tag: str,
    settings: Settings,
    *,
    image_tag: str | None = None,
    engine: Engine | None = None,
) -> ContainerImage:
    """Build an image of the Bento ``tag`` (named ``image_tag``, default the Bento's tag).

    Raises ``BentoNotFound``, ``DockerfileRejected``, ``LinterNotFound``,
    ``ContainerEngineNotFound`` and ``ContainerizeError``.
    """
    info = find_bento(tag, settings)
    findings = tuple(check_dockerfile(info.dockerfile_path))
    if blocking(findings):
        raise DockerfileRejected(str(info.dockerfile_path), blocking(findings))
    engine = engine or detect_engine()
    image = image_tag or info.tag
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "containerize",
        info.tag,
        "--backend",
        engine.name,
        "--image-tag",
        image,
    ]
    env = bentoml_env(settings)
    if engine.name == "buildah":  # the caller's settings win
        env.setdefault("BUILDAH_ISOLATION", "chroot")  # works as root without user namespaces
        env.setdefault("BUILDAH_FORMAT", "docker")  # the OCI format drops HEALTHCHECK
    done = run_bentoml_containerize(command, env)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-30:])
        raise ContainerizeError(f"{engine.name} failed to build {image}:\n{tail}")
    problems = blocking(check_image_config(image_config(engine, image), port=SERVICE_PORT))
    if problems:
        shown = "; ".join(p.describe() for p in problems)
        raise ContainerizeError(f"image {image} was built but fails its checks: {shown}")
    return ContainerImage(image=image, bento=info.tag, engine=engine.name, findings=findings)


def image_config(engine: Engine, image: str) -> dict[str, Any]:
    """The built image's Docker-style config (User, ExposedPorts, Healthcheck)."""
    if engine.name == "docker":
        command = [engine.binary, "image", "inspect", "--format", "{{json .Config}}", image]
    else:
        command = [engine.binary, "inspect", "--type", "image", image]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=DAEMON_TIMEOUT_S, check=True
        )
        found = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError) as exc:
        raise ContainerizeError(f"cannot inspect the image {image}: {exc}") from exc
    if engine.name == "buildah":
        found = (found.get("Docker") or {}).get("config") or found["OCIv1"].get("config", {})
    return dict(found or {})


def check_image_config(config: dict[str, Any], *, port: int = SERVICE_PORT) -> list[Finding]:
    """The image itself, as built: the port exposed, a non-root user, a health check."""
    findings: list[Finding] = []
    if f"{port}/tcp" not in (config.get("ExposedPorts") or {}):
        findings.append(Finding("MY001", "error", f"the image does not expose port {port}"))
    user = str(config.get("User") or "root").split(":")[0]
    if user in ("root", "0"):
        findings.append(Finding("MY002", "error", f"the image runs as root (user {user!r})"))
    test = (config.get("Healthcheck") or {}).get("Test") or ["NONE"]
    if test[0] == "NONE":
        findings.append(Finding("MY003", "error", "the image has no health check"))
    return findings


def run_bentoml_containerize(
    command: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """BentoML renders the Dockerfile again in a temporary folder and refuses templates outside
    its working directory, so one folder serves as both its TMPDIR and working directory."""
    with tempfile.TemporaryDirectory(prefix="modelyard-containerize-") as work:
        try:
            return subprocess.run(
                command,
                cwd=work,
                env={**env, "TMPDIR": work},
                capture_output=True,
                text=True,
                timeout=CONTAINERIZE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ContainerizeError(f"bentoml containerize could not run: {exc}") from exc
