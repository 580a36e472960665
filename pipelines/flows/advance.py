"""The ``advance`` flow: one rollout step for each model (shadow → canary steps → champion).

Deployed on a schedule (``prefect.yaml``): each run looks at the live evidence once and moves a
model one step, rolls a worse canary or shadow back, or waits. The step itself is
``pipelines.steps.rollout.advance_model``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from prefect import flow

from modelyard.settings import get_settings
from pipelines.steps.rollout import advance_model, follow_registry
from registry.promotion import open_promoter

logger = logging.getLogger(__name__)


@flow(name="advance")
async def advance(models: list[str] | None = None, sync: bool = True) -> list[dict[str, Any]]:
    """Advance each of ``models`` (default: every registered model) by one rollout step; with
    ``sync``, the deploy target (``MODELYARD_DEPLOY_TARGET``) then follows each applied change
    through its own traffic split, for the models it serves.

    Returns one ``RolloutStep`` per model as a plain dict (what changed, whether it was applied,
    the reasons and the evidence). Raises ``ModelNotFound`` for a named model that does not exist.
    """
    settings = get_settings()
    promoter = open_promoter(settings)
    names = models if models is not None else [m.name for m in promoter.registry.list_models()]
    steps = []
    for name in names:
        step = advance_model(settings, promoter, name)
        logger.info("%s: %s (%s)", name, step.change, "; ".join(step.reasons))
        if sync and step.applied:
            deployed = follow_registry(settings, name)
            logger.info("%s on %s: %s", name, settings.deploy_target, deployed)
        steps.append(asdict(step))
    return steps
