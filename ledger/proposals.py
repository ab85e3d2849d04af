"""Pending multi-signature proposals: an event's text and the signatures gathered so far.

A proposal is keyed by the SHA-256 of its envelope text.  It is *open* until
every required party has signed (then it is *applied*: the assembled event
goes through the ledger like any other), until the document moves on so
that it can never apply (*failed*), or until it expires (*expired*).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import LargeBinary, and_, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from encd.note import NoteSignature, parse_note
from encd.validation import abridged
from ledger.ledger import Ledger, NotFound
from ledger.schema import DOC_PARTY, PROPOSAL

OPEN, APPLIED, EXPIRED, FAILED = "open", "applied", "expired", "failed"


@dataclass(frozen=True)
class Proposal:
    id: str
    doc_id: str
    type: str
    text: bytes
    signatures: tuple[NoteSignature, ...]
    created_at: int
    expires_at: int
    state: str
    event_id: str | None
    required: str | None = None  # JSON [{who, parties}], as the document stood when proposed

    def current_state(self, now_ms: int) -> str:
        return EXPIRED if self.state == OPEN and now_ms >= self.expires_at else self.state


def proposal_id(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def _signatures(block: bytes) -> tuple[NoteSignature, ...]:
    if not block:
        return ()
    return parse_note(b"x\n\n" + block).signatures


def _row(row: object) -> Proposal:
    r = row._mapping  # type: ignore[attr-defined]
    return Proposal(
        r["id"],
        r["doc_id"],
        r["type"],
        bytes(r["text"]),
        _signatures(bytes(r["signatures"])),
        int(r["created_at"]),
        int(r["expires_at"]),
        r["state"],
        r["event_id"],
        r["required"],
    )


def get(ledger: Ledger, pid: str) -> Proposal:
    with ledger.reader.connect() as conn:
        row = conn.execute(select(PROPOSAL).where(PROPOSAL.c.id == pid)).first()
    if row is None:
        raise NotFound(f"no proposal {abridged(pid)}")
    return _row(row)


def find(ledger: Ledger, pid: str) -> Proposal | None:
    try:
        return get(ledger, pid)
    except NotFound:
        return None


def open_proposals(ledger: Ledger, now_ms: int, doc_id: str | None = None) -> list[Proposal]:
    """The proposals still open at ``now_ms``, oldest first; only ``doc_id``'s if given."""
    query = select(PROPOSAL).where(PROPOSAL.c.state == OPEN, PROPOSAL.c.expires_at > now_ms)
    if doc_id is not None:
        query = query.where(PROPOSAL.c.doc_id == doc_id)
    with ledger.reader.connect() as conn:
        rows = conn.execute(query.order_by(PROPOSAL.c.created_at)).all()
    return [_row(r) for r in rows]


def open_page(
    ledger: Ledger,
    now_ms: int,
    limit: int,
    after: Proposal | None = None,
    party_id: str | None = None,
) -> list[Proposal]:
    """Up to ``limit`` proposals still open at ``now_ms``, oldest first (by ``created_at``,
    then id), after ``after`` in that order.  With ``party_id``, only those it may be asked
    about: on a document it has been party to, or whose text or signatures name it (a
    superset of those it signed or must sign, which the caller narrows down)."""
    query = select(PROPOSAL).where(PROPOSAL.c.state == OPEN, PROPOSAL.c.expires_at > now_ms)
    if after is not None:
        query = query.where(
            or_(
                PROPOSAL.c.created_at > after.created_at,
                and_(PROPOSAL.c.created_at == after.created_at, PROPOSAL.c.id > after.id),
            )
        )
    if party_id is not None:
        sqlite = ledger.reader.dialect.name == "sqlite"
        query = query.where(
            or_(
                PROPOSAL.c.doc_id.in_(
                    select(DOC_PARTY.c.doc_id).where(DOC_PARTY.c.party_id == party_id)
                ),
                _holds(PROPOSAL.c.text, party_id, sqlite),
                _holds(PROPOSAL.c.signatures, party_id, sqlite),
            )
        )
    query = query.order_by(PROPOSAL.c.created_at, PROPOSAL.c.id).limit(limit)
    with ledger.reader.connect() as conn:
        rows = conn.execute(query).all()
    return [_row(r) for r in rows]


def _holds(column: Any, text: str, sqlite: bool) -> Any:
    """Whether a binary column holds ``text`` (ASCII letters and digits): SQLite's LIKE
    never matches a blob, PostgreSQL's ``bytea LIKE bytea`` does."""
    needle = text.encode()
    if sqlite:
        return func.instr(column, needle) > 0
    # (through op(): SQLAlchemy deprecates .like() on a LargeBinary column)
    return column.op("LIKE")(literal(b"%" + needle + b"%", LargeBinary))


def _block(signatures: Iterable[NoteSignature]) -> bytes:
    return b"".join(sig.line().encode() for sig in sorted(signatures, key=lambda s: s.key_id))


def gather(
    ledger: Ledger, new: Proposal, signatures: Iterable[NoteSignature], now_ms: int
) -> tuple[Proposal, bool]:
    """Add ``signatures`` to proposal ``new.id`` (creating it as ``new`` if there is none),
    in one transaction that holds its row (PostgreSQL: ``FOR UPDATE`` after an insert that
    does nothing if another made it first; SQLite: the write lock), so that signatures
    gathered at once through several servers are all kept.  A party signs once: a
    signature by another key of a party that has signed already is not added.  Returns
    the proposal as now stored and whether this call made it; one that is no longer open
    is returned as it is, without the signatures."""
    row_values = {
        "id": new.id,
        "doc_id": new.doc_id,
        "type": new.type,
        "text": new.text,
        "signatures": b"",
        "created_at": new.created_at,
        "expires_at": new.expires_at,
        "state": OPEN,
        "event_id": None,
        "required": new.required,
    }
    with ledger.writer.begin() as conn:
        made: Any  # (each dialect's Insert has on_conflict_do_nothing)
        if conn.dialect.name == "postgresql":
            made = pg_insert(PROPOSAL).values(**row_values).on_conflict_do_nothing()
        else:
            made = sqlite_insert(PROPOSAL).values(**row_values).on_conflict_do_nothing()
        # (RETURNING, not rowcount: psycopg's rowcount here is -1)
        created = conn.execute(made.returning(PROPOSAL.c.id)).first() is not None
        row = conn.execute(select(PROPOSAL).where(PROPOSAL.c.id == new.id).with_for_update()).one()
        stored = _row(row)
        if stored.current_state(now_ms) != OPEN:
            return stored, created
        merged = {sig.key_id: sig for sig in stored.signatures}
        signed = {sig.name for sig in stored.signatures}
        for sig in signatures:  # one signature a party: a second key of one kept already
            if sig.key_id in merged or sig.name not in signed:  # (posted at once) is not
                merged[sig.key_id] = sig
        block = _block(merged.values())
        if block != bytes(row._mapping["signatures"]):
            conn.execute(update(PROPOSAL).where(PROPOSAL.c.id == new.id).values(signatures=block))
    return replace(stored, signatures=tuple(merged.values())), created


def finish(ledger: Ledger, pid: str, state: str, event_id: str | None = None) -> None:
    """Close an open proposal as ``state`` (APPLIED with its event, or FAILED); one that
    another request closed already keeps what it said."""
    with ledger.writer.begin() as conn:
        conn.execute(
            update(PROPOSAL)
            .where(PROPOSAL.c.id == pid, PROPOSAL.c.state == OPEN)
            .values(state=state, event_id=event_id)
        )
