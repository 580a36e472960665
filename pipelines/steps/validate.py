"""Validate: check the rows fit the task and, for a later version, the model's data contract."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from modelyard.contract import (
    DataContract,
    Violation,
    build_contract,
    conform,
    find_violations,
    is_numeric_column,
    merge_contracts,
)
from pipelines.config import TrainConfig
from pipelines.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    """Validated rows: features conformed to the contract, the target, and the contract itself."""

    features: pd.DataFrame
    target: pd.Series
    contract: DataContract
    dropped_rows: int
    contract_changed: bool


def validate_training_data(
    frame: pd.DataFrame, config: TrainConfig, existing: DataContract | None
) -> TrainingData:
    """Check ``frame`` for ``config``; raise ``DataError`` naming the columns and bad-row counts."""
    if frame.empty:
        raise DataError("the data has no rows")
    if config.target not in frame.columns:
        raise DataError(
            f"target column {config.target!r} is not in the data; "
            f"columns are: {', '.join(map(str, frame.columns))}"
        )
    features = _feature_frame(frame, config)
    target, keep = _clean_target(frame[config.target], config)
    features, target = features[keep], target[keep]
    _check_target(target, config)
    _check_features(features)
    contract = build_contract(features, target, config.task)
    changed = False
    if existing is not None:
        _check_against(features, existing, config.allow_new_categories)
        merged = merge_contracts(existing, contract) if config.allow_new_categories else existing
        changed = merged != existing
        contract = merged
    return TrainingData(
        features=conform(features, contract),
        target=target,
        contract=contract,
        dropped_rows=int((~keep).sum()),
        contract_changed=changed,
    )


def _feature_frame(frame: pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    if config.features is None:
        return frame.drop(columns=[config.target])
    missing = [c for c in config.features if c not in frame.columns]
    if missing:
        raise DataError(f"feature column(s) not in the data: {', '.join(missing)}")
    if config.target in config.features:
        raise DataError(f"target column {config.target!r} is also listed as a feature")
    return frame[list(config.features)]


def _clean_target(target: pd.Series, config: TrainConfig) -> tuple[pd.Series, pd.Series]:
    """Rows without a label cannot be learnt from: they are dropped and counted."""
    if config.task == "regression" and not is_numeric_column(target):
        numbers = pd.to_numeric(target, errors="coerce")
        bad = target.notna() & numbers.isna()
        if bad.any():
            examples = ", ".join(repr(v) for v in target[bad].unique()[:5])
            raise DataError(
                f"regression target {config.target!r} must be numeric: {int(bad.sum())} row(s) "
                f"are not numbers (e.g. {examples}); use --task classification for labels"
            )
        target = numbers
    keep = target.notna()
    if not keep.any():
        raise DataError(f"target column {config.target!r} has no values")
    if (~keep).any():
        logger.warning("dropping %d row(s) with no %r value", int((~keep).sum()), config.target)
    return target, keep


def _check_target(target: pd.Series, config: TrainConfig) -> None:
    if config.task == "classification":
        classes = target.astype("string").nunique()
        if classes < 2:
            only = target.iloc[0]
            raise DataError(
                f"classification target {config.target!r} has a single class ({only!r}); "
                "it needs at least two"
            )
    elif target.nunique() < 2:
        raise DataError(f"regression target {config.target!r} is constant; nothing to learn")


def _check_features(features: pd.DataFrame) -> None:
    if features.shape[1] == 0:
        raise DataError("no feature columns are left besides the target")
    empty = [str(c) for c in features.columns if features[c].isna().all()]
    if empty:
        raise DataError(f"feature column(s) have no values at all: {', '.join(empty)}")
    duplicated = features.columns[features.columns.duplicated()].tolist()
    if duplicated:
        raise DataError(f"feature column(s) appear more than once: {', '.join(duplicated)}")


def _check_against(features: pd.DataFrame, contract: DataContract, allow_new: bool) -> None:
    violations = find_violations(features, contract, check_categories=not allow_new)
    if violations:
        raise DataError(
            "the data breaks the model's data contract: "
            + "; ".join(v.describe() for v in violations)
            + _advice(violations)
        )


def _advice(violations: list[Violation]) -> str:
    if any(v.kind == "unknown_category" for v in violations):
        return " (if the new categories are expected, train with allow_new_categories: true)"
    return ""
