"""Reading versions back from their Deployments (pure): what ``status`` reports, and whether a
rollout is done, still going, or has failed (the checks ``kubectl rollout status`` makes)."""

from __future__ import annotations

import logging
from typing import Any

from infra.kubernetes.manifests import (
    BENTO_KEY,
    MODEL_APP,
    MODEL_KEY,
    NAME_LABEL,
    STAGE_KEY,
    TRAFFIC_KEY,
    VERSION_KEY,
    Manifest,
    service_url,
)
from infra.targets import DeployedVersion, DeployState
from registry.types import Stage

logger = logging.getLogger(__name__)

DEFAULT_PORT = 3000


def deployed_version(deployment: Manifest) -> DeployedVersion | None:
    """The version a Deployment runs, as its labels, annotations and status say.

    None for a Deployment that is not a Modelyard model version, or whose ``modelyard.dev/*``
    keys were edited into something unreadable (logged, and then ignored).
    """
    metadata = deployment.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    if labels.get(NAME_LABEL) != MODEL_APP:
        return None
    try:
        version = int(labels[VERSION_KEY])
        model = str(annotations[MODEL_KEY])
        stage = Stage(annotations[STAGE_KEY])
        traffic = min(100, max(0, int(annotations.get(TRAFFIC_KEY, "0"))))
    except (KeyError, ValueError) as exc:
        logger.warning("ignoring Deployment %s: unreadable %s", metadata.get("name"), exc)
        return None
    state, _ = rollout_progress(deployment)
    answering = _ready_replicas(deployment) >= 1
    return DeployedVersion(
        model=model,
        version=version,
        stage=stage,
        url=service_url(metadata["name"], metadata.get("namespace", "default"), _port(deployment)),
        pid=None,
        # Pods of the previous image still answer while a new one rolls out (or fails to).
        state=DeployState.RUNNING if answering else state,
        traffic=traffic,
        bento_tag=str(annotations.get(BENTO_KEY, "")),
    )


def rollout_progress(deployment: Manifest) -> tuple[DeployState, str]:
    """Whether the Deployment's latest spec runs: RUNNING when done, FAILED with the
    controller's message, else STARTING with what is awaited.

    A Deployment that has no status yet (just created, or read from a file) is STARTING.
    """
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return DeployState.STARTING, "the controller has not seen the new spec yet"
    failure = _failure(status.get("conditions") or [])
    if failure:
        return DeployState.FAILED, failure
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if updated < wanted:
        return DeployState.STARTING, f"{updated} of {wanted} pods updated"
    if status.get("replicas", 0) > updated:
        return DeployState.STARTING, "old pods are still terminating"
    available = status.get("availableReplicas", 0)
    if available < updated:
        return DeployState.STARTING, f"{available} of {updated} updated pods available"
    return DeployState.RUNNING, "rolled out"


def _failure(conditions: list[dict[str, Any]]) -> str:
    """The message of a condition that means the rollout gave up, else ''."""
    for condition in conditions:
        kind, reason = condition.get("type"), condition.get("reason")
        deadline = kind == "Progressing" and reason == "ProgressDeadlineExceeded"
        replica_failure = kind == "ReplicaFailure" and condition.get("status") == "True"
        if deadline or replica_failure:
            return str(condition.get("message") or reason or kind)
    return ""


def _ready_replicas(deployment: Manifest) -> int:
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


def _port(deployment: Manifest) -> int:
    """The port of the container's ``http`` port, which its Service also uses."""
    template = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in template.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return DEFAULT_PORT
