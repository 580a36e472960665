"""Fit: one scikit-learn Pipeline (impute, encode, scale, estimate) so serving gets raw rows."""

from __future__ import annotations

import importlib
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelyard.contract import DataContract
from pipelines.config import Task
from pipelines.errors import ConfigError


def import_estimator(class_path: str, params: dict[str, Any], task: Task) -> BaseEstimator:
    """Build an estimator from ``package.module.Class`` and its params; check it fits the task."""
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name:
        raise ConfigError(
            f"estimator {class_path!r} must be a full import path, e.g. "
            "sklearn.ensemble.RandomForestClassifier"
        )
    try:
        estimator_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import estimator {class_path!r}: {exc}") from exc
    try:
        estimator = estimator_class(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for {class_path}: {exc}") from exc
    if not hasattr(estimator, "fit") or not hasattr(estimator, "predict"):
        raise ConfigError(f"{class_path} is not an estimator (it lacks fit/predict)")
    _check_task(estimator, class_path, task)
    return estimator


def _check_task(estimator: Any, class_path: str, task: Task) -> None:
    if task == "classification" and isinstance(estimator, RegressorMixin):
        raise ConfigError(f"{class_path} is a regressor; the task is classification")
    if task == "regression" and (
        isinstance(estimator, ClassifierMixin) or is_classifier(estimator)
    ):
        raise ConfigError(f"{class_path} is a classifier; the task is regression")


def build_pipeline(contract: DataContract, estimator: BaseEstimator) -> Pipeline:
    """Numeric columns: median-impute and scale; categorical: fill and one-hot (unknown ignored)."""
    numeric = [c.name for c in contract.columns if c.kind == "numeric"]
    categorical = [c.name for c in contract.columns if c.kind == "categorical"]
    transformers = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                        ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                categorical,
            )
        )
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), ("estimator", estimator)])


def fit_model(pipeline: Pipeline, features: pd.DataFrame, target: pd.Series) -> Pipeline:
    """Fit in place and return the pipeline (for chaining in the flow)."""
    pipeline.fit(features, target)
    return pipeline
