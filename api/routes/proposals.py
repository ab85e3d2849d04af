"""Multi-signature proposals: one signer proposes, the others countersign, the last applies.

Events that need several signatures (pledge: holder and bank; amend;
surrender while pledged; switch to paper; void) are gathered here.  The
proposer posts the event signed by itself; the others fetch the text, sign
it locally and post it back with their signature; on the last required
signature the event is assembled and appended.  Unsigned proposals expire.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.app import State
from api.problems import ApiError, Forbidden
from api.routes.common import (
    DECIMAL,
    EVENT_BODY,
    CallerDep,
    SenderDep,
    StateDep,
    append,
    require_subject,
)
from encd.errors import Conflict, InvalidInput, RuleViolation, VerificationError
from encd.events import SHA256_HEX, Event, assemble
from encd.parties import Party, Role, verify_signers
from encd.title import DocumentState, apply, check_chain, required_signers
from encd.validation import abridged, given
from ledger import proposals as store
from ledger.ledger import NotFound, Receipt
from ledger.proposals import APPLIED, FAILED, OPEN, Proposal

router = APIRouter(prefix="/v1/proposals", tags=["proposals"])


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _closed(proposal: Proposal, now: int) -> ApiError:
    """409 for a proposal that takes no more signatures: applied, failed or expired."""
    closed = proposal.current_state(now)
    why = {
        APPLIED: f"it applied as event {proposal.event_id}",
        FAILED: "its event can never apply (the document moved on, or the ledger refused it)",
    }.get(closed, f"it expired at {_iso(proposal.expires_at)} before every party signed it")
    return ApiError(
        409,
        "proposal-closed",
        f"proposal {proposal.id} takes no more signatures: {why}",
        state=closed,
    )


def _overtaken(pid: str, moved_on: Conflict) -> Conflict:
    """409 for a proposal the document has moved past, with its head now."""
    return Conflict(
        f"proposal {pid} can no longer apply, the document has moved on since it was "
        f"written: {moved_on}",
        moved_on.current_seq,
        moved_on.current_head,
    )


def _now_ms(state: StateDep) -> int:
    return int(state.settings.clock().timestamp() * 1000)


class _Reading:
    """The registry and the documents' titles, read once for an answer about many
    proposals (a page of ``GET /v1/proposals`` may name one document many times)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._parties: dict[str, Party] | None = None
        self._titles: dict[str, DocumentState | None] = {}

    def parties(self) -> dict[str, Party]:
        if self._parties is None:
            self._parties = self.state.ledger.parties()
        return self._parties

    def title(self, doc_id: str) -> DocumentState | None:
        if doc_id not in self._titles:
            self._titles[doc_id] = _current(self.state, doc_id)
        return self._titles[doc_id]


def _current(state: State, doc_id: str) -> DocumentState | None:
    try:
        return state.ledger.title(doc_id)[0]
    except NotFound:
        return None


def _required(
    state: StateDep, event: Event, reading: _Reading | None = None
) -> list[tuple[str, frozenset[str]]]:
    reading = reading or _Reading(state)
    return required_signers(reading.title(event.subject), event, reading.parties())


def _places(slots: list[tuple[str, frozenset[str]]]) -> list[dict[str, Any]]:
    """The places that must sign, as answered: ``{who, parties}`` each."""
    return [{"who": label, "parties": sorted(allowed)} for label, allowed in slots]


def _moved_on(state: State, event: Event, reading: _Reading | None = None) -> Conflict | None:
    """Why a proposal can never apply, if the document has moved on past the head it was
    signed against (and it was not itself logged under other signatures): the chain
    only moves forward, so its text can never apply."""
    try:
        check_chain((reading or _Reading(state)).title(event.subject), event)
    except Conflict as exc:
        if _applied_otherwise(state, event) is None:
            return exc
    return None


def _view(
    state: StateDep,
    proposal: Proposal,
    receipt: dict[str, Any] | None = None,
    *,
    reading: _Reading | None = None,
) -> dict[str, Any]:
    signed = sorted({s.name for s in proposal.signatures})
    now = proposal.current_state(_now_ms(state))
    required: list[dict[str, Any]] = []
    try:
        event = Event.parse(assemble(proposal.text, proposal.signatures))
        reading = reading or _Reading(state)
        if now == OPEN and _moved_on(state, event, reading) is not None:
            # as a signature posted to it would find; recorded, so that the next list of
            # open proposals does not look again (it reads the document's whole history)
            now = FAILED
            store.finish(state.ledger, proposal.id, FAILED)
        if now == OPEN or proposal.required is None:  # (None: proposed before 0008)
            required = _places(_required(state, event, reading))
        else:  # closed: who it needed then, not who the document's next event would need
            required = json.loads(proposal.required)
    except (InvalidInput, RuleViolation, NotFound):
        pass
    missing = [
        place["who"]
        for place in required
        if now != APPLIED and not set(place["parties"]) & set(signed)
    ]
    body: dict[str, Any] = {
        "id": proposal.id,
        "document": proposal.doc_id,
        "type": proposal.type,
        "text": proposal.text.decode(),
        "signed_by": signed,
        "required": required,
        "missing": missing,
        "state": now,
        "created_at": proposal.created_at,
        "expires_at": proposal.expires_at,
        "event_id": proposal.event_id,
    }
    if receipt is not None:
        index = receipt["log_index"]
        body["receipt"] = receipt
        # the event as logged (its SHA-256 is the receipt's event_id), for a signer that
        # holds only the text and its own signature
        body["event"] = state.ledger.entries(index, index + 1)[0][3].decode()
    return body


def waits_for(state: State, party_id: str, doc_id: str) -> bool:
    """Whether an open proposal on the document still needs ``party_id``'s signature, and
    is signed by a party to the document: by proposing, that party shows the document to
    the one it asks (a bank reads the collateral it is asked to take, before signing)."""
    reading = _Reading(state)
    for proposal in store.open_proposals(state.ledger, _now_ms(state), doc_id):
        view = _view(state, proposal, reading=reading)
        asked = any(party_id in r["parties"] for r in view["required"])
        if view["state"] != OPEN or not asked or party_id in view["signed_by"]:
            continue
        if any(state.ledger.is_party_to(doc_id, signer) for signer in view["signed_by"]):
            return True
    return False


async def _gather(
    state: StateDep, caller: CallerDep, raw: bytes, ttl: int | None, expect: str | None
) -> JSONResponse:
    event = Event.parse(raw)
    if event.is_party_event:
        raise InvalidInput("event.party", "proposals gather signatures for document events")
    if caller.id not in {s.name for s in event.signatures}:
        raise Forbidden(f"{caller.id} must sign what it posts")
    require_subject(state, event)
    pid = store.proposal_id(event.text)
    if expect is not None and pid != expect:
        raise InvalidInput("event", f"this is not the text of proposal {expect}")
    now = _now_ms(state)
    existing = store.find(state.ledger, pid)
    if existing is not None and existing.current_state(now) != OPEN:
        return _closed_answer(state, existing, event, now)
    if expect is not None and existing is None:
        raise NotFound(f"no proposal {abridged(expect)}")
    moved_on = _moved_on(state, event)
    if moved_on is not None:
        if existing is not None:
            store.finish(state.ledger, pid, FAILED)
        raise _overtaken(pid, moved_on)
    merged = {s.key_id: s for s in (existing.signatures if existing else ())}
    merged.update({s.key_id: s for s in event.signatures})
    complete = Event.parse(assemble(event.text, merged.values()))
    verify_signers(complete, state.ledger.parties())  # every signature so far verifies now
    slots = _required(state, complete)
    signers = {s.name for s in complete.signatures}
    strangers = signers - set().union(*(allowed for _, allowed in slots))
    if strangers:
        needed = " and ".join(label for label, _ in slots) or "no signature of a party"
        raise RuleViolation(
            event.type,
            f"{', '.join(sorted(strangers))} need not sign this {event.type}: "
            f"it is signed by {needed}",
        )
    if not all(allowed & signers for _, allowed in slots):
        _dry_run(state, complete, slots)
    lifetime = min(ttl or state.settings.proposal_ttl, state.settings.proposal_ttl) * 1000
    required = json.dumps(_places(slots), separators=(",", ":"))
    template = Proposal(
        pid, event.subject, event.type, event.text, (), now, now + lifetime, OPEN, None, required
    )
    # Merged with what is stored under the proposal's lock: others may be signing it now,
    # through this server or another, and every signature acknowledged must be kept.
    proposal, created = store.gather(state.ledger, template, event.signatures, now)
    if proposal.current_state(now) != OPEN:  # closed since it was read: by a post elsewhere
        return _closed_answer(state, proposal, event, now)  # with these signatures, perhaps
    complete = Event.parse(assemble(event.text, proposal.signatures))
    signers = {s.name for s in complete.signatures}
    receipt = None
    if all(allowed & signers for _, allowed in _required(state, complete)):
        done: Receipt | None
        try:
            done = await append(state, complete)  # (the same bytes again: a duplicate)
        except (RuleViolation, VerificationError):  # (Conflict among them) it cannot apply
            done = _applied_otherwise(state, complete)
            if done is None:
                store.finish(state.ledger, pid, FAILED)
                raise
        store.finish(state.ledger, pid, APPLIED, done.event_id)
        proposal = replace(proposal, state=APPLIED, event_id=done.event_id)
        receipt = done.to_json()
    status = 201 if created else 200
    return JSONResponse(_view(state, proposal, receipt), status_code=status)


def _closed_answer(state: State, proposal: Proposal, event: Event, now: int) -> JSONResponse:
    """The answer to ``event`` posted to ``proposal``, no longer open: if it applied with
    these signatures already (an answer lost on its way, or the same post made to another
    host at once), the proposal and the receipt its event got, as an event posted twice is
    answered; otherwise a 409 that says how it closed."""
    if not _already_applied_with(proposal, event):
        moved_on = _moved_on(state, event) if proposal.state == FAILED else None
        raise _closed(proposal, now) if moved_on is None else _overtaken(proposal.id, moved_on)
    assert proposal.event_id is not None
    first = replace(state.ledger.receipt(proposal.event_id), duplicate=True)
    return JSONResponse(_view(state, proposal, first.to_json()), status_code=200)


def _already_applied_with(proposal: Proposal, event: Event) -> bool:
    """Whether ``proposal`` applied and already holds every signature ``event`` carries."""
    if proposal.state != APPLIED or proposal.event_id is None:
        return False
    held = {(s.name, s.key_hash, s.signature) for s in proposal.signatures}
    return all((s.name, s.key_hash, s.signature) in held for s in event.signatures)


def _applied_otherwise(state: State, complete: Event) -> Receipt | None:
    """The receipt of the event logged with ``complete``'s text under other signatures
    (a carrier's and its agent's, posted at once), if there is one: then the proposal
    applied, and the post that lost the race says so."""
    for _, _, raw in state.ledger.events_of(complete.subject, complete.chain):
        logged = Event.parse(raw)
        if logged.seq == complete.seq and logged.text == complete.text:
            return state.ledger.receipt(logged.id)
    return None


class _Cargo(Mapping[str, str]):
    def __init__(self, state: State) -> None:
        self.state = state

    def __getitem__(self, key: str) -> str:
        owner = self.state.ledger.cargo_owner(key)
        if owner is None:
            raise KeyError(key)
        return owner

    def __iter__(self) -> Iterator[str]:  # pragma: no cover - rules only look keys up
        return iter(())

    def __len__(self) -> int:  # pragma: no cover
        return 0


def _dry_run(state: State, event: Event, slots: list[tuple[str, frozenset[str]]]) -> None:
    """Refuse at once a proposal that could not apply now even with every signature."""
    try:
        current = state.ledger.title(event.subject)[0]
    except NotFound:
        current = None
    everyone = frozenset(min(allowed) for _, allowed in slots)
    apply(current, event, everyone, state.ledger.parties(), _Cargo(state))


@router.post("", status_code=201, openapi_extra=EVENT_BODY)
async def propose(
    request: Request,
    state: StateDep,
    caller: SenderDep,
    ttl: Annotated[
        int | None, Query(ge=60, description="seconds to wait for signatures"), DECIMAL
    ] = None,
) -> JSONResponse:
    """Propose an event carrying the proposer's own signature (applied at once if complete)."""
    if ttl is not None and ttl > state.settings.proposal_ttl:
        raise InvalidInput(
            "ttl",
            f"expected at most {state.settings.proposal_ttl} seconds (this service's longest "
            f"wait for signatures), got {ttl}",
        )
    return await _gather(state, caller, await request.body(), ttl, None)


@router.post("/{proposal_id}/signatures", openapi_extra=EVENT_BODY)
async def countersign(
    proposal_id: str, request: Request, state: StateDep, caller: SenderDep
) -> JSONResponse:
    """Add signatures: the proposal's text signed by the caller (a signed note)."""
    if store.find(state.ledger, proposal_id) is None:
        raise NotFound(f"no proposal {abridged(proposal_id)}")
    return await _gather(state, caller, await request.body(), None, proposal_id)


#: Proposals in one answer of ``GET /v1/proposals``: by default, and at most.
PAGE, MAX_PAGE = 100, 1000


@router.get("")
def pending(
    state: StateDep,
    caller: CallerDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE, description="proposals in one answer at most"), DECIMAL
    ] = PAGE,
    after: Annotated[
        str | None, Query(description="the id of the last proposal of the page before")
    ] = None,
) -> dict[str, Any]:
    """Open proposals the caller must sign or has signed (all of them for auditors and
    operators), oldest first, a page at a time: ``next`` is the ``after`` of the next page,
    null once there is no more."""
    everyone = caller.has(Role.AUDITOR, Role.OPERATOR)
    # Only a proposal the caller signed, is named in (a new pledgee) or whose document it
    # has been party to can need it (every signer slot is such a party): the full view,
    # which reads the document's title, is made for those alone.
    party = None if everyone else caller.id
    cursor = _cursor(state, after)
    now = _now_ms(state)
    reading = _Reading(state)
    out: list[dict[str, Any]] = []
    more = False
    while len(out) < limit:
        chunk = store.open_page(state.ledger, now, limit, cursor, party)
        for position, proposal in enumerate(chunk):
            cursor = proposal
            view = _view(state, proposal, reading=reading)
            if view["state"] != OPEN:  # the document has moved on past it
                continue
            involved = caller.id in view["signed_by"] or any(
                caller.id in r["parties"] for r in view["required"]
            )
            if everyone or involved:
                out.append(view)
                if len(out) == limit:
                    more = position + 1 < len(chunk) or bool(
                        store.open_page(state.ledger, now, 1, cursor, party)
                    )
                    break
        if len(chunk) < limit:
            break
    return {"proposals": out, "next": out[-1]["id"] if more else None}


def _cursor(state: State, after: str | None) -> Proposal | None:
    """The proposal a page goes on after (any state: it may have closed since)."""
    if after is None:
        return None
    if not SHA256_HEX.fullmatch(after):
        raise InvalidInput(
            "after", f"expected a proposal id, 64 lowercase hex digits, got {given(after)}"
        )
    found = store.find(state.ledger, after)
    if found is None:
        raise InvalidInput("after", f"no proposal {after}: give the next of the page before")
    return found


@router.get("/{proposal_id}")
def one(proposal_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    view = _view(state, store.get(state.ledger, proposal_id))
    involved = caller.id in view["signed_by"] or any(
        caller.id in r["parties"] for r in view["required"]
    )
    if not (involved or caller.has(Role.AUDITOR, Role.OPERATOR)):
        raise Forbidden(f"{caller.id} is not a party to proposal {abridged(proposal_id)}")
    return view
