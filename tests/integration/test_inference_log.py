"""The inference-log writer and reader on real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from monitoring.inference_log import (
    FEEDBACK_TABLE,
    INFERENCE_TABLE,
    METADATA,
    FeedbackRecord,
    InferenceRecord,
    read_window,
)
from serving.gateway.log_writer import InferenceLogError, SqlInferenceLog

pytestmark = pytest.mark.anyio
BURST = 2000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: for tests that must start unmigrated or that alter the schema."""
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


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def writer_logs() -> Iterator[Records]:
    """The writer's records, attached to its own logger: ours may not propagate to the root."""
    handler, logger = Records(), logging.getLogger("serving.gateway.log_writer")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
async def log(store_url: str) -> AsyncIterator[SqlInferenceLog]:
    writer = SqlInferenceLog(store_url, flush_interval_s=0.01)
    writer.migrate()
    await writer.start()
    yield writer
    await writer.close()


def record(model: str, i: int, **changes: Any) -> InferenceRecord:
    values: dict[str, Any] = {
        "request_id": f"{model}-{i}",
        "model": model,
        "version": 1,
        "route": "champion",
        "inputs": [{"x": float(i), "colour": "red"}],
        "predictions": [i % 2],
        "latency_ms": 1.5,
        "status": 200,
    }
    values.update(changes)
    return InferenceRecord(**values)


def count(url: str, table: str, **where: Any) -> int:
    engine = sa.create_engine(url)
    clauses = " AND ".join(f"{k} = :{k}" for k in where) or "1 = 1"
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE {clauses}"), where
                ).scalar_one()
            )
    finally:
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


async def test_a_burst_through_a_tiny_queue_is_all_written_after_close(
    store_url: str, unique_name: str
) -> None:
    writer = SqlInferenceLog(store_url, max_queue=8, batch_size=50, flush_interval_s=0.01)
    writer.migrate()

    await asyncio.gather(*(writer.write(record(unique_name, i)) for i in range(BURST)))
    await writer.close()

    assert count(store_url, INFERENCE_TABLE, model=unique_name) == BURST
    stats = writer.stats()
    assert stats.written == BURST and stats.queued == 0 and stats.rejected == 0
    assert stats.blocked_writes > 0  # the queue was full: writers waited instead of dropping
    assert stats.batches >= BURST // 50


async def test_writes_still_waiting_when_close_begins_are_written_too(
    store_url: str, unique_name: str
) -> None:
    writer = SqlInferenceLog(store_url, max_queue=4, batch_size=16, flush_interval_s=0.01)
    writer.migrate()
    writes = [asyncio.create_task(writer.write(record(unique_name, i))) for i in range(500)]
    await asyncio.sleep(0)  # every write has started; most wait on the full queue

    await writer.close()

    await asyncio.gather(*writes)  # every one was accepted
    assert count(store_url, INFERENCE_TABLE, model=unique_name) == 500
    with pytest.raises(InferenceLogError, match="closed and accepts no more records"):
        await writer.write(record(unique_name, 500))


async def test_a_single_write_is_visible_within_the_flush_interval(
    log: SqlInferenceLog, store_url: str, unique_name: str
) -> None:
    await log.write(record(unique_name, 1))
    deadline = time.monotonic() + 5
    while count(store_url, INFERENCE_TABLE, model=unique_name) == 0:
        assert time.monotonic() < deadline, "a lone record was not flushed without close()"
        await asyncio.sleep(0.02)
    assert log.written == 1 and log.queued == 0


async def test_failed_batches_are_retried_until_the_database_takes_them(
    fresh_url: str, unique_name: str, writer_logs: Records
) -> None:
    writer = SqlInferenceLog(fresh_url, flush_interval_s=0.01, retry_initial_s=0.01)
    for i in range(30):  # the tables do not exist yet: every attempt fails
        await writer.write(record(unique_name, i, inputs=[{"secret_feature": "pii-value"}]))
    deadline = time.monotonic() + 10
    while writer.retries < 3:
        assert time.monotonic() < deadline, "the writer did not retry"
        await asyncio.sleep(0.01)

    writer.migrate()
    await writer.close()

    assert count(fresh_url, INFERENCE_TABLE, model=unique_name) == 30
    failures = [m for m in writer_logs.messages if "failed (attempt" in m]
    assert failures and all("writing 30 rows to" in m for m in failures[:1])
    assert not any("pii-value" in m for m in failures)  # driver message only, no parameters


async def test_close_with_a_timeout_says_how_many_rows_wait_and_keeps_them(
    fresh_url: str, unique_name: str
) -> None:
    writer = SqlInferenceLog(fresh_url, flush_interval_s=0.01, retry_initial_s=0.01)
    for i in range(7):  # unmigrated: nothing can be written yet
        await writer.write(record(unique_name, i))

    with pytest.raises(InferenceLogError, match=r"could not flush 7 rows to .* within 0.2s"):
        await writer.close(timeout_s=0.2)
    writer.migrate()
    await writer.close()

    assert count(fresh_url, INFERENCE_TABLE, model=unique_name) == 7


async def test_a_row_the_database_rejects_is_logged_and_the_rest_are_written(
    fresh_url: str, unique_name: str, writer_logs: Records
) -> None:
    writer = SqlInferenceLog(fresh_url, batch_size=100, flush_interval_s=0.05)
    writer.migrate()
    reject_poisoned_rows(fresh_url)

    for i in range(10):
        await writer.write(record(unique_name, i))
    await writer.write(record(unique_name, 99, request_id="poison-1"))
    await writer.close()

    assert count(fresh_url, INFERENCE_TABLE, model=unique_name) == 10
    assert writer.stats().rejected == 1 and writer.stats().written == 10
    assert any(
        "rejected the modelyard_inference_log row of request poison-1" in m
        for m in writer_logs.messages
    )


def reject_poisoned_rows(url: str) -> None:
    """A trigger standing for any constraint a row can break, on both databases."""
    if url.startswith("sqlite"):
        execute(
            url,
            f"CREATE TRIGGER poison BEFORE INSERT ON {INFERENCE_TABLE} "
            "WHEN NEW.request_id LIKE 'poison%' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
        )
        return
    execute(
        url,
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.request_id LIKE 'poison%' THEN "
        "RAISE EXCEPTION 'poisoned row' USING ERRCODE = 'check_violation'; END IF; "
        "RETURN NEW; END $$",
        f"CREATE TRIGGER poison BEFORE INSERT ON {INFERENCE_TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION poison()",
    )


async def test_a_retried_row_already_stored_counts_as_a_duplicate(
    store_url: str, unique_name: str
) -> None:
    first = SqlInferenceLog(store_url, flush_interval_s=0.01)
    first.migrate()
    await first.write(record(unique_name, 1))
    await first.close()

    again = SqlInferenceLog(store_url, batch_size=10, flush_interval_s=0.05)
    await again.write(record(unique_name, 1))  # as if a committed batch were retried
    await again.write(record(unique_name, 2))
    await again.close()

    assert count(store_url, INFERENCE_TABLE, model=unique_name) == 2
    stats = again.stats()
    assert (stats.duplicates, stats.written, stats.rejected) == (1, 1, 0)


async def test_the_event_loop_keeps_running_while_the_database_is_locked(
    fresh_url: str, unique_name: str
) -> None:
    writer = SqlInferenceLog(fresh_url, flush_interval_s=0.0)
    writer.migrate()
    engine = sa.create_engine(fresh_url)
    lag = 0.0
    with engine.connect() as locker:
        locker.exec_driver_sql(
            "BEGIN IMMEDIATE"
            if fresh_url.startswith("sqlite")
            else f"BEGIN; LOCK TABLE {INFERENCE_TABLE} IN ACCESS EXCLUSIVE MODE"
        )
        await writer.write(record(unique_name, 1))
        for _ in range(25):  # 0.5 s of 20 ms ticks while the writer thread waits on the lock
            before = time.monotonic()
            await asyncio.sleep(0.02)
            lag = max(lag, time.monotonic() - before - 0.02)
        locker.exec_driver_sql("COMMIT")
    engine.dispose()
    await writer.close()

    assert lag < 0.1
    assert count(fresh_url, INFERENCE_TABLE, model=unique_name) == 1


async def test_read_window_joins_the_latest_labels_row_by_row(
    log: SqlInferenceLog, store_url: str, unique_name: str
) -> None:
    rows = [{"x": 1.0}, {"x": 2.0}]
    for i in range(3):
        await log.write(record(unique_name, i, inputs=rows, predictions=[0, 1]))
    await log.write_feedback(FeedbackRecord(f"{unique_name}-0", [0, 0]))
    await log.write_feedback(FeedbackRecord(f"{unique_name}-1", [9, 9]))
    await log.write_feedback(FeedbackRecord(f"{unique_name}-1", [1, 1]))  # a correction
    await log.close()

    frame = read_window(store_url, unique_name)

    assert list(frame.columns) == [
        "x",
        "prediction",
        "label",
        "request_id",
        "version",
        "route",
        "at",
    ]
    assert frame["x"].tolist() == [1.0, 2.0] * 3
    assert frame["prediction"].tolist() == [0, 1] * 3
    labels = frame.groupby("request_id", sort=True)["label"].apply(list).to_dict()
    assert labels[f"{unique_name}-0"] == [0, 0]
    assert labels[f"{unique_name}-1"] == [1, 1]
    assert all(pd.isna(v) for v in labels[f"{unique_name}-2"])  # no feedback yet
    assert str(frame["at"].dt.tz) == "UTC"
    assert count(store_url, FEEDBACK_TABLE, request_id=f"{unique_name}-1") == 2


async def test_shadow_answers_sit_beside_the_live_ones(
    log: SqlInferenceLog, store_url: str, unique_name: str
) -> None:
    for i in range(4):
        await log.write(record(unique_name, i, version=3, route="champion", predictions=[i]))
        await log.write(record(unique_name, i, version=4, route="shadow", predictions=[i * 10]))
    await log.close()

    frame = read_window(store_url, unique_name)
    side_by_side = frame.pivot(index="request_id", columns="route", values="prediction")

    assert len(frame) == 8
    assert side_by_side["champion"].tolist() == [0, 1, 2, 3]
    assert side_by_side["shadow"].tolist() == [0, 10, 20, 30]
    assert set(read_window(store_url, unique_name, route="shadow")["version"]) == {4}
    assert len(read_window(store_url, unique_name, version=3)) == 4


async def test_read_window_keeps_the_newest_rows_and_those_since_a_time(
    log: SqlInferenceLog, store_url: str, unique_name: str
) -> None:
    start = datetime(2025, 3, 1, 12, tzinfo=UTC)
    for i in range(5):  # request i holds rows 2i and 2i + 1
        inputs = [{"x": float(2 * i)}, {"x": float(2 * i + 1)}]
        at = start + timedelta(minutes=i)
        await log.write(record(unique_name, i, inputs=inputs, predictions=[0, 0], at=at))
    await log.write(record(unique_name, 9, status=500, predictions=None))  # not an answer
    await log.close()

    assert read_window(store_url, unique_name, last_rows=3)["x"].tolist() == [7.0, 8.0, 9.0]
    paris = timezone_plus_one()
    since = (start + timedelta(minutes=3)).astimezone(paris)
    assert read_window(store_url, unique_name, since=since)["x"].tolist() == [6.0, 7.0, 8.0, 9.0]
    assert read_window(store_url, unique_name, last_rows=0).empty
    assert len(read_window(store_url, unique_name)) == 10
    assert read_window(store_url, "no-such-model").empty


def timezone_plus_one() -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=1))


async def test_read_window_refuses_naive_times_and_clashing_columns(
    log: SqlInferenceLog, store_url: str, unique_name: str
) -> None:
    await log.write(record(unique_name, 1, inputs=[{"route": "A1"}]))
    await log.close()

    with pytest.raises(ValueError, match="since must be timezone-aware"):
        read_window(store_url, unique_name, since=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match=r"input column\(s\) \['route'\] .* clash"):
        read_window(store_url, unique_name)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"request_id": "r" * 65}, "request_id must be a string of 1 to 64"),
        ({"route": ""}, "route must be a string of 1 to 16"),
        ({"version": 2**31}, "version must be a 32-bit integer"),
        ({"latency_ms": float("nan")}, "latency_ms must be a finite number"),
        ({"inputs": [{"x": object()}]}, "inputs must be JSON-serialisable"),
        ({"request_id": "a\x00b"}, "without NUL"),
    ],
)
async def test_records_the_table_cannot_hold_are_refused_at_write(
    log: SqlInferenceLog, unique_name: str, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await log.write(record(unique_name, 1, **changes))


def test_the_migrated_tables_match_the_contract(store_url: str) -> None:
    SqlInferenceLog(store_url).migrate()
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_name": lambda n, t, _p: t != "table" or n in METADATA.tables,
                    "compare_type": True,
                },
            )
            assert compare_metadata(context, METADATA) == []
    finally:
        engine.dispose()
