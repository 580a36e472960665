"""The monitor's verdict as a Prefect event: built purely, sent through Prefect's test client."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.testing.fixtures import asserting_events_worker  # noqa: F401  (a pytest fixture)

from pipelines.events import VERDICT_EVENT, emit_verdict, model_resource_id, verdict_event


def judged(**changes: Any) -> SimpleNamespace:
    fields: dict[str, Any] = {
        "model": "churn",
        "version": 7,
        "action": "retrain",
        "drifted": True,
        "drift_share": 0.6,
        "window_rows": 4000,
        "drifted_columns": [{"column": "spend", "score": 0.3}, {"column": "tenure"}],
        "reasons": ["3 of 5 columns drifted"],
        "quality_delta": None,
        "report_html": "/reports/churn/v7/drift_report.html",
    }
    return SimpleNamespace(**{**fields, **changes})


def test_the_event_names_the_model_resource_and_carries_the_verdict() -> None:
    event = verdict_event(judged())
    assert event.event == VERDICT_EVENT == "modelyard.monitor.verdict"
    assert event.resource == {
        "prefect.resource.id": "modelyard.model.churn",
        "prefect.resource.name": "churn",
        "prefect.resource.role": "model",
        "modelyard.model.version": "7",
        "modelyard.verdict.action": "retrain",
    }
    assert event.payload["action"] == "retrain" and event.payload["version"] == 7
    assert event.payload["drifted_columns"] == ["spend", "tenure"]
    assert event.payload["report_html"].endswith("drift_report.html")
    assert model_resource_id("price") == "modelyard.model.price"


def test_a_wide_drift_is_cut_to_fit_an_event() -> None:
    columns = [{"column": f"c{i}"} for i in range(500)]
    assert len(verdict_event(judged(drifted_columns=columns)).payload["drifted_columns"]) == 50


@pytest.fixture
def offline_api() -> Iterator[None]:
    """An API URL nothing listens on: the events worker opens a client to it but never calls it
    (without one, Prefect would start a temporary server)."""
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        yield


def test_emit_sends_it_through_prefects_events_worker(
    offline_api: None,
    asserting_events_worker: EventsWorker,  # noqa: F811
) -> None:
    assert emit_verdict(judged(action="alert")) is True
    asserting_events_worker.drain()
    assert AssertingEventsClient.last is not None
    [event] = AssertingEventsClient.last.events
    assert event.event == VERDICT_EVENT
    assert event.resource.id == "modelyard.model.churn"
    assert event.resource["modelyard.verdict.action"] == "alert"
    assert event.payload["drift_share"] == 0.6


def test_emit_never_raises_when_prefect_cannot_take_the_event(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise RuntimeError("events backend down")

    monkeypatch.setattr("prefect.events.emit_event", refuse)
    with caplog.at_level(logging.WARNING, logger="pipelines.events"):
        assert emit_verdict(judged()) is False
    assert "events backend down" in caplog.text and "churn" in caplog.text

    monkeypatch.setattr("prefect.events.emit_event", lambda *_, **__: None)
    with caplog.at_level(logging.WARNING, logger="pipelines.events"):
        assert emit_verdict(judged()) is False
    assert "PREFECT_API_URL" in caplog.text
