"""Request nonces seen within the signature window, kept in the store.

Every API process shares the store, so a request replayed to another
process, or to the same one after a restart, is refused too (design.md §7:
several stateless API processes behind a load balancer).  Nonces are not
part of the log: they are written without waiting for the disk (SQLite
``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``), and rows past
their expiry are swept away as new ones arrive.

A row expires two windows after its claim (a signature dated up to a window ahead is
taken for a window after that), by the clock of the host that claimed it, and is swept a
window later still, by the clock of the host that sweeps: hosts sharing a store whose
clocks differ by less than a window never sweep a nonce that another still takes a
signature for.  (Swept at its expiry, a host a second ahead of the others could.)

On SQLite they live in a file of their own beside the ledger's
(``<ledger>.nonces``): SQLite has one writer per file, and a request's
nonce must not wait for the sequencer's batch, nor hold it up.

Writes are grouped: one writer thread per store takes every nonce waiting
and records them all in one transaction (``INSERT ... ON CONFLICT DO NOTHING
RETURNING``: the rows it returns are the nonces that were new; the others
were in the store already, from this process or any other).  A nonce that
comes twice within one group counts once, for its first claimant.  Request
threads never take the database's write lock themselves, so they never queue
in SQLite's busy handler (which sleeps between retries); the writers of all
the stores of one process on one database take a lock of the process first.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from ledger.db import WriterLock, make_engine
from ledger.ledger import StoreError
from ledger.schema import NONCE, SQLModel

MAX_BATCH = 256  # nonces a transaction (SQLite's bound parameters: 3 a row)

_process_locks: dict[str, WriterLock] = {}
_process_locks_guard = threading.Lock()


def _process_lock(url: str) -> WriterLock:
    """The lock every writer on ``url`` holds while it writes: one per process (kept open
    for its life), and on SQLite an flock that other processes' writers queue on too."""
    with _process_locks_guard:
        lock = _process_locks.get(url)
        if lock is None:
            lock = _process_locks[url] = WriterLock(url, "writer")
        return lock


class _Claim:
    """One nonce to record, and who hears the answer: a thread's ``Future``, or an asyncio
    future on ``loop`` (settled in that loop, a whole group at once)."""

    __slots__ = ("future", "key_id", "loop", "nonce", "now")

    def __init__(
        self,
        key_id: str,
        nonce: str,
        now: float,
        future: Future[bool] | asyncio.Future[bool],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.key_id = key_id
        self.nonce = nonce
        self.now = now
        self.future = future
        self.loop = loop


_STOP = object()


class NonceStore:
    def __init__(self, url: str, window: int, *, max_batch: int = MAX_BATCH) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            parsed = parsed.set(database=parsed.database + ".nonces")
            url = parsed.render_as_string(hide_password=False)
            self.engine = make_engine(url, writer=True, durable=False)
            SQLModel.metadata.create_all(self.engine, tables=[NONCE])
        else:
            self.engine = make_engine(url, writer=True, durable=False)
        self.window = window
        self.max_batch = max_batch
        self._write_lock = _process_lock(url)
        self._postgres = self.engine.dialect.name == "postgresql"
        self._mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._sweep_sql = f"DELETE FROM {NONCE.name} WHERE expires_at < {self._mark}"
        self._insert_cache: dict[int, str] = {}
        self._dbapi_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        self._connection: Any = None  # the writer thread's (see _connect)
        self._next_sweep = 0.0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # lists of claims, or _STOP
        self._buffered: dict[asyncio.AbstractEventLoop, list[_Claim]] = {}  # see claim()
        self._lock = threading.Lock()  # guards _closed and _thread
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Test hook: called by the writer with each group, before it writes it.
        self.before_write: Callable[[list[_Claim]], None] | None = None

    def submit(self, key_id: str, nonce: str, now: float) -> Future[bool]:
        """Record ``nonce`` for ``key_id``, with the next group write; the future is False if
        it was already used within the window (by this process or any other)."""
        future: Future[bool] = Future()
        self._enqueue([_Claim(key_id, nonce, now, future)])
        return future

    def claim(
        self, key_id: str, nonce: str, now: float, *, at_once: bool = False
    ) -> asyncio.Future[bool]:
        """``submit`` for a coroutine: a future of the running loop (no thread hop).  The
        claims a loop makes in one pass of its callbacks reach the writer together, with one
        wake-up of its thread; ``at_once`` hands this one over now, for a caller that has
        work of its own to do on the loop's thread meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        claim = _Claim(key_id, nonce, now, future, loop)
        if at_once:
            self._enqueue([claim])
            return future
        buffered = self._buffered.get(loop)
        if buffered is None:
            if self._closed:
                raise StoreError("the nonce store is closed")
            self._buffered[loop] = buffered = []
            loop.call_soon(self._hand_over, loop)
        buffered.append(claim)
        return future

    def use(self, key_id: str, nonce: str, now: float) -> bool:
        """Record ``nonce`` for ``key_id``; False if it was already used within the window."""
        return self.submit(key_id, nonce, now).result()

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        claims = self._buffered.pop(loop)
        try:
            self._enqueue(claims)
        except StoreError as exc:
            _set_all([(claim.future, exc) for claim in claims])

    def _enqueue(self, claims: list[_Claim]) -> None:
        with self._lock:
            if self._closed:
                raise StoreError("the nonce store is closed")
            self._queue.put(claims)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="encd-nonces", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Answer every claim made so far, then stop."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._queue.put(_STOP)
        if thread is not None:
            thread.join()
        if self._connection is not None:
            self._discard(self._connection)
        self.engine.dispose()

    # --- the writer ----------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            waiting: list[_Claim] = []
            item = self._queue.get()  # wait for the first, then take all that are waiting
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    waiting.extend(item)
                if len(waiting) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            for start in range(0, len(waiting), self.max_batch):
                group = waiting[start : start + self.max_batch]
                if self.before_write is not None:
                    self.before_write(group)
                self._settle(self._answer(group))

    def _answer(self, group: list[_Claim]) -> list[tuple[_Claim, bool | Exception]]:
        """Write ``group``: each claim with True (new), False (used before) or the error."""
        try:
            fresh = self._write(group)
        except Exception as exc:
            if len(group) == 1:  # the store failed: the claimant hears why
                return [(group[0], exc)]
            # One claim the store refuses must not fail the others: each on its own.
            return [answer for claim in group for answer in self._answer([claim])]
        return [(claim, id(claim) in fresh) for claim in group]

    @staticmethod
    def _settle(answers: list[tuple[_Claim, bool | Exception]]) -> None:
        loops: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool | Exception]]] = {}
        for claim, outcome in answers:
            if claim.loop is None:
                _set(claim.future, outcome)
            else:
                loops.setdefault(claim.loop, []).append((claim.future, outcome))
        for loop, settled in loops.items():
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_set_all, settled)

    def _write(self, group: list[_Claim]) -> set[int]:
        """Record the group's nonces in one transaction; the ids of the claims that were new."""
        first: dict[tuple[str, str], _Claim] = {}
        for claim in group:  # a nonce twice in the group: the first claim only
            first.setdefault((claim.key_id, claim.nonce), claim)
        now = min(claim.now for claim in group)
        rows = [
            value
            for claim in first.values()
            for value in (claim.key_id, claim.nonce, int((claim.now + 2 * self.window) * 1000))
        ]
        statement = self._insert_sql(len(first))
        with self._write_lock:
            for retry in (True, False):
                kept = self._connection is not None
                try:
                    connection = self._connection or self._connect()
                except self._dbapi_error as exc:  # e.g. "the database system is shutting down"
                    raise DBAPIError.instance("connect", [], exc, self._dbapi_error) from exc
                begun = False  # nothing of this transaction reached the server before that
                try:
                    cursor = connection.cursor()
                    try:
                        if self._postgres:
                            cursor.execute("SET LOCAL synchronous_commit = off")
                        else:
                            cursor.execute("BEGIN IMMEDIATE")
                        begun = True
                        if now >= self._next_sweep:  # a window late: see the module's text
                            cursor.execute(self._sweep_sql, (int((now - self.window) * 1000),))
                        cursor.execute(statement, rows)
                        inserted = cursor.fetchall()
                    finally:
                        cursor.close()
                    connection.commit()
                    break
                except self._dbapi_error as exc:
                    self._discard(connection)
                    if retry and kept and not begun and self._postgres:
                        continue  # a kept connection the server dropped (it restarted): anew
                    # As SQLAlchemy would have raised it (a store not answering is a 503).
                    raise DBAPIError.instance(statement, rows, exc, self._dbapi_error) from exc
                except BaseException:
                    self._discard(connection)
                    raise
        if now >= self._next_sweep:
            self._next_sweep = now + self.window
        return {id(first[(str(key_id), str(nonce))]) for key_id, nonce in inserted}

    def _connect(self) -> Any:
        """The writer's own connection, outside the pool: plain driver calls, where SQLAlchemy's
        connection (a pool checkout, events, result objects) cost more than the write itself."""
        connection = self.engine.raw_connection()
        connection.detach()
        self._connection = connection
        return connection

    def _discard(self, connection: Any) -> None:
        self._connection = None
        with contextlib.suppress(Exception):
            connection.rollback()
        with contextlib.suppress(Exception):
            connection.close()

    def _insert_sql(self, count: int) -> str:
        """``INSERT`` of ``count`` rows that skips those already stored and returns the others:
        the same on SQLite (3.35 and later) and PostgreSQL; built once a count."""
        sql = self._insert_cache.get(count)
        if sql is None:
            row = f"({self._mark}, {self._mark}, {self._mark})"
            sql = (
                f"INSERT INTO {NONCE.name} (key_id, nonce, expires_at) "
                f"VALUES {', '.join([row] * count)} "
                "ON CONFLICT DO NOTHING RETURNING key_id, nonce"
            )
            self._insert_cache[count] = sql
        return sql


def _set(future: Any, outcome: bool | Exception) -> None:
    if future.done():  # an asyncio future whose waiter was cancelled (the client went away)
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _set_all(settled: list[tuple[Any, bool | Exception]]) -> None:
    for future, outcome in settled:
        _set(future, outcome)
