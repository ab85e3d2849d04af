"""Signed events for the benchmarks: the tests' corridor parties (fixed keys) and documents.

A *world* is what ``encd serve`` would find: a data directory with the
service's log and operator keys (``api.setup.load_or_init``), an SQLite
ledger holding the operator's own registration and the registrations of the
corridor's parties (``tests.kit.corridor_cast``: carrier, exporter, buyer,
two banks, the carrier's agent, an auditor), signed by the service's
operator.  The same world serves the in-process benchmarks and the HTTP
ones, so the title and proof figures are taken on the ledger the append
figures built.

Documents are the corridor document with their own id and cargo (container
numbers, leg references, customs entry), so the cargo-singularity rule
sees no clash.  A lifecycle is issue, pledge, release, transfer,
milestones, surrender, deliver; ``Documents.lifecycle`` emits a group of
documents *seq-major* (every document's issue, then every pledge, ...), as
live traffic interleaves documents.  Every event is signed here, before
any timed window.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from api.setup import Service, ensure_genesis, load_or_init
from encd.errors import Error
from encd.events import event_id, make_event
from encd.identifiers import container_check_digit
from encd.keys import SigningKey
from ledger.ledger import Ledger, Receipt
from tests.kit import T0, Actor, Cast, corridor_cast, corridor_document

ORIGIN = "bench.encd.local/log"
PARTIES = ("carrier", "exporter", "buyer", "bank", "bank2", "agent", "auditor")
MIN_PER_DOCUMENT = 6  # issue, pledge, release, transfer, surrender, deliver


@dataclass
class World:
    data_dir: Path
    url: str
    service: Service
    cast: Cast

    @property
    def log_key(self) -> SigningKey:
        return self.service.log_key

    def open(self) -> Ledger:
        return Ledger(self.url, self.service.log_key)

    def actor(self, label: str) -> Actor:
        return self.cast.actor(label)


def new_world(data_dir: Path) -> World:
    """Keys, service.json and a ledger with the operator and the corridor's parties."""
    service = load_or_init(data_dir, ORIGIN)
    url = f"sqlite:///{data_dir / 'ledger.db'}"
    cast = corridor_cast()
    with Ledger(url, service.log_key) as ledger:
        ensure_genesis(ledger, service, T0)
        append_all(ledger, [registration(service, cast.actor(label)) for label in PARTIES])
    return World(data_dir, url, service, cast)


def registration(service: Service, actor: Actor) -> bytes:
    assert service.operator_key is not None  # (a data directory the benchmark made)
    body: dict[str, Any] = {
        "name": actor.name,
        "roles": actor.roles,
        "keys": [actor.key.public.vkey],
    }
    if actor.agent_for:
        body["agent_for"] = actor.agent_for
    return make_event(
        [service.operator_key],
        type="register",
        party=actor.id,
        seq=0,
        prev=None,
        time=T0,
        body=body,
    )


def append_all(ledger: Ledger, raws: Sequence[bytes]) -> list[Receipt]:
    """``append_many``, raising the first error (a benchmark appends only valid events)."""
    receipts: list[Receipt] = []
    for result in ledger.append_many(raws):
        if isinstance(result, Error):
            raise result
        receipts.append(result)
    return receipts


def content(n: int) -> dict[str, Any]:
    """The corridor document as document ``n``: its own id and cargo."""
    value = copy.deepcopy(corridor_document())
    value["id"] = doc_id(n)
    for i, container in enumerate(value["containers"]):
        serial = f"CSQU{2 * n + i:06d}"
        container["number"] = serial + str(container_check_digit(serial))
    value["legs"][0]["reference"] = f"CQLQ{n:010d}"
    value["legs"][1]["reference"] = f"QZHSIN{n:08d}"
    value["underlying"] = [
        {"kind": "rail_waybill", "number": f"CQLQ{n:010d}"},
        {"kind": "sea_bl", "number": f"QZHSIN{n:08d}"},
        {"kind": "customs_entry", "number": f"8000{n:014d}"},
    ]
    return value


def doc_id(n: int) -> str:
    return f"BENCH-{n:07d}"


def pledge_body(cast: Cast) -> dict[str, Any]:
    return {
        "pledgee": cast.actor("bank").id,
        "loan_ref": "CQRCB-2026-0001",
        "amount": "100000.00",
        "currency": "USD",
        "registry_ref": "PBOC-CRCS-2026-000001",
        "maturity": "2026-08-01",
    }


MILESTONE = {
    "kind": "other",
    "location": {"locode": "CNQZH", "name": "Qinzhou Port"},
    "at": "2026-05-03T09:00:00Z",
}


@dataclass
class Head:
    """Where a document's chain stands: its next seq, its head event and its holder."""

    doc: str
    seq: int
    head: str | None
    holder: str


class Documents:
    """New documents with unique numbers, and the events that move them along."""

    def __init__(self, cast: Cast, first: int = 0) -> None:
        self.cast = cast
        self.next = first

    def _event(self, head: Head, kind: str, signers: Iterable[Actor], body: Any) -> bytes:
        raw = make_event(
            [s.key for s in signers],
            type=kind,
            doc=head.doc,
            seq=head.seq,
            prev=head.head,
            time=self.cast.tick(),
            body=body,
        )
        head.seq += 1
        head.head = event_id(raw)
        return raw

    def lifecycle(self, documents: int, per_document: int) -> list[bytes]:
        """``documents`` new documents of ``per_document`` events each, seq-major."""
        if per_document < MIN_PER_DOCUMENT:
            raise ValueError(f"a lifecycle has at least {MIN_PER_DOCUMENT} events")
        a = {label: self.cast.actor(label) for label in PARTIES}
        plan: list[tuple[str, list[Actor], Any]] = [
            ("issue", [a["carrier"]], None),
            ("pledge", [a["exporter"], a["bank"]], pledge_body(self.cast)),
            ("release", [a["bank"]], {}),
            ("transfer", [a["exporter"]], {"to": a["buyer"].id}),
        ]
        plan += [("milestone", [a["agent"]], MILESTONE)] * (per_document - MIN_PER_DOCUMENT)
        plan += [("surrender", [a["buyer"]], {}), ("deliver", [a["carrier"]], {})]
        numbers = range(self.next, self.next + documents)
        self.next += documents
        heads = [Head(doc_id(n), 0, None, a["exporter"].id) for n in numbers]
        out: list[bytes] = []
        for kind, signers, body in plan:
            for n, head in zip(numbers, heads, strict=True):
                if kind == "issue":
                    body_n = {"content": content(n), "holder": a["exporter"].id}
                else:
                    body_n = body
                out.append(self._event(head, kind, signers, body_n))
        return out

    def tradeable(self, documents: int) -> tuple[list[bytes], list[Head]]:
        """Documents ready to be traded: issued to the exporter, pledged to the bank and
        released (so the bank has been party to each and its event stream shows them)."""
        a = {label: self.cast.actor(label) for label in PARTIES}
        numbers = range(self.next, self.next + documents)
        self.next += documents
        heads = [Head(doc_id(n), 0, None, a["exporter"].id) for n in numbers]
        out: list[bytes] = []
        for n, head in zip(numbers, heads, strict=True):
            body = {"content": content(n), "holder": a["exporter"].id}
            out.append(self._event(head, "issue", [a["carrier"]], body))
        for head in heads:
            out.append(
                self._event(head, "pledge", [a["exporter"], a["bank"]], pledge_body(self.cast))
            )
        for head in heads:
            out.append(self._event(head, "release", [a["bank"]], {}))
        return out, heads

    def transfer(self, head: Head) -> tuple[bytes, SigningKey]:
        """The holder endorses the document over: exporter to buyer, buyer to exporter.
        Returns the event and the key that signed it (the one that must submit it)."""
        exporter, buyer = self.cast.actor("exporter"), self.cast.actor("buyer")
        holder, to = (exporter, buyer) if head.holder == exporter.id else (buyer, exporter)
        raw = self._event(head, "transfer", [holder], {"to": to.id})
        head.holder = to.id
        return raw, holder.key


def signature_pairs(raws: Sequence[bytes]) -> tuple[list[tuple[bytes, bytes, bytes]], int]:
    """(public key, message, signature) for every signature of ``raws``, and how many events.

    The message is the event's envelope text, exactly what the ledger verifies."""
    from encd.events import Event

    keys: dict[bytes, bytes] = {}
    cast = corridor_cast()
    for actor in cast.actors.values():
        keys[actor.key.public.hash] = actor.key.public.raw
    pairs: list[tuple[bytes, bytes, bytes]] = []
    for raw in raws:
        event = Event.parse(raw)
        for sig in event.signatures:
            pairs.append((keys[sig.key_hash], event.text, sig.signature))
    return pairs, len(raws)


def now_clock() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
