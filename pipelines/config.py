"""The training run's configuration: YAML validated into pydantic models at the flow's boundary."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.errors import ConfigError

Task = Literal["classification", "regression"]
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
DEFAULT_ESTIMATORS: dict[str, str] = {
    "classification": "sklearn.linear_model.LogisticRegression",
    "regression": "sklearn.linear_model.Ridge",
}
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "sklearn.linear_model.LogisticRegression": {"max_iter": 1000},
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(Strict):
    """Where the rows come from: a CSV/Parquet path, or the name of a built-in data set."""

    path: str | None = None
    builtin: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DataSource:
        if (self.path is None) == (self.builtin is None):
            raise ValueError("give exactly one of data.path (CSV or Parquet) or data.builtin")
        return self

    def describe(self) -> str:
        return f"builtin:{self.builtin}" if self.builtin else str(self.path)


class EstimatorSpec(Strict):
    """Any scikit-learn-compatible estimator by import path, with its constructor parameters."""

    class_path: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class SplitSpec(Strict):
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = 42
    stratify: bool = True


class RetrainSpec(Strict):
    """What a retraining run (started by monitoring) learns from.

    ``original+labelled``: the data of the config plus the newest labelled live rows;
    ``labelled``: the labelled live rows alone; ``original``: the config's data again.
    """

    data: Literal["original+labelled", "labelled", "original"] = "original+labelled"
    labelled_rows: int = Field(default=20_000, ge=1)
    allow_new_categories: bool = True


class TrainConfig(Strict):
    """Everything one training run needs; its hash is recorded as lineage."""

    model_name: str
    data: DataSource
    target: str
    task: Task
    features: list[str] | None = None
    estimator: EstimatorSpec = Field(default_factory=EstimatorSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    metrics: list[str] | None = None
    primary_metric: str | None = None
    allow_new_categories: bool = False
    reference_rows: int = Field(default=5000, ge=10)
    intended_use: str = ""
    limitations: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)

    @field_validator("model_name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not MODEL_NAME.match(value):
            raise ValueError(
                f"model name {value!r} must start with a letter or digit and use only "
                "letters, digits, '_', '.' and '-' (at most 100 characters)"
            )
        return value

    @property
    def estimator_class_path(self) -> str:
        return self.estimator.class_path or DEFAULT_ESTIMATORS[self.task]

    @property
    def estimator_params(self) -> dict[str, Any]:
        defaults = DEFAULT_PARAMS.get(self.estimator_class_path, {})
        return {**defaults, **self.estimator.params}

    def fingerprint(self) -> str:
        """A stable hash of the configuration, for lineage."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_train_config(path: Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML file into a ``TrainConfig``; ``overrides`` (from the CLI) win over the file."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(raw).__name__}")
    return parse_train_config(merge_mappings(raw, overrides or {}), source=str(path))


def parse_train_config(raw: dict[str, Any], source: str = "arguments") -> TrainConfig:
    """Validate a mapping into a ``TrainConfig`` with one readable message per problem."""
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid training config ({source}): {problems}") from exc


def merge_mappings(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` over ``base``, merging nested mappings instead of replacing them."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_mappings(merged[key], value)
        else:
            merged[key] = value
    return merged
