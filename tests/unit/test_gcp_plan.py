"""What a model's Cloud Run service should hold (pure): templates, traffic lists, plans, and
reading a ``run_v2.Service`` back into versions. The dicts are checked by building the real
``run_v2`` messages from them, so a misspelt field fails here."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import run_v2

from infra.errors import DeployError
from infra.gcp.plan import (
    PORT,
    ServiceChange,
    VersionRecord,
    deployed_versions,
    model_of,
    new_service_fields,
    plan_deploy,
    plan_remove,
    plan_traffic,
    read_records,
    revision_template,
    service_annotations,
    service_labels,
    traffic_targets,
    update_fields,
)
from infra.targets import Deployment, DeployState
from modelyard.settings import GcpSettings
from registry.types import Stage

GCP = GcpSettings(project="proj-1", service_account="runner@proj-1.iam.gserviceaccount.com")
NAME = "projects/proj-1/locations/europe-west1/services/penguins"


def record(version: int, percent: int, stage: Stage, image: str = "") -> VersionRecord:
    return VersionRecord(
        version=version,
        revision=f"penguins-v{version}-abc",
        percent=percent,
        stage=stage,
        image=image or f"reg/penguins:v{version}",
        bento_tag=f"penguins:b{version}",
    )


def spec(version: int, stage: Stage, image: str | None = None) -> Deployment:
    return Deployment(
        "penguins",
        version,
        stage,
        f"penguins:b{version}",
        image=image or f"reg/penguins:v{version}",
    )


def service_holding(
    records: list[VersionRecord], *, routed: bool = True, reconciling: bool = False, **extra: Any
) -> Any:
    """A ``run_v2.Service`` as Cloud Run returns it for ``records`` (built by our own plan)."""
    change = ServiceChange(records={r.version: r for r in records})
    newest = max(records, key=lambda r: r.version)
    fields = new_service_fields(
        "penguins",
        "penguins",
        ServiceChange(
            records=change.records,
            template=revision_template("penguins", newest.revision, "penguins", newest, GCP),
        ),
    )
    statuses = [
        {**entry, "uri": f"https://{entry['tag']}---penguins-x-ew.a.run.app"}
        for entry in fields["traffic"]
    ]
    return run_v2.Service(
        {
            **fields,
            "name": NAME,
            "uri": "https://penguins-x-ew.a.run.app",
            "traffic_statuses": statuses if routed else [],
            "reconciling": reconciling,
            **extra,
        }
    )


def test_the_template_runs_the_image_on_bentoml_port_with_probes_and_settings() -> None:
    template = revision_template(
        "penguins", "penguins-v3-abc", "penguins", record(3, 0, Stage.CANARY), GCP
    )
    message = run_v2.RevisionTemplate(template)  # field names the SDK knows
    container = message.containers[0]
    assert message.revision == "penguins-v3-abc"
    assert container.image == "reg/penguins:v3"
    assert container.ports[0].container_port == PORT == 3000
    assert container.startup_probe.http_get.path == "/readyz"
    assert container.liveness_probe.http_get.path == "/livez"
    assert dict(container.resources.limits) == {"cpu": "1", "memory": "1Gi"}
    assert message.scaling.max_instance_count == 4
    assert message.service_account == "runner@proj-1.iam.gserviceaccount.com"
    assert dict(message.labels)["modelyard-version"] == "3"
    assert dict(message.annotations)["modelyard.dev/bento-tag"] == "penguins:b3"


def test_the_template_does_not_depend_on_the_stage() -> None:
    canary = revision_template("penguins", "r", "penguins", record(3, 10, Stage.CANARY), GCP)
    champion = revision_template("penguins", "r", "penguins", record(3, 100, Stage.CHAMPION), GCP)
    assert canary == champion


def test_traffic_lists_every_version_by_revision_with_its_tag() -> None:
    records = {2: record(2, 10, Stage.CANARY), 1: record(1, 90, Stage.CHAMPION)}
    assert traffic_targets("penguins", records) == [
        {"type_": 2, "revision": "penguins-v1-abc", "percent": 90, "tag": "v1"},
        {"type_": 2, "revision": "penguins-v2-abc", "percent": 10, "tag": "v2"},
    ]
    run_v2.Service(traffic=traffic_targets("penguins", records))


def test_traffic_refuses_a_model_with_only_a_shadow() -> None:
    with pytest.raises(DeployError, match="needs a version that answers"):
        traffic_targets("penguins", {2: record(2, 0, Stage.SHADOW)})


def test_the_first_version_gets_everything_and_a_template() -> None:
    change = plan_deploy({}, spec(1, Stage.CHAMPION), service="penguins", suffix="k2p", gcp=GCP)
    assert change.records[1].percent == 100
    assert change.records[1].revision == "penguins-v1-k2p"
    assert change.template is not None and change.template["revision"] == "penguins-v1-k2p"
    assert change.delete_revisions == ()


def test_a_new_version_gets_nothing_until_traffic_is_shifted() -> None:
    records = {1: record(1, 100, Stage.CHAMPION)}
    change = plan_deploy(records, spec(2, Stage.CANARY), service="penguins", suffix="x", gcp=GCP)
    assert {v: r.percent for v, r in change.records.items()} == {1: 100, 2: 0}
    assert change.template is not None
    assert change.template["containers"][0]["image"] == "reg/penguins:v2"


def test_a_new_shadow_gets_nothing_and_a_first_champion_beside_a_shadow_everything() -> None:
    shadow_first = {2: record(2, 0, Stage.SHADOW)}
    change = plan_deploy(
        shadow_first, spec(1, Stage.CHAMPION), service="penguins", suffix="x", gcp=GCP
    )
    assert {v: r.percent for v, r in change.records.items()} == {1: 100, 2: 0}


def test_the_same_image_again_only_changes_the_stage() -> None:
    records = {1: record(1, 90, Stage.CHAMPION), 2: record(2, 10, Stage.CANARY)}
    change = plan_deploy(records, spec(2, Stage.CHAMPION), service="penguins", suffix="x", gcp=GCP)
    assert change.template is None
    assert change.delete_revisions == ()
    assert change.records[2] == record(2, 10, Stage.CHAMPION)


def test_a_stage_change_to_shadow_gives_its_share_to_the_champion() -> None:
    records = {1: record(1, 90, Stage.CHAMPION), 2: record(2, 10, Stage.CANARY)}
    change = plan_deploy(records, spec(2, Stage.SHADOW), service="penguins", suffix="x", gcp=GCP)
    assert {v: r.percent for v, r in change.records.items()} == {1: 100, 2: 0}


def test_a_new_image_for_a_version_is_a_new_revision_that_keeps_its_share() -> None:
    records = {1: record(1, 90, Stage.CHAMPION), 2: record(2, 10, Stage.CANARY)}
    change = plan_deploy(
        records,
        spec(2, Stage.CANARY, image="reg/penguins:v2-rebuilt"),
        service="penguins",
        suffix="n3w",
        gcp=GCP,
    )
    assert change.records[2].revision == "penguins-v2-n3w"
    assert change.records[2].percent == 10
    assert change.delete_revisions == ("penguins-v2-abc",)


def test_traffic_plans_set_each_share() -> None:
    records = {1: record(1, 100, Stage.CHAMPION), 2: record(2, 0, Stage.CANARY)}
    change = plan_traffic(records, {1: 90, 2: 10})
    assert {v: r.percent for v, r in change.records.items()} == {1: 90, 2: 10}
    assert change.template is None


def test_removing_a_canary_gives_its_share_to_the_champion_and_deletes_its_revision() -> None:
    records = {1: record(1, 90, Stage.CHAMPION), 2: record(2, 10, Stage.CANARY)}
    change = plan_remove(
        records,
        [2],
        model="penguins",
        service="penguins",
        template_revision="penguins-v1-abc",
        gcp=GCP,
    )
    assert change is not None
    assert {v: r.percent for v, r in change.records.items()} == {1: 100}
    assert change.delete_revisions == ("penguins-v2-abc",)
    assert change.template is None


def test_removing_the_templates_revision_points_the_template_back_at_the_champions() -> None:
    champion = record(1, 90, Stage.CHAMPION)
    records = {1: champion, 2: record(2, 10, Stage.CANARY)}
    change = plan_remove(
        records,
        [2],
        model="penguins",
        service="penguins",
        template_revision="penguins-v2-abc",
        gcp=GCP,
    )
    assert change is not None
    # exactly the template the champion's revision was created from: Cloud Run accepts it
    # without creating a revision
    assert change.template == revision_template(
        "penguins", "penguins-v1-abc", "penguins", champion, GCP
    )


def test_removing_everything_deletes_the_service() -> None:
    records = {1: record(1, 100, Stage.CHAMPION)}
    assert (
        plan_remove(
            records, [1], model="penguins", service="penguins", template_revision="", gcp=GCP
        )
        is None
    )


def test_labels_and_annotations_keep_foreign_keys_and_rewrite_ours() -> None:
    existing = {"team": "ml", "modelyard-stage-v9": "canary", "modelyard-model": "old"}
    labels = service_labels(existing, "penguins", {1: record(1, 100, Stage.CHAMPION)})
    assert labels == {
        "team": "ml",
        "managed-by": "modelyard",
        "modelyard-model": "penguins",
        "modelyard-stage-v1": "champion",
    }
    annotations = service_annotations(
        {"owner": "me", "modelyard.dev/image-v9": "gone"},
        "Penguins",
        {1: record(1, 100, Stage.CHAMPION)},
    )
    assert annotations == {
        "owner": "me",
        "modelyard.dev/model": "Penguins",
        "modelyard.dev/image-v1": "reg/penguins:v1",
        "modelyard.dev/bento-tag-v1": "penguins:b1",
    }


def test_reading_a_service_back_gives_the_records_it_was_built_from() -> None:
    records = [record(1, 90, Stage.CHAMPION), record(2, 10, Stage.CANARY)]
    service = service_holding(records)
    assert model_of(service) == "penguins"
    assert read_records(service) == {1: records[0], 2: records[1]}


def test_entries_that_are_not_ours_are_not_versions() -> None:
    service = service_holding([record(1, 100, Stage.CHAMPION)])
    service.traffic.append(run_v2.TrafficTarget(type_=1, percent=0, tag="preview"))
    assert list(read_records(service)) == [1]


def test_status_comes_from_the_observed_traffic() -> None:
    service = service_holding([record(1, 90, Stage.CHAMPION), record(2, 10, Stage.CANARY)])
    found = {d.version: d for d in deployed_versions("penguins", service)}
    assert found[1].traffic == 90 and found[2].traffic == 10
    assert found[2].url == "https://v2---penguins-x-ew.a.run.app"
    assert found[2].stage is Stage.CANARY and found[2].bento_tag == "penguins:b2"
    assert {d.state for d in found.values()} == {DeployState.RUNNING}


def test_a_revision_not_routed_yet_is_starting_then_failed() -> None:
    starting = service_holding([record(1, 100, Stage.CHAMPION)], routed=False, reconciling=True)
    (only,) = deployed_versions("penguins", starting)
    assert (only.state, only.traffic, only.url) == (
        DeployState.STARTING,
        0,
        "https://penguins-x-ew.a.run.app",
    )
    failed = service_holding(
        [record(1, 100, Stage.CHAMPION)],
        routed=False,
        terminal_condition={"type": "Ready", "state": 3, "message": "container failed to start"},
    )
    assert deployed_versions("penguins", failed)[0].state is DeployState.FAILED


def test_an_unchanged_service_needs_no_update_and_a_change_only_its_fields() -> None:
    records = [record(1, 100, Stage.CHAMPION), record(2, 0, Stage.CANARY)]
    service = service_holding(records)
    same = ServiceChange(records={r.version: r for r in records})
    assert update_fields(service, "penguins", same) == {}
    shifted = plan_traffic(same.records, {1: 90, 2: 10})
    assert list(update_fields(service, "penguins", shifted)) == ["traffic"]
    promoted = ServiceChange(records={1: records[0], 2: record(2, 0, Stage.CHAMPION)})
    assert list(update_fields(service, "penguins", promoted)) == ["labels"]


def test_someone_elses_tag_only_entries_survive_our_updates() -> None:
    records = [record(1, 100, Stage.CHAMPION), record(2, 0, Stage.CANARY)]
    service = service_holding(records)
    service.traffic.append(
        run_v2.TrafficTarget(type_=2, revision="penguins-v2-abc", percent=0, tag="preview")
    )
    preview = {"type_": 2, "revision": "penguins-v2-abc", "percent": 0, "tag": "preview"}
    shifted = plan_traffic({r.version: r for r in records}, {1: 90, 2: 10})
    assert update_fields(service, "penguins", shifted)["traffic"][-1] == preview
    removed = plan_remove(
        {r.version: r for r in records},
        [2],
        model="penguins",
        service="penguins",
        template_revision="penguins-v2-abc",
        gcp=GCP,
    )
    assert removed is not None
    assert preview not in update_fields(service, "penguins", removed)["traffic"]
