"""Create modelyard_api_keys, the model gateway's API keys (only a hash of each secret).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-15
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "modelyard_api_keys",
        # Public id, also the visible prefix of the key (``my_<key_id>_<secret>``): lookups use
        # it, so the secret itself is never a search term.
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        # SHA-256 hex of the secret. The secret is 32 random bytes (256 bits), so a slow
        # password hash (bcrypt, argon2) would add nothing against guessing, only latency on
        # every request: no dictionary or brute force can cover a 2**256 space.
        sa.Column("key_hash", sa.String(64), nullable=False),
        # JSON list of model names; NULL means every model.
        sa.Column("scopes", sa.Text, nullable=True),
        sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
        # NULL means not rate-limited.
        sa.Column("rate_per_second", sa.Float, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="modelyard_api_keys_pk"),
    )


def downgrade() -> None:
    op.drop_table("modelyard_api_keys")
