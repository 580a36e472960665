"""What one model's Cloud Run service should hold, and how to get there (pure: values in, values
out; the dicts use ``google.cloud.run_v2``'s field names and become its messages in ``api``).

What the service records, per deployed version ``N`` (see ``naming`` for the names):
  * a traffic entry ``{revision, percent, tag: vN}``: the version's revision, its share, and a
    tag so it has its own URL even at 0% (a shadow is mirrored to that URL by the gateway:
    Cloud Run has no mirroring of its own);
  * a service label ``modelyard-stage-vN`` with its stage (a stage changes without a new
    revision, and a revision's labels are frozen at its creation);
  * service annotations with its image and Bento tag (to tell a redeploy from a new image).

A revision's template depends only on the version, its image and Bento tag and the ``gcp``
settings, so the template of a running revision can be rebuilt exactly: Cloud Run accepts a
template naming an existing revision when its configuration is the same, which is how the
template is pointed back at the champion when the revision it named is removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from infra.errors import DeployError
from infra.gcp.naming import (
    ANNOTATION_BENTO,
    ANNOTATION_MODEL,
    LABEL_MANAGED,
    LABEL_MODEL,
    LABEL_VERSION,
    MANAGED_BY,
    bento_annotation,
    image_annotation,
    is_own_key,
    revision_id,
    stage_label,
    version_of_tag,
    version_tag,
)
from infra.targets import DeployedVersion, Deployment, DeployState, rebalance_traffic
from registry.types import Stage

if TYPE_CHECKING:
    from modelyard.settings import GcpSettings

PORT = 3000  # BentoML's; Cloud Run sends requests there and sets PORT to it
# The Cloud Run API's enum number (kept here so this module needs no SDK).
REVISION_ALLOCATION = 2  # TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
CONTAINER_NAME = "bento"
Fields = dict[str, Any]


@dataclass(frozen=True)
class VersionRecord:
    """One deployed version as its service records it."""

    version: int
    revision: str  # the revision's id (not its full resource name)
    percent: int  # its share in the service's desired traffic
    stage: Stage
    image: str
    bento_tag: str


@dataclass(frozen=True)
class ServiceChange:
    """One update of a model's service, then the revisions to delete once it is done.

    ``template`` is a new template: a new revision, or an existing one named again (the
    champion's, when the revision the template named goes away).
    """

    records: dict[int, VersionRecord]
    template: Fields | None = None
    delete_revisions: tuple[str, ...] = ()


# --- reading a service -------------------------------------------------------------------------


def model_of(service: Any) -> str | None:
    """The registry model a service serves, or None for a service this target did not create."""
    return dict(service.annotations).get(ANNOTATION_MODEL)


def read_records(service: Any) -> dict[int, VersionRecord]:
    """The versions a ``run_v2.Service`` records: its traffic entries tagged ``vN``."""
    labels, annotations = dict(service.labels), dict(service.annotations)
    records: dict[int, VersionRecord] = {}
    for entry in service.traffic:
        version = version_of_tag(entry.tag)
        if version is None or not entry.revision:
            continue  # an entry someone else added (LATEST, another tag): not a version of ours
        records[version] = VersionRecord(
            version=version,
            revision=entry.revision,
            percent=int(entry.percent),
            stage=_stage(labels.get(stage_label(version))),
            image=annotations.get(image_annotation(version), ""),
            bento_tag=annotations.get(bento_annotation(version), ""),
        )
    return records


def template_revision(service: Any) -> str:
    """The revision the service's template names (the one a template change replaces)."""
    return str(service.template.revision)


def deployed_versions(model: str, service: Any) -> list[DeployedVersion]:
    """What ``service`` runs, as ``DeployedVersion`` values (unsorted): share and URL from its
    observed traffic (``traffic_statuses``), state from whether Cloud Run routes to it."""
    return [_deployed(model, service, record) for record in read_records(service).values()]


def _deployed(model: str, service: Any, record: VersionRecord) -> DeployedVersion:
    observed = [e for e in service.traffic_statuses if e.revision == record.revision]
    tagged = [e for e in observed if e.tag == version_tag(record.version) and e.uri]
    return DeployedVersion(
        model=model,
        version=record.version,
        stage=record.stage,
        url=tagged[0].uri if tagged else str(service.uri),
        pid=None,
        state=revision_state(service, record.revision),
        traffic=sum(int(entry.percent) for entry in observed),
        bento_tag=record.bento_tag,
    )


def revision_state(service: Any, revision: str) -> DeployState:
    """Running once Cloud Run routes to the revision (its traffic statuses list it), starting
    while the service reconciles, failed when reconciling ended without it."""
    if any(entry.revision == revision for entry in service.traffic_statuses):
        return DeployState.RUNNING
    if service.reconciling:
        return DeployState.STARTING
    return DeployState.FAILED


# --- what to send -------------------------------------------------------------------------------


def revision_template(
    service: str, revision: str, model: str, record: VersionRecord, gcp: GcpSettings
) -> Fields:
    """The ``RevisionTemplate`` that runs ``record``'s image as the revision ``revision``.

    Depends only on its arguments (never on the stage, which changes without a new revision),
    so rebuilding it for a running revision gives the configuration it was created with.
    """
    probe_action = {"port": PORT}
    return {
        "revision": revision,
        "labels": {
            LABEL_MANAGED: MANAGED_BY,
            LABEL_MODEL: service,
            LABEL_VERSION: str(record.version),
        },
        "annotations": {ANNOTATION_MODEL: model, ANNOTATION_BENTO: record.bento_tag},
        "scaling": {
            "min_instance_count": gcp.min_instances,
            "max_instance_count": gcp.max_instances,
        },
        "service_account": gcp.service_account or "",
        "containers": [
            {
                "name": CONTAINER_NAME,
                "image": record.image,
                "ports": [{"name": "http1", "container_port": PORT}],
                "env": [{"name": "BENTOML_PORT", "value": str(PORT)}],
                "resources": {"limits": {"cpu": gcp.cpu, "memory": gcp.memory}},
                # Loading a model can take a while: 150 s before the service is given up on.
                "startup_probe": {
                    "http_get": {"path": "/readyz", **probe_action},
                    "period_seconds": 5,
                    "timeout_seconds": 3,
                    "failure_threshold": 30,
                },
                "liveness_probe": {
                    "http_get": {"path": "/livez", **probe_action},
                    "period_seconds": 10,
                    "timeout_seconds": 3,
                    "failure_threshold": 3,
                },
            }
        ],
    }


def traffic_targets(model: str, records: Mapping[int, VersionRecord]) -> list[Fields]:
    """The service's ``traffic`` list: every version by revision, with its tag, by version.

    Raises ``DeployError`` when no version answers: Cloud Run routes every request somewhere
    (the shares must sum to 100), and a shadow answers nothing.
    """
    entries = [
        {
            "type_": REVISION_ALLOCATION,
            "revision": record.revision,
            "percent": record.percent,
            "tag": version_tag(version),
        }
        for version, record in sorted(records.items())
    ]
    if records and sum(record.percent for record in records.values()) != 100:
        stages = ", ".join(f"v{v} {r.stage.value}" for v, r in sorted(records.items()))
        raise DeployError(
            f"Cloud Run needs a version that answers for {model!r} (has {stages})",
            hint="deploy a champion first, or remove the shadow too",
        )
    return entries


def service_labels(
    existing: Mapping[str, str], service: str, records: Mapping[int, VersionRecord]
) -> dict[str, str]:
    """``existing`` labels with ours rewritten: managed-by, the model, a stage per version."""
    labels = {key: value for key, value in existing.items() if not is_own_key(key)}
    labels.update({LABEL_MANAGED: MANAGED_BY, LABEL_MODEL: service})
    labels.update({stage_label(v): r.stage.value for v, r in records.items()})
    return labels


def service_annotations(
    existing: Mapping[str, str], model: str, records: Mapping[int, VersionRecord]
) -> dict[str, str]:
    """``existing`` annotations with ours rewritten: the model, each version's image and Bento."""
    annotations = {key: value for key, value in existing.items() if not is_own_key(key)}
    annotations[ANNOTATION_MODEL] = model
    for version, record in records.items():
        annotations[image_annotation(version)] = record.image
        annotations[bento_annotation(version)] = record.bento_tag
    return annotations


def current_traffic(service: Any) -> list[Fields]:
    """A service's ``traffic`` in the shape :func:`traffic_targets` builds (to compare them)."""
    return [
        {
            "type_": int(entry.type_),
            "revision": entry.revision,
            "percent": int(entry.percent),
            "tag": entry.tag,
        }
        for entry in service.traffic
    ]


def update_fields(service: Any, model: str, change: ServiceChange) -> Fields:
    """The fields of ``service`` that ``change`` alters, with their new values (the update's
    body and mask); empty when the service already holds it. Raises ``DeployError`` (see
    :func:`traffic_targets`)."""
    service_name = str(service.name).rsplit("/", 1)[-1]
    wanted: Fields = {
        "labels": service_labels(service.labels, service_name, change.records),
        "annotations": service_annotations(service.annotations, model, change.records),
    }
    fields = {key: value for key, value in wanted.items() if value != dict(getattr(service, key))}
    traffic = traffic_targets(model, change.records) + foreign_tags(service, change)
    if traffic != current_traffic(service):
        fields["traffic"] = traffic
    if change.template is not None:
        fields["template"] = change.template
    return fields


def foreign_tags(service: Any, change: ServiceChange) -> list[Fields]:
    """Tag-only traffic entries someone else added (``gcloud run services update-traffic
    --set-tags``), kept unless their revision is about to be deleted. Entries of theirs with a
    share are not kept: the versions' shares alone sum to 100."""
    return [
        entry
        for entry in current_traffic(service)
        if entry["tag"]
        and version_of_tag(entry["tag"]) is None
        and entry["percent"] == 0
        and entry["revision"] not in change.delete_revisions
    ]


def new_service_fields(service: str, model: str, change: ServiceChange) -> Fields:
    """The ``Service`` that creates a model's service with ``change`` (which has a template)."""
    return {
        "labels": service_labels({}, service, change.records),
        "annotations": service_annotations({}, model, change.records),
        "template": change.template,
        "traffic": traffic_targets(model, change.records),
    }


# --- plans ------------------------------------------------------------------------------------


def plan_deploy(
    records: Mapping[int, VersionRecord],
    spec: Deployment,
    *,
    service: str,
    suffix: str,
    gcp: GcpSettings,
) -> ServiceChange:
    """Deploy ``spec`` (``spec.image`` set) beside ``records``.

    The same image and Bento of a deployed version only updates its stage. Otherwise a new
    revision keeps the version's share (0 for a new version: the first answering version of
    a model gets 100) and its previous revision, if any, is deleted afterwards.
    """
    existing = records.get(spec.version)
    image, bento_tag = str(spec.image), spec.bento_tag
    if existing is not None and (existing.image, existing.bento_tag) == (image, bento_tag):
        kept = replace(existing, stage=spec.stage)
        return ServiceChange(records=rebalanced({**records, spec.version: kept}))
    revision = revision_id(service, spec.version, suffix)
    record = VersionRecord(
        version=spec.version,
        revision=revision,
        percent=existing.percent if existing is not None else 0,
        stage=spec.stage,
        image=image,
        bento_tag=bento_tag,
    )
    return ServiceChange(
        records=rebalanced({**records, spec.version: record}),
        template=revision_template(service, revision, spec.model, record, gcp),
        delete_revisions=(existing.revision,) if existing is not None else (),
    )


def plan_traffic(records: Mapping[int, VersionRecord], shares: Mapping[int, int]) -> ServiceChange:
    """Give each version its share of ``shares`` (already validated, one per version)."""
    return ServiceChange(
        records={v: replace(r, percent=shares.get(v, 0)) for v, r in records.items()}
    )


def plan_remove(
    records: Mapping[int, VersionRecord],
    versions: Iterable[int],
    *,
    model: str,
    service: str,
    template_revision: str,
    gcp: GcpSettings,
) -> ServiceChange | None:
    """Take ``versions`` out: their traffic to the champion, then their revisions deleted.

    None when nothing would remain (the whole service goes). When the template names a
    removed revision (Cloud Run keeps the template's revision), the template is pointed back
    at the revision of the version that keeps the traffic.
    """
    gone = [records[v] for v in versions]
    remaining = rebalanced({v: r for v, r in records.items() if r not in gone})
    if not remaining:
        return None
    template = None
    if template_revision in {r.revision for r in gone}:
        keeper = template_keeper(remaining)
        template = revision_template(service, keeper.revision, model, keeper, gcp)
    return ServiceChange(
        records=remaining,
        template=template,
        delete_revisions=tuple(r.revision for r in gone),
    )


def rebalanced(records: Mapping[int, VersionRecord]) -> dict[int, VersionRecord]:
    """``records`` with shares made valid by :func:`infra.targets.rebalance_traffic`."""
    shares = rebalance_traffic(
        {v: r.percent for v, r in records.items()}, {v: r.stage for v, r in records.items()}
    )
    return {v: replace(r, percent=shares[v]) for v, r in records.items()}


def template_keeper(records: Mapping[int, VersionRecord]) -> VersionRecord:
    """The version the template falls back to: the newest champion, else the largest share."""
    champions = [r for r in records.values() if r.stage is Stage.CHAMPION]
    if champions:
        return max(champions, key=lambda r: r.version)
    return max(records.values(), key=lambda r: (r.percent, r.version))


def stages_of(records: Mapping[int, VersionRecord]) -> dict[int, Stage]:
    return {v: r.stage for v, r in records.items()}


def _stage(value: str | None) -> Stage:
    return Stage(value) if value in {s.value for s in Stage} else Stage.CANDIDATE
