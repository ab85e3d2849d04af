"""C2SP signed notes (c2sp.org/signed-note): text, a blank line, signature lines.

    <text ending in a newline>
    <blank line>
    — <key name> <base64(4-byte key hash || signature)>
    ...

encd uses this one container for everything it signs: events (the text is
one line of canonical JSON) and checkpoints (the text is a tlog-checkpoint).
Signatures are over the exact text bytes, including its final newline.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass

from encd.errors import InvalidInput, VerificationError
from encd.keys import PublicKey, SigningKey, check_key_name

SIG_PREFIX = "— "  # em dash, space
MAX_SIGNATURES = 100  # Go's sumdb/note limit, the one c2sp.org/signed-note gives as its example
MAX_NOTE_SIZE = 1 << 20
NOT_CANONICAL = "signature is not canonical base64"


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_hash: bytes
    signature: bytes
    #: False for a line whose base64 is not canonical (only ``parse_note(strict=False)``
    #: keeps such a line; ``verify_note`` refuses it if its key is known).
    canonical: bool = True

    @property
    def key_id(self) -> str:
        return f"{self.name}+{self.key_hash.hex()}"

    def line(self) -> str:
        encoded = base64.b64encode(self.key_hash + self.signature).decode()
        return f"{SIG_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note.  ``raw`` are the exact bytes it was parsed from."""

    text: bytes
    signatures: tuple[NoteSignature, ...]
    raw: bytes


_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
#: The same characters as bytes: in UTF-8 they are never part of a longer sequence.
_CONTROL_BYTES = bytes([*range(0x0A), *range(0x0B, 0x20)])


def _check_chars(data: bytes, field: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(field, f"not valid UTF-8 at byte {exc.start}") from None
    if len(data.translate(None, _CONTROL_BYTES)) == len(data):
        return text  # none (a byte-level check is much faster than the regex)
    found = _CONTROL.search(text)
    if found:
        code, i = ord(found.group()), found.start()
        raise InvalidInput(field, f"control character U+{code:04X} at position {i}")
    return text


def parse_note(data: bytes, field: str = "note", *, strict: bool = True) -> Note:
    """Split a signed note into its text and signature lines (nothing is verified yet).

    ``strict`` refuses any signature line whose base64 is not canonical.  Notes that
    others cosign (checkpoints) are parsed with ``strict=False``: c2sp.org/signed-note
    says to ignore the lines of unknown keys, so such a line is kept, marked, and
    refused only if it turns out to be a known key's.
    """
    if len(data) > MAX_NOTE_SIZE:
        raise InvalidInput(field, f"note is {len(data)} bytes, more than {MAX_NOTE_SIZE}")
    _check_chars(data, field)
    cut = data.rfind(b"\n\n")
    if cut < 0:
        raise InvalidInput(field, "no blank line separating text from signatures")
    text, sig_block = data[: cut + 1], data[cut + 2 :]
    if not sig_block.endswith(b"\n"):
        raise InvalidInput(field, "signature block must end with a newline")
    lines = sig_block[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise InvalidInput(field, f"{len(lines)} signatures, more than {MAX_SIGNATURES}")
    signatures = []
    for number, raw_line in enumerate(lines, 1):
        line = raw_line.decode()
        where = f"{field} signature line {number}"
        if not line.startswith(SIG_PREFIX):
            raise InvalidInput(where, "must start with an em dash and a space")
        parts = line[len(SIG_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise InvalidInput(where, "expected '— <key name> <base64 signature>'")
        name, encoded = parts
        check_key_name(name, where)
        try:
            blob = base64.b64decode(encoded, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise InvalidInput(where, "signature is not valid base64") from None
        # b64decode ignores the unused low bits of the last character: without this
        # check, a changed character could leave the decoded signature intact.
        canonical = base64.b64encode(blob).decode() == encoded
        if strict and not canonical:
            raise InvalidInput(where, NOT_CANONICAL)
        if len(blob) < 5:
            raise InvalidInput(where, f"signature is {len(blob)} bytes, too short for a key hash")
        signatures.append(NoteSignature(name, blob[:4], blob[4:], canonical))
    return Note(text, tuple(signatures), data)


def sign_note(text: bytes, keys: Iterable[SigningKey]) -> bytes:
    """A signed note of ``text`` (which must end in a newline) signed by ``keys`` in order."""
    _check_chars(text, "note text")
    if not text.endswith(b"\n"):
        raise InvalidInput("note text", "must end with a newline")
    lines = [
        NoteSignature(key.name, key.public.hash, key.sign(text)).line().encode() for key in keys
    ]
    return text + b"\n" + b"".join(lines)


def verify_note(note: Note, known: Iterable[PublicKey]) -> tuple[PublicKey, ...]:
    """Verify ``note`` under the ``known`` keys, per c2sp.org/signed-note.

    Signatures from unknown keys are ignored.  A signature from a known key
    that fails, or is written in non-canonical base64, rejects the whole note; so
    does a note with no signature from a known key.  Returns the known keys whose
    signatures verified.
    """
    by_id = {(key.name, key.hash): key for key in known}
    verified: list[PublicKey] = []
    for sig in note.signatures:
        key = by_id.get((sig.name, sig.key_hash))
        if key is None:
            continue
        if not sig.canonical:
            raise VerificationError(f"the signature by {key.key_id}: {NOT_CANONICAL}")
        key.verify(note.text, sig.signature)
        verified.append(key)
    if not verified:
        names = ", ".join(sorted({k.key_id for k in by_id.values()})) or "none"
        raise VerificationError(f"note has no signature from a known key (known: {names})")
    return tuple(verified)
