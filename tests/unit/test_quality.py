from __future__ import annotations

import numpy as np
import pandas as pd

from modelyard.contract import build_contract
from monitoring.quality import data_quality


def test_gaps_new_categories_and_out_of_range_are_counted() -> None:
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "b"]})
    contract = build_contract(train, pd.Series([0, 1, 0, 1], name="y"), "classification")
    window = pd.DataFrame({"x": [0.5, 2.0, np.nan, 9.0, 10.0], "c": ["a", "z", "z", None, "q"]})
    quality = {q.column: q for q in data_quality(window, contract)}
    assert (quality["x"].missing, quality["x"].below_range, quality["x"].above_range) == (1, 1, 2)
    assert quality["x"].out_of_range == 3 and quality["x"].missing_share == 0.2
    assert quality["c"].new_categories == ("q", "z") and quality["c"].new_category_rows == 3
    assert quality["c"].missing == 1


def test_columns_absent_from_the_window_are_skipped() -> None:
    train = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    contract = build_contract(train, pd.Series([0, 1], name="y"), "classification")
    assert [q.column for q in data_quality(pd.DataFrame({"x": [1.0]}), contract)] == ["x"]
