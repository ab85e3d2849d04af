"""A corridor cast for tests: parties with real keys, and an event builder.

Keys are derived from fixed seeds, so every run signs the same bytes
(Ed25519 is deterministic), and the clock is fixed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from encd.canonical import canonical_bytes, parse_canonical
from encd.events import Event, assemble, envelope_text, make_event, sign_text
from encd.identifiers import check_lei, check_uscc
from encd.keys import SigningKey
from encd.replay import Admitted, Replay

DATA = Path(__file__).parent / "data"
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def uscc(base17: str) -> str:
    """A valid USCC from its first 17 characters (search for the check character)."""
    for ch in USCC_CHARS:
        try:
            return check_uscc(base17 + ch)
        except ValueError:
            continue
    raise AssertionError(f"no check character for {base17}")


def lei(base18: str) -> str:
    for n in range(100):
        try:
            return check_lei(f"{base18}{n:02d}")
        except ValueError:
            continue
    raise AssertionError(f"no check digits for {base18}")


def seeded_key(name: str, label: str) -> SigningKey:
    return SigningKey(name, hashlib.sha256(f"encd test key {label}".encode()).digest())


def corridor_document() -> dict[str, Any]:
    value: dict[str, Any] = json.loads((DATA / "corridor-document.json").read_text())
    return value


@dataclass
class Actor:
    id: str
    name: str
    roles: list[str]
    key: SigningKey
    agent_for: list[str] = field(default_factory=list)


@dataclass
class Cast:
    """The corridor's parties and a clock; builds and appends signed events."""

    replay: Replay = field(default_factory=Replay)
    clock: datetime = T0
    actors: dict[str, Actor] = field(default_factory=dict)
    log: list[bytes] = field(default_factory=list)  # every admitted event, in order

    def tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def actor(self, label: str) -> Actor:
        return self.actors[label]

    def add_actor(
        self, label: str, pid: str, name: str, roles: list[str], agent_for: list[str] | None = None
    ) -> Actor:
        actor = Actor(pid, name, roles, seeded_key(pid, label), agent_for or [])
        self.actors[label] = actor
        return actor

    # --- party events -------------------------------------------------
    def register_event(self, actor: Actor, signer: Actor | None = None) -> bytes:
        signer = signer or self.actors["operator"]
        body: dict[str, Any] = {
            "name": actor.name,
            "roles": actor.roles,
            "keys": [actor.key.public.vkey],
        }
        if actor.agent_for:
            body["agent_for"] = actor.agent_for
        return make_event(
            [signer.key],
            type="register",
            party=actor.id,
            seq=0,
            prev=None,
            time=self.tick(),
            body=body,
        )

    def party_event(
        self, actor: Actor, type: str, body: dict[str, Any], signers: list[SigningKey]
    ) -> bytes:
        party = self.replay.parties[actor.id]
        return make_event(
            signers,
            type=type,
            party=actor.id,
            seq=party.seq + 1,
            prev=party.head,
            time=self.tick(),
            body=body,
        )

    # --- document events ----------------------------------------------
    def doc_event(
        self,
        doc_id: str,
        type: str,
        body: dict[str, Any],
        signers: list[Actor],
        *,
        seq: int | None = None,
        prev: str | None = None,
    ) -> bytes:
        state = self.replay.documents.get(doc_id)
        if seq is None:
            seq = 0 if state is None else state.seq + 1
        if prev is None and state is not None and seq > 0:
            prev = state.head
        return make_event(
            [a.key for a in signers],
            type=type,
            doc=doc_id,
            seq=seq,
            prev=prev,
            time=self.tick(),
            body=body,
        )

    def append(self, raw: bytes) -> Admitted:
        admitted = self.replay.append(raw)
        self.log.append(raw)
        return admitted


def corridor_cast() -> Cast:
    """Operator, carrier, its rail agent, exporter, buyer and two banks, all registered."""
    cast = Cast()
    content = corridor_document()
    carrier_id = content["carrier"]["legal_id"]
    exporter_id = content["consignor"]["legal_id"]
    buyer_id = (
        content["negotiability"]["order_of"]["legal_id"]
        if content["negotiability"]["kind"] == "to_order"
        else content["consignee"]["legal_id"]
    )
    operator = cast.add_actor(
        "operator", uscc("91500000MA6000001"), "Corridor Ledger Operator", ["operator"]
    )
    cast.append(cast.register_event(operator, signer=operator))
    cast.add_actor("carrier", carrier_id, content["carrier"]["name"], ["carrier"])
    cast.add_actor("exporter", exporter_id, content["consignor"]["name"], ["trader"])
    cast.add_actor("buyer", buyer_id, "Overseas Buyer", ["trader"])
    cast.add_actor("bank", uscc("91500000202800000"), "Chongqing Rural Commercial Bank", ["bank"])
    cast.add_actor("bank2", lei("529900T8BM49AURSDO"), "Second Bank", ["bank"])
    cast.add_actor(
        "agent",
        uscc("91450700MA5K00000"),
        "Qinzhou Rail Terminal",
        ["agent"],
        agent_for=[carrier_id],
    )
    cast.add_actor("auditor", uscc("91110000100000000"), "Corridor Auditor", ["auditor"])
    for label in ("carrier", "exporter", "buyer", "bank", "bank2", "agent", "auditor"):
        cast.append(cast.register_event(cast.actors[label]))
    return cast


def resign(raw: bytes, keys: list[SigningKey], **changes: Any) -> bytes:
    """Mutate an event's envelope (top-level or body fields) and sign it again.

    ``body__x=v`` sets body["x"]; other keywords set envelope members.  The
    result is correctly signed, so what fails is the rule, not the signature.
    """
    event = Event.parse(raw)
    envelope = parse_canonical(event.text[:-1])
    envelope = copy.deepcopy(envelope)
    for name, value in changes.items():
        if name.startswith("body__"):
            envelope["body"][name[6:]] = value
        else:
            envelope[name] = value
    text = canonical_bytes(envelope) + b"\n"
    return assemble(text, sign_text(text, keys))


def loosened(line: bytes) -> bytes:
    """``line`` with an unused low bit of its base64's last character set: the same bytes
    to a lenient decoder, not the canonical spelling."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = line.rstrip(b"\n").rstrip(b"=")
    pad = len(line.rstrip(b"\n")) - len(body)
    assert pad, "a line without padding has no unused bits"
    last = alphabet.index(body[-1:]) ^ 1
    changed = body[:-1] + alphabet[last : last + 1] + b"=" * pad + b"\n"
    assert base64.b64decode(changed.split(b" ")[-1]) == base64.b64decode(line.split(b" ")[-1])
    return changed


__all__ = [
    "Cast",
    "corridor_cast",
    "corridor_document",
    "envelope_text",
    "lei",
    "loosened",
    "resign",
    "uscc",
]
