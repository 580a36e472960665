"""What to do about a drift result: nothing, alert, or retrain. Pure, apart from reading YAML.

``drift_verdict`` takes a :class:`monitoring.drift.DriftResult`, the window's size, a
:class:`MonitoringPolicy` and optionally the change in the model's quality on labelled rows,
and returns a :class:`Verdict` with every reason spelled out. The flow that acts on it (send an
alert, start a retraining run) lives in ``pipelines/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitoring.drift import ColumnDrift, DriftResult
from monitoring.errors import MonitoringError, PolicyError
from monitoring.reference import STAT_TESTS

Action = Literal["none", "alert", "retrain"]


class _Frozen(BaseModel):
    # frozen: one policy object is shared by every window; no inf/nan: a nan threshold would
    # make every comparison silently false.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ColumnOverride(_Frozen):
    """How one column counts in the verdict (its drift test itself stays Evidently's)."""

    ignore: bool = False  # left out of the share, e.g. a column expected to move (a date part)
    # Re-judge this column's score at another threshold, in its method's direction.
    threshold: float | None = Field(default=None, gt=0)
    critical: bool = False  # drift in this column alone raises an alert


class MonitoringPolicy(_Frozen):
    """When drift (or a drop in quality) is worth an alert or a retraining run."""

    min_window_rows: int = Field(default=1000, ge=1)
    # Evidently's dataset-drift share: pass it to compute_drift; reaching it is an alert.
    drift_share: float = Field(default=0.5, gt=0, le=1)
    alert_share: float = Field(default=0.25, gt=0, le=1)
    retrain_share: float = Field(default=0.5, gt=0, le=1)
    # Largest tolerated fall of the quality metric (higher is better); None: not judged.
    max_quality_drop: float | None = Field(default=None, ge=0)
    columns: dict[str, ColumnOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _alert_before_retrain(self) -> MonitoringPolicy:
        if self.alert_share > self.retrain_share:
            raise ValueError(
                f"alert_share {self.alert_share} is above retrain_share {self.retrain_share}"
            )
        return self


@dataclass(frozen=True)
class Verdict:
    """The action to take, why, and the drift it was judged on (after column overrides)."""

    action: Action
    reasons: tuple[str, ...]
    drifted_columns: tuple[str, ...] = ()
    share: float = 0.0


def drift_verdict(
    result: DriftResult,
    window_rows: int,
    policy: MonitoringPolicy,
    quality_delta: float | None = None,
) -> Verdict:
    """Judge ``result`` under ``policy``; a window under ``min_window_rows`` never triggers.

    ``quality_delta`` is the change of the model's quality metric on the window's labelled rows
    against its reference value, higher is better (``-0.04``: four points worse).
    Raises ``MonitoringError`` when ``quality_delta`` is not a finite number.
    """
    if quality_delta is not None and not math.isfinite(quality_delta):
        raise MonitoringError(f"quality_delta must be a finite number, not {quality_delta!r}")
    if window_rows < policy.min_window_rows:
        return Verdict(
            "none",
            (f"window of {window_rows} rows is under min_window_rows {policy.min_window_rows}",),
        )
    judged = [c for c in result.columns if not _override(policy, c.column).ignore]
    drifted = [c for c in judged if _is_drifted(c, policy)]
    share = len(drifted) / len(judged) if judged else 0.0
    names = tuple(c.column for c in drifted)
    retrain = _retrain_reasons(share, len(drifted), len(judged), policy, quality_delta)
    alert = _alert_reasons(share, drifted, policy)
    if retrain:
        return Verdict("retrain", tuple(retrain + alert), names, share)
    if alert:
        return Verdict("alert", tuple(alert), names, share)
    summary = f"no action: {len(drifted)}/{len(judged)} columns drifted ({share:.0%})"
    return Verdict("none", (summary,), names, share)


def _override(policy: MonitoringPolicy, column: str) -> ColumnOverride:
    return policy.columns.get(column) or ColumnOverride()


def _is_drifted(column: ColumnDrift, policy: MonitoringPolicy) -> bool:
    threshold = _override(policy, column.column).threshold
    if threshold is None:
        return column.drifted
    return STAT_TESTS[column.method].is_drift(column.score, threshold)


def _retrain_reasons(
    share: float,
    count: int,
    judged: int,
    policy: MonitoringPolicy,
    quality_delta: float | None,
) -> list[str]:
    reasons = []
    limit = policy.max_quality_drop
    if quality_delta is not None and limit is not None and -quality_delta > limit:
        reasons.append(
            f"quality fell by {-quality_delta:.4g}, more than max_quality_drop {limit:.4g}"
        )
    if share >= policy.retrain_share:
        reasons.append(
            f"{count}/{judged} columns drifted ({share:.0%}), at or above retrain_share "
            f"{policy.retrain_share:.0%}"
        )
    return reasons


def _alert_reasons(share: float, drifted: list[ColumnDrift], policy: MonitoringPolicy) -> list[str]:
    reasons = []
    if share >= policy.drift_share:
        reasons.append(
            f"dataset drift: {share:.0%} of columns, drift_share {policy.drift_share:.0%}"
        )
    if share >= policy.alert_share:
        names = ", ".join(c.column for c in drifted)
        reasons.append(
            f"{share:.0%} of columns drifted ({names}), alert_share {policy.alert_share:.0%}"
        )
    for column in drifted:
        if _override(policy, column.column).critical:
            reasons.append(
                f"critical column {column.column!r} drifted: {column.method} score "
                f"{column.score:.4g} against threshold {column.threshold:.4g}"
            )
    return reasons


def parse_policy(raw: dict[str, Any], source: str = "arguments") -> MonitoringPolicy:
    """Validate a mapping into a ``MonitoringPolicy``.

    Raises ``PolicyError`` naming ``source`` and each bad field with what is wrong.
    """
    try:
        return MonitoringPolicy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: "
            f"{str(err['msg']).removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise PolicyError(f"invalid monitoring policy {source}: {problems}") from exc


def load_policy(path: Path) -> MonitoringPolicy:
    """Read and validate a YAML policy file; an empty file means every default.

    Raises ``PolicyError`` naming the file when it is missing, not YAML, not a mapping, or has
    invalid fields.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PolicyError(f"monitoring policy file {path} does not exist") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"monitoring policy file {path} cannot be read as YAML: {exc}") from exc
    if raw is None:
        return MonitoringPolicy()
    if not isinstance(raw, dict):
        raise PolicyError(
            f"monitoring policy file {path} must hold a mapping, not {type(raw).__name__}"
        )
    return parse_policy(raw, source=str(path))
