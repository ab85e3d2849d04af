"""Who is asking: RFC 9421 request signatures checked against the party registry.

Every request except the public log, health and the web pages carries an
``encd`` signature (see encd.httpsig) by one of the caller's active keys.
The server checks, in order (docs/api.md §6 numbers the same steps):

(1) the headers parse;
(2) when ``settings.authorities`` pins the service's names, ``@authority``
    (the Host header) is one of them;
(3) ``created`` is within the window of its clock;
(4) the key exists, belongs to a registered party and is not revoked;
(5) the signature covers the required components and verifies;
(6) the body matches its Content-Digest;
(7) the nonce was not seen before from this key within the window.

Any failure is 401 and changes nothing: (7), the only step that writes, comes last.
A read open to every registered party (the title) may run while (7) is recorded
(``authenticate_while``); its answer waits for (7).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from fastapi import Request

from api.problems import Forbidden, Unauthorized
from encd.errors import Error, InvalidInput, VerificationError
from encd.httpsig import Request as SignedRequest
from encd.httpsig import (
    check_content_digest,
    normal_authority,
    parse_signature,
    verify_request,
)
from encd.parties import Party, Role
from encd.validation import show

T = TypeVar("T")

KEYID = "signature-input.keyid"  # the problem's field for a key that is unknown or revoked
SIGNED_METHOD = "encd.method"  # the scope's key for the method sent, where routing took another


@dataclass(frozen=True)
class Caller:
    party: Party
    key_id: str

    @property
    def id(self) -> str:
        return self.party.id

    def has(self, *roles: Role) -> bool:
        return any(role in self.party.roles for role in roles)

    def require(self, *roles: Role) -> None:
        if not self.has(*roles):
            needed = " or ".join(sorted(roles))
            have = ", ".join(sorted(self.party.roles))
            raise Forbidden(f"this needs the {needed} role; {self.id} has {have}")


async def authenticate(request: Request) -> Caller:
    """The FastAPI dependency for signed requests."""
    caller, nonce, fresh = await _checked(request, at_once=False)
    if not await fresh:
        raise _replayed(nonce)
    return caller


async def authenticate_while(request: Request, read: Callable[[], T]) -> T:
    """``authenticate``, with ``read`` run on this thread while the nonce store records the
    request's nonce (step 7) on its own: for a read any registered party may make, which
    therefore does not depend on who asks.  Its answer, or its error, is given only once
    the nonce is known to be fresh; a refused request still changes nothing."""
    _, nonce, fresh = await _checked(request, at_once=True)
    try:
        answer = read()
    except Exception:
        if not await fresh:
            raise _replayed(nonce) from None
        raise
    if not await fresh:
        raise _replayed(nonce)
    return answer


def _replayed(nonce: str) -> Unauthorized:
    return Unauthorized(
        f"nonce {nonce!r} was already used: a replayed request", field="signature-input.nonce"
    )


def _once(request: Request, names: tuple[str, ...]) -> None:
    """Each header the signature rests on (its own two, Content-Digest and every covered
    field) in one field line: with two, the value signed and the value checked against the
    body could be different lines (RFC 9421 would combine them; a signer never sends two)."""
    seen: dict[str, int] = {}
    for raw, _ in request.headers.raw:
        key = raw.decode("latin-1").lower()
        seen[key] = seen.get(key, 0) + 1
    for field in dict.fromkeys(names):
        if seen.get(field, 0) > 1:
            raise Unauthorized(
                f"{field}: sent in {seen[field]} field lines; a signed request carries each "
                "header its signature rests on once",
                field=field,
            )


def _raw_path(request: Request) -> str:
    """``@path`` as the request line sends it, percent-escapes and all (RFC 9421 §2.2.6):
    a signature over one target covers no other spelling of it."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("latin-1")
    return request.url.path


async def _checked(request: Request, *, at_once: bool) -> tuple[Caller, str, Awaitable[bool]]:
    """Steps (1) to (6), then the nonce handed to the nonce store: the caller, the nonce, and
    whether the store found it fresh (an awaitable).  ``at_once``: handed to the store's
    writer now rather than with the claims of this pass of the event loop."""
    from api.app import State

    state: State = request.app.state.encd
    body = await request.body()
    signature_input, signature = (request.headers.get(h) for h in ("signature-input", "signature"))
    for header, value in (("signature-input", signature_input), ("signature", signature)):
        if value is not None and not value.isascii():
            # Structured fields (RFC 8941) are ASCII; the parser below assumes as much.
            raise Unauthorized(
                "Signature-Input and Signature must be ASCII (RFC 8941)", field=header
            )
    try:  # (1)
        parsed = parse_signature(signature_input, signature)
    except InvalidInput as exc:
        raise Unauthorized(exc.message, field=exc.field) from None
    params = parsed.params
    host = request.headers.get("host", "")
    authority = normal_authority(host)
    pinned = state.settings.authorities
    if pinned and authority not in pinned:  # (2): signed for another deployment
        names = sorted(pinned)
        raise Unauthorized(
            f"@authority: expected {' or '.join(names)} (the names this service answers to), "
            f"got {show(host)} (the Host header)",
            field="@authority",
            expected=names,
        )
    now = state.settings.clock().timestamp()
    if abs(now - params.created) > state.settings.signature_window:  # (3)
        raise Unauthorized(
            f"signature created at {params.created} is outside the server's window of "
            f"±{state.settings.signature_window} s around {int(now)}",
            field="signature-input.created",
        )
    name, _, key_hash = params.keyid.rpartition("+")
    try:  # (4)
        party, record = state.lookups.key(name, key_hash)
    except Error:
        raise Unauthorized(
            f"unknown key {show(params.keyid, 120)}: no registered party {show(name, 80)}",
            field=KEYID,
        ) from None
    if record is None:
        raise Unauthorized(f"unknown key {show(params.keyid, 120)}", field=KEYID)
    if record.revoked:
        raise Unauthorized(f"key {params.keyid} was revoked", field=KEYID)
    _once(request, ("signature-input", "signature", "content-digest", *parsed.params.components))
    signed = SignedRequest(
        method=request.scope.get(SIGNED_METHOD, request.method),
        authority=authority,
        path=_raw_path(request),
        query=request.url.query,
        headers={k.lower(): v for k, v in request.headers.items()},
    )
    try:
        try:  # (5)
            verify_request(signed, parsed, record.key, has_body=bool(body))
        except VerificationError:
            if host.lower() == authority:
                raise
            # A Host that keeps a default port, signed as written rather than normalized.
            signed = replace(signed, authority=host)
            verify_request(signed, parsed, record.key, has_body=bool(body))
    except InvalidInput as exc:
        raise Unauthorized(exc.message, field=exc.field) from None
    except Error as exc:  # the signature does not verify
        raise Unauthorized(exc.message, field="signature") from None
    if body:  # (6)
        try:
            check_content_digest(request.headers.get("content-digest"), body)
        except Error as exc:
            raise Unauthorized(exc.message, field="content-digest") from None
    # (7) Recorded with the next group write of the nonce store (see ledger.nonces).
    fresh = state.nonces.claim(params.keyid, params.nonce, now, at_once=at_once)
    return Caller(party, params.keyid), params.nonce, fresh
