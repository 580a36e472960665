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

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelyard.errors import ConfigurationError

SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


# --- deploy targets: a section each, set as MODELYARD_<SECTION>__<FIELD> (MODELYARD_AWS__REGION)


class ImageSettings(BaseModel):
    """Where model images are pushed: any OCI registry (ECR, Artifact Registry, ACR, your own).

    ``registry`` is the host (and optional path), e.g.
    ``123456789012.dkr.ecr.eu-west-1.amazonaws.com``, ``europe-docker.pkg.dev/my-project/models``,
    ``myregistry.azurecr.io`` or ``127.0.0.1:5000``.
    """

    registry: str | None = None
    repository_prefix: str = "modelyard"
    insecure: bool = False  # plain HTTP, for a registry on loopback
    username: str | None = None
    password: str | None = None
    # Tries per registry call when it fails in a way that may pass (dropped connection, 429, 5xx).
    push_attempts: int = Field(default=4, ge=1, le=20)


class KubernetesSettings(BaseModel):
    namespace: str = "modelyard"
    context: str | None = None  # kubeconfig context; in a pod the service account is used
    gateway_image: str | None = None  # default: the images registry's ``<prefix>-gateway:latest``
    port: int = 3000
    cpu_request: str = "250m"
    memory_request: str = "512Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"
    min_replicas: int = 1
    max_replicas: int = 4
    target_cpu_percent: int = 70


class AwsSettings(BaseModel):
    region: str | None = None  # else boto3's chain: AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config
    role_arn: str | None = None  # SageMaker execution role
    instance_type: str = "ml.m5.large"
    initial_instance_count: int = 1
    max_instance_count: int = 4
    target_invocations_per_instance: int = 1000
    alarm_error_rate: float = 0.05  # 5XX share that trips a variant's rollback alarm
    endpoint_prefix: str = ""


class GcpSettings(BaseModel):
    project: str | None = None  # else google-auth's default project
    region: str = "europe-west1"
    service_account: str | None = None
    cpu: str = "1"
    memory: str = "1Gi"
    min_instances: int = 0
    max_instances: int = 4


class AzureSettings(BaseModel):
    subscription_id: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    instance_type: str = "Standard_DS3_v2"
    instance_count: int = 1
    shadow_mirror_percent: int = 10  # Azure ML mirrors at most 50% of traffic to a shadow


class Settings(BaseSettings):
    """Modelyard settings. Build with :func:`get_settings`; pass the object down, never a global."""

    model_config = SettingsConfigDict(
        env_prefix="MODELYARD_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
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
    # Where promotions are carried out: local, kubernetes, aws, gcp or azure.
    deploy_target: str = "local"
    images: ImageSettings = Field(default_factory=ImageSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    gcp: GcpSettings = Field(default_factory=GcpSettings)
    azure: AzureSettings = Field(default_factory=AzureSettings)

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
