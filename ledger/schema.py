"""The store's tables (SQLModel).  Alembic migrations in ledger/migrations create them.

Append-only, enforced by triggers in the database itself:

- ``event``: every admitted event's exact bytes, by log index;
- ``tree_node``: every complete subtree hash of the Merkle log (level 0 are the leaves);
- ``checkpoint``: every signed checkpoint;
- ``cosignature``: every witness cosignature of one of them.

Projections, rewritten as events arrive (and re-derivable from ``event``):
``party``, ``document``, ``cargo`` (the singularity index), ``proposal``.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class EventRow(SQLModel, table=True):
    __tablename__ = "event"
    __table_args__ = (
        UniqueConstraint("chain", "subject", "seq", name="event_chain_position"),
        Index("event_subject", "subject", "seq"),
    )
    log_index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    event_id: str = Field(max_length=64, unique=True)
    chain: str = Field(max_length=8)
    subject: str = Field(max_length=64)
    seq: int
    type: str = Field(max_length=32)
    sequenced_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class TreeNodeRow(SQLModel, table=True):
    __tablename__ = "tree_node"
    level: int = Field(primary_key=True)
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CheckpointRow(SQLModel, table=True):
    __tablename__ = "checkpoint"
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class PartyRow(SQLModel, table=True):
    __tablename__ = "party"
    id: str = Field(primary_key=True, max_length=20)
    seq: int
    head: str = Field(max_length=64)
    state: str = Field(sa_column=Column(Text, nullable=False))
    updated_index: int = Field(sa_column=Column(BigInteger, nullable=False))


class DocumentRow(SQLModel, table=True):
    __tablename__ = "document"
    id: str = Field(primary_key=True, max_length=64)
    seq: int
    head: str = Field(max_length=64)
    head_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(max_length=32)
    holder: str = Field(max_length=20, index=True)
    controller: str = Field(max_length=20)
    carrier: str = Field(max_length=20)
    state: str = Field(sa_column=Column(Text, nullable=False))


class CargoRow(SQLModel, table=True):
    __tablename__ = "cargo"
    key: str = Field(primary_key=True, max_length=100)
    doc_id: str = Field(max_length=64, index=True)


class ProposalRow(SQLModel, table=True):
    __tablename__ = "proposal"
    __table_args__ = (Index("proposal_open", "state", "expires_at"),)
    id: str = Field(primary_key=True, max_length=64)
    doc_id: str = Field(max_length=64, index=True)
    type: str = Field(max_length=32)
    text: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    signatures: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    state: str = Field(max_length=16)
    event_id: str | None = Field(default=None, max_length=64)
    # who must sign, as the document stood when it was proposed: JSON [{who, parties}]
    # (NULL for proposals made before migration 0008)
    required: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class DocPartyRow(SQLModel, table=True):
    """Who has been party to a document (may read its content and history)."""

    __tablename__ = "doc_party"
    doc_id: str = Field(primary_key=True, max_length=64)
    party_id: str = Field(primary_key=True, max_length=20, index=True)


class NonceRow(SQLModel, table=True):
    """Request nonces (RFC 9421) seen within the signature window, shared by API processes."""

    __tablename__ = "request_nonce"
    key_id: str = Field(primary_key=True, max_length=64)
    nonce: str = Field(primary_key=True, max_length=128)
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))


class CosignatureRow(SQLModel, table=True):
    """Witnesses' cosignatures (c2sp.org/tlog-cosignature) of a checkpoint, by tree size:
    the note signature line each witness returned, verified before it was stored."""

    __tablename__ = "cosignature"
    __table_args__ = (Index("cosignature_by_witness", "witness", "size"),)
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    witness: str = Field(sa_column=Column(Text, primary_key=True))  # its key ID, name+hex
    line: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class MetaRow(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_column=Column(Text, nullable=False))


APPEND_ONLY = ("event", "tree_node", "checkpoint", "cosignature")

__all__ = ["APPEND_ONLY", "SQLModel"]


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, getattr(model, "__table__"))  # noqa: B009 - not typed on the class


# Core tables, for the sequencer's bulk statements (typed for mypy, unlike the model attributes).
EVENT = _table(EventRow)
TREE_NODE = _table(TreeNodeRow)
CHECKPOINT = _table(CheckpointRow)
PARTY = _table(PartyRow)
DOCUMENT = _table(DocumentRow)
CARGO = _table(CargoRow)
PROPOSAL = _table(ProposalRow)
META = _table(MetaRow)
DOC_PARTY = _table(DocPartyRow)
NONCE = _table(NonceRow)
COSIGNATURE = _table(CosignatureRow)
