"""Alembic environment: migrations run on the connection ledger.db hands over."""

from __future__ import annotations

from alembic import context

from ledger.schema import SQLModel

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - encd always passes its connection
    raise RuntimeError("run migrations through ledger.db.migrate(engine)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
