"""Errors of the pipelines floor. Each says what is wrong with the data or config, and where."""

from __future__ import annotations

from modelyard.errors import ModelyardError


class PipelineError(ModelyardError):
    """A pipeline could not run to the end; nothing was registered."""


class ConfigError(PipelineError):
    """The run's configuration is invalid."""


class DataError(PipelineError):
    """The data cannot be read or does not fit the task or the model's contract."""
