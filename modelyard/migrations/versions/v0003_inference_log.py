"""Create modelyard_inference_log and modelyard_feedback, the gateway's answers and their labels.

The tables mirror ``monitoring/inference_log.py`` (the contract between the gateway and
monitoring); this revision stays frozen when that module changes, and a later revision follows.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-15
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite only auto-numbers an ``INTEGER PRIMARY KEY`` (its rowid), not a BIGINT one.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "modelyard_inference_log",
        sa.Column("id", ROW_ID, nullable=False, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("route", sa.String(16), nullable=False),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("predictions", sa.Text, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        # One row per request and route: a retried batch cannot log an answer twice.
        sa.UniqueConstraint("request_id", "route", name="modelyard_inference_log_request_route_uq"),
    )
    op.create_index(
        "modelyard_inference_log_model_version_at_ix",
        "modelyard_inference_log",
        ["model", "version", "at"],
    )
    op.create_table(
        "modelyard_feedback",
        sa.Column("id", ROW_ID, nullable=False, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # The name SQLAlchemy gives ``index=True`` in monitoring/inference_log.py.
    op.create_index("ix_modelyard_feedback_request_id", "modelyard_feedback", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_modelyard_feedback_request_id", table_name="modelyard_feedback")
    op.drop_table("modelyard_feedback")
    op.drop_index(
        "modelyard_inference_log_model_version_at_ix", table_name="modelyard_inference_log"
    )
    op.drop_table("modelyard_inference_log")
