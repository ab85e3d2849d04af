"""Bundles: events with the proofs to check them offline, against one signed checkpoint.

A bundle is UTF-8 JSON Lines: every line is one RFC 8785 canonical JSON
object followed by a newline (docs/formats/bundle.md is the normative text).

- Line 1, the header::

      {"checkpoint":"<signed checkpoint note>","document":"<doc id>"|null,
       "format":"encd-bundle/v1","kind":"document"|"ledger",
       "log_key":"<the log's C2SP verifier key>","origin":"<log origin>","size":N}

- then one line per log entry, in increasing log index::

      {"event":"<the event's exact bytes>","index":i,"proof":["<base64 hash>",...],
       "sequenced_at":<ms>}

  ``proof`` (the RFC 6962 inclusion proof of leaf ``i`` in the tree of size
  ``N``) is present in a *document bundle* and absent from a *ledger export*,
  which lists every entry 0..N-1 so the verifier recomputes the root.

A document bundle holds its document's events and the party events their
verification depends on; it proves what it holds, not that nothing else
exists (see bundle.md, "What a document bundle proves").

``verify_bundle`` takes untrusted bytes (or lines, for a streamed export)
and the log key the caller trusts, and returns a report or raises the first
failure.  Its steps, each marked ``# (n)`` in the code:

(1) header: line 1 is a well-formed header, and its ``log_key`` is exactly the
    trusted key's verifier key;
(2) checkpoint: the header's checkpoint carries a valid signature by the
    trusted key, its origin is the key's name and the header's ``origin``,
    and its tree size is the header's ``size`` (N);
(3) entries: every further line is a well-formed entry (canonical JSON, the
    fields and types of its kind of bundle), indices strictly increase and
    stay below N (a ledger export: exactly 0, 1, 2, ...), the event parses
    (events.md §1-2), and a document bundle's document events all belong to
    its document;
(4) log: every entry is in the checkpoint's tree.  Its leaf hash is
    SHA-256(0x00 || SHA-256(event) || uint64 big-endian sequenced_at); in a
    document bundle its inclusion proof leads to the checkpoint's root, in a
    ledger export the root recomputed from all N entries (a compact range,
    entry by entry) is the checkpoint's root;
(5) replay: from the log's first entry (index 0, the operator registering
    itself), every event is admitted in log order exactly as the ledger
    admits it (``encd.replay``): signatures by keys active at that point,
    chain links, party and title rules;
(6) document: a document bundle holds its document's chain, from the issue
    at seq 0 to the head it shows.

Steps 1-4 establish that the entries are the log's.  A failure in them is
raised when it is seen; a failure in step 5 is raised only once steps 3-4
have passed for every entry (a streamed export replays as it reads and holds
the failure until the root is checked).  So the error is always the
lowest-numbered failing step and, within it, the first line.  Its message
starts ``step <n>: line <l> (index <i>): ``; it keeps its class
(``InvalidInput``, ``VerificationError``, ``RuleViolation``) and evidence,
and ``failed_step(error)`` reads the step number back.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from encd.canonical import canonical_bytes, parse_canonical
from encd.checkpoint import Checkpoint, decode_base64, open_checkpoint
from encd.errors import Error, InvalidInput, VerificationError
from encd.events import Event, event_id
from encd.keys import PublicKey
from encd.logentry import LogEntry
from encd.merkle import (
    HASH_SIZE,
    MAX_SIZE,
    CompactRange,
    leaf_hash,
    node_hash,
    short,
    verify_inclusion,
)
from encd.parties import Party, Preverified, preverify
from encd.replay import Replay, admit
from encd.sigcheck import Job, Workers, workers
from encd.title import DocumentState
from encd.tlogproof import MAX_PROOF_HASHES

FORMAT = "encd-bundle/v1"
DOCUMENT = "document"
LEDGER = "ledger"
KINDS = (DOCUMENT, LEDGER)
#: The longest line accepted: an event is at most 256 KiB, a checkpoint note 1 MiB.
MAX_LINE = 4 * 1024 * 1024

_HEADER_FIELDS = frozenset(
    {"format", "kind", "origin", "log_key", "document", "size", "checkpoint"}
)
_ENTRY_FIELDS = frozenset({"index", "sequenced_at", "event"})
_ENTRY_FIELDS_AND_PROOF = _ENTRY_FIELDS | {"proof"}
_DOC_ID = re.compile(r"[A-Z0-9][A-Z0-9-]{2,63}")


# --- the lines -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BundleHeader:
    """Line 1: which log, which checkpoint, and what the bundle holds."""

    kind: str
    origin: str
    log_key: PublicKey
    document: str | None
    size: int
    checkpoint: bytes  # the signed checkpoint note, verbatim

    def to_line(self) -> bytes:
        return _line(
            {
                "format": FORMAT,
                "kind": self.kind,
                "origin": self.origin,
                "log_key": self.log_key.vkey,
                "document": self.document,
                "size": self.size,
                "checkpoint": self.checkpoint.decode("utf-8"),
            }
        )

    @classmethod
    def parse_line(cls, line: bytes) -> BundleHeader:
        """Parse the header line (without its newline); InvalidInput names the field."""
        value = _object(line, _HEADER_FIELDS, _HEADER_FIELDS)
        if value["format"] != FORMAT:
            raise InvalidInput("format", f"expected {FORMAT!r}, got {value['format']!r}")
        kind = value["kind"]
        if kind not in KINDS:
            raise InvalidInput("kind", f"expected 'document' or 'ledger', got {kind!r}")
        origin = _string(value["origin"], "origin")
        vkey = _string(value["log_key"], "log_key")
        try:
            key = PublicKey.from_vkey(vkey)
        except InvalidInput as exc:
            raise InvalidInput("log_key", exc.reason) from None
        if key.vkey != vkey:
            # One key, one spelling: what a verifier compares is the text.
            raise InvalidInput("log_key", "the verifier key is not in its canonical spelling")
        document = value["document"]
        if kind == DOCUMENT:
            if not isinstance(document, str) or not _DOC_ID.fullmatch(document):
                raise InvalidInput(
                    "document", f"a document bundle names its document id, got {document!r}"
                )
        elif document is not None:
            raise InvalidInput("document", f"must be null in a ledger export, got {document!r}")
        size = _count(value["size"], "size")
        checkpoint = _string(value["checkpoint"], "checkpoint").encode("utf-8")
        return cls(kind, origin, key, document, size, checkpoint)


@dataclass(frozen=True, slots=True)
class BundleEntry:
    """One log entry: its index, sequencing time, the event's exact bytes, and maybe a proof."""

    index: int
    sequenced_at: int  # milliseconds since the Unix epoch, as the log sequenced it
    event: bytes
    proof: tuple[bytes, ...] | None  # present in a document bundle, absent in a ledger export
    line: int = field(default=0, compare=False)  # where it was read (0: not read)

    @property
    def log_entry(self) -> LogEntry:
        """The 40-byte log entry its leaf commits to (docs/formats/log.md)."""
        return LogEntry(event_id(self.event), self.sequenced_at)

    def to_line(self) -> bytes:
        value: dict[str, Any] = {
            "index": self.index,
            "sequenced_at": self.sequenced_at,
            "event": self.event.decode("utf-8"),
        }
        if self.proof is not None:
            value["proof"] = [base64.b64encode(h).decode() for h in self.proof]
        return _line(value)

    @classmethod
    def parse_line(cls, line: bytes, number: int, kind: str) -> BundleEntry:
        """Parse an entry line (without its newline) of a bundle of ``kind``."""
        return cls(*_entry_fields(line, kind), number)


@dataclass(frozen=True, slots=True)
class Bundle:
    """A whole bundle, parsed (nothing verified).  For large exports use ``read_bundle``."""

    header: BundleHeader
    entries: tuple[BundleEntry, ...]

    @classmethod
    def parse(cls, data: bytes) -> Bundle:
        header, entries = read_bundle(data)
        return cls(header, tuple(entries))

    def to_bytes(self) -> bytes:
        return self.header.to_line() + b"".join(e.to_line() for e in self.entries)


def _entry_fields(line: bytes, kind: str) -> tuple[int, int, bytes, tuple[bytes, ...] | None]:
    """An entry line's index, sequencing time, event bytes and proof (``BundleEntry``'s)."""
    value = _object(line, _ENTRY_FIELDS, _ENTRY_FIELDS_AND_PROOF)
    index = _count(value["index"], "index")
    sequenced_at = _count(value["sequenced_at"], "sequenced_at")
    event = _string(value["event"], "event").encode("utf-8")
    proof: tuple[bytes, ...] | None = None
    if kind == DOCUMENT:
        if "proof" not in value:
            raise InvalidInput("proof", "a document bundle gives each entry's inclusion proof")
        proof = _proof(value["proof"])
    elif "proof" in value:
        raise InvalidInput("proof", "a ledger export has no proofs: its root is recomputed")
    return index, sequenced_at, event, proof


def read_bundle(source: bytes | Iterable[bytes]) -> tuple[BundleHeader, Iterator[BundleEntry]]:
    """The header now, and the entries as the iterator is consumed (nothing is verified).

    ``source`` is the whole bundle, or its lines each ending in a newline (a
    binary file object is one).  Errors are InvalidInput starting
    ``line <n>: <field>: ``.
    """
    lines = _lines(source)
    try:
        header = BundleHeader.parse_line(_first(lines))
    except InvalidInput as exc:
        raise exc.prefixed("line 1") from None

    def entries() -> Iterator[BundleEntry]:
        for number, chunk in lines:
            try:
                yield BundleEntry.parse_line(_strip(chunk), number, header.kind)
            except InvalidInput as exc:
                raise exc.prefixed(f"line {number}") from None

    return header, entries()


# --- verification ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BundleReport:
    """What a bundle proved: the checkpoint, how many entries, and the replayed state."""

    kind: str
    document: str | None
    checkpoint: Checkpoint
    entries: int
    documents: Mapping[str, DocumentState]  # a document bundle: its one document
    parties: Mapping[str, Party]  # the registry the bundle holds, as of its last entry


class RootMismatch(VerificationError):
    """A ledger export whose entries do not hash to the checkpoint's root (the evidence)."""

    def __init__(self, size: int, computed: bytes, checkpoint: Checkpoint) -> None:
        super().__init__(
            f"the root of the {size} entries is {short(computed)}; "
            f"the checkpoint's root is {short(checkpoint.root)}"
        )
        self.size = size
        self.computed = computed
        self.checkpoint = checkpoint


def failed_step(error: BaseException) -> int | None:
    """The verification step (1-6) a ``verify_bundle`` error comes from, if it is one."""
    step = getattr(error, "step", None)
    return step if isinstance(step, int) else None


def verify_bundle(source: bytes | Iterable[bytes], log_key: PublicKey) -> BundleReport:
    """Verify a bundle against the log key the caller trusts (steps 1-6, module docstring).

    ``source`` is the whole bundle or its lines (a binary file object
    streams a large export: entries are read, checked and replayed one at a
    time).  Returns the report, or raises the first failure as an encd Error.
    """
    lines = _lines(source)
    # (1) header: well-formed, and for the trusted log key
    try:
        header = BundleHeader.parse_line(_first(lines))
    except InvalidInput as exc:
        raise _at(exc, 1, 1) from None
    if header.log_key != log_key:
        raise _at(
            VerificationError(
                f"log_key: the bundle is for log key {header.log_key.vkey}, "
                f"not the trusted log key {log_key.vkey}"
            ),
            1,
            1,
        )
    # (2) checkpoint: signed by the trusted key; origin and size as the header says
    try:
        checkpoint = open_checkpoint(header.checkpoint, log_key)
    except Error as exc:
        raise _at(exc, 2, 1) from None
    if header.origin != checkpoint.origin:
        raise _at(
            VerificationError(
                f"origin: the header says {header.origin!r}; the checkpoint's is {checkpoint.origin!r}"
            ),
            2,
            1,
        )
    if header.size != checkpoint.size:
        raise _at(
            VerificationError(
                f"size: the header says {header.size}; the checkpoint's tree has {checkpoint.size}"
            ),
            2,
            1,
        )
    run = _Run(header, checkpoint)
    try:
        for number, chunk in lines:
            run.entry(number, chunk)
        return run.finish()
    finally:
        run.close()


class _Run:
    """Steps 3-6 over the entries of one bundle, one line at a time."""

    def __init__(self, header: BundleHeader, checkpoint: Checkpoint) -> None:
        self.header = header
        self.checkpoint = checkpoint
        self.size = checkpoint.size
        self.is_document = header.kind == DOCUMENT
        self.tree = _Border()
        self.replay = Replay()
        self.count = 0
        self.last_index = -1
        self.document_events = 0
        self.pending: Error | None = None  # a step-5 failure, raised once steps 3-4 pass
        self.queued: list[_Queued] = []  # parsed, awaiting their signature checks
        self.checking: list[_Queued] = []  # the chunk whose signatures are being checked
        self.checks: _Checks = _checks(header)

    def entry(self, number: int, chunk: bytes) -> None:
        # (3) a well-formed entry line
        try:
            index, sequenced_at, raw, proof = _entry_fields(_strip(chunk), self.header.kind)
        except InvalidInput as exc:
            raise _at(exc, 3, number) from None
        # (3) log order: strictly increasing, below N; a ledger export has every index
        if self.is_document:
            if index <= self.last_index:
                raise _at(
                    InvalidInput(
                        "index",
                        f"entries must be in increasing log order; {index} follows {self.last_index}",
                    ),
                    3,
                    number,
                    index,
                )
        elif index != self.last_index + 1:
            raise _at(
                InvalidInput(
                    "index",
                    f"a ledger export lists every entry in order: expected {self.last_index + 1}, got {index}",
                ),
                3,
                number,
                index,
            )
        if index >= self.size:
            raise _at(
                InvalidInput(
                    "index", f"{index} is not in the checkpoint's tree of {self.size} entries"
                ),
                3,
                number,
                index,
            )
        # (3) the event parses
        try:
            event = Event.parse(raw)
        except InvalidInput as exc:
            raise _at(exc, 3, number, index) from None
        except (TypeError, ValueError, RecursionError) as exc:
            # Unauthenticated bytes (a ledger export's root is checked last) reach the
            # parser; whatever slips past its checks is still the bundle's fault.
            reason = f"cannot be parsed ({type(exc).__name__}: {exc})"
            raise _at(InvalidInput("event", reason), 3, number, index) from None
        # (3) a document bundle holds party events and its own document's events only
        if self.is_document and not event.is_party_event:
            if event.subject != self.header.document:
                raise _at(
                    InvalidInput(
                        "event",
                        f"an event of document {event.subject} in the bundle of {self.header.document}",
                    ),
                    3,
                    number,
                    index,
                )
            self.document_events += 1
        # (4) the entry is in the checkpoint's tree
        leaf = leaf_hash(bytes.fromhex(event.id) + sequenced_at.to_bytes(8, "big"))  # LogEntry's
        if self.is_document:
            assert proof is not None  # _entry_fields requires it in a document bundle
            try:
                verify_inclusion(leaf, index, self.size, proof, self.checkpoint.root)
            except Error as exc:
                raise _at(exc, 4, number, index) from None
        else:
            self.tree.append(leaf)
        self.last_index = index
        self.count += 1
        # (5) replay, unless an earlier entry already failed it (in chunks: see _replay)
        if self.pending is None:
            if self.count == 1 and index != 0:
                first = VerificationError(
                    "the first entry must be the log's first, index 0 (the operator's own registration)"
                )
                self.pending = _at(first, 5, number, index)
                return
            self.queued.append((event, number, index))
            if len(self.queued) >= REPLAY_CHUNK:
                self._advance()

    def _advance(self) -> None:
        """(5) The chunk being checked is replayed; the queued one is sent to be checked.

        A chunk's signatures are checked ahead of its replay (see ``_Checks``), against
        the registry as it then stands; ``admit`` then only re-checks that each key is
        active at its event, and checks itself any signature not found verified."""
        checking, self.checking = self.checking, []
        queued, self.queued = self.queued, []
        checked = self.checks.results(self.replay.parties) if checking else []
        if self.pending is None and queued:
            self.checks.start([event for event, _, _ in queued], self.replay.parties)
            self.checking = queued
        if checking:
            self._replay(checking, checked)

    def _replay(self, chunk: list[_Queued], checked: list[Preverified]) -> None:
        """(5) Admit a chunk's events in log order."""
        if self.pending is not None:
            return
        state = self.replay
        for (event, number, index), preverified in zip(chunk, checked, strict=True):
            document = None if event.is_party_event else state.documents.get(event.subject)
            try:
                admitted = admit(
                    event,
                    parties=state.parties,
                    document=document,
                    cargo=state.cargo,
                    preverified=preverified,
                )
            except Error as exc:
                self.pending = _at(exc, 5, number, index)
                return
            state.commit(admitted)

    def close(self) -> None:
        """Collect what is still being checked (an error may have cut the run short)."""
        try:
            if self.checking:
                self.checking = []
                self.checks.results(self.replay.parties)
        finally:
            self.checks.close()

    def finish(self) -> BundleReport:
        self._advance()  # the last chunk sent to be checked ...
        self._advance()  # ... and replayed
        # (4) a ledger export: exactly N entries, whose root is the checkpoint's
        if not self.is_document:
            if self.count != self.size:
                raise _at(
                    VerificationError(
                        f"the export holds {self.count} entries; the checkpoint's tree has {self.size}"
                    ),
                    4,
                )
            computed = self.tree.root()
            if computed != self.checkpoint.root:
                raise _at(RootMismatch(self.size, computed, self.checkpoint), 4)
        # (5) the replay's first failure, now that the entries are known to be the log's
        if self.pending is not None:
            raise self.pending
        documents: Mapping[str, DocumentState] = self.replay.documents
        # (6) a document bundle: its document's chain from the issue to its head
        if self.is_document:
            doc_id = self.header.document
            assert doc_id is not None
            state = self.replay.documents.get(doc_id)
            if state is None:
                raise _at(VerificationError(f"the bundle holds no event of document {doc_id}"), 6)
            if self.document_events != state.seq + 1:  # pragma: no cover - step 5 links them
                raise _at(
                    VerificationError(
                        f"document {doc_id}: {self.document_events} events for a chain of {state.seq + 1}"
                    ),
                    6,
                )
            documents = {doc_id: state}
        return BundleReport(
            kind=self.header.kind,
            document=self.header.document,
            checkpoint=self.checkpoint,
            entries=self.count,
            documents=MappingProxyType(dict(documents)),
            parties=MappingProxyType(dict(self.replay.parties)),
        )


# --- helpers -------------------------------------------------------------------------------


class _Border:
    """The right border of a ledger export's tree, entry by entry: ``merkle.CompactRange``
    without re-checking its hashes and recording its nodes on every append (the leaves
    are hashes computed here).  The root is CompactRange's."""

    __slots__ = ("hashes", "size")

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        node, index = leaf, self.size
        while index & 1:
            node = node_hash(self.hashes.pop(), node)
            index >>= 1
        self.hashes.append(node)
        self.size += 1

    def root(self) -> bytes:
        return CompactRange(self.size, tuple(self.hashes)).root()


REPLAY_CHUNK = 512
#: A ledger export of at least this many entries has its signatures checked in worker
#: processes (encd.sigcheck), started once and kept; a smaller bundle, on threads.
PROCESS_MIN_ENTRIES = 4 * REPLAY_CHUNK
_POOL: ThreadPoolExecutor | None = None

_Queued = tuple[Event, int, int]  # an event, its line number and its log index


class _Checks:
    """Signature checks ahead of the replay, one chunk at a time: ``start`` a chunk, and
    later have its ``results``, one ``Preverified`` per event (see encd.parties)."""

    def start(self, events: list[Event], parties: Mapping[str, Party]) -> None:
        raise NotImplementedError

    def results(self, parties: Mapping[str, Party]) -> list[Preverified]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _ThreadChecks(_Checks):
    """On threads, when the results are asked for (while the main thread waits: a thread
    cannot check while the main thread runs Python, see encd.sigcheck)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def start(self, events: list[Event], parties: Mapping[str, Party]) -> None:
        self.events = events

    def results(self, parties: Mapping[str, Party]) -> list[Preverified]:
        events, self.events = self.events, []
        return list(_pool().map(lambda event: preverify(event, parties), events))


class _ProcessChecks(_Checks):
    """In worker processes, while the main thread goes on parsing and replaying."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self.keys: list[tuple[int, tuple[str, bytes], bytes]] = []  # (event, signer, key)
        self.count = 0
        # Every key a party event of the bundle has declared so far, by (name, key hash):
        # what the registry will hold once those events are replayed (a chunk is sent
        # before the one ahead of it is replayed).  Only a hint, as the results are.
        self.declared: dict[tuple[str, bytes], bytes] = {}

    def _declare(self, event: Event) -> None:
        body = event.body
        if event.type == "register":
            texts = body.get("keys")
        elif event.type in ("add_key", "rotate_key"):
            texts = [body.get("key" if event.type == "add_key" else "new")]
        else:
            return
        for text in texts if isinstance(texts, list) else ():
            try:
                key = PublicKey.from_vkey(text)
            except (InvalidInput, TypeError, ValueError, AttributeError):
                continue  # the replay will say what is wrong with it
            self.declared[(key.name, key.hash)] = key.raw

    def start(self, events: list[Event], parties: Mapping[str, Party]) -> None:
        jobs: list[Job] = []
        keys = []
        for event in events:
            if event.is_party_event:
                self._declare(event)
        declared = self.declared
        for i, event in enumerate(events):
            for sig in event.signatures:
                raw = declared.get((sig.name, sig.key_hash))
                if raw is None and (party := parties.get(sig.name)) is not None:
                    raw = party.key_by_hash(sig.key_hash)
                if raw is not None:
                    jobs.append((raw, event.text, sig.signature))
                    keys.append((i, (sig.name, sig.key_hash), raw))
        self.keys, self.count = keys, len(events)
        self.workers.send(jobs)

    def results(self, parties: Mapping[str, Party]) -> list[Preverified]:
        verified = self.workers.receive()
        out: list[dict[tuple[str, bytes], bytes]] = [{} for _ in range(self.count)]
        for (i, signer, raw), ok in zip(self.keys, verified, strict=True):
            if ok:
                out[i][signer] = raw
        self.keys, self.count = [], 0
        return list(out)

    def close(self) -> None:
        self.workers.lock.release()


def _checks(header: BundleHeader) -> _Checks:
    if header.kind == LEDGER and header.size >= PROCESS_MIN_ENTRIES:
        found = workers()
        if found is not None and found.lock.acquire(blocking=False):
            return _ProcessChecks(found)
    return _ThreadChecks()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 1, thread_name_prefix="encd-verify"
        )
    return _POOL


def _at(exc: Error, step: int, line: int | None = None, index: int | None = None) -> Error:
    """``exc`` located: ``step <n>: line <l> (index <i>): `` in front, same class and evidence."""
    where = f"step {step}"
    if line is not None:
        where += f": line {line}" if index is None else f": line {line} (index {index})"
    located = exc.prefixed(where)
    vars(located).update(step=step, line=line, index=index)
    return located


def _line(value: dict[str, Any]) -> bytes:
    return canonical_bytes(value) + b"\n"


def _lines(source: bytes | Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, the line as read); ``_strip`` checks each one."""
    chunks: Iterable[bytes] = io.BytesIO(source) if isinstance(source, bytes) else source
    return enumerate(chunks, 1)


def _strip(chunk: bytes) -> bytes:
    """One line without its newline; InvalidInput unless it is exactly one non-empty line."""
    if not isinstance(chunk, bytes):
        raise InvalidInput("", f"expected bytes, got {type(chunk).__name__}")
    if len(chunk) > MAX_LINE:
        raise InvalidInput("", f"the line is longer than {MAX_LINE} bytes")
    if not chunk.endswith(b"\n"):
        raise InvalidInput("", "the line does not end with a newline")
    line = chunk[:-1]
    if b"\n" in line:
        raise InvalidInput("", "more than one line given as one")
    if not line:
        raise InvalidInput("", "the line is empty; every line is one JSON object")
    if line.endswith(b"\r"):
        raise InvalidInput("", "the line ends with CR LF; lines end with a bare LF (\\n)")
    return line


def _first(lines: Iterator[tuple[int, bytes]]) -> bytes:
    first = next(lines, None)
    if first is None:
        raise InvalidInput("", "the bundle is empty; line 1 must be its header")
    return _strip(first[1])


def _object(line: bytes, required: frozenset[str], allowed: frozenset[str]) -> dict[str, Any]:
    value = parse_canonical(line)
    if not isinstance(value, dict):
        raise InvalidInput("", f"expected a JSON object, got {type(value).__name__}")
    if value.keys() == required:
        return value  # every field required, none other (the usual line)
    for name in sorted(value):
        if name not in allowed:
            raise InvalidInput(name, "unknown field")
    for name in sorted(required):
        if name not in value:
            raise InvalidInput(name, "required field is missing")
    return value


def _string(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(name, f"expected a non-empty string, got {_kind(value)}")
    return value


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SIZE:
        raise InvalidInput(name, f"expected an integer >= 0, got {_kind(value)}")
    return value


def _proof(value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise InvalidInput("proof", f"expected a list of base64 hashes, got {_kind(value)}")
    if len(value) > MAX_PROOF_HASHES:
        raise InvalidInput(
            "proof", f"{len(value)} hashes, more than the {MAX_PROOF_HASHES} any tree needs"
        )
    hashes = []
    for i, item in enumerate(value):
        where = f"proof[{i}]"
        if not isinstance(item, str):
            raise InvalidInput(where, f"expected a base64 hash, got {_kind(item)}")
        digest = decode_base64(item, where)
        if len(digest) != HASH_SIZE:
            raise InvalidInput(where, f"expected a {HASH_SIZE}-byte hash, got {len(digest)} bytes")
        hashes.append(digest)
    return tuple(hashes)


def _kind(value: object) -> str:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return "null" if value is None else type(value).__name__


__all__ = [
    "DOCUMENT",
    "FORMAT",
    "LEDGER",
    "Bundle",
    "BundleEntry",
    "BundleHeader",
    "BundleReport",
    "RootMismatch",
    "failed_step",
    "read_bundle",
    "verify_bundle",
]
