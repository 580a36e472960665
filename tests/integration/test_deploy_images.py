"""From the registry to a platform with images: the deploy path users run.

- a version whose image is already in the image registry (a real `docker-registry` on loopback)
  deploys that exact image, pinned by digest, without building anything;
- `modelyard deploy NAME --target kubernetes --output DIR` writes manifests that validate
  strictly against the Kubernetes schemas, naming the image each version runs.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from infra.deploy import deploy_version, with_images
from infra.images.push import push_layout
from infra.images.reference import image_reference, parse_reference
from infra.targets import Deployment
from registry.types import Stage
from tests.fakes.oci_registry import oci_registry, write_oci_layout
from tests.integration.test_promotion import train_versions

KUBERNETES_VERSION = "1.32.0"


def no_bento(registry, settings, name: str, version: int, stage: Stage) -> Deployment:
    """The Bento step, skipped: the image is already pushed, so it is never containerized."""
    return Deployment(name, version, stage, f"{name}:v{version}")


def test_a_pushed_image_is_deployed_pinned_by_digest(
    isolated_home: Path, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.settings import get_settings
    from tests.fakes.gcp import fake_gcp

    train_versions(unique_name, tmp_path, 1)
    (tmp_path / "registry").mkdir()
    with oci_registry(tmp_path / "registry") as host:
        monkeypatch.setenv("MODELYARD_IMAGES__REGISTRY", host)
        get_settings.cache_clear()
        settings = get_settings()
        reference = image_reference(settings, unique_name, 1)
        write_oci_layout(tmp_path / "layout", tag="v1")
        digest = push_layout(tmp_path / "layout", reference)

        with fake_gcp(settings) as target:
            deployed = deploy_version(
                settings, target, unique_name, 1, build=with_images(target, build=no_bento)
            )
            sent = target.fake.sent("POST")  # type: ignore[attr-defined]

    assert [(d.version, d.stage, d.traffic) for d in deployed] == [(1, Stage.CHAMPION, 100)]
    image = sent[0]["template"]["containers"][0]["image"]
    assert image == f"{parse_reference(reference).name}@{digest}"


def test_deploy_output_writes_manifests_that_validate(
    isolated_home: Path, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.settings import get_settings

    monkeypatch.setenv("MODELYARD_IMAGES__REGISTRY", "registry.example.com/ml")
    get_settings.cache_clear()
    train_versions(unique_name, tmp_path, 1)
    out = tmp_path / "manifests"

    result = CliRunner().invoke(
        app, ["deploy", unique_name, "--target", "kubernetes", "--output", str(out), "--json"]
    )

    assert result.exit_code == 0, result.output
    files = sorted(out.rglob("*.yaml"))
    documents = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    kinds = sorted({d["kind"] for d in documents})
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Namespace"} <= set(kinds)
    images = {
        c["image"]
        for d in documents
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert image_reference(get_settings(), unique_name, 1) in images
