"""Large runs on Dask: the monitor-many and train-many flows on a local cluster of 2 processes.

The cluster is started here and handed to the flows by address, the same switch a deployment uses
for a remote scheduler; the test then asks each Dask worker process how many tasks it ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.config import parse_train_config
from tests.data_factory import messy_frame
from tests.integration.test_monitor_flow import log_traffic, train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


@pytest.fixture
def policies(modelyard_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A monitoring policy that judges 600-row windows (set before the workers start)."""
    folder = tmp_path / "policies"
    (folder / "monitoring").mkdir(parents=True)
    (folder / "monitoring" / "default.yaml").write_text(
        "min_window_rows: 200\nalert_share: 0.2\nretrain_share: 0.25\n"
    )
    monkeypatch.setenv("MODELYARD_POLICY_DIR", str(folder))
    return folder


@pytest.fixture
def dask_cluster(policies: Path) -> Iterator[str]:
    """Two worker processes, one thread each, started once the settings point at the store:
    worker processes read their ``MODELYARD_*`` environment when they start."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def tasks_run_per_worker(address: str) -> dict[str, int]:
    from distributed import Client

    def executed(dask_worker) -> int:  # type: ignore[no-untyped-def]
        return int(dask_worker.state.executed_count)

    with Client(address, set_as_default=False) as client:
        return dict(client.run(executed))


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_two_models_are_monitored_in_parallel_worker_processes(
    modelyard_env: Path, tmp_path: Path, unique_name: str, dask_cluster: str
) -> None:
    from pipelines.flows.scaled import monitor_many

    calm, moved = f"{unique_name}-calm", f"{unique_name}-moved"
    for name, shift in ((calm, 0.0), (moved, 40.0)):
        version = train(name, tmp_path)
        log_traffic(name, version, messy_frame(rows=600, seed=5), shift=shift)

    results = asyncio.run(monitor_many([calm, moved], last_rows=600, dask_address=dask_cluster))

    by_model = {r.model: r for r in results}
    assert by_model[calm].action == "none" and not by_model[calm].drifted
    assert by_model[moved].action == "retrain"
    assert "spend" in {c["column"] for c in by_model[moved].drifted_columns}
    ran = tasks_run_per_worker(dask_cluster)
    assert len(ran) == 2 and sorted(ran.values()) == [1, 1], ran


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_training_runs_on_a_cluster_worker_and_registers(
    modelyard_env: Path, tmp_path: Path, unique_name: str, dask_cluster: str
) -> None:
    from pipelines.flows.scaled import train_many
    from registry.mlflow_registry import MlflowRegistry
    from tests.integration.test_monitor_flow import settings

    csv = tmp_path / "train.csv"
    messy_frame(rows=800).to_csv(csv, index=False)
    config = parse_train_config(
        {
            "model_name": unique_name,
            "data": {"path": str(csv)},
            "target": "churned",
            "task": "classification",
        }
    )

    [result] = asyncio.run(train_many([config], dask_address=dask_cluster))

    assert result.version == 1 and result.became_champion
    version = MlflowRegistry.from_settings(settings()).get_version(unique_name, 1)
    assert version.run_id == result.run_id
    assert sum(tasks_run_per_worker(dask_cluster).values()) == 1
