"""One settings object for every process kind, read from ``MODELYARD_*`` variables and ``.env``.

Embedded defaults keep everything under one state folder (``MODELYARD_HOME``, default
``./.modelyard``): the MLflow store ``mlflow.db`` and artifacts in ``artifacts/``. One variable
switches to PostgreSQL or to an MLflow tracking server; the standard ``MLFLOW_TRACKING_URI`` and
``MLFLOW_REGISTRY_URI`` are honoured when ours are not set.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelyard.errors import ConfigurationError

SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


class Settings(BaseSettings):
    """Modelyard settings. Build with :func:`get_settings`; pass the object down, never a global."""

    model_config = SettingsConfigDict(
        env_prefix="MODELYARD_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Literal["local", "staging", "production"] = "local"
    home: Path = Field(default_factory=lambda: Path.cwd() / ".modelyard")
    tracking_uri: str | None = None
    registry_uri: str | None = None
    artifact_location: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    policy_dir: Path = Path("policies")
    report_dir: Path | None = None
    alert_webhook_url: str | None = None
    log_level: str = "INFO"

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _check_uris(self) -> Settings:
        for field in ("tracking_uri", "registry_uri", "database_url"):
            value = getattr(self, field)
            if value is not None and "://" not in value and not value.startswith("databricks"):
                raise ConfigurationError(
                    f"MODELYARD_{field.upper()}={value!r} is not a URI",
                    hint="use e.g. sqlite:///path/mlflow.db, "
                    "postgresql+psycopg://user@host:5432/db or http://host:5000",
                )
        return self

    @property
    def mlflow_tracking_uri(self) -> str:
        """Ours, else MLflow's standard variable, else the embedded SQLite store."""
        return (
            self.tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{self.home / 'mlflow.db'}"
        )

    @property
    def mlflow_registry_uri(self) -> str:
        """Ours, else our tracking store, else MLflow's standard variables.

        ``MODELYARD_TRACKING_URI`` alone moves the registry too: MLflow's ``set_registry_uri``
        writes ``MLFLOW_REGISTRY_URI`` into the environment, so that variable may be stale.
        """
        if self.registry_uri or self.tracking_uri:
            return self.registry_uri or str(self.tracking_uri)
        return os.environ.get("MLFLOW_REGISTRY_URI") or self.mlflow_tracking_uri

    @property
    def mlflow_artifact_location(self) -> str:
        """Where new experiments put artifacts: a local folder by default, or e.g. ``s3://``."""
        return self.artifact_location or (self.home / "artifacts").as_uri()

    @property
    def sql_url(self) -> str:
        """Database for Modelyard's own tables (audit, keys, inference log).

        Defaults to the registry's database when that is SQL, so one database holds the truth.
        """
        if self.database_url:
            return self.database_url
        registry = self.mlflow_registry_uri
        if registry.split(":", 1)[0].split("+", 1)[0] in SQL_SCHEMES:
            return registry
        return f"sqlite:///{self.home / 'modelyard.db'}"

    @property
    def reports(self) -> Path:
        """Where drift reports are written (``MODELYARD_REPORT_DIR``, default ``$HOME/reports``)."""
        return self.report_dir or self.home / "reports"

    def ensure_home(self) -> Path:
        """Create the state folder (never done at import time)."""
        (self.home / "artifacts").mkdir(parents=True, exist_ok=True)
        return self.home


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, built once from the environment and ``.env``."""
    return Settings()
