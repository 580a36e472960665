from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from monitoring.observations import version_stats

START = datetime(2026, 1, 1, tzinfo=UTC)


def request(rid: str, version: int, route: str, preds, labels=None, status=200, latency=5.0, t=0):
    return {
        "request_id": rid,
        "at": START + timedelta(seconds=t),
        "version": version,
        "route": route,
        "latency_ms": latency,
        "status": status,
        "predictions": preds,
        "labels": labels,
    }


def test_shadow_agreement_and_quality_on_the_same_requests() -> None:
    rows = []
    for i in range(10):
        truth = ["a", "b"]
        rows.append(request(f"r{i}", 1, "champion", ["a", "b"], truth, t=i * 6))
        shadow = ["a", "a"] if i < 4 else ["a", "b"]  # 4 requests disagree on their 2nd row
        rows.append(request(f"r{i}", 2, "shadow", shadow, truth, t=i * 6, latency=9.0))
    stats = version_stats(pd.DataFrame(rows), version=2, champion=1, task="classification")
    assert stats.requests == 10
    assert stats.minutes == pytest.approx(0.9)
    assert stats.agreement_with_champion == pytest.approx(16 / 20)
    assert stats.quality == pytest.approx(16 / 20)
    assert stats.champion_quality == pytest.approx(1.0)
    assert stats.quality_delta == pytest.approx(-0.2)
    assert stats.latency_p99_ms == pytest.approx(9.0)
    assert stats.error_rate == 0.0


def test_canary_errors_and_unlabelled_traffic() -> None:
    rows = [request(f"c{i}", 3, "canary", [1.0], status=503 if i < 2 else 200) for i in range(8)]
    rows += [request(f"k{i}", 1, "champion", [1.0]) for i in range(30)]
    stats = version_stats(pd.DataFrame(rows), version=3, champion=1, task="regression")
    assert stats.error_rate == pytest.approx(0.25)
    assert stats.quality is None and stats.quality_delta is None
    assert stats.agreement_with_champion is None  # a canary shares no request with the champion


def test_regression_quality_is_negative_mae() -> None:
    rows = [
        request("x", 2, "canary", [1.0, 3.0], [2.0, 3.0]),
        request("y", 1, "champion", [2.0, 2.0], [2.0, 3.0]),
    ]
    stats = version_stats(pd.DataFrame(rows), version=2, champion=1, task="regression")
    assert stats.quality == pytest.approx(-0.5) and stats.champion_quality == pytest.approx(-0.5)


def test_a_version_with_no_traffic_has_nothing_measured() -> None:
    rows = [request("y", 1, "champion", [1])]
    stats = version_stats(pd.DataFrame(rows), version=2, champion=1, task="classification")
    assert (stats.requests, stats.error_rate, stats.latency_p99_ms) == (0, None, None)
