"""``modelyard gateway``: options reach the server; settings come from MODELYARD_GATEWAY_*."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import serving.gateway.server as server
from cli.gateway import gateway_command
from serving.gateway.server import GatewaySettings


def command_app() -> typer.Typer:
    app = typer.Typer()
    app.command("gateway")(gateway_command)
    app.command("other")(lambda: None)  # two commands, so Typer keeps the "gateway" name
    return app


def test_host_and_port_reach_the_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from modelyard.settings import get_settings

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(server, "run", lambda host, port, **kw: calls.append({"host": host,
                        "port": port, **kw}))  # fmt: skip
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path))
    get_settings.cache_clear()
    result = CliRunner().invoke(command_app(), ["gateway", "--host", "0.0.0.0", "--port", "9099"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert calls[0]["host"] == "0.0.0.0" and calls[0]["port"] == 9099
    assert calls[0]["list_running"].__self__.name == "local"  # the local target's status


def test_a_port_out_of_range_is_refused() -> None:
    result = CliRunner().invoke(command_app(), ["gateway", "--port", "0"])
    assert result.exit_code == 2
    assert "--port" in result.output


def test_gateway_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_GATEWAY_CACHE_MODELS", "churn, fraud")
    monkeypatch.setenv("MODELYARD_GATEWAY_BUDGET_S", "2.5")
    monkeypatch.setenv("MODELYARD_GATEWAY_MAX_BODY_BYTES", "1024")
    config = GatewaySettings().config()
    assert config.cache.caches("fraud") and not config.cache.caches("other")
    assert config.forward.budget_s == 2.5 and config.max_body_bytes == 1024
