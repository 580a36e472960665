"""The audit history on real databases: SQLite and PostgreSQL, beside MLflow's own tables."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelyard.database import VERSION_TABLE
from registry.audit import Action, AuditEntry, AuditLog, ConcurrentChange, Outcome
from registry.errors import RegistryUnavailable


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    from modelyard.database import alembic_config

    return str(ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head())


HEAD = _head_revision()

RACERS = 5
WAIT_S = 120.0  # spawned children import SQLAlchemy and Alembic from source: allow slow starts


@pytest.fixture
def audit(store_url: str) -> Iterator[AuditLog]:
    with AuditLog(store_url) as log:
        log.migrate()
        yield log


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, to see the tables created from nothing."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    import psycopg

    session_url: str = request.getfixturevalue("postgres_url")
    name = f"modelyard_fresh_{uuid.uuid4().hex[:10]}"
    admin_url = session_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{session_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def promotion(model: str, actor: str, version: int, **changes: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "model": model,
        "action": Action.PROMOTE,
        "actor": actor,
        "version": version,
        "from_stage": "canary",
        "to_stage": "champion",
    }
    values.update(changes)
    return AuditEntry(**values)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrate_twice_is_idempotent(store_url: str) -> None:
    with AuditLog(store_url) as log:
        log.migrate()
        log.migrate()
    assert query(store_url, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]
    assert {"modelyard_audit", VERSION_TABLE} <= table_names(store_url)


def test_mlflow_tables_and_revision_are_left_alone(store_url: str) -> None:
    import mlflow

    mlflow.MlflowClient(tracking_uri=store_url).search_experiments()
    before_tables = table_names(store_url)
    mlflow_revision = query(store_url, "SELECT version_num FROM alembic_version")
    with AuditLog(store_url) as log:
        log.migrate()
    assert query(store_url, "SELECT version_num FROM alembic_version") == mlflow_revision
    assert all(name.startswith("modelyard_") for name in table_names(store_url) - before_tables)
    assert mlflow.MlflowClient(tracking_uri=store_url).search_experiments()


def test_mlflow_store_can_be_created_after_the_audit_tables(fresh_url: str) -> None:
    import mlflow

    with AuditLog(fresh_url) as log:
        log.migrate()
    assert mlflow.MlflowClient(tracking_uri=fresh_url).search_experiments()
    assert len(query(fresh_url, "SELECT version_num FROM alembic_version")) == 1
    assert query(fresh_url, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]


def test_history_round_trips_every_field(audit: AuditLog, unique_name: str) -> None:
    evidence = {
        "metrics": {"auc": 0.913, "champion_auc": 0.9},
        "gates": [{"name": "min_auc", "passed": True}, {"name": "latency", "passed": False}],
        "drift_report": "s3://reports/drift-2025-03-04.html",
        "note": "café ✓",
    }
    registered = audit.record(
        AuditEntry(model=unique_name, action=Action.REGISTER, actor="trainer", version=3)
    )
    local_time = datetime(2025, 3, 4, 7, 6, 7, 123456, tzinfo=timezone(timedelta(hours=2)))
    promoted = audit.claim(
        promotion(
            unique_name, "ci-job-1", 3, reason="better auc", evidence=evidence, at=local_time
        ),
        expected_seq=0,
    )
    refused = audit.record(
        promotion(unique_name, "alice@laptop", 2, outcome=Outcome.REFUSED, reason="worse auc")
    )

    history = audit.history(unique_name)

    assert history == [registered, promoted, refused]
    assert [e.id for e in history] == sorted(e.id for e in history if e.id is not None)
    assert (promoted.claim_seq, registered.claim_seq, refused.claim_seq) == (1, None, None)
    assert history[1].evidence == evidence
    assert history[1].at == datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    assert all(e.at.tzinfo is not None and e.at.utcoffset() == timedelta(0) for e in history)
    assert audit.history(unique_name, limit=2) == [promoted, refused]
    assert audit.history(unique_name, limit=0) == []
    assert audit.history("no-such-model") == []
    assert audit.latest_seq(unique_name) == 1
    assert audit.latest_seq("no-such-model") == 0


def test_a_stale_claim_raises_naming_the_current_state(audit: AuditLog, unique_name: str) -> None:
    audit.claim(promotion(unique_name, "ci-job-1", 2), expected_seq=0)
    audit.claim(promotion(unique_name, "ci-job-2", 3), expected_seq=1)

    with pytest.raises(ConcurrentChange) as raised:
        audit.claim(promotion(unique_name, "ci-job-3", 4), expected_seq=1)

    error = raised.value
    assert error.model == unique_name
    assert error.expected_seq == 1
    assert error.latest is not None and error.latest.claim_seq == 2
    assert error.latest.actor == "ci-job-2"
    message = str(error)
    assert f"model {unique_name!r} was changed concurrently" in message
    assert "the latest is change #2, promote v3 canary → champion, by ci-job-2 at" in message
    assert message.endswith("(re-read the state and retry)")
    with pytest.raises(ConcurrentChange, match="expected change #7 to be its latest"):
        audit.claim(promotion(unique_name, "ci-job-4", 5), expected_seq=7)
    assert audit.latest_seq(unique_name) == 2
    assert [e.actor for e in audit.history(unique_name)] == ["ci-job-1", "ci-job-2"]


def test_champion_history_follows_claims_and_skips_undone_ones(
    audit: AuditLog, unique_name: str
) -> None:
    def claim(entry: AuditEntry) -> AuditEntry:
        return audit.claim(entry, audit.latest_seq(unique_name))

    claim(promotion(unique_name, "ci", 1, from_stage=None))
    claim(
        promotion(unique_name, "ci", 2, action=Action.TRAFFIC, to_stage="canary", traffic_share=10)
    )
    claim(promotion(unique_name, "ci", 2))
    failed = claim(promotion(unique_name, "ci", 3))
    audit.record(
        promotion(unique_name, "ci", 3, outcome=Outcome.REVERTED, ref_seq=failed.claim_seq)
    )
    audit.record(promotion(unique_name, "bob", 4, outcome=Outcome.REFUSED))
    claim(promotion(unique_name, "ci", 1, action=Action.ROLLBACK, from_stage="champion"))

    assert audit.champion_history(unique_name) == [
        (Action.PROMOTE, 1),
        (Action.PROMOTE, 2),
        (Action.ROLLBACK, 1),
    ]
    assert audit.latest_claim(unique_name) == audit.history(unique_name)[-1]


def _promote_after_barrier(
    url: str, model: str, index: int, barrier: Barrier, results: Any
) -> None:
    """One CI job: read the state, wait for the others, then try to promote its own version."""
    actor, version = f"ci-job-{index}", 2 + index
    try:
        with AuditLog(url) as log:
            seq = log.latest_seq(model)
            entry = promotion(model, actor, version, reason="race")
            barrier.wait(timeout=WAIT_S)
            try:
                claimed = log.claim(entry, seq)
            except ConcurrentChange as exc:
                log.record(replace(entry, outcome=Outcome.CONFLICT, evidence={"error": str(exc)}))
                results.put((actor, "conflict", str(exc)))
            else:
                results.put((actor, "applied", str(claimed.claim_seq)))
    except BaseException as exc:  # report anything else to the parent, which fails the test
        results.put((actor, "error", repr(exc)))
        raise


def run_racers(target: Any, args: tuple[Any, ...], count: int) -> list[tuple[str, str, str]]:
    """Start ``count`` spawned processes released together by a barrier; their results."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(count), context.Queue()
    processes = [
        context.Process(target=target, args=(*args, index, barrier, results))
        for index in range(1, count + 1)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=WAIT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=WAIT_S)
            if process.is_alive():
                process.kill()
    assert [p.exitcode for p in processes] == [0] * count, outcomes
    return sorted(outcomes)


def test_racing_promotions_exactly_one_wins_and_every_attempt_is_recorded(
    audit: AuditLog, store_url: str, unique_name: str
) -> None:
    audit.claim(promotion(unique_name, "seed", 1, from_stage=None), expected_seq=0)

    outcomes = run_racers(_promote_after_barrier, (store_url, unique_name), RACERS)

    winners = [o for o in outcomes if o[1] == "applied"]
    losers = [o for o in outcomes if o[1] == "conflict"]
    assert len(winners) == 1 and len(losers) == RACERS - 1, outcomes
    winner = winners[0][0]
    assert winners[0][2] == "2"
    assert all("the latest is change #2" in message for _, _, message in losers)
    assert all(f"by {winner} at" in message for _, _, message in losers)

    history = audit.history(unique_name)
    assert len(history) == 1 + RACERS
    attempts = {e.actor: e for e in history[1:]}
    assert set(attempts) == {f"ci-job-{i}" for i in range(1, RACERS + 1)}
    assert attempts[winner].outcome is Outcome.APPLIED and attempts[winner].claim_seq == 2
    assert all(
        e.outcome is Outcome.CONFLICT and e.claim_seq is None and winner in e.evidence["error"]
        for actor, e in attempts.items()
        if actor != winner
    )
    assert [v for _, v in audit.champion_history(unique_name)] == [1, attempts[winner].version]


def _migrate_after_barrier(url: str, index: int, barrier: Barrier, results: Any) -> None:
    try:
        with AuditLog(url) as log:
            barrier.wait(timeout=WAIT_S)
            log.migrate()
        results.put((str(index), "migrated", ""))
    except BaseException as exc:
        results.put((str(index), "error", repr(exc)))
        raise


def test_processes_migrating_an_empty_database_at_once_all_succeed(fresh_url: str) -> None:
    outcomes = run_racers(_migrate_after_barrier, (fresh_url,), 4)

    assert [o[1] for o in outcomes] == ["migrated"] * 4, outcomes
    assert query(fresh_url, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]
    created = table_names(fresh_url)
    assert {"modelyard_audit", VERSION_TABLE} <= created
    assert all(name.startswith("modelyard_") for name in created), created


def test_an_unmigrated_database_says_what_to_do(tmp_path: Path) -> None:
    log = AuditLog(f"sqlite:///{tmp_path / 'empty.db'}")
    with log, pytest.raises(RegistryUnavailable, match=r"AuditLog\.migrate\(\) has run") as raised:
        log.latest_seq("m")
    assert "no such table: modelyard_audit" in str(raised.value)


def test_an_unreachable_server_is_registry_unavailable() -> None:
    log = AuditLog("postgresql+psycopg://postgres:secret@127.0.0.1:1/nowhere")
    with log, pytest.raises(RegistryUnavailable, match="cannot read the history of 'm'") as raised:
        log.history("m")
    assert "127.0.0.1:1" in str(raised.value)
    assert "secret" not in str(raised.value)


def test_from_settings_uses_the_registry_database(modelyard_env: Path, store_url: str) -> None:
    from modelyard.settings import get_settings

    with AuditLog.from_settings(get_settings()) as log:
        log.migrate()
        assert log.url == sa.make_url(store_url).render_as_string(hide_password=True)
