"""Promotion policies: the gates a version must pass, as YAML validated into frozen pydantic models.

One policy per model (``<folder>/<model>.yaml``), else the folder's ``default.yaml``, else
:data:`DEFAULT_POLICY`. The decisions that apply a policy live in ``registry.decisions``.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from registry.errors import RegistryError

logger = logging.getLogger(__name__)
DEFAULT_POLICY_FILE = "default.yaml"


class PolicyError(RegistryError):
    """A promotion policy file is missing, unreadable or invalid."""


class _Frozen(BaseModel):
    # frozen: DEFAULT_POLICY is shared by every caller, so nobody may mutate it in place;
    # no inf/nan: a threshold of nan would make every comparison silently pass or fail.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MetricGate(_Frozen):
    """A held-out metric of the candidate must lie within ``[min, max]`` (either bound optional)."""

    metric: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _has_a_bound(self) -> MetricGate:
        if self.min is None and self.max is None:
            raise ValueError(f"metric gate {self.metric!r} needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"metric gate {self.metric!r} has min {self.min} > max {self.max}")
        return self


class ObservationMinimum(_Frozen):
    """Evidence a stage (or one canary step) must collect before the version moves on."""

    requests: int = Field(default=100, ge=0)
    minutes: float = Field(default=5.0, ge=0.0)


class ShadowPolicy(_Frozen):
    """The shadow stage: mirrored traffic whose answers nobody receives."""

    required: bool = False
    min_observation: ObservationMinimum = Field(default_factory=ObservationMinimum)
    min_agreement_with_champion: float | None = Field(default=None, ge=0.0, le=1.0)


class CanaryPolicy(_Frozen):
    """The canary ramp: traffic shares in percent, the last one (100) meaning champion."""

    steps: tuple[int, ...] = (5, 25, 50, 100)
    min_observation: ObservationMinimum = Field(default_factory=ObservationMinimum)

    @field_validator("steps")
    @classmethod
    def _valid_steps(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps:
            raise ValueError("give at least one step; [100] means no canary ramp")
        outside = [s for s in steps if not 0 < s <= 100]
        if outside:
            raise ValueError(f"every step must be in (0, 100], got {outside}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps must be strictly increasing, got {list(steps)}")
        if steps[-1] != 100:
            raise ValueError(f"the last step must be 100, got {steps[-1]}")
        return steps


class RollbackTriggers(_Frozen):
    """A shadow or canary that exceeds any of these is rolled back; unset means no trigger.

    ``max_quality_drop`` is an absolute drop of the quality metric on labelled feedback, relative
    to the champion on the same requests (0.02 = two points of accuracy worse).
    """

    max_error_rate: float | None = Field(default=0.05, ge=0.0, le=1.0)
    max_latency_p99_ms: float | None = Field(default=None, gt=0.0)
    max_quality_drop: float | None = Field(default=None, ge=0.0)
    max_prediction_drift: float | None = Field(default=None, ge=0.0)


class PromotionPolicy(_Frozen):
    """Every gate between registration and champion, and when to roll back."""

    metric_gates: tuple[MetricGate, ...] = ()
    # Negative values tolerate a slightly worse candidate; 0.0 means "not worse".
    min_improvement: float = 0.0
    behavioural_checks: tuple[str, ...] = ()
    max_latency_ms: float | None = Field(default=None, gt=0.0)
    require_approval_for_champion: bool = True
    shadow: ShadowPolicy = Field(default_factory=ShadowPolicy)
    canary: CanaryPolicy = Field(default_factory=CanaryPolicy)
    rollback: RollbackTriggers = Field(default_factory=RollbackTriggers)

    @field_validator("metric_gates")
    @classmethod
    def _one_gate_per_metric(cls, gates: tuple[MetricGate, ...]) -> tuple[MetricGate, ...]:
        names = [g.metric for g in gates]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"one gate per metric; repeated: {', '.join(repeated)}")
        return gates

    @field_validator("behavioural_checks")
    @classmethod
    def _named_checks(cls, checks: tuple[str, ...]) -> tuple[str, ...]:
        if any(not c.strip() for c in checks):
            raise ValueError("behavioural check names must not be empty")
        if len(set(checks)) != len(checks):
            raise ValueError(f"behavioural checks are repeated: {list(checks)}")
        return checks


DEFAULT_POLICY = PromotionPolicy()


def load_policy(path: Path) -> PromotionPolicy:
    """Read and validate one policy file; an empty file means every default.

    Raises ``PolicyError`` naming the file when it is missing, not YAML, not a mapping, or has
    invalid fields (each bad field named with what is wrong).
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PolicyError(f"promotion policy file {path} does not exist") from exc
    except OSError as exc:
        raise PolicyError(f"promotion policy file {path} cannot be read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"promotion policy file {path} is not valid YAML: {exc}") from exc
    if raw is None:
        return DEFAULT_POLICY
    if not isinstance(raw, dict):
        raise PolicyError(
            f"promotion policy file {path} must hold a mapping of fields, not {type(raw).__name__}"
        )
    return parse_policy(raw, source=str(path))


def parse_policy(raw: dict[str, Any], source: str = "arguments") -> PromotionPolicy:
    """Validate a mapping into a ``PromotionPolicy``.

    Raises ``PolicyError`` naming ``source`` and each bad field with what is wrong.
    """
    try:
        return PromotionPolicy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise PolicyError(
            f"invalid promotion policy {source}: {problems}",
            hint="registry/policies/default.yaml documents every field",
        ) from exc


def policy_for(model_name: str, folder: Path | None) -> PromotionPolicy:
    """The policy of ``model_name``: ``<folder>/<model_name>.yaml``, else ``<folder>/default.yaml``,
    else :data:`DEFAULT_POLICY`.

    Raises ``PolicyError`` when the chosen file is invalid or the name is not a plain file name.
    """
    if folder is None:
        return DEFAULT_POLICY
    # The name becomes a file name: refuse anything that could walk out of the folder.
    if not model_name or Path(model_name).name != model_name or model_name.startswith("."):
        raise PolicyError(f"model name {model_name!r} cannot name a policy file")
    for candidate in (folder / f"{model_name}.yaml", folder / DEFAULT_POLICY_FILE):
        if candidate.is_file():
            logger.debug("promotion policy of %s: %s", model_name, candidate)
            return load_policy(candidate)
    return DEFAULT_POLICY


def _describe(err: Any) -> str:
    location = ".".join(str(part) for part in err["loc"]) or "policy"
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field (check the spelling against default.yaml)"
    return f"{location}: {message}"
