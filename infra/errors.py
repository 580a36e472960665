"""Errors of the infra floor: putting a version somewhere that serves, and routing traffic to it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from modelyard.errors import ModelyardError


class DeployError(ModelyardError):
    """A deploy target could not deploy, route, report on or remove a version."""


class UnknownTarget(DeployError):
    """No deploy target is registered under the requested name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"unknown deploy target {name!r}; known targets: {', '.join(self.known) or 'none'}",
            hint="pass --target with one of the known names",
        )


class InvalidTraffic(DeployError):
    """Traffic shares that cannot be applied (wrong sum, negative, a share for a shadow)."""

    def __init__(self, model: str, problem: str, shares: dict[int, int]) -> None:
        self.model = model
        self.shares = dict(shares)
        super().__init__(
            f"traffic shares {_format_shares(shares)} for {model!r} are invalid: {problem}",
            hint="give each answering version a whole percent, summing to 100; shadows get 0",
        )


class VersionNotDeployed(DeployError):
    """A version was named that the target does not run for that model."""

    def __init__(self, model: str, version: int, deployed: Iterable[int]) -> None:
        self.model = model
        self.version = version
        self.deployed = sorted(deployed)
        running = ", ".join(f"v{v}" for v in self.deployed) or "none"
        super().__init__(
            f"version {version} of {model!r} is not deployed (deployed: {running})",
            hint="`modelyard serve status` lists what runs",
        )


class ServerStartFailed(DeployError):
    """A model server exited or did not become ready; the message carries its log's last lines."""

    def __init__(
        self, model: str, version: int, reason: str, log_path: Path, log_tail: str
    ) -> None:
        self.model = model
        self.version = version
        self.log_path = log_path
        self.log_tail = log_tail
        tail = f"\n--- last lines of {log_path} ---\n{log_tail}" if log_tail else ""
        super().__init__(
            f"server for {model} v{version} {reason}{tail}",
            hint=f"full log: {log_path}",
        )


class DeployCancelled(DeployError):
    """A start was interrupted (Ctrl-C or a stop signal) before the server was ready."""


class AlreadyServing(DeployError):
    """Another live supervisor already owns the model's processes."""

    def __init__(self, model: str, pid: int) -> None:
        self.model = model
        self.pid = pid
        super().__init__(
            f"{model!r} is already served by supervisor pid {pid}",
            hint=f"`modelyard serve stop {model}` ends it",
        )


class NothingToServe(DeployError):
    """The registry names no version to serve for the model."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"model {model!r} has no champion to serve",
            hint=f"promote a version first (`modelyard versions {model}` lists them)",
        )


class StateError(DeployError):
    """The local serving state file cannot be read, written or locked."""


class StateCorrupted(StateError):
    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(
            f"serving state file {path} is unreadable: {problem}",
            hint="stop any `bentoml serve` processes it listed, then delete the file",
        )


class StateLocked(StateError):
    def __init__(self, path: Path, waited: float) -> None:
        self.path = path
        super().__init__(
            f"serving state {path} stayed locked by another process for {waited:.0f} s",
            hint="another `modelyard serve` command is busy; retry in a moment",
        )


class ImageRequired(DeployError):
    """A remote target was asked to deploy a version without an OCI image to run."""

    def __init__(self, target: str, model: str, version: int) -> None:
        self.target = target
        self.model = model
        self.version = version
        super().__init__(
            f"the {target} target runs images: {model} v{version} has none",
            hint="pass --image REF, or set MODELYARD_IMAGES__REGISTRY so one is built and pushed",
        )


class TargetConfigError(DeployError):
    """A target's configuration is missing or wrong (e.g. no region, no role, no project)."""

    def __init__(self, target: str, problem: str, hint: str) -> None:
        self.target = target
        super().__init__(f"{target} target: {problem}", hint=hint)


class CredentialsNotFound(DeployError):
    """The cloud SDK's standard credential chain found nothing usable."""

    def __init__(self, target: str, looked_for: str, cause: str = "") -> None:
        self.target = target
        self.looked_for = looked_for
        detail = f" ({cause})" if cause else ""
        super().__init__(
            f"{target} target: no usable credentials{detail}; looked for {looked_for}",
            hint="set one of those, or run from a machine with a role/identity attached",
        )


class CloudCallFailed(DeployError):
    """The platform refused or failed a call; the message carries its own error text."""

    def __init__(self, target: str, action: str, detail: str) -> None:
        self.target = target
        self.action = action
        super().__init__(f"{target} target: {action} failed: {detail}")


class ImagePushFailed(DeployError):
    """An image could not be pushed to (or checked in) an OCI registry."""


class NoContainerEngine(DeployError):
    """Building an image needs buildah, podman or a Docker engine, and none is usable here."""


def _format_shares(shares: dict[int, int]) -> str:
    return "{" + ", ".join(f"v{v}: {p}%" for v, p in sorted(shares.items())) + "}"
