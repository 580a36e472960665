"""Errors of ``infra.images`` (both kinds of :class:`~infra.errors.ImagePushFailed`) and the
registry's own error words."""

from __future__ import annotations

import json

from infra.errors import ImagePushFailed


class InvalidImageReference(ImagePushFailed, ValueError):
    """An image reference that breaks the OCI/Docker grammar; the message names the part."""

    def __init__(self, reference: str, problem: str) -> None:
        self.reference = reference
        self.problem = problem
        super().__init__(
            f"image reference {reference!r} is invalid: {problem}",
            hint="write it as HOST[:PORT]/PATH/REPOSITORY[:TAG][@sha256:DIGEST], "
            "e.g. 127.0.0.1:5000/modelyard-penguins:v3",
        )


class ImageLayoutError(ImagePushFailed):
    """An OCI image layout on disk is missing a file or holds a blob whose digest is wrong."""

    def __init__(self, root: object, problem: str) -> None:
        self.root = root
        super().__init__(
            f"OCI image layout {root} is unusable: {problem}",
            hint="rebuild the image; a layout is written by `buildah push IMAGE oci:DIR`, "
            "`skopeo copy` or from `docker save`",
        )


class RegistryUnavailable(ImagePushFailed):
    """A registry call failed in a way that may pass: a dropped connection, a timeout, or an
    HTTP status registries answer under load (``infra.images.retry.TRANSIENT_STATUSES``).

    ``retry_after_s`` is what the registry's ``Retry-After`` asked for, when it said.
    """

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, hint: str | None = None
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, hint=hint or UNAVAILABLE_HINT)

    def gave_up(self, attempts: int) -> RegistryUnavailable:
        """The same failure, saying how many tries were made before giving up."""
        if attempts <= 1:
            return self
        return RegistryUnavailable(
            f"{self.message} (gave up after {attempts} attempts)",
            retry_after_s=self.retry_after_s,
            hint=self.hint,
        )


UNAVAILABLE_HINT = (
    "the registry or the network to it is failing; nothing pushed so far is lost, so run the "
    "same command again later (blobs already uploaded are skipped), or allow more tries with "
    "MODELYARD_IMAGES__PUSH_ATTEMPTS"
)


def describe_error_body(body: bytes, *, limit: int = 500) -> str:
    """The registry's own words: ``CODE: message (detail)`` for each of the distribution API's
    ``errors`` (or a token server's ``details``/``error``), else the body's start, else ''."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        errors = parsed.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(_describe_one(e) for e in errors)
        for key in ("details", "error_description", "error", "message"):
            if isinstance(parsed.get(key), str) and parsed[key]:
                return str(parsed[key])
    text = body.decode("utf-8", "replace").strip()
    return text[:limit] + ("..." if len(text) > limit else "")


def _describe_one(error: object) -> str:
    if not isinstance(error, dict):
        return str(error)
    code, message, detail = error.get("code"), error.get("message"), error.get("detail")
    words = ": ".join(str(part) for part in (code, message) if part)
    if detail not in (None, "", {}, []):
        words += f" ({detail})"
    return words or str(error)
