"""The training steps as plain functions on data built in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import ConfigError, parse_train_config
from pipelines.errors import DataError
from pipelines.steps.evaluate import evaluate, metric_names
from pipelines.steps.fit import build_pipeline, fit_model, import_estimator
from pipelines.steps.lineage import data_fingerprint
from pipelines.steps.load import read_table
from pipelines.steps.split import split_data
from pipelines.steps.validate import validate_training_data
from tests.data_factory import messy_frame


def config(**overrides):
    raw = {
        "model_name": "churn",
        "data": {"path": "unused.csv"},
        "target": "churned",
        "task": "classification",
        **overrides,
    }
    return parse_train_config(raw)


# --- load -------------------------------------------------------------------------------------


def test_csv_and_parquet_read_alike_and_fingerprint_alike(tmp_path: Path) -> None:
    frame = messy_frame(rows=40)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    from_csv, from_parquet = read_table(tmp_path / "d.csv"), read_table(tmp_path / "d.parquet")
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)
    assert data_fingerprint(from_csv) == data_fingerprint(from_parquet)
    changed = from_csv.copy()
    changed.loc[0, "plan"] = "other"
    assert data_fingerprint(changed) != data_fingerprint(from_csv)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "is empty"),
        ("header.csv", "a,b,c\n", "has a header but no rows"),
        ("data.xlsx", "a\n1\n", "unknown type"),
    ],
)
def test_unreadable_files_get_their_own_message(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv does not exist"):
        read_table(tmp_path / "nope.csv")


# --- validate ---------------------------------------------------------------------------------


def test_missing_target_lists_columns() -> None:
    with pytest.raises(DataError, match=r"target column 'label' is not in the data; columns are"):
        validate_training_data(messy_frame(), config(target="label"), None)


def test_single_class_target_is_refused() -> None:
    frame = messy_frame()
    frame["churned"] = "no"
    with pytest.raises(DataError, match=r"single class \('no'\)"):
        validate_training_data(frame, config(), None)


def test_text_target_for_regression_is_refused_with_count() -> None:
    frame = messy_frame(rows=30)
    with pytest.raises(DataError, match=r"must be numeric: 30 row\(s\) are not numbers"):
        validate_training_data(frame, config(task="regression"), None)


def test_rows_without_label_are_dropped_and_counted() -> None:
    frame = messy_frame(rows=100)
    frame.loc[:9, "churned"] = np.nan
    data = validate_training_data(frame, config(), None)
    assert data.dropped_rows == 10 and len(data.target) == 90
    assert len(data.features) == 90


def test_feature_with_no_values_is_refused() -> None:
    frame = messy_frame(rows=30)
    frame["empty"] = np.nan
    with pytest.raises(DataError, match="have no values at all: empty"):
        validate_training_data(frame, config(), None)


def test_later_data_is_checked_against_the_contract() -> None:
    first = validate_training_data(messy_frame(), config(), None)
    later = messy_frame(seed=5)
    later.loc[:6, "plan"] = "enterprise"
    with pytest.raises(DataError, match=r"'plan': 7 row\(s\) have unknown categories"):
        validate_training_data(later, config(), first.contract)
    widened = validate_training_data(later, config(allow_new_categories=True), first.contract)
    assert widened.contract_changed
    assert "enterprise" in widened.contract.column("plan").categories


def test_named_features_must_exist_and_exclude_target() -> None:
    with pytest.raises(DataError, match="not in the data: ghost"):
        validate_training_data(messy_frame(), config(features=["tenure", "ghost"]), None)
    with pytest.raises(DataError, match="also listed as a feature"):
        validate_training_data(messy_frame(), config(features=["tenure", "churned"]), None)


# --- split, fit, evaluate ---------------------------------------------------------------------


def test_split_is_seeded_and_stratified() -> None:
    data = validate_training_data(messy_frame(rows=200), config(), None)
    spec = config().split
    first, again = (
        split_data(data, spec, "classification"),
        split_data(data, spec, "classification"),
    )
    assert first.test_features.index.tolist() == again.test_features.index.tolist()
    assert len(first.test_target) == 40
    share = (first.test_target == "yes").mean()
    assert abs(share - (data.target == "yes").mean()) < 0.03


def test_too_few_rows_to_split() -> None:
    data = validate_training_data(messy_frame(rows=8), config(), None)
    with pytest.raises(DataError, match="only 8 labelled row"):
        split_data(data, config().split, "classification")


def test_pipeline_learns_from_messy_rows_and_scores_raw_rows() -> None:
    cfg = config()
    data = validate_training_data(messy_frame(rows=600), cfg, None)
    split = split_data(data, cfg.split, cfg.task)
    estimator = import_estimator(cfg.estimator_class_path, cfg.estimator_params, cfg.task)
    model = fit_model(
        build_pipeline(data.contract, estimator), split.train_features, split.train_target
    )
    scores = evaluate(model, split.test_features, split.test_target, metric_names(cfg))
    assert set(scores) == {"accuracy", "f1_macro", "roc_auc"}
    assert scores["accuracy"] > 0.7  # the label depends on the features; chance is ~0.5
    raw = pd.DataFrame([{"tenure": None, "spend": 50.0, "plan": "pro", "region": None}])
    assert model.predict(raw)[0] in {"yes", "no"}


def test_regression_metrics_have_directions() -> None:
    cfg = config(task="regression", target="revenue")
    data = validate_training_data(messy_frame(rows=300, task="regression"), cfg, None)
    split = split_data(data, cfg.split, cfg.task)
    estimator = import_estimator(cfg.estimator_class_path, cfg.estimator_params, cfg.task)
    model = fit_model(
        build_pipeline(data.contract, estimator), split.train_features, split.train_target
    )
    scores = evaluate(model, split.test_features, split.test_target, metric_names(cfg))
    assert scores["r2"] > 0.5 and scores["rmse"] > 0


@pytest.mark.parametrize(
    ("class_path", "params", "task", "message"),
    [
        ("LogisticRegression", {}, "classification", "full import path"),
        ("sklearn.linear_model.Nope", {}, "classification", "cannot import estimator"),
        ("sklearn.linear_model.Ridge", {}, "classification", "is a regressor"),
        ("sklearn.ensemble.RandomForestClassifier", {}, "regression", "is a classifier"),
        ("sklearn.linear_model.Ridge", {"depth": 3}, "regression", "bad parameters"),
    ],
)
def test_estimator_errors(class_path: str, params: dict, task: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        import_estimator(class_path, params, task)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "clustering"}, "task"),
        ({"model_name": "bad/name"}, "must start with a letter or digit"),
        ({"data": {}}, "exactly one of data.path"),
        ({"split": {"test_size": 1.5}}, "split.test_size"),
        ({"surprise": 1}, "surprise"),
        ({"metrics": ["rmse"]}, "is for regression"),
        ({"primary_metric": "auc"}, "unknown metric 'auc'"),
    ],
)
def test_config_errors_name_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        metric_names(config(**overrides))
