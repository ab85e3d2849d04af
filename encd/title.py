"""The title state machine: the rules as data and one pure function applying them.

A document's title state is derived only by replaying its events in order.
``RULES`` below is the table of design.md §4; ``apply(state, event, ...)``
checks an event against it and returns the next state, or raises an error
that names the rule broken, what it needed and what it found.

Checks run in this order, so each failure has one reason:

1. chain: the event's ``seq`` and ``prev`` continue the document's chain
   (a stale event raises ``Conflict`` naming the current head);
2. body: the event's body has the shape its type requires (``InvalidInput``);
3. status: the document is in a status the rule allows;
4. pledge: the document is (or is not) pledged as the rule requires;
5. signers: exactly the parties the rule requires signed, no others;
6. the rule's own conditions (holder roles, cargo singularity, amounts, ...).

While a document is pledged the pledgee has control: the holder keeps title
but cannot transfer, surrender, amend or switch it without the pledgee.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from enum import StrEnum
from operator import attrgetter
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, field_validator

from encd.document import Document, Place, cargo_keys, declared_value, plain_lines, plain_text
from encd.errors import Conflict, InvalidInput, RuleViolation
from encd.events import Event, content_digest, parse_time
from encd.identifiers import check_currency
from encd.parties import HOLDER_ROLES, Party, Role
from encd.validation import parse_model, show


class Status(StrEnum):
    ACTIVE = "active"
    SURRENDERED = "surrendered"
    DELIVERED = "delivered"
    SWITCHED_TO_PAPER = "switched_to_paper"
    VOID = "void"


LIVE = frozenset({Status.ACTIVE, Status.SURRENDERED})


@dataclass(frozen=True, slots=True)
class Pledge:
    pledgee: str
    loan_ref: str
    amount: str
    currency: str
    registry_ref: str
    maturity: str
    seq: int


@dataclass(frozen=True, slots=True)
class TitleChange:
    """One entry of the endorsement chain."""

    seq: int
    kind: str  # "issue", "transfer", "enforcement"
    from_party: str | None
    to_party: str
    blank: bool = False
    rejected: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "from": self.from_party,
            "to": self.to_party,
            "blank": self.blank,
            "rejected": self.rejected,
        }


@dataclass(frozen=True, slots=True)
class Milestone:
    seq: int
    kind: str
    locode: str
    name: str
    at: str
    by: str


@dataclass(frozen=True, slots=True)
class Instruction:
    event_id: str
    seq: int
    by: str
    text: str
    answer: bool | None = None


@dataclass(frozen=True, slots=True)
class DocumentState:
    id: str
    status: Status
    holder: str
    carrier: str
    first_holder: str
    pledge: Pledge | None
    content: Document
    content_version: int
    content_digest: str
    endorsements: tuple[TitleChange, ...]
    location: Milestone | None
    instructions: tuple[Instruction, ...]
    ever_transferred_or_pledged: bool
    seq: int
    head: str
    last_type: str
    paper_document_number: str | None = None

    @property
    def controller(self) -> str:
        """Who has control: the pledgee while pledged, otherwise the holder."""
        return self.pledge.pledgee if self.pledge else self.holder

    @property
    def live(self) -> bool:
        return self.status in LIVE

    def to_json(self, *, endorsements: bool = True) -> dict[str, Any]:
        """The state as plain JSON; ``endorsements=False`` leaves the chain out."""
        value: dict[str, Any] = {
            "id": self.id,
            "status": str(self.status),
            "holder": self.holder,
            "controller": self.controller,
            "carrier": self.carrier,
            "pledge": None
            if self.pledge is None
            else {
                "pledgee": self.pledge.pledgee,
                "loan_ref": self.pledge.loan_ref,
                "amount": self.pledge.amount,
                "currency": self.pledge.currency,
                "registry_ref": self.pledge.registry_ref,
                "maturity": self.pledge.maturity,
                "since_seq": self.pledge.seq,
            },
            "content_version": self.content_version,
            "content_digest": self.content_digest,
            "location": None
            if self.location is None
            else {
                "seq": self.location.seq,
                "kind": self.location.kind,
                "locode": self.location.locode,
                "name": self.location.name,
                "at": self.location.at,
                "by": self.location.by,
            },
            "open_instructions": [i.event_id for i in self.instructions if i.answer is None],
            "paper_document_number": self.paper_document_number,
            "seq": self.seq,
            "head": self.head,
        }
        if endorsements:
            value["endorsements"] = [e.to_json() for e in self.endorsements]
        return value


_STATE_FIELDS = tuple(f.name for f in fields(DocumentState))
_STATE_VALUES = attrgetter(*_STATE_FIELDS)
_STATE_INDEX = {name: i for i, name in enumerate(_STATE_FIELDS)}


def _evolve(state: DocumentState, changes: Mapping[str, Any]) -> DocumentState:
    """``dataclasses.replace(state, **changes)`` without its introspection on every call."""
    values = list(_STATE_VALUES(state))
    for name, value in changes.items():
        values[_STATE_INDEX[name]] = value
    return DocumentState(*values)


def dump_state(
    state: DocumentState, *, content: bool = True, endorsements: bool = True
) -> dict[str, Any]:
    """Everything in ``state`` as plain JSON, for a store to keep; ``load_state`` reverses it.

    ``content=False`` and ``endorsements=False`` leave the document's content and its
    endorsement chain out, for a store that serialises them itself (the content once per
    version, the chain one new entry at a time)."""
    value = state.to_json(endorsements=endorsements)
    if content:
        value["content"] = state.content.to_json()
    value.update(
        first_holder=state.first_holder,
        ever_transferred_or_pledged=state.ever_transferred_or_pledged,
        last_type=state.last_type,
        instructions=[
            {"event_id": i.event_id, "seq": i.seq, "by": i.by, "text": i.text, "answer": i.answer}
            for i in state.instructions
        ],
    )
    return value


def load_state(value: Mapping[str, Any]) -> DocumentState:
    pledge = value["pledge"]
    location = value["location"]
    return DocumentState(
        id=value["id"],
        status=Status(value["status"]),
        holder=value["holder"],
        carrier=value["carrier"],
        first_holder=value["first_holder"],
        pledge=None
        if pledge is None
        else Pledge(
            pledge["pledgee"],
            pledge["loan_ref"],
            pledge["amount"],
            pledge["currency"],
            pledge["registry_ref"],
            pledge["maturity"],
            pledge["since_seq"],
        ),
        content=Document.from_json(value["content"]),
        content_version=value["content_version"],
        content_digest=value["content_digest"],
        endorsements=tuple(
            TitleChange(e["seq"], e["kind"], e["from"], e["to"], e["blank"], e["rejected"])
            for e in value["endorsements"]
        ),
        location=None
        if location is None
        else Milestone(
            location["seq"],
            location["kind"],
            location["locode"],
            location["name"],
            location["at"],
            location["by"],
        ),
        instructions=tuple(
            Instruction(i["event_id"], i["seq"], i["by"], i["text"], i["answer"])
            for i in value["instructions"]
        ),
        ever_transferred_or_pledged=value["ever_transferred_or_pledged"],
        seq=value["seq"],
        head=value["head"],
        last_type=value["last_type"],
        paper_document_number=value["paper_document_number"],
    )


# ---------------------------------------------------------------------------
# Event bodies

_Strict = ConfigDict(frozen=True, extra="forbid", strict=True)
Text = Annotated[str, StringConstraints(min_length=1, max_length=2000), AfterValidator(plain_lines)]
Ref = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(plain_text)]
PartyId = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{18}([A-Z0-9]{2})?$")]
EventId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
AMOUNT = re.compile(r"(0|[1-9][0-9]{0,15})(\.[0-9]{1,4})?")


def _amount(value: str) -> str:
    if not AMOUNT.fullmatch(value):
        raise ValueError(
            "expected a decimal amount: up to 16 digits, no leading zero, then at most 4 "
            f"after a point; no sign, exponent or separator (e.g. 120000.00), got {show(value)}"
        )
    return value


Amount = Annotated[str, AfterValidator(_amount)]
Day = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]


class IssueBody(BaseModel):
    model_config = _Strict
    content: dict[str, Any]
    holder: PartyId


class TransferBody(BaseModel):
    model_config = _Strict
    to: PartyId
    blank: bool = False


class ReasonBody(BaseModel):
    model_config = _Strict
    reason: Text | None = None


class PledgeBody(BaseModel):
    model_config = _Strict
    pledgee: PartyId
    loan_ref: Ref
    amount: Amount
    currency: str
    registry_ref: Ref
    maturity: Day

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return check_currency(value)

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: str) -> str:
        if Decimal(value) <= 0:
            raise ValueError(f"amount must be greater than 0, got {value!r}")
        return value

    @field_validator("maturity")
    @classmethod
    def _date(cls, value: str) -> str:
        from datetime import date

        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected a real date YYYY-MM-DD, got {value!r}") from None
        return value


class InstructBody(BaseModel):
    model_config = _Strict
    instruction: Text


class AcknowledgeBody(BaseModel):
    model_config = _Strict
    instruction: EventId
    accepted: bool
    note: Text | None = None


MilestoneKind = Literal[
    "gate_in",
    "departed",
    "arrived",
    "transshipped",
    "loaded",
    "discharged",
    "customs_cleared",
    "gate_out",
    "other",
]


class MilestoneBody(BaseModel):
    model_config = _Strict
    kind: MilestoneKind
    location: dict[str, Any]
    at: str
    note: Text | None = None


class AmendBody(BaseModel):
    model_config = _Strict
    content: dict[str, Any]
    supersedes: EventId


class SwitchBody(BaseModel):
    model_config = _Strict
    paper_document_number: Ref


# ---------------------------------------------------------------------------
# The rules as data


@dataclass(frozen=True, slots=True)
class Rule:
    """Who must sign an event type, when it is allowed, and its body's shape.

    ``signers`` names parties by their part in the document: carrier, holder,
    pledgee (the current one), new_pledgee (named in a pledge's body),
    endorsee (of the transfer just made), first_holder, carrier_or_agent,
    and pledgee_if_pledged.
    """

    signers: tuple[str, ...]
    statuses: frozenset[Status]
    pledged: bool | None
    body: type[BaseModel]


_ACTIVE = frozenset({Status.ACTIVE})

RULES: Mapping[str, Rule] = {
    "issue": Rule(("carrier",), frozenset(), None, IssueBody),
    "transfer": Rule(("holder",), _ACTIVE, False, TransferBody),
    "reject_transfer": Rule(("endorsee",), _ACTIVE, False, ReasonBody),
    "pledge": Rule(("holder", "new_pledgee"), _ACTIVE, False, PledgeBody),
    "release": Rule(("pledgee",), LIVE, True, ReasonBody),
    "enforce": Rule(("pledgee",), _ACTIVE, True, ReasonBody),
    "instruct": Rule(("holder",), _ACTIVE, None, InstructBody),
    "acknowledge": Rule(("carrier",), _ACTIVE, None, AcknowledgeBody),
    "milestone": Rule(("carrier_or_agent",), LIVE, None, MilestoneBody),
    "amend": Rule(("carrier", "holder", "pledgee_if_pledged"), _ACTIVE, None, AmendBody),
    "surrender": Rule(("holder", "pledgee_if_pledged"), _ACTIVE, None, ReasonBody),
    "deliver": Rule(("carrier",), frozenset({Status.SURRENDERED}), None, ReasonBody),
    "refuse": Rule(("carrier",), frozenset({Status.SURRENDERED}), None, ReasonBody),
    "switch_to_paper": Rule(("carrier", "holder", "pledgee_if_pledged"), _ACTIVE, None, SwitchBody),
    "void": Rule(("carrier", "first_holder"), _ACTIVE, False, ReasonBody),
}


def _slot(
    name: str,
    state: DocumentState,
    body: BaseModel,
    parties: Mapping[str, Party],
    among: frozenset[str] | None = None,
) -> tuple[str, frozenset[str]] | None:
    """The label and acceptable signers of one signer slot (None: slot not needed).

    With ``among`` (the event's signers), the carrier's agents are looked for among
    them only, not in the whole registry: ``_check_signers`` compares the slots with
    those signers, so the answer is the same."""
    if name == "carrier":
        return f"the carrier {state.carrier}", frozenset({state.carrier})
    if name == "holder":
        return f"the holder {state.holder}", frozenset({state.holder})
    if name == "first_holder":
        return f"the first holder {state.first_holder}", frozenset({state.first_holder})
    if name == "pledgee" or (name == "pledgee_if_pledged" and state.pledge):
        if state.pledge is None:  # release or enforce of a document not pledged
            raise RuleViolation(
                "pledgee", f"{state.id} is not pledged: there is no pledgee to sign"
            )
        return f"the pledgee {state.pledge.pledgee}", frozenset({state.pledge.pledgee})
    if name == "pledgee_if_pledged":
        return None
    if name == "new_pledgee":
        assert isinstance(body, PledgeBody)
        return f"the pledgee {body.pledgee}", frozenset({body.pledgee})
    if name == "endorsee":
        return f"the endorsee {state.holder}", frozenset({state.holder})
    if name == "carrier_or_agent":
        candidates = (
            parties.values()
            if among is None
            else [p for pid in among if (p := parties.get(pid)) is not None]
        )
        agents = {
            p.id for p in candidates if Role.AGENT in p.roles and state.carrier in p.agent_for
        }
        return f"the carrier {state.carrier} or its agent", frozenset({state.carrier, *agents})
    raise AssertionError(f"unknown signer slot {name}")  # pragma: no cover


def _check_signers(
    kind: str, slots: list[tuple[str, frozenset[str]]], signers: frozenset[str]
) -> None:
    if len(slots) == 1 and signers and signers <= slots[0][1]:
        return  # the one slot's signers, and no one else: the usual case
    missing = [label for label, allowed in slots if not signers & allowed]
    allowed_all = frozenset().union(*(allowed for _, allowed in slots))
    extra = sorted(signers - allowed_all)
    if missing or extra:
        needed = " and ".join(label for label, _ in slots)
        got = ", ".join(sorted(signers)) or "nobody"
        raise RuleViolation(kind, f"{kind} must be signed by {needed}; signed by {got}")


def check_chain(state: DocumentState | None, event: Event) -> None:
    """Refuse (Conflict, with the head now) an event not signed against the document's head."""
    seq, head = (0, None) if state is None else (state.seq + 1, state.head)
    if event.seq == seq and event.prev == head:
        return
    if state is None:
        message = (
            f"document {event.subject} does not exist; its first event must be an issue at seq 0"
        )
    elif event.seq == 0 and event.type == "issue":
        message = f"document {event.subject} already exists (head seq {state.seq})"
    else:
        message = (
            f"document {event.subject}: chain broken: expected seq {seq} after {head}, "
            f"got seq {event.seq} after {event.prev or 'nothing'}"
        )
    raise Conflict(message, current_seq=seq - 1, current_head=head)


def _party(
    parties: Mapping[str, Party], pid: str, field: str, roles: frozenset[Role], need: str
) -> Party:
    party = parties.get(pid)
    if party is None:
        raise RuleViolation("party", f"{field}: {pid} is not a registered party")
    if not party.roles & roles:
        have = ", ".join(sorted(party.roles))
        raise RuleViolation("party", f"{field}: {pid} must be {need}; its roles are {have}")
    return party


def _claim(doc_id: str, keys: frozenset[str], cargo: Mapping[str, str]) -> None:
    """Cargo singularity: no key may belong to another live document.

    A ``cargo`` mapping with an ``owners(keys)`` method (a store's index) is asked for
    all the keys at once."""
    ordered = sorted(keys)
    bulk = getattr(cargo, "owners", None)
    owners: Mapping[str, str] = bulk(ordered) if bulk is not None else cargo
    for key in ordered:
        owner = owners.get(key)
        if owner is not None and owner != doc_id:
            kind, _, number = key.partition(":")
            how = "" if kind == "container" else " (numbers are compared without '-' and '/')"
            raise RuleViolation(
                "singularity",
                f"{kind.replace('_', ' ')} {number} is already covered by live document "
                f"{owner}{how}",
            )


_PLACES: dict[tuple[tuple[str, Any], ...], Place] = {}
_PLACES_KEPT = 4096


def _place(location: dict[str, Any]) -> Place:
    """``parse_model(Place, location, "body.location")``, remembered: a Place is frozen and
    its validation depends on nothing but the value, and carriers report the same few
    places over and over.  Only valid places are kept, under their exact members."""
    try:
        key = tuple(location.items())
        place = _PLACES.get(key)
    except TypeError:  # a member that cannot be hashed (a list, an object): not a place
        return parse_model(Place, location, "body.location")
    if place is None:
        place = parse_model(Place, location, "body.location")
        if len(_PLACES) >= _PLACES_KEPT:
            _PLACES.clear()
        _PLACES[key] = place
    return place


def _content(value: dict[str, Any], doc_id: str) -> Document:
    content = Document.from_json(value, field="body.content")
    if content.id != doc_id:
        raise InvalidInput(
            "body.content.id", f"must be the event's document {doc_id}, got {content.id}"
        )
    return content


def _issue(
    event: Event,
    body: IssueBody,
    signers: frozenset[str],
    parties: Mapping[str, Party],
    cargo: Mapping[str, str],
) -> DocumentState:
    content = _content(body.content, event.subject)
    carrier_id = content.carrier.legal_id
    if carrier_id is None:
        raise InvalidInput("body.content.carrier.legal_id", "required field is missing")
    _party(parties, carrier_id, "carrier", frozenset({Role.CARRIER}), "a carrier")
    _check_signers("issue", [(f"the carrier {carrier_id}", frozenset({carrier_id}))], signers)
    _party(parties, body.holder, "body.holder", HOLDER_ROLES, "a trader, bank or carrier")
    entitled = {content.consignor.legal_id}
    if content.negotiability.kind == "to_order":
        entitled.add(content.negotiability.order_of.legal_id)
    entitled.discard(None)
    if body.holder not in entitled:
        raise RuleViolation(
            "issue",
            f"the first holder must be the consignor or the named order party "
            f"({', '.join(sorted(str(e) for e in entitled)) or 'none has a legal id'}), got {body.holder}",
        )
    _claim(event.subject, cargo_keys(content), cargo)
    return DocumentState(
        id=event.subject,
        status=Status.ACTIVE,
        holder=body.holder,
        carrier=carrier_id,
        first_holder=body.holder,
        pledge=None,
        content=content,
        content_version=1,
        content_digest=content_digest(body.content),
        endorsements=(TitleChange(event.seq, "issue", None, body.holder),),
        location=None,
        instructions=(),
        ever_transferred_or_pledged=False,
        seq=event.seq,
        head=event.id,
        last_type=event.type,
    )


def apply(
    state: DocumentState | None,
    event: Event,
    signers: frozenset[str],
    parties: Mapping[str, Party],
    cargo: Mapping[str, str],
) -> DocumentState:
    """The document's title state after ``event``.

    ``signers`` are the parties whose signatures on the event verified under
    keys active at this point of the log (encd.parties.verify_signers);
    ``parties`` is the registry at this point; ``cargo`` maps each cargo key
    of every live document to that document's id.
    """
    if event.is_party_event:
        raise InvalidInput("event.party", "a party event has no effect on a document's title")
    # (1) chain
    check_chain(state, event)
    rule = RULES[event.type]
    # (2) body
    body = parse_model(rule.body, event.body, "body")
    if state is None:
        if event.type != "issue":  # pragma: no cover - check_chain refuses it first
            raise RuleViolation(event.type, "a document begins with an issue event")
        assert isinstance(body, IssueBody)
        return _issue(event, body, signers, parties, cargo)
    kind = event.type
    # (3) status
    if state.status not in rule.statuses:
        allowed = " or ".join(sorted(rule.statuses)) or "none"
        raise RuleViolation(
            kind, f"{kind} needs a document that is {allowed}; {state.id} is {state.status}"
        )
    # (4) pledge
    if rule.pledged is True and state.pledge is None:
        raise RuleViolation(kind, f"{kind} needs a pledged document; {state.id} is not pledged")
    if rule.pledged is False and state.pledge is not None:
        raise RuleViolation(
            kind,
            f"{kind} needs a document that is not pledged; {state.id} is pledged to {state.pledge.pledgee}",
        )
    # (5) signers
    slots = [
        s for name in rule.signers if (s := _slot(name, state, body, parties, signers)) is not None
    ]
    if kind == "reject_transfer" and state.last_type != "transfer":
        raise RuleViolation(
            kind,
            f"reject_transfer must come right after a transfer; the last event was {state.last_type}",
        )
    _check_signers(kind, slots, signers)
    # (6) the rule's own conditions and effect
    changes = _EFFECTS[kind](state, event, body, parties, cargo)
    changes.update(seq=event.seq, head=event.id, last_type=kind)
    return _evolve(state, changes)


def required_signers(
    state: DocumentState | None, event: Event, parties: Mapping[str, Party]
) -> list[tuple[str, frozenset[str]]]:
    """Who must sign ``event`` now: (description, acceptable party ids) per required slot.

    Used to gather multi-signature proposals; ``apply`` remains the judge.
    """
    rule = RULES[event.type]
    body = parse_model(rule.body, event.body, "body")
    if state is None:
        if not isinstance(body, IssueBody):
            raise RuleViolation(event.type, f"document {event.subject} does not exist")
        carrier = _content(body.content, event.subject).carrier.legal_id or ""
        return [(f"the carrier {carrier}", frozenset({carrier}))]
    return [s for name in rule.signers if (s := _slot(name, state, body, parties)) is not None]


Changes = dict[str, Any]
"""What an event changes in a document's state: field name -> new value (see ``_evolve``)."""


def _transfer(s: DocumentState, e: Event, b: Any, parties: Mapping[str, Party], c: Any) -> Changes:
    assert isinstance(b, TransferBody)
    if b.to == s.holder:
        raise RuleViolation("transfer", f"{b.to} already holds {s.id}")
    _party(parties, b.to, "body.to", HOLDER_ROLES, "a trader, bank or carrier")
    change = TitleChange(e.seq, "transfer", s.holder, b.to, blank=b.blank)
    return {
        "holder": b.to,
        "endorsements": (*s.endorsements, change),
        "ever_transferred_or_pledged": True,
    }


def _reject(s: DocumentState, e: Event, b: Any, p: Any, c: Any) -> Changes:
    last = s.endorsements[-1]
    assert last.from_party is not None
    undone = replace(last, rejected=True)
    return {"holder": last.from_party, "endorsements": (*s.endorsements[:-1], undone)}


def _pledge(s: DocumentState, e: Event, b: Any, parties: Mapping[str, Party], c: Any) -> Changes:
    assert isinstance(b, PledgeBody)
    _party(parties, b.pledgee, "body.pledgee", frozenset({Role.BANK}), "a bank")
    if b.pledgee == s.holder:
        raise RuleViolation("pledge", f"{b.pledgee} holds {s.id} and cannot take it in pledge")
    declared = declared_value(s.content)
    if declared is not None:
        if b.currency != declared.currency:
            raise RuleViolation(
                "pledge",
                f"pledge currency {b.currency} differs from the declared value's {declared.currency}",
            )
        if Decimal(b.amount) > Decimal(declared.amount):
            raise RuleViolation(
                "pledge",
                f"pledge amount {b.amount} {b.currency} exceeds the declared value "
                f"{declared.amount} {declared.currency}",
            )
    pledge = Pledge(b.pledgee, b.loan_ref, b.amount, b.currency, b.registry_ref, b.maturity, e.seq)
    return {"pledge": pledge, "ever_transferred_or_pledged": True}


def _release(s: DocumentState, e: Event, b: Any, p: Any, c: Any) -> Changes:
    return {"pledge": None}


def _enforce(s: DocumentState, e: Event, b: Any, p: Any, c: Any) -> Changes:
    assert s.pledge is not None
    change = TitleChange(e.seq, "enforcement", s.holder, s.pledge.pledgee)
    return {
        "holder": s.pledge.pledgee,
        "pledge": None,
        "endorsements": (*s.endorsements, change),
    }


def _instruct(s: DocumentState, e: Event, b: Any, p: Any, c: Any) -> Changes:
    assert isinstance(b, InstructBody)
    return {"instructions": (*s.instructions, Instruction(e.id, e.seq, s.holder, b.instruction))}


def _acknowledge(s: DocumentState, e: Event, b: Any, p: Any, c: Any) -> Changes:
    assert isinstance(b, AcknowledgeBody)
    for i, item in enumerate(s.instructions):
        if item.event_id == b.instruction:
            if item.answer is not None:
                raise RuleViolation(
                    "acknowledge", f"instruction {b.instruction} was already answered"
                )
            answered = replace(item, answer=b.accepted)
            return {"instructions": (*s.instructions[:i], answered, *s.instructions[i + 1 :])}
    raise RuleViolation("acknowledge", f"{s.id} has no instruction {b.instruction}")


def _milestone(s: DocumentState, e: Event, b: Any, p: Any, c: Any) -> Changes:
    assert isinstance(b, MilestoneBody)
    place = _place(b.location)
    parse_time(b.at, "body.at")
    signer = next(sig.name for sig in e.signatures)
    return {"location": Milestone(e.seq, b.kind, place.locode, place.name, b.at, signer)}


def _amend(s: DocumentState, e: Event, b: Any, p: Any, cargo: Mapping[str, str]) -> Changes:
    assert isinstance(b, AmendBody)
    if b.supersedes != s.content_digest:
        raise RuleViolation(
            "amend",
            f"amend must supersede the current content {s.content_digest}, got {b.supersedes}",
        )
    content = _content(b.content, s.id)
    if content.carrier.legal_id != s.carrier:
        raise RuleViolation("amend", f"the carrier cannot change by amendment (is {s.carrier})")
    _claim(s.id, cargo_keys(content), cargo)
    return {
        "content": content,
        "content_version": s.content_version + 1,
        "content_digest": content_digest(b.content),
    }


def _surrender(s: DocumentState, e: Event, b: Any, p: Any, c: Any) -> Changes:
    return {"status": Status.SURRENDERED}


def _deliver(s: DocumentState, e: Event, b: Any, p: Any, c: Any) -> Changes:
    return {"status": Status.DELIVERED}


def _refuse(s: DocumentState, e: Event, b: Any, p: Any, c: Any) -> Changes:
    return {"status": Status.ACTIVE}


def _switch(s: DocumentState, e: Event, b: Any, p: Any, c: Any) -> Changes:
    assert isinstance(b, SwitchBody)
    return {
        "status": Status.SWITCHED_TO_PAPER,
        "paper_document_number": b.paper_document_number,
    }


def _void(s: DocumentState, e: Event, b: Any, p: Any, c: Any) -> Changes:
    if s.ever_transferred_or_pledged:
        raise RuleViolation(
            "void", f"{s.id} was transferred or pledged and can no longer be voided"
        )
    return {"status": Status.VOID}


_EFFECTS = {
    "transfer": _transfer,
    "reject_transfer": _reject,
    "pledge": _pledge,
    "release": _release,
    "enforce": _enforce,
    "instruct": _instruct,
    "acknowledge": _acknowledge,
    "milestone": _milestone,
    "amend": _amend,
    "surrender": _surrender,
    "deliver": _deliver,
    "refuse": _refuse,
    "switch_to_paper": _switch,
    "void": _void,
}


def live_cargo(state: DocumentState | None) -> frozenset[str]:
    """The cargo keys ``state`` holds in the singularity index (none once terminal)."""
    if state is None or not state.live:
        return frozenset()
    return cargo_keys(state.content)


_NO_KEYS: frozenset[str] = frozenset()


def cargo_delta(
    before: DocumentState | None, after: DocumentState
) -> tuple[frozenset[str], frozenset[str]]:
    """Keys to claim and to release in the cargo index when ``before`` becomes ``after``."""
    if before is not None and before.content is after.content and before.live == after.live:
        return _NO_KEYS, _NO_KEYS  # the same content, held or not held as before
    old, new = live_cargo(before), live_cargo(after)
    return new - old, old - new
