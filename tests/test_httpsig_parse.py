"""encd.httpsig's structured-field strings: the one-step parse agrees with the walk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encd.errors import InvalidInput
from encd.httpsig import Request as SignedRequest
from encd.httpsig import _Parser, parse_signature, sign_request
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
