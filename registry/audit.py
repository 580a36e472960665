"""The append-only audit history of registry changes, and the claim that serialises them.

Every attempt to change a model's stage, traffic share or approval is a row of
``modelyard_audit``; rows are never updated or deleted. Changes that win hold a per-model
sequence number (``claim_seq``, unique per model), which doubles as an optimistic lock:

1. ``seq = log.latest_seq(model)``, before reading the registry state a decision is based on;
2. decide (pure code, elsewhere);
3. ``claimed = log.claim(entry, expected_seq=seq)``: of several callers that read the same ``seq``
   exactly one wins; the others get :class:`ConcurrentChange`, naming the change that beat them,
   and record their attempt with ``log.record(replace(entry, outcome=Outcome.CONFLICT))``;
4. apply the change to MLflow; if that fails, record ``Outcome.FAILED`` or ``Outcome.REVERTED``
   with ``ref_seq=claimed.claim_seq`` so the history no longer counts the claimed change.

The tables live in the registry's database by default, beside MLflow's, under their own Alembic
version table; only ``modelyard_``-prefixed names are ever created.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from modelyard.database import (
    SqlTables,
    own_tables_url,
    upgrade_to_head,
)
from registry.errors import RegistryError, RegistryUnavailable
from registry.types import Stage

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)

AUDIT_TABLE = "modelyard_audit"


class Action(StrEnum):
    """What an audited change does."""

    REGISTER = "register"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    TRAFFIC = "traffic"
    APPROVE = "approve"
    RETIRE = "retire"


class Outcome(StrEnum):
    """What became of an attempted change."""

    APPLIED = "applied"
    REFUSED = "refused"
    CONFLICT = "conflict"
    FAILED = "failed"
    REVERTED = "reverted"


# Changes of what serves: applied ones must win a claim, so concurrent jobs cannot both succeed.
CLAIMED_ACTIONS = frozenset({Action.PROMOTE, Action.ROLLBACK, Action.TRAFFIC, Action.RETIRE})


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit history. ``id`` and ``claim_seq`` are set by :class:`AuditLog`.

    ``ref_seq`` is, on a failed or reverted row, the ``claim_seq`` of the change it reports on.
    Raises ``ValueError`` on an unknown action or outcome, an out-of-range number, a naive ``at``
    or evidence that is not JSON-serialisable.
    """

    model: str
    action: Action
    actor: str
    outcome: Outcome = Outcome.APPLIED
    version: int | None = None
    from_stage: str | None = None
    to_stage: str | None = None
    traffic_share: int | None = None
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    claim_seq: int | None = None
    ref_seq: int | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if not self.model or not self.actor:
            raise ValueError(f"an audit entry needs a model and an actor, got {self!r}")
        if self.at.tzinfo is None:
            raise ValueError(f"audit time must be timezone-aware, got {self.at!r}")
        _check_range("version", self.version, 1)
        _check_range("traffic_share", self.traffic_share, 0, 100)
        _check_range("claim_seq", self.claim_seq, 1)
        _check_range("ref_seq", self.ref_seq, 1)
        # Normalise what callers may pass loosely (strings, Stage members, a live dict).
        normalised = {
            "action": Action(self.action),
            "outcome": Outcome(self.outcome),
            "from_stage": None if self.from_stage is None else str(self.from_stage),
            "to_stage": None if self.to_stage is None else str(self.to_stage),
            "evidence": dict(self.evidence),
            "at": self.at.astimezone(UTC),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        _evidence_json(self.evidence)

    def as_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready values (for ``modelyard history --json``)."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "model": self.model,
            "version": self.version,
            "action": self.action.value,
            "from_stage": self.from_stage,
            "to_stage": self.to_stage,
            "traffic_share": self.traffic_share,
            "actor": self.actor,
            "reason": self.reason,
            "outcome": self.outcome.value,
            "evidence": dict(self.evidence),
            "claim_seq": self.claim_seq,
            "ref_seq": self.ref_seq,
        }

    def describe(self) -> str:
        """A short human summary, e.g. ``promote v3 canary → champion`` or ``traffic v4 at 10%``."""
        parts = [str(self.action)]
        if self.version is not None:
            parts.append(f"v{self.version}")
        if self.to_stage:
            parts.append(
                f"{self.from_stage} → {self.to_stage}" if self.from_stage else self.to_stage
            )
        if self.traffic_share is not None:
            parts.append(f"at {self.traffic_share}%")
        return " ".join(parts)


class ConcurrentChange(RegistryError):
    """Another change of the model was claimed since the caller read its state."""

    exit_code = 3

    def __init__(self, model: str, expected_seq: int, latest: AuditEntry | None) -> None:
        if latest is None:
            current = "it has no claimed changes"
        else:
            stamp = latest.at.isoformat(timespec="seconds").replace("+00:00", "Z")
            current = (
                f"the latest is change #{latest.claim_seq}, {latest.describe()}, "
                f"by {latest.actor} at {stamp}"
            )
        expected = (
            f"change #{expected_seq} to be its latest" if expected_seq else "no claimed change"
        )
        super().__init__(
            f"model {model!r} was changed concurrently: expected {expected}, but {current}",
            hint="re-read the state and retry",
        )
        self.model = model
        self.expected_seq = expected_seq
        self.latest = latest


METADATA = sa.MetaData()
# Mirrors the migrations (which stay frozen); used for queries and by autogenerate.
AUDIT = sa.Table(
    AUDIT_TABLE,
    METADATA,
    sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("from_stage", sa.String(64)),
    sa.Column("to_stage", sa.String(64)),
    sa.Column("traffic_share", sa.Integer),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("claim_seq", sa.Integer),
    sa.Column("ref_seq", sa.Integer),
    sa.PrimaryKeyConstraint("id", name="modelyard_audit_pk"),
    sa.UniqueConstraint("model", "claim_seq", name="modelyard_audit_model_claim_seq_uq"),
    sa.Index("modelyard_audit_model_id_ix", "model", "id"),
)


class AuditLog(SqlTables):
    """The audit history in a SQL database (SQLite or PostgreSQL), beside MLflow's tables."""

    def __init__(self, url: str) -> None:
        """Raises ``ConfigurationError`` if ``url`` is not a usable SQLAlchemy URL."""
        super().__init__(url)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        """The audit log in ``settings.sql_url``: the registry's database when that is SQL."""
        return cls(own_tables_url(settings))

    def migrate(self) -> None:
        """Create or upgrade the audit tables to the newest revision; a no-op when current.

        Safe when several processes start at once (see ``modelyard.database.upgrade_to_head``).
        Raises ``RegistryUnavailable`` if the database cannot be reached or migrated.
        """
        try:
            upgrade_to_head(self._engine)
        except sa_exc.DBAPIError as exc:
            raise self._unavailable("migrate the audit tables", exc) from exc

    def latest_seq(self, model: str) -> int:
        """The ``claim_seq`` of the model's latest claimed change, 0 if none.

        Raises ``RegistryUnavailable``.
        """
        with self._reading(f"read the latest change of {model!r}") as conn:
            return _latest_seq(conn, model)

    def latest_claim(self, model: str) -> AuditEntry | None:
        """The model's latest claimed change, if any. Raises ``RegistryUnavailable``."""
        with self._reading(f"read the latest change of {model!r}") as conn:
            return _latest_claim(conn, model)

    def claim(self, entry: AuditEntry, expected_seq: int) -> AuditEntry:
        """Record an applied change as claim ``expected_seq + 1``, if ``expected_seq`` is latest.

        Returns the stored entry (with ``id`` and ``claim_seq``). Raises ``ConcurrentChange``
        (naming the current latest change) when another change was claimed since
        ``expected_seq`` was read, ``ValueError`` if ``entry`` is not an unclaimed applied change,
        ``RegistryUnavailable``.
        """
        if entry.outcome is not Outcome.APPLIED or entry.claim_seq is not None or expected_seq < 0:
            raise ValueError(
                f"claim() takes an unclaimed applied entry and a sequence >= 0, got {entry!r} "
                f"and {expected_seq}; record refusals and conflicts with record()"
            )
        claimed = replace(entry, claim_seq=expected_seq + 1)
        try:
            with self._writing(f"claim a change of {entry.model!r}") as conn:
                # SQLite: BEGIN IMMEDIATE serialises writers, so this check is the whole lock.
                # PostgreSQL: a concurrent winner makes our insert fail on the unique constraint.
                if _latest_seq(conn, entry.model) != expected_seq:
                    raise ConcurrentChange(
                        entry.model, expected_seq, _latest_claim(conn, entry.model)
                    )
                new_id = _insert(conn, claimed)
        except sa_exc.IntegrityError as exc:
            latest = self.latest_claim(entry.model)
            if latest is None or latest.claim_seq == expected_seq:
                raise  # not a lost race: some other constraint, which is a bug to show as is
            raise ConcurrentChange(entry.model, expected_seq, latest) from exc
        return replace(claimed, id=new_id)

    def record(self, entry: AuditEntry) -> AuditEntry:
        """Append an entry that claims nothing: a refusal, conflict, failure, revert or register.

        Returns the stored entry with its ``id``. Raises ``ValueError`` for an applied change of
        what serves (promote, rollback, traffic, retire: those must go through :meth:`claim`) or
        an entry with a ``claim_seq``; ``RegistryUnavailable``.
        """
        if entry.claim_seq is not None:
            raise ValueError(
                f"record() takes entries that claim nothing, got claim_seq={entry.claim_seq} "
                f"for {entry.model!r}; claim() numbers claimed changes itself"
            )
        if entry.outcome is Outcome.APPLIED and entry.action in CLAIMED_ACTIONS:
            raise ValueError(
                f"an applied {entry.action} of {entry.model!r} changes what serves and must win "
                "a claim(); record() takes refusals, conflicts, failures and reverts"
            )
        with self._writing(f"record a change of {entry.model!r}") as conn:
            new_id = _insert(conn, entry)
        return replace(entry, id=new_id)

    def history(self, model: str, limit: int | None = None) -> list[AuditEntry]:
        """The model's entries, oldest first; with ``limit``, only the newest ``limit`` of them.

        Raises ``ValueError`` for a negative limit, ``RegistryUnavailable``.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        query = sa.select(AUDIT).where(AUDIT.c.model == model).order_by(AUDIT.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._reading(f"read the history of {model!r}") as conn:
            rows = conn.execute(query).all()
        return [_to_entry(row) for row in reversed(rows)]

    def champion_history(self, model: str) -> list[tuple[Action, int]]:
        """(action, version) of each claimed, applied change of champion, in claim order.

        The action tells a promotion (a new champion on top) from a rollback (back down a step).

        Changes later reported failed or reverted (by ``ref_seq``) are left out.
        Raises ``RegistryUnavailable``.
        """
        undone = sa.select(AUDIT.c.ref_seq).where(
            AUDIT.c.model == model,
            AUDIT.c.outcome.in_([Outcome.FAILED.value, Outcome.REVERTED.value]),
            AUDIT.c.ref_seq.is_not(None),  # NOT IN over a NULL would exclude every row
        )
        query = (
            sa.select(AUDIT.c.action, AUDIT.c.version)
            .where(
                AUDIT.c.model == model,
                AUDIT.c.claim_seq.is_not(None),
                AUDIT.c.outcome == Outcome.APPLIED.value,
                AUDIT.c.to_stage == Stage.CHAMPION.value,
                AUDIT.c.version.is_not(None),
                AUDIT.c.claim_seq.not_in(undone),
            )
            .order_by(AUDIT.c.claim_seq)
        )
        with self._reading(f"read the champions of {model!r}") as conn:
            return [(Action(action), int(version)) for action, version in conn.execute(query)]

    def _unavailable(self, doing: str, exc: sa_exc.DBAPIError) -> RegistryUnavailable:
        return RegistryUnavailable(
            f"cannot {doing} in the audit database {self.url}: {exc.orig}",
            hint="check that the database is reachable and that AuditLog.migrate() has run",
        )


def _latest_seq(conn: sa.Connection, model: str) -> int:
    query = sa.select(sa.func.max(AUDIT.c.claim_seq)).where(AUDIT.c.model == model)
    return int(conn.execute(query).scalar_one_or_none() or 0)


def _latest_claim(conn: sa.Connection, model: str) -> AuditEntry | None:
    query = (
        sa.select(AUDIT)
        .where(AUDIT.c.model == model, AUDIT.c.claim_seq.is_not(None))
        .order_by(AUDIT.c.claim_seq.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return None if row is None else _to_entry(row)


def _insert(conn: sa.Connection, entry: AuditEntry) -> int:
    values = {
        "model": entry.model,
        "version": entry.version,
        "action": entry.action.value,
        "from_stage": entry.from_stage,
        "to_stage": entry.to_stage,
        "traffic_share": entry.traffic_share,
        "actor": entry.actor,
        "at": entry.at,
        "reason": entry.reason,
        "evidence": _evidence_json(entry.evidence),
        "outcome": entry.outcome.value,
        "claim_seq": entry.claim_seq,
        "ref_seq": entry.ref_seq,
    }
    key = conn.execute(sa.insert(AUDIT).values(values)).inserted_primary_key
    if key is None:  # every supported driver reports it; a silent None would break the history
        raise RuntimeError(f"the database returned no id for the audit row of {entry.model!r}")
    return int(key[0])


def _to_entry(row: sa.Row[Any]) -> AuditEntry:
    # SQLite keeps no zone: we store UTC there, so a naive value read back is UTC.
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
    return AuditEntry(
        id=row.id,
        model=row.model,
        version=row.version,
        action=Action(row.action),
        from_stage=row.from_stage,
        to_stage=row.to_stage,
        traffic_share=row.traffic_share,
        actor=row.actor,
        at=at,
        reason=row.reason,
        evidence=json.loads(row.evidence) if row.evidence else {},
        outcome=Outcome(row.outcome),
        claim_seq=row.claim_seq,
        ref_seq=row.ref_seq,
    )


def _evidence_json(evidence: Mapping[str, Any]) -> str:
    """Raises ``ValueError`` for values JSON cannot hold (say a numpy float32: cast to float).

    NaN and infinities are kept (as Python's json writes them): a failed metric is evidence too.
    """
    try:
        return json.dumps(evidence, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit evidence must be JSON-serialisable: {exc}") from exc


def _check_range(name: str, value: int | None, low: int, high: int | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
