"""Errors of the registry floor; the CLI maps each to an exit code."""

from __future__ import annotations

from modelyard.errors import ModelyardError


class RegistryError(ModelyardError):
    """Something about registered models or their versions went wrong."""


class ModelNotFound(RegistryError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"no registered model named {name!r}", hint="`modelyard models` lists them"
        )
        self.name = name


class VersionNotFound(RegistryError):
    def __init__(self, name: str, version: int | str) -> None:
        super().__init__(
            f"model {name!r} has no version {version}",
            hint=f"`modelyard versions {name}` lists them",
        )
        self.name = name
        self.version = version


class RegistryUnavailable(RegistryError):
    """The tracking or registry store cannot be reached or opened."""
