"""The azure target's workspace settings, error translation and long-running operation waits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.azure.client import LOOKED_FOR, azure_errors, run_operation, workspace_of
from infra.errors import CloudCallFailed, CredentialsNotFound, TargetConfigError
from modelyard.settings import AzureSettings, Settings

pytest.importorskip("azure.core")


def settings_with(tmp_path: Path, **azure: Any) -> Settings:
    return Settings(home=tmp_path, azure=AzureSettings(**azure))


def test_the_workspace_comes_from_settings(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, subscription_id="sub", resource_group="rg", workspace="ws")

    assert workspace_of(settings) == ("sub", "rg", "ws")


def test_an_unconfigured_workspace_names_every_missing_variable(tmp_path: Path) -> None:
    with pytest.raises(TargetConfigError) as caught:
        workspace_of(settings_with(tmp_path, resource_group="rg"))

    assert "no Azure ML workspace" in str(caught.value)
    assert str(caught.value.hint).startswith(
        "set MODELYARD_AZURE__SUBSCRIPTION_ID, MODELYARD_AZURE__WORKSPACE "
    )


def test_an_unusable_credential_becomes_credentials_not_found() -> None:
    from azure.identity import CredentialUnavailableError

    with pytest.raises(CredentialsNotFound) as caught, azure_errors("read endpoint"):
        raise CredentialUnavailableError("EnvironmentCredential unavailable.\nmore lines")

    assert caught.value.looked_for == LOOKED_FOR
    assert "(EnvironmentCredential unavailable.)" in str(caught.value)
    assert "AZURE_CLIENT_SECRET" in str(caught.value)
    assert "`az login`" in str(caught.value)


def test_azure_s_error_code_and_message_are_kept() -> None:
    from azure.core.exceptions import HttpResponseError, ODataV4Format

    refusal = HttpResponseError(message="(Conflict) busy\nCode: Conflict\nMessage: busy")
    refusal.error = ODataV4Format(
        {"error": {"code": "Conflict", "message": "Another operation is in progress"}}
    )

    with pytest.raises(CloudCallFailed) as caught, azure_errors("update the routes of m"):
        raise refusal

    assert str(caught.value) == (
        "azure target: update the routes of m failed: Conflict: Another operation is in progress"
    )
    assert caught.value.__cause__ is refusal


def test_a_connection_failure_is_a_failed_call() -> None:
    from azure.core.exceptions import ServiceRequestError

    failed = pytest.raises(CloudCallFailed, match="list endpoints failed: no route to host")
    with failed, azure_errors("list endpoints"):
        raise ServiceRequestError("no route to host")


class StubPoller:
    """An LROPoller stand-in: prints a dot as AzureMLPolling does; done after ``done_after``."""

    def __init__(self, done: bool) -> None:
        self._done = done
        self.waited: float | None = None

    def result(self, timeout: float | None = None) -> str:
        print(".", end="")
        self.waited = timeout
        return "resource"

    def done(self) -> bool:
        return self._done


def test_an_operation_s_result_is_returned_without_its_progress_dots(
    capsys: pytest.CaptureFixture[str],
) -> None:
    poller = StubPoller(done=True)

    assert run_operation("deploy m v1", lambda: poller, timeout=12.0) == "resource"  # type: ignore[arg-type, return-value]
    assert poller.waited == 12.0
    assert capsys.readouterr().out == ""


def test_an_operation_still_running_at_the_timeout_fails_clearly() -> None:
    with pytest.raises(CloudCallFailed, match=r"deploy m v1 failed: still running after 3 s"):
        run_operation("deploy m v1", lambda: StubPoller(done=False), timeout=3.0)  # type: ignore[arg-type, return-value]
