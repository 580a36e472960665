"""Drift at gateway volume: Evidently's DataDriftPreset vs the fast path vs bare numpy, one run.

Data: ``n`` reference rows and ``n`` current rows of 20 numeric columns (6 shifted by 0.2 std)
and 3 string categorical columns (one with moved proportions). Variants, in one process:
  evidently   - ``Report([DataDriftPreset()], include_tests=True).run`` via the adapter
  profile     - ``build_profile(reference)``: once per model version, reported apart
  fast        - ``compute_drift(profile, current)``: every column, Evidently's tests and verdicts
  fast 0.9n   - the same with a window of 0.9 n rows (sizes differ: the general W1 grid path)
  numpy       - the bare baseline: per numeric column sort both sides, merge, searchsorted CDFs,
                W1 / std (scipy's algorithm; no categorical column, no test choice, no verdict)
  numpy floor - the least work for equal sizes: sort both sides, mean |u - v| / std

Time is ``time.perf_counter`` (median of ``--repeats`` for the fast variants, one run of
Evidently at 1M rows). Memory is measured in separate runs: the peak of ``tracemalloc`` (Python
and numpy allocations) and the resident-set high-water mark above the level before the run
(Linux ``clear_refs``/``VmHWM``; psutil sampling elsewhere). "peak/data" divides the larger of
the two by the in-memory size of the current window.

    .venv/bin/python benchmarks/bench_drift.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from modelyard.contract import ColumnKind
from monitoring.drift import DriftResult, compute_drift
from monitoring.evidently_adapter import evidently_drift
from monitoring.reference import build_profile

NUMERIC, CATEGORICAL, SHIFTED = 20, 3, 6
MB = 1024 * 1024


@dataclass
class Measure:
    seconds: float
    tracemalloc_mb: float = float("nan")
    rss_mb: float = float("nan")
    value: Any = field(default=None, repr=False)


def make_data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames of ``rows`` rows each; the current one partly drifted."""
    rng = np.random.default_rng(seed)

    def frame(shift: float) -> pd.DataFrame:
        columns: dict[str, Any] = {}
        for i in range(NUMERIC):
            moved = shift if i < SHIFTED else 0.0
            columns[f"num{i:02d}"] = rng.normal(10.0 * i + moved, 1.0 + 0.1 * i, rows)
        for j in range(CATEGORICAL):
            weights = np.array([0.4, 0.3, 0.2, 0.1])
            if j == 0 and shift:
                weights = weights[::-1]
            columns[f"cat{j}"] = rng.choice(["alpha", "beta", "gamma", "delta"], rows, p=weights)
        return pd.DataFrame(columns)

    return frame(0.0), frame(0.2)


def kinds_of(frame: pd.DataFrame) -> dict[str, ColumnKind]:
    return {name: "numeric" if name.startswith("num") else "categorical" for name in frame}


def numpy_baseline(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """Normed W1 per numeric column, the bare sort-based way (scipy's algorithm in numpy)."""
    scores = {}
    for name in reference.columns:
        if not name.startswith("num"):
            continue
        u = np.sort(reference[name].to_numpy())
        v = np.sort(current[name].to_numpy())
        merged = np.sort(np.concatenate([u, v]))
        deltas = np.diff(merged)
        u_cdf = np.searchsorted(u, merged[:-1], "right") / u.size
        v_cdf = np.searchsorted(v, merged[:-1], "right") / v.size
        scores[name] = float(np.sum(np.abs(u_cdf - v_cdf) * deltas)) / max(float(np.std(u)), 0.001)
    return scores


def _can_reset_peak() -> bool:
    # Linux: writing 5 to clear_refs resets VmHWM, so the peak of one run can be read exactly.
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "VmHWM:" in Path("/proc/self/status").read_text()
    except OSError:
        return False


def numpy_quantile_baseline(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """The floor for equal sizes: W1 = mean |sort(u) - sort(v)| (both sides sorted every time)."""
    scores = {}
    for name in reference.columns:
        if name.startswith("num"):
            u = np.sort(reference[name].to_numpy())
            v = np.sort(current[name].to_numpy())
            scores[name] = float(np.abs(u - v).mean()) / max(float(np.std(u)), 0.001)
    return scores


@contextmanager
def rss_peak() -> Iterator[list[float]]:
    """Yield a one-item list that holds, on exit, the resident-set peak above the start (MB)."""
    process, out = psutil.Process(), [float("nan")]
    if _can_reset_peak():
        start = process.memory_info().rss
        yield out
        status = Path("/proc/self/status").read_text().splitlines()
        hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        out[0] = (hwm_kb * 1024 - start) / MB
        return
    start, peak, stop = process.memory_info().rss, [0], threading.Event()

    def sample() -> None:  # elsewhere: poll every 5 ms (may miss a short spike)
        while not stop.wait(0.005):
            peak[0] = max(peak[0], process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out[0] = (max(peak[0], process.memory_info().rss) - start) / MB


def measure(fn: Callable[[], Any], repeats: int) -> Measure:
    """Median time of ``repeats`` runs (with the largest RSS peak), then one under tracemalloc.

    tracemalloc slows allocation-heavy code, so its run is not timed.
    """
    times, peaks, value = [], [], None
    for _ in range(repeats):
        gc.collect()
        with rss_peak() as peak:
            started = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - started)
        peaks.append(peak[0])
    gc.collect()
    tracemalloc.start()
    fn()
    traced = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    return Measure(statistics.median(times), traced, max(peaks), value)


def compare(fast: DriftResult, evidently: DriftResult) -> dict[str, Any]:
    pairs = list(zip(fast.columns, evidently.columns, strict=True))
    worst = max(abs(a.score - b.score) / max(abs(b.score), 1e-300) for a, b in pairs)
    return {
        "methods": sum(a.method == b.method for a, b in pairs),
        "verdicts": sum(a.drifted == b.drifted for a, b in pairs),
        "columns": len(pairs),
        "worst_rel": worst,
        "dataset": (fast.drifted, fast.count) == (evidently.drifted, evidently.count),
        "count": fast.count,
        "share": fast.share,
    }


def run_size(rows: int, repeats: int) -> dict[str, Any]:
    reference, current = make_data(rows)
    kinds = kinds_of(reference)
    window = current.iloc[: int(rows * 0.9)]
    data_mb = current.memory_usage(deep=True).sum() / MB
    profile = build_profile(reference, kinds)
    fast_repeats = max(repeats, 5)
    results = {
        "profile": measure(lambda: build_profile(reference, kinds), repeats),
        "fast": measure(lambda: compute_drift(profile, current), fast_repeats),
        "fast 0.9n": measure(lambda: compute_drift(profile, window), fast_repeats),
        "numpy": measure(lambda: numpy_baseline(reference, current), fast_repeats),
        "numpy floor": measure(lambda: numpy_quantile_baseline(reference, current), fast_repeats),
        # One Evidently run at 1M rows takes minutes; it is repeated only on smaller data.
        "evidently": measure(
            lambda: evidently_drift(reference, current, kinds), repeats if rows <= 100_000 else 1
        ),
    }
    fast, baseline = results["fast"].value, results["numpy"].value
    numpy_worst = max(
        abs(fast.column(name).score - score) / score for name, score in baseline.items()
    )
    return {
        "rows": rows,
        "data_mb": data_mb,
        "results": results,
        "check": compare(fast, results["evidently"].value),
        "numpy_worst_rel": numpy_worst,
    }


TIME_HEADER = (
    "| rows | variant | seconds | Evidently / this | this / numpy | this / numpy floor "
    "| tracemalloc MB | RSS MB | peak/data |"
)
CHECK_HEADER = (
    "| rows | window MB | same method | same verdict | worst rel. score diff "
    "| dataset drift same | drifted (share) | fast vs numpy W1 |"
)


def print_tables(runs: list[dict[str, Any]], load: tuple[float, float]) -> None:
    cpus = os.cpu_count()
    print(f"\nLoad average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f}, {cpus} CPUs\n")
    print(TIME_HEADER)
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        res = run["results"]
        ev, np_, floor = (res[k].seconds for k in ("evidently", "numpy", "numpy floor"))
        for name in ("evidently", "profile", "fast", "fast 0.9n", "numpy", "numpy floor"):
            m = res[name]
            peak = max(m.tracemalloc_mb, m.rss_mb) / run["data_mb"]
            print(
                f"| {run['rows']:,} | {name} | {m.seconds:.3f} | {ev / m.seconds:.1f}x "
                f"| {m.seconds / np_:.2f}x | {m.seconds / floor:.2f}x "
                f"| {m.tracemalloc_mb:.0f} | {m.rss_mb:.0f} | {peak:.2f} |"
            )
    print("\n" + CHECK_HEADER)
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        c = run["check"]
        print(
            f"| {run['rows']:,} | {run['data_mb']:.0f} | {c['methods']}/{c['columns']} "
            f"| {c['verdicts']}/{c['columns']} | {c['worst_rel']:.1e} | {c['dataset']} "
            f"| {c['count']} ({c['share']:.2f}) | {run['numpy_worst_rel']:.1e} |"
        )


def main(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    load_before = os.getloadavg()[0]
    runs = []
    for rows in sizes:
        print(f"measuring {rows:,} rows ...", flush=True)
        runs.append(run_size(rows, repeats))
    print_tables(runs, (load_before, os.getloadavg()[0]))
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="comma-separated row counts"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each variant (fast ones: at least 5)"
    )
    args = parser.parse_args()
    main([int(size) for size in args.sizes.split(",")], args.repeats)
