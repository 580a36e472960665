"""Build a Bento from a real registry version and query a real ``bentoml serve`` over loopback.

One model (Palmer penguins: string categories, missing values) is trained into a fresh SQLite
store, built once and served once for the module, on a port the OS hands out; the server runs
in its own process group, stopped in the fixture's teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

MODEL = "penguins"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Trained:
    home: Path
    settings: Any
    version: int
    data_fingerprint: str
    features: pd.DataFrame


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """Penguins trained into a fresh SQLite store; BentoML's stores under the same home."""
    from modelyard.settings import get_settings
    from pipelines.config import parse_train_config
    from pipelines.flows.train import run_training

    home = tmp_path_factory.mktemp("bento") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELYARD_HOME", str(home))
        patch.setenv("MODELYARD_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "BENTOML_HOME"):
            patch.delenv(name, raising=False)
        get_settings.cache_clear()
        settings = get_settings()
        config = parse_train_config(
            {
                "model_name": MODEL,
                "data": {"builtin": "penguins"},
                "target": "species",
                "task": "classification",
            }
        )
        result = run_training(config, settings, tasks=False)
        frame = pd.read_csv(home / "datasets" / "penguins.csv")
        features = frame.drop(columns=["species"])
        yield Trained(home, settings, result.version, result.data_fingerprint, features)
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def bento(trained: Trained) -> Any:
    from serving.bento.build import build_bento

    return build_bento(MODEL, "champion", trained.settings)


@pytest.fixture(scope="module")
def server(trained: Trained, bento: Any) -> Iterator[Server]:
    """``bentoml serve`` of the Bento on a free loopback port, in its own process group."""
    port = free_port()
    log = trained.home / "serve.log"
    env = {
        **os.environ,
        "BENTOML_HOME": str(trained.home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                bento.tag,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, process, log)
        yield Server(url, process, log)
    finally:
        stop_server(process)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"bentoml serve exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"bentoml serve not ready in {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL whatever of its family is left, and check
    that nothing remains. BentoML's worker runs in a process group of its own, so the family
    is collected first rather than trusted to the group."""
    import psutil

    try:
        root = psutil.Process(process.pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # start_new_session made it the group leader
    _, alive = psutil.wait_procs(family, timeout=STOP_TIMEOUT_S)
    for survivor in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            survivor.kill()
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)
    process.wait(timeout=STOP_TIMEOUT_S)
    left = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"bentoml serve processes outlived the test: {left}"
    assert not alive, f"processes {[p.pid for p in alive]} ignored SIGTERM and were killed"


def rows(features: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready records, missing values as null."""
    return json.loads(features.to_json(orient="records"))


def payloads(features: pd.DataFrame) -> dict[str, dict[str, Any]]:
    records = rows(features)
    columns = list(features.columns)
    return {
        "dataframe_records": {"dataframe_records": records},
        "dataframe_split": {
            "dataframe_split": {
                "columns": columns,
                "data": [[r[c] for c in columns] for r in records],
            }
        },
        "inputs": {"inputs": {c: [r[c] for r in records] for c in columns}},
        "instances": {"instances": records},
    }


def expected_predictions(trained: Trained, features: pd.DataFrame) -> list[str]:
    """What the registered model predicts in-process for the same rows."""
    import mlflow.sklearn

    from modelyard.contract import conform
    from registry.mlflow_registry import MlflowRegistry

    registry = MlflowRegistry.from_settings(trained.settings)
    location = registry.client.get_model_version_download_uri(MODEL, str(trained.version))
    model = mlflow.sklearn.load_model(location)  # a concrete location: no global MLflow URI
    return [str(p) for p in model.predict(conform(features, contract_of(trained)))]


def contract_of(trained: Trained) -> Any:
    from modelyard.contract import DataContract
    from registry.mlflow_registry import MlflowRegistry

    registry = MlflowRegistry.from_settings(trained.settings)
    path = registry.download_version_artifact(
        MODEL, trained.version, "contract.json", trained.home / "contract"
    )
    return DataContract.model_validate_json(path.read_text())


def post(server: Server, body: Any, route: str = "/invocations") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        server.url + route,
        content=content,
        headers={"content-type": "application/json"},
        timeout=30,
    )


def assert_answered_by_the_model(response: httpx.Response, version: int) -> dict[str, Any]:
    assert response.headers["x-modelyard-model"] == MODEL
    assert response.headers["x-modelyard-version"] == str(version)
    body: dict[str, Any] = response.json()
    assert body["model"] == MODEL
    assert body["version"] == version
    return body


# --- the build -------------------------------------------------------------------------------


def test_bento_carries_the_version_and_its_lineage(trained: Trained, bento: Any) -> None:
    from registry.mlflow_registry import MlflowRegistry

    version = MlflowRegistry.from_settings(trained.settings).get_version(MODEL, trained.version)

    assert bento.model == MODEL
    assert bento.version == trained.version == 1
    assert bento.tag.startswith(f"{MODEL}:v1-")
    assert bento.bento_model == f"{MODEL}:v1"
    assert bento.labels["modelyard.data_fingerprint"] == trained.data_fingerprint
    assert bento.labels["modelyard.git_commit"] == version.tags["modelyard.git_commit"]
    assert bento.labels["modelyard.version"] == "1"
    assert bento.path.is_relative_to(trained.home / "bentoml")


def test_bento_holds_pinned_packages_source_and_a_checked_dockerfile(bento: Any) -> None:
    import importlib.metadata

    from serving.bento.dockerfile import blocking, check_dockerfile

    requirements = (bento.path / "env" / "python" / "requirements.txt").read_text().splitlines()
    dockerfile = bento.dockerfile_path.read_text()

    assert f"fastapi=={importlib.metadata.version('fastapi')}" in requirements
    assert f"scikit-learn=={importlib.metadata.version('scikit-learn')}" in requirements
    assert (bento.path / "src" / "bentofile.yaml").is_file()
    assert (bento.path / "src" / "serving" / "bento" / "service.py").is_file()
    assert "EXPOSE 3000" in dockerfile and "HEALTHCHECK" in dockerfile
    assert blocking(check_dockerfile(bento.dockerfile_path)) == []


def test_building_again_is_reproducible_and_an_alias_resolves_once(
    trained: Trained, bento: Any
) -> None:
    from serving.bento.build import build_bento

    by_number = build_bento(MODEL, str(trained.version), trained.settings)

    assert by_number.tag == bento.tag  # "champion" resolved to 1 at build time; same inputs


def test_unknown_version_is_refused(trained: Trained) -> None:
    from registry.errors import VersionNotFound
    from serving.bento.build import build_bento

    with pytest.raises(VersionNotFound, match="has no version with alias 'canary'"):
        build_bento(MODEL, "canary", trained.settings)


# --- the service -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["dataframe_records", "dataframe_split", "inputs", "instances"])
@pytest.mark.parametrize("count", [1, 100])
def test_valid_requests_are_predicted(
    server: Server, trained: Trained, shape: str, count: int
) -> None:
    features = (
        trained.features.iloc[:count]
        if count == 1
        else trained.features.sample(n=count, random_state=count)
    )
    response = post(server, payloads(features)[shape])

    assert response.status_code == 200, response.text
    body = assert_answered_by_the_model(response, trained.version)
    assert body["predictions"] == expected_predictions(trained, features)


def test_the_sample_has_missing_values_and_categories(trained: Trained) -> None:
    sample = trained.features.sample(n=100, random_state=100)

    assert sample.isna().any().any()
    assert sample["island"].dtype == object


def test_predict_route_is_the_same_as_invocations(server: Server, trained: Trained) -> None:
    response = post(server, payloads(trained.features.iloc[:3])["dataframe_records"], "/predict")

    assert response.status_code == 200
    assert len(assert_answered_by_the_model(response, trained.version)["predictions"]) == 3


def invalid_row(trained: Trained, **changes: Any) -> dict[str, Any]:
    row = rows(trained.features.iloc[:1])[0]
    for key, value in changes.items():
        if value is ...:
            del row[key]
        else:
            row[key] = value
    return {"dataframe_records": [row]}


@pytest.mark.parametrize(
    ("changes", "field", "kind"),
    [
        ({"bill_depth_mm": ...}, "bill_depth_mm", "missing_column"),
        ({"flipper_length_mm": "long"}, "flipper_length_mm", "wrong_type"),
        ({"island": "Atlantis"}, "island", "unknown_category"),
        ({"sex": "unknown"}, "sex", "unknown_category"),
    ],
    ids=["missing-column", "wrong-type", "unknown-island", "unknown-sex"],
)
def test_contract_violations_get_422_naming_the_field(
    server: Server, trained: Trained, changes: dict[str, Any], field: str, kind: str
) -> None:
    response = post(server, invalid_row(trained, **changes))

    assert response.status_code == 422, response.text
    body = assert_answered_by_the_model(response, trained.version)
    assert body["fields"] == [field]
    assert body["violations"][0]["kind"] == kind
    assert repr(field) in body["error"]


def test_one_bad_row_rejects_the_whole_request(server: Server, trained: Trained) -> None:
    records = rows(trained.features.iloc[:50])
    records[17]["island"] = "Atlantis"

    response = post(server, {"dataframe_records": records})

    assert response.status_code == 422
    assert response.json()["violations"][0]["rows"] == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"dataframe_records": [{"island": "Biscoe",', "not valid JSON"),
        (b"", "found none"),  # BentoML hands an empty JSON body over as {}
        (b"[1, 2, 3]", "must be a JSON object"),
        (b'{"records": []}', "unknown field(s) 'records'"),
        (
            b'{"dataframe_split": {"columns": ["island"], "data": [["Biscoe", 1]]}}',
            "row 0 must be a list of 1 values",
        ),
    ],
    ids=["truncated-json", "empty", "array", "unknown-key", "ragged-split"],
)
def test_malformed_requests_get_400(
    server: Server, trained: Trained, raw: bytes, expected: str
) -> None:
    response = post(server, raw)

    assert response.status_code == 400, response.text
    assert expected in assert_answered_by_the_model(response, trained.version)["error"]


def test_info_names_the_version_and_contract(server: Server, trained: Trained) -> None:
    response = httpx.post(server.url + "/info", json={}, timeout=10)

    assert response.status_code == 200
    info = assert_answered_by_the_model(response, trained.version)
    assert info["batching"] == "queue"
    assert info["bento_model"] == f"{MODEL}:v1"
    assert [c["name"] for c in info["contract"]["columns"]][:2] == ["island", "bill_length_mm"]


def test_health_answers_carry_the_version_too(server: Server, trained: Trained) -> None:
    response = httpx.get(server.url + "/readyz", timeout=10)

    assert response.status_code == 200
    assert response.headers["x-modelyard-version"] == str(trained.version)


def test_concurrent_requests_each_get_their_own_rows_predicted(
    server: Server, trained: Trained
) -> None:
    """32 clients at once: batched together by the service, answered one by one."""
    features = trained.features.sample(n=64, random_state=7)
    expected = expected_predictions(trained, features)
    singles = [features.iloc[[i]] for i in range(len(features))]

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post("/invocations", json=payloads(one)["dataframe_records"])
                    for one in singles
                )
            )

    responses = asyncio.run(main())

    assert [r.status_code for r in responses] == [200] * len(singles)
    assert [r.json()["predictions"][0] for r in responses] == expected


def test_containerize_without_an_engine_says_what_it_looked_for(
    trained: Trained, bento: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Dockerfile is linted first; then no docker and no buildah on PATH is a clear error."""
    from serving.bento.containerize import containerize
    from serving.errors import ContainerEngineNotFound

    monkeypatch.setenv("PATH", str(tmp_path))  # hadolint is found beside the interpreter

    with pytest.raises(ContainerEngineNotFound) as caught:
        containerize(bento.tag, trained.settings)

    assert "docker: not on PATH; buildah: not on PATH" in str(caught.value)
    assert "apt-get install buildah" in str(caught.value)


def test_containerize_an_unknown_bento(trained: Trained) -> None:
    from serving.bento.containerize import containerize
    from serving.errors import BentoNotFound

    with pytest.raises(BentoNotFound, match="no Bento tagged 'penguins:v9-nothing'"):
        containerize("penguins:v9-nothing", trained.settings)
