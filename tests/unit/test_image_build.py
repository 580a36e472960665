"""Building a version's image: the engine check, the export command, the glue to a layout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import infra.images.build as build_module
from infra.errors import NoContainerEngine
from infra.images.build import build_image_layout, export_command, find_engine
from infra.images.layout import DOCKER_MANIFEST, read_layout
from modelyard.settings import Settings
from serving.bento.containerize import ContainerImage, Engine, detect_engine
from serving.errors import ContainerizeError
from tests.fakes.oci_registry import write_docker_archive

BUILDAH = Engine("buildah", "/usr/bin/buildah")
DOCKER = Engine("docker", "/usr/bin/docker")


def no_engine() -> Engine:
    """The real detection on a machine with neither docker nor buildah on PATH."""
    return detect_engine(which=lambda name: None)


def test_no_engine_names_every_way_out() -> None:
    with pytest.raises(NoContainerEngine) as caught:
        find_engine(no_engine)
    message = str(caught.value)
    for part in ("docker: not on PATH", "buildah: not on PATH", "DOCKER_HOST", "--image REF"):
        assert part in message


def test_export_commands() -> None:
    archive = Path("/tmp/x/layout.docker-archive.tar")
    assert export_command(DOCKER, "penguins:abc", archive) == [
        "/usr/bin/docker",
        "save",
        "--output",
        str(archive),
        "penguins:abc",
    ]
    assert export_command(BUILDAH, "penguins:abc", archive) == [
        "/usr/bin/buildah",
        "push",
        "penguins:abc",
        f"docker-archive:{archive}",
    ]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Engine]]:
    """``containerize`` (tested with the serving floor) stands in: it records what it was asked."""
    calls: list[tuple[str, Engine]] = []

    def containerize(tag: str, settings: Settings, *, engine: Engine) -> ContainerImage:
        calls.append((tag, engine))
        return ContainerImage(image="penguins:abc123", bento=tag, engine=engine.name)

    monkeypatch.setattr(build_module, "containerize", containerize)
    return calls


def test_build_exports_the_image_and_converts_it(tmp_path: Path, built: list) -> None:
    commands: list[list[str]] = []

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        archive = Path(command[-1].removeprefix("docker-archive:"))
        write_docker_archive(archive, [{"app/service.py": b"print('hi')"}])
        return subprocess.CompletedProcess(command, 0, "", "")

    settings = Settings(home=tmp_path)
    layout = build_image_layout(
        settings, "penguins:abc123", tmp_path / "out" / "layout", detect=lambda: BUILDAH, run=run
    )
    assert built == [("penguins:abc123", BUILDAH)]
    [command] = commands
    assert command[:3] == ["/usr/bin/buildah", "push", "penguins:abc123"]
    [manifest] = read_layout(layout).manifests
    assert manifest.media_type == DOCKER_MANIFEST
    assert manifest.descriptor.annotations["org.opencontainers.image.ref.name"] == "abc123"
    assert not list((tmp_path / "out").glob("*.tar"))  # the archive is removed


def test_a_failed_export_shows_the_engine_output(tmp_path: Path, built: list) -> None:
    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 125, "", "Error: no space left on device\n")

    settings = Settings(home=tmp_path)
    with pytest.raises(ContainerizeError, match="no space left on device"):
        build_image_layout(
            settings, "penguins:abc123", tmp_path / "layout", detect=lambda: DOCKER, run=run
        )


def test_no_engine_is_found_before_anything_is_built(tmp_path: Path, built: list) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(NoContainerEngine):
        build_image_layout(settings, "penguins:abc123", tmp_path / "layout", detect=no_engine)
    assert built == []
