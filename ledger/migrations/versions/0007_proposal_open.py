"""An index of proposals by state and expiry: the open ones are read without a scan of
every proposal ever made (applied, failed and expired ones are kept).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("proposal_open", "proposal", ["state", "expires_at"])


def downgrade() -> None:
    op.drop_index("proposal_open", table_name="proposal")
