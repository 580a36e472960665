"""Create modelyard_audit, the append-only history of registry changes.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "modelyard_audit",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_stage", sa.String(64), nullable=True),
        sa.Column("to_stage", sa.String(64), nullable=True),
        sa.Column("traffic_share", sa.Integer, nullable=True),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        # Winners of a claim hold the model's next sequence number; every other row holds NULL,
        # which both SQLite and PostgreSQL allow any number of times under the constraint.
        sa.Column("claim_seq", sa.Integer, nullable=True),
        sa.Column("ref_seq", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="modelyard_audit_pk"),
        sa.UniqueConstraint("model", "claim_seq", name="modelyard_audit_model_claim_seq_uq"),
    )
    op.create_index("modelyard_audit_model_id_ix", "modelyard_audit", ["model", "id"])


def downgrade() -> None:
    op.drop_index("modelyard_audit_model_id_ix", table_name="modelyard_audit")
    op.drop_table("modelyard_audit")
