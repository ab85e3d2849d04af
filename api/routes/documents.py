"""Documents: content and history for their parties, title with proof for any party."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api.app import State
from api.auth import authenticate_while
from api.routes.common import CallerDep, StateDep, require_reader
from api.witnessing import configured_witnesses
from encd.errors import InvalidInput
from encd.note import MAX_SIGNATURES
from encd.parties import Role
from encd.title import dump_state
from encd.validation import show
from ledger.ledger import NotFound

router = APIRouter(prefix="/v1", tags=["documents"])


@router.get("/documents/{doc_id}")
def document(doc_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """The document's content and full title state (its parties and auditors only)."""
    require_reader(state, caller, doc_id)
    title, head_index = state.ledger.title(doc_id)
    return {"title": dump_state(title), "head_index": head_index}


@router.get("/documents/{doc_id}/events")
def history(doc_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Every event of the document, exact bytes, in order (its parties and auditors only)."""
    require_reader(state, caller, doc_id)
    return {
        "document": doc_id,
        "events": [
            {"index": index, "sequenced_at": at, "event": raw.decode()}
            for index, at, raw in state.ledger.events_of(doc_id)
        ],
    }


@router.get("/documents/{doc_id}/title")
async def title(doc_id: str, request: Request) -> JSONResponse:
    """Who holds the document, is it pledged, to whom — with the head event's inclusion
    proof (a C2SP tlog-proof) against the latest signed checkpoint, so the caller can
    check the answer itself.  Any registered party may ask."""
    # A busy read: authenticated directly (no dependency), read on the event loop's thread
    # while the nonce is being recorded (a hop to a worker thread and back costs more than
    # these few indexed reads), and written without a response model to check it against.
    state: State = request.app.state.encd
    found = await authenticate_while(request, lambda: state.ledger.title_proof(doc_id))
    stored, note = found.stored, found.checkpoint
    return JSONResponse(
        {
            "document": doc_id,
            "status": stored["status"],
            "holder": stored["holder"],
            "controller": stored["controller"],
            "pledge": stored["pledge"],
            "content_version": stored["content_version"],
            "location": stored["location"],
            "seq": stored["seq"],
            "head": stored["head"],
            "head_index": found.head_index,
            "head_sequenced_at": found.head_sequenced_at,
            "checkpoint": note.decode(),
            "tlog_proof": found.proof.to_bytes().decode(),
        }
    )


_KEY_ID = re.compile(r"[^\s+]{1,200}\+[0-9a-f]{8}")
WitnessQuery = Annotated[list[str] | None, Query()]


def witnessed_by(state: State, witnessed: str, witness: list[str] | None) -> tuple[int, list[str]]:
    """The ``witnessed`` and ``witness`` query parameters: how many witnesses must have
    cosigned the checkpoint an export is against (0: the latest, cosigned or not), and
    whose cosignatures count (key IDs: those named, else the service's own witnesses)."""
    wanted = {"true": 1, "false": 0}.get(witnessed)
    if wanted is None:
        if not re.fullmatch(r"0|[1-9][0-9]?|100", witnessed):
            raise InvalidInput(
                "witnessed",
                f"expected true, false or a number of witnesses from 0 to {MAX_SIGNATURES}, "
                f"got {show(witnessed, 40)}",
            )
        wanted = int(witnessed)
    named = list(dict.fromkeys(witness or ()))
    if named and not wanted:
        raise InvalidInput("witness", "counts cosignatures: only with witnessed=true or a number")
    if len(named) > MAX_SIGNATURES:
        raise InvalidInput("witness", f"at most {MAX_SIGNATURES} witnesses, got {len(named)}")
    for key_id in named:
        if not _KEY_ID.fullmatch(key_id):
            raise InvalidInput(
                "witness", f"expected a witness's key ID <name>+<8 hex digits>, got {show(key_id)}"
            )
    if not wanted:
        return 0, []
    counted = named or [w.key.key_id for w in configured_witnesses(state.settings.witnesses)]
    if not counted:
        raise NotFound(
            "this service sends its checkpoints to no witness, so none is cosigned: ask for "
            "the latest checkpoint (leave out witnessed, or encd export's --witnessed), or name "
            "witnesses with witness=<key ID> (encd export: --policy)"
        )
    if wanted > len(counted):
        whose = "named" if named else "this service sends its checkpoints to"
        raise InvalidInput(
            "witnessed",
            f"{wanted} cosignatures asked for, of the {len(counted)} witness(es) {whose}",
        )
    return wanted, counted


@router.get("/documents/{doc_id}/bundle")
def bundle(
    doc_id: str,
    state: StateDep,
    caller: CallerDep,
    witnessed: str = "false",
    witness: WitnessQuery = None,
) -> Response:
    """The document bundle for offline audit (docs/formats/bundle.md); ``witnessed``:
    against the newest checkpoint a witness (or that many witnesses) cosigned, not the
    latest (see ``witnessed_by``)."""
    import io

    from ledger.export import export_document

    require_reader(state, caller, doc_id)
    wanted, counted = witnessed_by(state, witnessed, witness)
    out = io.BytesIO()
    export_document(state.ledger, doc_id, out, witnessed=wanted, witnesses=counted)
    return Response(
        out.getvalue(),
        media_type="application/vnd.encd.bundle+jsonl",
        headers={"content-disposition": f'attachment; filename="{doc_id}.encd"'},
    )


@router.get("/export")
def export(
    state: StateDep, caller: CallerDep, witnessed: str = "false", witness: WitnessQuery = None
) -> StreamingResponse:
    """The full-ledger export for auditors (docs/formats/bundle.md); ``witnessed``: up to
    the newest checkpoint a witness (or that many witnesses) cosigned, not the latest.

    Written to a temporary file first (one consistent checkpoint, whatever its
    size), then streamed in chunks, so a large ledger never sits in memory."""
    import tempfile

    from ledger.export import export_ledger

    caller.require(Role.AUDITOR, Role.OPERATOR)
    wanted, counted = witnessed_by(state, witnessed, witness)
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the streaming generator
    try:
        export_ledger(state.ledger, spool, witnessed=wanted, witnesses=counted)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)

    def chunks() -> Iterator[bytes]:
        with spool:
            while block := spool.read(1 << 20):
                yield block

    return StreamingResponse(
        chunks(),
        media_type="application/vnd.encd.bundle+jsonl",
        headers={"content-disposition": 'attachment; filename="ledger.encd"'},
    )
