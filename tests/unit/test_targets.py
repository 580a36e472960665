"""The deploy-target table and the serving plan read from registry aliases."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import infra.targets as targets
from infra.errors import NothingToServe, UnknownTarget
from infra.local.target import LocalTarget
from infra.targets import (
    DeployedVersion,
    Deployment,
    DeployTarget,
    get_target,
    known_targets,
    register_target,
    serving_plan,
)
from modelyard.settings import Settings
from registry.types import Stage


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


@pytest.fixture
def clean_table() -> Iterator[None]:
    saved = dict(targets._registered)
    yield
    targets._registered.clear()
    targets._registered.update(saved)


def test_local_is_found_by_name(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENTOML_HOME", raising=False)
    target = get_target("local", settings)

    assert isinstance(target, LocalTarget)
    assert target.name == "local"
    assert target.state_file == settings.home / "serving" / "state.json"
    assert target.bentoml_home == settings.home / "bentoml"


def test_unknown_target_lists_the_known_names(settings: Settings) -> None:
    with pytest.raises(UnknownTarget) as caught:
        get_target("kubernetez", settings)

    assert (
        "unknown deploy target 'kubernetez'; known targets: aws, azure, gcp, kubernetes, local"
        in str(caught.value)
    )
    assert "--target" in str(caught.value)


def test_a_registered_target_joins_the_table(settings: Settings, clean_table: None) -> None:
    @register_target("memory")
    class MemoryTarget(DeployTarget):
        def deploy(self, spec: Deployment) -> DeployedVersion:
            raise NotImplementedError

        def set_traffic(self, model: str, shares: Mapping[int, int]) -> None:
            raise NotImplementedError

        def status(self, model: str | None = None) -> list[DeployedVersion]:
            return []

        def remove(self, model: str, version: int | None = None) -> list[DeployedVersion]:
            return []

    target = get_target("memory", settings)

    assert isinstance(target, MemoryTarget)
    assert target.settings is settings
    assert "memory" in known_targets()
    with pytest.raises(ValueError, match="already registered"):
        register_target("memory")(LocalTarget)


def test_plan_runs_each_aliased_version_once() -> None:
    holders = {Stage.CHAMPION: 3, Stage.CANARY: 4, Stage.SHADOW: 4}

    assert serving_plan("m", holders) == {3: Stage.CHAMPION, 4: Stage.CANARY}


def test_plan_needs_a_champion() -> None:
    with pytest.raises(NothingToServe, match="model 'm' has no champion"):
        serving_plan("m", {Stage.CANARY: 2})


def test_local_serves_from_the_bentoml_home_the_builder_uses(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from serving.bento.build import bentoml_home as builder_home

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "elsewhere"))
    assert LocalTarget(settings).bentoml_home == builder_home(settings) == tmp_path / "elsewhere"
    monkeypatch.delenv("BENTOML_HOME")
    assert LocalTarget(settings).bentoml_home == builder_home(settings)


def test_a_target_without_its_sdk_names_the_extra(
    settings: Settings, clean_table: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    from infra import targets
    from infra.errors import TargetConfigError

    def missing_sdk(name: str) -> None:
        raise ModuleNotFoundError("No module named 'boto3'", name="boto3")

    monkeypatch.setattr(importlib, "import_module", missing_sdk)
    monkeypatch.setitem(targets.BUILTIN_TARGETS, "sdkless", "infra.sdkless")
    with pytest.raises(TargetConfigError, match=r"sdkless target: its SDK is not installed"):
        get_target("sdkless", settings)
