"""The fast drift path gives Evidently's own scores and verdicts, column by column.

Every comparison runs Evidently's ``DataDriftPreset`` for real (through the adapter) on the
same frames. Scores agree to float rounding: the Wasserstein distance is summed in another order
(quantile form instead of scipy's CDF form, ~1e-13 relative at worst with many ties); every other
score is computed with the same formula on the same counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from modelyard.contract import ColumnKind
from monitoring.drift import (
    DriftResult,
    compute_drift,
    ks_statistic_sorted,
    wasserstein_sorted,
)
from monitoring.errors import (
    ColumnTypeError,
    EmptyWindowError,
    MissingColumnsError,
    ProfileError,
    ReportError,
)
from monitoring.evidently_adapter import evidently_drift, parse_snapshot, write_report
from monitoring.reference import NumericProfile, ReferenceProfile, build_profile

# Evidently itself warns on these data on purpose: a new category makes an expected count of
# zero in its chi-square, and an infinite value meets its std.
pytestmark = pytest.mark.filterwarnings(
    "ignore:divide by zero encountered:RuntimeWarning",
    "ignore:invalid value encountered:RuntimeWarning",
)
RTOL = 1e-9
KINDS: dict[str, ColumnKind] = {
    "normal": "numeric",
    "skewed": "numeric",
    "few_ints": "numeric",
    "binary": "numeric",
    "city": "categorical",
    "plan": "categorical",
}


@dataclass(frozen=True)
class Scenario:
    reference_rows: int
    current_rows: int
    shift: float
    seed: int
    missing: float = 0.0  # share of missing values in two columns of each frame


def make_frame(rows: int, shift: float, seed: int, missing: float = 0.0) -> pd.DataFrame:
    """Numbers, low-cardinality ints, binaries and strings; a shift moves all and adds a city."""
    rng = np.random.default_rng(seed)
    cities = ["lyon", "oslo", "rome"] + (["nice"] if shift else [])
    frame = pd.DataFrame(
        {
            "normal": rng.normal(shift, 1.0, rows),
            "skewed": rng.exponential(1.0 + shift, rows),
            "few_ints": rng.integers(0, 4, rows),
            "binary": rng.integers(0, 2, rows),
            "city": rng.choice(cities, rows),
            "plan": rng.choice(["free", "pro"], rows, p=[0.5 + shift / 4, 0.5 - shift / 4]),
        }
    )
    if missing:
        frame.loc[rng.random(rows) < missing, "normal"] = np.nan
        frame.loc[rng.random(rows) < missing, "city"] = None
        frame.loc[0, "normal"] = np.inf  # dropped like a missing value
    return frame


SCENARIOS = {
    # > 1000 reference rows: Wasserstein for numbers, Jensen-Shannon for counts
    "large-same": Scenario(2000, 2000, 0.0, 1),
    "large-shifted-unequal-sizes": Scenario(3000, 1700, 0.4, 2),
    # <= 1000 reference rows: K-S (exact p-value), chi-square, z-test
    "small-same": Scenario(400, 400, 0.0, 3),
    "small-shifted": Scenario(500, 700, 0.3, 4),
    # K-S with a window over 10k rows: scipy's asymptotic p-value
    "small-reference-large-window": Scenario(800, 12_000, 0.1, 5),
    "missing-values-large": Scenario(2500, 1500, 0.5, 6, missing=0.1),
    "missing-values-small": Scenario(600, 900, 0.0, 7, missing=0.2),
}
EXPECTED_METHODS = {
    "large": {"normal": "wasserstein", "few_ints": "jensenshannon", "city": "jensenshannon"},
    "small": {"normal": "ks", "few_ints": "chisquare", "binary": "z", "city": "chisquare"},
}


def assert_same_result(fast: DriftResult, reference: DriftResult) -> None:
    assert [c.column for c in fast.columns] == [c.column for c in reference.columns]
    for mine, theirs in zip(fast.columns, reference.columns, strict=True):
        where = f"column {mine.column!r}"
        assert (mine.kind, mine.method, mine.threshold) == (
            theirs.kind,
            theirs.method,
            theirs.threshold,
        ), where
        assert mine.score == pytest.approx(theirs.score, rel=RTOL, abs=0.0), where
        assert mine.drifted is theirs.drifted, where
    assert (fast.count, fast.drifted, fast.drift_share) == (
        reference.count,
        reference.drifted,
        reference.drift_share,
    )
    assert fast.share == pytest.approx(reference.share, rel=1e-12)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_scores_and_verdicts_as_evidently(name: str) -> None:
    scenario = SCENARIOS[name]
    reference = make_frame(scenario.reference_rows, 0.0, scenario.seed, scenario.missing)
    current = make_frame(
        scenario.current_rows, scenario.shift, scenario.seed + 100, scenario.missing
    )

    fast = compute_drift(build_profile(reference, KINDS), current)
    evidently = evidently_drift(reference, current, KINDS)

    assert_same_result(fast, evidently)
    size = "large" if scenario.reference_rows > 1000 else "small"
    for column, method in EXPECTED_METHODS[size].items():
        assert fast.column(column).method == method, column
    if scenario.shift >= 0.3:  # the test is not vacuous: drift is found where it was made
        assert {"normal", "skewed", "city"} <= {c.column for c in fast.drifted_columns}


def test_a_window_with_new_values_changes_the_test_as_in_evidently() -> None:
    # Evidently counts distinct values over reference and window together: a numeric column
    # with 4 values in the reference gets Wasserstein (or K-S) once the window brings more.
    rng = np.random.default_rng(8)
    kinds: dict[str, ColumnKind] = {"level": "numeric"}
    for rows, method in ((3000, "wasserstein"), (300, "ks")):
        reference = pd.DataFrame({"level": rng.integers(0, 4, rows)})
        current = pd.DataFrame({"level": rng.integers(0, 9, 2000)})
        profile = build_profile(reference, kinds)
        assert profile.columns["level"].method != method  # count-based on the reference alone
        fast = compute_drift(profile, current)
        assert_same_result(fast, evidently_drift(reference, current, kinds))
        assert fast.column("level").method == method


def test_dataset_drift_at_exactly_drift_share_and_a_custom_share() -> None:
    reference = make_frame(3000, 0.0, 9)
    current = make_frame(1700, 0.4, 109)
    profile = build_profile(reference, KINDS)

    fast = compute_drift(profile, current, drift_share=0.5)
    assert fast.share == 0.5 and fast.drifted  # share >= drift_share, as Evidently's test
    strict = compute_drift(profile, current, drift_share=0.6)
    assert_same_result(strict, evidently_drift(reference, current, KINDS, drift_share=0.6))
    assert not strict.drifted


def test_a_profile_round_trips_through_its_file(tmp_path: Path) -> None:
    reference = make_frame(1500, 0.0, 10, missing=0.05)
    current = make_frame(1200, 0.3, 110, missing=0.05)
    profile = build_profile(reference, KINDS)
    for compress in (False, True):
        path = tmp_path / f"profile-{compress}.npz"
        profile.save(path, compress=compress)
        loaded = ReferenceProfile.load(path)
        assert loaded.kinds == profile.kinds and loaded.rows == profile.rows
        assert compute_drift(loaded, current) == compute_drift(profile, current)


def test_one_profile_serves_many_windows() -> None:
    reference = make_frame(2000, 0.0, 11)
    profile = build_profile(reference, KINDS)
    for seed, shift in ((111, 0.0), (112, 0.5)):
        current = make_frame(1000, shift, seed)
        fresh = compute_drift(build_profile(reference, KINDS), current)
        assert compute_drift(profile, current) == fresh
    normal = profile.columns["normal"]
    assert isinstance(normal, NumericProfile)
    assert not normal.sorted_values.flags.writeable  # shared by every window: read-only
    np.testing.assert_array_equal(normal.sorted_values, np.sort(reference["normal"].to_numpy()))


def test_kinds_are_inferred_like_the_contract() -> None:
    frame = make_frame(50, 0.0, 12).assign(flag=True)
    assert build_profile(frame).kinds == {**KINDS, "flag": "categorical"}


@pytest.mark.parametrize(("m", "k"), [(1000, 1000), (3000, 1234), (997, 20_011)])
@pytest.mark.parametrize("ties", [False, True])
def test_sorted_wasserstein_and_ks_match_scipy(m: int, k: int, ties: bool) -> None:
    rng = np.random.default_rng(m + k)
    reference, current = rng.normal(0, 1, m), rng.normal(0.2, 1.3, k)
    if ties:
        reference, current = np.round(reference, 1), np.round(current, 1)
    r, c = np.sort(reference), np.sort(current)

    assert wasserstein_sorted(r, c) == pytest.approx(
        stats.wasserstein_distance(reference, current), rel=RTOL
    )
    # scipy's exact mode rounds the statistic to a multiple of 1/lcm(m, k): compare unrounded.
    unrounded = stats.ks_2samp(reference, current, method="asymp").statistic
    assert ks_statistic_sorted(r, c) == unrounded


def test_a_window_missing_columns_is_refused_with_their_names() -> None:
    profile = build_profile(make_frame(100, 0.0, 13), KINDS)
    window = make_frame(100, 0.0, 14).drop(columns=["city", "binary"])
    with pytest.raises(MissingColumnsError) as caught:
        compute_drift(profile, window)
    assert caught.value.columns == ("binary", "city")
    assert "'binary', 'city'" in str(caught.value)


def test_an_empty_window_is_refused() -> None:
    profile = build_profile(make_frame(100, 0.0, 15), KINDS)
    with pytest.raises(EmptyWindowError, match="no rows"):
        compute_drift(profile, make_frame(0, 0.0, 16))


def test_a_column_with_no_usable_value_is_refused() -> None:
    profile = build_profile(make_frame(100, 0.0, 17), KINDS)
    window = make_frame(100, 0.0, 18).assign(normal=np.nan, city=None)
    with pytest.raises(EmptyWindowError) as caught:
        compute_drift(profile, window)
    assert caught.value.columns == ("normal", "city")


def test_text_in_a_numeric_column_is_refused() -> None:
    profile = build_profile(make_frame(100, 0.0, 19), KINDS)
    window = make_frame(100, 0.0, 20).assign(skewed="high")
    with pytest.raises(ColumnTypeError, match="'skewed' \\(dtype object\\)"):
        compute_drift(profile, window)


@pytest.mark.parametrize(
    ("frame", "kinds", "message"),
    [
        (pd.DataFrame({"a": [1.0]}), {"b": "numeric"}, r"lacks column\(s\) \['b'\]"),
        (pd.DataFrame({"a": [np.nan, np.inf]}), {"a": "numeric"}, "no finite value"),
        (pd.DataFrame({"a": ["x", "y"]}), {"a": "numeric"}, "declared numeric"),
        (pd.DataFrame({"a": [(1, 2), (3, 4)]}), {"a": "categorical"}, "of type tuple"),
    ],
)
def test_an_unusable_reference_is_refused(
    frame: pd.DataFrame, kinds: dict[str, ColumnKind], message: str
) -> None:
    with pytest.raises(ProfileError, match=message):
        build_profile(frame, kinds)


def test_a_missing_or_corrupt_profile_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        ReferenceProfile.load(tmp_path / "absent.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip archive")
    with pytest.raises(ProfileError, match="unreadable or corrupt"):
        ReferenceProfile.load(corrupt)


def test_report_is_written_on_a_sample(tmp_path: Path) -> None:
    reference = make_frame(3000, 0.0, 21)
    current = make_frame(2500, 0.5, 121)
    html, data = tmp_path / "r" / "drift.html", tmp_path / "r" / "drift.json"

    files = write_report(reference, current, html, data, columns=KINDS, sample_rows=2000)

    assert files.sampled and (files.reference_rows, files.current_rows) == (2000, 2000)
    assert html.stat().st_size > 10_000
    assert "metrics" in json.loads(data.read_text())


def test_an_unexpected_snapshot_is_refused() -> None:
    with pytest.raises(ReportError, match=r"lacks the dataset test or column\(s\) \['normal'\]"):
        parse_snapshot({"metrics": [], "tests": []}, {"normal": "numeric"}, 0.5)
    with pytest.raises(ReportError, match="unexpected Evidently snapshot"):
        parse_snapshot({"tests": []}, {"normal": "numeric"}, 0.5)
