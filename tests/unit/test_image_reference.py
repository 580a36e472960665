"""Image references: parsing, formatting, and the name of a model version's image."""

from __future__ import annotations

import re

import pytest

from infra.errors import ImagePushFailed, TargetConfigError
from infra.images.errors import InvalidImageReference
from infra.images.reference import (
    ImageReference,
    image_reference,
    is_loopback,
    parse_reference,
    repository_name,
    sanitise_component,
)
from modelyard.settings import ImageSettings, Settings

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "host", "repository", "tag", "digest"),
    [
        (
            "127.0.0.1:5000/modelyard-penguins:v3",
            "127.0.0.1:5000",
            "modelyard-penguins",
            "v3",
            None,
        ),
        ("localhost/penguins", "localhost", "penguins", None, None),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/modelyard-penguins:v1",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "modelyard-penguins",
            "v1",
            None,
        ),
        (
            "europe-docker.pkg.dev/my-project/models/modelyard-penguins:v2",
            "europe-docker.pkg.dev",
            "my-project/models/modelyard-penguins",
            "v2",
            None,
        ),
        (f"myreg.azurecr.io/a/b@{DIGEST}", "myreg.azurecr.io", "a/b", None, DIGEST),
        (f"host.io/a__b.c-d---e:V_1.0-rc@{DIGEST}", "host.io", "a__b.c-d---e", "V_1.0-rc", DIGEST),
        ("[::1]:5000/penguins:v1", "[::1]:5000", "penguins", "v1", None),
    ],
)
def test_parse_and_format_round_trip(
    text: str, host: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (host, repository, tag, digest)
    assert str(ref) == text
    assert ref.name == f"{host}/{repository}"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("host.io/ penguins", "whitespace"),
        ("https://host.io/penguins:v1", "URL scheme"),
        ("penguins:v1", "names no registry host"),
        ("library/penguins:v1", "names no registry host"),
        ("host.io/Penguins:v1", "'Penguins' must be lowercase"),
        ("host.io/pen--/x", "'pen--'"),
        ("host.io/a//b", "component ''"),
        ("host.io/", "repository name after the host is empty"),
        ("host.io/penguins:", "tag ''"),
        ("host.io/penguins:-v1", "tag '-v1'"),
        ("host.io/penguins:" + "v" * 129, "1-128"),
        ("host.io/penguins@sha256:abc", "digest 'sha256:abc'"),
        ("host.io/penguins@", "digest ''"),
        ("host.io/penguins@md5:" + "a" * 32, "digest"),
        ("bad_host.io/penguins", "registry host 'bad_host.io'"),
        ("host.io:99999/penguins", "port 99999 is out of range"),
        ("host.io/" + "a" * 250, "at most 255"),
    ],
)
def test_bad_references_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidImageReference) as caught:
        parse_reference(text)
    assert problem in str(caught.value)
    assert isinstance(caught.value, ValueError)  # bad input
    assert isinstance(caught.value, ImagePushFailed)  # and nothing can be pushed to it


def test_docker_hub_is_spoken_to_at_its_api_host() -> None:
    assert parse_reference("docker.io/me/penguins:v1").api_host == "registry-1.docker.io"
    assert parse_reference("host.io:5000/p:v1").api_host == "host.io:5000"


def test_pinned_drops_the_tag_and_checks_the_digest() -> None:
    ref = parse_reference("host.io/p:v1")
    assert str(ref.pinned(DIGEST)) == f"host.io/p@{DIGEST}"
    with pytest.raises(InvalidImageReference):
        ref.pinned("sha256:nothex")
    assert ImageReference("h.io", "p", tag="v1").manifest_ref == "v1"
    assert ImageReference("h.io", "p", tag="v1", digest=DIGEST).manifest_ref == DIGEST


@pytest.mark.parametrize(
    ("hostname", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("registry.example.com", False),
    ],
)
def test_loopback(hostname: str, loopback: bool) -> None:
    assert is_loopback(hostname) is loopback


def test_hostname_drops_port_and_brackets() -> None:
    assert parse_reference("127.0.0.1:5000/p").hostname == "127.0.0.1"
    assert parse_reference("[::1]:5000/p").hostname == "::1"
    assert parse_reference("host.io/p").hostname == "host.io"


# --- a model version's image


def settings(registry: str | None, prefix: str = "modelyard") -> Settings:
    return Settings(images=ImageSettings(registry=registry, repository_prefix=prefix))


def test_image_reference_of_a_version() -> None:
    assert image_reference(settings("127.0.0.1:5000"), "penguins", 3) == (
        "127.0.0.1:5000/modelyard-penguins:v3"
    )
    assert image_reference(settings("europe-docker.pkg.dev/proj/models/"), "churn-v2", 1) == (
        "europe-docker.pkg.dev/proj/models/modelyard-churn-v2:v1"
    )
    assert image_reference(settings("host.io", prefix=""), "fraud_detector", 12) == (
        "host.io/fraud_detector:v12"
    )


def test_no_registry_names_the_variable() -> None:
    with pytest.raises(TargetConfigError) as caught:
        image_reference(settings(None), "penguins", 1)
    assert "MODELYARD_IMAGES__REGISTRY" in str(caught.value)


def test_a_bad_registry_setting_names_the_variable_and_the_problem() -> None:
    with pytest.raises(TargetConfigError) as caught:
        image_reference(settings("https://host.io"), "penguins", 1)
    assert "MODELYARD_IMAGES__REGISTRY='https://host.io'" in str(caught.value)
    assert "URL scheme" in str(caught.value)
    with pytest.raises(TargetConfigError, match=r"MODELYARD_IMAGES__REGISTRY='host\.io/Team'"):
        image_reference(settings("host.io/Team"), "penguins", 1)


@pytest.mark.parametrize("version", [0, -1, True])
def test_bad_version(version: int) -> None:
    with pytest.raises(ValueError, match="version"):
        image_reference(settings("host.io"), "penguins", version)


@pytest.mark.parametrize(
    ("name", "component"),
    [
        ("penguins", "penguins"),
        ("fraud_detector", "fraud_detector"),
        ("Penguins", "penguins"),
        ("fraud detector!!", "fraud-detector"),
        ("a..b", "a-b"),
        ("a___b", "a-b"),
        ("a__b", "a__b"),
        ("-a-", "a"),
        ("été", "t"),
        ("!!!", "model"),
    ],
)
def test_sanitise_component(name: str, component: str) -> None:
    assert sanitise_component(name) == component


def test_changed_names_get_a_hash_so_models_never_share_a_repository() -> None:
    plain = repository_name("modelyard", "penguins")
    upper = repository_name("modelyard", "Penguins")
    spaced = repository_name("modelyard", "PENGUINS")
    assert plain == "modelyard-penguins"
    assert re.fullmatch(r"modelyard-penguins-[0-9a-f]{6}", upper)
    assert upper != spaced != plain
    assert repository_name("modelyard", "Penguins") == upper  # stable


def test_long_names_are_cut_to_fit_with_their_hash() -> None:
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    reference = image_reference(settings(registry), "m" * 400, 1)
    assert len(reference.rsplit(":", 1)[0]) <= 255
    parse_reference(reference)  # valid
    other = image_reference(settings(registry), "m" * 399, 1)
    assert other != reference
