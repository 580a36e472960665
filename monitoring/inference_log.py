"""The inference log: the contract between the gateway (writer) and monitoring (reader).

One row per answered request and route: the live answer (route ``champion`` or ``canary``) and,
when a shadow exists, a second row with route ``shadow`` and the same ``request_id``, so the two
answers can be compared side by side. Labels arrive later through ``/v1/feedback`` and are
appended to their own table, joined by ``request_id``; no row is ever updated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from modelyard.database import create_sql_engine, transaction

if TYPE_CHECKING:
    import pandas as pd

INFERENCE_TABLE = "modelyard_inference_log"
FEEDBACK_TABLE = "modelyard_feedback"

METADATA = sa.MetaData()

INFERENCE_LOG = sa.Table(
    INFERENCE_TABLE,
    METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("route", sa.String(16), nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("predictions", sa.Text, nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.UniqueConstraint("request_id", "route", name="modelyard_inference_log_request_route_uq"),
    sa.Index("modelyard_inference_log_model_version_at_ix", "model", "version", "at"),
)

FEEDBACK = sa.Table(
    FEEDBACK_TABLE,
    METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class InferenceRecord:
    """One answered request on one route. ``inputs`` are the rows as sent (list of dicts)."""

    request_id: str
    model: str
    version: int
    route: str  # "champion" | "canary" | "shadow"
    inputs: list[dict[str, Any]]
    predictions: list[Any] | None
    latency_ms: float
    status: int
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class FeedbackRecord:
    """Ground-truth labels for the rows of one earlier request, in the same order."""

    request_id: str
    labels: list[Any]
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


# Columns the reader adds beside a request's input columns.
WINDOW_COLUMNS = ("prediction", "label", "request_id", "version", "route", "at")
# Client errors and failures carry no prediction worth monitoring.
ANSWERED_BELOW = 400
FEEDBACK_CHUNK = 500  # request ids per IN (...) list when joining labels


def read_window(
    url: str,
    model: str,
    *,
    version: int | None = None,
    route: str | None = None,
    last_rows: int | None = None,
    since: datetime | None = None,
) -> pd.DataFrame:
    """The logged answers of ``model`` as one row per input row, oldest first.

    Columns: the input columns, then ``prediction``, ``label`` (from the latest feedback on the
    request, None until some arrives), ``request_id``, ``version``, ``route`` and ``at`` (UTC).
    Only answered requests (status < 400) are read. ``last_rows`` keeps the newest input rows,
    ``since`` those at or after an aware time; live and shadow rows of one request share its
    ``request_id``, so ``route=None`` gives both answers side by side.
    Raises ``ValueError`` for a naive ``since``, a negative ``last_rows`` or an input column
    named like one of ``WINDOW_COLUMNS``; SQLAlchemy's errors if the tables cannot be read
    (``SqlInferenceLog.migrate()`` creates them).
    """
    import pandas as pd

    if since is not None and since.tzinfo is None:
        raise ValueError(f"since must be timezone-aware, got {since!r}")
    if last_rows is not None and last_rows < 0:
        raise ValueError(f"last_rows must be >= 0, got {last_rows}")
    query = _window_query(model, version, route, last_rows, since)
    engine = create_sql_engine(url)
    try:
        with transaction(engine, write=False) as conn:
            logged = conn.execute(query).all()
            labels = _latest_labels(conn, [row.request_id for row in logged])
    finally:
        engine.dispose()
    rows = [row for entry in reversed(logged) for row in _expand(entry, labels)]
    if last_rows is not None:
        rows = rows[len(rows) - last_rows :] if last_rows else []
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(WINDOW_COLUMNS))
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


def _window_query(
    model: str,
    version: int | None,
    route: str | None,
    last_rows: int | None,
    since: datetime | None,
) -> sa.Select[Any]:
    """Newest first. Every request holds at least one input row, so ``last_rows`` requests
    always cover the newest ``last_rows`` input rows."""
    log = INFERENCE_LOG.c
    query = (
        sa.select(
            log.request_id, log.at, log.version, log.route, log.inputs, log.predictions, log.id
        )
        .where(log.model == model, log.status < ANSWERED_BELOW)
        .order_by(log.at.desc(), log.id.desc())
    )
    if version is not None:
        query = query.where(log.version == version)
    if route is not None:
        query = query.where(log.route == route)
    if since is not None:
        # SQLite compares the stored UTC text: compare it with UTC.
        query = query.where(log.at >= since.astimezone(UTC))
    if last_rows is not None:
        query = query.limit(last_rows)
    return query


def _latest_labels(conn: sa.Connection, request_ids: list[str]) -> dict[str, list[Any]]:
    """The labels of each request's newest feedback: a later post corrects an earlier one."""
    labels: dict[str, list[Any]] = {}
    unique = sorted(set(request_ids))
    for start in range(0, len(unique), FEEDBACK_CHUNK):
        chunk = unique[start : start + FEEDBACK_CHUNK]
        query = (
            sa.select(FEEDBACK.c.request_id, FEEDBACK.c.labels)
            .where(FEEDBACK.c.request_id.in_(chunk))
            .order_by(FEEDBACK.c.id)
        )
        for request_id, text in conn.execute(query):
            labels[request_id] = json.loads(text)
    return labels


def _expand(entry: sa.Row[Any], labels: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One dict per input row of a logged request. Raises ``ValueError`` on a column clash."""
    inputs = json.loads(entry.inputs)
    predictions = json.loads(entry.predictions) if entry.predictions is not None else []
    request_labels = labels.get(entry.request_id, [])
    at = entry.at if entry.at.tzinfo is not None else entry.at.replace(tzinfo=UTC)
    rows = []
    for i, values in enumerate(inputs):
        clash = set(values) & set(WINDOW_COLUMNS)
        if clash:
            raise ValueError(
                f"input column(s) {sorted(clash)} of request {entry.request_id!r} clash with "
                f"the inference log's own columns {list(WINDOW_COLUMNS)}"
            )
        row = dict(values)
        row["prediction"] = predictions[i] if i < len(predictions) else None
        row["label"] = request_labels[i] if i < len(request_labels) else None
        row.update(request_id=entry.request_id, version=entry.version, route=entry.route, at=at)
        rows.append(row)
    return rows


def read_requests(url: str, model: str, *, since: datetime | None = None) -> pd.DataFrame:
    """One row per logged request and route, errors included: what rollout evidence is made of.

    Columns: ``request_id, at, version, route, latency_ms, status, predictions, labels`` (the
    last two are lists, ``labels`` None until feedback arrives). Raises ``ValueError`` for a
    naive ``since``; SQLAlchemy's errors if the tables cannot be read.
    """
    import pandas as pd

    if since is not None and since.tzinfo is None:
        raise ValueError(f"since must be timezone-aware, got {since!r}")
    log = INFERENCE_LOG.c
    query = (
        sa.select(
            log.request_id,
            log.at,
            log.version,
            log.route,
            log.latency_ms,
            log.status,
            log.predictions,
        )
        .where(log.model == model)
        .order_by(log.id)
    )
    if since is not None:
        query = query.where(log.at >= since.astimezone(UTC))
    engine = create_sql_engine(url)
    try:
        with transaction(engine, write=False) as conn:
            logged = conn.execute(query).all()
            labels = _latest_labels(conn, [row.request_id for row in logged])
    finally:
        engine.dispose()
    columns = [
        "request_id",
        "at",
        "version",
        "route",
        "latency_ms",
        "status",
        "predictions",
        "labels",
    ]
    frame = pd.DataFrame(
        [
            (
                r.request_id,
                r.at,
                r.version,
                r.route,
                r.latency_ms,
                r.status,
                json.loads(r.predictions) if r.predictions is not None else None,
                labels.get(r.request_id),
            )
            for r in logged
        ],
        columns=columns,
    )
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame
