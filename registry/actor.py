"""Who is making a change: a CI identity from the environment, else the OS user at this host.

The audit log records an actor for every attempt. ``current_actor`` reads only the mapping it is
given for everything that CI systems and ``MODELYARD_ACTOR`` provide; only the last-resort
fallback asks the OS (user database, hostname).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

ACTOR_VARIABLE = "MODELYARD_ACTOR"
# The variables getpass.getuser() consults, read from the mapping we are given instead.
USER_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")
FALSE_VALUES = frozenset({"", "0", "false", "no", "off"})
UNKNOWN = "unknown"


@dataclass(frozen=True)
class CiProvider:
    """How one CI system names who started a job, which pipeline it runs and which run it is."""

    prefix: str
    marker: str
    user: str | None
    pipeline: str | None
    run: str | None


# First match wins; a table rather than an if-chain so adding a CI system is one line.
CI_PROVIDERS: tuple[CiProvider, ...] = (
    CiProvider("github", "GITHUB_ACTIONS", "GITHUB_ACTOR", "GITHUB_WORKFLOW", "GITHUB_RUN_ID"),
    CiProvider("gitlab", "GITLAB_CI", "GITLAB_USER_LOGIN", "CI_PROJECT_PATH", "CI_JOB_ID"),
    CiProvider("azure", "TF_BUILD", "BUILD_REQUESTEDFOR", "BUILD_DEFINITIONNAME", "BUILD_BUILDID"),
    CiProvider(
        "circleci", "CIRCLECI", "CIRCLE_USERNAME", "CIRCLE_PROJECT_REPONAME", "CIRCLE_BUILD_NUM"
    ),
    CiProvider(
        "buildkite",
        "BUILDKITE",
        "BUILDKITE_BUILD_CREATOR",
        "BUILDKITE_PIPELINE_SLUG",
        "BUILDKITE_BUILD_NUMBER",
    ),
    CiProvider("jenkins", "JENKINS_URL", "BUILD_USER_ID", "JOB_NAME", "BUILD_NUMBER"),
)


def current_actor(environ: Mapping[str, str] = os.environ) -> str:
    """The identity to record for a change made by this process.

    ``MODELYARD_ACTOR`` overrides everything; then a known CI system
    (``github:octocat@release#123``, ``gitlab:alice@group/project#456``...); then any other CI
    (``CI`` set) as ``ci:user@host``; else ``user@host``. Never raises: parts that cannot be
    found become ``unknown``.
    """
    override = environ.get(ACTOR_VARIABLE, "").strip()
    if override:
        return override
    for provider in CI_PROVIDERS:
        if _is_set(environ, provider.marker):
            return _ci_identity(provider, environ)
    local = f"{_os_user(environ)}@{_hostname()}"
    return f"ci:{local}" if _is_set(environ, "CI") else local


def _ci_identity(provider: CiProvider, environ: Mapping[str, str]) -> str:
    """``prefix:user@pipeline#run``, leaving out the parts this run does not provide."""
    user, pipeline, run = (
        environ.get(name, "").strip() if name else ""
        for name in (provider.user, provider.pipeline, provider.run)
    )
    identity = f"{user}@{pipeline}" if user and pipeline else user or pipeline or UNKNOWN
    return f"{provider.prefix}:{identity}#{run}" if run else f"{provider.prefix}:{identity}"


def _is_set(environ: Mapping[str, str], name: str) -> bool:
    # CI systems say "true", "True" or "1"; Jenkins sets a URL. "false" or empty means off.
    return environ.get(name, "").strip().lower() not in FALSE_VALUES


def _os_user(environ: Mapping[str, str]) -> str:
    """The login name, as getpass.getuser() finds it but from ``environ``; ``unknown`` if none."""
    for name in USER_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return value
    try:
        import pwd  # not on Windows, where the variables above are always set

        return pwd.getpwuid(os.getuid()).pw_name or UNKNOWN
    except (ImportError, KeyError, OSError):
        # Containers often run as a uid with no passwd entry.
        return UNKNOWN


def _hostname() -> str:
    try:
        return socket.gethostname() or UNKNOWN
    except OSError:
        return UNKNOWN
