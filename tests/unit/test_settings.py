from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import ConfigurationError
from modelyard.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HOME", "TRACKING_URI", "REGISTRY_URI", "DATABASE_URL", "ARTIFACT_LOCATION"):
        monkeypatch.delenv(f"MODELYARD_{name}", raising=False)
    monkeypatch.chdir(tmp_path)


def test_embedded_defaults_live_under_the_state_folder(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.home == tmp_path / ".modelyard"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path}/.modelyard/mlflow.db"
    assert settings.mlflow_registry_uri == settings.mlflow_tracking_uri
    assert settings.mlflow_artifact_location == (tmp_path / ".modelyard" / "artifacts").as_uri()
    assert settings.sql_url == settings.mlflow_tracking_uri
    assert not settings.home.exists()  # nothing is created until asked


def test_modelyard_home_moves_everything(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "elsewhere"))
    settings = Settings()
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path}/elsewhere/mlflow.db"


def test_mlflow_standard_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "postgresql+psycopg://u@h:5432/reg")
    settings = Settings()
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert settings.mlflow_registry_uri == "postgresql+psycopg://u@h:5432/reg"
    assert settings.sql_url == "postgresql+psycopg://u@h:5432/reg"


def test_ours_win_over_mlflows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://a:5000")
    monkeypatch.setenv("MODELYARD_TRACKING_URI", "postgresql+psycopg://postgres@127.0.0.1/test")
    assert Settings().mlflow_tracking_uri.startswith("postgresql+psycopg://")


def test_http_tracking_server_keeps_own_tables_in_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_TRACKING_URI", "https://mlflow.example.com")
    settings = Settings()
    assert settings.sql_url == f"sqlite:///{settings.home}/modelyard.db"


def test_dotenv_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MODELYARD_ARTIFACT_LOCATION=s3://bucket/models\n")
    assert Settings().mlflow_artifact_location == "s3://bucket/models"


def test_a_uri_that_is_not_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_TRACKING_URI", "mlflow.db")
    with pytest.raises(ConfigurationError, match=r"'mlflow\.db' is not a URI"):
        Settings()


def test_our_tracking_uri_moves_the_registry_even_if_mlflow_env_is_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # mlflow.set_registry_uri() writes MLFLOW_REGISTRY_URI into the environment
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:///old.db")
    monkeypatch.setenv("MODELYARD_TRACKING_URI", "postgresql+psycopg://postgres@127.0.0.1/new")
    assert Settings().mlflow_registry_uri == "postgresql+psycopg://postgres@127.0.0.1/new"
