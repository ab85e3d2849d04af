"""The public log: C2SP tlog-tiles paths and plain proof calls.  Hashes only, no content.

GET /log/checkpoint                       the latest signed checkpoint (text/plain)
GET /log/tile/<L>/<N>[.p/<W>]             tile hashes: tree level 8·L, hashes 256·N …
GET /log/tile/entries/<N>[.p/<W>]         entry bundle: uint16-length-prefixed 40-byte entries
GET /v1/log/inclusion?index=&size=        RFC 6962 inclusion proof (JSON, base64 hashes)
GET /v1/log/consistency?size1=&size2=     RFC 6962 consistency proof
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.problems import NotFoundProblem
from api.routes.common import DECIMAL, MAX_INDEX, StateDep
from encd.checkpoint import Checkpoint
from encd.errors import InvalidInput
from encd.logentry import LogEntry
from encd.note import parse_note
from encd.validation import show

router = APIRouter(tags=["log"])

TILE_WIDTH = 256
MAX_TILE_LEVEL = 63  # tlog-tiles: a level is 0 to 63
# Each index has one path (ASCII digits only: \d would take any script's digits, which int()
# reads too): groups of three digits, all but the last after an "x", no leading x000
# group, and at most seven groups (an index below 10**21; a log index is below 2**63).
_INDEX = re.compile(r"(?:x(?!000)[0-9]{3}(?:/x[0-9]{3}){0,5}/)?[0-9]{3}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")


def parse_tile_index(parts: list[str]) -> tuple[int, int | None]:
    """tlog-tiles index path: "x001/x234/067" is 1234067; a final ".p/W" is a partial tile."""
    width = None
    if len(parts) >= 2 and parts[-2].endswith(".p"):
        if not _WIDTH.fullmatch(parts[-1]) or int(parts[-1]) >= TILE_WIDTH:
            raise NotFoundProblem(f"partial tile width must be 1 to 255, got {show(parts[-1])}")
        width = int(parts[-1])
        parts = [*parts[:-2], parts[-2][:-2]]
    if not _INDEX.fullmatch("/".join(parts)):
        raise NotFoundProblem(
            "tile index must be groups of three digits, e.g. x001/x234/067, "
            "without a leading x000 group"
        )
    return int("".join(p.lstrip("x") for p in parts)), width


@router.get("/log/checkpoint", response_class=Response)
def checkpoint(state: StateDep) -> Response:
    """The latest checkpoint, a C2SP signed note, with any witness cosignatures of it."""
    note = state.ledger.checkpoint()
    cosigned = state.ledger.cosigned(note, Checkpoint.parse(parse_note(note).text).size)
    return Response(cosigned, media_type="text/plain; charset=utf-8", headers=LATEST)


def _tree_size(state: StateDep) -> int:
    return Checkpoint.parse(parse_note(state.ledger.checkpoint()).text).size


# A tile or entry bundle at a path never changes (a partial one is named by its width), so
# caches in front of the log may keep it (c2sp.org/tlog-tiles); the checkpoint changes with
# every batch, so a cache must ask again each time.
IMMUTABLE = {"cache-control": "public, max-age=31536000, immutable"}
LATEST = {"cache-control": "no-cache"}


@router.get("/log/tile/{path:path}", response_class=Response)
def tile(path: str, state: StateDep) -> Response:
    """Tiles and entry bundles in the C2SP tlog-tiles layout."""
    parts = path.split("/")
    size = _tree_size(state)
    if parts[0] == "entries":
        index, width = parse_tile_index(parts[1:])
        return _entries(state, index, width, size)
    if not _LEVEL.fullmatch(parts[0]) or int(parts[0]) > MAX_TILE_LEVEL:
        raise NotFoundProblem(
            f"tile level must be a number 0 to {MAX_TILE_LEVEL}, got {show(parts[0])}"
        )
    level = int(parts[0])
    index, width = parse_tile_index(parts[1:])
    leaves_per_hash = 1 << (8 * level)
    available = size // leaves_per_hash - index * TILE_WIDTH  # complete hashes at that level
    wanted = width or TILE_WIDTH
    if available < wanted:  # (a partial tile stays, the prefix of the full one it became)
        raise NotFoundProblem(f"tile {path} does not exist at tree size {size}")
    tile = state.ledger.tile(level, index, wanted)
    return Response(tile, media_type="application/octet-stream", headers=IMMUTABLE)


def _entries(state: StateDep, index: int, width: int | None, size: int) -> Response:
    start = index * TILE_WIDTH
    wanted = width or TILE_WIDTH
    available = size - start
    if available < wanted:
        raise NotFoundProblem(
            f"entry bundle {index} of width {wanted} does not exist at size {size}"
        )
    out = bytearray()
    for _, event_id, at, _raw in state.ledger.entries(start, start + wanted):
        entry = LogEntry(event_id, at).to_bytes()
        out += len(entry).to_bytes(2, "big") + entry
    return Response(bytes(out), media_type="application/octet-stream", headers=IMMUTABLE)


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


@router.get("/v1/log/inclusion")
def inclusion(
    state: StateDep,
    index: Annotated[int, Query(ge=0, le=MAX_INDEX), DECIMAL],
    size: Annotated[int, Query(ge=1, le=MAX_INDEX), DECIMAL],
) -> dict[str, Any]:
    """The inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    return {"index": index, "size": size, "proof": _b64(state.ledger.inclusion(index, size))}


@router.get("/v1/log/consistency")
def consistency(
    state: StateDep,
    size1: Annotated[int, Query(ge=1, le=MAX_INDEX), DECIMAL],
    size2: Annotated[int, Query(ge=1, le=MAX_INDEX), DECIMAL],
) -> dict[str, Any]:
    """The consistency proof between the trees of ``size1`` and ``size2`` leaves."""
    if size1 > size2:
        raise InvalidInput("size1", f"expected size1 <= size2, got {size1} > {size2}")
    return {"size1": size1, "size2": size2, "proof": _b64(state.ledger.consistency(size1, size2))}
