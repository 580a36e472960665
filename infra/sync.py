"""Make a deploy target serve what the registry says: champion, canary (at its share), shadow.

Called after every promotion or rollback (by the rollout step and ``modelyard serve``), so the
target's own traffic splitting follows the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from infra.targets import DeployedVersion, Deployment, DeployTarget, roll_out, serving_plan
from registry.types import SERVING_STAGES, Stage

if TYPE_CHECKING:
    from modelyard.settings import Settings
    from registry.mlflow_registry import MlflowRegistry

BuildDeployment = Callable[["MlflowRegistry", "Settings", str, int, Stage], Deployment]
DEFAULT_CANARY_PERCENT = 10


def build_deployment(
    registry: MlflowRegistry, settings: Settings, name: str, version: int, stage: Stage
) -> Deployment:
    """The Deployment of one version, with its Bento built (or found, when built before)."""
    from serving.bento.build import build_bento  # pulls in bentoml: only when deploying

    bento = build_bento(name, version, settings, registry=registry)
    return Deployment(name, version, stage, bento.tag)


def desired_deployments(
    settings: Settings, name: str, *, build: BuildDeployment = build_deployment
) -> tuple[list[Deployment], int | None]:
    """One Deployment per version holding a serving alias, and the canary's recorded share.

    Raises ``ModelNotFound``, ``NothingToServe`` (no champion) or ``DeployError``.
    """
    from registry.decisions import canary_share
    from registry.mlflow_registry import MlflowRegistry

    registry = MlflowRegistry.from_settings(settings)
    holders: dict[Stage, int] = {}
    share: int | None = None
    for stage in SERVING_STAGES:
        found = registry.version_by_alias(name, stage.value)
        if found is not None:
            holders[stage] = found.version
            share = canary_share(found) if stage is Stage.CANARY else share
    plan = serving_plan(name, holders)
    return [build(registry, settings, name, v, stage) for v, stage in plan.items()], share


def sync_serving(
    settings: Settings,
    target: DeployTarget,
    name: str,
    *,
    build: BuildDeployment = build_deployment,
) -> list[DeployedVersion]:
    """Deploy what the registry serves for ``name``, shift traffic, remove what left."""
    specs, share = desired_deployments(settings, name, build=build)
    return roll_out(target, name, specs, canary_percent=share or DEFAULT_CANARY_PERCENT)
