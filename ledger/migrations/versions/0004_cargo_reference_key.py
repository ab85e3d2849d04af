"""Cargo keys hold waybill, B/L and customs entry numbers without '-' and '/'.

Singularity compared these numbers exactly, so one number written XBL-2026000417 and
XBL2026000417 covered one cargo twice.  ``encd.document.cargo_keys`` now writes them
in their key form (``reference_key``); this rewrites the stored index the same way.
If two live documents' keys become one, the ledger already covers one cargo twice:
the upgrade stops and names them (end one of them with the version before: void,
surrender and deliver, or switch to paper; then upgrade).  Stop every server of the
ledger before upgrading: one still running the version before would write keys with
separators again.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _key_form(key: str) -> str:
    kind, _, number = key.partition(":")
    if kind == "container":  # ISO 6346: letters and digits only
        return key
    return f"{kind}:{number.upper().replace('-', '').replace('/', '')}"


def upgrade() -> None:
    conn = op.get_bind()
    cargo = sa.table("cargo", sa.column("key", sa.String), sa.column("doc_id", sa.String))
    rows = conn.execute(sa.select(cargo.c.key, cargo.c.doc_id)).all()
    owners: dict[str, str] = {}
    for key, doc_id in rows:
        new = _key_form(key)
        other = owners.setdefault(new, doc_id)
        if other != doc_id:
            raise RuntimeError(
                f"live documents {other} and {doc_id} both cover {new} once '-' and '/' are "
                "taken out of its number: end one of them (void, surrender and deliver, or "
                "switch to paper) with the encd version before this one, then upgrade"
            )
    if all(_key_form(key) == key for key, _ in rows):
        return
    conn.execute(sa.delete(cargo))  # (two keys of one document may become one)
    conn.execute(sa.insert(cargo), [{"key": k, "doc_id": d} for k, d in sorted(owners.items())])


def downgrade() -> None:  # the numbers as written are in the documents, not the index
    raise NotImplementedError("the cargo index cannot be rewritten back to numbers as written")
