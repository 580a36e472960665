"""The audit's values: entry validation, summaries and the conflict message (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from modelyard.errors import ConfigurationError
from registry.audit import Action, AuditEntry, AuditLog, ConcurrentChange, Outcome
from registry.errors import RegistryError
from registry.types import Stage

AT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def entry(**changes: object) -> AuditEntry:
    values: dict[str, object] = {"model": "m", "action": Action.PROMOTE, "actor": "ci-job-2"}
    values.update(changes)
    return AuditEntry(**values)  # type: ignore[arg-type]


def test_loose_inputs_are_normalised() -> None:
    evidence = {"auc": 0.91}
    made = entry(
        action="promote",
        outcome="refused",
        to_stage=Stage.CHAMPION,
        evidence=evidence,
        at=datetime(2025, 3, 4, 7, 6, 7, tzinfo=timezone(timedelta(hours=2))),
    )
    evidence["auc"] = 0.0  # the entry keeps its own copy
    assert made.action is Action.PROMOTE
    assert made.outcome is Outcome.REFUSED
    assert made.to_stage == "champion" and type(made.to_stage) is str
    assert made.evidence == {"auc": 0.91}
    assert made.at == AT and made.at.tzinfo is UTC


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"action": "deploy"}, "'deploy' is not a valid Action"),
        ({"outcome": "maybe"}, "'maybe' is not a valid Outcome"),
        ({"model": ""}, "needs a model and an actor"),
        ({"version": 0}, "version must be >= 1, got 0"),
        ({"traffic_share": 101}, "traffic_share must be between 0 and 100, got 101"),
        ({"traffic_share": True}, "traffic_share must be an integer"),
        ({"at": datetime(2025, 1, 1)}, "must be timezone-aware"),
        ({"evidence": {"when": datetime(2025, 1, 1)}}, "must be JSON-serialisable"),
    ],
)
def test_invalid_entries_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        entry(**changes)


@pytest.mark.parametrize(
    ("changes", "summary"),
    [
        ({"version": 3, "from_stage": "canary", "to_stage": "champion"},
         "promote v3 canary → champion"),
        ({"action": Action.TRAFFIC, "version": 4, "to_stage": "canary", "traffic_share": 10},
         "traffic v4 canary at 10%"),
        ({"action": Action.REGISTER, "version": 1}, "register v1"),
    ],
)  # fmt: skip
def test_describe(changes: dict[str, object], summary: str) -> None:
    assert entry(**changes).describe() == summary


def test_conflict_names_the_change_that_won() -> None:
    latest = entry(version=3, from_stage="canary", to_stage="champion", at=AT, claim_seq=4)
    error = ConcurrentChange("m", 3, latest)
    assert isinstance(error, RegistryError)
    assert error.exit_code == 3
    assert (error.model, error.expected_seq, error.latest) == ("m", 3, latest)
    assert str(error) == (
        "model 'm' was changed concurrently: expected change #3 to be its latest, but the latest "
        "is change #4, promote v3 canary → champion, by ci-job-2 at 2025-03-04T05:06:07Z "
        "(re-read the state and retry)"
    )


def test_conflict_on_an_expected_future_change() -> None:
    error = ConcurrentChange("m", 2, None)
    assert "expected change #2 to be its latest, but it has no claimed changes" in str(error)


def test_claim_and_record_refuse_misuse_before_touching_the_database() -> None:
    log = AuditLog("sqlite:////nonexistent/dir/never-opened.db")
    with pytest.raises(ValueError, match="record refusals and conflicts with record"):
        log.claim(entry(outcome=Outcome.CONFLICT), 0)
    with pytest.raises(ValueError, match="sequence >= 0"):
        log.claim(entry(), -1)
    with pytest.raises(ValueError, match="an applied promote of 'm' changes what serves"):
        log.record(entry())
    with pytest.raises(ValueError, match="claim nothing"):
        log.record(entry(outcome=Outcome.CONFLICT, claim_seq=1))


def test_a_malformed_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="cannot use 'not a url' as Modelyard's database"):
        AuditLog("not a url")
