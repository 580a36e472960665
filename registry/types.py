"""Our own types for what the registry holds; the rest of Modelyard never sees MLflow's objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

TAG_PREFIX = "modelyard."
METRIC_TAG_PREFIX = "modelyard.metric."
CHAMPION_METRIC_TAG_PREFIX = "modelyard.champion_metric."
# Artifacts every training run logs beside its model (paths inside the run).
CONTRACT_ARTIFACT = "contract.json"
MODEL_CARD_ARTIFACT = "model_card.md"
REFERENCE_ARTIFACT = "reference/reference.parquet"


class Stage(StrEnum):
    """Where a version stands in its rollout. Serving stages are MLflow aliases of the same name."""

    CANDIDATE = "candidate"
    SHADOW = "shadow"
    CANARY = "canary"
    CHAMPION = "champion"
    RETIRED = "retired"


SERVING_STAGES = (Stage.CHAMPION, Stage.CANARY, Stage.SHADOW)


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, with the aliases and tags the registry keeps for it."""

    name: str
    version: int
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    source: str = ""
    model_id: str | None = None
    created_at: datetime | None = None
    description: str = ""

    @property
    def stage(self) -> Stage:
        """The serving alias it holds, else the stage recorded in its tags, else candidate."""
        for stage in SERVING_STAGES:
            if stage.value in self.aliases:
                return stage
        recorded = self.tags.get(TAG_PREFIX + "stage")
        return Stage(recorded) if recorded in {s.value for s in Stage} else Stage.CANDIDATE

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def metrics(self) -> dict[str, float]:
        """Held-out metrics recorded by training (``modelyard.metric.<name>`` tags)."""
        return _float_tags(self.tags, METRIC_TAG_PREFIX)

    @property
    def champion_metrics(self) -> dict[str, float]:
        """The champion's metrics on this version's held-out data, recorded at training time."""
        return _float_tags(self.tags, CHAMPION_METRIC_TAG_PREFIX)


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model: its name, aliases (alias -> version) and tags."""

    name: str
    aliases: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    latest_version: int | None = None
    description: str = ""


def _float_tags(tags: dict[str, str], prefix: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, raw in tags.items():
        if key.startswith(prefix):
            try:
                values[key[len(prefix) :]] = float(raw)
            except ValueError:
                continue
    return values
