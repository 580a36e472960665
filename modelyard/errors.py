"""The root of every error Modelyard raises on purpose.

Each package derives its own base from ``ModelyardError`` (``RegistryError``, ``PipelineError``...),
so the CLI can print any of them as a clear message and map it to an exit code.
"""

from __future__ import annotations


class ModelyardError(Exception):
    """An error with a message meant for the user: what was wrong, and what to do."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigurationError(ModelyardError):
    """Settings or a configuration file are invalid."""
