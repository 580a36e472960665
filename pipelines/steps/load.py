"""Load: a CSV or Parquet file (or a built-in data set, exported to CSV first) into a DataFrame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.config import DataSource
from pipelines.datasets import export_builtin
from pipelines.errors import DataError

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.zip", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")


def load_data(source: DataSource, cache_dir: Path) -> pd.DataFrame:
    """Read the rows a run trains on. Raises ``DataError`` naming the file and the problem."""
    if source.builtin is not None:
        path = cache_dir / f"{source.builtin}.csv"
        if not path.exists():
            export_builtin(source.builtin, path)
        return read_table(path)
    assert source.path is not None
    return read_table(Path(source.path))


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; an empty file is an error, not an empty frame."""
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.is_dir():
        raise DataError(f"data path {path} is a folder; give a CSV or Parquet file")
    name = path.name.lower()
    try:
        if name.endswith(PARQUET_SUFFIXES):
            frame = pd.read_parquet(path)
        elif name.endswith(CSV_SUFFIXES):
            frame = pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",")
        else:
            raise DataError(f"data file {path} has an unknown type; use .csv, .tsv or .parquet")
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"data file {path} is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"data file {path} cannot be read: {exc}") from exc
    if frame.empty:
        raise DataError(f"data file {path} has a header but no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame
