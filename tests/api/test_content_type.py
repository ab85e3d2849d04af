"""Every POST takes one media type, application/vnd.encd.event: any other is 415 and changes nothing.

The Content-Type is checked before the signature, so a refused request
consumes no nonce: the very same signed headers, sent again with the right
type, succeed.  That is how each test below shows nothing changed, beside
the log size and every proposal's signers.
"""

from __future__ import annotations

import httpx
import pytest

from api.client import EVENT_TYPE
from api.media import content_type_mismatch
from tests.api.conftest import World
from tests.api.test_auth import ROUTES, Call, assert_problem, sign, snapshot, submit_event

WRONG: list[tuple[str, list[tuple[bytes, bytes]]]] = [
    ("no Content-Type", []),
    ("application/json", [(b"content-type", b"application/json")]),
    ("text/plain", [(b"content-type", b"text/plain; charset=utf-8")]),
    ("a form (curl -d)", [(b"content-type", b"application/x-www-form-urlencoded")]),
    ("a longer subtype", [(b"content-type", b"application/vnd.encd.events")]),
    ("a list", [(b"content-type", b"application/vnd.encd.event, text/plain")]),
    ("another charset", [(b"content-type", b"application/vnd.encd.event; charset=latin-1")]),
    ("an unknown parameter", [(b"content-type", b"application/vnd.encd.event; version=2")]),
    ("not Latin-1 text", [(b"content-type", b"application/vnd.encd.event\xff\xfe")]),
    (
        "sent twice",
        [(b"content-type", EVENT_TYPE.encode()), (b"content-type", EVENT_TYPE.encode())],
    ),
]
ACCEPTED = [
    EVENT_TYPE,
    "Application/VND.ENCD.Event",
    "application/vnd.encd.event; charset=utf-8",
    'application/vnd.encd.event ;CHARSET="UTF-8"',
    "application/vnd.encd.event;",
]


def post(
    call: Call, headers: dict[str, str], content_type: list[tuple[bytes, bytes]], body: bytes
) -> httpx.Response:
    """``call`` with the signed ``headers`` and exactly the Content-Type lines given."""
    raw = [(k.encode(), v.encode()) for k, v in headers.items() if k != "content-type"]
    return call.client.http.request(call.method, call.url, content=body, headers=raw + content_type)


def refused_415(world: World, call: Call, headers: dict[str, str], what: str) -> None:
    for name, content_type in WRONG:
        context = f"{what}, {name}"
        before = snapshot(world)
        response = post(call, headers, content_type, call.body)
        assert_problem(response, 415, "unsupported-media-type", context)
        problem = response.json()
        assert problem["field"] == "content-type", context
        assert problem["expected"] == [EVENT_TYPE], context
        assert problem["detail"].startswith(f"Content-Type: expected {EVENT_TYPE}"), context
        assert response.headers["accept-post"] == EVENT_TYPE, context
        assert snapshot(world) == before, f"{context}: a refused request changed the ledger"


def test_every_post_refuses_another_media_type_and_changes_nothing(
    world: World, doc_id: str
) -> None:
    failures = []
    for route, build in ROUTES.items():
        call = build(world, doc_id)
        headers = sign(call)  # one nonce for every attempt
        try:
            refused_415(world, call, headers, route)
            # nothing was consumed: the same signed request, now with its type, goes through
            good = post(call, headers, [(b"content-type", EVENT_TYPE.encode())], call.body)
            assert good.status_code in (200, 201), f"{route}, the good request: {good.text}"
        except AssertionError as exc:
            failures.append(f"{route}: {exc}")
    assert not failures, "\n".join(failures)


def test_the_event_type_in_any_case_and_with_charset_utf8_is_accepted(
    world: World, doc_id: str
) -> None:
    for content_type in ACCEPTED:
        call = submit_event(world, doc_id)
        response = post(call, sign(call), [(b"content-type", content_type.encode())], call.body)
        assert response.status_code == 201, f"{content_type}: {response.text}"


def test_the_type_is_checked_before_the_signature_and_after_the_size(
    world: World, doc_id: str
) -> None:
    call = submit_event(world, doc_id)
    plain = [(b"content-type", b"text/plain")]
    before = snapshot(world)
    # unsigned, or signed by nobody registered: the body's type is refused first (415, not 401)
    assert_problem(post(call, {}, plain, call.body), 415, "unsupported-media-type", "unsigned")
    # with the right type the same unsigned request is 401
    typed = [(b"content-type", EVENT_TYPE.encode())]
    assert_problem(post(call, {}, typed, call.body), 401, "unauthorized", "unsigned, typed")
    # a body over the limit is 413 whatever its type
    huge = b"x" * (512 * 1024 + 1)
    assert_problem(post(call, sign(call, body=huge), plain, huge), 413, "too-large", "huge")
    # no body: no type to check; the route says what is missing
    empty = Call(call.client, "POST", "/v1/events")
    problem = post(empty, sign(empty), plain, b"")
    assert_problem(problem, 422, "invalid-input", "an empty body")
    assert snapshot(world) == before


@pytest.mark.parametrize(
    ("values", "wrong"),
    [
        ([EVENT_TYPE], None),
        (["APPLICATION/vnd.encd.EVENT"], None),
        ([" application/vnd.encd.event ;\tcharset=utf-8 "], None),
        (['application/vnd.encd.event; charset="utf-8"'], None),
        (["application/vnd.encd.event;;"], None),
        ([], f"expected {EVENT_TYPE}, got none"),
        ([EVENT_TYPE, EVENT_TYPE], f"expected {EVENT_TYPE} once, got 2 Content-Type fields"),
        (["text/plain"], f"expected {EVENT_TYPE}, got 'text/plain'"),
        ([""], f"expected {EVENT_TYPE}, got ''"),
        (
            [f"{EVENT_TYPE}; charset=utf-16"],
            f"expected {EVENT_TYPE} with no parameter other than charset=utf-8, "
            f"got '{EVENT_TYPE}; charset=utf-16'",
        ),
        (
            [f"{EVENT_TYPE}; charset"],
            f"expected {EVENT_TYPE} with no parameter other than charset=utf-8, "
            f"got '{EVENT_TYPE}; charset'",
        ),
        (
            [f'{EVENT_TYPE}; charset="'],
            f"expected {EVENT_TYPE} with no parameter other than charset=utf-8, "
            f"got '{EVENT_TYPE}; charset=\"'",
        ),
    ],
)
def test_content_type_rule(values: list[str], wrong: str | None) -> None:
    assert content_type_mismatch(values, EVENT_TYPE) == wrong
