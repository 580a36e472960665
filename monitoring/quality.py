"""Data quality of a window against the model's contract: gaps, new categories, out-of-range.

Pure: takes the contract (recorded at training) and a window of input rows, returns counts.
Out-of-range and new-category rows are not errors here (serving already refused what breaks the
contract): they are signs that the world moved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from modelyard.contract import ColumnSpec, DataContract, as_category_strings


@dataclass(frozen=True)
class ColumnQuality:
    column: str
    rows: int
    missing: int
    new_categories: tuple[str, ...] = ()
    new_category_rows: int = 0
    below_range: int = 0
    above_range: int = 0

    @property
    def missing_share(self) -> float:
        return self.missing / self.rows if self.rows else 0.0

    @property
    def out_of_range(self) -> int:
        return self.below_range + self.above_range


def data_quality(window: pd.DataFrame, contract: DataContract) -> list[ColumnQuality]:
    """One ``ColumnQuality`` per contract column present in ``window``."""
    return [
        _column_quality(window[spec.name], spec)
        for spec in contract.columns
        if spec.name in window.columns
    ]


def _column_quality(series: pd.Series, spec: ColumnSpec) -> ColumnQuality:
    present = series.notna()
    base = ColumnQuality(spec.name, len(series), int((~present).sum()))
    if spec.kind == "numeric":
        numbers = pd.to_numeric(series, errors="coerce")
        below = int((numbers < spec.minimum).sum()) if spec.minimum is not None else 0
        above = int((numbers > spec.maximum).sum()) if spec.maximum is not None else 0
        return replace(base, below_range=below, above_range=above)
    if spec.categories is None:
        return base
    text = as_category_strings(series)
    unseen = present & ~text.isin(spec.categories)
    found = tuple(sorted(text[unseen].dropna().unique().tolist())[:20])
    return replace(base, new_categories=found, new_category_rows=int(unseen.sum()))
