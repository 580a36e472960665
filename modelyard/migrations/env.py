"""Alembic environment for Modelyard's tables; loaded by Alembic, never imported.

Each floor defines its own tables (the audit log in ``registry``, API keys in ``serving``, the
inference log in ``monitoring``); revisions here are written by hand, so no target metadata is
needed and the kernel imports none of those floors.

``AuditLog.migrate()`` passes an open connection (already in a locked transaction) as
``config.attributes["connection"]``; without one, an engine is made from ``sqlalchemy.url``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from modelyard.database import VERSION_TABLE, WRITE_OPTION, create_sql_engine, include_name

config = context.config


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=None,
        # MLflow's own revision sits in the default alembic_version table: never touch it.
        version_table=VERSION_TABLE,
        include_name=include_name,
        # Our SQLite engine emits BEGIN itself, so DDL is transactional there too.
        transactional_ddl=True,
        # SQLite alters a table by copying it; batch mode does that for later revisions.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def _run_offline() -> None:
    """Print the SQL (``alembic upgrade --sql``) instead of running it."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=None,
        version_table=VERSION_TABLE,
        include_name=include_name,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_sql_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
