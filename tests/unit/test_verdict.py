"""The drift verdict: which results lead to nothing, an alert or a retraining run, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelyard.contract import ColumnKind
from monitoring.drift import ColumnDrift, DriftResult
from monitoring.errors import MonitoringError, PolicyError
from monitoring.reference import MethodName
from monitoring.verdict import MonitoringPolicy, drift_verdict, load_policy, parse_policy

# (column, method, score): thresholds and verdicts are Evidently's defaults for the method.
Row = tuple[str, MethodName, float]
THRESHOLDS = {"wasserstein": 0.1, "jensenshannon": 0.1, "ks": 0.05, "chisquare": 0.05, "z": 0.05}
P_VALUES = {"ks", "chisquare", "z"}


def result(rows: list[Row]) -> DriftResult:
    columns = []
    for name, method, score in rows:
        threshold = THRESHOLDS[method]
        drifted = score < threshold if method in P_VALUES else score >= threshold
        kind: ColumnKind = "categorical" if name.startswith("cat") else "numeric"
        columns.append(ColumnDrift(name, kind, method, score, threshold, drifted))
    return DriftResult.from_columns(tuple(columns), drift_share=0.5, current_rows=5000)


QUIET: list[Row] = [
    ("a", "wasserstein", 0.02),
    ("b", "wasserstein", 0.05),
    ("cat", "jensenshannon", 0.01),
    ("d", "ks", 0.4),
]
ONE: list[Row] = [("a", "wasserstein", 0.3), *QUIET[1:]]  # 1/4 drifted
TWO: list[Row] = [("a", "wasserstein", 0.3), ("b", "wasserstein", 0.2), *QUIET[2:]]  # 2/4
FOUR: list[Row] = [
    ("a", "wasserstein", 0.3),
    ("b", "wasserstein", 0.2),
    ("cat", "jensenshannon", 0.4),
    ("d", "ks", 0.001),
]


@dataclass(frozen=True)
class Case:
    rows: list[Row]
    action: str
    fragments: tuple[str, ...] = ()  # each must appear in the reasons
    policy: dict[str, Any] = field(default_factory=dict)
    window: int = 5000
    quality_delta: float | None = None


IGNORE_ALL = {"columns": {name: {"ignore": True} for name in ("a", "b", "cat", "d")}}
CASES = {
    "quiet": Case(QUIET, "none", ("0/4 columns drifted",)),
    "one of four is an alert at 25%": Case(ONE, "alert", ("25% of columns drifted (a)",)),
    "one of four under a higher alert share": Case(ONE, "none", ("1/4",), {"alert_share": 0.3}),
    "half drifted: dataset drift, retrain": Case(TWO, "retrain", ("2/4 columns", "dataset drift")),
    "all drifted": Case(FOUR, "retrain", ("4/4",)),
    "a small window never triggers": Case(
        FOUR, "none", ("999 rows is under min_window_rows 1000",), window=999, quality_delta=-0.5
    ),
    "a window at the minimum is judged": Case(FOUR, "retrain", ("4/4",), window=1000),
    "quality drop over the limit": Case(
        QUIET, "retrain", ("quality fell by 0.05",), {"max_quality_drop": 0.02}, quality_delta=-0.05
    ),
    "quality drop within the limit": Case(
        QUIET, "none", (), {"max_quality_drop": 0.02}, quality_delta=-0.01
    ),
    "a quality rise is no drop": Case(
        QUIET, "none", (), {"max_quality_drop": 0.0}, quality_delta=0.1
    ),
    "quality not judged without a limit": Case(QUIET, "none", (), quality_delta=-0.9),
    "an ignored column leaves the share": Case(
        ONE, "none", ("0/3",), {"columns": {"a": {"ignore": True}}}
    ),
    "ignoring shrinks the denominator": Case(
        TWO, "retrain", ("2/2",), {"columns": {"cat": {"ignore": True}, "d": {"ignore": True}}}
    ),
    "everything ignored": Case(ONE, "none", ("0/0",), IGNORE_ALL),
    "a looser threshold on a distance": Case(
        ONE, "none", ("0/4",), {"columns": {"a": {"threshold": 0.5}}}
    ),
    "a stricter threshold on a distance": Case(
        QUIET, "alert", ("(b)",), {"columns": {"b": {"threshold": 0.04}}}
    ),
    "a p-value re-judged at a lower level": Case(
        [("d", "ks", 0.01)], "none", ("0/1",), {"columns": {"d": {"threshold": 0.001}}}
    ),
    "a critical column alone alerts": Case(
        ONE,
        "alert",
        ("critical column 'a' drifted",),
        {"alert_share": 0.5, "columns": {"a": {"critical": True}}},
    ),
    "a critical column that did not drift": Case(
        QUIET, "none", (), {"columns": {"a": {"critical": True}}}
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_drift_verdict(name: str) -> None:
    case = CASES[name]
    policy = MonitoringPolicy(**case.policy)
    verdict = drift_verdict(result(case.rows), case.window, policy, case.quality_delta)
    assert verdict.action == case.action, verdict.reasons
    assert verdict.reasons  # always says why
    text = " | ".join(verdict.reasons)
    for fragment in case.fragments:
        assert fragment in text


def test_verdict_lists_drifted_columns_and_share() -> None:
    verdict = drift_verdict(result(TWO), 5000, MonitoringPolicy())
    assert verdict.drifted_columns == ("a", "b") and verdict.share == 0.5


def test_a_non_finite_quality_delta_is_refused() -> None:
    with pytest.raises(MonitoringError, match="quality_delta must be a finite number, not nan"):
        drift_verdict(result(QUIET), 5000, MonitoringPolicy(), float("nan"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"alert_share": 0.6, "retrain_share": 0.5}, "alert_share 0.6 is above retrain_share 0.5"),
        ({"drift_shar": 0.5}, "drift_shar: Extra inputs are not permitted"),
        ({"min_window_rows": 0}, "min_window_rows: Input should be greater than or equal to 1"),
        ({"drift_share": 1.5}, "drift_share: Input should be less than or equal to 1"),
        ({"columns": {"a": {"threshold": -1}}}, "columns.a.threshold"),
        ({"max_quality_drop": float("nan")}, "max_quality_drop"),
    ],
)
def test_invalid_policies_are_refused_with_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match="invalid monitoring policy arguments") as caught:
        parse_policy(raw)
    assert message in str(caught.value)


def test_policy_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.yaml"
    path.write_text(
        "min_window_rows: 500\nalert_share: 0.2\nretrain_share: 0.4\nmax_quality_drop: 0.03\n"
        "columns:\n  day_of_week: {ignore: true}\n  amount: {critical: true, threshold: 0.2}\n",
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert (policy.min_window_rows, policy.drift_share, policy.retrain_share) == (500, 0.5, 0.4)
    assert policy.columns["day_of_week"].ignore and policy.columns["amount"].threshold == 0.2
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    assert load_policy(tmp_path / "empty.yaml") == MonitoringPolicy()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "does not exist"),
        ("[1, 2]", "must hold a mapping, not list"),
        ("a: [", "cannot be read as YAML"),
    ],
)
def test_unusable_policy_files_are_refused(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "policy.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match=message):
        load_policy(path)
