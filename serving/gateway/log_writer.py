"""The inference-log writer: batched SQL inserts off the request path, with backpressure.

``write()`` serialises a record and puts it on a bounded ``asyncio.Queue``; when the queue is
full it waits (backpressure on the request that produced it) instead of dropping. One background
task takes batches off the queue (up to ``batch_size`` rows, or whatever arrived within
``flush_interval_s`` of the first) and inserts each batch in one transaction with an
``executemany``, on a dedicated thread so the event loop never waits on the database. A batch
that fails is retried with backoff until it is written; ``close()`` refuses new writes, waits
for the writes already accepted, flushes and stops. So a ``write()`` that returned is written.

A batch the database rejects outright (a constraint or data error) is retried row by row, so one
bad row cannot hold up the others: a row whose ``(request_id, route)`` is already stored counts
as a duplicate (a retry of a batch whose commit succeeded but was not acknowledged), and any
other rejected row is logged as an error with its request id and counted, never dropped
silently. Records carry no key material, and log lines name only request ids and counts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from modelyard.database import create_sql_engine, own_tables_url, transaction, upgrade_to_head
from monitoring.inference_log import FEEDBACK, INFERENCE_LOG, FeedbackRecord, InferenceRecord
from serving.gateway.errors import GatewayError

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)

RETRY_INITIAL_S = 0.05
RETRY_MAX_S = 5.0
# Errors that say "this row can never be stored as is", not "the database is not answering".
REJECTING_ERRORS = (sa_exc.IntegrityError, sa_exc.DataError)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # the columns are INTEGER


class InferenceLogError(GatewayError):
    """The inference log cannot accept or flush records."""

    status = 503


class _Table(Enum):
    INFERENCE = "inference"
    FEEDBACK = "feedback"


TABLES = {_Table.INFERENCE: INFERENCE_LOG, _Table.FEEDBACK: FEEDBACK}
_Item = tuple[_Table, dict[str, Any]]
_STOP: Any = object()  # the last thing on the queue once close() has begun


@dataclass(frozen=True)
class LogWriterStats:
    """Counters for metrics. ``written`` counts inference rows, ``feedback_written`` labels."""

    queued: int
    written: int
    feedback_written: int
    retries: int
    duplicates: int
    rejected: int
    batches: int
    blocked_writes: int


def inference_row(record: InferenceRecord) -> dict[str, Any]:
    """The row for a record, serialised now so later changes to its lists cannot leak in.

    Raises ``ValueError`` for fields the table cannot hold, naming the field and value.
    """
    _check_text("request_id", record.request_id, 64)
    _check_text("model", record.model, 256)
    _check_text("route", record.route, 16)
    if not math.isfinite(record.latency_ms) or record.latency_ms < 0:
        raise ValueError(f"latency_ms must be a finite number >= 0, got {record.latency_ms!r}")
    return {
        "request_id": record.request_id,
        "at": _utc(record),
        "model": record.model,
        "version": _check_int("version", record.version),
        "route": record.route,
        "inputs": _json("inputs", record.inputs),
        "predictions": None
        if record.predictions is None
        else _json("predictions", record.predictions),
        "latency_ms": float(record.latency_ms),
        "status": _check_int("status", record.status),
    }


def feedback_row(record: FeedbackRecord) -> dict[str, Any]:
    """The row for labels of an earlier request. Raises ``ValueError`` like ``inference_row``."""
    _check_text("request_id", record.request_id, 64)
    return {
        "request_id": record.request_id,
        "at": _utc(record),
        "labels": _json("labels", record.labels),
    }


class SqlInferenceLog:
    """The ``InferenceLog`` port over SQL (SQLite embedded, PostgreSQL in production)."""

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        retry_initial_s: float = RETRY_INITIAL_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        """Raises ``ConfigurationError`` for an unusable URL, ``ValueError`` for bad sizes."""
        if max_queue < 1 or batch_size < 1 or flush_interval_s < 0:
            raise ValueError(
                f"max_queue and batch_size must be >= 1 and flush_interval_s >= 0, got "
                f"{max_queue}, {batch_size}, {flush_interval_s}"
            )
        self._engine = create_sql_engine(url)
        self.url = self._engine.url.render_as_string(hide_password=True)
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._retry = (retry_initial_s, retry_max_s)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max_queue)
        # One thread: batches are written in order, and the default pool stays free for others.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="modelyard-inference-log")
        self._task: asyncio.Task[None] | None = None
        self._draining: asyncio.Future[None] | None = None
        self._in_flight = 0  # rows of the batch being written
        self._stop_queued = False
        self._closing = False
        self._closed = False
        self._pending_puts = 0
        self._no_pending_puts = asyncio.Event()
        self._no_pending_puts.set()
        self._counts_lock = threading.Lock()  # the writer thread adds to the counters too
        self._counts = dict.fromkeys(
            ("written", "feedback_written", "retries", "duplicates", "rejected", "batches",
             "blocked_writes"), 0,
        )  # fmt: skip

    @classmethod
    def from_settings(cls, settings: Settings) -> SqlInferenceLog:
        """The log in ``settings.sql_url``: the registry's database when that is SQL."""
        return cls(own_tables_url(settings))

    def migrate(self) -> None:
        """Create or upgrade Modelyard's tables to the newest revision.

        Raises ``InferenceLogError`` if the database cannot be reached or migrated.
        """
        try:
            upgrade_to_head(self._engine)
        except sa_exc.DBAPIError as exc:
            raise InferenceLogError(
                f"cannot migrate the inference log in {self.url}: {exc.orig}",
                hint="check that the database is reachable",
            ) from exc

    async def start(self) -> None:
        """Start the background writer in the running loop; ``write()`` also starts it."""
        self._ensure_started()

    async def write(self, record: InferenceRecord) -> None:
        """Queue a record; waits while the queue is full (backpressure), never drops.

        Raises ``ValueError`` for a record the table cannot hold, ``InferenceLogError`` once
        ``close()`` has begun.
        """
        await self._put((_Table.INFERENCE, inference_row(record)))

    async def write_feedback(self, record: FeedbackRecord) -> None:
        """Queue labels for an earlier request, like :meth:`write`; same errors."""
        await self._put((_Table.FEEDBACK, feedback_row(record)))

    async def close(self, timeout_s: float | None = None) -> None:
        """Refuse new writes, flush everything accepted, stop the writer and the thread.

        Waits as long as the database needs unless ``timeout_s`` is given; then raises
        ``InferenceLogError`` with the number of rows not yet written (logged too).
        """
        if self._closed:
            return
        self._closing = True
        if self._task is not None:
            if self._draining is None:
                self._draining = asyncio.ensure_future(self._drain())
            try:
                # Shielded: on a timeout the writer keeps trying; a later close() waits again.
                await asyncio.wait_for(asyncio.shield(self._draining), timeout_s)
            except TimeoutError as exc:
                unwritten = self._unwritten()
                logger.error(
                    "inference log: %d rows still unwritten after waiting %ss to close",
                    unwritten, timeout_s,
                )  # fmt: skip
                raise InferenceLogError(
                    f"the inference log could not flush {unwritten} rows to {self.url} "
                    f"within {timeout_s}s; it keeps trying until close() is awaited again",
                    hint="check that the database is reachable",
                ) from exc
        self._closed = True
        self._executor.shutdown(wait=True)
        self._engine.dispose()

    async def __aenter__(self) -> SqlInferenceLog:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def stats(self) -> LogWriterStats:
        """A snapshot of the counters (queued is the queue's current length)."""
        with self._counts_lock:
            return LogWriterStats(queued=self._queue.qsize(), **self._counts)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def written(self) -> int:
        return self._counts["written"]

    @property
    def retries(self) -> int:
        return self._counts["retries"]

    def _unwritten(self) -> int:
        """Rows accepted but not yet stored: queued (less the stop mark), waiting, in flight."""
        queued = self._queue.qsize() - (1 if self._stop_queued else 0)
        return queued + self._pending_puts + self._in_flight

    def _ensure_started(self) -> None:
        if self._closing:
            raise InferenceLogError(
                "the inference log is closed and accepts no more records",
                hint="the gateway is shutting down",
            )
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="modelyard-inference-log"
            )
        elif self._task.done():
            raise InferenceLogError("the inference log's writer has stopped unexpectedly")

    async def _put(self, item: _Item) -> None:
        self._ensure_started()
        if self._queue.full():
            self._count("blocked_writes")
        self._pending_puts += 1
        self._no_pending_puts.clear()
        try:
            await self._queue.put(item)
        finally:
            self._pending_puts -= 1
            if self._pending_puts == 0:
                self._no_pending_puts.set()

    async def _drain(self) -> None:
        # Writes blocked on a full queue were accepted before close(): they go in first.
        await self._no_pending_puts.wait()
        await self._queue.put(_STOP)
        self._stop_queued = True
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = await self._next_batch()
            if batch:
                await self._flush(batch)

    async def _next_batch(self) -> tuple[list[_Item], bool]:
        """Up to ``batch_size`` items: what is queued now, then what arrives within the interval."""
        loop = asyncio.get_running_loop()
        first = await self._queue.get()
        if first is _STOP:
            self._stop_queued = False
            return [], True
        batch = [first]
        deadline = loop.time() + self._flush_interval_s
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0 or self._closing:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is _STOP:
                self._stop_queued = False
                return batch, True
            batch.append(item)
        return batch, False

    async def _flush(self, batch: list[_Item]) -> None:
        """Write a batch, retrying with backoff until it is stored; never gives up on a row."""
        loop = asyncio.get_running_loop()
        delay, max_delay = self._retry
        attempt = 0
        self._in_flight = len(batch)
        while True:
            attempt += 1
            try:
                await loop.run_in_executor(self._executor, self._write_batch, batch)
                self._in_flight = 0
                return
            except Exception as exc:
                self._count("retries")
                logger.error(
                    "inference log: writing %d rows to %s failed (attempt %d: %s); "
                    "retrying in %.2fs",
                    len(batch), self.url, attempt, _describe(exc), delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)

    def _write_batch(self, batch: list[_Item]) -> None:
        try:
            self._insert_batch(batch)
        except REJECTING_ERRORS:
            # One bad row rejects the whole batch: store the others one by one.
            self._insert_each(batch)

    def _insert_batch(self, batch: list[_Item]) -> None:
        inference = [row for table, row in batch if table is _Table.INFERENCE]
        feedback = [row for table, row in batch if table is _Table.FEEDBACK]
        with transaction(self._engine, write=True) as conn:
            if inference:
                conn.execute(sa.insert(INFERENCE_LOG), inference)
            if feedback:
                conn.execute(sa.insert(FEEDBACK), feedback)
        self._count("batches")
        self._count("written", len(inference))
        self._count("feedback_written", len(feedback))

    def _insert_each(self, batch: list[_Item]) -> None:
        """One transaction per row; transient errors propagate, and the batch is retried whole
        (rows already stored then count as duplicates)."""
        for table, row in batch:
            try:
                with transaction(self._engine, write=True) as conn:
                    conn.execute(sa.insert(TABLES[table]), [row])
            except REJECTING_ERRORS as exc:
                self._reject(table, row, exc)
                continue
            self._count("written" if table is _Table.INFERENCE else "feedback_written")

    def _reject(self, table: _Table, row: dict[str, Any], exc: sa_exc.DBAPIError) -> None:
        if table is _Table.INFERENCE and self._is_stored(row):
            self._count("duplicates")
            return
        self._count("rejected")
        logger.error(
            "inference log: the database rejected the %s row of request %s (%s); it is not stored",
            TABLES[table].name, row["request_id"], _describe(exc),
        )  # fmt: skip

    def _is_stored(self, row: dict[str, Any]) -> bool:
        query = sa.select(sa.func.count()).where(
            INFERENCE_LOG.c.request_id == row["request_id"], INFERENCE_LOG.c.route == row["route"]
        )
        with transaction(self._engine, write=False) as conn:
            return bool(conn.execute(query).scalar_one())

    def _count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += n


def _check_text(name: str, value: str, max_chars: int) -> None:
    # PostgreSQL text cannot hold NUL: refuse it here rather than have the database reject it.
    if not isinstance(value, str) or not 0 < len(value) <= max_chars or "\x00" in value:
        raise ValueError(
            f"{name} must be a string of 1 to {max_chars} characters without NUL, got {value!r}"
        )


def _check_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not INT32_MIN <= value <= INT32_MAX:
        raise ValueError(f"{name} must be a 32-bit integer, got {value!r}")
    return value


def _json(name: str, value: Any) -> str:
    # NaN is kept (Python's json writes and reads it): a missing feature value is data too.
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be JSON-serialisable: {exc}") from exc


def _utc(record: InferenceRecord | FeedbackRecord) -> Any:
    """Aware times are stored in UTC (SQLite keeps no zone); a naive one is taken as UTC."""
    at = record.at
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _describe(exc: BaseException) -> str:
    """The driver's first line, without SQLAlchemy's ``[parameters: ...]`` (request data)."""
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    first_line = (str(cause).splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first_line}"
