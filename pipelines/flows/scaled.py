"""Large runs on a Dask cluster (prefect-dask): many models monitored or trained at once.

The switch is one parameter. With ``dask_address`` (a running scheduler such as
``tcp://scheduler:8786``) each model's run is a Prefect task on that cluster, as many machines
as it has workers; without it, a local cluster of ``dask_workers`` processes on the flow run's
machine. Cluster workers need the project installed and the same ``MODELYARD_*`` settings as the
flow run (the registry and the inference log must be reachable from them).

The per-model work is the same ``run_monitoring`` / ``run_training`` the ``monitor`` and
``train`` flows call; verdict events are emitted here, by the flow run, after the cluster answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE

from modelyard.settings import get_settings
from pipelines.config import TrainConfig
from pipelines.events import emit_verdict
from pipelines.flows.monitor import MonitorResult, run_monitoring
from pipelines.flows.train import TrainResult, run_training

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

DEFAULT_WORKERS = 2


def dask_task_runner(address: str | None = None, workers: int = DEFAULT_WORKERS) -> TaskRunner[Any]:
    """A ``DaskTaskRunner`` on the cluster at ``address``, else a local cluster of processes.

    One thread per worker process: the steps are CPU-bound pandas/scikit-learn code.
    """
    from prefect_dask import DaskTaskRunner  # distributed is heavy: only for large runs

    if address:
        return DaskTaskRunner(address=address)
    if workers < 1:
        raise ValueError(f"dask_workers must be at least 1, not {workers}")
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True}
    )


@task(name="monitor-model", cache_policy=NO_CACHE, persist_result=False)
def monitor_model(
    model: str, last_rows: int | None = None, since_minutes: float | None = None
) -> MonitorResult:
    """One model's monitoring run, on whichever cluster worker Dask picks."""
    return run_monitoring(get_settings(), model, last_rows=last_rows, since_minutes=since_minutes)


@task(name="train-model", cache_policy=NO_CACHE, persist_result=False)
def train_model(config: TrainConfig) -> TrainResult:
    """One training run, on whichever cluster worker Dask picks."""
    return run_training(config, get_settings())


@flow(name="monitor-models")
def _monitor_on_cluster(
    models: list[str], last_rows: int | None, since_minutes: float | None
) -> list[MonitorResult]:
    futures = monitor_model.map(
        models, last_rows=unmapped(last_rows), since_minutes=unmapped(since_minutes)
    )
    return [future.result() for future in futures]


@flow(name="train-models")
def _train_on_cluster(configs: list[TrainConfig]) -> list[TrainResult]:
    return [future.result() for future in train_model.map(configs)]


@flow(name="monitor-many")
async def monitor_many(
    models: list[str],
    last_rows: int | None = None,
    since_minutes: float | None = None,
    dask_address: str | None = None,
    dask_workers: int = DEFAULT_WORKERS,
) -> list[MonitorResult]:
    """Monitor every one of ``models`` in parallel on a Dask cluster; emits each verdict."""
    runner = dask_task_runner(dask_address or None, dask_workers)
    results = _monitor_on_cluster.with_options(task_runner=runner)(models, last_rows, since_minutes)
    for result in results:
        emit_verdict(result)  # never raises
    return results


@flow(name="train-many")
async def train_many(
    configs: list[TrainConfig],
    dask_address: str | None = None,
    dask_workers: int = DEFAULT_WORKERS,
) -> list[TrainResult]:
    """Train every one of ``configs`` in parallel on a Dask cluster (one task per config)."""
    runner = dask_task_runner(dask_address or None, dask_workers)
    return _train_on_cluster.with_options(task_runner=runner)(configs)
