"""The pure parts of building a Bento: names, pins, the generated files, engine detection."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelyard.contract import build_contract
from serving.bento.build import (
    SERVICE_SOURCES,
    BuildOptions,
    bento_labels,
    bento_name,
    bentofile,
    check_signature,
    context_digest,
    dockerfile_template,
    entry_module,
    pinned_requirements,
    repository_root,
)
from serving.bento.containerize import check_image_config, detect_engine
from serving.bento.service import ServedModel
from serving.errors import BuildError, ContainerEngineNotFound

CONTRACT = build_contract(
    pd.DataFrame({"island": ["Biscoe", "Dream"], "mass": [1.0, 2.0]}),
    pd.Series(["a", "b"], name="species"),
    "classification",
)
SERVED = ServedModel("penguins", 4, CONTRACT, run_id="r9", data_fingerprint="abc", git_commit="0f")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("penguins", "penguins"), ("my_model.v2", "my_model.v2"), ("a-b", "a-b")],
)
def test_valid_tag_names_stay(name: str, expected: str) -> None:
    assert bento_name(name) == expected


def test_names_that_must_change_get_a_hash_of_the_original() -> None:
    upper = bento_name("Penguins")
    long = bento_name("x" * 100)
    trailing = bento_name("model-")

    assert upper.startswith("penguins-") and upper != bento_name("penguins")
    assert upper != bento_name("PENGUINS")
    assert len(long) <= 63 and long.startswith("x")
    assert trailing.startswith("model-") and trailing[-1].isalnum()


def test_requirements_pin_the_whole_closure_to_installed_versions() -> None:
    import importlib.metadata

    pins = dict(line.split("==") for line in pinned_requirements())

    for package in ("bentoml", "mlflow-skinny", "scikit-learn", "skops", "pandas"):
        assert pins[package] == importlib.metadata.version(package)
    assert pins["fastapi"] == importlib.metadata.version("fastapi")  # transitive, pinned too
    assert pins["starlette"] == importlib.metadata.version("starlette")
    assert list(pins) == sorted(pins)


def test_requirements_refuse_a_missing_distribution() -> None:
    with pytest.raises(BuildError, match="needs no-such-dist-xyz, which is not installed"):
        pinned_requirements(["no-such-dist-xyz"])


def test_labels_carry_name_version_fingerprint_and_commit() -> None:
    labels = bento_labels(SERVED, "penguins:v4")

    assert labels == {
        "modelyard.model": "penguins",
        "modelyard.version": "4",
        "modelyard.data_fingerprint": "abc",
        "modelyard.git_commit": "0f",
        "modelyard.run_id": "r9",
        "modelyard.bento_model": "penguins:v4",
    }


def test_bentofile() -> None:
    options = BuildOptions(base_image="local/python:3.11")
    text = bentofile(SERVED, "penguins:v4", bento_labels(SERVED, "penguins:v4"), options)

    config = yaml.safe_load(text)

    assert config["service"] == "modelyard_service:ModelService"
    assert config["name"] == "penguins"
    assert config["models"] == ["penguins:v4"]
    assert config["labels"]["modelyard.version"] == "4"
    assert config["python"] == {"requirements_txt": "requirements.txt", "lock_packages": False}
    assert config["docker"]["base_image"] == "local/python:3.11"
    assert text == bentofile(SERVED, "penguins:v4", bento_labels(SERVED, "penguins:v4"), options)


def test_entry_module_calls_create_service_with_the_options() -> None:
    source = entry_module("penguins:v4", BuildOptions(batching="off", max_batch_size=16))

    tree = ast.parse(source)

    assert (
        "create_service(\n    'penguins:v4',\n    batching='off',\n    max_batch_size=16," in source
    )
    assert any(isinstance(node, ast.Assign) for node in tree.body)


def test_dockerfile_template_adds_a_health_check_to_bentoml_s_dockerfile() -> None:
    template = dockerfile_template()

    assert template.startswith("{% extends bento_base_template %}")
    assert "{{ super() }}" in template
    assert "HEALTHCHECK" in template and "/readyz" in template


def test_service_sources_exist() -> None:
    root = repository_root()

    assert all((root / relative).is_file() for relative in SERVICE_SOURCES)


def test_context_digest_follows_content(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.py").write_text("x = 1\n")
    first = context_digest(tmp_path)

    (tmp_path / "a" / "f.py").write_text("x = 2\n")

    assert context_digest(tmp_path) != first
    (tmp_path / "a" / "f.py").write_text("x = 1\n")
    assert context_digest(tmp_path) == first


def test_docker_is_chosen_when_its_daemon_answers() -> None:
    engine = detect_engine(which=lambda name: f"/bin/{name}", daemon_answers=lambda _: True)

    assert (engine.name, engine.binary) == ("docker", "/bin/docker")


def test_buildah_when_docker_has_no_daemon() -> None:
    engine = detect_engine(which=lambda name: f"/bin/{name}", daemon_answers=lambda _: False)

    assert engine.name == "buildah"


def test_no_engine_says_what_was_looked_for_and_how_to_install() -> None:
    with pytest.raises(ContainerEngineNotFound) as caught:
        detect_engine(
            which=lambda name: "/usr/bin/docker" if name == "docker" else None,
            daemon_answers=lambda _: False,
        )

    message = str(caught.value)
    assert "docker: /usr/bin/docker is installed but `docker info` reached no daemon" in message
    assert "buildah: not on PATH" in message
    assert "apt-get install buildah" in message
    assert "podman system service" in message


def test_no_docker_at_all() -> None:
    with pytest.raises(ContainerEngineNotFound, match="docker: not on PATH; buildah: not on PATH"):
        detect_engine(which=lambda _: None, daemon_answers=lambda _: True)


GOOD_IMAGE = {
    "User": "bentoml",
    "ExposedPorts": {"3000/tcp": {}, "3001/tcp": {}},
    "Healthcheck": {"Test": ["CMD", "python", "-c", "print(1)"]},
}


def test_a_built_image_that_passes() -> None:
    assert check_image_config(GOOD_IMAGE) == []


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"ExposedPorts": {"8080/tcp": {}}}, "MY001"),
        ({"User": ""}, "MY002"),
        ({"User": "0:0"}, "MY002"),
        ({"Healthcheck": None}, "MY003"),  # e.g. built in the OCI format, which drops it
        ({"Healthcheck": {"Test": ["NONE"]}}, "MY003"),
    ],
)
def test_a_built_image_that_fails(change: dict[str, object], rule: str) -> None:
    findings = check_image_config({**GOOD_IMAGE, **change})

    assert [(f.rule, f.severity) for f in findings] == [(rule, "error")]


def write_mlmodel(folder: Path, columns: list[str]) -> Path:
    inputs = json.dumps([{"type": "string", "name": c, "required": True} for c in columns])
    (folder / "MLmodel").write_text(yaml.safe_dump({"signature": {"inputs": inputs}}))
    return folder


def test_signature_and_contract_agree(tmp_path: Path) -> None:
    check_signature(write_mlmodel(tmp_path, ["island", "mass"]), CONTRACT)


def test_signature_and_contract_disagree(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"signature expects columns \['island'\] but"):
        check_signature(write_mlmodel(tmp_path, ["island"]), CONTRACT)


def test_not_an_mlflow_model(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="is not an MLflow model"):
        check_signature(tmp_path, CONTRACT)
