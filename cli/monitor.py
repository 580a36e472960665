"""``modelyard monitor``: judge drift by hand. Exit 0 no drift, 1 drift, 2 error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cli.output import err, handle_errors, out, print_json, quiet_libraries
from modelyard.logs import configure_logging
from modelyard.settings import get_settings

if TYPE_CHECKING:
    from pipelines.flows.monitor import MonitorResult


def _window(window: str | None) -> tuple[int | None, float | None]:
    """``5000`` (rows) or ``30m`` / ``2h`` / ``1d`` (time) into (last_rows, since_minutes)."""
    if window is None:
        return None, None
    units = {"m": 1.0, "h": 60.0, "d": 1440.0}
    try:
        if window[-1] in units:
            return None, float(window[:-1]) * units[window[-1]]
        return int(window), None
    except ValueError as exc:
        message = f"--window {window!r}: give rows (5000) or a time (30m, 2h, 1d)"
        raise typer.BadParameter(message) from exc


@handle_errors
def monitor_command(
    name: str,
    window: str | None = typer.Option(None, "--window", help="Rows (5000) or time (30m, 2h)."),
    version: int | None = typer.Option(None, "--version", help="Default: the champion."),
    current: Path | None = typer.Option(None, "--current", help="Judge a CSV/Parquet batch."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Compare live traffic (or a batch file) with the training reference; write the reports."""
    configure_logging("WARNING")
    quiet_libraries()
    last_rows, since = _window(window)
    from pipelines.flows.monitor import monitor, run_monitoring

    if current is not None:  # a batch needs no flow run: the same steps, called directly
        result = run_monitoring(get_settings(), name, version=version, batch=current)
    else:
        result = asyncio.run(monitor(name, version, last_rows, since))
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        _print(result)
    if result.drifted or result.action != "none":
        raise typer.Exit(1)


def _print(r: MonitorResult) -> None:
    table = Table("column", "method", "score", "threshold", "drifted")
    for c in r.columns:
        table.add_row(
            c["column"],
            c["method"],
            f"{c['score']:.4g}",
            f"{c['threshold']:.4g}",
            "[red]yes[/red]" if c["drifted"] else "no",
        )
    out.print(table)
    verdict = "[red]drift[/red]" if r.drifted else "[green]no drift[/green]"
    err.print(
        f"{r.model} v{r.version}: {verdict} on {r.window_rows} rows, "
        f"share {r.drift_share:.0%}; action {r.action}"
    )
    for reason in r.reasons:
        err.print(f"  - {reason}")
    out.print(f"report: {r.report_html}")
