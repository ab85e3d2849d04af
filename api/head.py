"""What every encd server checks of a request's line and head before routing it: the
service (``api.app.EncdApp``) and a witness (``api.witness``) alike.

h11, under uvicorn, parses the request line loosely: it reads any ``HTTP/d.d``, and any
request target up to a space.  Here, in order:

1. an HTTP version other than 1.0 or 1.1 is a 505 (h11 would answer ``HTTP/2.0`` as 1.1);
2. a request line and headers over ``MAX_HEAD`` bytes, counted as sent, are a 431 (h11
   refuses a head over its limit only when it arrives in pieces);
3. a target with a fragment (``#``), or that is not a path: the absolute form
   (``GET http://host/v1/service``), which a server must accept (RFC 9112 §3.2.2), is read
   as its path, with the URI's authority standing for the Host header, which is then
   ignored; ``OPTIONS *`` is answered with the methods encd takes; anything else is a 400
   (``field`` ``request-target``);
4. a path holding NUL is a 404 (PostgreSQL's text cannot hold one: a 500 there).

Each refusal is an RFC 9457 problem, and but for the 404 the connection is closed after
it (the client is not speaking HTTP/1.1 as encd does).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from starlette.responses import Response
from starlette.types import Scope

from api.problems import problem

MAX_HEAD = 16 * 1024  # bytes of request line and headers (h11's limit for a head in pieces)
HTTP_VERSIONS = frozenset({"1.0", "1.1"})
ALLOW = "GET, HEAD, POST"  # the methods encd's servers take (OPTIONS *)

#: A URI's authority (RFC 3986 §3.2) as encd takes it in a request target: a registered
#: name or IPv4 address, or a bracketed IPv6 address, and a port of 1 to 5 digits; no
#: user information, no percent-escapes.
_AUTHORITY = re.compile(rb"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?")


def check_head(scope: Scope) -> Scope | Response:
    """The HTTP ``scope`` to route (rewritten for an absolute-form target), or the answer
    that refuses its request line or head (see the module's docstring)."""
    version = scope.get("http_version", "1.1")
    if version not in HTTP_VERSIONS:
        return problem(
            505,
            "version-not-supported",
            f"HTTP/{version} is not served here: this service speaks HTTP/1.1 (and 1.0)",
            headers={"connection": "close"},
        )
    if head_size(scope) > MAX_HEAD:
        return problem(
            431,
            "too-large",
            f"the request line and headers are over {MAX_HEAD} bytes",
            headers={"connection": "close"},
        )
    raw = bytes(scope.get("raw_path") or scope["path"].encode("latin-1"))
    if b"#" in raw or b"#" in scope.get("query_string", b""):
        return _bad_target("a request target has no fragment (#)")
    if not scope["path"].startswith("/"):
        target = _origin_form(scope, raw)
        if isinstance(target, Response):
            return target
        scope = target
    if "\x00" in scope["path"]:
        return problem(404, "not-found", "no resource has a NUL character in its path")
    return scope


def head_size(scope: Scope) -> int:
    """The size of the request's head as sent: request line, header lines, blank line."""
    target = len(scope.get("raw_path") or scope["path"]) + (
        len(scope["query_string"]) + 1 if scope.get("query_string") else 0
    )
    size = len(scope["method"]) + target + 14  # " ", " HTTP/1.1" CRLF, the blank line
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4  # ": ", "\r\n"
    return size


def _origin_form(scope: Scope, raw: bytes) -> Scope | Response:
    """An absolute-form target read as its path and Host; ``OPTIONS *``; or a 400."""
    if raw == b"*":
        if scope["method"] != "OPTIONS":
            return _bad_target(f"the request target * is for OPTIONS only, not {scope['method']}")
        if scope.get("query_string"):
            return _bad_target("the request target * takes no query")
        return Response(status_code=204, headers={"allow": ALLOW})
    scheme, sep, rest = raw.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return _bad_target(
            "the request target is neither a path starting with / nor an http(s) URI"
        )
    authority, slash, path = rest.partition(b"/")
    found = _AUTHORITY.fullmatch(authority)
    port = found.group(1) if found else None
    if not found or (port is not None and not 0 < int(port) <= 65535):
        return _bad_target(
            "the request target's URI needs a host and, if any, a port from 1 to 65535 "
            "(no user information or percent-escape)"
        )
    raw_path = b"/" + path if slash else b"/"
    headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
    return {
        **scope,
        "raw_path": raw_path,
        "path": unquote(raw_path.decode("latin-1")),
        "headers": [(b"host", authority), *headers],
    }


def _bad_target(reason: str) -> Response:
    detail = f"not a well-formed HTTP/1.1 request: {reason}"
    return problem(
        400, "invalid-input", detail, field="request-target", headers={"connection": "close"}
    )
