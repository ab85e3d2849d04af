"""RFC 9421 HTTP Message Signatures with Ed25519, and RFC 9530 Content-Digest.

Pure: no HTTP library.  A request is described by its method, authority,
path, query, and the headers to cover; the client signs, the server
verifies, both by building the same *signature base* (RFC 9421 §2.5).

encd signs every request with the party's Ed25519 key:

    Content-Digest: sha-256=:<base64 SHA-256 of the body>:
    Signature-Input: encd=("@method" "@authority" "@path" "@query" "content-digest");created=1767225600;nonce="<random>";keyid="<key id>";alg="ed25519"
    Signature: encd=:<base64 Ed25519 signature over the signature base>:

``keyid`` is the encd key id ``<party id>+<key hash hex>`` (see encd.keys).
The server requires the components above ("content-digest" only when the
request has a body), ``created`` within its window, a ``nonce`` it has not
seen from that key within the window, and ``alg`` "ed25519".
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from encd.errors import InvalidInput, VerificationError
from encd.keys import PublicKey, SigningKey

LABEL = "encd"
REQUIRED = ("@method", "@authority", "@path", "@query")
ALG = "ed25519"
PARAMS = ("created", "nonce", "keyid", "alg")  # each once, in any order (RFC 9421 §2.3)

_TOKEN = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_SF_STRING_CHARS = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]*")
_SF_STRING = re.compile(r'"((?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_SF_ESCAPE = re.compile(r'\\(["\\])')
_SF_INTEGER = re.compile(r"-?\d{1,15}")
_UNCOLONED_SHA256 = re.compile(r"(?:^|[\s,])sha-256=(?!:)")
_SF_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*")


DEFAULT_PORTS = {"http": "80", "https": "443"}


def normal_authority(authority: str, scheme: str | None = None) -> str:
    """``host[:port]`` as ``@authority`` covers it (RFC 9421 §2.2.3): lower case, without
    the scheme's default port (RFC 9110 §4.2.3), as HTTP libraries write the Host header.
    ``scheme`` None, for a server that cannot tell what a proxy in front of it was sent:
    either default port (80 or 443) is dropped."""
    value = authority.lower()
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or (":" in host and not host.endswith("]")):
        return value
    defaults = DEFAULT_PORTS.values() if scheme is None else (DEFAULT_PORTS.get(scheme.lower()),)
    return host if port in defaults else value


def content_digest(body: bytes) -> str:
    """RFC 9530 Content-Digest with SHA-256."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def check_content_digest(header: str | None, body: bytes) -> None:
    """The body against its ``Content-Digest`` (RFC 9530 §2): an RFC 8941 dictionary whose
    ``sha-256`` member is a byte sequence, ``:<base64>:``.  Other algorithms may be listed
    beside it; only ``sha-256`` is checked."""
    if header is None:
        raise InvalidInput("content-digest", "a request with a body needs a Content-Digest header")
    not_bytes = InvalidInput(
        "content-digest",
        "sha-256 must be a byte sequence of 32 bytes, written :<base64>: (RFC 9530, "
        "RFC 8941 §3.3.5)",
    )
    try:
        digests = _dictionary(header, "content-digest")
    except InvalidInput as exc:
        if _UNCOLONED_SHA256.search(header):  # the usual slip: base64 without its colons
            raise not_bytes from None
        raise InvalidInput(
            "content-digest",
            f"{exc.reason}: expected an RFC 8941 dictionary such as sha-256=:<base64 of the "
            "SHA-256 of the body>: (RFC 9530)",
        ) from None
    if "sha-256" not in digests:
        raise InvalidInput("content-digest", "expected a sha-256 digest (RFC 9530)")
    value = digests["sha-256"][0]
    if not isinstance(value, bytes) or len(value) != 32:
        raise not_bytes
    if value != hashlib.sha256(body).digest():
        raise VerificationError("content-digest: the body does not match its sha-256 digest")


@dataclass(frozen=True, slots=True)
class Request:
    """What a signature covers.  ``headers`` keys are lowercase."""

    method: str
    authority: str
    path: str
    query: str  # without "?"; "" for none
    headers: Mapping[str, str]

    def component(self, name: str) -> str:
        if name == "@method":
            return self.method.upper()
        if name == "@authority":
            return self.authority.lower()
        if name == "@path":
            return self.path or "/"
        if name == "@query":
            return "?" + self.query
        if name.startswith("@"):
            raise InvalidInput("signature-input", f"unsupported derived component {name}")
        value = self.headers.get(name)
        if value is None:
            raise InvalidInput(name, f"covered header {name} is missing")
        return value.strip()


@dataclass(frozen=True, slots=True)
class SignatureParams:
    components: tuple[str, ...]
    created: int
    nonce: str
    keyid: str
    alg: str
    order: tuple[str, ...] = PARAMS  # the parameters' order, as the signer wrote them

    def serialize(self) -> str:
        """The inner list with its parameters, in the signer's order: RFC 9421 §2.3 signs
        the Signature-Input member as sent, and any order of parameters is valid."""
        inner = " ".join(f'"{c}"' for c in self.components)
        values = {
            "created": str(self.created),
            "nonce": _sf_string(self.nonce),
            "keyid": _sf_string(self.keyid),
            "alg": _sf_string(self.alg),
        }
        return f"({inner})" + "".join(f";{name}={values[name]}" for name in self.order)


def _sf_string(value: str) -> str:
    if not _SF_STRING_CHARS.fullmatch(value.replace('"', "").replace("\\", "")):
        raise InvalidInput("signature-input", f"{value!r} cannot be a structured-field string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def signature_base(request: Request, params: SignatureParams) -> bytes:
    """RFC 9421 §2.5: one line per covered component, then @signature-params."""
    lines = [f'"{name}": {request.component(name)}' for name in params.components]
    lines.append(f'"@signature-params": {params.serialize()}')
    return "\n".join(lines).encode()


def sign_request(
    request: Request, key: SigningKey, created: int, nonce: str, with_digest: bool
) -> dict[str, str]:
    """The Signature-Input and Signature headers for ``request``."""
    components = REQUIRED + (("content-digest",) if with_digest else ())
    params = SignatureParams(components, created, nonce, key.public.key_id, ALG)
    signature = key.sign(signature_base(request, params))
    return {
        "signature-input": f"{LABEL}={params.serialize()}",
        "signature": f"{LABEL}=:{base64.b64encode(signature).decode()}:",
    }


# --- parsing (a small part of RFC 8941 structured fields: what the headers above use) ---


class _Token(str):
    """An sf-token (RFC 8941 §3.3.4): a value that is not a string, though Python's is."""

    __slots__ = ()


class _Parser:
    def __init__(self, text: str, field: str) -> None:
        self.text = text
        self.pos = 0
        self.field = field

    def fail(self, what: str) -> InvalidInput:
        return InvalidInput(self.field, f"{what} at character {self.pos}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.fail(f"expected {ch!r}")
        self.pos += 1

    def key(self) -> str:
        match = _TOKEN.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a key")
        self.pos = match.end()
        return match.group()

    def string(self) -> str:
        match = _SF_STRING.match(self.text, self.pos)
        if match:  # a well-formed string in one step; anything else is walked for its error
            self.pos = match.end()
            body = match.group(1)
            return _SF_ESCAPE.sub(r"\1", body) if "\\" in body else body
        return self.string_walk()

    def string_walk(self) -> str:
        self.expect('"')
        out: list[str] = []
        while True:
            ch = self.peek()
            if ch == "":
                raise self.fail("unterminated string")
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                nxt = self.peek()
                if nxt not in ('"', "\\"):
                    raise self.fail("bad escape in string")
                out.append(nxt)
                self.pos += 1
            elif 0x20 <= ord(ch) <= 0x7E:
                out.append(ch)
            else:
                raise self.fail("invalid character in string")

    def bare(self) -> str | int | bytes:
        ch = self.peek()
        if ch == '"':
            return self.string()
        if ch == ":":
            self.pos += 1
            end = self.text.find(":", self.pos)
            if end < 0:
                raise self.fail("unterminated byte sequence")
            try:
                value = base64.b64decode(self.text[self.pos : end], validate=True)
            except ValueError:  # binascii.Error, or non-ASCII text
                raise self.fail("byte sequence is not base64") from None
            self.pos = end + 1
            return value
        match = _SF_INTEGER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return int(match.group())
        match = _SF_TOKEN.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return _Token(match.group())
        raise self.fail("expected a value")

    def params(self) -> dict[str, str | int | bytes]:
        out: dict[str, str | int | bytes] = {}
        while self.peek() == ";":
            self.pos += 1
            while self.peek() == " ":  # RFC 8941 §3.1.2: *SP after each ";"
                self.pos += 1
            start = self.pos
            name = self.key()
            if name in out:  # RFC 8941 would keep the last: encd takes no guesses
                self.pos = start
                raise self.fail(f"parameter {name!r} comes a second time")
            if self.peek() == "=":
                self.pos += 1
                out[name] = self.bare()
            else:
                out[name] = True  # a boolean (RFC 8941 §3.1.2), never a number
        return out

    def spaces(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.pos += 1


def _dictionary(text: str, field: str) -> dict[str, tuple[object, dict[str, str | int | bytes]]]:
    parser = _Parser(text.strip(), field)
    out: dict[str, tuple[object, dict[str, str | int | bytes]]] = {}
    while True:
        start = parser.pos
        label = parser.key()
        if label in out:
            parser.pos = start
            raise parser.fail(f"member {label!r} comes a second time")
        parser.expect("=")
        if parser.peek() == "(":
            parser.pos += 1
            items: list[str] = []
            while True:
                parser.spaces()
                if parser.peek() == ")":
                    parser.pos += 1
                    break
                items.append(parser.string())
                if parser.peek() not in (" ", ")"):
                    raise parser.fail("expected a space or ')'")
            value: object = tuple(items)
        else:
            value = parser.bare()
        out[label] = (value, parser.params())
        parser.spaces()
        if parser.peek() == "":
            return out
        parser.expect(",")
        parser.spaces()


@dataclass(frozen=True, slots=True)
class ParsedSignature:
    params: SignatureParams
    signature: bytes


def parse_signature(signature_input: str | None, signature: str | None) -> ParsedSignature:
    """Parse the ``encd`` signature out of the two headers."""
    if not signature_input or not signature:
        raise InvalidInput(
            "signature-input" if signature and not signature_input else "signature",
            "the request is not signed (Signature-Input and Signature, RFC 9421)",
        )
    inputs = _dictionary(signature_input, "signature-input")
    sigs = _dictionary(signature, "signature")
    if LABEL not in inputs or LABEL not in sigs:
        raise InvalidInput("signature", f"expected a signature labelled {LABEL!r}")
    components, raw_params = inputs[LABEL]
    value, _ = sigs[LABEL]
    if not isinstance(components, tuple) or not isinstance(value, bytes):
        raise InvalidInput("signature", "malformed signature headers")
    created, nonce = raw_params.get("created"), raw_params.get("nonce")
    keyid, alg = raw_params.get("keyid"), raw_params.get("alg")
    # strings are sf-strings, quoted (RFC 9421 §2.3): a token of the same letters is
    # another Signature-Input, and would not be the one signed
    if type(created) is not int:
        raise InvalidInput("signature-input.created", "created must be an integer time")
    if type(nonce) is not str or not 8 <= len(nonce) <= 128:
        raise InvalidInput(
            "signature-input.nonce", "nonce must be a quoted string of 8 to 128 characters"
        )
    if type(keyid) is not str:
        raise InvalidInput("signature-input.keyid", "keyid must be a quoted string")
    if type(alg) is not str or alg != ALG:
        raise InvalidInput("signature-input.alg", f'alg must be the quoted string "{ALG}"')
    unknown = set(raw_params) - set(PARAMS)
    if unknown:
        raise InvalidInput("signature-input", f"unexpected parameters {sorted(unknown)}")
    covered = tuple(str(c) for c in components)
    twice = sorted({c for c in covered if covered.count(c) > 1})
    if twice:
        raise InvalidInput(
            "signature-input", f"component {twice[0]!r} is covered twice: each comes once"
        )
    params = SignatureParams(covered, created, nonce, keyid, alg, tuple(raw_params))
    return ParsedSignature(params, value)


def verify_request(
    request: Request,
    parsed: ParsedSignature,
    key: PublicKey,
    has_body: bool,
    required: Sequence[str] = REQUIRED,
) -> None:
    """Check the covered components and the Ed25519 signature over the signature base."""
    needed = list(required) + (["content-digest"] if has_body else [])
    missing = [c for c in needed if c not in parsed.params.components]
    if missing:
        raise InvalidInput("signature-input", f"the signature must cover {', '.join(missing)}")
    try:
        key.verify(signature_base(request, parsed.params), parsed.signature)
    except VerificationError:
        raise VerificationError(
            f"request signature by {parsed.params.keyid} does not verify"
        ) from None
