"""Server-Sent Events: every new event on the documents the caller may see.

    GET /v1/stream            (signed; Last-Event-ID: <log index> resumes after it)

Each message: ``id: <log index>``, ``event: encd-event``, ``data:`` a JSON
object {index, sequenced_at, event_id, chain, subject, type, seq, event}
where ``event`` is the event's exact text.  A comment line every 15 s keeps
the connection open.  When the caller's key is revoked (or rotated away), the
stream ends after that party event with ``event: encd-closed`` and ``data:``
{index, reason}: a revoked key reads nothing more, on a stream opened before too.  The stream reads the store, so it works across API
processes; within one process a commit wakes it at once.  As the service stops, every
open stream ends with the comment ``: the service is stopping: resume with Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from api.app import State, Stopping
from api.auth import Caller
from api.routes.common import DECIMAL, MAX_INDEX, CallerDep, StateDep, can_read
from encd.errors import Error
from encd.events import Event
from encd.parties import Role

router = APIRouter(prefix="/v1", tags=["stream"])
HEARTBEAT = 15.0


def _signed_in_now(state: State, caller: Caller) -> Caller | None:
    """The caller as the store holds it now (its roles may have changed), or None when the
    key its stream was opened with is no longer active."""
    name, _, key_hash = caller.key_id.rpartition("+")
    try:
        party, record = state.lookups.key(name, key_hash)
    except Error:
        return None
    if record is None or record.revoked:
        return None
    return Caller(party, caller.key_id)


def _visible(state: State, caller: Caller, event: Event) -> bool:
    if caller.has(Role.AUDITOR, Role.OPERATOR):
        return True
    if event.is_party_event:
        return event.subject == caller.id
    return can_read(state, caller, event.subject)


def _message(index: int, event_id: str, at: int, event: Event) -> bytes:
    data = {
        "index": index,
        "sequenced_at": at,
        "event_id": event_id,
        "chain": event.chain,
        "subject": event.subject,
        "type": event.type,
        "seq": event.seq,
        "event": event.raw.decode(),
    }
    return f"id: {index}\nevent: encd-event\ndata: {json.dumps(data)}\n\n".encode()


async def _messages(
    request: Request, state: State, caller: Caller, cursor: int
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    waiter = (loop, wake)
    state.waiters.add(waiter)
    stopping = Stopping.here()
    stopping.wakes.add(wake)
    try:
        yield b": encd event stream\n\n"
        idle = 0.0
        while not await request.is_disconnected():
            if stopping.stopped:
                yield b": the service is stopping: resume with Last-Event-ID\n\n"
                return
            rows = await asyncio.to_thread(state.ledger.entries, cursor, cursor + 500)
            for index, event_id, at, raw in rows:
                cursor = index + 1
                event = Event.parse(raw)
                if _visible(state, caller, event):  # one indexed read, at most
                    yield _message(index, event_id, at, event)
                if event.is_party_event and event.subject == caller.id:  # its keys or roles
                    now = await asyncio.to_thread(_signed_in_now, state, caller)
                    if now is None:
                        reason = f"key {caller.key_id} is no longer active (log index {index})"
                        data = json.dumps({"index": index, "reason": reason})
                        yield f"event: encd-closed\ndata: {data}\n\n".encode()
                        return
                    caller = now
            if rows:
                continue
            wake.clear()
            if stopping.stopped:
                continue
            try:
                await asyncio.wait_for(wake.wait(), timeout=state.settings.stream_poll)
            except TimeoutError:
                idle += state.settings.stream_poll
                if idle >= HEARTBEAT:
                    idle = 0.0
                    yield b": keep-alive\n\n"
    finally:
        state.waiters.discard(waiter)
        stopping.wakes.discard(wake)


@router.get("/stream")
async def stream(
    request: Request,
    state: StateDep,
    caller: CallerDep,
    last_event_id: Annotated[int | None, Header(ge=-1, le=MAX_INDEX), DECIMAL] = None,
) -> StreamingResponse:
    """New events on the caller's documents, as they are logged (text/event-stream)."""
    cursor = state.ledger.size() if last_event_id is None else last_event_id + 1
    return StreamingResponse(
        _messages(request, state, caller, cursor),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
