"""Shared dependencies of the routers."""

from __future__ import annotations

import re
import time
from typing import Annotated

from fastapi import Depends, Request
from pydantic import BeforeValidator

from api.app import State
from api.auth import Caller, authenticate
from api.media import EVENT_TYPE, content_type_mismatch
from api.problems import MEDIA_TYPE, Forbidden, UnsupportedMediaType
from encd.events import Event
from encd.parties import Role
from encd.validation import abridged
from ledger.ledger import NotFound, Receipt

_DECIMAL = re.compile(r"-?[0-9]+")


def _decimal(value: object) -> object:
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise ValueError("expected a decimal integer: ASCII digits, an optional leading -")
        if len(value) > 40:
            raise ValueError("expected a decimal integer of at most 40 digits")
    return value


# A query or header integer as plain decimal digits: int() would also read "1_0", "+1",
# " 3" or other scripts' digits.  Annotated[int, Query(...), DECIMAL]
DECIMAL = BeforeValidator(_decimal)
# The largest log index or size a request may name (SQLite's and PostgreSQL's integers
# are 64-bit; a stream reads ahead of the index it is given).
MAX_INDEX = 2**62


async def get_state(request: Request) -> State:  # async: FastAPI runs a plain def on a thread
    state: State = request.app.state.encd
    return state


async def event_sender(request: Request) -> Caller:
    """Who posts an event: 415 first for a body that is not one, then the signature (401).

    The Content-Type is checked before authentication so that a refused body
    consumes no nonce: the same signed request, sent again with the right
    type, goes through.  (An empty body is left to the route: it is no event.)
    """
    body = await request.body()  # over the size limit: 413 (BodyLimit) before anything else
    if body:
        wrong = content_type_mismatch(request.headers.getlist("content-type"), EVENT_TYPE)
        if wrong is not None:
            raise UnsupportedMediaType(f"Content-Type: {wrong}", EVENT_TYPE)
    return await authenticate(request)


StateDep = Annotated[State, Depends(get_state)]
CallerDep = Annotated[Caller, Depends(authenticate)]
SenderDep = Annotated[Caller, Depends(event_sender)]

EVENT_BODY = {
    "requestBody": {
        "required": True,
        "description": "A signed event: its exact bytes (docs/formats/events.md).",
        "content": {EVENT_TYPE: {"schema": {"type": "string"}}},
    },
    "responses": {
        "415": {
            "description": f"A body whose Content-Type is not {EVENT_TYPE} (charset=utf-8 allowed)",
            "content": {MEDIA_TYPE: {}},
        }
    },
}


def can_read(state: State, caller: Caller, doc_id: str) -> bool:
    return caller.has(Role.AUDITOR, Role.OPERATOR) or state.ledger.is_party_to(doc_id, caller.id)


def require_reader(state: State, caller: Caller, doc_id: str) -> None:
    """The document's content, history and bundle: its parties, auditors and operators, and
    a party an open proposal on it waits for (a bank asked to take it in pledge)."""
    from api.routes.proposals import waits_for

    state.ledger.title(doc_id)  # 404 first for a document that does not exist
    if not can_read(state, caller, doc_id) and not waits_for(state, caller.id, doc_id):
        raise Forbidden(
            f"{caller.id} has not been party to {abridged(doc_id)}, and no open proposal "
            "on it waits for its signature"
        )


def require_subject(state: State, event: Event) -> None:
    """404 for an event on a document never issued, or on a party never registered.

    Only an issue creates a document and only a register creates a party; any
    other event names a chain that must exist (the title rules would call the
    missing chain a conflict, which it is not).
    """
    if event.is_party_event:
        if event.type != "register" and not state.lookups.exists("party", event.subject):
            raise NotFound(f"no party {event.subject}")
    elif event.type != "issue" and not state.lookups.exists("doc", event.subject):
        raise NotFound(f"no document {event.subject}")


async def append(state: State, event: Event) -> Receipt:
    """Append through the sequencer without holding a worker thread while waiting."""
    started = time.perf_counter()
    ok = False
    try:
        # The signature checks run on the submitter's thread, off the event loop.
        receipt = await state.submitter.submit(event)
        ok = True
        return receipt
    finally:
        state.metrics.observe_append(time.perf_counter() - started, ok)
