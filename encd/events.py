"""Signed events: the envelope, its canonical bytes, signatures and id.

An event is stored as a C2SP signed note (see encd.note) whose text is one
line of RFC 8785 canonical JSON, the *envelope*, followed by a newline:

    {"body":{...},"doc":"CQ-2026-0001","prev":"<hex>","seq":3,"time":"…Z","type":"transfer","v":1}

    — 91500000MA5U000001 <base64(key hash || Ed25519 signature over the text)>

- ``v`` is the envelope version, 1.
- exactly one of ``doc`` (a document's events) or ``party`` (a party's events)
  names the *chain* the event belongs to;
- ``seq`` is the event's position in that chain (0 for the first) and ``prev``
  the event id of the chain's previous event (null for seq 0), so a signed
  event applies at one position only;
- ``time`` is the signer's clock, RFC 3339 in UTC (``Z``);
- ``type`` and ``body`` are the event itself (see encd.title and encd.parties).

Signature lines are sorted by key id, at most one per key, so one set of
signatures over one envelope has exactly one encoding.  The event id is the
lowercase hex SHA-256 of the exact stored bytes (text and signatures).

docs/formats/events.md is the normative description.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from encd.canonical import canonical_bytes, parse_canonical
from encd.errors import InvalidInput
from encd.keys import SigningKey
from encd.note import NoteSignature, parse_note
from encd.validation import given

VERSION = 1
MAX_EVENT_SIZE = 256 * 1024

DOCUMENT_EVENTS = frozenset(
    {
        "issue",
        "transfer",
        "reject_transfer",
        "pledge",
        "release",
        "enforce",
        "instruct",
        "acknowledge",
        "milestone",
        "amend",
        "surrender",
        "deliver",
        "refuse",
        "switch_to_paper",
        "void",
    }
)
PARTY_EVENTS = frozenset({"register", "add_key", "rotate_key", "revoke_key", "set_roles"})

#: An event id (and a proposal id): the lowercase hex SHA-256 of the exact bytes.
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
_CHAIN_ID = re.compile(r"[A-Z0-9][A-Z0-9-]{2,63}")
_ENVELOPE_KEYS = {"v", "type", "seq", "prev", "time", "body"}
_DOC_ENVELOPE = frozenset({*_ENVELOPE_KEYS, "doc"})
_PARTY_ENVELOPE = frozenset({*_ENVELOPE_KEYS, "party"})


def parse_time(value: object, field: str) -> datetime:
    """An RFC 3339 UTC timestamp, ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``."""
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise InvalidInput(
            field, f"expected an RFC 3339 UTC time like 2026-05-01T08:30:00Z, got {given(value)}"
        )
    try:
        return datetime.fromisoformat(value)  # the "Z" makes it UTC (Python 3.11+)
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not a real date and time") from None


def format_time(moment: datetime) -> str:
    """The RFC 3339 text encd writes: UTC, ``Z``, microseconds only when non-zero."""
    if moment.tzinfo is None:
        raise InvalidInput("time", "time must be timezone-aware")
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def event_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def content_digest(content: Any) -> str:
    """Lowercase hex SHA-256 of a document content's canonical bytes."""
    return hashlib.sha256(canonical_bytes(content)).hexdigest()


@dataclass(frozen=True, slots=True)
class Event:
    """A parsed (not yet verified) event.  ``raw`` are its exact stored bytes."""

    raw: bytes
    text: bytes
    id: str
    type: str
    chain: str  # "doc" or "party"
    subject: str  # the document id or party id
    seq: int
    prev: str | None
    time: datetime
    body: Mapping[str, Any]
    signatures: tuple[NoteSignature, ...]

    @property
    def is_party_event(self) -> bool:
        return self.chain == "party"

    @classmethod
    def parse(cls, raw: bytes) -> Event:
        """Parse exact bytes; raise InvalidInput naming what is malformed."""
        if not isinstance(raw, bytes):
            raise InvalidInput("event", f"expected bytes, got {type(raw).__name__}")
        if len(raw) > MAX_EVENT_SIZE:
            raise InvalidInput("event", f"event is {len(raw)} bytes, more than {MAX_EVENT_SIZE}")
        note = parse_note(raw, "event")
        text = note.text
        if text.count(b"\n") != 1:
            raise InvalidInput("event", "envelope must be one line of canonical JSON")
        try:
            envelope = parse_canonical(text[:-1])
        except InvalidInput as exc:
            error = exc.prefixed("event envelope")
            assert isinstance(error, InvalidInput)
            error.field = f"event.{exc.field}" if exc.field else "event"  # as _parse_envelope's
            raise error from None
        if not isinstance(envelope, dict):
            raise InvalidInput("event", "envelope must be a JSON object")
        kind, chain, subject, seq, prev, time, body = _parse_envelope(envelope)
        signatures = note.signatures
        if not signatures:
            raise InvalidInput("event", "at least one signature is required")
        if len(signatures) > 1:  # one signature is sorted and alone
            ids = [sig.key_id for sig in signatures]
            if ids != sorted(ids) or len(set(ids)) != len(ids):
                raise InvalidInput(
                    "event signatures", "signature lines must be sorted by key id, one per key"
                )
        for sig in signatures:
            if len(sig.signature) != 64:
                raise InvalidInput(
                    "event signatures",
                    f"signature by {sig.key_id} must be 64 bytes, got {len(sig.signature)}",
                )
        return cls(
            raw, text, event_id(raw), kind, chain, subject, seq, prev, time, body, signatures
        )


_Envelope = tuple[str, str, str, int, str | None, datetime, dict[str, Any]]
"""An envelope's type, chain ("doc" or "party"), subject, seq, prev, time and body."""


def _parse_envelope(envelope: dict[str, Any]) -> _Envelope:
    members = envelope.keys()
    if members == _DOC_ENVELOPE:  # every field, and no other: the usual case
        chain = "doc"
    elif members == _PARTY_ENVELOPE:
        chain = "party"
    else:
        chain = _envelope_chain(envelope)
    version = envelope["v"]
    if isinstance(version, bool) or version != VERSION:  # (True == 1 in Python, not in JSON)
        raise InvalidInput("event.v", f"expected envelope version {VERSION}, got {given(version)}")
    kind = envelope["type"]
    allowed = DOCUMENT_EVENTS if chain == "doc" else PARTY_EVENTS
    if not isinstance(kind, str) or kind not in allowed:
        raise InvalidInput(
            "event.type",
            f"expected one of {', '.join(sorted(allowed))} for a {chain} event, got {given(kind)}",
        )
    subject = envelope[chain]
    if not isinstance(subject, str) or not _CHAIN_ID.fullmatch(subject):
        raise InvalidInput(
            f"event.{chain}",
            f"expected 3 to 64 characters A-Z, 0-9 and '-', starting with a letter or digit, got {given(subject)}",
        )
    seq = envelope["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InvalidInput("event.seq", f"expected an integer >= 0, got {given(seq)}")
    prev = envelope["prev"]
    if seq == 0:
        if prev is not None:
            raise InvalidInput(
                "event.prev", f"must be null for the first event (seq 0), got {given(prev)}"
            )
    elif not isinstance(prev, str) or not SHA256_HEX.fullmatch(prev):
        raise InvalidInput("event.prev", f"expected 64 lowercase hex digits, got {given(prev)}")
    body = envelope["body"]
    if not isinstance(body, dict):
        raise InvalidInput("event.body", f"expected an object, got {given(body)}")
    return kind, chain, subject, seq, prev, parse_time(envelope["time"], "event.time"), body


def _envelope_chain(envelope: dict[str, Any]) -> str:
    """The chain an envelope names; InvalidInput for a field missing or unknown."""
    chains = [key for key in ("doc", "party") if key in envelope]
    if len(chains) != 1:
        raise InvalidInput("event envelope", "exactly one of 'doc' or 'party' is required")
    chain = chains[0]
    for key in envelope:
        if key not in _ENVELOPE_KEYS and key != chain:
            raise InvalidInput(f"event.{key}", "unknown field")
    for key in sorted(_ENVELOPE_KEYS):
        if key not in envelope:
            raise InvalidInput(f"event.{key}", "required field is missing")
    return chain


def envelope_text(
    *,
    type: str,
    seq: int,
    prev: str | None,
    time: datetime | str,
    body: Mapping[str, Any],
    doc: str | None = None,
    party: str | None = None,
) -> bytes:
    """The canonical text (envelope JSON and newline) that signers sign."""
    envelope: dict[str, Any] = {
        "v": VERSION,
        "type": type,
        "seq": seq,
        "prev": prev,
        "time": time if isinstance(time, str) else format_time(time),
        "body": dict(body),
    }
    if (doc is None) == (party is None):
        raise InvalidInput("event", "exactly one of doc or party is required")
    if doc is not None:
        envelope["doc"] = doc
    else:
        envelope["party"] = party
    text = canonical_bytes(envelope) + b"\n"
    _parse_envelope(parse_canonical(text[:-1]))  # the same rules a verifier applies
    return text


def sign_text(text: bytes, keys: Iterable[SigningKey]) -> tuple[NoteSignature, ...]:
    """Signatures by ``keys`` over an envelope text (the client side of signing)."""
    return tuple(NoteSignature(k.name, k.public.hash, k.sign(text)) for k in keys)


def assemble(text: bytes, signatures: Iterable[NoteSignature]) -> bytes:
    """The stored bytes: text, blank line, signature lines sorted by key id."""
    by_id = {sig.key_id: sig for sig in signatures}
    lines = [by_id[key].line().encode() for key in sorted(by_id)]
    return text + b"\n" + b"".join(lines)


def make_event(
    keys: Iterable[SigningKey],
    *,
    type: str,
    seq: int,
    prev: str | None,
    time: datetime | str,
    body: Mapping[str, Any],
    doc: str | None = None,
    party: str | None = None,
) -> bytes:
    """Build, sign and assemble an event in one step."""
    text = envelope_text(type=type, seq=seq, prev=prev, time=time, body=body, doc=doc, party=party)
    return assemble(text, sign_text(text, keys))
