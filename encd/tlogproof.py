"""Offline receipts: C2SP transparency log proofs (c2sp.org/tlog-proof, "Format").

A proof is a sequence of lines separated by newlines::

    c2sp.org/tlog-proof@v1
    extra <base64 opaque data>            (optional; omitted when there is none)
    index <leaf index, ASCII decimal, no leading zeros>
    <base64 hash>                         (zero or more: the RFC 6962 inclusion
    ...                                    proof, leaf's sibling first)
    <empty line>
    <the checkpoint signed note, verbatim, with any witness cosignatures>

``TlogProof.parse`` checks this layout and that the checkpoint is a
well-formed signed note whose text is a checkpoint; ``verify`` checks the
log's signature on the checkpoint and the inclusion proof.  The extra data is
not authenticated and is only carried along.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from encd.checkpoint import Checkpoint, decode_base64, open_checkpoint, parse_decimal
from encd.errors import InvalidInput, VerificationError
from encd.keys import PublicKey
from encd.merkle import HASH_SIZE, MAX_SIZE, check_hash, verify_inclusion
from encd.note import parse_note

HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_HASHES = 64  # the longest inclusion proof in a tree of at most 2**64 - 1 leaves
_INDEX = re.compile(r"index (.*)")


@functools.lru_cache(maxsize=64)
def _check_checkpoint(signed_checkpoint: bytes) -> None:
    """Parse once per checkpoint: a batch's receipts all share one (errors are not cached)."""
    Checkpoint.parse(parse_note(signed_checkpoint, "tlog-proof checkpoint", strict=False).text)


@dataclass(frozen=True, slots=True)
class TlogProof:
    """An entry's index, its inclusion proof, and the signed checkpoint the proof leads to."""

    index: int
    proof: tuple[bytes, ...]
    signed_checkpoint: bytes
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise InvalidInput("tlog-proof.index", "must be an integer")
        if not 0 <= self.index <= MAX_SIZE:
            raise InvalidInput("tlog-proof.index", f"{self.index} is not in 0..2**64-1")
        if len(self.proof) > MAX_PROOF_HASHES:
            raise InvalidInput(
                "tlog-proof.proof",
                f"{len(self.proof)} hashes, more than the {MAX_PROOF_HASHES} any tree needs",
            )
        for i, h in enumerate(self.proof):
            check_hash(h, f"tlog-proof.proof[{i}]")
        if self.extra is not None and not self.extra:
            raise InvalidInput("tlog-proof.extra", "must not be empty; use None for no extra data")
        # The checkpoint must at least be a signed note holding a checkpoint.
        _check_checkpoint(self.signed_checkpoint)

    @classmethod
    def parse(cls, data: bytes) -> TlogProof:
        """Parse the tlog-proof text format.  Nothing is verified."""
        cut = data.find(b"\n\n")
        if cut < 0:
            raise InvalidInput("tlog-proof", "no empty line before the checkpoint")
        head, signed_checkpoint = data[:cut], data[cut + 2 :]
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                "tlog-proof", f"non-ASCII byte at {exc.start} before the checkpoint"
            ) from None
        if lines[0] != HEADER:
            raise InvalidInput("tlog-proof", f"line 1 must be {HEADER!r}, got {lines[0]!r}")
        number = 1  # lines consumed
        extra = None
        if number < len(lines) and lines[number].startswith("extra "):
            extra = decode_base64(lines[number][len("extra ") :], "tlog-proof.extra")
            if not extra:
                raise InvalidInput(
                    "tlog-proof.extra", "extra line is empty; omit it when there is no extra data"
                )
            number += 1
        if number >= len(lines):
            raise InvalidInput("tlog-proof.index", f"line {number + 1} must be 'index <N>'")
        match = _INDEX.fullmatch(lines[number])
        if not match:
            raise InvalidInput(
                "tlog-proof.index",
                f"line {number + 1} must be 'index <N>', got {lines[number]!r}",
            )
        index = parse_decimal(match[1], "tlog-proof.index", "index", MAX_SIZE)
        number += 1
        proof = []
        for j, line in enumerate(lines[number:]):
            field = f"tlog-proof.proof[{j}]"
            digest = decode_base64(line, field)
            if len(digest) != HASH_SIZE:
                raise InvalidInput(
                    field,
                    f"line {number + j + 1} must be a base64 {HASH_SIZE}-byte hash,"
                    f" got {len(digest)} bytes",
                )
            proof.append(digest)
        _no_hash_after_the_empty_line(signed_checkpoint, head.count(b"\n") + 3)
        return cls(index, tuple(proof), signed_checkpoint, extra)

    def to_bytes(self) -> bytes:
        proof = [base64.b64encode(h).decode() for h in self.proof]
        return encode(self.index, proof, self.signed_checkpoint, self.extra)

    def verify(self, leaf_hash: bytes, log_key: PublicKey) -> Checkpoint:
        """Check that ``leaf_hash`` is entry ``index`` of the log ``log_key`` signs for.

        (1) the checkpoint carries a verified signature by ``log_key``, and its
            origin is the key's name (``open_checkpoint``);
        (2) the inclusion proof leads from ``leaf_hash`` at ``index`` to the
            checkpoint's root at its size (``verify_inclusion``).

        Returns the verified checkpoint.  Witness cosignatures are checked
        separately (``encd.checkpoint.verify_cosignatures``), by policy.
        """
        # (1) the checkpoint
        checkpoint = open_checkpoint(self.signed_checkpoint, log_key)
        # (2) the inclusion proof
        try:
            verify_inclusion(leaf_hash, self.index, checkpoint.size, self.proof, checkpoint.root)
        except VerificationError as exc:
            raise exc.prefixed("tlog-proof") from None
        return checkpoint


def _no_hash_after_the_empty_line(signed_checkpoint: bytes, number: int) -> None:
    """InvalidInput if the checkpoint begins with a hash line (``number`` is its line).

    A checkpoint's first line is its origin and its second a size: a base64 hash
    followed by anything but a size means an empty line came among the proof's hashes,
    and the fault is the proof's.  (An origin may itself look like a hash.)"""
    first, _, rest = signed_checkpoint.partition(b"\n")
    if len(first) != 44 or not first.endswith(b"="):
        return
    if rest.split(b"\n", 1)[0].isdigit():  # an origin that looks like a hash, then a size
        return
    try:
        digest = base64.b64decode(first, validate=True)
    except ValueError:
        return
    if len(digest) == HASH_SIZE:
        raise InvalidInput(
            "tlog-proof.proof",
            f"line {number} is a hash after the empty line that ends the proof's hashes;"
            " an empty line must come only once, just before the checkpoint",
        )


def encode(
    index: int, proof: Sequence[str], signed_checkpoint: bytes, extra: bytes | None = None
) -> bytes:
    """The tlog-proof text of values already checked, the proof's hashes given in base64.

    For a writer that builds many proofs from hashes it holds (the ledger's receipts);
    anyone else builds a ``TlogProof``, which checks its values, and calls ``to_bytes``."""
    lines = [HEADER]
    if extra is not None:
        lines.append("extra " + base64.b64encode(extra).decode())
    lines.append(f"index {index}")
    lines.extend(proof)
    return "\n".join(lines).encode() + b"\n\n" + signed_checkpoint
