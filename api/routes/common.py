"""Shared dependencies of the routers."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from api.app import State
from api.auth import Caller, authenticate
from api.problems import Forbidden
from encd.events import Event
from encd.parties import Role
from ledger.ledger import NotFound, Receipt


async def get_state(request: Request) -> State:  # async: FastAPI runs a plain def on a thread
    state: State = request.app.state.encd
    return state


StateDep = Annotated[State, Depends(get_state)]
CallerDep = Annotated[Caller, Depends(authenticate)]

EVENT_BODY = {
    "requestBody": {
        "required": True,
        "description": "A signed event: its exact bytes (docs/formats/events.md).",
        "content": {"application/vnd.encd.event": {"schema": {"type": "string"}}},
    }
}


def can_read(state: State, caller: Caller, doc_id: str) -> bool:
    return caller.has(Role.AUDITOR, Role.OPERATOR) or state.ledger.is_party_to(doc_id, caller.id)


def require_reader(state: State, caller: Caller, doc_id: str) -> None:
    state.ledger.title(doc_id)  # 404 first for a document that does not exist
    if not can_read(state, caller, doc_id):
        raise Forbidden(f"{caller.id} has not been party to {doc_id}")


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
