"""The gcp target through the real ``google-cloud-run`` client (REST transport) against a stateful
fake of the Cloud Run Admin API v2 (``tests/fakes/gcp.py``, HTTP faked with ``responses``).

Each test checks what Cloud Run then holds (the fake's state, read as the API returns it) and,
for the traffic steps, the request bodies the client sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.errors import (
    CloudCallFailed,
    CredentialsNotFound,
    DeployError,
    ImageRequired,
    InvalidTraffic,
    TargetConfigError,
    VersionNotDeployed,
)
from infra.targets import Deployment, DeployState, get_target
from modelyard.settings import GcpSettings, Settings
from registry.types import Stage
from tests.fakes.gcp import fake_gcp

MODEL = "penguins"
SERVICE_PATH = "/services/penguins"


def spec(version: int, stage: Stage, image: str | None = "") -> Deployment:
    return Deployment(
        MODEL,
        version,
        stage,
        f"{MODEL}:b{version}",
        image=f"europe-docker.pkg.dev/proj/models/penguins:v{version}" if image == "" else image,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, gcp=GcpSettings(project="modelyard-test"))


@pytest.fixture
def target(settings: Settings) -> Iterator[Any]:
    with fake_gcp(settings) as target:
        yield target


def view(target: Any) -> dict[int, tuple[str, int]]:
    return {d.version: (d.stage.value, d.traffic) for d in target.status(MODEL)}


def revision_of(target: Any, version: int) -> str:
    return next(d for d in target.fake.service(MODEL)["traffic"] if d["tag"] == f"v{version}")[
        "revision"
    ]


def with_champion_and_canary(target: Any, canary_share: int) -> None:
    target.deploy(spec(1, Stage.CHAMPION))
    target.deploy(spec(2, Stage.CANARY))
    target.set_traffic(MODEL, {1: 100 - canary_share, 2: canary_share})


def test_the_first_version_is_a_new_service_with_all_the_traffic(target: Any) -> None:
    deployed = target.deploy(spec(1, Stage.CHAMPION))

    assert (deployed.stage, deployed.traffic, deployed.state) == (
        Stage.CHAMPION,
        100,
        DeployState.RUNNING,
    )
    assert deployed.url.startswith("https://v1---penguins-")
    (create,) = target.fake.calls("POST", "/services")
    assert create.query["serviceId"] == MODEL
    container = create.body["template"]["containers"][0]
    assert container["image"] == "europe-docker.pkg.dev/proj/models/penguins:v1"
    assert container["ports"] == [{"name": "http1", "containerPort": 3000}]
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    revision = create.body["template"]["revision"]
    assert revision.startswith("penguins-v1-")
    assert create.body["traffic"] == [
        {"type": 2, "revision": revision, "percent": 100, "tag": "v1"}
    ]
    assert create.body["labels"]["modelyard-stage-v1"] == "champion"
    assert target.fake.traffic(MODEL) == {revision: 100}
    assert target.status(MODEL) == [deployed]


def test_a_second_version_then_a_90_10_split(target: Any) -> None:
    target.deploy(spec(1, Stage.CHAMPION))
    second = target.deploy(spec(2, Stage.CANARY))
    assert (second.traffic, second.state) == (0, DeployState.RUNNING)
    v1, v2 = revision_of(target, 1), revision_of(target, 2)
    deploy_call = target.fake.calls("PATCH", SERVICE_PATH)[-1]
    assert deploy_call.query["updateMask"] == "labels,annotations,traffic,template"
    assert deploy_call.body["template"]["revision"] == v2
    assert deploy_call.body["traffic"] == [
        {"type": 2, "revision": v1, "percent": 100, "tag": "v1"},
        {"type": 2, "revision": v2, "tag": "v2"},  # percent 0: protobuf JSON leaves it out
    ]

    target.set_traffic(MODEL, {1: 90, 2: 10})

    split_call = target.fake.calls("PATCH", SERVICE_PATH)[-1]
    assert split_call.query["updateMask"] == "traffic"
    assert split_call.body["traffic"] == [
        {"type": 2, "revision": v1, "percent": 90, "tag": "v1"},
        {"type": 2, "revision": v2, "percent": 10, "tag": "v2"},
    ]
    assert "etag" in split_call.body  # a concurrent change would fail the update
    assert target.fake.traffic(MODEL) == {v1: 90, v2: 10}
    assert view(target) == {1: ("champion", 90), 2: ("canary", 10)}


def test_promoting_the_canary_to_100_then_removing_the_old_champion(target: Any) -> None:
    with_champion_and_canary(target, 10)
    v1, v2 = revision_of(target, 1), revision_of(target, 2)
    revisions_before = target.fake.revision_ids(MODEL)

    target.deploy(spec(2, Stage.CHAMPION))
    assert target.fake.calls("PATCH", SERVICE_PATH)[-1].query["updateMask"] == "labels"
    target.set_traffic(MODEL, {2: 100})
    removed = target.remove(MODEL, 1)

    assert [(d.version, d.traffic) for d in removed] == [(1, 0)]
    assert target.fake.calls("DELETE", f"/revisions/{v1}")
    assert target.fake.revision_ids(MODEL) == [v2]
    assert revisions_before == sorted([v1, v2])  # the promotion made no new revision
    assert target.fake.traffic(MODEL) == {v2: 100}
    assert view(target) == {2: ("champion", 100)}


def test_rolling_back_a_canary_points_the_template_back_at_the_champion(target: Any) -> None:
    with_champion_and_canary(target, 10)
    v1, v2 = revision_of(target, 1), revision_of(target, 2)
    assert target.fake.service(MODEL)["template"]["revision"] == v2

    target.set_traffic(MODEL, {1: 100})
    removed = target.remove(MODEL, 2)

    assert [(d.version, d.stage, d.traffic) for d in removed] == [(2, Stage.CANARY, 0)]
    restore = target.fake.calls("PATCH", SERVICE_PATH)[-1]
    assert restore.body["template"]["revision"] == v1
    assert restore.body["traffic"] == [{"type": 2, "revision": v1, "percent": 100, "tag": "v1"}]
    assert target.fake.revision_ids(MODEL) == [v1]  # no new revision, v2's deleted
    assert target.fake.service(MODEL)["latestReadyRevision"].endswith(f"/revisions/{v1}")
    assert view(target) == {1: ("champion", 100)}


def test_removing_a_canary_moves_its_traffic_to_the_champion(target: Any) -> None:
    with_champion_and_canary(target, 10)

    target.remove(MODEL, 2)

    assert view(target) == {1: ("champion", 100)}
    assert target.fake.traffic(MODEL) == {revision_of(target, 1): 100}


def test_removing_all_deletes_the_service(target: Any) -> None:
    with_champion_and_canary(target, 50)

    removed = target.remove(MODEL)

    assert [(d.version, d.traffic) for d in removed] == [(1, 50), (2, 50)]
    assert target.fake.calls("DELETE", SERVICE_PATH)
    assert target.fake.services == {} and target.fake.revisions == {}
    assert target.status(MODEL) == []
    assert target.remove(MODEL) == []


def test_a_shadow_gets_no_traffic_and_a_url_of_its_own_to_mirror_to(target: Any) -> None:
    target.deploy(spec(1, Stage.CHAMPION))

    shadow = target.deploy(spec(2, Stage.SHADOW))

    assert (shadow.stage, shadow.traffic, shadow.state) == (Stage.SHADOW, 0, DeployState.RUNNING)
    assert shadow.url.startswith("https://v2---penguins-")
    assert shadow.url != target.status(MODEL)[0].url
    statuses = target.fake.service(MODEL)["trafficStatuses"]
    assert {s["tag"]: s.get("percent", 0) for s in statuses} == {"v1": 100, "v2": 0}
    with pytest.raises(InvalidTraffic, match="shadow"):
        target.set_traffic(MODEL, {1: 90, 2: 10})
    assert view(target) == {1: ("champion", 100), 2: ("shadow", 0)}


def test_deploying_the_same_version_again_changes_nothing(target: Any) -> None:
    target.deploy(spec(1, Stage.CHAMPION))
    before = len(target.fake.requests)

    again = target.deploy(spec(1, Stage.CHAMPION))

    assert again.traffic == 100
    assert [r.method for r in target.fake.requests[before:]] == ["GET"]


def test_a_new_image_for_a_version_replaces_its_revision_and_keeps_its_share(
    target: Any,
) -> None:
    with_champion_and_canary(target, 10)
    old = revision_of(target, 2)

    target.deploy(spec(2, Stage.CANARY, image="europe-docker.pkg.dev/proj/models/penguins:fix"))

    new = revision_of(target, 2)
    assert new != old and new.startswith("penguins-v2-")
    assert old not in target.fake.revision_ids(MODEL)
    assert target.fake.traffic(MODEL)[new] == 10
    assert view(target) == {1: ("champion", 90), 2: ("canary", 10)}


def test_image_none_is_refused_before_any_call(target: Any) -> None:
    with pytest.raises(ImageRequired, match="gcp target runs images"):
        target.deploy(spec(1, Stage.CHAMPION, image=None))
    with pytest.raises(DeployError, match="working_dir"):
        target.deploy(
            Deployment(MODEL, 1, Stage.CHAMPION, "svc:Svc", working_dir=Path("."), image="x/y:1")
        )
    assert target.fake.requests == []


def test_unknown_versions_are_refused(target: Any) -> None:
    target.deploy(spec(1, Stage.CHAMPION))
    with pytest.raises(VersionNotDeployed):
        target.remove(MODEL, 7)
    with pytest.raises(VersionNotDeployed):
        target.set_traffic(MODEL, {1: 50, 7: 50})
    with pytest.raises(InvalidTraffic, match="sum to 90"):
        target.set_traffic(MODEL, {1: 90})


def test_a_platform_error_carries_cloud_runs_message(target: Any) -> None:
    target.deploy(spec(1, Stage.CHAMPION))
    target.deploy(spec(2, Stage.CANARY))
    message = (
        "Permission 'run.services.update' denied on resource 'penguins' (or it may not exist)."
    )
    target.fake.fail_next("PATCH", SERVICE_PATH, 403, "PERMISSION_DENIED", message)

    with pytest.raises(CloudCallFailed) as caught:
        target.set_traffic(MODEL, {1: 90, 2: 10})

    assert message in str(caught.value)
    assert "updating service" in str(caught.value)
    assert view(target) == {1: ("champion", 100), 2: ("canary", 0)}


def test_a_revision_that_does_not_start_fails_the_deploy_and_shows_failed(target: Any) -> None:
    target.deploy(spec(1, Stage.CHAMPION))
    broken = "europe-docker.pkg.dev/proj/models/penguins:broken"
    message = (
        "The user-provided container failed to start and listen on the port defined provided "
        "by the PORT=3000 environment variable within the allocated timeout."
    )
    target.fake.fail_image(broken, message)

    with pytest.raises(CloudCallFailed, match="failed to start and listen"):
        target.deploy(spec(2, Stage.CANARY, image=broken))

    states = {d.version: (d.state, d.traffic) for d in target.status(MODEL)}
    assert states == {1: (DeployState.RUNNING, 100), 2: (DeployState.FAILED, 0)}
    target.remove(MODEL, 2)  # the failed one can be cleaned up
    assert view(target) == {1: ("champion", 100)}


def test_status_of_every_model_reads_every_page_and_skips_foreign_services(
    target: Any,
) -> None:
    for model in ("penguins", "iris", "churn"):
        target.deploy(Deployment(model, 1, Stage.CHAMPION, f"{model}:b", image=f"r/{model}:1"))
    _add_foreign_service(target, "not-ours")

    found = [(d.model, d.version, d.traffic) for d in target.status()]

    assert found == [("churn", 1, 100), ("iris", 1, 100), ("penguins", 1, 100)]
    pages = target.fake.calls("GET", "/locations/europe-west1/services")
    assert len(pages) == 2  # the fake serves two services a page
    with pytest.raises(DeployError, match="not made by Modelyard"):
        target.deploy(Deployment("not-ours", 1, Stage.CHAMPION, "x:b", image="r/x:1"))


def test_a_template_cloud_run_will_not_take_back_leaves_the_old_revision(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with fake_gcp(settings) as target:
        with_champion_and_canary(target, 10)
        v1, v2 = revision_of(target, 1), revision_of(target, 2)
        # the settings changed since v1 was deployed: its rebuilt template differs
        target.settings = settings.model_copy(
            update={"gcp": settings.gcp.model_copy(update={"cpu": "2"})}
        )
        target.set_traffic(MODEL, {1: 100})

        with caplog.at_level(logging.WARNING, logger="infra.gcp.target"):
            target.remove(MODEL, 2)

        assert view(target) == {1: ("champion", 100)}
        assert target.fake.revision_ids(MODEL) == sorted([v1, v2])  # v2 kept, without traffic
        assert target.fake.traffic(MODEL) == {v1: 100}
        assert f"left revision {v2} in place" in caplog.text


def test_missing_credentials_name_what_was_looked_for(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth.compute_engine import _metadata

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    # NO_GCE_CHECK=true is read when google-auth is imported: skip the metadata server probe
    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)

    with pytest.raises(CredentialsNotFound) as caught:
        get_target("gcp", settings)

    text = str(caught.value)
    for looked_for in (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "application_default_credentials.json",
        "metadata server",
    ):
        assert looked_for in text


def test_a_credentials_file_that_is_missing_is_named(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "key.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))

    with pytest.raises(CredentialsNotFound, match=r"key\.json"):
        get_target("gcp", settings)


def test_credentials_cloud_run_refuses_are_reported_as_such(settings: Settings) -> None:
    from google.oauth2.credentials import Credentials

    from infra.gcp.target import GcpTarget

    with fake_gcp(settings) as faked:
        # a token Cloud Run does not take, that cannot be refreshed (401, then a refresh fails)
        stale = GcpTarget(settings, credentials=Credentials(token="expired-token"))
        with pytest.raises(CredentialsNotFound, match=r"no usable credentials .*refresh"):
            stale.status(MODEL)
        sent = faked.fake.requests[-1]
        assert (sent.method, sent.path.endswith(SERVICE_PATH)) == ("GET", True)


def test_a_missing_project_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth.credentials import AnonymousCredentials

    from infra.gcp.target import GcpTarget

    with pytest.raises(TargetConfigError) as caught:
        GcpTarget(Settings(home=tmp_path), credentials=AnonymousCredentials())
    assert "MODELYARD_GCP__PROJECT" in str(caught.value.hint)


def _add_foreign_service(target: Any, service_id: str) -> None:
    """A service someone else made in the same region (no Modelyard annotation)."""
    from google.cloud import run_v2

    client = target.api.services
    client.create_service(
        parent=target.parent,
        service_id=service_id,
        service=run_v2.Service(
            template={"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}
        ),
    ).result(timeout=10)
