"""Training flow on a built-in data set: total time, each step's share, and Prefect's overhead.

Variants, same config and store, in one process (after a warm-up run each):
  plain     - the steps called as plain functions (no Prefect at all): the baseline
  async     - the real ``train`` flow, steps called inside the one flow run (the default)
  step_tasks - the real ``train`` flow with each step as a Prefect task (UI visibility, retries)
  sync      - the steps as tasks in a synchronous flow (Prefect 3.8 joins its heartbeat thread)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _settings(home: Path) -> Any:
    os.environ["MODELYARD_HOME"] = str(home)
    os.environ.pop("MODELYARD_TRACKING_URI", None)
    from modelyard.settings import get_settings

    get_settings.cache_clear()
    return get_settings()


def main(repeats: int = 5, dataset: str = "penguins") -> dict[str, Any]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from prefect import flow

    from pipelines.config import parse_train_config
    from pipelines.datasets import get_builtin
    from pipelines.flows.train import run_training, train

    home = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    settings = _settings(home)
    spec = get_builtin(dataset)
    config = parse_train_config(
        {
            "model_name": f"bench-{dataset}",
            "data": {"builtin": dataset},
            "target": spec.target,
            "task": spec.task,
        }
    )

    @flow(name="train-sync")
    def train_sync(cfg: Any) -> Any:
        return run_training(cfg, settings, tasks=True)

    variants = {
        "plain": lambda: run_training(config, settings, tasks=False),
        "async flow (shipped default)": lambda: asyncio.run(train(config)),
        "async flow, step_tasks=True": lambda: asyncio.run(train(config, step_tasks=True)),
        "sync flow": lambda: train_sync(config),
    }
    started = time.perf_counter()
    asyncio.run(train(config))  # pays Prefect's temporary-server start once
    server_start = time.perf_counter() - started
    timings: dict[str, list[float]] = {name: [] for name in variants}
    steps: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, call in variants.items():  # interleaved, so drift hits all variants alike
            t0 = time.perf_counter()
            result = call()
            timings[name].append(time.perf_counter() - t0)
            if name == "plain":
                for step, seconds in result.step_seconds.items():
                    steps.setdefault(step, []).append(seconds)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    base = medians["plain"]
    print(f"\n## Training flow ({dataset}, {repeats} runs each, median)\n")
    print(
        f"First flow run in a process (starts Prefect's temporary server): {server_start:.1f} s\n"
    )
    print("| variant | seconds | vs plain | Prefect overhead |")
    print("|---|---|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value:.3f} | {value / base:.2f}x | {value - base:+.3f} s |")
    step_medians = {k: statistics.median(v) for k, v in steps.items()}
    total = sum(step_medians.values())
    print("\n| step (plain run) | seconds | share |")
    print("|---|---|---|")
    for step, value in step_medians.items():
        print(f"| {step} | {value:.3f} | {value / total:.0%} |")
    return {"medians": medians, "steps": step_medians, "server_start": server_start}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dataset", default="penguins")
    args = parser.parse_args()
    main(args.repeats, args.dataset)
