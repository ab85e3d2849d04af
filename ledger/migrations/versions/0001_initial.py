"""The initial store: events, the Merkle tree, checkpoints, projections, proposals.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("event", "tree_node", "checkpoint")


def upgrade() -> None:
    op.create_table(
        "event",
        sa.Column("log_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("chain", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("sequenced_at", sa.BigInteger, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("chain", "subject", "seq", name="event_chain_position"),
    )
    op.create_index("event_subject", "event", ["subject", "seq"])
    op.create_table(
        "tree_node",
        sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "checkpoint",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "party",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("updated_index", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "document",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("head_index", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(20), nullable=False),
        sa.Column("controller", sa.String(20), nullable=False),
        sa.Column("carrier", sa.String(20), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_index("ix_document_holder", "document", ["holder"])
    op.create_table(
        "cargo",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("doc_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_cargo_doc_id", "cargo", ["doc_id"])
    op.create_table(
        "proposal",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("doc_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("text", sa.LargeBinary, nullable=False),
        sa.Column("signatures", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_proposal_doc_id", "proposal", ["doc_id"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    _append_only_triggers()


def _append_only_triggers() -> None:
    """UPDATE and DELETE (and TRUNCATE on PostgreSQL) of the log's tables are refused."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION encd_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION encd_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION encd_append_only()"
            )
    else:  # pragma: no cover
        raise RuntimeError(f"encd supports SQLite and PostgreSQL, not {dialect}")


def downgrade() -> None:
    raise RuntimeError("the initial schema holds an append-only log; it is never dropped")
