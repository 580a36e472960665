"""Register: the logged model becomes a new registry version with its lineage and scores."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelyard.contract import DataContract
from pipelines.steps.tracking import LoggedRun, load_sklearn_model
from registry.audit import Action, AuditEntry
from registry.mlflow_registry import MlflowRegistry
from registry.promotion import Promoter
from registry.types import (
    CHAMPION_METRIC_TAG_PREFIX,
    METRIC_TAG_PREFIX,
    TAG_PREFIX,
    ModelVersion,
    Stage,
)

logger = logging.getLogger(__name__)
CONTRACT_VERSION_TAG = TAG_PREFIX + "contract_version"


@dataclass(frozen=True)
class ChampionScore:
    """The current champion's scores on the candidate's held-out rows."""

    version: int
    metrics: dict[str, float]
    error: str | None = None


def current_contract(registry: MlflowRegistry, name: str) -> DataContract | None:
    """The model's data contract, or None before its first version."""
    if not registry.model_exists(name):
        return None
    model = registry.get_model(name)
    number = model.tags.get(CONTRACT_VERSION_TAG)
    if number is None:
        return None
    version = registry.get_version(name, int(number))
    return registry.version_contract(version) if version.run_id else None


def current_champion(registry: MlflowRegistry, name: str) -> ModelVersion | None:
    if not registry.model_exists(name):
        return None
    return registry.version_by_alias(name, Stage.CHAMPION.value)


def load_champion(registry: MlflowRegistry, champion: ModelVersion) -> object:
    """The champion's fitted pipeline, read through the registry we were given."""
    with tempfile.TemporaryDirectory() as folder:
        local = registry.download_model(champion.name, champion.version, Path(folder))
        return load_sklearn_model(str(local))


def version_tags(
    lineage: dict[str, str],
    metrics: dict[str, float],
    directions: dict[str, str],
    champion: ChampionScore | None,
) -> dict[str, str]:
    """The version's tags: lineage, held-out metrics, the champion's scores on the same rows."""
    tags = dict(lineage)
    tags.update({METRIC_TAG_PREFIX + k: repr(v) for k, v in metrics.items()})
    tags[TAG_PREFIX + "metric_directions"] = json.dumps(directions, sort_keys=True)
    tags[TAG_PREFIX + "stage"] = Stage.CANDIDATE.value
    if champion is not None:
        tags[TAG_PREFIX + "champion_version"] = str(champion.version)
        tags.update({CHAMPION_METRIC_TAG_PREFIX + k: repr(v) for k, v in champion.metrics.items()})
        if champion.error:
            tags[TAG_PREFIX + "champion_eval_error"] = champion.error[:4000]
    return tags


def register_version(
    promoter: Promoter,
    name: str,
    run: LoggedRun,
    tags: dict[str, str],
    *,
    contract_changed: bool,
    description: str = "",
) -> tuple[ModelVersion, bool]:
    """Register ``run``'s model; the first version of a model becomes champion directly.

    The champion alias is set through the promoter, so it is claimed and audited like any
    promotion. Returns the version and whether it became champion.
    """
    registry = promoter.registry
    first = not registry.model_exists(name) or not registry.list_versions(name)
    version = registry.register_version(
        name,
        run.model_uri,
        run_id=run.run_id,
        model_id=run.model_id,
        tags=tags,
        description=description,
    )
    promoter.audit.record(
        AuditEntry(
            model=name,
            action=Action.REGISTER,
            actor=promoter.actor,
            version=version.version,
            to_stage=Stage.CANDIDATE.value,
            reason="trained",
            evidence={"run_id": run.run_id},
        )
    )
    if first or contract_changed:
        registry.set_model_tags(name, {CONTRACT_VERSION_TAG: str(version.version)})
    became_champion = False
    if first and current_champion(registry, name) is None:
        promoter.record_first_champion(name, version.version, "first version of the model")
        became_champion = True
    promoter.publish_model_card(name, version.version)
    return registry.get_version(name, version.version), became_champion
