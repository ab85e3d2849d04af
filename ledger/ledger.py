"""The ledger: one sequencer appending signed events to the store and the Merkle log.

Append, for each event (design.md §5, §7):

1. If an event with the same id is already in the log, return its receipt
   and append nothing.
2. Check it with encd's own ``admit`` (signatures against keys active now,
   chain position, title or party rules, cargo singularity) against the
   state just before it: one code path for live appends and audits.
3. Stage the event row, the document or party projection, the cargo
   index changes, the leaf (event id and sequencing time) and the Merkle
   nodes it completes.

Then, once per *batch*, in one transaction: write everything staged, sign a
checkpoint for the new tree size and commit.  Concurrent appends share that
transaction, its one fsync and its one checkpoint (group commit).  A
failure anywhere before the commit leaves the old state, and the
sequencer reloads its caches from the store.

One sequencer at a time: on PostgreSQL each batch holds a transaction-level
advisory lock; on SQLite ``BEGIN IMMEDIATE`` holds the database's write lock.
A batch first checks that the store's log size is the one it cached, and
reloads otherwise, so several processes may append and the log never forks.
"""

from __future__ import annotations

import base64
import json
import logging
import operator
import os
import threading
import time
from collections import ChainMap, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from nacl.bindings import crypto_sign_open
from nacl.exceptions import CryptoError
from sqlalchemy import (
    Connection,
    Engine,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from encd.checkpoint import Checkpoint, sign_checkpoint
from encd.document import Document
from encd.errors import Error, InvalidInput
from encd.events import Event, format_time, parse_time
from encd.keys import SigningKey
from encd.logentry import LogEntry
from encd.merkle import (
    CompactRange,
    GetNode,
    Memo,
    consistency_proof,
    inclusion_proof,
    inclusion_proofs,
)
from encd.parties import Party, Preverified, load_party, preverify
from encd.replay import Admitted, admit
from encd.sigcheck import Job, Workers, workers
from encd.title import DocumentState, TitleChange, dump_state, load_state
from encd.tlogproof import TlogProof
from encd.tlogproof import encode as encode_tlog_proof
from encd.validation import abridged
from ledger.db import (
    DirectReads,
    WriterLock,
    clock_warning,
    durability_warning,
    lock_log,
    make_engine,
    migrate,
)
from ledger.schema import (
    CHECKPOINT,
    COSIGNATURE,
    EVENT,
    META,
    PARTY,
    TREE_NODE,
)

MAX_BATCH = 512
DOC_CACHE = 20_000  # documents whose stored-state text and parties are remembered, at most
# The sequencer's document states kept in memory, weighed by the length of their stored
# JSON (a state's parsed content takes ~9 times its text: 27 KB for the corridor document,
# measured with tracemalloc), and bounded by that weight, not by their count: 20,000 of
# them took ~550 MB, and large documents (up to 256 KiB of content each) could fill
# gigabytes.  128 MiB holds ~4,900 corridor documents; a state not held is read from the
# store (~0.1 ms).
DOC_CACHE_BYTES = 128 * 2**20
MEMORY_PER_TEXT_BYTE = 9
DOC_OVERHEAD = 2_000  # bytes a cached state takes beyond its text
NODE_CACHE = 1_000_000  # tree nodes kept in memory (~150 MB at most)
CATCH_UP_MAX = 10_000  # events another process appended that are caught up with, not reloaded
RAGGED_CACHE = 100_000  # composed hashes of ragged ranges kept (encd.merkle.Memo)
PARSE_CHUNK = 256  # append_many: events parsed while the workers check the chunk before
PROCESS_MIN_EVENTS = 2 * PARSE_CHUNK  # fewer than this: checked on the caller's thread
WORKERS_WAIT = 0.5  # seconds a chunk waits for the workers before it is checked here
_PLACEHOLDER = bytes(32)
Rows = Callable[[str, Sequence[Any]], list[Any]]  # one query's rows: _raw_rows, DirectReads
_NONE: frozenset[str] = (
    frozenset()
)  # stands in for a node's hash while listing the nodes a proof needs

Clock = Callable[[], datetime]


class _Driver:
    """The driver's own cursor on a SQLAlchemy connection, inside its transaction.

    The sequencer writes a batch as a handful of ``executemany`` calls of fixed
    statements; through SQLAlchemy Core each row cost more in statement building
    and parameter processing than in the database.  Statements are written with
    ``?`` and turned into the driver's placeholder (``%s`` for psycopg)."""

    def __init__(self, conn: Connection) -> None:
        self._cursor = conn.connection.cursor()
        self._postgres = conn.dialect.name == "postgresql"

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._postgres else sql

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(self._sql(sql), rows)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._cursor.execute(self._sql(sql), params)
        return list(self._cursor.fetchall())

    def close(self) -> None:
        self._cursor.close()

    def __enter__(self) -> _Driver:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _workers_for(count: int) -> Workers | None:
    """Signature-checking worker processes for ``count`` events; None when they would not
    help (few events, or one core to run on)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if count < PROCESS_MIN_EVENTS or (cores or 1) < 2:
        return None
    return workers()


def _verify_job(job: Job) -> bool:
    """One check on the caller's thread; like a worker's, only a hint for verify_signers."""
    key, message, signature = job
    try:
        crypto_sign_open(signature + message, key)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


def _raw_rows(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Rows of one query through the driver's own cursor (see ``_Driver``): on the
    sequencer's and the proofs' paths SQLAlchemy's machinery costs more than the query."""
    with _Driver(conn) as driver:
        return driver.rows(sql, params)


def _now() -> datetime:
    return datetime.now(UTC)


class StoreError(Error):
    """The store refused or failed a write; nothing of the batch was kept."""


class NotFound(Error):
    """No such document, event or log position."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where an event sits in the log, with a C2SP tlog-proof anyone can check offline."""

    event_id: str
    log_index: int
    sequenced_at: int
    checkpoint: bytes
    proof: bytes
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "log_index": self.log_index,
            "sequenced_at": self.sequenced_at,
            "checkpoint": self.checkpoint.decode(),
            "tlog_proof": self.proof.decode(),
            "duplicate": self.duplicate,
        }


@dataclass(frozen=True)
class TitleProof:
    """A document's title state and the proof that its head event is in the log."""

    stored: Mapping[str, Any]  # the state as the ledger keeps it: encd.title.dump_state
    head_index: int
    head_sequenced_at: int
    checkpoint: bytes
    proof: TlogProof

    @property
    def state(self) -> DocumentState:
        """The state itself (its content validated again: what a title answer can skip)."""
        return load_state(self.stored)


@dataclass
class _Pending:
    event: Event
    preverified: Preverified
    future: Future[Receipt] = field(default_factory=Future)


_log = logging.getLogger("uvicorn.error")  # (the service's log, as uvicorn sets it up)
FUTURE_SKEW_MS = 300_000  # as far ahead as a request signature's `created` may be


def _not_ahead(event: Event, now_ms: int) -> None:
    """Refuse an event dated, or a milestone placed, more than FUTURE_SKEW_MS after the
    log's clock: a signer's clock set wrong, which the log would otherwise keep for good.
    (Not a title rule: a replay does not know when an event was submitted.)"""
    limit = now_ms + FUTURE_SKEW_MS
    moments = [("time", event.time)]
    if event.type == "milestone":
        moments.append(("body.at", parse_time(event.body["at"], "body.at")))
    for name, moment in moments:
        if moment.timestamp() * 1000 > limit:
            clock = datetime.fromtimestamp(now_ms / 1000, UTC).replace(microsecond=0)
            raise InvalidInput(
                name,
                f"{format_time(moment)} is more than {FUTURE_SKEW_MS // 1000} s after the log's "
                f"clock ({format_time(clock)}): is the signer's clock right?",
            )


ROLLED_BACK = "store failure: the batch was rolled back, nothing of it is logged"


def _store_failure(exc: BaseException, events: int) -> StoreError:
    """What the submitters of a batch the store refused are told: that nothing of it was
    logged, not the database's own words (they may quote another party's data); those go
    to the service's log."""
    _log.error("a batch of %d events was rolled back: %s", events, exc)
    return StoreError(ROLLED_BACK)


@dataclass
class _Batch:
    """What one batch has staged so far (nothing is written until the end)."""

    parties: dict[str, Party] = field(default_factory=dict)
    documents: dict[str, DocumentState] = field(default_factory=dict)
    new_documents: set[str] = field(default_factory=set)
    claimed: dict[str, str] = field(default_factory=dict)
    #: every key released in the batch, even if claimed again since (``claimed`` then
    #: says whose it is): its stored row, if any, is deleted before the claims are inserted
    released: set[str] = field(default_factory=set)
    events: list[tuple[int, Admitted, int]] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    nodes: dict[tuple[int, int], bytes] = field(default_factory=dict)
    head_index: dict[str, int] = field(default_factory=dict)
    doc_parties: dict[str, set[str]] = field(default_factory=dict)


class _CargoView(Mapping[str, str]):
    """The cargo index as the batch sees it: staged changes over the stored rows."""

    def __init__(self, driver: _Driver, batch: _Batch) -> None:
        self._driver = driver
        self._batch = batch

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._batch.claimed:
            return self._batch.claimed[key]
        if key in self._batch.released:
            return default
        rows = self._driver.rows("SELECT doc_id FROM cargo WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else default

    def owners(self, keys: Sequence[str]) -> dict[str, str]:
        """The documents holding any of ``keys``, read in one query."""
        found: dict[str, str] = {}
        stored = [k for k in keys if k not in self._batch.claimed and k not in self._batch.released]
        for start in range(0, len(stored), 500):
            part = stored[start : start + 500]
            marks = ", ".join("?" * len(part))
            sql = f"SELECT key, doc_id FROM cargo WHERE key IN ({marks})"
            found.update((str(k), str(d)) for k, d in self._driver.rows(sql, part))
        found.update((k, self._batch.claimed[k]) for k in keys if k in self._batch.claimed)
        return found

    def __getitem__(self, key: str) -> str:
        found: str | None = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:  # pragma: no cover - the rules only look keys up
        stored = {str(row[0]) for row in self._driver.rows("SELECT key FROM cargo")}
        keys = (stored - self._batch.released) | set(self._batch.claimed)
        return iter(sorted(keys))

    def __len__(self) -> int:  # pragma: no cover
        return sum(1 for _ in self)


class DocumentCache:
    """Document states by id, least recently used first out, bounded by an estimate of the
    memory they take (``MEMORY_PER_TEXT_BYTE`` per byte of their stored text, plus
    ``DOC_OVERHEAD``).  ``forget`` is told each id that leaves."""

    def __init__(self, budget: int, forget: Callable[[str], None]) -> None:
        self.budget = budget
        self.weight = 0
        self._forget = forget
        self._entries: OrderedDict[str, tuple[DocumentState, int, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, doc_id: str) -> DocumentState | None:
        entry = self._entries.get(doc_id)
        return None if entry is None else entry[0]

    def put(self, doc_id: str, state: DocumentState, head_index: int, text_size: int) -> None:
        weight = DOC_OVERHEAD + MEMORY_PER_TEXT_BYTE * text_size
        entries = self._entries
        old = entries.get(doc_id)
        if old is not None:
            self.weight -= old[2]
            entries.move_to_end(doc_id)
        entries[doc_id] = (state, head_index, weight)
        self.weight += weight
        while self.weight > self.budget and len(entries) > 1:
            gone, (_, _, freed) = self._entries.popitem(last=False)
            self.weight -= freed
            self._forget(gone)

    def pop(self, doc_id: str) -> None:
        old = self._entries.pop(doc_id, None)
        if old is not None:
            self.weight -= old[2]
            self._forget(doc_id)

    def clear(self) -> None:
        for doc_id in self._entries:
            self._forget(doc_id)
        self._entries.clear()
        self.weight = 0


class Ledger:
    """The append-only ledger over one database.  Thread-safe; one sequencer thread."""

    def __init__(
        self,
        url: str,
        log_key: SigningKey,
        *,
        clock: Clock = _now,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.url = url
        self.log_key = log_key
        self.origin = log_key.name
        self.clock = clock
        self.max_batch = max_batch
        self.writer: Engine = make_engine(url, writer=True)
        self.reader: Engine = make_engine(url)
        #: Short reads outside the pool, for the busy read paths (proofs, titles, parties).
        self.reads = DirectReads(self.reader)
        self._sequencer_lock = WriterLock(url, "sequencer")
        migrate(self.writer)
        self._check_identity()
        for warning in (durability_warning(self.writer), clock_warning(self.writer, clock())):
            if warning is not None:
                _log.warning("%s", warning)
        # Sequencer state: touched only by the sequencer thread (or under _state_lock).
        self._state_lock = threading.Lock()
        self._size = -1  # -1: reload from the store before the next batch
        self._seen_size = 0  # the largest log size this process has seen stored
        self._range = CompactRange()
        self._parties: dict[str, Party] = {}
        # parties() of the API paths: (the largest updated_index read, the registry)
        self._registry: tuple[int | None, dict[str, Party]] | None = None
        self._docs = DocumentCache(DOC_CACHE_BYTES, self._forget_serialised)
        self._checkpoint = b""
        self._last_at = 0  # the sequenced_at of the log's last entry (ms)
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._doc_parties: dict[str, frozenset[str]] = {}  # pairs known to be stored
        # each document's content and endorsement chain as last serialised (_state_text)
        self._serialised: dict[str, tuple[Document, str, tuple[TitleChange, ...], str]] = {}
        self._ragged: Memo = {}  # committed ragged ranges only: a rolled-back batch adds none
        self._queue: list[_Pending] = []
        self._queue_ready = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Called after each commit with the (log index, event) pairs it appended.
        self.listeners: list[Callable[[list[tuple[int, Event]]], None]] = []
        #: Test hook: called with a step name between the steps of a batch.
        self.fault: Callable[[str], None] | None = None
        with self._sequencer_lock, self.writer.begin() as conn:
            lock_log(conn)
            self._reload(conn)
            if self._size == 0 and not self._checkpoint:
                self._checkpoint = self._write_checkpoint(conn, int(time.time() * 1000))

    # --- identity ------------------------------------------------------------------------

    def _check_identity(self) -> None:
        """A store belongs to one log: the first key to open it; refuse any other."""
        vkey = self.log_key.public.vkey
        with self.writer.begin() as conn:
            row = conn.execute(select(META.c.value).where(META.c.key == "log_vkey")).first()
            if row is None:
                conn.execute(insert(META).values(key="log_vkey", value=vkey))
            elif row[0] != vkey:
                raise InvalidInput("log key", f"this store belongs to log key {row[0]}, not {vkey}")

    # --- the sequencer ---------------------------------------------------------------------

    def append(self, raw: bytes) -> Receipt:
        """Append one signed event; returns its receipt (the first one, if already logged)."""
        return self.submit(raw).result()

    def append_many(self, raws: Sequence[bytes]) -> list[Receipt | Error]:
        """Append several events (in order); each gets its receipt or its error.

        With more than one core and enough events, the signatures are checked in worker
        processes (encd.sigcheck) while this thread parses the next chunk, and each
        chunk reaches the sequencer at once, so its batches stay full.  Callers take
        turns with the workers chunk by chunk; a chunk that cannot have them soon is
        checked on the caller's thread."""
        futures: list[Future[Receipt] | Error] = []
        workers = _workers_for(len(raws))
        if workers is None:  # checked here, handed over a chunk at a time (full batches)
            for start in range(0, len(raws), PARSE_CHUNK):
                pending: list[_Pending] = []
                for parsed in self._parse_chunk(raws[start : start + PARSE_CHUNK]):
                    if isinstance(parsed, Error):
                        futures.append(parsed)
                    else:
                        pending.append(_Pending(parsed, preverify(parsed, self._parties)))
                        futures.append(pending[-1].future)
                self._enqueue_or_fail(pending)
        else:
            self._submit_checked_elsewhere(raws, workers, futures)
        results: list[Receipt | Error] = []
        for item in futures:
            if isinstance(item, Error):
                results.append(item)
                continue
            try:
                results.append(item.result())
            except Error as exc:
                results.append(exc)
        return results

    def _parse_chunk(self, raws: Sequence[bytes]) -> list[Event | Error]:
        chunk: list[Event | Error] = []
        for raw in raws:
            try:
                chunk.append(Event.parse(raw))
            except Error as exc:
                chunk.append(exc)
        return chunk

    def _submit_checked_elsewhere(
        self, raws: Sequence[bytes], workers: Workers, out: list[Future[Receipt] | Error]
    ) -> None:
        chunk = self._parse_chunk(raws[:PARSE_CHUNK])
        start = PARSE_CHUNK
        while chunk:
            jobs: list[Job] = []
            keys: list[tuple[int, tuple[str, bytes], bytes]] = []
            for i, item in enumerate(chunk):
                if isinstance(item, Error):
                    continue
                for sig in item.signatures:
                    party = self._parties.get(sig.name)
                    key = None if party is None else party.key_by_hash(sig.key_hash)
                    if key is not None:
                        jobs.append((key, item.text, sig.signature))
                        keys.append((i, (sig.name, sig.key_hash), key))
            following = raws[start : start + PARSE_CHUNK]
            start += PARSE_CHUNK
            if workers.lock.acquire(timeout=WORKERS_WAIT):
                try:
                    workers.send(jobs)
                    after = self._parse_chunk(following)  # while the workers check this one
                    verified = workers.receive()
                finally:
                    workers.lock.release()
            else:  # the workers are busy elsewhere (an audit, say): check here
                verified = [_verify_job(job) for job in jobs]
                after = self._parse_chunk(following)
            self._enqueue_checked(chunk, keys, verified, out)
            chunk = after

    def _enqueue_checked(
        self,
        chunk: list[Event | Error],
        keys: list[tuple[int, tuple[str, bytes], bytes]],
        verified: list[bool],
        out: list[Future[Receipt] | Error],
    ) -> None:
        # The flags are a hint: verify_signers checks again any signature not listed.
        checked: list[dict[tuple[str, bytes], bytes]] = [{} for _ in chunk]
        for (i, signer, key), ok in zip(keys, verified, strict=True):
            if ok:
                checked[i][signer] = key
        pending: list[_Pending] = []
        for item, preverified in zip(chunk, checked, strict=True):
            if isinstance(item, Error):
                out.append(item)
            else:
                pending.append(_Pending(item, preverified))
                out.append(pending[-1].future)
        self._enqueue_or_fail(pending)

    def _enqueue_or_fail(self, pending: list[_Pending]) -> None:
        try:
            self._enqueue(pending)
        except Error as exc:
            for entry in pending:
                entry.future.set_exception(exc)

    def submit(self, raw: bytes) -> Future[Receipt]:
        """Queue an event for the sequencer; malformed bytes fail here, at once."""
        return self.submit_event(Event.parse(raw))

    def submit_event(self, event: Event) -> Future[Receipt]:
        """Queue an already parsed event for the sequencer."""
        # Signatures are checked here, on the caller's thread (PyNaCl releases the GIL, so
        # callers verify in parallel); the sequencer re-checks only that the key is active.
        return self.submit_checked(event, preverify(event, self._parties))

    def submit_events(self, events: Sequence[Event]) -> list[Future[Receipt]]:
        """``submit_event`` for each; an error queueing one is its future's error."""
        futures: list[Future[Receipt]] = []
        for event in events:
            try:
                futures.append(self.submit_event(event))
            except Error as exc:
                failed: Future[Receipt] = Future()
                failed.set_exception(exc)
                futures.append(failed)
        return futures

    def submit_checked(self, event: Event, preverified: Preverified) -> Future[Receipt]:
        """Queue ``event`` whose signatures were checked elsewhere (``preverified``: see
        encd.parties.preverify; a hint, the sequencer checks any other signature itself)."""
        pending = _Pending(event, preverified)
        self._enqueue([pending])
        return pending.future

    def _enqueue(self, pending: list[_Pending]) -> None:
        with self._queue_ready:
            if self._closed:
                raise StoreError("the ledger is closed")
            self._queue.extend(pending)
            self._queue_ready.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="encd-sequencer", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        with self._queue_ready:
            self._closed = True
            self._queue_ready.notify_all()
        if self._thread is not None:
            self._thread.join()
        self.reads.close()
        self.writer.dispose()
        self.reader.dispose()
        self._sequencer_lock.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._queue_ready:
                while not self._queue and not self._closed:
                    self._queue_ready.wait()
                if not self._queue and self._closed:
                    return
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._sequence(batch)

    def _sequence(self, pending: list[_Pending]) -> None:
        with self._state_lock:
            try:
                outcomes = self._write_batch(pending)
            except Exception as exc:  # the whole batch is rolled back
                self._size = -1
                error = exc if isinstance(exc, Error) else _store_failure(exc, len(pending))
                for item in pending:
                    if not item.future.done():
                        item.future.set_exception(error)
                return
        appended: list[tuple[int, Event]] = []
        for item, outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, Receipt):
                item.future.set_result(outcome)
                if not outcome.duplicate:
                    appended.append((outcome.log_index, item.event))
            else:
                item.future.set_exception(outcome)
        for listener in list(self.listeners):
            if appended:
                listener(appended)

    def _step(self, name: str) -> None:
        if self.fault is not None:
            self.fault(name)

    def _write_batch(self, pending: list[_Pending]) -> list[Receipt | Error]:
        outcomes: list[Error | int] = []
        batch = _Batch()
        now = int(self.clock().timestamp() * 1000)
        with self._sequencer_lock, self.writer.begin() as conn:
            lock_log(conn)
            self._sync(conn)
            # never before the entry it follows: a clock stepped back, or another host's
            # clock a little ahead of this one's, does not make the log's times go back
            sequenced_at = max(now, self._last_at)
            driver = _Driver(conn)
            cargo = _CargoView(driver, batch)
            size = self._size
            tree = self._range
            leaves: list[bytes] = []
            ids = [item.event.id for item in pending]
            logged = {
                str(row[0]): int(row[1])
                for start in range(0, len(ids), 500)
                for row in driver.rows(
                    "SELECT event_id, log_index FROM event WHERE event_id IN ("
                    + ", ".join("?" * len(ids[start : start + 500]))
                    + ")",
                    ids[start : start + 500],
                )
            }
            for item in pending:
                event = item.event
                # (1) the same event again: its first receipt, nothing appended
                if event.id in batch.ids:
                    outcomes.append(batch.ids[event.id])
                    continue
                if event.id in logged:
                    outcomes.append(-1 - logged[event.id])  # marks a duplicate
                    continue
                # (2) admit against the state just before it
                try:
                    admitted = self._admit(conn, batch, event, cargo, item.preverified)
                    _not_ahead(event, sequenced_at)
                except Error as exc:
                    outcomes.append(exc)
                    continue
                # (3) stage
                index = size
                leaves.append(LogEntry(event.id, sequenced_at).leaf_hash)
                size += 1
                batch.ids[event.id] = index
                batch.events.append((index, admitted, sequenced_at))
                self._stage(batch, admitted, index)
                outcomes.append(index)
            if batch.events:
                tree, nodes = tree.extend(leaves)
                batch.nodes = {(node.level, node.index): node.hash for node in nodes}
                self._flush(conn, driver, batch)
                checkpoint_note = self._sign_and_store(conn, tree, sequenced_at)
            else:
                checkpoint_note = self._checkpoint
            receipts = self._receipts(conn, batch, outcomes, size, checkpoint_note)
            driver.close()
            self._step("before_commit")
        # committed: the caches follow
        self._size, self._range, self._checkpoint = size, tree, checkpoint_note
        if batch.events:
            self._last_at = sequenced_at
        self._seen_size = max(self._seen_size, size)
        self._cache_nodes(batch.nodes)
        self._parties.update(batch.parties)
        for doc_id, state in batch.documents.items():
            self._remember(doc_id, state, batch.head_index[doc_id])
        if len(self._doc_parties) > DOC_CACHE:
            self._doc_parties = {}
        for doc_id, involved in batch.doc_parties.items():
            self._doc_parties[doc_id] = self._doc_parties.get(doc_id, _NONE) | involved
        return receipts

    def _admit(
        self,
        conn: Connection,
        batch: _Batch,
        event: Event,
        cargo: _CargoView,
        preverified: Preverified,
    ) -> Admitted:
        # (a ChainMap's look-ups cost several times a dict's: only when this batch has
        # staged a party does the view need one)
        parties: Mapping[str, Party] = (
            ChainMap(batch.parties, self._parties) if batch.parties else self._parties
        )
        document = None
        if not event.is_party_event:
            document = batch.documents.get(event.subject) or self._document(conn, event.subject)
        return admit(
            event, parties=parties, document=document, cargo=cargo, preverified=preverified
        )

    def _stage(self, batch: _Batch, admitted: Admitted, index: int) -> None:
        if admitted.party is not None:
            batch.parties[admitted.party.id] = admitted.party
        if admitted.document is not None:
            doc = admitted.document
            if doc.seq == 0:
                batch.new_documents.add(doc.id)
            batch.documents[doc.id] = doc
            batch.head_index[doc.id] = index
            involved = batch.doc_parties.setdefault(doc.id, set())
            involved.update(admitted.signers)
            involved.update({doc.holder, doc.carrier, doc.controller})
            for key in admitted.released:
                batch.claimed.pop(key, None)
                batch.released.add(key)
            for key in admitted.claimed:
                batch.claimed[key] = doc.id

    def _flush(self, conn: Connection, driver: _Driver, batch: _Batch) -> None:
        driver.many(
            "INSERT INTO event (log_index, event_id, chain, subject, seq, type, sequenced_at, raw)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (index, e.id, e.chain, e.subject, e.seq, e.type, at, e.raw)
                for index, e, at in ((i, a.event, at) for i, a, at in batch.events)
            ],
        )
        self._step("after_events")
        for pid, party in batch.parties.items():
            values = {
                "seq": party.seq,
                "head": party.head,
                "state": json.dumps(party.to_json(), sort_keys=True),
                "updated_index": batch.ids[party.head],
            }
            if party.seq == 0:
                conn.execute(insert(PARTY).values(id=pid, **values))
            else:
                conn.execute(update(PARTY).where(PARTY.c.id == pid).values(**values))
        self._step("after_parties")
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        for doc_id, state in batch.documents.items():
            row = (
                state.seq,
                state.head,
                batch.head_index[doc_id],
                str(state.status),
                state.holder,
                state.controller,
                state.carrier,
                self._state_text(state),
            )
            if doc_id in batch.new_documents:
                inserts.append((doc_id, *row))
            else:
                updates.append((*row, doc_id))
        driver.many(
            "INSERT INTO document (id, seq, head, head_index, status, holder, controller,"
            " carrier, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            inserts,
        )
        driver.many(
            "UPDATE document SET seq = ?, head = ?, head_index = ?, status = ?, holder = ?,"
            " controller = ?, carrier = ?, state = ? WHERE id = ?",
            updates,
        )
        self._step("after_documents")
        driver.many("DELETE FROM cargo WHERE key = ?", [(k,) for k in sorted(batch.released)])
        driver.many("INSERT INTO cargo (key, doc_id) VALUES (?, ?)", sorted(batch.claimed.items()))
        # who has been party to each document: rows this process knows are stored are
        # skipped; any other pair is inserted unless it is there already
        known = self._doc_parties
        pairs = [
            (doc_id, party)
            for doc_id, involved in batch.doc_parties.items()
            for party in sorted(involved - known.get(doc_id, _NONE))
        ]
        driver.many(
            "INSERT INTO doc_party (doc_id, party_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            pairs,
        )
        self._step("after_cargo")
        driver.many(
            "INSERT INTO tree_node (level, idx, hash) VALUES (?, ?, ?)",
            [(lv, ix, h) for (lv, ix), h in batch.nodes.items()],
        )
        self._step("after_tree")

    def _state_text(self, state: DocumentState) -> str:
        """A document's state as stored: JSON of ``dump_state``.  Its content (unchanged by
        most events) is serialised once per content version, and its endorsement chain
        (which events only extend) one new entry at a time: serialising a chain of 60
        entries whole took ~0.25 ms, most of an event's time in the sequencer."""
        if len(self._serialised) >= DOC_CACHE:
            self._serialised.clear()
        content, chain = state.content, state.endorsements
        cached = self._serialised.get(state.id)
        if cached is None or cached[0] is not content:
            content_text = json.dumps(content.to_json(), sort_keys=True)
        else:
            content_text = cached[1]
        known, chain_text = (cached[2], cached[3]) if cached is not None else ((), "")
        if len(chain) < len(known) or not all(map(operator.is_, known, chain)):
            known, chain_text = (), ""  # not an extension of what was serialised
        added = [json.dumps(e.to_json(), sort_keys=True) for e in chain[len(known) :]]
        if added:
            chain_text = ", ".join([chain_text, *added] if chain_text else added)
        self._serialised[state.id] = (content, content_text, chain, chain_text)
        rest = json.dumps(dump_state(state, content=False, endorsements=False), sort_keys=True)
        return f'{rest[:-1]}, "endorsements": [{chain_text}], "content": {content_text}}}'

    def _sign_and_store(self, conn: Connection, tree: CompactRange, at: int) -> bytes:
        checkpoint = Checkpoint(self.origin, tree.size, tree.root())
        note = sign_checkpoint(checkpoint, self.log_key)
        with _Driver(conn) as driver:
            driver.many(
                "INSERT INTO checkpoint (size, root, note, created_at) VALUES (?, ?, ?, ?)",
                [(tree.size, checkpoint.root, note, at)],
            )
        self._step("after_checkpoint")
        return note

    def _write_checkpoint(self, conn: Connection, at: int) -> bytes:
        return self._sign_and_store(conn, self._range, at)

    def _receipts(
        self,
        conn: Connection,
        batch: _Batch,
        outcomes: list[Error | int],
        size: int,
        checkpoint_note: bytes,
    ) -> list[Receipt | Error]:
        def get_node(level: int, index: int) -> bytes:
            staged = batch.nodes.get((level, index))
            return staged if staged is not None else self._node(conn, level, index)

        appended = {index: (a.event.id, at) for index, a, at in batch.events}
        first = batch.events[0][0] if batch.events else size
        memo: Memo = {}  # this batch's ragged ranges: not kept, the batch may yet roll back
        # every appended event's proof to this batch's checkpoint, siblings shared
        proofs = inclusion_proofs(first, size, size, get_node, memo) if batch.events else []
        # base64 of the hashes, each once for the batch (the proofs share most of them)
        encoded = {h: base64.b64encode(h).decode() for h in {h for p in proofs for h in p}}
        receipted: set[int] = set()  # log positions that already have their receipt here
        receipts: list[Receipt | Error] = []
        for outcome in outcomes:
            if isinstance(outcome, Error):
                receipts.append(outcome)
            elif outcome < 0:  # logged by an earlier batch: its first receipt again
                receipts.append(self._first_receipt(conn, -1 - outcome))
            else:
                event_id, at = appended[outcome]
                lines = [encoded[h] for h in proofs[outcome - first]]
                proof = encode_tlog_proof(outcome, lines, checkpoint_note)
                duplicate = outcome in receipted  # the same event twice in this batch
                receipted.add(outcome)
                receipts.append(Receipt(event_id, outcome, at, checkpoint_note, proof, duplicate))
        return receipts

    def _first_receipt(self, conn: Connection, index: int, duplicate: bool = True) -> Receipt:
        """The receipt an event got when it was appended: the proof to its batch's checkpoint."""
        row = conn.execute(
            select(EVENT.c.event_id, EVENT.c.sequenced_at).where(EVENT.c.log_index == index)
        ).one()
        note_row = conn.execute(
            select(CHECKPOINT.c.note, CHECKPOINT.c.size)
            .where(CHECKPOINT.c.size > index)
            .order_by(CHECKPOINT.c.size)
            .limit(1)
        ).one()
        size, note = int(note_row[1]), bytes(note_row[0])
        proof = self._proof(
            partial(_raw_rows, conn), lambda get, memo: inclusion_proof(index, size, get, memo)
        )
        tlog = TlogProof(index, tuple(proof), note)
        return Receipt(str(row[0]), index, int(row[1]), note, tlog.to_bytes(), duplicate)

    # --- state the sequencer keeps --------------------------------------------------------

    def _stored_size(self, rows: Rows) -> int:
        last = rows("SELECT max(log_index) FROM event", ())[0][0]
        size = 0 if last is None else int(last) + 1
        self._seen_size = max(self._seen_size, size)
        return size

    def _sync(self, conn: Connection) -> None:
        """Bring the caches up to the store if another process appended since this one did."""
        if self._size < 0:
            self._reload(conn)
            return
        size = self._stored_size(partial(_raw_rows, conn))
        if size == self._size:
            return
        if size < self._size or size - self._size > CATCH_UP_MAX:
            self._reload(conn)
        else:
            self._catch_up(conn, size)

    def _catch_up(self, conn: Connection, size: int) -> None:
        """Another process appended the events from ``self._size`` to ``size``: forget the
        documents they changed, read the parties again if one changed, and read the tree's
        new border and the newest checkpoint.  Everything else cached stays true: stored
        events, nodes and document-party pairs never change, and cargo is not cached."""
        rows = _raw_rows(
            conn,
            "SELECT chain, subject FROM event WHERE log_index >= ? AND log_index < ?",
            (self._size, size),
        )
        party_changed = False
        for chain, subject in rows:
            if chain == "party":
                party_changed = True
            else:
                self._docs.pop(str(subject))
        if party_changed:
            self._parties = self._load_parties(conn)
        border = [(lv, ix) for lv, ix in CompactRange.border(size) if (lv, ix) not in self._nodes]
        if border:
            self._load_nodes(partial(_raw_rows, conn), border)
        self._range = CompactRange.from_nodes(size, lambda lv, ix: self._node(conn, lv, ix))
        self._checkpoint = self._newest_checkpoint(conn)
        self._last_at = self._stored_last_at(conn, size)
        self._size = size

    def _reload(self, conn: Connection) -> None:
        size = self._stored_size(partial(_raw_rows, conn))
        self._range = CompactRange.from_nodes(size, lambda lv, ix: self._node(conn, lv, ix))
        self._parties = self._load_parties(conn)
        self._docs.clear()
        self._checkpoint = self._newest_checkpoint(conn)
        self._last_at = self._stored_last_at(conn, size)
        self._size = size

    @staticmethod
    def _stored_last_at(conn: Connection, size: int) -> int:
        """The ``sequenced_at`` of the log's last entry (0 for an empty log)."""
        if size == 0:
            return 0
        found = _raw_rows(conn, "SELECT sequenced_at FROM event WHERE log_index = ?", (size - 1,))
        return int(found[0][0])

    @staticmethod
    def _load_parties(conn: Connection) -> dict[str, Party]:
        return {
            row[0]: load_party(json.loads(row[1]))
            for row in conn.execute(select(PARTY.c.id, PARTY.c.state))
        }

    @staticmethod
    def _newest_checkpoint(conn: Connection) -> bytes:
        note = conn.execute(
            select(CHECKPOINT.c.note).order_by(CHECKPOINT.c.size.desc()).limit(1)
        ).first()
        return bytes(note[0]) if note is not None else b""

    def _remember(self, doc_id: str, state: DocumentState, head_index: int) -> None:
        """Keep a committed state, weighed by its text as last serialised (its content's, and
        the rest's, which is small and grows only with the endorsement chain)."""
        serialised = self._serialised.get(doc_id)
        size = 0 if serialised is None else len(serialised[1]) + len(serialised[3])
        self._docs.put(doc_id, state, head_index, size)

    def _forget_serialised(self, doc_id: str) -> None:
        """A state left the cache: its serialised text goes too (it holds its content)."""
        self._serialised.pop(doc_id, None)

    def _document(self, conn: Connection, doc_id: str) -> DocumentState | None:
        cached = self._docs.get(doc_id)
        if cached is not None:
            return cached
        row = self._document_row(partial(_raw_rows, conn), doc_id)
        if row is None:
            return None
        state = load_state(json.loads(row[0]))
        self._docs.put(doc_id, state, row[1], len(row[0]))
        return state

    @staticmethod
    def _document_row(rows: Rows, doc_id: str) -> tuple[str, int] | None:
        """A document's stored state text and head index; None if it was never issued."""
        found = rows("SELECT state, head_index FROM document WHERE id = ?", (doc_id,))
        return (str(found[0][0]), int(found[0][1])) if found else None

    def _node(self, conn: Connection, level: int, index: int) -> bytes:
        """A committed tree node, from the cache (nodes never change once written) or the store."""
        key = (level, index)
        cached = self._nodes.get(key)
        if cached is not None:
            return cached
        row = conn.execute(
            select(TREE_NODE.c.hash).where(TREE_NODE.c.level == level, TREE_NODE.c.idx == index)
        ).first()
        if row is None:
            raise StoreError(f"tree node at level {level}, index {index} is missing from the store")
        value = bytes(row[0])
        self._cache_nodes({key: value})
        return value

    def _proof(self, rows: Rows, build: Callable[[GetNode, Memo], list[bytes]]) -> list[bytes]:
        """Run a proof builder with every node it needs read in one query, not one each.

        A first run takes the nodes it finds in the cache and lists the others, with a
        placeholder for their hashes.  If none was missing, that run's proof is the
        proof, and nothing is read.  Otherwise the nodes a proof needs depend only on the
        sizes and the index, so the listed ones are read with ``rows`` in one query, and
        a second run finds them all.
        """
        nodes = self._nodes  # (a full cache is replaced, not emptied: this one stays whole)
        wanted: list[tuple[int, int]] = []

        def listing(level: int, index: int) -> bytes:
            value = nodes.get((level, index))
            if value is None:
                wanted.append((level, index))
                return _PLACEHOLDER
            return value

        # the ragged ranges the first run composes go to a memo of their own: kept only
        # if no placeholder went into them
        composed: dict[tuple[int, int], bytes] = {}
        proof = build(listing, ChainMap(composed, self._ragged))
        if len(self._ragged) > RAGGED_CACHE:
            self._ragged = {}
        if not wanted:
            self._ragged.update(composed)
            return proof
        found = self._load_nodes(rows, wanted)

        def read(level: int, index: int) -> bytes:
            key = (level, index)
            value = found.get(key) or nodes.get(key)
            if value is None:
                raise StoreError(
                    f"tree node at level {level}, index {index} is missing from the store"
                )
            return value

        return build(read, self._ragged)

    def _load_nodes(
        self, rows: Rows, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """The nodes at ``keys`` that the store holds (also put in the cache)."""
        found: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(keys), 200):
            chunk = keys[start : start + 200]
            # (level = ? AND idx = ?) OR ...: both databases look each pair up in the
            # primary key (SQLite scans the table for a row-value IN).  Parameters, not
            # literals: a proof's query then has one text per count of nodes, which the
            # driver prepares once and keeps (SQLite compiling a new text each time cost
            # more than running it, ~190 of ~330 us for 19 nodes at a million leaves).
            where = " OR ".join(["(level = ? AND idx = ?)"] * len(chunk))
            params = [number for key in chunk for number in key]
            stored = rows(f"SELECT level, idx, hash FROM tree_node WHERE {where}", params)
            found.update(((int(r[0]), int(r[1])), bytes(r[2])) for r in stored)
        self._cache_nodes(found)  # a node still missing is reported by whoever needs it
        return found

    def _cache_nodes(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        if len(self._nodes) + len(nodes) > NODE_CACHE:
            self._nodes = {}
        self._nodes.update(nodes)

    # --- reads ---------------------------------------------------------------------------

    # (Each read here is one statement, through the driver: see ledger.db.DirectReads.)

    def size(self) -> int:
        return self._stored_size(self.reads.rows)

    def checkpoint(self) -> bytes:
        """The latest signed checkpoint (a C2SP signed note)."""
        rows = self.reads.rows("SELECT note FROM checkpoint ORDER BY size DESC LIMIT 1", ())
        if not rows:  # pragma: no cover - the constructor writes the empty checkpoint
            raise NotFound("the log has no checkpoint yet")
        return bytes(rows[0][0])

    def cosigned(self, note: bytes, size: int) -> bytes:
        """The checkpoint ``note`` of tree ``size`` with the witnesses' cosignatures stored
        for it appended (c2sp.org/tlog-cosignature lines, in the order of their key IDs)."""
        rows = self.reads.rows(
            "SELECT line FROM cosignature WHERE size = ? ORDER BY witness", (size,)
        )
        return note + b"".join(bytes(row[0]) for row in rows)

    def witnessed_checkpoint(self, at_least: int = 1, witnesses: Sequence[str] = ()) -> bytes:
        """The newest checkpoint that ``at_least`` witnesses have cosigned (of
        ``witnesses``, key IDs, if any are given), with all its cosignatures; NotFound if
        none has so many yet."""
        at_least = max(1, at_least)
        search = (
            "SELECT note, size FROM checkpoint WHERE size = (SELECT size FROM cosignature {} "
            "GROUP BY size HAVING COUNT(*) >= ? ORDER BY size DESC LIMIT 1)"
        )
        if not witnesses:
            rows = self.reads.rows(search.format(""), (at_least,))
        else:
            # the newest size each cosigned (an index look-up each): fewer than at_least
            # witnesses that cosigned anything is no search, and no checkpoint newer than
            # the at_least-th newest of those sizes can have at_least cosignatures
            newest = sorted((self._newest_cosigned(key_id) for key_id in witnesses), reverse=True)
            bound = newest[at_least - 1] if len(newest) >= at_least else -1
            # (witness || '': the search walks the sizes down, never the witness index)
            within = f"WHERE witness || '' IN ({', '.join('?' for _ in witnesses)}) AND size <= ?"
            rows = (
                self.reads.rows(search.format(within), (*witnesses, bound, at_least))
                if bound >= 0
                else []
            )
        if not rows:
            which = f" of {', '.join(witnesses)}" if witnesses else ""
            if at_least <= 1:
                raise NotFound(f"no witness{which} has cosigned a checkpoint of this log yet")
            raise NotFound(
                f"no checkpoint of this log is cosigned by {at_least} witnesses{which} yet"
            )
        return self.cosigned(bytes(rows[0][0]), int(rows[0][1]))

    def _newest_cosigned(self, witness: str) -> int:
        """The largest tree size ``witness`` (a key ID) cosigned; -1 if none."""
        rows = self.reads.rows("SELECT MAX(size) FROM cosignature WHERE witness = ?", (witness,))
        return int(rows[0][0]) if rows and rows[0][0] is not None else -1

    def add_cosignature(self, size: int, witness: str, line: bytes) -> bool:
        """Keep the cosignature ``line`` (already verified) that ``witness`` (its key ID) made
        of the checkpoint at ``size``; False if one of that witness for that size is kept."""
        try:
            with self.writer.begin() as conn:
                kept = conn.execute(
                    select(COSIGNATURE.c.size).where(
                        COSIGNATURE.c.size == size, COSIGNATURE.c.witness == witness
                    )
                ).first()
                if kept is not None:
                    return False
                conn.execute(
                    insert(COSIGNATURE).values(
                        size=size, witness=witness, line=line, created_at=int(time.time() * 1000)
                    )
                )
        except IntegrityError:  # another process (another host's) kept one just now
            return False
        return True

    def checkpoint_at(self, size: int) -> bytes:
        rows = self.reads.rows("SELECT note FROM checkpoint WHERE size = ?", (size,))
        if not rows:
            raise NotFound(f"no checkpoint was signed at tree size {size}")
        return bytes(rows[0][0])

    def title(self, doc_id: str) -> tuple[DocumentState, int]:
        """A document's title state and the log index of its head event."""
        stored, head_index = self._title_row(doc_id)
        return load_state(json.loads(stored)), head_index

    def _title_row(self, doc_id: str) -> tuple[str, int]:
        row = self._document_row(self.reads.rows, doc_id)
        if row is None:
            raise NotFound(f"no document {abridged(doc_id)}")
        return row

    def title_proof(self, doc_id: str) -> TitleProof:
        """A document's title with its head event's inclusion proof against the latest
        checkpoint."""
        rows = self.reads.rows
        stored, head_index = self._title_row(doc_id)
        # read after the document row: its checkpoint is at least as new as its head
        note, size = rows("SELECT note, size FROM checkpoint ORDER BY size DESC LIMIT 1", ())[0]
        head_at = rows("SELECT sequenced_at FROM event WHERE log_index = ?", (head_index,))[0][0]
        proof = self._proof(rows, lambda get, memo: inclusion_proof(head_index, size, get, memo))
        note = bytes(note)
        return TitleProof(
            json.loads(stored),
            head_index,
            int(head_at),
            note,
            TlogProof(head_index, tuple(proof), note),
        )

    def party(self, party_id: str) -> Party:
        stored = self.party_state_text(party_id)
        if stored is None:
            raise NotFound(f"no party {abridged(party_id)}")
        return load_party(json.loads(stored))

    def party_state_text(self, party_id: str) -> str | None:
        """The party's stored state (its JSON text), None if it was never registered."""
        rows = self.reads.rows("SELECT state FROM party WHERE id = ?", (party_id,))
        return str(rows[0][0]) if rows else None

    def parties(self) -> dict[str, Party]:
        """The registry as stored (a copy the caller may change).  Read again only when a
        party event was stored since the last read, by this host or another: each one moves
        its party's ``updated_index`` past every other (a log index), so the largest tells."""
        (marker,) = self.reads.rows("SELECT max(updated_index) FROM party")[0]
        cached = self._registry
        if cached is not None and cached[0] == marker:
            return dict(cached[1])
        with self.reader.connect() as conn:
            rows = conn.execute(select(PARTY.c.id, PARTY.c.state, PARTY.c.updated_index)).all()
        registry = {str(row[0]): load_party(json.loads(row[1])) for row in rows}
        # marked by the rows read, not the max read above: a party stored in between
        # makes the next call read again rather than keep a registry without it
        self._registry = (max((int(row[2]) for row in rows), default=None), registry)
        return dict(registry)

    def exists(self, chain: str, subject: str) -> bool:
        """Whether a document (``chain`` "doc") or party ("party") has been created."""
        table = "document" if chain == "doc" else "party"
        return bool(self.reads.rows(f"SELECT 1 FROM {table} WHERE id = ?", (subject,)))

    def event_subject(self, index: int) -> tuple[str, str]:
        """(chain, subject) of the event at log ``index``."""
        rows = self.reads.rows("SELECT chain, subject FROM event WHERE log_index = ?", (index,))
        if not rows:
            raise NotFound(f"no event at log index {index}")
        return str(rows[0][0]), str(rows[0][1])

    def is_party_to(self, doc_id: str, party_id: str) -> bool:
        """Whether ``party_id`` has been party to the document (signed, held, carried, pledged)."""
        return bool(
            self.reads.rows(
                "SELECT 1 FROM doc_party WHERE doc_id = ? AND party_id = ?", (doc_id, party_id)
            )
        )

    def cargo_owner(self, key: str) -> str | None:
        rows = self.reads.rows("SELECT doc_id FROM cargo WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def events_of(self, subject: str, chain: str = "doc") -> list[tuple[int, int, bytes]]:
        """(log index, sequenced_at, raw bytes) of a document's (``chain`` "doc") or a
        party's ("party") events, in order.  The chain counts: a document may bear the id
        of a party."""
        rows = self.reads.rows(
            "SELECT log_index, sequenced_at, raw FROM event WHERE subject = ? AND chain = ?"
            " ORDER BY seq",
            (subject, chain),
        )
        return [(int(r[0]), int(r[1]), bytes(r[2])) for r in rows]

    def entries(self, start: int, end: int) -> list[tuple[int, str, int, bytes]]:
        """(log index, event id, sequenced_at, raw bytes) for log positions start..end-1."""
        rows = self.reads.rows(
            "SELECT log_index, event_id, sequenced_at, raw FROM event"
            " WHERE log_index >= ? AND log_index < ? ORDER BY log_index",
            (start, end),
        )
        return [(int(r[0]), str(r[1]), int(r[2]), bytes(r[3])) for r in rows]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        """The inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        self._check_range(index, size, "index")
        return self._proof(
            self.reads.rows, lambda get, memo: inclusion_proof(index, size, get, memo)
        )

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        if not 0 < size1 <= size2:
            raise InvalidInput("size1", f"expected 0 < size1 <= size2, got {size1} and {size2}")
        self._check_range(size1 - 1, size2, "size1", size_name="size2")
        return self._proof(
            self.reads.rows, lambda get, memo: consistency_proof(size1, size2, get, memo)
        )

    def receipt(self, event_id: str) -> Receipt:
        """The receipt an event got when it was appended (proof to that batch's checkpoint)."""
        with self.reader.connect() as conn:
            row = conn.execute(
                select(EVENT.c.log_index).where(EVENT.c.event_id == event_id)
            ).first()
            if row is None:
                raise NotFound(f"no event {abridged(event_id)}")
            return self._first_receipt(conn, int(row[0]), duplicate=False)

    def tile(self, level: int, index: int, width: int) -> bytes:
        """C2SP tlog-tiles: the ``width`` hashes of tile ``index`` at tile level ``level``."""
        if not 1 <= width <= 256:
            raise InvalidInput("width", f"expected 1 to 256, got {width}")
        start = index * 256
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(TREE_NODE.c.idx, TREE_NODE.c.hash)
                .where(
                    TREE_NODE.c.level == level * 8,
                    TREE_NODE.c.idx >= start,
                    TREE_NODE.c.idx < start + width,
                )
                .order_by(TREE_NODE.c.idx)
            ).all()
        if len(rows) != width:
            raise NotFound(f"tile {level}/{index} has fewer than {width} hashes")
        return b"".join(bytes(r[1]) for r in rows)

    def _check_range(self, index: int, size: int, name: str, size_name: str = "size") -> None:
        # The log only grows: a size this process has seen stored needs no query.
        current = self._seen_size if 0 < size <= self._seen_size else self.size()
        if not 0 < size <= current:
            raise InvalidInput(size_name, f"expected a tree size from 1 to {current}, got {size}")
        if not 0 <= index < size:
            raise InvalidInput(name, f"expected 0 to {size - 1}, got {index}")

    # --- reads for exports (ledger/export.py) ------------------------------------------------

    def party_events(self, size: int) -> list[tuple[int, int, bytes]]:
        """(log index, sequenced_at, raw bytes) of every party event below ``size``, in log order."""
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(EVENT.c.log_index, EVENT.c.sequenced_at, EVENT.c.raw)
                .where(EVENT.c.chain == "party", EVENT.c.log_index < size)
                .order_by(EVENT.c.log_index)
            ).all()
        return [(int(r[0]), int(r[1]), bytes(r[2])) for r in rows]
