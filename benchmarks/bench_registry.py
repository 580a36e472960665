"""Promote and rollback latency on SQLite and PostgreSQL; alias resolution with and without cache.

Each promote is a full change: read the claim sequence and the state, decide against the policy,
claim, move MLflow aliases and tags, rewrite the model card. Targets: promote and rollback
<= 100 ms each; a cached alias resolution <= 1 ms.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

PG_ADMIN = os.environ.get("MODELYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _store(kind: str, home: Path) -> tuple[str, Callable[[], None]]:
    if kind == "sqlite":
        return f"sqlite:///{home / 'mlflow.db'}", lambda: None
    import psycopg

    name = f"modelyard_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')

    return (
        f"{PG_ADMIN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://')}/{name}",
        drop,
    )


def measure(kind: str, repeats: int) -> dict[str, list[float]]:
    from modelyard.settings import get_settings
    from pipelines.config import parse_train_config
    from pipelines.flows.train import run_training
    from registry.policy import parse_policy
    from registry.promotion import open_promoter
    from registry.state_cache import ServingStateCache
    from registry.types import Stage

    home = Path(tempfile.mkdtemp(prefix=f"modelyard-bench-{kind}-"))
    url, drop = _store(kind, home)
    os.environ.update(MODELYARD_HOME=str(home), MODELYARD_TRACKING_URI=url)
    get_settings.cache_clear()
    try:
        config = parse_train_config(
            {
                "model_name": "bench",
                "data": {"builtin": "penguins"},
                "target": "species",
                "task": "classification",
            }
        )
        for _ in range(2):
            run_training(config, get_settings())
        promoter = open_promoter(get_settings(), actor="bench")
        policy = parse_policy(
            {
                "require_approval_for_champion": False,
                "min_improvement": -1,
                "canary": {"steps": [100]},
            }
        )
        promote_ms, rollback_ms = [], []
        for _ in range(repeats):
            promote_ms += _timed(
                lambda: promoter.promote("bench", 2, Stage.CHAMPION, policy=policy), 1
            )
            rollback_ms += _timed(lambda: promoter.rollback("bench", reason="bench"), 1)
        uncached = _timed(lambda: promoter.state("bench").holder(Stage.CHAMPION), repeats)
        cache = ServingStateCache(promoter.state, ttl=60)
        cache.resolve("bench", "champion")
        cached = _timed(lambda: cache.resolve("bench", "champion"), repeats * 100)
        return {
            "promote": promote_ms,
            "rollback": rollback_ms,
            "alias (registry read)": uncached,
            "alias (cached)": cached,
        }
    finally:
        drop()


def main(repeats: int = 20) -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    print(f"\n## Registry latency ({repeats} promote/rollback cycles, ms)\n")
    print("| store | operation | p50 | p95 | target |")
    print("|---|---|---|---|---|")
    targets = {"promote": "<= 100", "rollback": "<= 100", "alias (cached)": "<= 1"}
    for kind in ("sqlite", "postgres"):
        for op, samples in measure(kind, repeats).items():
            ordered = sorted(samples)
            p95 = ordered[int(len(ordered) * 0.95) - 1]
            print(
                f"| {kind} | {op} | {statistics.median(samples):.3f} | {p95:.3f} | "
                f"{targets.get(op, '-')} |"
            )


if __name__ == "__main__":
    main()
