"""RFC 9457 problem details: every error the service returns, and nothing else.

Each problem has a ``type`` URI ``urn:encd:problem:<name>``, a ``title``, the
HTTP ``status``, a ``detail`` saying what is wrong, and extension members
where they help: ``field`` (which input broke which rule), ``rule``,
``expected`` (what a refused header should have said), ``current_seq`` and
``current_head`` (for a stale event).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from encd.errors import Conflict, Error, InvalidInput, RuleViolation, VerificationError
from encd.validation import given

_log = logging.getLogger("uvicorn.error")  # the service's log, as uvicorn sets it up

MEDIA_TYPE = "application/problem+json"


class ApiError(Error):
    """An error with its HTTP status and problem name (and response headers, if any)."""

    headers: dict[str, str] | None = None

    def __init__(self, status: int, name: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.extra = extra


class Unauthorized(ApiError):
    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(401, "unauthorized", message, **extra)


class UnsupportedMediaType(ApiError):
    """415: a body whose Content-Type is not what the route takes (RFC 9110 §15.5.16)."""

    def __init__(self, message: str, *expected: str) -> None:
        super().__init__(
            415, "unsupported-media-type", message, field="content-type", expected=list(expected)
        )
        self.headers = {"accept-post": ", ".join(expected)}


class Forbidden(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(403, "forbidden", message)


class NotFoundProblem(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, "not-found", message)


TITLES = {
    "invalid-input": "Invalid input",
    "verification-failed": "Verification failed",
    "rule-violation": "The title or party rules forbid this event",
    "stale-event": "The document has moved on",
    "proposal-closed": "The proposal takes no more signatures",
    "fork": "Another root at a size already cosigned",
    "unauthorized": "Request not authenticated",
    "forbidden": "Not allowed",
    "not-found": "Not found",
    "too-large": "Request too large",
    "unsupported-media-type": "Unsupported media type",
    "method-not-allowed": "Method not allowed",
    "not-implemented": "Not implemented",
    "version-not-supported": "HTTP version not supported",
    "unavailable": "Service unavailable",
    "internal": "Internal error",
}


def problem(
    status: int,
    name: str,
    detail: str,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:encd:problem:{name}",
        "title": TITLES.get(name, name),
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def from_error(error: Exception, request: Request | None = None) -> JSONResponse:
    """The one place domain errors become HTTP responses."""
    from ledger.ledger import NotFound

    if isinstance(error, ApiError):
        return problem(
            error.status, error.name, error.message, request, error.headers, **error.extra
        )
    if isinstance(error, Conflict):
        return problem(
            409,
            "stale-event",
            error.message,
            request,
            current_seq=error.current_seq,
            current_head=error.current_head,
        )
    if isinstance(error, RuleViolation):
        return problem(422, "rule-violation", error.message, request, rule=error.rule)
    if isinstance(error, InvalidInput):
        return problem(422, "invalid-input", error.message, request, field=error.field or None)
    if isinstance(error, VerificationError):
        return problem(422, "verification-failed", error.message, request)
    if isinstance(error, NotFound):
        return problem(404, "not-found", error.message, request)
    if isinstance(error, Error):
        return problem(503, "unavailable", error.message, request)
    if isinstance(error, OperationalError):  # the database is down, locked or unreachable
        return problem(503, "unavailable", "the store is not answering; try again", request)
    return problem(500, "internal", "internal error; nothing was changed", request)


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    return from_error(exc, request)


async def handle_store_down(request: Request, exc: Exception) -> JSONResponse:
    """The store not answering (down, shutting down, locked, its disk full): a 503 for the
    client and one line in the service's log, not a traceback, and the connection kept
    (a handler for ``Exception`` answers, then re-raises, and the server closes it)."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0:1]
    _log.warning(
        "%s %s: the store is not answering: %s",
        request.method,
        request.url.path,
        reason[0] if reason else type(exc).__name__,
    )
    return from_error(exc, request)


def went_away(request: Request) -> JSONResponse:
    """The answer to a request whose client closed its connection before sending all of its
    body (``starlette.requests.ClientDisconnect``): nobody reads it, nothing was changed, and
    it is no server error, so nothing is logged beyond the access line."""
    return problem(400, "invalid-input", "the client closed the connection mid-request", request)


async def handle_disconnect(request: Request, exc: Exception) -> JSONResponse:
    return went_away(request)


async def handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    loc = [
        str(part)
        for part in first.get("loc", ())
        if part not in ("query", "path", "header", "body")
    ]
    field = ".".join(loc)
    detail = f"{field}: {first.get('msg', 'invalid')}, got {given(first.get('input'))}"
    return problem(422, "invalid-input", detail, request, field=field or None)


async def handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    name = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
        exc.status_code, "invalid-input"
    )
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such resource: {request.url.path}"
    if exc.status_code == 405:
        allowed = headers.get("Allow") or headers.get("allow") or ""
        detail = f"{request.method} is not a method of {request.url.path}" + (
            f"; it takes {allowed}" if allowed else ""
        )
    return problem(exc.status_code, name, detail, request, headers or None)
