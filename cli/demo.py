"""``modelyard demo``: the main job on embedded defaults, told step by step."""

from __future__ import annotations

import time

from rich.table import Table

from cli.output import handle_errors, out, quiet_libraries
from modelyard.logs import configure_logging
from modelyard.settings import get_settings


class ConsoleNarrator:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def chapter(self, title: str) -> None:
        out.print(f"\n[bold cyan][{time.perf_counter() - self.started:5.1f}s] {title}[/bold cyan]")

    def say(self, text: str) -> None:
        out.print(f"    {text}", highlight=False)


@handle_errors
def demo_command() -> None:
    """The whole loop: train, serve behind the gateway, drift, retrain, staged rollout, rollback."""
    configure_logging("WARNING")
    quiet_libraries()
    settings = get_settings()
    out.rule("[bold]Modelyard demo[/bold]")
    out.print(f"state folder: {settings.home}  (MLflow store {settings.mlflow_tracking_uri})")
    from pipelines.demo.story import run_story

    started = time.perf_counter()
    report = run_story(settings, ConsoleNarrator())
    _summary(report, time.perf_counter() - started)


def _summary(report: object, seconds: float) -> None:
    from pipelines.demo.story import DemoReport

    assert isinstance(report, DemoReport)
    settings = get_settings()
    from registry.promotion import open_promoter

    promoter = open_promoter(settings)
    versions = Table(
        "version", "stage", "accuracy (held-out)", "champion on same rows", "data", title="versions"
    )
    for v in promoter.registry.list_versions(report.model):
        champion = v.champion_metrics.get("accuracy")
        versions.add_row(
            str(v.version),
            v.stage.value,
            f"{v.metrics.get('accuracy', 0):.3f}",
            f"{champion:.3f}" if champion is not None else "-",
            v.tags.get("modelyard.data_source", "-")[-40:],
        )
    out.print(versions)
    history = Table("change", "outcome", "why", title="promotion history (audit log)")
    for entry in promoter.audit.history(report.model):
        if entry.action.value != "register":
            history.add_row(entry.describe(), entry.outcome.value, entry.reason[:70])
    out.print(history)
    drift = Table("window", "drifted columns (score)", "share", "action", "report")
    for m in report.monitors:
        cols = ", ".join(f"{c['column']} {c['score']:.3g}" for c in m.drifted_columns) or "-"
        drift.add_row(
            f"v{m.version}, {m.window_rows} rows",
            cols,
            f"{m.drift_share:.0%}",
            m.action,
            m.report_html,
        )
    out.print(drift)
    timings = Table("phase", "seconds", title="timings")
    for phase, value in report.timings.items():
        timings.add_row(phase, f"{value:.1f}")
    if report.verdict_to_canary_s is not None:
        timings.add_row(
            "drift verdict → new version serving as canary", f"{report.verdict_to_canary_s:.1f}"
        )
    timings.add_row("total", f"{seconds:.1f}")
    out.print(timings)
    out.print(
        f"requests sent through the gateway: {report.requests_sent} (errors: {report.errors})"
    )
    out.print("HTML drift reports:")
    for m in report.monitors:
        out.print(f"  {m.report_html}")
    out.print(f"MLflow UI: .venv/bin/mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}")
