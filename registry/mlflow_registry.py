"""The one module that talks to MLflow's Model Registry; it returns our types, never MLflow's."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from modelyard.contract import DataContract
from registry.errors import ModelNotFound, RegistryError, RegistryUnavailable, VersionNotFound
from registry.types import CONTRACT_ARTIFACT, TAG_PREFIX, ModelVersion, RegisteredModel

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


class MlflowRegistry:
    """Registered models, versions, aliases and tags in an MLflow tracking/registry store."""

    def __init__(
        self,
        tracking_uri: str,
        registry_uri: str | None = None,
        *,
        artifact_root: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        # Where experiments we create keep artifacts; None leaves it to the store (for a bare
        # SQL store that is ./mlruns in the working directory, which we avoid).
        self.artifact_root = artifact_root
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=self.registry_uri)

    @classmethod
    def from_settings(cls, settings: Settings) -> MlflowRegistry:
        if settings.mlflow_tracking_uri.startswith("sqlite:"):
            settings.ensure_home()
        return cls(
            settings.mlflow_tracking_uri,
            settings.mlflow_registry_uri,
            artifact_root=settings.mlflow_artifact_location,
        )

    def ensure_experiment(self, name: str) -> str:
        """The id of the experiment named ``name``, created under our artifact root if new."""
        with _translated(f"creating experiment {name!r}"):
            found = self._client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            location = f"{self.artifact_root.rstrip('/')}/{name}" if self.artifact_root else None
            try:
                return str(self._client.create_experiment(name, artifact_location=location))
            except MlflowException:  # created meanwhile by a concurrent run
                again = self._client.get_experiment_by_name(name)
                if again is None:
                    raise
                return str(again.experiment_id)

    @property
    def client(self) -> MlflowClient:
        """The underlying client, for the few callers that log runs (the training step)."""
        return self._client

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, sorted by name."""
        with _translated("listing registered models"):
            models = self._client.search_registered_models(max_results=1000)
        return sorted((_to_model(m) for m in models), key=lambda m: m.name)

    def get_model(self, name: str) -> RegisteredModel:
        """Raises ``ModelNotFound``."""
        with _translated(f"reading model {name!r}", name=name):
            return _to_model(self._client.get_registered_model(name))

    def model_exists(self, name: str) -> bool:
        try:
            self.get_model(name)
        except ModelNotFound:
            return False
        return True

    def list_versions(self, name: str) -> list[ModelVersion]:
        """All versions of ``name``, oldest first. Raises ``ModelNotFound``."""
        model = self.get_model(name)
        with _translated(f"listing versions of {name!r}", name=name):
            found = self._client.search_model_versions(
                filter_string=f"name = '{_quote(name)}'", max_results=10_000
            )
        return sorted((_to_version(v, model.aliases) for v in found), key=lambda v: v.version)

    def get_version(self, name: str, version: int | str) -> ModelVersion:
        """A version by number, or by alias when ``version`` is not a number.

        Raises ``ModelNotFound`` or ``VersionNotFound``.
        """
        if isinstance(version, str) and not version.isdigit():
            found = self.version_by_alias(name, version)
            if found is None:
                raise VersionNotFound(name, f"with alias {version!r}")
            return found
        model = self.get_model(name)
        with _translated(f"reading {name} version {version}", name=name, version=version):
            raw = self._client.get_model_version(name, str(version))
        return _to_version(raw, model.aliases)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version holding ``alias``, or None when no version holds it."""
        model = self.get_model(name)
        number = model.aliases.get(alias)
        if number is None:
            return None
        with _translated(f"reading {name}@{alias}", name=name):
            raw = self._client.get_model_version(name, str(number))
        return _to_version(raw, model.aliases)

    def register_version(
        self,
        name: str,
        source: str,
        *,
        run_id: str | None = None,
        model_id: str | None = None,
        tags: dict[str, str] | None = None,
        description: str = "",
    ) -> ModelVersion:
        """Create the registered model if needed, then a new version from ``source``."""
        with _translated(f"registering a version of {name!r}", name=name):
            if not self.model_exists(name):
                try:
                    self._client.create_registered_model(name)
                except MlflowException as exc:  # another process created it first
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
            raw = self._client.create_model_version(
                name,
                source,
                run_id=run_id,
                tags=tags or {},
                description=description,
                model_id=model_id,
            )
        return self.get_version(name, int(raw.version))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        with _translated(f"setting {name}@{alias}", name=name, version=version):
            self._client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        with _translated(f"removing {name}@{alias}", name=name):
            self._client.delete_registered_model_alias(name, alias)

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        with _translated(f"tagging {name} version {version}", name=name, version=version):
            for key, value in tags.items():
                self._client.set_model_version_tag(name, str(version), key, value)

    def set_model_tags(self, name: str, tags: dict[str, str]) -> None:
        with _translated(f"tagging model {name!r}", name=name):
            for key, value in tags.items():
                self._client.set_registered_model_tag(name, key, value)

    def delete_model_tag(self, name: str, key: str) -> None:
        with _translated(f"untagging model {name!r}", name=name):
            self._client.delete_registered_model_tag(name, key)

    def download_version_artifact(
        self, name: str, version: int, artifact_path: str, destination: Path
    ) -> Path:
        """Copy one artifact of the run that produced a version into ``destination``."""
        found = self.get_version(name, version)
        if not found.run_id:
            raise RegistryError(f"{name} version {version} has no run to read {artifact_path} from")
        with _translated(f"downloading {artifact_path} of {name} version {version}", name=name):
            local = self._client.download_artifacts(found.run_id, artifact_path, str(destination))
        return Path(local)

    def download_model(self, name: str, version: int, destination: Path) -> Path:
        """The files of a version's model (its MLmodel folder), copied into ``destination``."""
        with _translated(f"downloading the model of {name} v{version}", name=name, version=version):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}",
                dst_path=str(destination),
                tracking_uri=self.tracking_uri,
                registry_uri=self.registry_uri,
            )
        return Path(local)

    def version_contract(self, version: ModelVersion) -> DataContract:
        """The data contract logged by the run that trained ``version``."""
        if not version.run_id:
            raise RegistryError(f"{version.name} v{version.version} has no run, so no contract")
        raw = self.read_json_artifact(version.run_id, CONTRACT_ARTIFACT)
        return DataContract.model_validate(raw)

    def download_run_artifact(self, run_id: str, artifact_path: str, destination: Path) -> Path:
        with _translated(f"downloading {artifact_path} of run {run_id}"):
            return Path(self._client.download_artifacts(run_id, artifact_path, str(destination)))

    def log_run(
        self,
        experiment: str,
        run_name: str,
        *,
        tags: dict[str, str],
        metrics: dict[str, float],
        files: list[Path],
        artifact_path: str | None = None,
    ) -> str:
        """A finished run with tags, metrics and files, e.g. a monitoring job's reports."""
        with _translated(f"logging run {run_name!r}"):
            run = self._client.create_run(
                self.ensure_experiment(experiment), run_name=run_name, tags=tags
            )
            run_id = run.info.run_id
            for key, value in metrics.items():
                if value == value:  # NaN is not logged
                    self._client.log_metric(run_id, key, value)
            for path in files:
                self._client.log_artifact(run_id, str(path), artifact_path)
            self._client.set_terminated(run_id)
        return str(run_id)

    def read_json_artifact(self, run_id: str, artifact_path: str) -> Any:
        """A JSON artifact of a run, parsed."""
        with tempfile.TemporaryDirectory() as folder, _translated(f"reading {artifact_path}"):
            local = self._client.download_artifacts(run_id, artifact_path, folder)
            return json.loads(Path(local).read_text())

    def write_run_text(self, run_id: str, text: str, artifact_path: str) -> None:
        """Write (or overwrite) a text artifact of a run, e.g. a version's model card."""
        with _translated(f"writing {artifact_path} to run {run_id}"):
            self._client.log_text(run_id, text, artifact_path)

    def copy_version_from(self, source: MlflowRegistry, name: str, version: int) -> ModelVersion:
        """Copy a version from another registry: artifacts, signature and tags, plus a tag
        pointing back to the source. The copy is a new candidate version here."""
        original = source.get_version(name, version)
        if not original.run_id:
            raise RegistryError(f"{name} version {version} has no run: nothing to copy")
        with tempfile.TemporaryDirectory() as folder, _translated(f"copying {name} v{version}"):
            local = Path(source.client.download_artifacts(original.run_id, "", folder))
            # MLflow 3 keeps a logged model's files with the model (models:/m-...), not the run.
            if not (local / "model" / "MLmodel").exists():
                mlflow.artifacts.download_artifacts(
                    artifact_uri=original.source,
                    dst_path=str(local / "model"),
                    tracking_uri=source.tracking_uri,
                )
            run_id = self._copy_run(source, original, name, local)
        tags = {k: v for k, v in original.tags.items() if k != TAG_PREFIX + "stage"}
        tags.update(
            {
                TAG_PREFIX + "stage": "candidate",
                TAG_PREFIX + "source_registry": source.registry_uri,
                TAG_PREFIX + "source_version": str(version),
                TAG_PREFIX + "source_run_id": original.run_id,
            }
        )
        return self.register_version(
            name,
            f"runs:/{run_id}/model",
            run_id=run_id,
            tags=tags,
            description=original.description,
        )

    def _copy_run(
        self, source: MlflowRegistry, original: ModelVersion, name: str, local: Path
    ) -> str:
        experiment_id = self.ensure_experiment(name)
        source_run = source.client.get_run(original.run_id or "")
        run = self._client.create_run(
            experiment_id,
            run_name=f"copy-of-{name}-v{original.version}",
            tags={
                **{k: v for k, v in source_run.data.tags.items() if not k.startswith("mlflow.")},
                TAG_PREFIX + "source_run_id": original.run_id or "",
            },
        )
        run_id = run.info.run_id
        for param, text in source_run.data.params.items():
            self._client.log_param(run_id, param, text)
        for metric, number in source_run.data.metrics.items():
            self._client.log_metric(run_id, metric, number)
        self._client.log_artifacts(run_id, str(local))
        self._client.set_terminated(run_id)
        return run_id


@contextmanager
def _translated(
    action: str, *, name: str | None = None, version: int | str | None = None
) -> Iterator[None]:
    """Turn MLflow's exceptions into ours, keeping the original as the cause."""
    try:
        yield
    except MlflowException as exc:
        if exc.error_code == NOT_FOUND and name is not None:
            if version is not None and "version" in str(exc).lower():
                raise VersionNotFound(name, version) from exc
            raise ModelNotFound(name) from exc
        raise RegistryError(f"MLflow refused {action}: {exc.message}") from exc
    except (OSError, ConnectionError) as exc:
        raise RegistryUnavailable(f"registry store unreachable while {action}: {exc}") from exc


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _to_model(raw: Any) -> RegisteredModel:
    aliases = {alias: int(number) for alias, number in (raw.aliases or {}).items()}
    versions = [int(v.version) for v in (raw.latest_versions or [])]
    return RegisteredModel(
        name=raw.name,
        aliases=aliases,
        tags=dict(raw.tags or {}),
        latest_version=max(versions) if versions else None,
        description=raw.description or "",
    )


def _to_version(raw: Any, model_aliases: dict[str, int]) -> ModelVersion:
    number = int(raw.version)
    aliases = tuple(sorted(a for a, v in model_aliases.items() if v == number))
    created = (
        datetime.fromtimestamp(raw.creation_timestamp / 1000, tz=UTC)
        if raw.creation_timestamp
        else None
    )
    return ModelVersion(
        name=raw.name,
        version=number,
        aliases=aliases,
        tags=dict(raw.tags or {}),
        run_id=raw.run_id or None,
        source=raw.source or "",
        model_id=getattr(raw, "model_id", None),
        created_at=created,
        description=raw.description or "",
    )
