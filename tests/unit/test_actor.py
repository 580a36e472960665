"""``current_actor``: who a change is recorded as, from the environment mapping given."""

from __future__ import annotations

import os
import socket

import pytest

from registry import actor
from registry.actor import current_actor

HOST = socket.gethostname()

GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_ACTOR": "octocat",
    "GITHUB_WORKFLOW": "release",
    "GITHUB_RUN_ID": "123",
}
GITLAB = {
    "GITLAB_CI": "true",
    "CI": "true",
    "GITLAB_USER_LOGIN": "alice",
    "CI_PROJECT_PATH": "group/project",
    "CI_JOB_ID": "456",
}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({"MODELYARD_ACTOR": "release-bot", **GITHUB}, "release-bot", id="override"),
        pytest.param({"MODELYARD_ACTOR": "  ", "USER": "alice"}, f"alice@{HOST}", id="blank"),
        pytest.param(GITHUB, "github:octocat@release#123", id="github"),
        pytest.param({**GITHUB, "GITHUB_ACTOR": ""}, "github:release#123", id="github-no-user"),
        pytest.param(
            {**GITHUB, "GITHUB_ACTIONS": "false", "USER": "bob"}, f"bob@{HOST}", id="github-off"
        ),
        pytest.param(GITLAB, "gitlab:alice@group/project#456", id="gitlab"),
        pytest.param({"GITLAB_CI": "true"}, "gitlab:unknown", id="gitlab-bare"),
        pytest.param(
            {
                "TF_BUILD": "True",
                "BUILD_REQUESTEDFOR": "Carol",
                "BUILD_DEFINITIONNAME": "deploy",
                "BUILD_BUILDID": "7",
            },
            "azure:Carol@deploy#7",
            id="azure",
        ),
        pytest.param(
            {
                "CIRCLECI": "true",
                "CIRCLE_USERNAME": "dan",
                "CIRCLE_PROJECT_REPONAME": "models",
                "CIRCLE_BUILD_NUM": "9",
            },
            "circleci:dan@models#9",
            id="circleci",
        ),
        pytest.param(
            {"JENKINS_URL": "https://ci.example/", "JOB_NAME": "deploy/main", "BUILD_NUMBER": "42"},
            "jenkins:deploy/main#42",
            id="jenkins",
        ),
        pytest.param({"CI": "true", "USER": "runner"}, f"ci:runner@{HOST}", id="generic-ci"),
        pytest.param({"CI": "1", "USER": "runner"}, f"ci:runner@{HOST}", id="generic-ci-1"),
        pytest.param({"CI": "0", "USER": "erin"}, f"erin@{HOST}", id="ci-off"),
        pytest.param({"LOGNAME": "first", "USER": "second"}, f"first@{HOST}", id="logname-first"),
        pytest.param({"USERNAME": "win"}, f"win@{HOST}", id="windows-user"),
    ],
)
def test_current_actor(environ: dict[str, str], expected: str) -> None:
    assert current_actor(environ) == expected


def test_without_user_variables_the_os_user_database_answers() -> None:
    import pwd

    assert current_actor({}) == f"{pwd.getpwuid(os.getuid()).pw_name}@{HOST}"


def test_a_uid_without_passwd_entry_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert current_actor({}) == f"unknown@{HOST}"


def test_a_failing_hostname_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise OSError("no hostname")

    monkeypatch.setattr(actor.socket, "gethostname", broken)
    assert current_actor({"USER": "alice"}) == "alice@unknown"


def test_the_default_mapping_is_the_live_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELYARD_ACTOR", "from-env")
    assert current_actor() == "from-env"
