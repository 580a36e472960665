"""Errors of the monitoring floor; the CLI maps each to an exit code through ``ModelyardError``."""

from __future__ import annotations

from collections.abc import Iterable

from modelyard.errors import ModelyardError


class MonitoringError(ModelyardError):
    """Drift could not be computed, a profile or policy is unusable, or a report failed."""


class ProfileError(MonitoringError):
    """A reference profile cannot be built, read or used (bad file, empty or odd column)."""


class WindowError(MonitoringError):
    """The current window cannot be compared with the reference profile."""


class EmptyWindowError(WindowError):
    """The window has no rows, or some columns have no usable (finite, non-missing) value."""

    def __init__(self, columns: Iterable[str] = ()) -> None:
        self.columns = tuple(columns)
        if self.columns:
            message = (
                f"no usable values (all missing or infinite) in column(s) {list(self.columns)}"
            )
        else:
            message = "the current window has no rows"
        super().__init__(message, hint="compare a window that holds data for every column")


class MissingColumnsError(WindowError):
    """The window lacks columns the reference profile has."""

    def __init__(self, columns: Iterable[str]) -> None:
        self.columns = tuple(columns)
        super().__init__(
            f"the current window lacks column(s) {list(self.columns)} of the reference profile",
            hint="send every profiled column, or build the profile on the columns you send",
        )


class ColumnTypeError(WindowError):
    """A column profiled as numeric holds values that are not numbers."""

    def __init__(self, columns: Iterable[tuple[str, str]]) -> None:
        self.columns = tuple(columns)
        shown = ", ".join(f"{name!r} (dtype {dtype})" for name, dtype in self.columns)
        super().__init__(
            f"numeric column(s) hold non-numeric values: {shown}",
            hint="conform the window to the model's data contract first",
        )


class PolicyError(MonitoringError):
    """A monitoring policy file is missing, unreadable or invalid."""


class ReportError(MonitoringError):
    """Evidently failed to compute or write a report."""
