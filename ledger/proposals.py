"""Pending multi-signature proposals: an event's text and the signatures gathered so far.

A proposal is keyed by the SHA-256 of its envelope text.  It is *open* until
every required party has signed (then it is *applied*: the assembled event
goes through the ledger like any other), until the document moves on so
that it can never apply (*failed*), or until it expires (*expired*).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from encd.note import NoteSignature, parse_note
from ledger.ledger import Ledger, NotFound
from ledger.schema import PROPOSAL

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
    )


def get(ledger: Ledger, pid: str) -> Proposal:
    with ledger.reader.connect() as conn:
        row = conn.execute(select(PROPOSAL).where(PROPOSAL.c.id == pid)).first()
    if row is None:
        raise NotFound(f"no proposal {pid}")
    return _row(row)


def find(ledger: Ledger, pid: str) -> Proposal | None:
    try:
        return get(ledger, pid)
    except NotFound:
        return None


def open_proposals(ledger: Ledger, now_ms: int) -> list[Proposal]:
    with ledger.reader.connect() as conn:
        rows = conn.execute(
            select(PROPOSAL)
            .where(PROPOSAL.c.state == OPEN, PROPOSAL.c.expires_at > now_ms)
            .order_by(PROPOSAL.c.created_at)
        ).all()
    return [_row(r) for r in rows]


def save(ledger: Ledger, proposal: Proposal) -> None:
    block = b"".join(
        sig.line().encode() for sig in sorted(proposal.signatures, key=lambda s: s.key_id)
    )
    values = {
        "doc_id": proposal.doc_id,
        "type": proposal.type,
        "text": proposal.text,
        "signatures": block,
        "created_at": proposal.created_at,
        "expires_at": proposal.expires_at,
        "state": proposal.state,
        "event_id": proposal.event_id,
    }
    with ledger.writer.begin() as conn:
        exists = conn.execute(select(PROPOSAL.c.id).where(PROPOSAL.c.id == proposal.id)).first()
        if exists is None:
            conn.execute(insert(PROPOSAL).values(id=proposal.id, **values))
        else:
            conn.execute(update(PROPOSAL).where(PROPOSAL.c.id == proposal.id).values(**values))
