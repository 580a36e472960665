"""Cloud Run names and the checks of the gcp settings (pure)."""

from __future__ import annotations

import re

import pytest

from infra.errors import TargetConfigError
from infra.gcp.naming import (
    MAX_REVISION,
    MAX_SERVICE,
    MAX_VERSION_DIGITS,
    check_project,
    check_region,
    check_scaling,
    is_own_key,
    is_service_id,
    revision_id,
    service_id,
    service_path,
    short_name,
    version_of_tag,
    version_tag,
)
from modelyard.settings import GcpSettings

SERVICE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("model", ["penguins", "churn-model-2", "a"])
def test_a_valid_name_is_kept(model: str) -> None:
    assert service_id(model) == model


@pytest.mark.parametrize(
    "model",
    [
        "Penguins_V2.final",
        "2025-churn",
        "---",
        "",
        "x" * 80,
        "a" * 48 + "-" + "b" * 10,
        "Ünïcödé model",
    ],
)
def test_any_name_becomes_a_valid_service_name(model: str) -> None:
    name = service_id(model)
    assert len(name) <= MAX_SERVICE
    assert SERVICE.match(name), name
    assert is_service_id(name)


def test_sanitised_names_keep_a_digest_so_lookalikes_do_not_share_a_service() -> None:
    assert service_id("Penguins_V2.final").startswith("penguins-v2-final-")
    assert service_id("penguins") != service_id("Penguins")
    assert service_id("a.b") != service_id("a_b")
    assert service_id("x" * 80) != service_id("x" * 81)


def test_revision_names_carry_the_version_and_fit_cloud_run() -> None:
    assert revision_id("penguins", 3, "k2p") == "penguins-v3-k2p"
    longest = revision_id("s" * MAX_SERVICE, int("9" * MAX_VERSION_DIGITS), "abc")
    assert len(longest) == MAX_REVISION
    assert longest.startswith("s" * MAX_SERVICE + "-")


@pytest.mark.parametrize(
    ("version", "suffix"), [(-1, "abc"), (10**MAX_VERSION_DIGITS, "abc"), (1, ""), (1, "ABC")]
)
def test_revision_names_refuse_what_cannot_be_named(version: int, suffix: str) -> None:
    with pytest.raises(ValueError):
        revision_id("penguins", version, suffix)


def test_tags_round_trip_and_foreign_tags_are_not_versions() -> None:
    assert version_tag(12) == "v12"
    assert version_of_tag("v12") == 12
    assert version_of_tag("shadow") is None
    assert version_of_tag("v") is None
    assert version_of_tag("") is None


def test_paths() -> None:
    path = service_path("proj-1", "europe-west1", "penguins")
    assert path == "projects/proj-1/locations/europe-west1/services/penguins"
    assert short_name(f"{path}/revisions/penguins-v1-abc") == "penguins-v1-abc"


def test_own_keys_are_told_from_foreign_ones() -> None:
    for key in ("modelyard-model", "managed-by", "modelyard-stage-v3", "modelyard.dev/image-v2"):
        assert is_own_key(key)
    for key in ("team", "cost-center", "modelyard-version-x"):
        assert not is_own_key(key)


def test_a_missing_project_names_the_variable() -> None:
    with pytest.raises(TargetConfigError) as caught:
        check_project(None)
    assert "no project" in str(caught.value)
    assert "MODELYARD_GCP__PROJECT" in caught.value.hint


@pytest.mark.parametrize("project", ["Proj", "ab", "1project", "has_underscore", "x" * 31])
def test_a_malformed_project_is_refused(project: str) -> None:
    with pytest.raises(TargetConfigError, match=re.escape(repr(project))):
        check_project(project)


@pytest.mark.parametrize("project", ["my-project-123", "modelyard-test", "example.com:proj-1"])
def test_project_ids_are_accepted(project: str) -> None:
    assert check_project(project) == project


def test_regions() -> None:
    assert check_region("europe-west1") == "europe-west1"
    assert check_region("northamerica-northeast2") == "northamerica-northeast2"
    with pytest.raises(TargetConfigError) as caught:
        check_region("Europe West")
    assert "MODELYARD_GCP__REGION" in caught.value.hint


@pytest.mark.parametrize(("low", "high"), [(-1, 4), (0, 0), (5, 4)])
def test_instance_bounds_cloud_run_refuses_are_refused(low: int, high: int) -> None:
    with pytest.raises(TargetConfigError) as caught:
        check_scaling(GcpSettings(min_instances=low, max_instances=high))
    assert "MODELYARD_GCP__MAX_INSTANCES" in caught.value.hint


def test_default_instance_bounds_pass() -> None:
    check_scaling(GcpSettings())
