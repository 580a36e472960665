"""Lineage: where a version came from (data fingerprint, git commit, config hash)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pandas as pd


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of the rows, columns and types: the same data in CSV or Parquet agrees."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    row_hashes = pd.util.hash_pandas_object(_canonical(frame), index=False)
    digest.update(row_hashes.to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as 12 significant digits, everything else as text: a CSV's last-digit rounding
    and an int column that became float through a gap do not change the fingerprint."""
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            numbers = column.astype("float64")
            columns[name] = numbers.map("{:.12g}".format).where(numbers.notna(), None)
        else:
            columns[name] = column.astype("string")
    return pd.DataFrame(columns)


def git_commit(directory: Path | None = None) -> str:
    """The commit checked out where training runs, or ``unknown`` outside a git work tree."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
