"""Alerts: a Slack-compatible webhook message and a log line naming what drifted and where."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from monitoring.errors import MonitoringError

logger = logging.getLogger(__name__)


def alert_message(
    model: str,
    version: int,
    action: str,
    drifted: list[str],
    share: float,
    reasons: list[str],
    report: str,
) -> dict[str, Any]:
    """Slack's incoming-webhook payload (``text`` plus a plain ``blocks`` section)."""
    columns = ", ".join(drifted) if drifted else "none"
    text = (
        f"[modelyard] {model} v{version}: {action}. Drifted columns ({share:.0%}): {columns}. "
        f"{' '.join(reasons)} Report: {report}"
    )
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        "model": model,
        "version": version,
        "action": action,
        "drifted_columns": drifted,
        "report": report,
    }


def send_alert(message: dict[str, Any], webhook_url: str | None, timeout_s: float = 5.0) -> bool:
    """Log the alert and POST it to the webhook when one is configured.

    Returns whether the webhook accepted it. Raises ``MonitoringError`` when it refused or could
    not be reached, so a missed alert is never silent.
    """
    logger.warning("%s", message["text"])
    if not webhook_url:
        return False
    try:
        response = httpx.post(webhook_url, json=message, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise MonitoringError(f"alert webhook unreachable: {exc}") from exc
    if response.status_code >= 300:
        raise MonitoringError(
            f"alert webhook answered {response.status_code}: {response.text[:200]}"
        )
    return True
