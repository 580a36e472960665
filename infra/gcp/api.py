"""The Cloud Run Admin API (v2) through ``google-cloud-run``'s REST transport, with our errors.

``google`` is imported inside the functions here, so ``infra.gcp`` imports without the SDK and a
missing SDK surfaces from ``get_target`` as a configuration error. Every mutating call returns a
long-running operation: :class:`CloudRunApi` waits for it (Cloud Run ends it once the service is
reconciled: new revisions ready and traffic moved, or failed) and turns an operation error, an
API error or a timeout into ``CloudCallFailed`` carrying Cloud Run's own message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from infra.errors import CloudCallFailed, CredentialsNotFound
from infra.gcp.naming import TARGET

logger = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# google.auth.default()'s chain, in its order.
LOOKED_FOR = (
    "GOOGLE_APPLICATION_CREDENTIALS (a service-account or external-account key file), "
    "gcloud application-default credentials (~/.config/gcloud/application_default_credentials"
    ".json, written by `gcloud auth application-default login`; CLOUDSDK_CONFIG moves it), "
    "and the metadata server of a Google Cloud runtime (GCE, GKE, Cloud Run, Cloud Build)"
)


class NameTaken(CloudCallFailed):
    """Cloud Run refused a name that exists (ALREADY_EXISTS): a service, or a revision whose
    configuration differs from the template naming it."""


def default_credentials() -> tuple[Any, str | None]:
    """Credentials and project from google-auth's default chain (see ``LOOKED_FOR``).

    Raises ``CredentialsNotFound`` naming what was looked for when the chain finds nothing.
    """
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, project = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError as exc:
        raise CredentialsNotFound(TARGET, LOOKED_FOR, cause=_first_line(exc)) from exc
    return credentials, project


def build_clients(credentials: Any) -> tuple[Any, Any]:
    """A ``ServicesClient`` and a ``RevisionsClient`` on the REST transport."""
    from google.cloud import run_v2

    return (
        run_v2.ServicesClient(credentials=credentials, transport="rest"),
        run_v2.RevisionsClient(credentials=credentials, transport="rest"),
    )


class CloudRunApi:
    """The calls the target makes, each waited for and with errors translated."""

    def __init__(self, services: Any, revisions: Any, *, operation_timeout: float) -> None:
        self.services = services
        self.revisions = revisions
        self.operation_timeout = operation_timeout

    def get_service(self, name: str) -> Any | None:
        """The service named ``name`` (a full resource name), or None when there is none."""
        from google.api_core import exceptions

        with self._calling(f"reading service {name}"):
            try:
                return self.services.get_service(name=name)
            except exceptions.NotFound:
                return None

    def list_services(self, parent: str) -> list[Any]:
        """Every service in ``parent`` (``projects/P/locations/R``), all pages."""
        with self._calling(f"listing services in {parent}"):
            return list(self.services.list_services(parent=parent))

    def create_service(self, parent: str, service_id: str, fields: dict[str, Any]) -> Any:
        """Create a service from ``fields`` (``run_v2.Service`` field names); the created one."""
        from google.cloud import run_v2

        action = f"creating service {service_id}"
        with self._calling(action):
            operation = self.services.create_service(
                parent=parent, service=run_v2.Service(fields), service_id=service_id
            )
            return self._wait(operation, action)

    def update_service(self, service: Any, fields: dict[str, Any], mask: Sequence[str]) -> Any:
        """Send ``service`` with ``fields`` set, changing only the fields in ``mask``.

        The whole service read before goes back with its etag, so a concurrent change fails the
        call instead of being overwritten. The mask leaves an unchanged template alone: sending
        back the template as read can trip Cloud Run's "revision ... exists with different
        configuration" check (googleapis/google-cloud-python#11870).
        """
        from google.cloud import run_v2
        from google.protobuf import field_mask_pb2

        for key, value in fields.items():
            setattr(service, key, value)
        request = run_v2.UpdateServiceRequest(
            service=service, update_mask=field_mask_pb2.FieldMask(paths=list(mask))
        )
        action = f"updating service {service.name}"
        with self._calling(action):
            return self._wait(self.services.update_service(request=request), action)

    def delete_service(self, name: str) -> None:
        """Delete a service and all its revisions; a service already gone is fine."""
        from google.api_core import exceptions

        action = f"deleting service {name}"
        with self._calling(action):
            try:
                self._wait(self.services.delete_service(name=name), action)
            except exceptions.NotFound:
                logger.info("service %s was already deleted", name)

    def delete_revision(self, name: str) -> None:
        """Delete a revision (no longer in the service's traffic); one already gone is fine."""
        from google.api_core import exceptions

        action = f"deleting revision {name}"
        with self._calling(action):
            try:
                self._wait(self.revisions.delete_revision(name=name), action)
            except exceptions.NotFound:
                logger.info("revision %s was already deleted", name)

    def _wait(self, operation: Any, action: str) -> Any:
        try:
            return operation.result(timeout=self.operation_timeout)
        except TimeoutError as exc:  # concurrent.futures.TimeoutError is this one since 3.11
            name = getattr(operation.operation, "name", "")
            raise CloudCallFailed(
                TARGET,
                action,
                f"not done after {self.operation_timeout:.0f} s; operation {name} goes on",
            ) from exc

    @contextlib.contextmanager
    def _calling(self, action: str) -> Iterator[None]:
        """Translate what the SDK raises into our errors (``from`` the original)."""
        import requests
        from google.api_core import exceptions
        from google.auth import exceptions as auth_exceptions

        try:
            yield
        except exceptions.Unauthenticated as exc:
            cause = f"Cloud Run refused them: {exc.message}"
            raise CredentialsNotFound(TARGET, LOOKED_FOR, cause=cause) from exc
        except exceptions.GoogleAPICallError as exc:
            error = NameTaken if _status(exc) == "ALREADY_EXISTS" else CloudCallFailed
            raise error(TARGET, action, _message(exc)) from exc
        except exceptions.GoogleAPIError as exc:  # RetryError and the like
            raise CloudCallFailed(TARGET, action, str(exc)) from exc
        except auth_exceptions.GoogleAuthError as exc:  # a token that cannot be refreshed
            raise CredentialsNotFound(TARGET, LOOKED_FOR, cause=_first_line(exc)) from exc
        except requests.RequestException as exc:
            raise CloudCallFailed(TARGET, action, f"Cloud Run unreachable: {exc}") from exc


def _payload_error(exc: Any) -> dict[str, Any]:
    """The ``error`` object of a REST error response, else ``{}`` (an operation's error has
    the operation as its ``response``)."""
    read_json = getattr(getattr(exc, "response", None), "json", None)
    if not callable(read_json):
        return {}
    try:
        error = read_json().get("error", {})
    except ValueError:
        return {}
    return error if isinstance(error, dict) else {}


def _message(exc: Any) -> str:
    """Cloud Run's own message (the SDK prefixes REST ones with the method and URL)."""
    return str(_payload_error(exc).get("message") or exc.message or exc)


def _status(exc: Any) -> str:
    """The canonical status name (``ALREADY_EXISTS``) of an API or operation error."""
    code = getattr(exc, "grpc_status_code", None)
    return str(_payload_error(exc).get("status") or getattr(code, "name", "") or "")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
