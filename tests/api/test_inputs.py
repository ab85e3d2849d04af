"""Bad input gets an RFC 9457 problem naming what is wrong, and changes nothing; never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from api.client import EVENT_TYPE, Client
from encd.canonical import canonical_bytes, parse_canonical
from encd.events import Event, assemble, make_event, sign_text
from tests.api.conftest import World
from tests.api.test_lifecycle import pledge_body
from tests.kit import T0, resign

MILESTONE = {
    "kind": "arrived",
    "location": {"locode": "CNQZH", "name": "Qinzhou"},
    "at": "2026-05-03T09:00:00Z",
}


def post(
    client: Client,
    path: str,
    body: bytes,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A correctly signed POST of ``body``, whatever it holds; the raw response."""
    query = urlencode(params or {})
    signed = client.signed_headers("POST", path, query, body)
    signed["content-type"] = EVENT_TYPE
    signed.update(headers or {})
    return client.http.post(path + ("?" + query if query else ""), content=body, headers=signed)


def get(client: Client, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
    query = urlencode(params or {})
    headers = client.signed_headers("GET", path, query, b"")
    return client.http.get(path + ("?" + query if query else ""), headers=headers)


def log_size(world: World) -> int:
    size: int = world.operator.service()["log_size"]
    return size


def problem_of(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    """The RFC 9457 problem in ``response``, checked for its status and shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"] == f"urn:encd:problem:{name}", problem
    assert problem["status"] == status
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and problem["detail"]
    return problem


def milestone(world: World, doc: str, label: str = "carrier") -> bytes:
    return world.client(label).next_event(doc, "milestone", MILESTONE, time_=T0)


def envelope_line(raw: bytes) -> bytes:
    return Event.parse(raw).text[:-1]


def signed_text(world: World, text: bytes, label: str = "carrier") -> bytes:
    """``text`` (any bytes, canonical or not) as an event signed by ``label``'s key."""
    return assemble(text, sign_text(text, [world.client(label).key]))


def changed_nothing(world: World, size: int) -> None:
    assert log_size(world) == size, "a refused request grew the log"


# --- size ---------------------------------------------------------------------------------


def test_oversized_body_is_413(world: World, doc_id: str) -> None:
    size = log_size(world)
    carrier = world.client("carrier")
    huge = b"x" * (512 * 1024 + 1)
    problem = problem_of(post(carrier, "/v1/events", huge), 413, "too-large")
    assert "512" in problem["detail"] or "524288" in problem["detail"]
    # streamed without a Content-Length: the limit holds while reading

    def chunks() -> Iterator[bytes]:
        for _ in range(9):
            yield b"y" * (64 * 1024)

    headers = carrier.signed_headers("POST", "/v1/events", "", b"z")
    streamed = carrier.http.post("/v1/events", content=chunks(), headers=headers)
    problem_of(streamed, 413, "too-large")
    changed_nothing(world, size)


# --- events that are not acceptable -----------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A body that must be refused: where it goes, and the problem it must get."""

    body: bytes
    status: int
    problem: str
    detail: str  # a part of the detail the reader needs
    field: str | None = None  # the problem's `field` (a prefix if it ends in "*")
    path: str = "/v1/events"
    sender: str = "carrier"


def bad_events(world: World, doc: str) -> dict[str, Bad]:
    carrier, exporter = world.client("carrier"), world.client("exporter")
    valid = milestone(world, doc)
    line = envelope_line(valid)
    value = parse_canonical(line)

    def signed(text: bytes, label: str = "carrier") -> bytes:
        return signed_text(world, text + b"\n", label)

    head = exporter.title(doc)
    pledge = make_event(
        [exporter.key],
        type="pledge",
        doc=doc,
        seq=head["seq"] + 1,
        prev=head["head"],
        time=T0,
        body={
            "pledgee": world.id("bank"),
            "loan_ref": "L-1",
            "amount": "100000.00",
            "currency": "USD",
            "registry_ref": "R-1",
            "maturity": "2026-08-01",
        },
    )
    floated = envelope_line(pledge).replace(b'"amount":"100000.00"', b'"amount":100000.5')
    event = Event.parse(valid)
    sig = event.signatures[0]
    flipped = bytes([sig.signature[0] ^ 1]) + sig.signature[1:]
    flipped_line = f"— {sig.name} {base64.b64encode(sig.key_hash + flipped).decode()}\n"
    other = resign(valid, [carrier.key], time="2026-05-01T08:00:01Z")
    huge_body = dict(MILESTONE, location={"locode": "CNQZH", "name": "Q" * 300_000})
    huge = make_event(
        [carrier.key], type="milestone", doc=doc, seq=1, prev="0" * 64, time=T0, body=huge_body
    )
    kind = b'"kind":"arrived"'
    party_path = f"/v1/parties/{world.id('carrier')}/events"
    cases = {
        "unknown envelope field": Bad(
            resign(valid, [carrier.key], extra="x"),
            422,
            "invalid-input",
            "event.extra: unknown field",
            "event.extra",
        ),
        "non-canonical envelope (spaces)": Bad(
            signed(json.dumps(value, sort_keys=True).encode()),
            422,
            "invalid-input",
            "not in canonical form",
        ),
        "non-canonical envelope (member order)": Bad(
            signed(json.dumps(dict(reversed(value.items())), separators=(",", ":")).encode()),
            422,
            "invalid-input",
            "not in canonical form",
        ),
        "duplicate key": Bad(
            signed(line.replace(b'"type":"milestone"', b'"type":"milestone","type":"milestone"')),
            422,
            "invalid-input",
            "type: duplicate object member name",
            "event.type",
        ),
        "a lone surrogate in the body": Bad(
            signed(line.replace(kind, b'"kind":"\\ud800"')),
            422,
            "invalid-input",
            "lone surrogate U+D800",
            "event.body.kind",
        ),
        "float amount": Bad(
            signed(floated, "exporter"),
            422,
            "invalid-input",
            "number 100000.5 is not an integer; use a decimal string",
            path="/v1/proposals",
            sender="exporter",
        ),
        "a control character in a reference": Bad(  # (an escape reaches a terminal)
            resign(pledge, [exporter.key], body__loan_ref="L-\x1b[2J1"),
            422,
            "invalid-input",
            "expected text without control characters, got U+001B",
            "body.loan_ref",
            path="/v1/proposals",
            sender="exporter",
        ),
        "a control character in a note": Bad(
            resign(valid, [carrier.key], body__note="arrived\x07"),
            422,
            "invalid-input",
            "expected text without control characters, got U+0007",
            "body.note",
        ),
        "integer amount": Bad(
            resign(pledge, [exporter.key], body__amount=100000),
            422,
            "invalid-input",
            "amount",
            "body.amount",
            path="/v1/proposals",
            sender="exporter",
        ),
        "unknown body field": Bad(
            resign(valid, [carrier.key], body__colour="blue"),
            422,
            "invalid-input",
            "unknown field",
            "body.colour",
        ),
        "body null": Bad(
            resign(valid, [carrier.key], body=None), 422, "invalid-input", "got null", "event.body"
        ),
        "body an array": Bad(
            resign(valid, [carrier.key], body=[]),
            422,
            "invalid-input",
            "got an array",
            "event.body",
        ),
        "bad event signature": Bad(
            event.text + b"\n" + flipped_line.encode(),
            422,
            "verification-failed",
            "does not verify",
        ),
        "signature over another text": Bad(
            event.text + b"\n" + other.split(b"\n\n", 1)[1],
            422,
            "verification-failed",
            "does not verify",
        ),
        "event over 256 KiB": Bad(huge, 422, "invalid-input", "more than 262144", "event"),
        "envelope version true": Bad(  # JSON's true is no 1, whatever Python says
            signed(line.replace(b'"v":1', b'"v":true')),
            422,
            "invalid-input",
            "expected envelope version 1, got true",
            "event.v",
        ),
        "envelope version 2": Bad(
            signed(line.replace(b'"v":1', b'"v":2')),
            422,
            "invalid-input",
            "expected envelope version 1, got the number 2",
            "event.v",
        ),
        "integer beyond 2**53": Bad(
            signed(line.replace(b'"v":1', b'"v":9007199254740993')),
            422,
            "invalid-input",
            "outside the exact range",
        ),
        "integer of 5000 digits": Bad(
            signed(line.replace(b'"v":1', b'"v":' + b"9" * 5000)),
            422,
            "invalid-input",
            "too many digits",
        ),
        "nested 10000 deep": Bad(
            signed(line.replace(kind, b'"kind":' + b"[" * 10_000 + b"]" * 10_000)),
            422,
            "invalid-input",
            "nested too deeply",
        ),
        "nested 900 deep": Bad(
            signed(line.replace(kind, b'"kind":' + b'{"a":' * 900 + b"1" + b"}" * 900)),
            422,
            "invalid-input",
            "body.kind",
            "body.kind",
        ),
    }
    not_events = {
        "empty body": b"",
        "garbage bytes": b"\x00\x01\x02garbage\xff\xfe",
        "non-UTF-8 bytes": b'{"v":1}\n\n\xe2\x80 carrier c2lnbmF0dXJl\n',
        "plain JSON": b'{"type":"milestone"}',
        "no signature lines": b'{"v":1}\n\n',
        "a control character": b'{"v":1}\x07\n\n\xe2\x80\x94 a b\n',
    }
    for name, body in not_events.items():
        for path in ("/v1/events", "/v1/proposals", party_path):
            cases[f"{name} to {path}"] = Bad(body, 422, "invalid-input", "event", "event*")
    return cases


def test_bad_events_get_a_problem_and_change_nothing(world: World, doc_id: str) -> None:
    size = log_size(world)
    failures = []
    for name, bad in bad_events(world, doc_id).items():
        response = post(world.client(bad.sender), bad.path, bad.body)
        try:
            problem = problem_of(response, bad.status, bad.problem)
            assert bad.detail in problem["detail"], problem["detail"]
            if bad.field is not None and bad.field.endswith("*"):
                assert problem.get("field", "").startswith(bad.field[:-1]), problem
            elif bad.field is not None:
                assert problem.get("field") == bad.field, problem
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)
    changed_nothing(world, size)
    assert world.client("auditor").proposals()["proposals"] == []


# --- documents and chains -------------------------------------------------------------------


def test_unknown_document(world: World, doc_id: str) -> None:
    size = log_size(world)
    auditor = world.client("auditor")
    for path in (
        "/v1/documents/CQ-NO-SUCH-DOC",
        "/v1/documents/CQ-NO-SUCH-DOC/events",
        "/v1/documents/CQ-NO-SUCH-DOC/title",
    ):
        problem = problem_of(get(auditor, path), 404, "not-found")
        assert "CQ-NO-SUCH-DOC" in problem["detail"]
    problem_of(get(auditor, "/v1/events/" + "0" * 64 + "/receipt"), 404, "not-found")
    problem_of(get(auditor, "/v1/proposals/" + "0" * 64), 404, "not-found")
    problem_of(get(auditor, "/v1/parties/91500000MA7000000K"), 404, "not-found")
    problem_of(get(auditor, "/v1/no/such/route"), 404, "not-found")
    # a NUL in the path (PostgreSQL's text cannot hold one: it was a 500 there)
    for path in (
        "/v1/documents/%00",
        "/v1/documents/CQ%00/title",
        "/v1/documents/%00/events",
        "/v1/documents/%00/bundle",
        "/v1/parties/%00",
        "/v1/events/%00/receipt",
        "/v1/proposals/%00",
    ):
        problem = problem_of(get(auditor, path), 404, "not-found")
        assert problem["detail"] == "no resource has a NUL character in its path", path
    # not the title's route, though they start and end as it does (the service answers that
    # route before its routing layer: these must still reach the layer's 404)
    for path in ("/v1/documents//title", f"/v1/documents/{doc_id}/extra/title"):
        problem = problem_of(get(auditor, path), 404, "not-found")
        assert problem["detail"] == f"no such resource: {path}", problem
    # an event for a document that was never issued
    carrier = world.client("carrier")
    raw = make_event(
        [carrier.key],
        type="milestone",
        doc="CQ-NO-SUCH-DOC",
        seq=1,
        prev="ab" * 32,
        time=T0,
        body=MILESTONE,
    )
    problem = problem_of(post(carrier, "/v1/events", raw), 404, "not-found")
    assert "CQ-NO-SUCH-DOC" in problem["detail"]
    problem_of(post(carrier, "/v1/proposals", raw), 404, "not-found")
    problem_of(post(carrier, "/v1/proposals/" + "0" * 64 + "/signatures", raw), 404, "not-found")
    # a signature for a proposal never made, on a document that is there
    exporter = world.client("exporter")
    pledge = exporter.next_event(doc_id, "pledge", pledge_body(world, "bank"))
    for pid in ("0" * 64, "xyz"):
        problem = problem_of(
            post(exporter, f"/v1/proposals/{pid}/signatures", pledge), 404, "not-found"
        )
        assert problem["detail"] == f"no proposal {pid}"
    assert world.client("auditor").proposals()["proposals"] == []
    # and a key change for a party never registered
    ghost = "91500000MA7000000K"
    change = make_event(
        [carrier.key],
        type="add_key",
        party=ghost,
        seq=1,
        prev="ab" * 32,
        time=T0,
        body={"key": "x"},
    )
    problem_of(post(carrier, f"/v1/parties/{ghost}/events", change), 404, "not-found")
    changed_nothing(world, size)


def test_malformed_envelope_problems_name_the_field(world: World, doc_id: str) -> None:
    line = envelope_line(milestone(world, doc_id))
    value = parse_canonical(line)
    cases = [
        json.dumps(value, sort_keys=True).encode(),  # not canonical
        line.replace(b'"type":"milestone"', b'"type":"milestone","type":"milestone"'),
        line.replace(b'"at":"2026-05-03T09:00:00Z"', b'"at":1.5'),
    ]
    for text in cases:
        problem = post(
            world.client("carrier"), "/v1/events", signed_text(world, text + b"\n")
        ).json()
        assert problem.get("field", "").startswith("event"), problem


def test_stale_prev_is_409(world: World, doc_id: str) -> None:
    carrier, agent = world.client("carrier"), world.client("agent")
    head = carrier.title(doc_id)
    first = carrier.next_event(doc_id, "milestone", MILESTONE)
    second = agent.next_event(doc_id, "milestone", dict(MILESTONE, kind="other"))
    receipt = carrier.submit(first)
    size = log_size(world)
    problem = problem_of(post(agent, "/v1/events", second), 409, "stale-event")
    assert problem["current_head"] == receipt["event_id"]
    assert problem["current_seq"] == head["seq"] + 1
    assert "chain broken" in problem["detail"]
    # an old event cannot be replayed at a later position either
    old = make_event(
        [carrier.key],
        type="milestone",
        doc=doc_id,
        seq=head["seq"] + 1,
        prev=head["head"],
        time=T0,
        body=dict(MILESTONE, note="late"),
    )
    problem_of(post(carrier, "/v1/events", old), 409, "stale-event")
    changed_nothing(world, size)


def test_two_transfers_from_one_head_cannot_both_succeed(world: World, doc_id: str) -> None:
    exporter = world.client("exporter")
    to_buyer = exporter.next_event(doc_id, "transfer", {"to": world.id("buyer")})
    to_bank = exporter.next_event(doc_id, "transfer", {"to": world.id("bank2")})
    size = log_size(world)
    clients = [Client(world.url, exporter.key) for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(lambda c, raw: post(c, "/v1/events", raw), clients, [to_buyer, to_bank])
            )
    finally:
        for client in clients:
            client.close()
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    won = next(a for a in answers if a.status_code == 201).json()
    lost = next(a for a in answers if a.status_code == 409).json()
    assert lost["current_head"] == won["event_id"]
    assert log_size(world) == size + 1
    winner = world.id("buyer") if answers[0].status_code == 201 else world.id("bank2")
    assert exporter.title(doc_id)["holder"] == winner


def test_same_event_twice_returns_the_first_receipt(world: World, doc_id: str) -> None:
    carrier = world.client("carrier")
    raw = milestone(world, doc_id)
    first = post(carrier, "/v1/events", raw)
    assert first.status_code == 201
    size = log_size(world)
    world.client("agent").submit(milestone(world, doc_id, "agent"))  # the log moves on
    again = post(carrier, "/v1/events", raw)
    assert again.status_code == 200, again.text
    one, two = first.json(), again.json()
    assert not one["duplicate"] and two["duplicate"]
    assert {k: v for k, v in one.items() if k != "duplicate"} == {
        k: v for k, v in two.items() if k != "duplicate"
    }
    assert log_size(world) == size + 1
    # the receipt endpoint gives it again, too
    assert carrier.get(f"/v1/events/{one['event_id']}/receipt") == one


# --- query parameters and headers -------------------------------------------------------------


BAD_QUERIES: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/log/inclusion", {"index": "abc", "size": 1}, "index"),
    ("/v1/log/inclusion", {"index": 0, "size": "1.5"}, "size"),
    ("/v1/log/inclusion", {"index": -1, "size": 1}, "index"),
    ("/v1/log/inclusion", {"index": 0, "size": 0}, "size"),
    ("/v1/log/inclusion", {"size": 1}, "index"),
    ("/v1/log/inclusion", {"index": 5, "size": 3}, "index"),
    ("/v1/log/inclusion", {"index": 0, "size": 10**6}, "size"),
    ("/v1/log/inclusion", {"index": 0, "size": 10**30}, "size"),
    ("/v1/log/consistency", {"size1": 3, "size2": 2}, "size1"),
    ("/v1/log/consistency", {"size1": "x", "size2": 2}, "size1"),
    ("/v1/log/consistency", {"size1": 1, "size2": 10**6}, "size2"),
    # plain decimal digits only: int() alone would read each of these
    ("/v1/log/inclusion", {"index": 0, "size": "1_0"}, "size"),
    ("/v1/log/inclusion", {"index": 0, "size": "+1"}, "size"),
    ("/v1/log/inclusion", {"index": 0, "size": " 1"}, "size"),
    ("/v1/log/inclusion", {"index": "\u0660", "size": 1}, "index"),  # an Arabic-Indic zero
    ("/v1/log/consistency", {"size1": "1_0", "size2": 20}, "size1"),
]


def test_bad_query_params_and_headers(world: World, doc_id: str) -> None:
    for path, params, field in BAD_QUERIES:
        problem = problem_of(world.operator.http.get(path, params=params), 422, "invalid-input")
        assert problem["field"] == field, (path, params, problem)
    exporter = world.client("exporter")
    raw = exporter.next_event(doc_id, "transfer", {"to": world.id("buyer")})
    for ttl in ("soon", 5, "6_0", 24 * 3600 + 1, 10**25):  # over 24 h: refused, not cut
        problem = problem_of(
            post(exporter, "/v1/proposals", raw, params={"ttl": ttl}), 422, "invalid-input"
        )
        assert problem["field"] == "ttl", (ttl, problem)
    for last in ("yesterday", "1_0", "+3", "-2", str(2**63 - 1), "9" * 26):
        # (2**63 - 1 reached the store, and the stream broke off with an OverflowError)
        headers = exporter.signed_headers("GET", "/v1/stream", "", b"") | {"last-event-id": last}
        problem = problem_of(exporter.http.get("/v1/stream", headers=headers), 422, "invalid-input")
        assert problem["field"] == "last-event-id", (last, problem)
    response = world.operator.http.delete("/v1/events")
    problem = problem_of(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "POST"
    assert problem["detail"] == "DELETE is not a method of /v1/events; it takes POST"


def test_a_trailing_slash_is_another_path_not_a_redirect(world: World, doc_id: str) -> None:
    for method, path in (("GET", "/v1/service/"), ("POST", "/v1/events/"), ("GET", "/healthz/")):
        response = world.operator.http.request(method, path, headers={"host": "evil.example"})
        problem = problem_of(response, 404, "not-found")
        assert "location" not in response.headers
        assert problem["detail"] == f"no such resource: {path}"


def test_head_is_get_without_its_body(world: World, doc_id: str) -> None:
    http = world.operator.http
    for path in ("/healthz", "/log/checkpoint", "/v1/service", "/"):
        got, head = http.get(path), http.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
    # signed: the signature covers the method sent, HEAD
    buyer = world.client("buyer")
    path = f"/v1/documents/{doc_id}/title"
    head = buyer.http.head(path, headers=buyer.signed_headers("HEAD", path, "", b""))
    assert head.status_code == 200 and head.content == b""
    signed_for_get = buyer.signed_headers("GET", path, "", b"")
    refused = buyer.http.head(path, headers=signed_for_get)
    assert refused.status_code == 401 and refused.content == b""


# --- fuzz -----------------------------------------------------------------------------------


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, byte-level edits of a valid event, and JSON-level edits of its envelope
    (kept with the original signature lines, so none of them may be appended)."""
    text, _, signatures = valid.partition(b"\n\n")
    envelope = parse_canonical(text)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )

    @st.composite
    def byte_edit(draw: st.DrawFn) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
            if op == "flip" and at < len(data):
                data[at] ^= draw(st.integers(1, 255))
            elif op == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif op == "delete":
                del data[at : at + draw(st.integers(1, 16))]
            else:
                del data[at:]
        return bytes(data)

    @st.composite
    def json_edit(draw: st.DrawFn) -> bytes:
        value = json.loads(json.dumps(envelope))
        target = value if draw(st.booleans()) else value["body"]
        key = draw(st.sampled_from([*target.keys(), "extra", ""]))
        if draw(st.booleans()) and key in target:
            del target[key]
        else:
            target[key] = draw(json_values)
        try:
            line = canonical_bytes(value)
        except Exception:  # floats and the like: written as plain JSON instead
            line = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        return line + b"\n\n" + signatures

    return st.one_of(st.binary(max_size=600), byte_edit(), json_edit())


def test_envelope_type_that_is_not_a_string(world: World, doc_id: str) -> None:
    line = envelope_line(milestone(world, doc_id))
    for bad in (b"[]", b"{}"):
        text = line.replace(b'"type":"milestone"', b'"type":' + bad) + b"\n"
        response = post(world.client("carrier"), "/v1/events", signed_text(world, text))
        problem = problem_of(response, 422, "invalid-input")
        assert problem["field"] == "event.type"


def test_non_ascii_in_a_signature_line(world: World, doc_id: str) -> None:
    text = Event.parse(milestone(world, doc_id)).text
    for junk in ("\u00e9", "\u0080", "\u4e2d"):
        raw = text + f"\n— {world.id('carrier')} AAAA{junk}AAAA\n".encode()
        problem = problem_of(post(world.client("carrier"), "/v1/events", raw), 422, "invalid-input")
        assert problem["field"].startswith("event signature line 1"), problem


class FuzzTarget:
    """The server, a valid event to mutate, and the log size nothing may change."""

    def __init__(self, world: World, valid: bytes) -> None:
        self.world, self.valid, self.size = world, valid, log_size(world)

    def __repr__(self) -> str:  # Hypothesis prints its arguments; keep it short
        return f"FuzzTarget({self.world.url}, log size {self.size})"


@pytest.fixture()
def fuzz_target(world: World, doc_id: str) -> FuzzTarget:
    return FuzzTarget(world, milestone(world, doc_id))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_never_500_and_never_appends(fuzz_target: FuzzTarget, data: st.DataObject) -> None:
    world, valid, size = fuzz_target.world, fuzz_target.valid, fuzz_target.size
    body = data.draw(mutations(valid), label="body")
    assume(body != valid)
    path = data.draw(st.sampled_from(["/v1/events", "/v1/proposals"]), label="path")
    response = post(world.client("carrier"), path, body)
    assert response.status_code < 500, response.text
    assert response.status_code >= 400, response.text
    if response.status_code != 413:
        assert response.headers["content-type"] == "application/problem+json"
    assert log_size(world) == size


def test_a_party_is_registered_only_through_its_own_route(world: World, doc_id: str) -> None:
    """``POST /v1/parties/{id}/events`` takes key and role changes; a ``register`` posted
    there is refused and registers nobody (POST /v1/parties is the one way in)."""
    from encd.keys import SigningKey
    from tests.kit import uscc

    newcomer = uscc("91500116770800000")
    key = SigningKey.generate(newcomer)
    raw = make_event(
        [world.operator.key],
        type="register",
        party=newcomer,
        seq=0,
        prev=None,
        time=T0,
        body={"name": "Late Freight Co", "roles": ["trader"], "keys": [key.public.vkey]},
    )
    size = world.operator.service()["log_size"]
    problem = problem_of(
        post(world.operator, f"/v1/parties/{newcomer}/events", raw), 422, "invalid-input"
    )
    assert problem["field"] == "event.type" and "POST /v1/parties" in problem["detail"]
    assert world.operator.service()["log_size"] == size
    problem_of(
        world.operator.http.get(
            f"/v1/parties/{newcomer}",
            headers=world.operator.signed_headers("GET", f"/v1/parties/{newcomer}", "", b""),
        ),
        404,
        "not-found",
    )
    assert world.operator.register(raw)["party"]["id"] == newcomer  # where it belongs


def test_an_id_of_any_length_is_abridged_in_what_is_said_of_it(world: World) -> None:
    bank = world.client("bank")
    long_id = "X" * 5000
    for path in (f"/v1/parties/{long_id}", f"/v1/proposals/{long_id}"):
        response = bank.http.get(path, headers=bank.signed_headers("GET", path, "", b""))
        detail = problem_of(response, 404, "not-found")["detail"]
        assert detail.endswith("X… (5000 characters)") and len(detail) < 200, detail


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/v1/log/inclusion", [("index", "1"), ("index", "2"), ("size", "6")], "index"),
        ("/v1/log/consistency", [("size1", "1"), ("size2", "6"), ("size1", "2")], "size1"),
        ("/v1/export", [("witnessed", "true"), ("witnessed", "false")], "witnessed"),
        ("/v1/proposals", [("limit", "1"), ("limit", "2")], "limit"),
        ("/v1/proposals", [("after", "a"), ("limit", "2"), ("af%74er", "b")], "after"),
    ],
)
def test_a_query_parameter_given_twice_is_refused_by_name(
    world: World, path: str, query: list[tuple[str, str]], name: str
) -> None:
    """Which of two values was meant cannot be known: a 422 naming it, not the last one."""
    auditor = world.client("auditor")
    text = "&".join(f"{k}={v}" for k, v in query)
    headers = auditor.signed_headers("GET", path, text, b"")
    problem = problem_of(auditor.http.get(f"{path}?{text}", headers=headers), 422, "invalid-input")
    assert problem["field"] == name and "more than once" in problem["detail"]


def test_witness_may_be_given_more_than_once(world: World) -> None:
    auditor = world.client("auditor")
    query = "witnessed=2&witness=a%2B00000000&witness=b%2B00000000"
    headers = auditor.signed_headers("GET", "/v1/export", query, b"")
    problem = problem_of(auditor.http.get(f"/v1/export?{query}", headers=headers), 404, "not-found")
    assert "cosigned by 2 witnesses of a+00000000, b+00000000" in problem["detail"]
