"""Submitting signed events, and their receipts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.app import State
from api.problems import Forbidden
from api.routes.common import (
    EVENT_BODY,
    CallerDep,
    StateDep,
    append,
    can_read,
    event_sender,
    require_subject,
)
from encd.events import Event

router = APIRouter(prefix="/v1", tags=["events"])


@router.post("/events", status_code=201, openapi_extra=EVENT_BODY)
async def submit_event(request: Request) -> JSONResponse:
    """Append a fully signed event; 201 with its receipt, 200 with the first receipt if logged."""
    # The busiest route: its two dependencies called directly, without FastAPI's resolution
    # of them (cache keys, query and cookie parsing) on every request.
    state: State = request.app.state.encd
    caller = await event_sender(request)  # 415, then 401
    event = Event.parse(await request.body())
    signers = {sig.name for sig in event.signatures}
    if caller.id not in signers:
        raise Forbidden(
            f"{caller.id} may submit only events it signed (signed by {', '.join(sorted(signers))})"
        )
    require_subject(state, event)
    receipt = await append(state, event)
    return JSONResponse(receipt.to_json(), status_code=200 if receipt.duplicate else 201)


@router.get("/events/{event_id}/receipt")
def receipt(event_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """The receipt an event got when it was logged."""
    found = state.ledger.receipt(event_id)
    subject = state.ledger.event_subject(found.log_index)
    if subject[0] == "doc" and not can_read(state, caller, subject[1]):
        raise Forbidden(f"{caller.id} has not been party to {subject[1]}")
    return found.to_json()
