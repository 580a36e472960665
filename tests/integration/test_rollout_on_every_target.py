"""One promotion policy, every target: the registry's staged rollout (shadow -> canary 10 -> 50 ->
champion, then a rollback) carried out by each remote target's own traffic split.

Each platform is emulated (tests/fakes: moto for AWS, HTTP faked with `responses` for GCP and
Azure, a fake API server for Kubernetes, a folder of manifests); the registry, its gates and the
audit trail are real (MLflow on SQLite). After every registry step ``deploy_serving`` makes the
target follow, and the platform's own view (``status``) must match the registry's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.deploy import deploy_serving
from infra.targets import Deployment, DeployTarget
from registry.decisions import Observations
from registry.policy import parse_policy
from registry.promotion import Promoter, open_promoter
from registry.types import Stage
from tests.integration.test_promotion import train_versions

POLICY = parse_policy(
    {
        "require_approval_for_champion": True,
        "min_improvement": -1.0,
        "canary": {"steps": [10, 50, 100], "min_observation": {"requests": 50, "minutes": 0}},
        "shadow": {"min_observation": {"requests": 50, "minutes": 0}},
    }
)
GOOD = Observations(
    requests=500, minutes=1.0, error_rate=0.0, latency_p99_ms=5.0, agreement_with_champion=0.97
)
STEP = {"policy": POLICY, "observations": GOOD, "approved": True, "reason": "cross-target test"}


def image_only(registry, settings, name: str, version: int, stage: Stage) -> Deployment:
    """Stands in for the Bento build + image push (tested in test_image_push)."""
    return Deployment(
        name, version, stage, f"{name}:v{version}", image=f"registry.test/{name}:v{version}"
    )


@contextlib.contextmanager
def target_named(name: str, settings, tmp_path: Path) -> Iterator[DeployTarget]:
    if name == "kubernetes-manifests":
        from infra.kubernetes.target import KubernetesTarget

        yield KubernetesTarget(settings, output_dir=tmp_path / "manifests")
        return
    if name == "kubernetes":
        from tests.fakes.kubernetes import fake_kubernetes as fake
    elif name == "aws":
        from tests.fakes.aws import fake_aws as fake
    elif name == "gcp":
        from tests.fakes.gcp import fake_gcp as fake
    else:
        from tests.fakes.azure import fake_azure as fake
    with fake(settings) as target:
        yield target


def platform_view(target: DeployTarget, model: str) -> dict[int, tuple[str, int]]:
    return {d.version: (d.stage.value, d.traffic) for d in target.status(model)}


@pytest.mark.parametrize(
    "target_name", ["kubernetes-manifests", "kubernetes", "aws", "gcp", "azure"]
)
def test_the_registry_rollout_drives_the_platform_traffic(
    target_name: str, isolated_home: Path, tmp_path: Path, unique_name: str
) -> None:
    from modelyard.settings import get_settings

    settings = get_settings()
    promoter: Promoter = open_promoter(settings, actor="ci:cross-target")
    train_versions(unique_name, tmp_path, 2)  # v1 champion (the first version), v2 candidate
    name = unique_name

    def follow() -> dict[int, tuple[str, int]]:
        deploy_serving(settings, target, name, build=image_only)
        return platform_view(target, name)

    with target_named(target_name, settings, tmp_path) as target:
        assert follow() == {1: ("champion", 100)}

        promoter.promote(name, 2, Stage.SHADOW, **STEP)
        assert follow() == {1: ("champion", 100), 2: ("shadow", 0)}

        promoter.promote(name, 2, Stage.CANARY, **STEP)
        assert follow() == {1: ("champion", 90), 2: ("canary", 10)}
        promoter.promote(name, 2, Stage.CANARY, **STEP)
        assert follow() == {1: ("champion", 50), 2: ("canary", 50)}

        promoter.promote(name, 2, Stage.CHAMPION, **STEP)
        assert follow() == {2: ("champion", 100)}

        train_versions(name, tmp_path, 1)  # v3, scored against champion v2
        promoter.promote(name, 3, Stage.CANARY, **STEP)
        assert follow() == {2: ("champion", 90), 3: ("canary", 10)}
        # the automatic rollback of a worse canary: it retires, the champion takes its traffic
        promoter.promote(name, 3, Stage.RETIRED, policy=POLICY, reason="canary alarm fired")
        assert follow() == {2: ("champion", 100)}
        # the one-command rollback: the previous champion comes back (redeployed from its image)
        promoter.rollback(name, reason="v2 worse in production")
        assert follow() == {1: ("champion", 100)}

        removed = target.remove(name)
        assert [d.version for d in removed] == [1]
        assert target.status(name) == []
