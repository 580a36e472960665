"""Evaluate: held-out metrics from one table, each with the direction in which it improves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from pipelines.config import Task, TrainConfig
from pipelines.errors import ConfigError


@dataclass(frozen=True)
class Metric:
    name: str
    task: Task
    higher_is_better: bool
    compute: Callable[[Any, pd.DataFrame, pd.Series], float]


def _predicted(
    fn: Callable[..., float], **kwargs: Any
) -> Callable[[Any, pd.DataFrame, pd.Series], float]:
    return lambda model, x, y: float(fn(y, model.predict(x), **kwargs))


def _roc_auc(model: Any, x: pd.DataFrame, y: pd.Series) -> float:
    if not hasattr(model, "predict_proba"):
        return float("nan")
    proba = model.predict_proba(x)
    classes = list(model.classes_)
    if len(set(y)) < 2:
        return float("nan")
    if len(classes) == 2:
        return float(skm.roc_auc_score(y, proba[:, 1], labels=classes))
    return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))


def _rmse(model: Any, x: pd.DataFrame, y: pd.Series) -> float:
    return float(np.sqrt(skm.mean_squared_error(y, model.predict(x))))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "classification", True, _predicted(skm.accuracy_score)),
        Metric(
            "balanced_accuracy", "classification", True, _predicted(skm.balanced_accuracy_score)
        ),
        Metric(
            "f1_macro",
            "classification",
            True,
            _predicted(skm.f1_score, average="macro", zero_division=0),
        ),
        Metric("roc_auc", "classification", True, _roc_auc),
        Metric("rmse", "regression", False, _rmse),
        Metric("mae", "regression", False, _predicted(skm.mean_absolute_error)),
        Metric("r2", "regression", True, _predicted(skm.r2_score)),
    )
}
DEFAULT_METRICS: dict[str, list[str]] = {
    "classification": ["accuracy", "f1_macro", "roc_auc"],
    "regression": ["rmse", "mae", "r2"],
}


def metric_names(config: TrainConfig) -> list[str]:
    """The metrics a run computes, checked against the task. Raises ``ConfigError``."""
    names = config.metrics or DEFAULT_METRICS[config.task]
    for name in [*names, primary_metric(config)]:
        metric = METRICS.get(name)
        if metric is None:
            raise ConfigError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
        if metric.task != config.task:
            raise ConfigError(f"metric {name!r} is for {metric.task}, not {config.task}")
    return list(dict.fromkeys([*names, primary_metric(config)]))


def primary_metric(config: TrainConfig) -> str:
    return config.primary_metric or DEFAULT_METRICS[config.task][0]


def evaluate(
    model: Any, features: pd.DataFrame, target: pd.Series, names: list[str]
) -> dict[str, float]:
    """Each named metric of ``model`` on the held-out rows."""
    return {name: METRICS[name].compute(model, features, target) for name in names}
