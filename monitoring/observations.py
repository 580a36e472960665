"""What live traffic says about one version: request counts, errors, latency, agreement, quality.

Pure functions over a request-level frame of the inference log (one row per request and route:
``request_id, at, version, route, latency_ms, status, predictions, labels``); the rollout step
turns these into promotion evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

Task = Literal["classification", "regression"]
SHADOW = "shadow"


@dataclass(frozen=True)
class VersionStats:
    """Observed behaviour of one version over a window; None means not measurable."""

    version: int
    requests: int
    minutes: float
    error_rate: float | None
    latency_p99_ms: float | None
    agreement_with_champion: float | None
    quality: float | None
    champion_quality: float | None

    @property
    def quality_delta(self) -> float | None:
        """This version's quality minus the champion's, positive when better."""
        if self.quality is None or self.champion_quality is None:
            return None
        return self.quality - self.champion_quality


def version_stats(
    requests: pd.DataFrame, version: int, champion: int | None, task: Task
) -> VersionStats:
    """Statistics of ``version`` (live or shadow rows) against ``champion``'s live rows."""
    own = requests[requests["version"] == version]
    answered = own[own["status"] < 500]
    champion_rows = requests[(requests["version"] == champion) & (requests["route"] != SHADOW)]
    return VersionStats(
        version=version,
        requests=len(own),
        minutes=_minutes(own),
        error_rate=float((own["status"] >= 500).mean()) if len(own) else None,
        latency_p99_ms=float(np.percentile(answered["latency_ms"], 99)) if len(answered) else None,
        agreement_with_champion=_agreement(own, champion_rows) if version != champion else None,
        quality=_quality(answered, task),
        champion_quality=_quality(_same_requests(champion_rows, own), task),
    )


def _minutes(rows: pd.DataFrame) -> float:
    if len(rows) < 2:
        return 0.0
    span = pd.to_datetime(rows["at"]).max() - pd.to_datetime(rows["at"]).min()
    return span.total_seconds() / 60.0


def _agreement(own: pd.DataFrame, champion_rows: pd.DataFrame) -> float | None:
    """Share of rows where this version and the champion predicted the same, on shared requests."""
    pairs = own.merge(champion_rows, on="request_id", suffixes=("", "_champion"))
    same = total = 0
    for mine, theirs in zip(pairs["predictions"], pairs["predictions_champion"], strict=True):
        if mine is None or theirs is None or len(mine) != len(theirs):
            continue
        same += sum(_equal(a, b) for a, b in zip(mine, theirs, strict=True))
        total += len(mine)
    return same / total if total else None


def _same_requests(champion_rows: pd.DataFrame, own: pd.DataFrame) -> pd.DataFrame:
    """The champion's rows on the requests this version also answered (shadow), or all of them
    (a canary answers other callers than the champion: both are judged on their own labels)."""
    shared = champion_rows[champion_rows["request_id"].isin(own["request_id"])]
    return shared if len(shared) else champion_rows


def _quality(rows: pd.DataFrame, task: Task) -> float | None:
    """Accuracy (classification) or negative mean absolute error (regression) on labelled rows."""
    predicted: list[Any] = []
    actual: list[Any] = []
    for predictions, labels in zip(rows["predictions"], rows["labels"], strict=True):
        if predictions is None or labels is None or len(predictions) != len(labels):
            continue
        predicted += list(predictions)
        actual += list(labels)
    if not actual:
        return None
    if task == "classification":
        return sum(_equal(p, a) for p, a in zip(predicted, actual, strict=True)) / len(actual)
    errors = [abs(float(p) - float(a)) for p, a in zip(predicted, actual, strict=True)]
    return -sum(errors) / len(errors)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b) or str(a) == str(b)
