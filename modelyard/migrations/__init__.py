"""Alembic migrations of Modelyard's own tables (audit log, API keys, inference log).

Run in code by ``modelyard.database.upgrade_to_head`` (``AuditLog.migrate()`` and friends).

Their revision lives in ``modelyard_alembic_version``, apart from MLflow's ``alembic_version`` in
the same database. A new revision is a hand-written file in ``versions/`` named
``v<NNNN>_<what>.py`` whose ``down_revision`` is the previous one. Keep revisions frozen
(explicit ``op`` calls, no imports of our models) and every name ``modelyard_``-prefixed.
"""
