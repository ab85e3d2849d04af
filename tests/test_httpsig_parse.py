"""encd.httpsig's structured fields: strings (the one-step parse agrees with the walk),
Signature-Input, and Content-Digest (RFC 9530)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encd.errors import InvalidInput, VerificationError
from encd.httpsig import Request as SignedRequest
from encd.httpsig import (
    _Parser,
    check_content_digest,
    content_digest,
    parse_signature,
    sign_request,
)
from tests.kit import seeded_key


def _outcome(text: str, walk: bool) -> tuple[str, object, int]:
    parser = _Parser(text, "f")
    try:
        value = parser.string_walk() if walk else parser.string()
    except InvalidInput as exc:
        return "error", str(exc), parser.pos
    return "ok", value, parser.pos


@given(
    st.text(alphabet=st.sampled_from(['"', "\\", "a", " ", "~", "\x1f", "\x7f", "é", ";"]))
    | st.builds(lambda s: f'"{s}"', st.text())
)
def test_the_one_step_string_parse_agrees_with_the_walk(text: str) -> None:
    assert _outcome(text, walk=False) == _outcome(text, walk=True)


@pytest.mark.parametrize(
    ("text", "value"),
    [('"abc"', "abc"), ('""', ""), ('"a\\"b"', 'a"b'), ('"a\\\\b"', "a\\b"), ('"\\\\\\""', '\\"')],
)
def test_escapes_are_undone(text: str, value: str) -> None:
    assert _Parser(text, "f").string() == value


def test_a_signed_request_parses_back() -> None:
    key = seeded_key("encd.test/party", "bank")
    request = SignedRequest(
        "POST", "localhost:8000", "/v1/events", "", {"content-digest": "sha-256=:x:"}
    )
    headers = sign_request(request, key, 1767225600, "n0nce-0123456789", with_digest=True)
    parsed = parse_signature(headers["signature-input"], headers["signature"])
    assert parsed.params.nonce == "n0nce-0123456789" and parsed.params.created == 1767225600
    assert parsed.params.keyid == key.public.key_id and len(parsed.signature) == 64
    assert parsed.params.components[-1] == "content-digest"


@pytest.mark.parametrize("created", ['"1767225600"', "abc", "*x", ""])
def test_created_must_be_an_integer(created: str) -> None:
    key = seeded_key("encd.test/party", "bank")
    request = SignedRequest("GET", "localhost:8000", "/v1/log", "", {})
    headers = sign_request(request, key, 1767225600, "n0nce-0123456789", with_digest=False)
    signature_input = headers["signature-input"].replace(
        "created=1767225600", f"created={created}" if created else "created"
    )
    with pytest.raises(InvalidInput, match="created must be an integer time"):
        parse_signature(signature_input, headers["signature"])


@pytest.mark.parametrize(
    ("quoted", "bare", "message"),
    [
        ('alg="ed25519"', "alg=ed25519", "alg must be the quoted string"),
        ('nonce="n0nce-0123456789"', "nonce=n0nce-0123456789", "nonce must be a quoted string"),
    ],
)
def test_string_parameters_must_be_quoted(quoted: str, bare: str, message: str) -> None:
    """A token of the same letters is another Signature-Input than the one signed."""
    key = seeded_key("encd.test/party", "bank")
    request = SignedRequest("GET", "localhost:8000", "/v1/log", "", {})
    headers = sign_request(request, key, 1767225600, "n0nce-0123456789", with_digest=False)
    assert quoted in headers["signature-input"]
    with pytest.raises(InvalidInput, match=message):
        parse_signature(headers["signature-input"].replace(quoted, bare), headers["signature"])


BODY = b"an event's bytes"


@pytest.mark.parametrize(
    "header",
    [
        content_digest(BODY),
        content_digest(BODY) + ", sha-512=:" + "A" * 88 + ":",  # another algorithm beside it
        "sha-512=:" + "A" * 88 + ":, " + content_digest(BODY),
    ],
)
def test_a_content_digest_of_the_body_is_taken(header: str) -> None:
    check_content_digest(header, BODY)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        # the base64 without RFC 8941's colons: a token, not a byte sequence
        (content_digest(BODY).replace(":", ""), "sha-256 must be a byte sequence"),
        (content_digest(BODY)[:-1], "unterminated byte sequence"),
        ('sha-256="' + content_digest(BODY)[9:-1] + '"', "sha-256 must be a byte sequence"),
        ("sha-256=:" + base64.b64encode(bytes(31)).decode() + ":", "of 32 bytes"),
        ("sha-256=:not base64!:", "not base64"),
        ("SHA-256=" + content_digest(BODY)[8:], "expected a key"),
        ("md5=:" + base64.b64encode(bytes(16)).decode() + ":", "expected a sha-256 digest"),
        ("", "expected a key"),
    ],
)
def test_a_content_digest_that_is_not_rfc_9530_is_named_so(header: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as raised:
        check_content_digest(header, BODY)
    assert raised.value.field == "content-digest"


def test_a_content_digest_of_another_body_does_not_verify() -> None:
    with pytest.raises(VerificationError, match="does not match"):
        check_content_digest(content_digest(b"another body"), BODY)


def _signed_input() -> tuple[str, str]:
    key = seeded_key("encd.test/party", "bank")
    request = SignedRequest("GET", "localhost:8000", "/v1/log", "", {})
    headers = sign_request(request, key, 1767225600, "n0nce-0123456789", with_digest=False)
    return headers["signature-input"], headers["signature"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t + ';nonce="n0nce-9876543210"', "parameter 'nonce' comes a second time"),
        (lambda t: t + ";created=1767225601", "parameter 'created' comes a second time"),
        (lambda t: t.replace('("@method"', '("@method" "@method"'), "'@method' is covered twice"),
        (lambda t: t + ", " + t, "member 'encd' comes a second time"),
    ],
)
def test_what_comes_twice_in_signature_input_is_refused(change: object, message: str) -> None:
    """api.md §3: each parameter, component and label once (RFC 8941 would keep the last
    silently, and the signature base would be built from another text than was sent)."""
    signature_input, signature = _signed_input()
    with pytest.raises(InvalidInput, match=message) as refused:
        parse_signature(change(signature_input), signature)  # type: ignore[operator]
    assert refused.value.field == "signature-input"


def test_spaces_after_a_parameter_s_semicolon_are_read_as_rfc_8941_allows() -> None:
    signature_input, signature = _signed_input()
    spaced = signature_input.replace(";", "; ")
    assert spaced != signature_input
    assert parse_signature(spaced, signature) == parse_signature(signature_input, signature)
