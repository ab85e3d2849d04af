"""Parties: registration by the operator, key changes by the party, look-ups by anyone registered."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.problems import Forbidden
from api.routes.common import (
    EVENT_BODY,
    CallerDep,
    SenderDep,
    StateDep,
    append,
    require_subject,
)
from encd.errors import InvalidInput
from encd.events import Event
from encd.parties import Role

router = APIRouter(prefix="/v1/parties", tags=["parties"])


@router.post("", status_code=201, openapi_extra=EVENT_BODY)
async def register(request: Request, state: StateDep, caller: SenderDep) -> JSONResponse:
    """The operator registers a party: a ``register`` event it signed."""
    caller.require(Role.OPERATOR)
    event = Event.parse(await request.body())
    if event.type != "register":
        raise InvalidInput("event.type", f"expected register, got {event.type}")
    if caller.id not in {s.name for s in event.signatures}:
        raise Forbidden(f"{caller.id} may submit only events it signed")
    receipt = await append(state, event)
    body = {"party": state.ledger.party(event.subject).to_json(), "receipt": receipt.to_json()}
    return JSONResponse(body, status_code=200 if receipt.duplicate else 201)


@router.post("/{party_id}/events", status_code=201, openapi_extra=EVENT_BODY)
async def key_change(
    party_id: str, request: Request, state: StateDep, caller: SenderDep
) -> JSONResponse:
    """A party (or the operator) adds, rotates or revokes its keys; the operator changes roles."""
    event = Event.parse(await request.body())
    if not event.is_party_event or event.subject != party_id:
        raise InvalidInput("event.party", f"expected an event of party {party_id}")
    if event.type == "register":  # one way in for a new party: POST /v1/parties
        raise InvalidInput(
            "event.type",
            "expected add_key, rotate_key, revoke_key or set_roles, got register "
            "(a party is registered with POST /v1/parties)",
        )
    if caller.id not in {s.name for s in event.signatures}:
        raise Forbidden(f"{caller.id} may submit only events it signed")
    require_subject(state, event)
    receipt = await append(state, event)
    body = {"party": state.ledger.party(party_id).to_json(), "receipt": receipt.to_json()}
    return JSONResponse(body, status_code=200 if receipt.duplicate else 201)


@router.get("/{party_id}")
def lookup(party_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Any registered party looks another up: name, roles, keys (revoked ones marked)."""
    return state.ledger.party(party_id).to_json()
