"""The monitor's verdict as a Prefect event, so an automation (not polling) starts retraining.

Every monitoring run emits ``modelyard.monitor.verdict`` about the resource
``modelyard.model.<name>``. The verdict's action is a resource label as well as in the payload:
Prefect's event triggers match on resource labels, not on payloads, so the ``retrain`` deployment's
trigger (``prefect.yaml``) selects ``modelyard.verdict.action: retrain``.

Building the event is pure (:func:`verdict_event`); :func:`emit_verdict` sends it and never
raises: monitoring must not fail because no Prefect API answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

VERDICT_EVENT = "modelyard.monitor.verdict"
RESOURCE_PREFIX = "modelyard.model."
ACTION_LABEL = "modelyard.verdict.action"
VERSION_LABEL = "modelyard.model.version"
MAX_COLUMNS = 50  # Prefect refuses large events; the report holds the rest


class Judged(Protocol):
    """What a monitoring run reports (``pipelines.flows.monitor.MonitorResult`` fits)."""

    model: str
    version: int
    action: str
    drifted: bool
    drift_share: float
    window_rows: int
    drifted_columns: list[dict[str, Any]]
    reasons: list[str]
    quality_delta: float | None
    report_html: str


@dataclass(frozen=True)
class VerdictEvent:
    """The event's parts, as ``prefect.events.emit_event`` takes them."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any] = field(default_factory=dict)


def model_resource_id(model: str) -> str:
    """The Prefect resource id of a registered model: ``modelyard.model.<name>``."""
    return RESOURCE_PREFIX + model


def verdict_event(result: Judged) -> VerdictEvent:
    """The verdict of one monitoring run as a Prefect event (pure)."""
    columns = [str(c.get("column")) for c in result.drifted_columns]
    return VerdictEvent(
        event=VERDICT_EVENT,
        resource={
            "prefect.resource.id": model_resource_id(result.model),
            "prefect.resource.name": result.model,
            "prefect.resource.role": "model",
            VERSION_LABEL: str(result.version),
            ACTION_LABEL: result.action,
        },
        payload={
            "model": result.model,
            "version": result.version,
            "action": result.action,
            "drifted": result.drifted,
            "drift_share": result.drift_share,
            "window_rows": result.window_rows,
            "drifted_columns": columns[:MAX_COLUMNS],
            "reasons": list(result.reasons),
            "quality_delta": result.quality_delta,
            "report_html": result.report_html,
        },
    )


def emit_verdict(result: Judged) -> bool:
    """Send the verdict to Prefect; ``False`` (logged, never raised) when it could not be sent.

    Inside a flow run Prefect relates the event to the run and sends it in the background.
    """
    try:
        from prefect.events import emit_event

        built = verdict_event(result)
        sent = emit_event(built.event, resource=built.resource, payload=built.payload)
    except Exception as exc:  # monitoring must finish whatever happens to the event
        logger.warning("could not emit %s for %s: %s", VERDICT_EVENT, result.model, exc)
        return False
    if sent is None:
        logger.warning(
            "no Prefect events backend: %s for %s was not sent (set PREFECT_API_URL)",
            VERDICT_EVENT,
            result.model,
        )
        return False
    return True
