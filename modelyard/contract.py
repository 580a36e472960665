"""The data contract: what a model's input looked like when it was trained.

Training records it from the data of a model's first version; later training, serving and
monitoring check rows against it. It lives in the kernel because three floors read it: pipelines
(write and check), serving (reject bad requests) and monitoring (data quality).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import BaseModel, Field

ColumnKind = Literal["numeric", "categorical"]
ViolationKind = Literal["missing_column", "wrong_type", "unknown_category"]
MAX_CATEGORIES = 1000
MAX_EXAMPLES = 5


class ColumnSpec(BaseModel):
    """One input column: its kind, whether it had gaps, its categories or its observed range."""

    name: str
    kind: ColumnKind
    dtype: str
    nullable: bool = False
    categories: list[str] | None = None
    minimum: float | None = None
    maximum: float | None = None


class DataContract(BaseModel):
    """The input schema of a model: feature columns in order, plus the target it predicts."""

    columns: list[ColumnSpec]
    target: str
    task: Literal["classification", "regression"]
    classes: list[str] | None = Field(default=None, description="target classes (classification)")

    @property
    def feature_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for spec in self.columns:
            if spec.name == name:
                return spec
        raise KeyError(name)


@dataclass(frozen=True)
class Violation:
    """A way in which some rows break the contract."""

    column: str
    kind: ViolationKind
    bad_rows: int
    examples: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "missing_column":
            return f"column {self.column!r} is missing"
        shown = ", ".join(self.examples)
        if self.kind == "wrong_type":
            return f"column {self.column!r}: {self.bad_rows} row(s) are not numbers (e.g. {shown})"
        return f"column {self.column!r}: {self.bad_rows} row(s) have unknown categories ({shown})"


def is_numeric_column(series: pd.Series) -> bool:
    """Numbers (not booleans) are numeric; everything else is treated as a category."""
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def as_category_strings(series: pd.Series) -> pd.Series:
    """Categories are compared as strings, so ``1`` in a CSV and ``"1"`` in JSON are the same."""
    return series.astype("string")


def describe_column(series: pd.Series) -> ColumnSpec:
    """Record one column as seen in training data."""
    nullable = bool(series.isna().any())
    if is_numeric_column(series):
        values = series.dropna()
        return ColumnSpec(
            name=str(series.name),
            kind="numeric",
            dtype=str(series.dtype),
            nullable=nullable,
            minimum=float(values.min()) if len(values) else None,
            maximum=float(values.max()) if len(values) else None,
        )
    categories = sorted(as_category_strings(series).dropna().unique().tolist())
    return ColumnSpec(
        name=str(series.name),
        kind="categorical",
        dtype=str(series.dtype),
        nullable=nullable,
        # A free-text column has too many values to enumerate; it is then not checked.
        categories=categories if len(categories) <= MAX_CATEGORIES else None,
    )


def build_contract(
    features: pd.DataFrame, target: pd.Series, task: Literal["classification", "regression"]
) -> DataContract:
    """The contract of a training set: one spec per feature column, in order."""
    classes = None
    if task == "classification":
        classes = sorted(as_category_strings(target).dropna().unique().tolist())
    return DataContract(
        columns=[describe_column(features[name]) for name in features.columns],
        target=str(target.name),
        task=task,
        classes=classes,
    )


def find_violations(
    frame: pd.DataFrame, contract: DataContract, *, check_categories: bool = True
) -> list[Violation]:
    """Every way ``frame`` breaks ``contract``; an empty list means the rows may reach the model.

    Values outside the training range are not violations: they are drift, which monitoring judges.
    """
    violations: list[Violation] = []
    for spec in contract.columns:
        if spec.name not in frame.columns:
            violations.append(Violation(spec.name, "missing_column", len(frame)))
            continue
        found = _column_violation(frame[spec.name], spec, check_categories)
        if found is not None:
            violations.append(found)
    return violations


def _column_violation(
    series: pd.Series, spec: ColumnSpec, check_categories: bool
) -> Violation | None:
    present = series.notna()
    if spec.kind == "numeric":
        if is_numeric_column(series):
            return None
        converted = pd.to_numeric(series.where(present), errors="coerce")
        bad = present & converted.isna()
        if not bad.any():
            return None
        examples = tuple(repr(v) for v in series[bad].unique()[:MAX_EXAMPLES])
        return Violation(spec.name, "wrong_type", int(bad.sum()), examples)
    if not check_categories or spec.categories is None:
        return None
    as_text = as_category_strings(series)
    bad = present & ~as_text.isin(spec.categories)
    if not bad.any():
        return None
    examples = tuple(repr(v) for v in as_text[bad].unique()[:MAX_EXAMPLES])
    return Violation(spec.name, "unknown_category", int(bad.sum()), examples)


def conform(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """The contract's columns in order, numbers as float64 and categories as text.

    Call after :func:`find_violations` found nothing. Floats for every number let a column that
    had no gaps in training still accept a missing value later.
    """
    result = {}
    for spec in contract.columns:
        column = frame[spec.name]
        if spec.kind == "numeric":
            result[spec.name] = pd.to_numeric(column, errors="coerce").astype("float64")
        else:
            text = as_category_strings(column)
            result[spec.name] = text.astype(object).where(text.notna(), None)
    return pd.DataFrame(result, index=frame.index)


def merge_contracts(old: DataContract, new: DataContract) -> DataContract:
    """``old`` widened by what ``new`` saw: more categories, wider ranges, gaps now allowed.

    Used when a retraining run is told new categories are expected; columns stay those of ``old``.
    """
    columns = []
    for spec in old.columns:
        try:
            seen = new.column(spec.name)
        except KeyError:
            columns.append(spec)
            continue
        columns.append(_merge_column(spec, seen))
    classes = old.classes
    if old.classes is not None and new.classes is not None:
        classes = sorted(set(old.classes) | set(new.classes))
    return old.model_copy(update={"columns": columns, "classes": classes})


def _merge_column(old: ColumnSpec, new: ColumnSpec) -> ColumnSpec:
    categories = old.categories
    if old.categories is not None and new.categories is not None:
        categories = sorted(set(old.categories) | set(new.categories))
    return old.model_copy(
        update={
            "nullable": old.nullable or new.nullable,
            "categories": categories,
            "minimum": _pick(min, old.minimum, new.minimum),
            "maximum": _pick(max, old.maximum, new.maximum),
        }
    )


def _pick(
    choose: Callable[[float, float], float], a: float | None, b: float | None
) -> float | None:
    if a is None or b is None:
        return a if b is None else b
    return choose(a, b)
