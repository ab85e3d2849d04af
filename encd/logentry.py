"""The global log's entries: what a leaf commits to.

A leaf reveals no document content: it commits to one event (its id, the
SHA-256 of the event's stored bytes) and the time the log sequenced it::

    entry     = event id (32 bytes) || sequenced_at (uint64, big-endian, ms since the Unix epoch)
    leaf hash = SHA-256(0x00 || entry)            (RFC 6962 §2.1)

40 bytes an entry; docs/formats/log.md is the normative text.
"""

from __future__ import annotations

from dataclasses import dataclass

from encd.errors import InvalidInput
from encd.merkle import leaf_hash

ENTRY_SIZE = 40


@dataclass(frozen=True, slots=True)
class LogEntry:
    event_id: str  # lowercase hex
    sequenced_at: int  # milliseconds since the Unix epoch

    def to_bytes(self) -> bytes:
        return bytes.fromhex(self.event_id) + self.sequenced_at.to_bytes(8, "big")

    @property
    def leaf_hash(self) -> bytes:
        return leaf_hash(self.to_bytes())

    @classmethod
    def parse(cls, data: bytes) -> LogEntry:
        if len(data) != ENTRY_SIZE:
            raise InvalidInput("entry", f"a log entry is {ENTRY_SIZE} bytes, got {len(data)}")
        return cls(data[:32].hex(), int.from_bytes(data[32:], "big"))
