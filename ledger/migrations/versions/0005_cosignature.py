"""Witnesses' cosignatures of the log's checkpoints (c2sp.org/tlog-witness), append-only.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cosignature",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.Text, primary_key=True),
        sa.Column("line", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER cosignature_no_{action.lower()} BEFORE {action} ON cosignature "
                "BEGIN SELECT RAISE(ABORT, 'cosignature is append-only'); END"
            )
    else:  # PostgreSQL: the function 0001 made
        op.execute(
            "CREATE TRIGGER cosignature_append_only BEFORE UPDATE OR DELETE ON cosignature "
            "FOR EACH ROW EXECUTE FUNCTION encd_append_only()"
        )
        op.execute(
            "CREATE TRIGGER cosignature_no_truncate BEFORE TRUNCATE ON cosignature "
            "FOR EACH STATEMENT EXECUTE FUNCTION encd_append_only()"
        )


def downgrade() -> None:
    op.drop_table("cosignature")
