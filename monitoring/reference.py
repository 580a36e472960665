"""Reference profiles: the statistics of a model version's reference data, computed once.

Evidently recomputes the reference side of every drift test on every run. A ``ReferenceProfile``
holds what the tests need instead (sorted finite values and the population std for numeric
columns, category counts for categorical ones), so :func:`monitoring.drift.compute_drift` only
has to look at the window. It is saved as one ``.npz`` file per model version.

The statistical tests and the rule that picks one per column are Evidently 0.7's defaults
(``evidently/legacy/calculations/stattests/``); they are restated in :data:`STAT_TESTS` and
:func:`choose_method` so the fast path and the Evidently adapter share one vocabulary.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

from modelyard.contract import ColumnKind, is_numeric_column
from monitoring.errors import ProfileError

logger = logging.getLogger(__name__)

MethodName = Literal["wasserstein", "ks", "jensenshannon", "chisquare", "z"]
Category: TypeAlias = str | int | float | bool
FloatArray: TypeAlias = npt.NDArray[np.float64]
CountArray: TypeAlias = npt.NDArray[np.int64]

# Evidently's default-test rule (stattests/registry.py:_get_default_stattest): at most this many
# reference rows is a "small" reference; at most LOW_CARDINALITY distinct values (reference and
# window together) makes a numeric column count-based; at most BINARY makes a small one a z-test.
SMALL_REFERENCE_ROWS = 1000
LOW_CARDINALITY = 5
BINARY = 2
PROFILE_FORMAT = 1


@dataclass(frozen=True)
class StatTest:
    """One of Evidently's per-column drift tests: its name, default threshold and direction."""

    name: MethodName
    display_name: str  # Evidently's ``StatTest.display_name``, as shown in its snapshots
    threshold: float
    is_p_value: bool
    # Evidently compares p-values strictly for chi-square and z (p < t) but not for K-S (p <= t).
    strict: bool = True

    def is_drift(self, score: float, threshold: float) -> bool:
        """Whether ``score`` means drift at ``threshold``, with Evidently's exact comparison."""
        if not self.is_p_value:
            return score >= threshold
        return score < threshold if self.strict else score <= threshold


STAT_TESTS: dict[MethodName, StatTest] = {
    "wasserstein": StatTest("wasserstein", "Wasserstein distance (normed)", 0.1, False),
    "ks": StatTest("ks", "K-S p_value", 0.05, True, strict=False),
    "jensenshannon": StatTest("jensenshannon", "Jensen-Shannon distance", 0.1, False),
    "chisquare": StatTest("chisquare", "chi-square p_value", 0.05, True),
    "z": StatTest("z", "Z-test p_value", 0.05, True),
}


def choose_method(kind: ColumnKind, reference_rows: int, n_values: int) -> MethodName:
    """Evidently's default test for a column (``stattests/registry.py:137-160``).

    ``reference_rows`` counts the reference's usable values; ``n_values`` the distinct values
    of reference and window together, so a window can move a column from a count-based test
    to a distribution test by bringing new values.
    """
    if reference_rows <= SMALL_REFERENCE_ROWS:
        if kind == "numeric" and n_values > LOW_CARDINALITY:
            return "ks"
        return "chisquare" if n_values > BINARY else "z"
    if kind == "numeric" and n_values > LOW_CARDINALITY:
        return "wasserstein"
    return "jensenshannon"


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """A numeric reference column: its finite values sorted, their std, and (when few) counts."""

    name: str
    sorted_values: FloatArray
    std: float  # population std (ddof=0) of the finite values, as Evidently's ``np.std``
    n_unique: int
    # Distinct values and their counts, kept only for low-cardinality columns (count tests).
    values: FloatArray | None = None
    counts: CountArray | None = None

    @property
    def kind(self) -> ColumnKind:
        return "numeric"

    @property
    def count(self) -> int:
        return int(self.sorted_values.size)

    @property
    def method(self) -> MethodName:
        """The test used when the window brings no value the reference lacks."""
        return choose_method("numeric", self.count, self.n_unique)


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """A categorical reference column: each category seen and how often."""

    name: str
    categories: tuple[Category, ...]
    counts: CountArray

    @property
    def kind(self) -> ColumnKind:
        return "categorical"

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    @property
    def n_unique(self) -> int:
        return len(self.categories)

    @property
    def method(self) -> MethodName:
        """The test used when the window brings no category the reference lacks."""
        return choose_method("categorical", self.count, self.n_unique)


ColumnProfile: TypeAlias = NumericProfile | CategoricalProfile


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """Per-column reference statistics of one model version, in column order."""

    columns: Mapping[str, ColumnProfile]
    rows: int

    @property
    def kinds(self) -> dict[str, ColumnKind]:
        return {name: column.kind for name, column in self.columns.items()}

    def save(self, path: Path, *, compress: bool = False) -> None:
        """Write the profile to ``path`` (an ``.npz`` file: arrays plus a JSON header).

        ``compress`` saves about a quarter of the size of sorted floats at ~20x the time.
        Raises ``ProfileError`` when the file cannot be written.
        """
        save_profile(self, path, compress=compress)

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        """Read a profile written by :meth:`save`.

        Raises ``ProfileError`` when the file is missing, corrupt or of another format.
        """
        return load_profile(path)


def infer_column_kinds(frame: pd.DataFrame) -> dict[str, ColumnKind]:
    """Numbers (not booleans) are numeric, everything else categorical: the contract's rule."""
    return {
        str(name): "numeric" if is_numeric_column(frame[name]) else "categorical"
        for name in frame.columns
    }


def build_profile(
    reference: pd.DataFrame, columns: Mapping[str, ColumnKind] | None = None
) -> ReferenceProfile:
    """Profile ``reference`` once, for every later window of the same model version.

    ``columns`` maps each column to profile to its kind; by default every column, with kinds
    inferred by :func:`infer_column_kinds`. Missing and infinite values are dropped, as
    Evidently drops them before testing.

    Raises ``ProfileError`` when a column is absent, has no usable value, is declared numeric but
    is not, or holds categories that cannot be stored (not text, number or boolean).
    """
    kinds = dict(columns) if columns is not None else infer_column_kinds(reference)
    absent = [name for name in kinds if name not in reference.columns]
    if absent:
        raise ProfileError(f"the reference data lacks column(s) {absent}")
    if not kinds:
        raise ProfileError("no column to profile", hint="pass at least one column")
    profiles: dict[str, ColumnProfile] = {}
    for name, kind in kinds.items():
        series = reference[name]
        if kind == "numeric":
            profiles[name] = _profile_numeric(name, series)
        else:
            profiles[name] = _profile_categorical(name, series)
    return ReferenceProfile(columns=profiles, rows=len(reference))


def finite_values(series: pd.Series) -> FloatArray:
    """The finite values of a numeric column as float64 (a view when nothing is dropped)."""
    if isinstance(series.dtype, np.dtype):
        values = series.to_numpy(dtype=np.float64, copy=False)
    else:  # nullable extension dtypes hold pd.NA, which float64 cannot
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    keep = np.isfinite(values)
    return values if keep.all() else values[keep]


def category_counts(series: pd.Series) -> dict[Any, int]:
    """Counts of the present categories, missing and infinite values dropped as Evidently does.

    Keys are the values themselves (hash-equal values such as ``1`` and ``1.0`` are one
    category, as in Evidently's dictionaries).
    """
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        series = series.replace([-np.inf, np.inf], np.nan)
    counts = series.value_counts(sort=False, dropna=True)
    # A pandas Categorical also lists categories that never occur; Evidently ignores them.
    counts = counts[counts > 0]
    return {_plain(key): int(value) for key, value in counts.items()}


def _profile_numeric(name: str, series: pd.Series) -> NumericProfile:
    if not pd.api.types.is_numeric_dtype(series):
        raise ProfileError(
            f"reference column {name!r} is declared numeric but has dtype {series.dtype}",
            hint="declare it categorical, or conform the data to the contract first",
        )
    values = finite_values(series)
    if values.size == 0:
        raise ProfileError(f"reference column {name!r} has no finite value to profile")
    # std over the original order, so the float sum matches Evidently's np.std to the last bit.
    return _numeric_from_sorted(name, np.sort(values), float(np.std(values)))


def _numeric_from_sorted(name: str, ordered: FloatArray, std: float) -> NumericProfile:
    # One profile serves many windows (and threads): nothing may change it in place.
    ordered.setflags(write=False)
    # Distinct values of a sorted array: one more than the number of steps.
    n_unique = int(np.count_nonzero(np.diff(ordered))) + 1
    if n_unique > LOW_CARDINALITY:
        return NumericProfile(name, ordered, std, n_unique)
    distinct, counts = np.unique(ordered, return_counts=True)
    counts = counts.astype(np.int64)
    for array in (distinct, counts):
        array.setflags(write=False)
    return NumericProfile(name, ordered, std, n_unique, distinct, counts)


def _profile_categorical(name: str, series: pd.Series) -> CategoricalProfile:
    counts = category_counts(series)
    if not counts:
        raise ProfileError(f"reference column {name!r} has no value to profile")
    odd = [key for key in counts if not isinstance(key, str | int | float | bool)]
    if odd:
        raise ProfileError(
            f"reference column {name!r} holds categories of type {type(odd[0]).__name__}",
            hint="categories must be text, numbers or booleans; cast the column to str",
        )
    values = np.array(list(counts.values()), dtype=np.int64)
    values.setflags(write=False)
    return CategoricalProfile(name, tuple(counts), values)


def _plain(key: Any) -> Any:
    # numpy scalars become Python ones, so they round-trip through JSON and hash as Python's.
    return key.item() if isinstance(key, np.generic) else key


def save_profile(profile: ReferenceProfile, path: Path, *, compress: bool = False) -> None:
    """Write ``profile`` to ``path`` as an ``.npz`` file; see :meth:`ReferenceProfile.save`."""
    header: dict[str, Any] = {"format": PROFILE_FORMAT, "rows": profile.rows, "columns": []}
    arrays: dict[str, npt.NDArray[Any]] = {}
    for index, column in enumerate(profile.columns.values()):
        # Array keys are positions: column names may hold characters a zip entry name cannot.
        if isinstance(column, NumericProfile):
            arrays[f"n{index}"] = column.sorted_values
            entry = {"name": column.name, "kind": "numeric", "std": column.std}
        else:
            arrays[f"c{index}"] = column.counts
            entry = {"name": column.name, "kind": "categorical"}
            entry["categories"] = list(column.categories)
        header["columns"].append(entry)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    try:
        with Path(path).open("wb") as handle:
            writer = np.savez_compressed if compress else np.savez
            writer(handle, allow_pickle=False, **arrays)
    except OSError as exc:
        raise ProfileError(f"cannot write reference profile {path}: {exc}") from exc


def load_profile(path: Path) -> ReferenceProfile:
    """Read a profile written by :func:`save_profile`; see :meth:`ReferenceProfile.load`."""
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            header = json.loads(archive["header"].tobytes().decode())
            if header.get("format") != PROFILE_FORMAT:
                raise ProfileError(
                    f"reference profile {path} has format {header.get('format')!r}, "
                    f"this version reads format {PROFILE_FORMAT}",
                    hint="rebuild the profile from the version's reference data",
                )
            columns = [
                _column_from(entry, index, archive) for index, entry in enumerate(header["columns"])
            ]
    except FileNotFoundError as exc:
        raise ProfileError(f"reference profile {path} does not exist") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProfileError(f"reference profile {path} is unreadable or corrupt: {exc}") from exc
    return ReferenceProfile(columns={c.name: c for c in columns}, rows=int(header["rows"]))


def _column_from(entry: dict[str, Any], index: int, archive: Any) -> ColumnProfile:
    name = str(entry["name"])
    if entry["kind"] == "numeric":
        ordered = np.asarray(archive[f"n{index}"], dtype=np.float64)
        return _numeric_from_sorted(name, ordered, float(entry["std"]))
    counts = np.asarray(archive[f"c{index}"], dtype=np.int64)
    counts.setflags(write=False)
    return CategoricalProfile(name, tuple(entry["categories"]), counts)
