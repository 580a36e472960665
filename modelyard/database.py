"""Modelyard's own SQL tables beside MLflow's: engines, transactions and migrations.

The tables share the registry's database by default (SQLite embedded, PostgreSQL in
production). Alembic keeps our revision in ``modelyard_alembic_version``, apart from MLflow's
``alembic_version``, and our migrations only ever create ``modelyard_``-prefixed names.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from modelyard.errors import ConfigurationError

if TYPE_CHECKING:
    from alembic.config import Config

    from modelyard.settings import Settings

logger = logging.getLogger(__name__)

# MLflow keeps its own revision in the default ``alembic_version`` table of the same database.
VERSION_TABLE = "modelyard_alembic_version"
TABLE_PREFIX = "modelyard_"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Writers from other processes wait this long for SQLite's write lock instead of failing at once.
SQLITE_BUSY_TIMEOUT_S = 30.0
# Key of the PostgreSQL advisory lock held while migrating: "modelyar" in ASCII.
MIGRATION_LOCK_KEY = 0x6D6F64656C796172
MIGRATION_ATTEMPTS = 2
# Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE.
WRITE_OPTION = "modelyard_write"


def own_tables_url(settings: Settings) -> str:
    """Where Modelyard's own tables live (``settings.sql_url``), creating the state folder first
    when that is the embedded SQLite file."""
    if settings.sql_url.startswith("sqlite:"):
        settings.ensure_home()
    return settings.sql_url


def create_sql_engine(url: str) -> sa.Engine:
    """An engine for our tables; SQLite gets a busy timeout and real transactions.

    Raises ``ConfigurationError`` for a malformed URL or a missing database driver.
    """
    try:
        parsed = sa.make_url(url)
        if parsed.get_backend_name() != "sqlite":
            # A server may have dropped idle pooled connections between CLI steps.
            return sa.create_engine(parsed, pool_pre_ping=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    except (sa_exc.ArgumentError, ModuleNotFoundError) as exc:
        raise ConfigurationError(
            f"cannot use {url!r} as Modelyard's database: {exc}",
            hint="use e.g. sqlite:////abs/path/modelyard.db or "
            "postgresql+psycopg://user@host:5432/db",
        ) from exc
    _take_over_sqlite_transactions(engine)
    return engine


@contextmanager
def transaction(engine: sa.Engine, *, write: bool) -> Iterator[sa.Connection]:
    """A connection inside one transaction, committed at the end unless an error escapes.

    On SQLite a ``write`` transaction takes the database's write lock at its start, waiting for
    it up to the busy timeout. Raises SQLAlchemy's errors untranslated: callers name the task.
    """
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: write})
        with conn.begin():
            yield conn


@contextmanager
def guarded_transaction(
    engine: sa.Engine, *, write: bool, translate: Callable[[sa_exc.DBAPIError], Exception]
) -> Iterator[sa.Connection]:
    """A transaction whose connection and SQL failures become the caller's own error type."""
    try:
        with transaction(engine, write=write) as conn:
            yield conn
    except (sa_exc.OperationalError, sa_exc.ProgrammingError, sa_exc.InterfaceError) as exc:
        raise translate(exc) from exc


class SqlTables:
    """Base of a store of Modelyard's own tables: its engine, closing, and guarded transactions.

    Subclasses say how a database failure reads to their callers (``_unavailable``).
    """

    def __init__(self, url: str) -> None:
        """Raises ``ConfigurationError`` if ``url`` is not a usable SQLAlchemy URL."""
        self._engine = create_sql_engine(url)
        self.url = self._engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Close pooled connections (another process may then drop the database)."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _unavailable(self, doing: str, exc: sa_exc.DBAPIError) -> Exception:
        raise NotImplementedError

    def _reading(self, doing: str) -> AbstractContextManager[sa.Connection]:
        translate = functools.partial(self._unavailable, doing)
        return guarded_transaction(self._engine, write=False, translate=translate)

    def _writing(self, doing: str) -> AbstractContextManager[sa.Connection]:
        translate = functools.partial(self._unavailable, doing)
        return guarded_transaction(self._engine, write=True, translate=translate)


def upgrade_to_head(engine: sa.Engine) -> None:
    """Create or upgrade our tables to the newest revision; a no-op when current.

    Safe when several processes start at once: the upgrade runs inside a write lock (SQLite
    ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), and on a database with neither, the loser
    of the race to create the tables retries once and finds them made.
    Raises ``sqlalchemy.exc.DBAPIError`` if the second attempt fails too.
    """
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    for attempt in range(1, MIGRATION_ATTEMPTS + 1):
        try:
            with transaction(engine, write=True) as conn:
                _lock_migrations(conn)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
            return
        except sa_exc.DBAPIError as exc:
            if attempt == MIGRATION_ATTEMPTS:
                raise
            logger.warning("migrating %s failed (%s); retrying once", engine.url, exc.orig)


def alembic_config(url: str) -> Config:
    """An Alembic configuration for our migrations, built in code (no alembic.ini).

    Pass an open connection as ``config.attributes["connection"]`` to migrate inside it.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # configparser interpolates "%", which URL-encoded passwords contain.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def include_name(name: str | None, type_: str, _parent_names: Mapping[Any, str | None]) -> bool:
    """Autogenerate filter: look only at our tables, never at MLflow's in the same database."""
    return type_ != "table" or bool(name and name.startswith(TABLE_PREFIX))


def _take_over_sqlite_transactions(engine: sa.Engine) -> None:
    """Let SQLAlchemy emit BEGIN itself, so that DDL is transactional and writers queue.

    The sqlite3 driver's legacy mode autocommits DDL (two processes creating the tables at once
    would collide) and begins lazily (a read then write can deadlock with no busy wait). Writes
    start with ``BEGIN IMMEDIATE``, taking the write lock at once and waiting for it up to the
    busy timeout; reads start with a plain ``BEGIN``, which in WAL mode never blocks a writer.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _lock_migrations(conn: sa.Connection) -> None:
    """Make concurrent first runs wait for each other instead of racing to create the tables."""
    if conn.dialect.name == "postgresql":
        # Released at commit; PostgreSQL's DDL is transactional, so the waiter sees the tables.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    # SQLite needs nothing more: the transaction began with BEGIN IMMEDIATE.
