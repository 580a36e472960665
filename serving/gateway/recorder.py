"""Writes answered requests and feedback to the inference log, off the request path.

The request path puts a small item on a bounded queue (after its response is sent) and moves
on; one task turns items into records (rows as dicts, predictions parsed from the answer) and
hands them to the ``InferenceLog`` port. When the queue is full the request's task waits for
room (the port never drops a record, and neither does this), after its caller has its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitoring.inference_log import FeedbackRecord, InferenceRecord
from serving.gateway.errors import BadRequest
from serving.gateway.ports import InferenceLog

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answered:
    """One answer on one route, as the request path saw it; turned into a record later."""

    request_id: str
    model: str
    version: int
    route: str
    document: dict[str, Any]
    body: bytes
    latency_ms: float
    status: int


def rows_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's rows as dicts, from any MLflow scoring payload; an unknown shape is kept
    whole as one row so the log still shows what was sent."""
    if "dataframe_records" in document and isinstance(document["dataframe_records"], list):
        return [r if isinstance(r, dict) else {"value": r} for r in document["dataframe_records"]]
    split = document.get("dataframe_split")
    if isinstance(split, dict) and isinstance(split.get("data"), list):
        columns = split.get("columns") or []
        return [dict(zip(columns, row, strict=False)) for row in split["data"]]
    for key in ("inputs", "instances"):
        if key in document:
            return _rows_of_inputs(document[key])
    return [document]


def _rows_of_inputs(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [r if isinstance(r, dict) else {"value": r} for r in value]
    if isinstance(value, dict):
        columns = list(value.values())
        if columns and all(isinstance(c, list) for c in columns):
            return [dict(zip(value, row, strict=False)) for row in zip(*columns, strict=False)]
        return [value]
    return [{"value": value}]


def predictions_of(body: bytes) -> list[Any] | None:
    """The ``predictions`` of an answer body, None when it has none (an error, say)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    found = document.get("predictions") if isinstance(document, dict) else None
    return found if isinstance(found, list) else None


def to_record(item: Answered) -> InferenceRecord:
    return InferenceRecord(
        request_id=item.request_id,
        model=item.model,
        version=item.version,
        route=item.route,
        inputs=rows_of(item.document),
        predictions=predictions_of(item.body) if item.status < 300 else None,
        latency_ms=item.latency_ms,
        status=item.status,
    )


MAX_REQUEST_ID_CHARS = 64  # the log's column width
WARN_EVERY_S = 10.0


def parse_feedback(document: dict[str, Any]) -> FeedbackRecord:
    """``{"request_id": str, "labels": [...]}`` as a record. Raises ``BadRequest``."""
    request_id = document.get("request_id")
    labels = document.get("labels")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID_CHARS:
        raise BadRequest(
            "feedback needs 'request_id': the X-Request-Id of the answer it labels "
            f"(a string of 1 to {MAX_REQUEST_ID_CHARS} characters)"
        )
    if not isinstance(labels, list) or not labels:
        raise BadRequest(
            "feedback needs 'labels': a non-empty list with one label per row of the request, "
            'e.g. {"request_id": "...", "labels": ["Adelie"]}'
        )
    unknown = sorted(set(document) - {"request_id", "labels"})
    if unknown:
        raise BadRequest(f"unknown field(s) in feedback: {', '.join(map(repr, unknown))}")
    return FeedbackRecord(request_id=request_id, labels=labels)


class InferenceRecorder:
    """A bounded queue in front of an ``InferenceLog`` and the one task that drains it."""

    def __init__(
        self,
        log: InferenceLog,
        *,
        max_pending: int = 10_000,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.log = log
        self._queue: asyncio.Queue[Answered | FeedbackRecord | None] = asyncio.Queue(max_pending)
        self._on_failure = on_failure
        self._task: asyncio.Task[None] | None = None
        self._warned_at = -math.inf

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="gateway-inference-log")

    async def put(self, item: Answered | FeedbackRecord) -> None:
        """Queue an item; waits for room when the queue is full."""
        if self._queue.full():
            await self._queue.put(item)
        else:
            self._queue.put_nowait(item)

    def pending(self) -> int:
        return self._queue.qsize()

    async def close(self) -> None:
        """Write everything queued, then close the log (which flushes it)."""
        if self._task is not None:
            await self._queue.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.log.close()

    async def _drain(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            try:
                if isinstance(item, FeedbackRecord):
                    await self.log.write_feedback(item)
                else:
                    await self.log.write(to_record(item))
            except Exception:  # one bad record must not stop the log; the request is long gone
                if self._on_failure is not None:
                    self._on_failure()
                now = time.monotonic()
                if now - self._warned_at >= WARN_EVERY_S:  # a log outage must not flood ours
                    self._warned_at = now
                    logger.exception("the inference log refused a record (more are counted)")
