"""``modelyard deploy``: its argument rules and traffic parsing (no platform is reached)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from infra.deploy import parse_shares


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["deploy", *args])
    return result.exit_code, result.output


def test_traffic_pairs_parse_to_versions_and_percents() -> None:
    assert parse_shares(["1=90", "v2=10"]) == {1: 90, 2: 10}


@pytest.mark.parametrize(
    ("pairs", "problem"),
    [
        (["1:90"], "'1:90' is not VERSION=PERCENT"),
        (["one=90"], "'one=90' is not VERSION=PERCENT"),
        (["1=ninety"], "'1=ninety' is not VERSION=PERCENT"),
        (["1=90", "1=10"], "version 1 is given twice"),
        ([], "at least one"),
    ],
)
def test_bad_traffic_pairs_are_named(pairs: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_shares(pairs)


def test_kubernetes_needs_output_or_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = run("status", "--target", "kubernetes")
    assert code == 2
    assert "needs either --output DIR" in output


def test_output_is_refused_for_a_cloud_target(tmp_path) -> None:
    code, output = run("status", "--target", "aws", "--output", str(tmp_path))
    assert code == 2
    assert "--output and --apply are for --target kubernetes, not aws" in output


def test_unknown_target_lists_the_known_ones() -> None:
    code, output = run("status", "--target", "heroku")
    assert code == 2
    assert "unknown deploy target 'heroku'" in output and "kubernetes" in output


def test_image_without_version_is_refused() -> None:
    code, output = run("penguins", "--target", "aws", "--image", "r.example/p:v1")
    assert code == 2
    assert "--stage and --image need --version" in output


def test_bad_traffic_is_refused_before_any_platform_call() -> None:
    code, output = run("traffic", "penguins", "1=90", "2", "--target", "aws")
    assert code == 2
    assert "'2' is not VERSION=PERCENT" in output
