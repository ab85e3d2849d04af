"""@authority pinning: a request signed for another deployment is refused (401), changing nothing.

A service started with ``Settings.authorities`` (``encd serve --authority``,
ENCD_AUTHORITY) answers signed requests only for those ``host[:port]``
names, compared case-insensitively; without it, any @authority is taken
(the default, for local use).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from typing import Any

import httpx
import pytest

from api.client import EVENT_TYPE, Client, ProblemError
from api.server import running
from api.settings import Settings, parse_authorities
from encd.errors import InvalidInput
from encd.events import make_event
from encd.httpsig import Request as SignedRequest
from encd.httpsig import (
    content_digest,
    normal_authority,
    parse_signature,
    sign_request,
    verify_request,
)
from encd.keys import SigningKey
from tests.api.conftest import World
from tests.kit import T0, uscc

PUBLIC = "ledger.example.com"
PINNED = "Ledger.Example.com, 127.0.0.1:8080"  # as an operator might write it


def signed(
    key: SigningKey,
    method: str,
    path: str,
    *,
    signed_for: str,
    host: str | None = None,
    body: bytes = b"",
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers of a request signed for ``signed_for`` and sent with Host ``host`` (the same)."""
    headers = {"content-digest": content_digest(body)} if body else {}
    request = SignedRequest(method, signed_for, path, "", headers)
    nonce = nonce or secrets.token_urlsafe(16)
    headers |= sign_request(request, key, int(time.time()), nonce, bool(body))
    headers["host"] = host or signed_for
    if body:
        headers["content-type"] = EVENT_TYPE
    return headers


def registration(operator: SigningKey, party: str) -> bytes:
    newcomer = SigningKey(party, bytes(32))
    return make_event(
        [operator],
        type="register",
        party=party,
        seq=0,
        prev=None,
        time=T0,
        body={"name": "Newcomer Trading", "roles": ["trader"], "keys": [newcomer.public.vkey]},
    )


def problem(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:encd:problem:{name}" and body["status"] == status, body
    return body


def test_a_request_signed_for_another_deployment_is_401_and_changes_nothing(
    settings: Settings,
) -> None:
    pinned = replace(settings, authorities=parse_authorities(PINNED))
    assert pinned.authorities == {PUBLIC, "127.0.0.1:8080"}
    with running(pinned) as url:
        here = url.removeprefix("http://")  # 127.0.0.1:<some port>: not a pinned name
        service = httpx.get(url + "/v1/service").json()  # the public routes are not pinned
        key = SigningKey.load(service["operator"], pinned.data_dir / "operator.key")
        size = service["log_size"]

        def log_size() -> int:
            answer: int = httpx.get(url + "/v1/service").json()["log_size"]
            return answer

        with httpx.Client(base_url=url) as http:
            raw = registration(key, uscc("91500000MA7000000"))
            nonce = secrets.token_urlsafe(16)
            for signed_for, host in [(here, here), ("other.example", "other.example")]:
                headers = signed(
                    key,
                    "POST",
                    "/v1/parties",
                    body=raw,
                    nonce=nonce,
                    signed_for=signed_for,
                    host=host,
                )
                refused = problem(
                    http.post("/v1/parties", content=raw, headers=headers), 401, "unauthorized"
                )
                assert refused["field"] == "@authority"
                assert refused["expected"] == ["127.0.0.1:8080", PUBLIC]
                assert refused["detail"] == (
                    f"@authority: expected 127.0.0.1:8080 or {PUBLIC} (the names this service "
                    f"answers to), got '{host}' (the Host header)"
                )
                assert log_size() == size
            # signed for another deployment, sent with our Host: the signature does not verify
            headers = signed(
                key,
                "POST",
                "/v1/parties",
                body=raw,
                nonce=nonce,
                signed_for="other.example",
                host=PUBLIC,
            )
            refused = problem(
                http.post("/v1/parties", content=raw, headers=headers), 401, "unauthorized"
            )
            assert "does not verify" in refused["detail"] and refused["field"] == "signature"
            assert log_size() == size
            # the nonce of those refusals was not consumed: signed for us, it goes through,
            # in any case of the name
            headers = signed(
                key, "POST", "/v1/parties", body=raw, nonce=nonce, signed_for="LEDGER.example.COM"
            )
            accepted = http.post("/v1/parties", content=raw, headers=headers)
            assert accepted.status_code == 201, accepted.text
            assert log_size() == size + 1
            # reads are pinned too
            path = f"/v1/parties/{service['operator']}"
            refused = problem(
                http.get(path, headers=signed(key, "GET", path, signed_for=here)),
                401,
                "unauthorized",
            )
            assert refused["field"] == "@authority"
            empty_host = signed(key, "GET", path, signed_for="")
            refused = problem(http.get(path, headers=empty_host), 401, "unauthorized")
            assert refused["field"] == "@authority" and "got ''" in refused["detail"]
        # the Python client, told the public name, works through the local address
        with Client(url, key, authority=PUBLIC) as client:
            assert client.party(service["operator"])["id"] == service["operator"]
        with Client(url, key) as client, pytest.raises(ProblemError) as refused_client:
            client.party(service["operator"])
        assert refused_client.value.status == 401
        assert refused_client.value.problem["field"] == "@authority"


def test_without_the_setting_any_authority_is_taken(world: World) -> None:
    """The default (local use): @authority is signed and verified, never compared."""
    path = f"/v1/parties/{world.operator.key.name}"
    headers = signed(world.operator.key, "GET", path, signed_for="elsewhere.example:9999")
    response = world.operator.http.get(path, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", set()),
        ("  ", set()),
        ("ledger.example.com", {"ledger.example.com"}),
        (" Ledger.Example.COM , 127.0.0.1:8080", {"ledger.example.com", "127.0.0.1:8080"}),
        ("[::1]:8080,LOCALHOST", {"[::1]:8080", "localhost"}),
        # a default port is no part of the name (RFC 9110 §4.2.3)
        ("ledger.example.com:443,ledger.example.com:80", {"ledger.example.com"}),
        ("[::1]:443", {"[::1]"}),
    ],
)
def test_authorities_setting(text: str, names: set[str]) -> None:
    assert parse_authorities(text) == names
    assert Settings(authorities=frozenset(names)).authorities == names


@pytest.mark.parametrize(
    "text",
    ["https://ledger.example.com", "ledger.example.com/", "a,,b", "a,", "host:port", "a b", "u@h"],
)
def test_authorities_setting_refuses_what_is_not_host_and_port(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_authorities(text)
    assert refused.value.field == "authority"
    assert "expected host[:port]" in refused.value.reason


@pytest.mark.parametrize(
    ("written", "scheme", "normal"),
    [
        ("Ledger.Example.COM", None, "ledger.example.com"),
        ("ledger.example.com:443", "https", "ledger.example.com"),
        ("ledger.example.com:80", "http", "ledger.example.com"),
        ("ledger.example.com:443", "http", "ledger.example.com:443"),
        ("ledger.example.com:80", "https", "ledger.example.com:80"),
        ("ledger.example.com:443", None, "ledger.example.com"),
        ("ledger.example.com:8443", None, "ledger.example.com:8443"),
        ("[2001:db8::1]:443", None, "[2001:db8::1]"),
        ("[2001:db8::443]", None, "[2001:db8::443]"),
        ("127.0.0.1:80", None, "127.0.0.1"),
        ("", None, ""),
        (":443", None, ":443"),
    ],
)
def test_the_authority_a_signature_covers_drops_the_default_port(
    written: str, scheme: str | None, normal: str
) -> None:
    assert normal_authority(written, scheme) == normal


def test_the_client_signs_the_authority_its_host_header_names() -> None:
    """httpx writes ``Host: ledger.example.com`` for ``https://ledger.example.com:443``:
    the client signs that, not the port it was given."""
    key = SigningKey(uscc("91500000MA7000000"), bytes(32))
    with Client("https://Ledger.Example.com:443", key) as client:
        headers = client.signed_headers("GET", "/v1/service", "", b"")
        sent = client.http.build_request("GET", "/v1/service").headers["host"]
    assert sent == "ledger.example.com"
    parsed = parse_signature(headers["signature-input"], headers["signature"])
    verify_request(SignedRequest("GET", sent, "/v1/service", "", {}), parsed, key.public, False)


def test_a_host_header_that_keeps_a_default_port_is_taken_either_way(settings: Settings) -> None:
    """A library may send ``Host: ledger.example.com:443`` and sign ``ledger.example.com``
    (RFC 9421 §2.2.3), or sign the Host as written; both verify, pinned or not."""
    pinned = replace(settings, authorities=parse_authorities(f"{PUBLIC}:443"))
    assert pinned.authorities == {PUBLIC}
    with running(pinned) as url:
        service = httpx.get(url + "/v1/service").json()
        key = SigningKey.load(service["operator"], pinned.data_dir / "operator.key")
        path = f"/v1/parties/{service['operator']}"
        with httpx.Client(base_url=url) as http:
            for signed_for, host in [
                (PUBLIC, f"{PUBLIC}:443"),
                (f"{PUBLIC}:443", f"{PUBLIC}:443"),
                (PUBLIC, PUBLIC),
                (PUBLIC, f"{PUBLIC.upper()}:80"),
            ]:
                headers = signed(key, "GET", path, signed_for=signed_for, host=host)
                answer = http.get(path, headers=headers)
                assert answer.status_code == 200, (signed_for, host, answer.text)
            # the port still counts when it is not a default one, and so does the name
            for signed_for, host in [(f"{PUBLIC}:8443", f"{PUBLIC}:8443"), (PUBLIC, "x.example")]:
                headers = signed(key, "GET", path, signed_for=signed_for, host=host)
                refused = problem(http.get(path, headers=headers), 401, "unauthorized")
                assert refused["field"] == "@authority"
            # signed with a default port that the Host header does not send: does not verify
            headers = signed(key, "GET", path, signed_for=f"{PUBLIC}:443", host=PUBLIC)
            refused = problem(http.get(path, headers=headers), 401, "unauthorized")
            assert "does not verify" in refused["detail"]
