"""Who has been party to each document, for read authorization.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "doc_party",
        sa.Column("doc_id", sa.String(64), primary_key=True),
        sa.Column("party_id", sa.String(20), primary_key=True),
    )
    op.create_index("ix_doc_party_party_id", "doc_party", ["party_id"])


def downgrade() -> None:
    op.drop_index("ix_doc_party_party_id", "doc_party")
    op.drop_table("doc_party")
