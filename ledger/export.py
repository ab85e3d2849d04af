"""Exports: a document's bundle and the whole ledger, each against one signed checkpoint.

Both take the latest checkpoint first (or the newest a witness cosigned), with the
witnesses' cosignatures kept for it, and use its tree size N throughout,
so appends that land while an export runs do not change what it writes.
The format is docs/formats/bundle.md; ``encd.bundle.verify_bundle`` checks it.

- ``export_document``: the document's events below N, and the events of
  every party its verification depends on (``document_parties``), each with
  its inclusion proof in the tree of size N.
- ``export_ledger``: every entry 0..N-1, read from the store ``CHUNK`` rows at
  a time and written line by line, so a million events never sit in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from encd.bundle import DOCUMENT, LEDGER, BundleEntry, BundleHeader
from encd.checkpoint import Checkpoint, open_checkpoint
from encd.events import Event
from encd.validation import abridged
from ledger.ledger import Ledger, NotFound, StoreError

CHUNK = 10_000
OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export wrote: the checkpoint it is against and how many entry lines."""

    checkpoint: Checkpoint
    entries: int


def export_document(
    ledger: Ledger,
    doc_id: str,
    out: BinaryIO,
    *,
    witnessed: int = 0,
    witnesses: Sequence[str] = (),
) -> Exported:
    """Write the bundle of ``doc_id`` to ``out``; NotFound if the log has no such document
    (``witnessed``: against the newest checkpoint so many witnesses cosigned; see
    ``_latest``)."""
    note, checkpoint = _latest(ledger, witnessed, witnesses)
    size = checkpoint.size
    doc_rows = [row for row in ledger.events_of(doc_id) if row[0] < size]
    if not doc_rows:
        raise NotFound(f"no document {abridged(doc_id)} in the log at tree size {size}")
    parties = [(row, Event.parse(row[2])) for row in ledger.party_events(size)]
    needed = document_parties(
        [Event.parse(raw) for _, _, raw in doc_rows], [event for _, event in parties]
    )
    rows = sorted([*doc_rows, *(row for row, event in parties if event.subject in needed)])
    out.write(_header(ledger, DOCUMENT, doc_id, note, checkpoint).to_line())
    for index, sequenced_at, raw in rows:
        proof = tuple(ledger.inclusion(index, size))
        out.write(BundleEntry(index, sequenced_at, raw, proof).to_line())
    return Exported(checkpoint, len(rows))


def export_ledger(
    ledger: Ledger,
    out: BinaryIO,
    *,
    chunk: int = CHUNK,
    witnessed: int = 0,
    witnesses: Sequence[str] = (),
) -> Exported:
    """Write every entry of the log up to the latest checkpoint to ``out``, streaming
    (``witnessed``: up to the newest checkpoint so many witnesses cosigned; see
    ``_latest``)."""
    note, checkpoint = _latest(ledger, witnessed, witnesses)
    size = checkpoint.size
    out.write(_header(ledger, LEDGER, None, note, checkpoint).to_line())
    start = 0
    while start < size:
        end = min(start + chunk, size)
        rows = ledger.entries(start, end)
        if [row[0] for row in rows[:1]] != [start] or len(rows) != end - start:
            raise StoreError(f"log entries {start}..{end - 1} are not all in the store")
        out.write(b"".join(BundleEntry(i, at, raw, None).to_line() for i, _, at, raw in rows))
        start = end
    return Exported(checkpoint, size)


def document_parties(doc_events: Sequence[Event], party_events: Sequence[Event]) -> set[str]:
    """The parties whose chains a document's bundle must hold so that replaying it succeeds.

    ``party_events`` are all party events of the log below the bundle's tree
    size, in log order.  The result is the smallest set S of registered
    parties such that:

    - S holds every party that signed one of ``doc_events`` or that one of
      them names (``holder``, ``to``, ``pledgee``, and every ``legal_id`` in
      issued or amended content): the title rules look each of them up;
    - for every party in S, S holds every party that signed one of its
      events or that its ``agent_for`` names (an agent's carriers must be
      registered);
    - when a party in S gives up the operator role by ``set_roles``, S holds
      the parties that were operators just before it (the rule that the last
      operator keeps its role counts them).

    The bundle then holds the whole chain (up to the tree size) of every
    party in S: a revocation must not go missing.  Following signers leads
    back to the operator who registered itself at index 0.
    """
    depends: dict[str, set[str]] = {}
    roles: dict[str, set[str]] = {}
    for event in party_events:
        needs = depends.setdefault(event.subject, set())
        needs.update(sig.name for sig in event.signatures)
        needs.update(_strings(event.body.get("agent_for")))
        if event.type in ("register", "set_roles"):
            new_roles = set(_strings(event.body.get("roles")))
            if OPERATOR in roles.get(event.subject, set()) and OPERATOR not in new_roles:
                needs.update(p for p, held in roles.items() if OPERATOR in held)
            roles[event.subject] = new_roles
    todo: list[str] = []
    for event in doc_events:
        todo.extend(sig.name for sig in event.signatures)
        todo.extend(_strings([event.body.get(key) for key in ("holder", "to", "pledgee")]))
        todo.extend(_legal_ids(event.body.get("content")))
    needed: set[str] = set()
    while todo:
        party = todo.pop()
        if party in needed or party not in depends:  # not registered below the tree size
            continue
        needed.add(party)
        todo.extend(depends[party])
    return needed


def _latest(ledger: Ledger, witnessed: int, witnesses: Sequence[str]) -> tuple[bytes, Checkpoint]:
    """The checkpoint an export is against, with the cosignatures kept for it: the latest,
    or (``witnessed`` N > 0) the newest that N witnesses cosigned (of ``witnesses``, key
    IDs, if given; NotFound if none is yet), which may be a few appends older than the
    latest."""
    note = ledger.witnessed_checkpoint(witnessed, witnesses) if witnessed else ledger.checkpoint()
    checkpoint = open_checkpoint(note, ledger.log_key.public)
    return ledger.cosigned(note, checkpoint.size) if not witnessed else note, checkpoint


def _header(
    ledger: Ledger, kind: str, doc_id: str | None, note: bytes, checkpoint: Checkpoint
) -> BundleHeader:
    return BundleHeader(
        kind, checkpoint.origin, ledger.log_key.public, doc_id, checkpoint.size, note
    )


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


def _legal_ids(value: Any) -> Iterable[str]:
    """Every ``legal_id`` string anywhere in a document's content."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "legal_id" and isinstance(item, str):
                yield item
            else:
                yield from _legal_ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from _legal_ids(item)


__all__ = ["CHUNK", "Exported", "document_parties", "export_document", "export_ledger"]
