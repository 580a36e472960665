"""The fast drift path: a window against a precomputed reference profile, Evidently's verdicts.

Each column gets the test Evidently 0.7's ``DataDriftPreset`` would choose
(:func:`monitoring.reference.choose_method`) and the same score: normed Wasserstein distance,
Kolmogorov-Smirnov p-value, Jensen-Shannon distance, chi-square or z-test p-value. The dataset
drifts when the share of drifted columns reaches ``drift_share``, as Evidently's "Share of
Drifted Columns" test decides. Only the window is sorted or counted; the reference side comes
from the profile.

Wasserstein-1 uses the quantile form ``W1 = integral over t of |Q_ref(t) - Q_cur(t)|``: both
quantile functions are constant between the points ``i/m`` and ``j/k``, whose merged grid
depends only on the two sample sizes, so it is built once per size pair and every column of
that size reuses it. This equals scipy's CDF form (what Evidently calls) up to float rounding.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from modelyard.contract import ColumnKind
from monitoring.errors import ColumnTypeError, EmptyWindowError, MissingColumnsError
from monitoring.reference import (
    STAT_TESTS,
    CategoricalProfile,
    ColumnProfile,
    CountArray,
    FloatArray,
    MethodName,
    NumericProfile,
    ReferenceProfile,
    category_counts,
    choose_method,
    finite_values,
)

logger = logging.getLogger(__name__)

# scipy's ks_2samp computes the exact p-value when both samples have at most this many values.
KS_EXACT_MAX_N = 10_000
# Evidently divides the Wasserstein distance by max(std of reference, this).
MIN_WASSERSTEIN_NORM = 0.001


@dataclass(frozen=True)
class ColumnDrift:
    """One column's test: which one, its score, the threshold and Evidently's verdict."""

    column: str
    kind: ColumnKind
    method: MethodName
    score: float
    threshold: float
    drifted: bool

    @property
    def method_display_name(self) -> str:
        return STAT_TESTS[self.method].display_name


@dataclass(frozen=True)
class DriftResult:
    """Per-column drift and the dataset-level verdict (share of drifted columns >= drift_share)."""

    columns: tuple[ColumnDrift, ...]
    drift_share: float
    drifted: bool
    share: float
    count: int
    current_rows: int | None = None

    @classmethod
    def from_columns(
        cls, columns: tuple[ColumnDrift, ...], drift_share: float, current_rows: int | None = None
    ) -> DriftResult:
        """Evidently's dataset rule (``legacy/calculations/data_drift.py:get_dataset_drift``)."""
        count = sum(1 for column in columns if column.drifted)
        share = count / len(columns)
        return cls(columns, drift_share, share >= drift_share, share, count, current_rows)

    @property
    def drifted_columns(self) -> tuple[ColumnDrift, ...]:
        return tuple(column for column in self.columns if column.drifted)

    def column(self, name: str) -> ColumnDrift:
        """The result of column ``name``; raises ``KeyError`` when it was not tested."""
        for column in self.columns:
            if column.column == name:
                return column
        raise KeyError(name)


def compute_drift(
    profile: ReferenceProfile, current: pd.DataFrame, *, drift_share: float = 0.5
) -> DriftResult:
    """Test each profiled column of ``current`` against ``profile``; other columns are ignored.

    Missing and infinite values are dropped first, as Evidently does.

    Raises ``EmptyWindowError`` when the window has no rows or a column has no usable value,
    ``MissingColumnsError`` naming the profiled columns the window lacks, and
    ``ColumnTypeError`` naming numeric columns whose values are not numbers.
    """
    windows = _window_values(profile, current)
    grids = _GridCache()
    results: dict[str, ColumnDrift] = {}
    # Columns of equal sizes share one quantile grid: visit them together.
    numeric = [c for c in profile.columns.values() if isinstance(c, NumericProfile)]
    for column in sorted(numeric, key=lambda c: (c.count, windows[c.name].size)):
        results[column.name] = _numeric_drift(column, windows[column.name], grids)
    for name, profiled in profile.columns.items():
        if isinstance(profiled, CategoricalProfile):
            results[name] = _categorical_drift(profiled, windows[name])
    ordered = tuple(results[name] for name in profile.columns)
    return DriftResult.from_columns(ordered, drift_share, current_rows=len(current))


def _window_values(profile: ReferenceProfile, current: pd.DataFrame) -> dict[str, Any]:
    """Each profiled column's usable window values: finite floats, or category counts."""
    if len(current) == 0:
        raise EmptyWindowError()
    missing = [name for name in profile.columns if name not in current.columns]
    if missing:
        raise MissingColumnsError(missing)
    wrong = [
        (name, str(current[name].dtype))
        for name, column in profile.columns.items()
        if column.kind == "numeric" and not pd.api.types.is_numeric_dtype(current[name])
    ]
    if wrong:
        raise ColumnTypeError(wrong)
    values: dict[str, Any] = {}
    for name, column in profile.columns.items():
        series = current[name]
        values[name] = (
            finite_values(series) if column.kind == "numeric" else category_counts(series)
        )
    empty = [name for name, found in values.items() if len(found) == 0]
    if empty:
        raise EmptyWindowError(empty)
    return values


def _verdict(column: ColumnProfile, method: MethodName, score: float) -> ColumnDrift:
    test = STAT_TESTS[method]
    drifted = test.is_drift(score, test.threshold)
    return ColumnDrift(column.name, column.kind, method, score, test.threshold, drifted)


def _numeric_drift(column: NumericProfile, window: FloatArray, grids: _GridCache) -> ColumnDrift:
    if column.values is None or column.counts is None:  # many distinct values: W1 or K-S
        method = choose_method("numeric", column.count, column.n_unique)
        return _distribution_drift(column, window, method, grids)
    # Few distinct values in the reference: the window's own values decide the test.
    distinct, window_counts = np.unique(window, return_counts=True)
    keys = np.union1d(column.values, distinct)
    method = choose_method("numeric", column.count, int(keys.size))
    if method in ("wasserstein", "ks"):
        return _distribution_drift(column, window, method, grids)
    reference = _aligned(keys, column.values, column.counts)
    return _verdict(
        column, method, count_test(method, reference, _aligned(keys, distinct, window_counts))
    )


def _distribution_drift(
    column: NumericProfile, window: FloatArray, method: MethodName, grids: _GridCache
) -> ColumnDrift:
    ordered = np.sort(window)
    if method == "ks":
        return _verdict(column, method, ks_pvalue_sorted(column.sorted_values, ordered))
    w1 = wasserstein_sorted(column.sorted_values, ordered, grids)
    return _verdict(column, method, w1 / max(column.std, MIN_WASSERSTEIN_NORM))


def _aligned(keys: FloatArray, values: FloatArray, counts: CountArray) -> CountArray:
    """``counts`` of ``values`` laid out on the sorted ``keys`` (zero where a key is absent)."""
    out = np.zeros(keys.size, dtype=np.int64)
    out[np.searchsorted(keys, values)] = counts
    return out


def _categorical_drift(column: CategoricalProfile, window: dict[Any, int]) -> ColumnDrift:
    reference = dict(zip(column.categories, column.counts.tolist(), strict=True))
    keys = list(reference) + [key for key in window if key not in reference]
    method = choose_method("categorical", column.count, len(keys))
    ref_counts = np.array([reference.get(key, 0) for key in keys], dtype=np.int64)
    window_counts = np.array([window.get(key, 0) for key in keys], dtype=np.int64)
    return _verdict(column, method, count_test(method, ref_counts, window_counts))


def count_test(method: MethodName, reference: CountArray, current: CountArray) -> float:
    """Score of a count-based test on counts aligned by category (every category seen once).

    Jensen-Shannon (natural log) on the two frequency vectors (``stattests/jensenshannon.py``,
    through ``utils.get_binned_data``); chi-square with expected counts scaled from the reference
    (``stattests/chisquare_stattest.py``): a category the reference never saw makes the
    statistic infinite and the p-value 0; z-test on the share of the first (smallest) key
    (``stattests/z_stattest.py``).
    """
    n_ref, n_cur = int(reference.sum()), int(current.sum())
    if method == "jensenshannon":
        return float(distance.jensenshannon(reference / n_ref, current / n_cur))
    if method == "chisquare":
        expected = reference * (n_cur / n_ref)
        # An unseen category divides by a zero expectation: scipy warns, the p-value is 0.
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(stats.chisquare(current, expected)[1])
    if method == "z":
        return _z_test_pvalue(reference, current)
    raise ValueError(f"{method!r} is not a count-based test")


def _z_test_pvalue(reference: CountArray, current: CountArray) -> float:
    n1, n2 = int(reference.sum()), int(current.sum())
    if reference.size == 1:  # one value, the same on both sides
        return 1.0
    # Share of rows that are not the first key, with Evidently's exact arithmetic.
    p1 = float(n1 - int(reference[0])) / n1
    p2 = float(n2 - int(current[0])) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


class _GridCache:
    """The quantile grid of the last (reference size, window size) pair; one is enough."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._grid: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray] | None = None

    def get(self, m: int, k: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray]:
        if self._key != (m, k) or self._grid is None:
            self._grid = None  # free the old grid before building the next
            self._grid = _quantile_grid(m, k)
            self._key = (m, k)
        return self._grid


def _quantile_grid(m: int, k: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray]:
    """For each interval where both quantile functions are constant: the two indices and its width.

    In units of ``1/(m*k)`` the breakpoints are ``i*k`` and ``j*m``; on the interval starting at
    ``s`` the reference quantile is ``ref[s // k]`` and the window's ``cur[s // m]``.
    """
    starts = np.concatenate([np.arange(m, dtype=np.int64) * k, np.arange(k, dtype=np.int64) * m])
    # A stable sort of two sorted runs is a linear merge (np.union1d hashes: ~400x slower here).
    starts.sort(kind="stable")
    starts = starts[np.diff(starts, prepend=np.int64(-1)) != 0]
    widths = np.diff(starts, append=np.int64(m) * k) / (float(m) * float(k))
    return (starts // k).astype(np.intp), (starts // m).astype(np.intp), widths


def wasserstein_sorted(
    reference: FloatArray, current: FloatArray, grids: _GridCache | None = None
) -> float:
    """W1 distance of two sorted samples (what ``scipy.stats.wasserstein_distance`` returns)."""
    m, k = reference.size, current.size
    if m == k:  # both quantile functions step at the same points
        return float(np.abs(reference - current).sum() / m)
    ref_index, cur_index, widths = (grids or _GridCache()).get(m, k)
    gaps = reference[ref_index]
    gaps -= current[cur_index]
    np.abs(gaps, out=gaps)
    # Multiply and sum rather than np.dot: BLAS may thread the dot product, which stalls for
    # milliseconds on a busy 2-core machine and makes the last bits depend on the thread count.
    np.multiply(gaps, widths, out=gaps)
    return float(gaps.sum())


def ks_statistic_sorted(reference: FloatArray, current: FloatArray) -> float:
    """Two-sided K-S statistic ``max |F_ref - F_cur|`` of two sorted samples.

    Both ECDFs are right-continuous steps, so the supremum is reached at the last copy of a
    sample value; there each side's CDF is an exact count, as in scipy's ``ks_2samp``.
    """
    m, k = reference.size, current.size
    gaps = []
    for own, other, n_own, n_other in ((reference, current, m, k), (current, reference, k, m)):
        last = np.flatnonzero(np.diff(own, append=np.inf))  # last copy of each distinct value
        own_cdf = (last + 1) / n_own
        other_cdf = np.searchsorted(other, own[last], side="right") / n_other
        gaps.append(float(np.max(np.abs(own_cdf - other_cdf))))
    return max(gaps)


def ks_pvalue_sorted(reference: FloatArray, current: FloatArray) -> float:
    """Two-sided K-S p-value as ``scipy.stats.ks_2samp(method='auto')`` computes it.

    Exact distribution when both samples have at most ``KS_EXACT_MAX_N`` values (then both are
    small and scipy itself is called: its exact path is private), else Smirnov's asymptotic
    ``kstwo.sf(D, round(m*n/(m+n)))`` on the statistic from the merged CDFs.
    """
    m, k = reference.size, current.size
    if max(m, k) <= KS_EXACT_MAX_N:
        return float(stats.ks_2samp(reference, current).pvalue)
    big, small = sorted([float(m), float(k)], reverse=True)
    effective = big * small / (big + small)
    p_value = stats.kstwo.sf(ks_statistic_sorted(reference, current), np.round(effective))
    return float(np.clip(p_value, 0, 1))
