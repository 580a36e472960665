"""Deploying to any target by name: what ``modelyard deploy`` and the ``advance`` flow call.

Remote targets (Kubernetes, the clouds) run OCI images, so each version's Deployment gets one:
the image given by the caller, else the one already in the image registry for that version, else
one built from the version's Bento and pushed (``infra.images``). The local target runs Bentos
directly and never builds an image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from infra.sync import (
    DEFAULT_CANARY_PERCENT,
    BuildDeployment,
    build_deployment,
    desired_deployments,
)
from infra.targets import DeployedVersion, Deployment, DeployTarget, roll_out
from registry.types import SERVING_STAGES, Stage

if TYPE_CHECKING:
    from modelyard.settings import Settings
    from registry.mlflow_registry import MlflowRegistry


def with_images(target: DeployTarget, build: BuildDeployment = build_deployment) -> BuildDeployment:
    """``build``, plus an image per version when ``target`` runs images (pushed when missing)."""
    if not target.needs_image:
        return build

    def build_with_image(
        registry: MlflowRegistry, settings: Settings, name: str, version: int, stage: Stage
    ) -> Deployment:
        from infra.images.build import ensure_image

        spec = build(registry, settings, name, version, stage)
        prepare_repository(settings, target.name, name, version)
        image = ensure_image(
            settings, name, version, spec.bento_tag, auth=registry_auth(settings, target.name)
        )
        return replace(spec, image=image)

    return build_with_image


def referenced_images(build: BuildDeployment = build_deployment) -> BuildDeployment:
    """``build``, with each version's image reference computed but nothing built or pushed
    (for manifests written to a folder: the images are pushed by whoever applies them)."""

    def build_with_reference(
        registry: MlflowRegistry, settings: Settings, name: str, version: int, stage: Stage
    ) -> Deployment:
        from infra.images.reference import image_reference

        spec = build(registry, settings, name, version, stage)
        return replace(spec, image=image_reference(settings, name, version))

    return build_with_reference


def prepare_repository(settings: Settings, target_name: str, model: str, version: int) -> None:
    """ECR does not create repositories on push: create the version's one first (AWS only)."""
    if target_name != "aws":
        return
    from infra.aws.ecr import ensure_repository
    from infra.images.reference import image_reference, parse_reference

    ensure_repository(
        settings, parse_reference(image_reference(settings, model, version)).repository
    )


def registry_auth(settings: Settings, target_name: str) -> tuple[str, str] | None:
    """Credentials for the image registry: ECR's from boto3 for AWS, else the configured ones."""
    if target_name == "aws" and not settings.images.username:
        from infra.aws.ecr import registry_credentials

        _, username, password = registry_credentials(settings)
        return username, password
    if settings.images.username and settings.images.password:
        return settings.images.username, settings.images.password
    return None


def deploy_serving(
    settings: Settings,
    target: DeployTarget,
    name: str,
    *,
    canary_percent: int | None = None,
    build: BuildDeployment | None = None,
) -> list[DeployedVersion]:
    """Make ``target`` serve what the registry serves for ``name`` (champion, canary, shadow),
    with the canary at its recorded share (else ``canary_percent``, else 10%)."""
    specs, share = desired_deployments(settings, name, build=build or with_images(target))
    percent = share if share is not None else canary_percent
    return roll_out(
        target,
        name,
        specs,
        canary_percent=percent if percent is not None else DEFAULT_CANARY_PERCENT,
    )


def deploy_version(
    settings: Settings,
    target: DeployTarget,
    name: str,
    version: int,
    *,
    stage: Stage | None = None,
    image: str | None = None,
    build: BuildDeployment | None = None,
) -> list[DeployedVersion]:
    """Deploy one version (at 0% unless it is the model's first): its stage is the serving alias
    it holds in the registry unless ``stage`` is given; ``image`` skips building one.

    Raises ``ModelNotFound``/``VersionNotFound`` from the registry, ``DeployError`` from the target.
    """
    from registry.mlflow_registry import MlflowRegistry

    registry = MlflowRegistry.from_settings(settings)
    found = registry.get_version(name, version)
    chosen = stage or _serving_stage(registry, name, found.version)
    if image is not None:
        spec = replace(build_deployment_without_bento(name, found.version, chosen), image=image)
    else:
        spec = (build or with_images(target))(registry, settings, name, found.version, chosen)
    target.deploy(spec)
    return target.status(name)


def build_deployment_without_bento(name: str, version: int, stage: Stage) -> Deployment:
    """A Deployment for an image built elsewhere: no Bento is built here."""
    return Deployment(name, version, stage, bento_tag=f"{name}:v{version}")


def shift_traffic(
    target: DeployTarget, name: str, shares: Mapping[int, int]
) -> list[DeployedVersion]:
    """Set each version's share on the platform; returns what it now holds."""
    target.set_traffic(name, dict(shares))
    return target.status(name)


def parse_shares(pairs: list[str]) -> dict[int, int]:
    """``["1=90", "2=10"]`` -> ``{1: 90, 2: 10}``; a clear ValueError naming a bad pair."""
    shares: dict[int, int] = {}
    for pair in pairs:
        version, sep, percent = pair.partition("=")
        version = version.strip().lstrip("vV")
        if not sep or not version.isdigit() or not percent.strip().lstrip("-").isdigit():
            raise ValueError(f"traffic {pair!r} is not VERSION=PERCENT (e.g. 2=10)")
        if int(version) in shares:
            raise ValueError(f"version {version} is given twice")
        shares[int(version)] = int(percent)
    if not shares:
        raise ValueError("give at least one VERSION=PERCENT")
    return shares


def _serving_stage(registry: MlflowRegistry, name: str, version: int) -> Stage:
    for stage in SERVING_STAGES:
        holder = registry.version_by_alias(name, stage.value)
        if holder is not None and holder.version == version:
            return stage
    return Stage.CANARY  # not serving yet: it answers only once traffic is shifted to it
