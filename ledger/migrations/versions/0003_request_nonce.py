"""Request nonces in the store, so every API process (and a restarted one) refuses replays.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_nonce",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("nonce", sa.String(128), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_request_nonce_expires_at", "request_nonce", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_request_nonce_expires_at", "request_nonce")
    op.drop_table("request_nonce")
