"""The Azure ML client of the ``azure`` target: its workspace from settings, its credential from
``DefaultAzureCredential``'s chain, and Azure's errors and long-running operations in our terms.

The SDK is imported inside the functions (``azure.ai.ml`` takes seconds to import), so importing
this module, or :mod:`infra.azure.target`, costs nothing until a target is built.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from infra.errors import CloudCallFailed, CredentialsNotFound, TargetConfigError

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.core.credentials import TokenCredential
    from azure.core.exceptions import HttpResponseError
    from azure.core.polling import LROPoller

    from modelyard.settings import Settings

logger = logging.getLogger(__name__)
TARGET = "azure"
T = TypeVar("T")

# What DefaultAzureCredential tries, in its order (azure-identity 1.2x).
LOOKED_FOR = (
    "a service principal in AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_CLIENT_SECRET "
    "(or AZURE_CLIENT_CERTIFICATE_PATH), a workload identity (AZURE_FEDERATED_TOKEN_FILE), "
    "a managed identity (the instance metadata service; AZURE_CLIENT_ID picks a user-assigned "
    "one), the VS Code Azure Resources sign-in, the Azure CLI login (`az login`), Azure "
    "PowerShell (`Connect-AzAccount`) and the Azure Developer CLI (`azd auth login`)"
)
_WORKSPACE_FIELDS = ("subscription_id", "resource_group", "workspace")


def workspace_of(settings: Settings) -> tuple[str, str, str]:
    """The subscription, resource group and workspace to deploy to.

    Raises ``TargetConfigError`` naming the ``MODELYARD_AZURE__...`` variables that are unset.
    """
    values = [getattr(settings.azure, name) for name in _WORKSPACE_FIELDS]
    missing = [
        f"MODELYARD_AZURE__{name.upper()}"
        for name, value in zip(_WORKSPACE_FIELDS, values, strict=True)
        if not value
    ]
    if missing:
        raise TargetConfigError(
            TARGET,
            "no Azure ML workspace is configured",
            hint=f"set {', '.join(missing)} (the workspace's subscription, resource group, name)",
        )
    subscription, group, workspace = (str(v) for v in values)
    return subscription, group, workspace


def default_credential() -> TokenCredential:
    """``DefaultAzureCredential``: it looks for credentials only when a token is first needed.

    Raises ``CredentialsNotFound`` when its configuration is refused (a bad
    ``AZURE_TOKEN_CREDENTIALS``).
    """
    from azure.identity import DefaultAzureCredential

    try:
        return DefaultAzureCredential()
    except ValueError as exc:
        raise CredentialsNotFound(TARGET, LOOKED_FOR, cause=str(exc)) from exc


def build_ml_client(settings: Settings, credential: TokenCredential | None = None) -> MLClient:
    """An ``MLClient`` on the configured workspace. Raises ``TargetConfigError``."""
    from azure.ai.ml import MLClient

    subscription, group, workspace = workspace_of(settings)
    return MLClient(
        credential or default_credential(),
        subscription_id=subscription,
        resource_group_name=group,
        workspace_name=workspace,
        enable_telemetry=False,
        show_progress=False,
    )


@contextlib.contextmanager
def azure_errors(action: str) -> Iterator[None]:
    """Translate what the SDK raises while doing ``action``.

    ``CredentialsNotFound`` when no credential gave a token or Azure refused it (401),
    ``CloudCallFailed`` with Azure's code and message for any other refusal or failure.
    """
    from azure.ai.ml.exceptions import MlException
    from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

    try:
        yield
    except ClientAuthenticationError as exc:
        raise CredentialsNotFound(TARGET, LOOKED_FOR, cause=_first_line(exc)) from exc
    except HttpResponseError as exc:
        raise CloudCallFailed(TARGET, action, _detail(exc)) from exc
    except (AzureError, MlException) as exc:  # no connection, timeouts, client-side validation
        raise CloudCallFailed(TARGET, action, _first_line(exc)) from exc


def run_operation(action: str, begin: Callable[[], LROPoller[T]], timeout: float) -> T:
    """Start a long-running operation and wait up to ``timeout`` seconds for its result.

    Raises like :func:`azure_errors`, and ``CloudCallFailed`` when it is still running then (it
    goes on in Azure). The SDK prints a dot per status poll: kept off our stdout, which may be a
    command's ``--json`` output.
    """
    with azure_errors(action), contextlib.redirect_stdout(io.StringIO()):
        poller = begin()
        result = poller.result(timeout=timeout)
        if not poller.done():
            raise CloudCallFailed(
                TARGET, action, f"still running after {timeout:.0f} s (it goes on in Azure)"
            )
    logger.info("azure: %s done", action)
    return result


def call(action: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` with its errors translated (see :func:`azure_errors`)."""
    with azure_errors(action):
        return function(*args, **kwargs)


def _detail(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    if message:
        return f"{code}: {message}" if code else str(message)
    return _first_line(exc)


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
