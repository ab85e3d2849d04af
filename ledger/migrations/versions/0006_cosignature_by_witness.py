"""An index of cosignatures by witness: the newest size each witness cosigned is one
look-up, so a request for a checkpoint N named witnesses cosigned is answered at once
when fewer than N of them cosigned anything, and otherwise searches only below the
N-th newest of their sizes (``Ledger.witnessed_checkpoint``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("cosignature_by_witness", "cosignature", ["witness", "size"])


def downgrade() -> None:
    op.drop_index("cosignature_by_witness", table_name="cosignature")
