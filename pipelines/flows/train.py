"""The ``train`` flow: load → validate → split → fit → evaluate → compare → log and register.

It only wires steps. It is ``async`` because Prefect 3.8's synchronous engine waits up to 1 s on
its heartbeat thread at the end of every run; the async engine does not. Steps are plain calls
unless ``step_tasks`` asks for one Prefect task each (measured in benchmarks/README.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel

from modelyard.settings import Settings, get_settings
from pipelines.config import TrainConfig
from pipelines.steps import evaluate as evaluate_step
from pipelines.steps.fit import build_pipeline, fit_model, import_estimator
from pipelines.steps.lineage import data_fingerprint, git_commit
from pipelines.steps.load import load_data
from pipelines.steps.register import (
    ChampionScore,
    current_champion,
    current_contract,
    load_champion,
    register_version,
    version_tags,
)
from pipelines.steps.split import split_data
from pipelines.steps.tracking import connect, log_training_run
from pipelines.steps.validate import validate_training_data
from registry.mlflow_registry import MlflowRegistry
from registry.promotion import open_promoter
from registry.types import TAG_PREFIX

P = ParamSpec("P")
R = TypeVar("R")


class TrainResult(BaseModel):
    """What a training run produced, for the CLI, the demo and the benchmark."""

    model_name: str
    version: int
    run_id: str
    became_champion: bool
    primary_metric: str
    metrics: dict[str, float]
    champion_version: int | None = None
    champion_metrics: dict[str, float] = {}
    rows: int
    dropped_rows: int
    data_fingerprint: str
    step_seconds: dict[str, float]


def step(fn: Callable[P, R], name: str) -> Callable[P, R]:
    """A step as a Prefect task: visible in the UI; no caching (inputs are DataFrames)."""
    as_task = task(name=name, cache_policy=NO_CACHE, persist_result=False)(fn)
    return as_task  # a Task is called like the function it wraps


class StepTimer:
    """Seconds spent in each step, for the benchmark's per-step shares."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


load_task = step(load_data, "load")
validate_task = step(validate_training_data, "validate")
split_task = step(split_data, "split")
fit_task = step(fit_model, "fit")
evaluate_task = step(evaluate_step.evaluate, "evaluate")
log_task = step(log_training_run, "log")
register_task = step(register_version, "register")


def run_training(config: TrainConfig, settings: Settings, *, tasks: bool = False) -> TrainResult:
    """The training steps in order; ``tasks=True`` (inside a flow) runs each as a Prefect task."""
    timer = StepTimer()
    connect(settings)
    promoter = open_promoter(settings)
    registry = promoter.registry

    def call(name: str, as_task: Callable[..., R], plain: Callable[..., R], *a: Any, **k: Any) -> R:
        return timer.run(name, as_task if tasks else plain, *a, **k)

    names = evaluate_step.metric_names(config)
    estimator = import_estimator(config.estimator_class_path, config.estimator_params, config.task)
    frame = call("load", load_task, load_data, config.data, settings.home / "datasets")
    existing = timer.run("contract", current_contract, registry, config.model_name)
    data = call("validate", validate_task, validate_training_data, frame, config, existing)
    split = call("split", split_task, split_data, data, config.split, config.task)
    model = call(
        "fit",
        fit_task,
        fit_model,
        build_pipeline(data.contract, estimator),
        split.train_features,
        split.train_target,
    )
    metrics = call(
        "evaluate",
        evaluate_task,
        evaluate_step.evaluate,
        model,
        split.test_features,
        split.test_target,
        names,
    )
    champion = timer.run("champion", score_champion, registry, config.model_name, split, names)
    lineage = {
        TAG_PREFIX + "data_fingerprint": data_fingerprint(frame),
        TAG_PREFIX + "rows": str(len(data.target)),
        TAG_PREFIX + "git_commit": git_commit(),
        TAG_PREFIX + "config_hash": config.fingerprint(),
        TAG_PREFIX + "flow_run_id": str(flow_run.get_id() or "none"),
        TAG_PREFIX + "data_source": config.data.describe(),
        TAG_PREFIX + "task": config.task,
        TAG_PREFIX + "target": config.target,
        TAG_PREFIX + "primary_metric": evaluate_step.primary_metric(config),
        **({TAG_PREFIX + "limitations": config.limitations} if config.limitations else {}),
        **config.tags,
    }
    run_metrics = {f"test_{k}": v for k, v in metrics.items()}
    if champion is not None:
        run_metrics.update({f"champion_test_{k}": v for k, v in champion.metrics.items()})
    logged = call(
        "log",
        log_task,
        log_training_run,
        settings=settings,
        config=config,
        model=model,
        split=split,
        contract=data.contract,
        params=_run_params(config, data.dropped_rows, len(data.target)),
        metrics=run_metrics,
        tags=lineage,
    )
    directions = {n: "max" if evaluate_step.METRICS[n].higher_is_better else "min" for n in names}
    tags = version_tags(lineage, metrics, directions, champion)
    version, became_champion = call(
        "register",
        register_task,
        register_version,
        promoter,
        config.model_name,
        logged,
        tags,
        contract_changed=data.contract_changed,
        description=config.intended_use,
    )
    return TrainResult(
        model_name=config.model_name,
        version=version.version,
        run_id=logged.run_id,
        became_champion=became_champion,
        primary_metric=evaluate_step.primary_metric(config),
        metrics=metrics,
        champion_version=champion.version if champion else None,
        champion_metrics=champion.metrics if champion else {},
        rows=len(data.target),
        dropped_rows=data.dropped_rows,
        data_fingerprint=lineage[TAG_PREFIX + "data_fingerprint"],
        step_seconds=timer.seconds,
    )


def score_champion(
    registry: MlflowRegistry, name: str, split: Any, metric_names: list[str]
) -> ChampionScore | None:
    """Evaluate the current champion on the candidate's held-out rows, so scores compare."""
    champion = current_champion(registry, name)
    if champion is None:
        return None
    try:
        model = load_champion(registry, champion)
        scores = evaluate_step.evaluate(model, split.test_features, split.test_target, metric_names)
    except Exception as exc:  # a champion that cannot score new rows must not block training
        return ChampionScore(champion.version, {}, error=f"{type(exc).__name__}: {exc}")
    return ChampionScore(champion.version, scores)


def _run_params(config: TrainConfig, dropped: int, rows: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "estimator": config.estimator_class_path,
        "task": config.task,
        "target": config.target,
        "test_size": config.split.test_size,
        "seed": config.split.seed,
        "rows": rows,
        "dropped_rows": dropped,
    }
    params.update({f"estimator.{k}": v for k, v in config.estimator_params.items()})
    return params


@flow(name="train", validate_parameters=True)
async def train(config: TrainConfig, step_tasks: bool = False) -> TrainResult:
    """Train, evaluate against the champion, log to MLflow and register a new version.

    ``step_tasks=True`` runs each step as a Prefect task (visible and retryable in the UI) at
    ~60 ms a step; by default steps are plain calls inside the one flow run (benchmarks/).
    """
    return run_training(config, get_settings(), tasks=step_tasks)
