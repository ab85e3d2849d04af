"""A witness: c2sp.org/tlog-witness ``add-checkpoint``, pure of HTTP and storage.

A witness keeps, for each log it knows (by origin), the size and root of the
last checkpoint it cosigned.  A log sends it each new checkpoint with a
consistency proof from that size; the witness checks the log's signature and
the proof, records the new size and root, and returns its cosignature
(c2sp.org/tlog-cosignature, ``encd.checkpoint.cosign``).  A witness never
cosigns two checkpoints that are not consistent, so a log that showed one
party a different history than another would need every witness to lie.

The request body (``AddCheckpoint``)::

    old <size of the previous checkpoint, ASCII decimal, no leading zeros>
    <base64 hash>                      (zero to 63 lines: the RFC 6962
    ...                                 consistency proof from old to new)
    <empty line>
    <the signed checkpoint, verbatim>

``Witness.add_checkpoint`` answers with the cosignature line or raises
``Refused`` carrying the HTTP status the spec gives for each failure:
400 malformed, old size above the checkpoint's, or a size-0 checkpoint whose root
is not the empty tree's, 403 no valid signature by
the log's key, 404 an unknown origin, 409 the old size is not the size the
witness last cosigned (``Refused.size`` is that size, sent back as
``text/x.tlog.size``) or, without a size, the same size with another root (a
fork; a client that read it as a stale size would retry for ever), 422 a consistency
proof that does not verify.  Checking the old size and recording the new one
are one atomic step of the ``WitnessState``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from encd.checkpoint import Checkpoint, CosignerKey, cosign, decode_base64, parse_decimal
from encd.errors import Error, InvalidInput, VerificationError
from encd.keys import PublicKey, SigningKey
from encd.merkle import EMPTY_ROOT, HASH_SIZE, MAX_SIZE, verify_consistency
from encd.note import Note, parse_note, verify_note

MAX_PROOF_LINES = 63  # the spec's limit on consistency proof lines
MAX_BODY = 1 << 20  # a checkpoint note is at most 1 MiB; the proof adds < 4 KiB
SIZE_MEDIA_TYPE = "text/x.tlog.size"


class Refused(Error):
    """The witness does not cosign: ``status`` is the HTTP status c2sp.org/tlog-witness
    gives; ``size`` (409 only) the size of the latest checkpoint it cosigned."""

    def __init__(self, status: int, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.size = size


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """An ``add-checkpoint`` request body: the old size, the proof, the signed checkpoint."""

    old_size: int
    proof: tuple[bytes, ...]
    signed_checkpoint: bytes

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpoint:
        """Parse the body; InvalidInput names the line and the rule.  Nothing is verified."""
        cut = body.find(b"\n\n")
        if cut < 0:
            raise InvalidInput("add-checkpoint", "no empty line before the checkpoint")
        try:
            lines = body[:cut].decode("ascii").split("\n")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                "add-checkpoint", f"non-ASCII byte at {exc.start} before the checkpoint"
            ) from None
        if not lines[0].startswith("old "):
            raise InvalidInput(
                "add-checkpoint.old", f"line 1 must be 'old <size>', got {lines[0]!r}"
            )
        old_size = parse_decimal(lines[0][4:], "add-checkpoint.old", "old size", MAX_SIZE)
        hashes = lines[1:]
        if len(hashes) > MAX_PROOF_LINES:
            raise InvalidInput(
                "add-checkpoint.proof",
                f"{len(hashes)} consistency proof lines, more than {MAX_PROOF_LINES}",
            )
        proof = []
        for j, line in enumerate(hashes):
            digest = decode_base64(line, f"add-checkpoint.proof[{j}]")
            if len(digest) != HASH_SIZE:
                raise InvalidInput(
                    f"add-checkpoint.proof[{j}]",
                    f"line {j + 2} must be a base64 {HASH_SIZE}-byte hash, got {len(digest)} bytes",
                )
            proof.append(digest)
        return cls(old_size, tuple(proof), body[cut + 2 :])

    def to_bytes(self) -> bytes:
        lines = [f"old {self.old_size}", *(base64.b64encode(h).decode() for h in self.proof)]
        return "".join(line + "\n" for line in lines).encode() + b"\n" + self.signed_checkpoint


class WitnessState(Protocol):
    """Where a witness keeps, per origin, the size and root it last cosigned."""

    def latest(self, origin: str) -> tuple[int, bytes] | None:
        """The size and root last cosigned for ``origin``; None if never."""
        ...

    def replace(self, origin: str, old: tuple[int, bytes] | None, new: tuple[int, bytes]) -> bool:
        """Record ``new`` for ``origin`` if what is recorded is still ``old`` (atomically,
        durably, before returning); False, recording nothing, if it is not."""
        ...


class Witness:
    """Cosigns the checkpoints of the ``logs`` it knows, consistently, with ``key``."""

    def __init__(
        self,
        key: SigningKey,
        logs: Iterable[PublicKey],
        state: WitnessState,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.cosigner = CosignerKey.of(key)
        self.logs: dict[str, PublicKey] = {}
        for log in logs:
            if log.name in self.logs:
                raise InvalidInput("logs", f"two keys for the log {log.name!r}")
            self.logs[log.name] = log
        self.state = state
        self.clock = clock

    def add_checkpoint(self, body: bytes) -> bytes:
        """The witness's cosignature line (with its newline) for the checkpoint in ``body``,
        once the checks of the module docstring pass; ``Refused`` otherwise."""
        if len(body) > MAX_BODY:
            raise Refused(400, f"the request is longer than {MAX_BODY} bytes")
        try:
            request = AddCheckpoint.parse(body)
            note = parse_note(request.signed_checkpoint, "checkpoint", strict=False)
            checkpoint = Checkpoint.parse(note.text)
        except InvalidInput as exc:
            raise Refused(400, exc.message) from None
        log = self.logs.get(checkpoint.origin)
        if log is None:
            raise Refused(404, f"this witness does not witness the log {checkpoint.origin!r}")
        _signed_by(note, log)
        if request.old_size > checkpoint.size:
            raise Refused(
                400,
                f"old size {request.old_size} is more than the checkpoint's size {checkpoint.size}",
            )
        if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
            raise Refused(400, "a checkpoint of size 0 must carry the empty tree's root")
        recorded = self.state.latest(checkpoint.origin)
        size, root = recorded or (0, b"")
        if request.old_size != size:
            raise Refused(
                409, f"old size {request.old_size} is not {size}, the size last cosigned", size
            )
        if recorded is not None and size == checkpoint.size and root != checkpoint.root:
            raise Refused(  # (a 409 without a size: the old size is right, the root is not)
                409,
                f"the checkpoint's root at size {size} is not the root cosigned at that size:"
                " the log has forked",
            )
        if size == 0 and request.proof:
            raise Refused(422, "the consistency proof must be empty when the old size is 0")
        if size > 0:
            try:
                verify_consistency(size, checkpoint.size, request.proof, root, checkpoint.root)
            except (InvalidInput, VerificationError) as exc:
                raise Refused(422, f"consistency proof: {exc.message}") from None
        if not self.state.replace(checkpoint.origin, recorded, (checkpoint.size, checkpoint.root)):
            now = self.state.latest(checkpoint.origin)
            raise Refused(409, "another checkpoint was cosigned meanwhile", now[0] if now else 0)
        return cosign(note.text, self.key, int(self.clock()))


def _signed_by(note: Note, log: PublicKey) -> None:
    try:
        verify_note(note, [log])
    except VerificationError as exc:
        raise Refused(403, f"checkpoint: {exc.message}") from None
    except InvalidInput as exc:  # pragma: no cover - parse_note checked the lines
        raise Refused(400, exc.message) from None


__all__ = ["MAX_BODY", "SIZE_MEDIA_TYPE", "AddCheckpoint", "Refused", "Witness", "WitnessState"]
