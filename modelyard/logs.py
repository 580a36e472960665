"""Logging set-up, called only by entry points (the CLI, the gateway's ASGI app)."""

from __future__ import annotations

import logging
import sys

OUR_PACKAGES = ("modelyard", "cli", "pipelines", "registry", "serving", "monitoring", "infra")
NOISY_LOGGERS = ("alembic", "mlflow", "urllib3", "httpx", "numexpr", "git")


def configure_logging(level: str = "INFO") -> None:
    """Our records go to stderr through our own handler.

    Our loggers do not propagate to the root logger, because Prefect installs its own console
    handler there, and the CLI turns that one down so a failed run prints one clear message
    instead of Prefect's traceback.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in OUR_PACKAGES:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    if level.upper() != "DEBUG":
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
