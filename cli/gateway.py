"""``modelyard gateway``: run the model gateway in front of what the deploy target serves.

Wire with ``app.command("gateway")(gateway.gateway_command)``.
"""

from __future__ import annotations

import typer

from cli.output import handle_errors, quiet_libraries
from infra.targets import get_target
from modelyard.logs import configure_logging
from modelyard.settings import get_settings


@handle_errors
def gateway_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
    target: str = typer.Option(
        "local", "--target", help="Deploy target whose running versions the gateway routes to."
    ),
) -> None:
    """Serve POST /v1/models/NAME/predict for every served model, routed as the registry says.

    Keys come from `modelyard keys`; champion, canary share and shadow from the registry,
    re-read every second (MODELYARD_GATEWAY_* variables tune it). Runs until Ctrl-C.
    """
    from serving.gateway.server import run  # uvicorn and the gateway only for this command

    settings = get_settings()
    configure_logging(settings.log_level)
    quiet_libraries()
    deploy_target = get_target(target, settings)
    run(host, port, list_running=deploy_target.status, settings=settings)
