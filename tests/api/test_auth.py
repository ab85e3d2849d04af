"""Who may do what: RFC 9421 request authentication and design.md §6 authorization, over HTTP.

The matrix: each mutating route × each way a request can be unauthenticated
or unauthorized.  Every refused request must get its status as an RFC 9457
problem and change nothing: the log does not grow and no proposal gains a
signature.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from api.client import EVENT_TYPE, Client, verify_title
from api.server import running
from api.settings import Settings
from encd.events import make_event, sign_text
from encd.httpsig import (
    ALG,
    LABEL,
    PARAMS,
    REQUIRED,
    SignatureParams,
    content_digest,
    signature_base,
)
from encd.httpsig import Request as SignedRequest
from encd.keys import SigningKey
from tests.api.conftest import World
from tests.kit import T0, corridor_document, uscc

NEWCOMER = uscc("91500000MA7000000")
MILESTONE = {
    "kind": "departed",
    "location": {"locode": "CNCKG", "name": "Luoqi, Jiangjin"},
    "at": "2026-05-01T09:00:00Z",
}


def pledge_body(world: World, bank: str) -> dict[str, str]:
    return {
        "pledgee": world.id(bank),
        "loan_ref": f"LOAN-{bank}",
        "amount": "100000.00",
        "currency": "USD",
        "registry_ref": "PBOC-CRCS-2026-000001",
        "maturity": "2026-08-01",
    }


# --- requests, built and sent by hand ------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request: who sends it (whose key signs it by default) and what."""

    client: Client
    method: str
    path: str
    body: bytes = b""
    params: dict[str, Any] | None = None

    @property
    def query(self) -> str:
        return urlencode(self.params or {})

    @property
    def url(self) -> str:
        return self.path + ("?" + self.query if self.query else "")


def sign(
    call: Call,
    key: SigningKey | None = None,
    *,
    keyid: str | None = None,
    created: int | None = None,
    body: bytes | None = None,
    order: tuple[str, ...] = PARAMS,
) -> dict[str, str]:
    """RFC 9421 headers for ``call``, with any one part made wrong on purpose.

    ``key`` signs (default: the call's client's key) under ``keyid`` (default:
    that key's id); ``created`` defaults to now; ``body`` is the body the
    Content-Digest is computed over (default: the call's body).
    """
    key = key or call.client.key
    body = call.body if body is None else body
    headers: dict[str, str] = {}
    if body:
        headers["content-digest"] = content_digest(body)
    authority = urlsplit(call.client.base_url).netloc
    request = SignedRequest(call.method, authority, call.path, call.query, headers)
    components = REQUIRED + (("content-digest",) if body else ())
    params = SignatureParams(
        components,
        int(time.time()) if created is None else created,
        secrets.token_urlsafe(16),
        keyid or key.public.key_id,
        ALG,
        order,
    )
    signature = key.sign(signature_base(request, params))
    headers["signature-input"] = f"{LABEL}={params.serialize()}"
    headers["signature"] = f"{LABEL}=:{base64.b64encode(signature).decode()}:"
    return headers


def send(
    call: Call, headers: dict[str, str] | None = None, body: bytes | None = None
) -> httpx.Response:
    """Send ``call`` with ``headers`` (default: correctly signed) and ``body`` (default: its own)."""
    headers = dict(sign(call) if headers is None else headers)
    content = call.body if body is None else body
    if content:
        headers["content-type"] = EVENT_TYPE
    return call.client.http.request(call.method, call.url, content=content, headers=headers)


def snapshot(world: World) -> tuple[int, list[tuple[str, str, tuple[str, ...]]]]:
    """What a refused request must leave alone: the log size and every proposal's signers."""
    size = world.operator.service()["log_size"]
    proposals = world.client("auditor").proposals()["proposals"]
    return size, sorted((p["id"], p["state"], tuple(p["signed_by"])) for p in proposals)


def assert_problem(response: httpx.Response, status: int, name: str, context: str) -> None:
    assert response.status_code == status, f"{context}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == "application/problem+json", context
    problem = response.json()
    assert problem["type"] == f"urn:encd:problem:{name}", f"{context}: {problem}"
    assert problem["status"] == status and problem["title"] and problem["detail"], context


def refused(
    world: World, call: Call, status: int, name: str, context: str, **send_args: Any
) -> dict[str, Any]:
    """Send ``call`` and check it is refused with ``status`` and changed nothing."""
    before = snapshot(world)
    response = send(call, **send_args)
    assert_problem(response, status, name, context)
    assert snapshot(world) == before, f"{context}: a refused request changed the ledger"
    problem: dict[str, Any] = response.json()
    return problem


def unauthorized(
    world: World, call: Call, field: str, context: str, **send_args: Any
) -> dict[str, Any]:
    """``refused`` with 401, the problem's ``field`` naming the part of the request at fault."""
    problem = refused(world, call, 401, "unauthorized", context, **send_args)
    assert problem.get("field") == field, f"{context}: expected field {field!r}: {problem}"
    return problem


# --- the mutating routes, each as a request that would succeed ---------------------------


def submit_event(world: World, doc: str) -> Call:
    carrier = world.client("carrier")
    return Call(carrier, "POST", "/v1/events", carrier.next_event(doc, "milestone", MILESTONE))


def register_party(world: World, doc: str) -> Call:
    newcomer = SigningKey(NEWCOMER, bytes(32))
    raw = make_event(
        [world.operator.key],
        type="register",
        party=NEWCOMER,
        seq=0,
        prev=None,
        time=T0,
        body={"name": "Newcomer Trading", "roles": ["trader"], "keys": [newcomer.public.vkey]},
    )
    return Call(world.operator, "POST", "/v1/parties", raw)


def party_event(world: World, doc: str) -> Call:
    exporter = world.client("exporter")
    me = exporter.party(world.id("exporter"))
    spare = SigningKey(world.id("exporter"), b"\x01" * 32)
    raw = make_event(
        [exporter.key],
        type="add_key",
        party=me["id"],
        seq=me["seq"] + 1,
        prev=me["head"],
        time=T0,
        body={"key": spare.public.vkey},
    )
    return Call(exporter, "POST", f"/v1/parties/{me['id']}/events", raw)


def propose(world: World, doc: str) -> Call:
    exporter = world.client("exporter")
    raw = exporter.next_event(doc, "pledge", pledge_body(world, "bank2"), time_=T0)
    return Call(exporter, "POST", "/v1/proposals", raw)


def open_proposal(world: World, doc: str) -> dict[str, Any]:
    """The exporter's pledge to the bank, waiting for the bank's signature."""
    exporter = world.client("exporter")
    raw = exporter.next_event(doc, "pledge", pledge_body(world, "bank"), time_=T0)
    proposal: dict[str, Any] = exporter.propose(raw)
    return proposal


def countersign_note(text: str, key: SigningKey) -> bytes:
    data = text.encode()
    return data + b"\n" + b"".join(s.line().encode() for s in sign_text(data, [key]))


def countersign(world: World, doc: str) -> Call:
    proposal = open_proposal(world, doc)
    bank = world.client("bank")
    note = countersign_note(proposal["text"], bank.key)
    return Call(bank, "POST", f"/v1/proposals/{proposal['id']}/signatures", note)


ROUTES: dict[str, Callable[[World, str], Call]] = {
    "POST /v1/events": submit_event,
    "POST /v1/parties": register_party,
    "POST /v1/parties/{id}/events": party_event,
    "POST /v1/proposals": propose,
    "POST /v1/proposals/{id}/signatures": countersign,
}
ROUTE_OWNERS = {  # whose key signs each route's request
    "POST /v1/events": "carrier",
    "POST /v1/parties": "operator",
    "POST /v1/parties/{id}/events": "exporter",
    "POST /v1/proposals": "exporter",
    "POST /v1/proposals/{id}/signatures": "bank",
}


def wrong_roles(world: World, doc: str) -> dict[str, list[tuple[str, Call, int, str]]]:
    """Per route: requests by a party that may not make them (correctly authenticated)."""
    carrier, exporter, bank, bank2 = (
        world.client(label) for label in ("carrier", "exporter", "bank", "bank2")
    )
    milestone = carrier.next_event(doc, "milestone", MILESTONE)
    stray = corridor_document()
    stray["id"] = "CQ-WRONG-ROLE-0001"
    trader_issue = make_event(
        [exporter.key],
        type="issue",
        doc=stray["id"],
        seq=0,
        prev=None,
        time=T0,
        body={"content": stray, "holder": world.id("exporter")},
    )
    register = register_party(world, doc).body
    self_register = make_event(
        [exporter.key],
        type="register",
        party=NEWCOMER,
        seq=0,
        prev=None,
        time=T0,
        body={
            "name": "Newcomer",
            "roles": ["trader"],
            "keys": [SigningKey(NEWCOMER, bytes(32)).public.vkey],
        },
    )
    buyer = world.client("buyer")
    them = buyer.party(world.id("buyer"))
    extra = SigningKey(world.id("buyer"), b"\x02" * 32).public.vkey
    for_buyer = {
        "type": "add_key",
        "party": them["id"],
        "seq": them["seq"] + 1,
        "prev": them["head"],
        "time": T0,
        "body": {"key": extra},
    }
    buyer_signed = make_event([buyer.key], **for_buyer)
    exporter_signed = make_event([exporter.key], **for_buyer)
    pledge_to_bank2 = propose(world, doc).body
    grab = make_event(
        [buyer.key],
        type="pledge",
        doc=doc,
        seq=1,
        prev=exporter.title(doc)["head"],
        time=T0,
        body=pledge_body(world, "bank2"),
    )
    proposal = open_proposal(world, doc)
    signatures = f"/v1/proposals/{proposal['id']}/signatures"
    return {
        "POST /v1/events": [
            (
                "a bank submits the carrier's event",
                Call(bank, "POST", "/v1/events", milestone),
                403,
                "forbidden",
            ),
            (
                "a trader issues a document",
                Call(exporter, "POST", "/v1/events", trader_issue),
                422,
                "rule-violation",
            ),
        ],
        "POST /v1/parties": [
            (
                "a trader submits the operator's registration",
                Call(exporter, "POST", "/v1/parties", register),
                403,
                "forbidden",
            ),
            (
                "a trader registers a party",
                Call(exporter, "POST", "/v1/parties", self_register),
                403,
                "forbidden",
            ),
        ],
        "POST /v1/parties/{id}/events": [
            (
                "a trader submits another's key change",
                Call(exporter, "POST", f"/v1/parties/{them['id']}/events", buyer_signed),
                403,
                "forbidden",
            ),
            (
                "a trader changes another's keys",
                Call(exporter, "POST", f"/v1/parties/{them['id']}/events", exporter_signed),
                422,
                "rule-violation",
            ),
        ],
        "POST /v1/proposals": [
            (
                "a bank submits the holder's proposal",
                Call(bank2, "POST", "/v1/proposals", pledge_to_bank2),
                403,
                "forbidden",
            ),
            (
                "a trader pledges a document it does not hold",
                Call(buyer, "POST", "/v1/proposals", grab),
                422,
                "rule-violation",
            ),
        ],
        "POST /v1/proposals/{id}/signatures": [
            (
                "a second bank countersigns",
                Call(bank2, "POST", signatures, countersign_note(proposal["text"], bank2.key)),
                422,
                "rule-violation",
            ),
            (
                "a second bank submits the bank's signature",
                Call(bank2, "POST", signatures, countersign_note(proposal["text"], bank.key)),
                403,
                "forbidden",
            ),
        ],
    }


# --- the matrix: each attack on each route ------------------------------------------------
#
# Each check refuses its attacks and then (where the attack is on the request, not
# the caller) sends the good request, which must succeed: the refusal was for the
# attack.  One server per attack; the routes run in order, countersigning last
# (it applies the pledge the others do not need).


def missing_signature(world: World, doc_id: str, route: str) -> None:
    call = ROUTES[route](world, doc_id)
    good = sign(call)
    unauthorized(world, call, "signature", f"{route}, no signature headers", headers={})
    only_input = {k: v for k, v in good.items() if k != "signature"}
    unauthorized(world, call, "signature", f"{route}, no Signature", headers=only_input)
    only_sig = {k: v for k, v in good.items() if k != "signature-input"}
    unauthorized(world, call, "signature-input", f"{route}, no Signature-Input", headers=only_sig)
    no_digest = {k: v for k, v in good.items() if k != "content-digest"}
    problem = unauthorized(
        world, call, "content-digest", f"{route}, no Content-Digest", headers=no_digest
    )
    assert "content-digest" in problem["detail"]
    assert send(call, headers=good).status_code in (200, 201), f"{route}: the good request"


def bad_signature(world: World, doc_id: str, route: str) -> None:
    call = ROUTES[route](world, doc_id)
    owner = call.client.key
    impostor = SigningKey(owner.name, secrets.token_bytes(32))
    forged = sign(call, impostor, keyid=owner.public.key_id)
    problem = unauthorized(
        world, call, "signature", f"{route}, wrong key for the keyid", headers=forged
    )
    assert "does not verify" in problem["detail"]
    unknown = sign(call, impostor)
    problem = unauthorized(
        world, call, "signature-input.keyid", f"{route}, unregistered key", headers=unknown
    )
    assert "unknown key" in problem["detail"]
    stranger = SigningKey(uscc("91500000MA7999999"), secrets.token_bytes(32))
    unauthorized(
        world,
        call,
        "signature-input.keyid",
        f"{route}, unregistered party",
        headers=sign(call, stranger),
    )

    good = sign(call)
    created = good["signature-input"].split("created=")[1].split(";")[0]
    later = good | {
        "signature-input": good["signature-input"].replace(
            f"created={created}", f"created={int(created) + 1}"
        )
    }
    unauthorized(world, call, "signature", f"{route}, tampered Signature-Input", headers=later)
    raw_sig = bytearray(base64.b64decode(good["signature"].split(":")[1]))
    raw_sig[0] ^= 1
    flipped = good | {"signature": f"{LABEL}=:{base64.b64encode(bytes(raw_sig)).decode()}:"}
    unauthorized(world, call, "signature", f"{route}, tampered Signature", headers=flipped)
    other_path = Call(call.client, call.method, call.path + "x", call.body, call.params)
    misdirected = sign(other_path)
    unauthorized(world, call, "signature", f"{route}, signed for another path", headers=misdirected)
    garbled = good | {"signature-input": 'encd=("@method";created=1'}
    unauthorized(
        world, call, "signature-input", f"{route}, unparseable Signature-Input", headers=garbled
    )
    no_nonce = good | {"signature-input": 'encd=("@method");created=1'}
    unauthorized(world, call, "signature-input.nonce", f"{route}, no nonce", headers=no_nonce)
    assert send(call, headers=good).status_code in (200, 201), f"{route}: the good request"


def expired_signature(world: World, doc_id: str, route: str) -> None:
    call = ROUTES[route](world, doc_id)
    for offset in (-302, 302, -100_000):  # the window is ±300 s; 2 s for the request itself
        problem = unauthorized(
            world,
            call,
            "signature-input.created",
            f"{route}, created {offset:+} s",
            headers=sign(call, created=int(time.time()) + offset),
        )
        assert "outside the server's window" in problem["detail"]
    # just inside the window is fine
    inside = sign(call, created=int(time.time()) - 290)
    assert send(call, headers=inside).status_code in (200, 201)


def replayed_request(world: World, doc_id: str, route: str) -> None:
    # (a) after a request refused for another reason (wrong role)
    _, wrong, status, name = wrong_roles(world, doc_id)[route][0]
    headers = sign(wrong)
    refused(world, wrong, status, name, f"{route}, first attempt", headers=headers)
    problem = unauthorized(
        world, wrong, "signature-input.nonce", f"{route}, replay of a refusal", headers=headers
    )
    assert "already used" in problem["detail"]
    # (b) after a request that succeeded
    call = ROUTES[route](world, doc_id)
    headers = sign(call)
    first = send(call, headers=headers)
    assert first.status_code in (200, 201), f"{route}: {first.text}"
    problem = unauthorized(
        world, call, "signature-input.nonce", f"{route}, replay of a success", headers=headers
    )
    assert "already used" in problem["detail"]


def wrong_role(world: World, doc_id: str, route: str) -> None:
    for what, call, status, name in wrong_roles(world, doc_id)[route]:
        problem = refused(world, call, status, name, f"{route}: {what}")
        if status == 403:
            assert problem["detail"], what


def body_not_matching_digest(world: World, doc_id: str, route: str) -> None:
    call = ROUTES[route](world, doc_id)
    tampered = call.body.replace(b'"seq":', b'"seq": ', 1)
    assert tampered != call.body
    signed_for_original = sign(call)
    problem = unauthorized(
        world,
        call,
        "content-digest",
        f"{route}, body changed after signing",
        headers=signed_for_original,
        body=tampered,
    )
    assert "digest" in problem["detail"]
    # the digest header recomputed for the new body, but the signature covers the old one
    redigested = signed_for_original | {"content-digest": content_digest(tampered)}
    unauthorized(
        world,
        call,
        "signature",
        f"{route}, digest swapped",
        headers=redigested,
        body=tampered,
    )
    # a digest of another body, signed: the signature is right, the body is not what it names
    unauthorized(
        world,
        call,
        "content-digest",
        f"{route}, signed digest of another body",
        headers=sign(call, body=tampered),
    )
    # a second Content-Digest line for another body, ahead of the signed one: the digest
    # checked against the body must be the digest signed, so two lines are refused
    before = snapshot(world)
    for first, second in ((tampered, call.body), (call.body, tampered)):
        lines = [
            ("content-type", EVENT_TYPE),
            ("content-digest", content_digest(first)),
            ("content-digest", content_digest(second)),
            *((k, v) for k, v in signed_for_original.items() if k != "content-digest"),
        ]
        for body in (tampered, call.body):
            response = call.client.http.request(call.method, call.url, content=body, headers=lines)
            assert_problem(response, 401, "unauthorized", f"{route}, two Content-Digest lines")
            assert response.json()["field"] == "content-digest"
    assert snapshot(world) == before, f"{route}: two Content-Digest lines changed the ledger"
    assert send(call, headers=signed_for_original).status_code in (200, 201)


ATTACKS: dict[str, Callable[[World, str, str], None]] = {
    "missing signature": missing_signature,
    "bad signature": bad_signature,
    "expired signature": expired_signature,
    "replayed request": replayed_request,
    "wrong role": wrong_role,
    "body not matching Content-Digest": body_not_matching_digest,
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_on_every_mutating_route(world: World, doc_id: str, attack: str) -> None:
    failures = []
    for route in ROUTES:
        try:
            ATTACKS[attack](world, doc_id, route)
        except AssertionError as exc:
            failures.append(f"{route}: {exc}")
    assert not failures, "\n".join(failures)


def rotate(world: World, label: str) -> Client:
    """Rotate ``label``'s key through POST /v1/parties/{id}/events; a client with the new key."""
    client = world.operator if label == "operator" else world.client(label)
    pid = client.key.name
    me = client.party(pid)
    new = SigningKey(pid, secrets.token_bytes(32))
    raw = make_event(
        [client.key],
        type="rotate_key",
        party=pid,
        seq=me["seq"] + 1,
        prev=me["head"],
        time=T0,
        body={"old": client.key.public.key_id, "new": new.public.vkey},
    )
    after = client.party_event(pid, raw)["party"]
    old = client.key.public
    assert {"key_id": old.key_id, "vkey": old.vkey, "revoked": True} in after["keys"]
    return Client(world.url, new)


def test_revoked_key_is_401_on_every_route(world: World, doc_id: str) -> None:
    calls = {route: build(world, doc_id) for route, build in ROUTES.items()}
    rotated = {label: rotate(world, label) for label in sorted(set(ROUTE_OWNERS.values()))}
    for route, call in calls.items():
        problem = unauthorized(world, call, "signature-input.keyid", f"{route}, revoked key")
        assert "revoked" in problem["detail"]
    # the new keys work
    for label, client in rotated.items():
        if label == "operator":
            world.operator = client
        else:
            world.clients[label] = client
    for route, build in ROUTES.items():
        call = build(world, doc_id)
        response = send(call)
        assert response.status_code in (200, 201), f"{route} with the new key: {response.text}"
    for client in rotated.values():
        client.close()


# --- reading -------------------------------------------------------------------------------


def get(client: Client, path: str, signed: bool = True) -> httpx.Response:
    headers = client.signed_headers("GET", path, "", b"") if signed else {}
    return client.http.get(path, headers=headers)


def test_read_authorization(world: World, doc_id: str) -> None:
    agent = world.client("agent")  # signing an event of the document makes it a party
    receipt = agent.submit(agent.next_event(doc_id, "milestone", MILESTONE))
    proposal = open_proposal(world, doc_id)
    document = f"/v1/documents/{doc_id}"
    party_only = [
        document,
        f"{document}/events",
        f"/v1/events/{receipt['event_id']}/receipt",
        f"/v1/proposals/{proposal['id']}",
    ]
    # the document's parties and the auditor read everything about it
    for label in ("exporter", "carrier", "agent", "auditor"):
        for path in [*party_only[:3], f"{document}/title"]:
            assert get(world.client(label), path).status_code == 200, (label, path)
    assert get(world.operator, document).status_code == 200
    for label in ("exporter", "bank", "auditor"):
        assert get(world.client(label), party_only[3]).status_code == 200, label
    # a registered party that has not been party to it: 403, but the title with proof is open
    for path in party_only:
        assert_problem(get(world.client("bank2"), path), 403, "forbidden", f"bank2 GET {path}")
    title = get(world.client("bank2"), f"{document}/title")
    assert title.status_code == 200
    verify_title(title.json(), world.log_key.public)
    assert get(world.client("bank2"), f"/v1/parties/{world.id('exporter')}").status_code == 200
    # an unregistered key, or no signature at all: 401 everywhere but the public paths
    with Client(
        world.url, SigningKey(uscc("91500000MA7888888"), secrets.token_bytes(32))
    ) as nobody:
        for path in [
            *party_only,
            f"{document}/title",
            f"/v1/parties/{world.id('exporter')}",
            "/v1/proposals",
            "/v1/stream",
        ]:
            assert_problem(get(nobody, path), 401, "unauthorized", f"unregistered GET {path}")
            assert_problem(
                get(nobody, path, signed=False), 401, "unauthorized", f"unsigned GET {path}"
            )
        for path in (
            "/log/checkpoint",
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/service",
            "/openapi.json",
        ):
            assert get(nobody, path, signed=False).status_code == 200, path


def test_bundle_and_export_need_party_or_auditor(world: World, doc_id: str) -> None:
    bundle = f"/v1/documents/{doc_id}/bundle"
    assert_problem(get(world.client("bank2"), bundle), 403, "forbidden", "bank2 GET bundle")
    assert_problem(
        get(world.client("exporter"), "/v1/export"), 403, "forbidden", "trader GET export"
    )
    assert_problem(
        get(world.client("bank2"), "/v1/documents/CQ-NO-SUCH-DOC/bundle"),
        404,
        "not-found",
        "bundle of nothing",
    )


def test_malformed_signature_headers_are_401_never_500(world: World, doc_id: str) -> None:
    call = submit_event(world, doc_id)
    good = sign(call)
    before = snapshot(world)
    inp, sig = good["signature-input"], good["signature"]
    variants: list[dict[str, str | bytes]] = [
        {"signature-input": inp, "signature": sig.replace(":", ":\xe9", 1).encode("latin-1")},
        {
            "signature-input": inp.replace("nonce=", "nonce=\xff").encode("latin-1"),
            "signature": sig,
        },
        {"signature-input": inp, "signature": "encd=:not base64!:"},
        {"signature-input": inp, "signature": "other=:" + sig.split(":", 1)[1]},
        {"signature-input": inp.replace('alg="ed25519"', 'alg="rsa-pss-sha512"'), "signature": sig},
        {"signature-input": inp.replace(";alg=", ";extra=1;alg="), "signature": sig},
        {"signature-input": inp.replace('"content-digest"', ""), "signature": sig},
        {"signature-input": inp.replace("created=", "created=-"), "signature": sig},
        {"signature-input": inp.replace('nonce="', 'nonce="x" , junk="'), "signature": sig},
        {"signature-input": 'encd=("@method";nonce="' + "n" * 200 + '"', "signature": sig},
        {"signature-input": "", "signature": ""},
    ]
    for i, variant in enumerate(variants):
        headers = {k.encode(): v.encode() for k, v in good.items() if k not in variant}
        headers |= {
            k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in variant.items()
        }
        headers[b"content-type"] = EVENT_TYPE.encode()
        response = call.client.http.post(call.path, content=call.body, headers=headers)
        assert_problem(response, 401, "unauthorized", f"variant {i}: {variant}")
    assert snapshot(world) == before


def test_the_title_answers_only_a_fresh_request(world: World, doc_id: str) -> None:
    """The title is read while the request's nonce is being recorded; its answer, or its
    404, is given only once the nonce is known to be fresh: a replay is 401 either way."""
    bank = world.client("bank2")
    for path, status in (
        (f"/v1/documents/{doc_id}/title", 200),
        ("/v1/documents/CQ-NO-SUCH-DOC/title", 404),
    ):
        headers = bank.signed_headers("GET", path, "", b"")
        first = bank.http.get(path, headers=headers)
        assert first.status_code == status, first.text
        replayed = bank.http.get(path, headers=headers)
        assert_problem(replayed, 401, "unauthorized", f"replay of GET {path}")
        assert "already used" in replayed.json()["detail"]
    title = get(bank, f"/v1/documents/{doc_id}/title")
    verify_title(title.json(), world.log_key.public)


def test_replay_across_a_restart_is_401(settings: Settings) -> None:
    with running(settings) as url:
        operator_id = httpx.get(url + "/v1/service").json()["operator"]
        key = SigningKey.load(operator_id, settings.data_dir / "operator.key")
        with Client(url, key) as operator:
            path = f"/v1/parties/{operator_id}"
            headers = operator.signed_headers("GET", path, "", b"")
            assert operator.http.get(path, headers=headers).status_code == 200
    signed_for = urlsplit(url).netloc  # the restarted server listens on another port
    with running(settings) as url, Client(url, key) as operator:
        replayed = operator.http.get(path, headers=headers | {"host": signed_for})
        assert replayed.status_code == 401


def test_replay_to_another_api_process_is_401(settings: Settings) -> None:
    """Two API processes on one store (two servers in one process here, each with its own
    ledger and nonce store): a request one of them took is a replay to the other."""
    with running(settings) as first, running(settings) as second:
        operator_id = httpx.get(first + "/v1/service").json()["operator"]
        key = SigningKey.load(operator_id, settings.data_dir / "operator.key")
        path = f"/v1/parties/{operator_id}"
        with Client(first, key) as a, Client(second, key) as b:
            for taker, other in ((a, b), (b, a)):
                headers = taker.signed_headers("GET", path, "", b"")
                assert taker.http.get(path, headers=headers).status_code == 200
                signed_for = urlsplit(taker.base_url).netloc
                replayed = other.http.get(path, headers=headers | {"host": signed_for})
                assert replayed.status_code == 401
                assert "replayed" in replayed.json()["detail"]


def test_parties_get_a_bundle_and_auditors_the_export(world: World, doc_id: str) -> None:
    pytest.importorskip("ledger.export", reason="ledger/export.py has not landed yet")
    bundles = pytest.importorskip("encd.bundle", reason="encd/bundle.py has not landed yet")
    exporter = world.client("exporter")
    response = get(exporter, f"/v1/documents/{doc_id}/bundle")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.encd.bundle+jsonl"
    assert f'filename="{doc_id}.encd"' in response.headers["content-disposition"]
    report = bundles.verify_bundle(response.content, world.log_key.public)
    assert report.document == doc_id and doc_id in report.documents
    everything = get(world.client("auditor"), "/v1/export")
    assert everything.status_code == 200, everything.text
    full = bundles.verify_bundle(everything.content, world.log_key.public)
    assert full.entries == world.operator.service()["log_size"]


def test_the_signed_path_is_the_path_as_sent(world: World, doc_id: str) -> None:
    """``@path`` is the request target's path as sent, escapes and all (RFC 9421 §2.2.6):
    a client that signs what it sends is accepted, and a signature over one spelling of
    a path covers no other."""
    buyer = world.client("buyer")
    party = world.id("buyer")
    escaped = "/v1/parties/" + "".join(f"%{ord(c):02X}" for c in party[:2]) + party[2:]
    as_sent = Call(buyer, "GET", escaped)
    response = buyer.http.get(escaped, headers=sign(as_sent))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == party
    # signed over the plain path, sent escaped: not the request that was signed
    plain = Call(buyer, "GET", "/v1/parties/" + party)
    response = buyer.http.get(escaped, headers=sign(plain))
    assert_problem(response, 401, "unauthorized", "a path signed in another spelling")


def test_signature_parameters_in_any_order_are_accepted(world: World, doc_id: str) -> None:
    """RFC 9421 §2.3 signs the Signature-Input member as sent: a library that writes
    `keyid` and `alg` first signs over that order, and the service checks that."""
    buyer = world.client("buyer")
    call = Call(buyer, "GET", "/v1/parties/" + world.id("buyer"))
    for order in (("keyid", "alg", "created", "nonce"), ("alg", "nonce", "keyid", "created")):
        headers = sign(call, order=order)
        assert headers["signature-input"].split(";")[1].startswith(order[0])
        response = buyer.http.get(call.url, headers=headers)
        assert response.status_code == 200, response.text
        # the signature covers the order: the same member reordered is another request
        first, *rest = headers["signature-input"].split(";")
        moved = dict(headers, **{"signature-input": ";".join([first, *rest[1:], rest[0]])})
        response = send(call, moved)
        assert_problem(response, 401, "unauthorized", "parameters reordered")
        assert "does not verify" in response.json()["detail"]


def test_a_bank_asked_to_take_a_pledge_reads_the_document_while_the_proposal_is_open(
    world: World, doc_id: str
) -> None:
    """The holder's proposal shows the bank it asks the collateral (content, history and
    bundle, to audit before signing); a bank that proposes to itself is shown nothing, and
    the view ends with the proposal."""
    document = f"/v1/documents/{doc_id}"
    paths = [document, f"{document}/events", f"{document}/bundle"]
    bank, bank2 = world.client("bank"), world.client("bank2")
    for path in paths:
        assert_problem(get(bank, path), 403, "forbidden", f"bank GET {path} unasked")
    own = bank2.propose(bank2.next_event(doc_id, "pledge", pledge_body(world, "bank2")))
    assert own["state"] == "open" and own["missing"], own
    open_proposal(world, doc_id)  # the exporter asks the bank
    for path in paths:
        assert get(bank, path).status_code == 200, f"bank GET {path} asked"
        assert_problem(get(bank2, path), 403, "forbidden", f"bank2 GET {path} self-proposed")
    carrier = world.client("carrier")
    carrier.submit(carrier.next_event(doc_id, "milestone", MILESTONE))  # the head moves on
    for path in paths:
        assert_problem(get(bank, path), 403, "forbidden", f"bank GET {path} after")
