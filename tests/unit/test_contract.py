from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelyard.contract import build_contract, conform, find_violations, merge_contracts
from tests.data_factory import messy_frame


@pytest.fixture
def contract():
    frame = messy_frame()
    return build_contract(frame.drop(columns="churned"), frame["churned"], "classification")


def test_contract_records_kinds_categories_ranges_and_gaps(contract) -> None:
    plan = contract.column("plan")
    tenure = contract.column("tenure")
    assert plan.kind == "categorical" and plan.categories == ["basic", "plus", "pro"]
    assert plan.nullable is True
    assert tenure.kind == "numeric" and tenure.minimum is not None
    assert tenure.minimum < tenure.maximum
    assert contract.classes == ["no", "yes"]
    assert contract.feature_names == ["tenure", "spend", "plan", "region"]


def test_clean_rows_have_no_violations(contract) -> None:
    assert find_violations(messy_frame(seed=1).drop(columns="churned"), contract) == []


def test_missing_column_wrong_type_and_unknown_category_are_named_with_counts(contract) -> None:
    frame = messy_frame(rows=20, seed=2).drop(columns=["churned", "region"])
    frame["spend"] = frame["spend"].astype(object)
    frame.loc[[0, 1, 2], "spend"] = "lots"
    frame.loc[[3, 4], "plan"] = "enterprise"
    found = {v.column: v for v in find_violations(frame, contract)}
    assert found["region"].kind == "missing_column"
    assert found["spend"].kind == "wrong_type" and found["spend"].bad_rows == 3
    assert "'lots'" in found["spend"].describe()
    assert found["plan"].kind == "unknown_category" and found["plan"].bad_rows == 2
    assert "'enterprise'" in found["plan"].describe()


def test_numbers_sent_as_text_are_not_violations_and_conform_to_float(contract) -> None:
    frame = pd.DataFrame(
        {
            "tenure": ["12.5", None],
            "spend": [3, 4],
            "plan": ["pro", None],
            "region": ["east", "west"],
        }
    )
    assert find_violations(frame, contract) == []
    conformed = conform(frame, contract)
    assert conformed["tenure"].dtype == np.float64
    assert conformed["tenure"].iloc[0] == 12.5 and np.isnan(conformed["tenure"].iloc[1])
    assert conformed["plan"].tolist() == ["pro", None]


def test_out_of_range_numbers_are_drift_not_violations(contract) -> None:
    frame = messy_frame(rows=5, seed=3).drop(columns="churned")
    frame["tenure"] = 10_000.0
    assert find_violations(frame, contract) == []


def test_merge_widens_categories_and_ranges_but_keeps_columns(contract) -> None:
    frame = messy_frame(rows=50, seed=4)
    frame.loc[0, "plan"] = "enterprise"
    frame.loc[1, "tenure"] = 1e6
    newer = build_contract(frame.drop(columns="churned"), frame["churned"], "classification")
    merged = merge_contracts(contract, newer)
    assert "enterprise" in merged.column("plan").categories
    assert merged.column("tenure").maximum == 1e6
    assert merged.feature_names == contract.feature_names
    assert merge_contracts(contract, contract) == contract
