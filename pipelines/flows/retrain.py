"""The ``retrain`` flow: the champion's config on fresh data, registered as a candidate.

Started by the monitor's drift verdict (in-process, or as a Prefect deployment by an
automation); the candidate then goes through the promotion gates in the ``advance`` flow.
"""

from __future__ import annotations

from prefect import flow

from modelyard.settings import get_settings
from pipelines.flows.train import TrainResult, run_training
from pipelines.steps.retrain import retraining_config
from registry.mlflow_registry import MlflowRegistry
from registry.types import Stage


def run_retraining(model: str, reason: str = "drift") -> TrainResult:
    settings = get_settings()
    registry = MlflowRegistry.from_settings(settings)
    champion = registry.get_version(model, Stage.CHAMPION.value)
    return run_training(retraining_config(settings, registry, champion, reason), settings)


@flow(name="retrain")
async def retrain(model: str, reason: str = "drift") -> TrainResult:
    """Retrain ``model`` on the data its retrain spec names; the result is a candidate."""
    return run_retraining(model, reason)
