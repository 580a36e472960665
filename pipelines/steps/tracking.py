"""Log and load through MLflow's tracking API: the training step's one door to MLflow."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from modelyard.contract import DataContract
from modelyard.settings import Settings
from pipelines.config import TrainConfig
from pipelines.errors import PipelineError
from pipelines.steps.split import Split
from registry.mlflow_registry import MlflowRegistry
from registry.types import CONTRACT_ARTIFACT, REFERENCE_ARTIFACT

logger = logging.getLogger(__name__)
MODEL_ARTIFACT = "model"
# Listing these beats MLflow inferring them (4-7 s a model, STACK_NOTES).
BASE_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "cloudpickle")


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    model_uri: str
    model_id: str | None


def connect(settings: Settings) -> None:
    """Point MLflow's fluent API at our stores (called by the step, never at import)."""
    if settings.mlflow_tracking_uri.startswith("sqlite:"):
        settings.ensure_home()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_registry_uri)


def pip_requirements(estimator_class_path: str) -> list[str]:
    """Exact versions of what loading the model needs, plus the estimator's own package."""
    packages = list(BASE_REQUIREMENTS)
    top_level = estimator_class_path.split(".", 1)[0]
    if top_level not in ("sklearn", *packages):
        packages.append(top_level)
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            logger.warning("cannot pin %s: not installed as a distribution", package)
    return pins


def types_to_trust(model: Any) -> list[str]:
    """The types skops must be told to load: the ones inside the model this run just fitted.

    skops (not pickle) is used so that loading a model runs no arbitrary code; the list is saved
    with the model, so a loader trusts exactly these types and nothing else.
    """
    import skops.io

    return list(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def log_training_run(
    *,
    settings: Settings,
    config: TrainConfig,
    model: Any,
    split: Split,
    contract: DataContract,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> LoggedRun:
    """Log params, metrics, lineage tags, the model with signature, contract and reference."""
    experiment_id = MlflowRegistry.from_settings(settings).ensure_experiment(config.model_name)
    sample = split.train_features.head(200)
    signature = infer_signature(sample, model.predict(sample))
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"train-{config.model_name}"
    ) as run:
        mlflow.log_params(params)
        mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})  # NaN is not logged
        mlflow.set_tags(tags)
        info = mlflow.sklearn.log_model(
            model,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=split.train_features.head(3),
            pip_requirements=pip_requirements(config.estimator_class_path),
            serialization_format="skops",
            skops_trusted_types=types_to_trust(model),
        )
        mlflow.log_dict(contract.model_dump(mode="json"), CONTRACT_ARTIFACT)
        mlflow.log_dict(config.model_dump(mode="json"), "train_config.json")
        _log_reference(model, split, contract, config.reference_rows, config.split.seed)
    return LoggedRun(run.info.run_id, info.model_uri, getattr(info, "model_id", None))


def _log_reference(model: Any, split: Split, contract: DataContract, rows: int, seed: int) -> None:
    """A sample of the training rows with their predictions: what monitoring compares against."""
    features = split.train_features
    if len(features) > rows:
        features = features.sample(n=rows, random_state=seed)
    reference = features.copy()
    reference[contract.target] = split.train_target.loc[features.index].to_numpy()
    reference["prediction"] = model.predict(features)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "reference.parquet"
        reference.reset_index(drop=True).to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(REFERENCE_ARTIFACT).parent))


def load_sklearn_model(model_uri: str) -> Any:
    """The fitted pipeline behind a ``models:/`` or ``runs:/`` URI."""
    try:
        return mlflow.sklearn.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        raise PipelineError(f"cannot load model {model_uri}: {exc}") from exc


def reference_frame(run_id: str) -> pd.DataFrame:
    """The reference sample logged by a training run."""
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=folder
        )
        return pd.read_parquet(local)


def contract_json(contract: DataContract) -> str:
    return json.dumps(contract.model_dump(mode="json"), sort_keys=True)
