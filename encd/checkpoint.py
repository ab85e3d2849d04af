"""Log checkpoints (c2sp.org/tlog-checkpoint) and witness cosignatures (c2sp.org/tlog-cosignature).

A checkpoint is the note text of a C2SP signed note (c2sp.org/signed-note)::

    <origin>\\n
    <tree size, ASCII decimal, no leading zeros>\\n
    <base64 root hash, 32 bytes>\\n
    [<extension line>\\n ...]

tlog-checkpoint "Note text" items 1-4 are enforced by ``Checkpoint.parse``.
The log signs it as a signed note with its Ed25519 key (signature type 0x01),
whose key name encd requires to equal the origin ("Signatures": SHOULD match).
``open_checkpoint`` is the only way from untrusted bytes to a ``Checkpoint``
the caller may act on: it checks the log's signature before it reads the text.

Witnesses add tlog-cosignature/v1 Ed25519 cosignatures (signature type 0x04,
"Format" and "Ed25519 signed message")::

    — <cosigner name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)

    key ID  = SHA-256(<name> || "\\n" || 0x04 || 32-byte public key)[:4]
    message = "cosignature/v1\\n" || "time <timestamp>\\n" || <checkpoint note text>

where the timestamp is POSIX seconds, at most 2**63-1, written in the message
as ASCII decimal with no leading zeros.  The message does not commit to the
cosigner's name, so each cosigner needs its own key.  Which witnesses, and how
many, a verifier requires is policy, decided elsewhere; this module only says
which cosignatures verified and when they were made.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from encd.errors import InvalidInput, VerificationError
from encd.keys import (
    ED25519,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    PublicKey,
    SigningKey,
    check_key_name,
    key_hash,
)
from encd.merkle import HASH_SIZE, MAX_SIZE
from encd.note import NOT_CANONICAL, Note, NoteSignature, parse_note, sign_note, verify_note

COSIGNATURE_V1 = 0x04
MAX_TIMESTAMP = 2**63 - 1
TIMESTAMP_SIZE = 8
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def decode_base64(text: str, field: str) -> bytes:
    """Standard base64 (RFC 4648 §4), padded, in its one canonical spelling."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(field, f"{text!r} is not valid base64") from None
    if base64.b64encode(data).decode() != text:
        raise InvalidInput(field, f"{text!r} is not canonical base64")
    return data


def parse_decimal(text: str, field: str, what: str, maximum: int) -> int:
    """An ASCII decimal with no leading zeros (unless it is 0), at most ``maximum``."""
    if not _DECIMAL.fullmatch(text):
        raise InvalidInput(
            field, f"{what} must be ASCII decimal without leading zeros, got {text!r}"
        )
    if len(text) > len(str(maximum)):  # before int(), which refuses over 4300 digits
        raise InvalidInput(field, f"{what} has {len(text)} digits, more than {maximum}")
    value = int(text)
    if value > maximum:
        raise InvalidInput(field, f"{what} {value} is more than {maximum}")
    return value


def _check_line(text: str, field: str) -> None:
    if not text:
        raise InvalidInput(field, "must not be empty")
    for ch in text:
        if ord(ch) < 0x20:
            raise InvalidInput(field, f"control character U+{ord(ch):04X} is not allowed")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise InvalidInput(field, f"lone surrogate U+{ord(ch):04X} is not valid Unicode")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: its origin, tree size and root hash, and any extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint.origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise InvalidInput("checkpoint.size", "tree size must be an integer")
        if not 0 <= self.size <= MAX_SIZE:
            raise InvalidInput("checkpoint.size", f"tree size {self.size} is not in 0..2**64-1")
        if not isinstance(self.root, bytes):
            raise InvalidInput("checkpoint.root", "root hash must be bytes")
        if len(self.root) != HASH_SIZE:
            raise InvalidInput(
                "checkpoint.root", f"root hash must be {HASH_SIZE} bytes, got {len(self.root)}"
            )
        for i, line in enumerate(self.extensions):
            _check_line(line, f"checkpoint.extensions[{i}]")

    @classmethod
    def parse(cls, text: bytes) -> Checkpoint:
        """Parse checkpoint note text (tlog-checkpoint "Note text").  Nothing is verified."""
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("checkpoint", f"not valid UTF-8 at byte {exc.start}") from None
        if not decoded.endswith("\n"):
            raise InvalidInput("checkpoint", "text must end with a newline")
        lines = decoded[:-1].split("\n")
        if len(lines) < 3:
            raise InvalidInput(
                "checkpoint",
                f"expected at least 3 lines (origin, tree size, root hash), got {len(lines)}",
            )
        origin, size_line, root_line, *extensions = lines
        if not origin:
            raise InvalidInput("checkpoint.origin", "line 1 (origin) must not be empty")
        size = parse_decimal(size_line, "checkpoint.size", "line 2 (tree size)", MAX_SIZE)
        root = decode_base64(root_line, "checkpoint.root")
        if len(root) != HASH_SIZE:
            raise InvalidInput(
                "checkpoint.root",
                f"line 3 (root hash) must be {HASH_SIZE} bytes, got {len(root)}",
            )
        for number, line in enumerate(extensions, 4):
            if not line:
                raise InvalidInput(
                    "checkpoint.extensions", f"line {number} is empty; extension lines must not be"
                )
        return cls(origin, size, root, tuple(extensions))

    def text(self) -> bytes:
        """The note text: origin, size, base64 root, extension lines, each ending in a newline."""
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines).encode()


def open_checkpoint(data: bytes, log_key: PublicKey) -> Checkpoint:
    """The checkpoint in the signed note ``data``, once the log's signature on it verifies.

    (1) ``data`` must be a well-formed signed note;
    (2) it must carry a verified signature by ``log_key`` (signatures by other
        keys, such as witness cosignatures, are ignored here);
    (3) its text must be a well-formed checkpoint;
    (4) its origin must be ``log_key``'s name.
    """
    # (1) parse the note
    note = parse_note(data, "checkpoint", strict=False)
    # (2) the log's signature, before the text is trusted
    try:
        verify_note(note, [log_key])
    except VerificationError as exc:
        raise exc.prefixed("checkpoint") from None
    # (3) the text
    checkpoint = Checkpoint.parse(note.text)
    # (4) origin and key name
    if checkpoint.origin != log_key.name:
        raise VerificationError(
            f"checkpoint: origin {checkpoint.origin!r} is not the log key's name {log_key.name!r}"
        )
    return checkpoint


def sign_checkpoint(checkpoint: Checkpoint, key: SigningKey) -> bytes:
    """The signed note of ``checkpoint`` by the log key ``key`` (named as the origin)."""
    if key.name != checkpoint.origin:
        raise InvalidInput(
            "key",
            f"log key name {key.name!r} must equal the checkpoint origin {checkpoint.origin!r}",
        )
    return sign_note(checkpoint.text(), [key])


# --- cosignatures --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CosignerKey:
    """A witness's Ed25519 cosigning key (tlog-cosignature/v1, signature type 0x04)."""

    name: str
    raw: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.raw, bytes):
            raise InvalidInput("cosigner key", "Ed25519 public key must be bytes")
        if len(self.raw) != PUBLIC_KEY_SIZE:
            raise InvalidInput(
                "cosigner key",
                f"Ed25519 public key must be {PUBLIC_KEY_SIZE} bytes, got {len(self.raw)}",
            )

    @classmethod
    def of(cls, key: SigningKey | PublicKey) -> CosignerKey:
        """The cosigner key with the same name and Ed25519 key as ``key``."""
        public = key.public if isinstance(key, SigningKey) else key
        return cls(public.name, public.raw)

    @property
    def hash(self) -> bytes:
        """The key ID: SHA-256(name || 0x0A || 0x04 || key)[:4]."""
        return key_hash(self.name, self.raw, COSIGNATURE_V1)

    @property
    def key_id(self) -> str:
        return f"{self.name}+{self.hash.hex()}"

    @property
    def vkey(self) -> str:
        """The C2SP verifier key ``<name>+<key ID hex>+base64(0x04 || key)``."""
        encoded = base64.b64encode(bytes([COSIGNATURE_V1]) + self.raw).decode()
        return f"{self.key_id}+{encoded}"

    @classmethod
    def from_vkey(cls, text: str) -> CosignerKey:
        """Parse a cosigner verifier key; checks its type and key ID.  Type 0x04 is the
        cosigner key; a plain Ed25519 verifier key (type 0x01, its ID over 0x01) is taken as
        the cosigner key of the same name and public key, as Go's
        ``NewVerifierForCosignatureV1`` takes it: its cosignatures carry the 0x04 key ID."""
        parts = text.strip().split("+", 2)  # the base64 key may contain "+"
        if len(parts) != 3:
            raise InvalidInput("vkey", "expected <name>+<8 hex digits>+<base64 key>")
        name, hash_hex, encoded = parts
        check_key_name(name, "vkey")
        if not re.fullmatch(r"[0-9a-f]{8}", hash_hex):
            raise InvalidInput("vkey", f"key ID must be 8 lowercase hex digits, got {hash_hex!r}")
        blob = decode_base64(encoded, "vkey")
        if not blob or blob[0] not in (COSIGNATURE_V1, ED25519):
            raise InvalidInput(
                "vkey",
                "key type must be 0x04 (tlog-cosignature/v1 Ed25519) or 0x01 (Ed25519)",
            )
        if len(blob) != 1 + PUBLIC_KEY_SIZE:
            raise InvalidInput(
                "vkey", f"Ed25519 public key must be {PUBLIC_KEY_SIZE} bytes, got {len(blob) - 1}"
            )
        key = cls(name, blob[1:])
        expected = key_hash(name, key.raw, blob[0]).hex()
        if expected != hash_hex:
            raise InvalidInput(
                "vkey", f"key ID {hash_hex} does not match the key (expected {expected})"
            )
        return key


def _check_timestamp(timestamp: int) -> int:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise InvalidInput("timestamp", "must be an integer (POSIX seconds)")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise InvalidInput("timestamp", f"must be in 0..2**63-1, got {timestamp}")
    return timestamp


def cosignature_message(checkpoint_text: bytes, timestamp: int) -> bytes:
    """What a tlog-cosignature/v1 Ed25519 cosigner signs."""
    return b"cosignature/v1\ntime %d\n" % _check_timestamp(timestamp) + checkpoint_text


def cosign(checkpoint_text: bytes, key: SigningKey, timestamp: int) -> bytes:
    """A witness's cosignature line (ending in a newline) for the checkpoint note text.

    Append it to the signed checkpoint.  ``timestamp`` is the signing time in
    POSIX seconds, passed in (this module reads no clock).
    """
    Checkpoint.parse(checkpoint_text)  # cosign checkpoints only
    signer = CosignerKey.of(key)
    signature = key.sign(cosignature_message(checkpoint_text, timestamp))
    blob = timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature
    return NoteSignature(signer.name, signer.hash, blob).line().encode()


def verify_cosignatures(note: Note | bytes, witnesses: Iterable[CosignerKey]) -> dict[str, int]:
    """Which known witnesses cosigned the checkpoint ``note``, and when.

    (1) the note's text must be a checkpoint;
    (2) each signature line whose name and key ID are a witness's is checked:
        (a) it must hold an 8-byte timestamp and a 64-byte signature,
        (b) the timestamp must be at most 2**63-1,
        (c) the Ed25519 signature must verify over the cosigned message;
        any failure rejects the note (VerificationError);
    (3) lines from unknown keys (the log's own, other witnesses') are ignored.

    Returns witness name -> timestamp of its verified cosignature (the latest,
    if it cosigned more than once).  An empty result is not an error: how many
    cosignatures are enough is the caller's policy.
    """
    if isinstance(note, bytes):
        note = parse_note(note, "checkpoint", strict=False)
    # (1) a checkpoint
    Checkpoint.parse(note.text)
    by_id = {(w.name, w.hash): w for w in witnesses}
    verified: dict[str, int] = {}
    for sig in note.signatures:
        witness = by_id.get((sig.name, sig.key_hash))
        if witness is None:
            continue  # (3) unknown
        # (2a) layout
        if not sig.canonical:
            raise VerificationError(f"cosignature by {witness.key_id}: {NOT_CANONICAL}")
        if len(sig.signature) != TIMESTAMP_SIZE + SIGNATURE_SIZE:
            raise VerificationError(
                f"cosignature by {witness.key_id} is {len(sig.signature)} bytes,"
                f" expected {TIMESTAMP_SIZE + SIGNATURE_SIZE} (timestamp and signature)"
            )
        timestamp = int.from_bytes(sig.signature[:TIMESTAMP_SIZE], "big")
        # (2b) timestamp range
        if timestamp > MAX_TIMESTAMP:
            raise VerificationError(
                f"cosignature by {witness.key_id}: timestamp {timestamp} is more than 2**63-1"
            )
        # (2c) signature
        message = cosignature_message(note.text, timestamp)
        try:
            nacl.signing.VerifyKey(witness.raw).verify(message, sig.signature[TIMESTAMP_SIZE:])
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            raise VerificationError(
                f"cosignature by {witness.key_id} (time {timestamp}) does not verify"
            ) from None
        verified[witness.name] = max(timestamp, verified.get(witness.name, timestamp))
    return verified
