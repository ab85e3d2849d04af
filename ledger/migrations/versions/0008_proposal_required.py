"""Who must sign a proposal, kept with it: a proposal that expired or failed still says
which places it was waiting for, as the document stood when it was proposed (the
document may have moved on since, and its signers with it).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("proposal", sa.Column("required", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("proposal", "required")
