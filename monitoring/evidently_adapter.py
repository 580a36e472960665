"""The one module that imports Evidently: its ``DataDriftPreset`` as a ``DriftResult``, and reports.

Evidently is the reference implementation the fast path (:mod:`monitoring.drift`) is tested
against, and the renderer of the HTML report people look at. It is slow on large windows (it
recomputes the reference side and runs every column test twice, once per ``ValueDrift`` and
again for ``DriftedColumnsCount``), so reports on large windows are made on a random sample.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from modelyard.contract import ColumnKind
from monitoring.drift import ColumnDrift, DriftResult
from monitoring.errors import MissingColumnsError, ProfileError, ReportError
from monitoring.reference import STAT_TESTS, MethodName, infer_column_kinds

logger = logging.getLogger(__name__)

_METHOD_BY_DISPLAY_NAME: dict[str, MethodName] = {
    test.display_name: name for name, test in STAT_TESTS.items()
}
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COLUMNS = "evidently:metric_v2:DriftedColumnsCount"


@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written and how many rows of each side it was made from."""

    html_path: Path
    json_path: Path
    reference_rows: int
    current_rows: int
    sampled: bool


def evidently_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Mapping[str, ColumnKind] | None = None,
    *,
    drift_share: float = 0.5,
) -> DriftResult:
    """Run Evidently's ``DataDriftPreset`` (default tests) and read its verdicts from the snapshot.

    ``columns`` maps each column to test to its kind (default: every reference column, kinds as
    :func:`monitoring.reference.infer_column_kinds`). Per-column drift is the status of each
    "Value Drift" test, dataset drift that of the "Share of Drifted Columns" test.

    Raises ``MissingColumnsError`` when ``current`` lacks a column, ``ProfileError`` when
    ``reference`` does, and ``ReportError`` when Evidently fails or its snapshot is unexpected.
    """
    kinds = _kinds(reference, current, columns)
    snapshot = _run(reference, current, kinds, drift_share)
    return parse_snapshot(snapshot.dict(), kinds, drift_share, current_rows=len(current))


def write_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    html_path: Path,
    json_path: Path,
    *,
    columns: Mapping[str, ColumnKind] | None = None,
    drift_share: float = 0.5,
    sample_rows: int = 50_000,
    seed: int = 0,
) -> ReportFiles:
    """Write Evidently's drift report as HTML and JSON, on at most ``sample_rows`` rows a side.

    Sampling (uniform, without replacement, seeded) keeps a report on a million-row window at
    a few seconds; the verdicts to act on come from :func:`monitoring.drift.compute_drift` on
    all rows. Raises as :func:`evidently_drift`, and ``ReportError`` when a file cannot be written.
    """
    kinds = _kinds(reference, current, columns)
    reference_sample = _sample(reference, sample_rows, seed)
    current_sample = _sample(current, sample_rows, seed)
    with warnings.catch_warnings():
        # scipy warns on a category the reference never saw; the test's answer (drift) is right.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = _run(reference_sample, current_sample, kinds, drift_share)
    try:
        for path in (html_path, json_path):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
        snapshot.save_json(str(json_path))
    except OSError as exc:
        raise ReportError(
            f"cannot write the drift report to {html_path} / {json_path}: {exc}"
        ) from exc
    sampled = len(reference_sample) < len(reference) or len(current_sample) < len(current)
    logger.info("drift report written to %s (sampled: %s)", html_path, sampled)
    return ReportFiles(
        Path(html_path), Path(json_path), len(reference_sample), len(current_sample), sampled
    )


def _kinds(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Mapping[str, ColumnKind] | None
) -> dict[str, ColumnKind]:
    kinds = dict(columns) if columns is not None else infer_column_kinds(reference)
    absent = [name for name in kinds if name not in reference.columns]
    if absent:
        raise ProfileError(f"the reference data lacks column(s) {absent}")
    missing = [name for name in kinds if name not in current.columns]
    if missing:
        raise MissingColumnsError(missing)
    return kinds


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


def _run(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[str, ColumnKind],
    drift_share: float,
) -> Any:
    names = list(kinds)
    # Every list given, so Evidently infers no column type of its own.
    definition = DataDefinition(
        numerical_columns=[name for name in names if kinds[name] == "numeric"],
        categorical_columns=[name for name in names if kinds[name] == "categorical"],
        text_columns=[],
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
    )
    report = Report([DataDriftPreset(columns=names, drift_share=drift_share)], include_tests=True)
    try:
        return report.run(
            current_data=Dataset.from_pandas(current[names], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[names], data_definition=definition),
        )
    except Exception as exc:  # Evidently raises bare ValueError/TypeError/KeyError from deep inside
        raise ReportError(f"Evidently failed to compute data drift: {exc}") from exc


def parse_snapshot(
    payload: Mapping[str, Any],
    kinds: Mapping[str, ColumnKind],
    drift_share: float,
    current_rows: int | None = None,
) -> DriftResult:
    """A ``DriftResult`` from a ``DataDriftPreset`` snapshot's ``dict()`` (with tests included).

    Raises ``ReportError`` when a column, its test or the dataset test is absent or errored.
    """
    try:
        metrics = {metric["id"]: metric for metric in payload["metrics"]}
        statuses = {test["metric_config"]["metric_id"]: test["status"] for test in payload["tests"]}
        columns: dict[str, ColumnDrift] = {}
        dataset: tuple[float, int, bool] | None = None
        for metric_id, metric in metrics.items():
            config, status = metric["config"], statuses.get(metric_id)
            if status not in ("SUCCESS", "FAIL"):
                raise ReportError(f"test of {metric['metric_name']} has status {status!r}")
            if config["type"] == _VALUE_DRIFT:
                column = _column_drift(config, metric["value"], status == "FAIL", kinds)
                columns[column.column] = column
            elif config["type"] == _DRIFTED_COLUMNS:
                value = metric["value"]
                dataset = (float(value["share"]), int(value["count"]), status == "FAIL")
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"unexpected Evidently snapshot: {exc!r}") from exc
    absent = [name for name in kinds if name not in columns]
    if dataset is None or absent:
        raise ReportError(f"Evidently's snapshot lacks the dataset test or column(s) {absent}")
    ordered = tuple(columns[name] for name in kinds)
    share, count, drifted = dataset
    return DriftResult(ordered, drift_share, drifted, share, count, current_rows)


def _column_drift(
    config: Mapping[str, Any], score: Any, drifted: bool, kinds: Mapping[str, ColumnKind]
) -> ColumnDrift:
    name = str(config["column"])
    method = _METHOD_BY_DISPLAY_NAME.get(str(config["method"]))
    if method is None:
        raise ReportError(f"column {name!r}: unknown Evidently method {config['method']!r}")
    return ColumnDrift(name, kinds[name], method, float(score), float(config["threshold"]), drifted)
