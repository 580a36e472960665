"""The whole loop, as `make demo` tells it but with less traffic: real Prefect flow runs, real
MLflow store, real `bentoml serve` processes behind the real gateway, real Evidently report."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from pipelines.demo.story import DemoSize, run_story

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


class Recorder:
    """Keeps the story's lines, and prints them so a failure shows what the loop did."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def chapter(self, title: str) -> None:
        self.lines.append(title)
        print(title)

    def say(self, text: str) -> None:
        self.lines.append(text)
        print("  " + text)


def bento_servers(home: Path) -> list[psutil.Process]:
    """``bentoml serve`` processes (and workers) started for this test's state folder."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "bentoml" not in cmdline:
            continue
        try:
            bentoml_home = process.environ().get("BENTOML_HOME", "")
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if bentoml_home.startswith(str(home)):
            found.append(process)
    return found


def test_drift_retrain_staged_rollout_and_automatic_rollback(isolated_home: Path) -> None:
    from modelyard.settings import get_settings
    from registry.promotion import open_promoter

    report = run_story(
        get_settings(), Recorder(), DemoSize(baseline=200, changed=250, per_step=100, concurrency=8)
    )
    promoter = open_promoter(get_settings())
    model = report.model

    # detection: calm window first, then drift with an Evidently report and a retrain verdict
    calm, moved = report.monitors
    assert not calm.drifted and calm.action == "none"
    assert moved.drifted and moved.action == "retrain"
    assert {"bill_length_mm", "flipper_length_mm"} <= {c["column"] for c in moved.drifted_columns}
    assert "<html" in Path(moved.report_html).read_text()[:2000].lower()
    assert json.loads(Path(moved.report_json).read_text())["action"] == "retrain"

    # retraining and staged promotion: shadow, canary steps, champion
    state = promoter.state(model)
    assert state.champion == 2 and state.canary is None and state.shadow is None
    changes = [
        (e.version, e.to_stage, e.traffic_share)
        for e in promoter.audit.history(model)
        if e.outcome.value == "applied" and e.action.value != "register"
    ]
    assert changes[:5] == [
        (1, "champion", None),
        (2, "shadow", None),
        (2, "canary", 25),
        (2, "canary", 50),
        (2, "champion", None),
    ]
    assert report.verdict_to_canary_s is not None and report.verdict_to_canary_s < 120

    # round two: the stale candidate reaches shadow, live labels expose it, it is rolled back
    v3 = promoter.registry.get_version(model, 3)
    assert v3.stage.value == "retired"
    last = promoter.audit.history(model)[-1]
    assert last.version == 3 and last.reason.startswith("automatic rollback")
    assert "quality" in last.reason and last.evidence["stats"]["requests"] > 0

    assert report.errors == 0
    assert bento_servers(isolated_home) == []  # nothing left running
