"""One sequencer process for several API processes (``encd serve --workers``).

Each API worker parses a submitted event and checks its signatures (the costly,
parallel part) and hands it to the one sequencer process over a private Unix
socket; the sequencer process admits, writes and answers with receipts.  It
alone appends, so no two processes take turns on the store's write lock, and
its thread never waits for an interpreter lock an HTTP server holds.

The socket lives in a directory only the service's user can enter (mode 0700)
and both ends are this program, so frames are pickles:

- worker → sequencer: a list of ``(event bytes, preverified)``, where
  ``preverified`` maps ``(key name, key hash)`` to the public key under which
  the worker saw that signature verify (a hint: ``encd.parties.verify_signers``
  checks again any signature whose key is not the one active at the event's
  place in the log);
- sequencer → worker: a list holding one result per event of a frame, in order:
  ``("receipt", Receipt)`` or ``("error", class name, attributes)`` for an ``encd``
  error; and, to every connected worker after each batch that appended, the tuple
  ``("grown", log size)``, so that a worker's event streams hear at once of what
  the other workers' clients submitted.

A frame is a 4-byte big-endian length and that many bytes.  Replies come in the
order the frames were sent; a ``grown`` notice may come between any two of them.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from encd.errors import Conflict, Error, InvalidInput, RuleViolation, VerificationError
from encd.events import Event
from encd.parties import Party, Preverified, preverify
from ledger.ledger import ROLLED_BACK, Ledger, NotFound, Receipt, StoreError

_LENGTH = struct.Struct(">I")
_ERRORS: dict[str, type[Error]] = {
    cls.__name__: cls
    for cls in (
        Error,
        InvalidInput,
        VerificationError,
        RuleViolation,
        Conflict,
        StoreError,
        NotFound,
    )
}
CONNECT_WAIT = 30.0  # seconds a worker waits for the sequencer's socket to appear


def _send(sock: socket.socket, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _receive(sock: socket.socket) -> Any:
    """The next frame's value; EOFError when the other end has closed."""
    head = _exactly(sock, _LENGTH.size)
    return pickle.loads(_exactly(sock, _LENGTH.unpack(head)[0]))


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise EOFError("the connection closed")
        chunks += chunk
    return bytes(chunks)


def _encode(outcome: Receipt | BaseException) -> tuple[Any, ...]:
    if isinstance(outcome, Receipt):
        return ("receipt", outcome)
    if not isinstance(outcome, Error) or type(outcome).__name__ not in _ERRORS:
        outcome = StoreError(ROLLED_BACK)
    return ("error", type(outcome).__name__, dict(outcome.__dict__))


def _decode(value: tuple[Any, ...]) -> Receipt | Error:
    if value[0] == "receipt":
        receipt: Receipt = value[1]
        return receipt
    cls = _ERRORS.get(value[1], StoreError)
    error = cls.__new__(cls)
    error.__dict__.update(value[2])
    Exception.__init__(error, error.__dict__.get("message", "store failure"))
    return error


# --- the sequencer process ------------------------------------------------------------------


class SequencerServer:
    """Takes events from API workers on ``path`` and appends them with ``ledger``."""

    def __init__(self, ledger: Ledger, path: str) -> None:
        self.ledger = ledger
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        os.chmod(path, 0o600)
        self._listener.listen(64)
        self._closed = threading.Event()
        # each connection, and the lock its frames are sent under (answers and notices)
        self._connections: dict[socket.socket, threading.Lock] = {}
        self._lock = threading.Lock()
        self._grown: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._announcer = threading.Thread(target=self._announce, daemon=True)
        self._announcer.start()
        ledger.listeners.append(self._appended)

    def serve_forever(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                self._connections[conn] = send_lock = threading.Lock()
            threading.Thread(target=self._read, args=(conn, send_lock), daemon=True).start()

    def close(self) -> None:
        """Take no more events: what is in flight is still answered, then each connection
        closes (its worker reconnects to the next sequencer)."""
        with contextlib.suppress(ValueError):
            self.ledger.listeners.remove(self._appended)
        self._grown.put(None)
        with self._lock:
            self._closed.set()
            connections = list(self._connections)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _appended(self, appended: list[tuple[int, Event]]) -> None:
        """A ledger listener (on the sequencer's thread): the log grew; tell every worker."""
        self._grown.put(max(index for index, _ in appended) + 1)

    def _announce(self) -> None:
        """Send ``("grown", size)`` to every connection, the newest size only when several
        batches were committed while the last notice was being sent."""
        while (size := self._grown.get()) is not None:
            with contextlib.suppress(queue.Empty):
                while True:
                    newer = self._grown.get_nowait()
                    if newer is None:
                        return
                    size = max(size, newer)
            with self._lock:
                connections = list(self._connections.items())
            for conn, send_lock in connections:
                with send_lock, contextlib.suppress(OSError):
                    _send(conn, ("grown", size))  # a broken one: its reader will find out

    def _read(self, conn: socket.socket, send_lock: threading.Lock) -> None:
        """Read frames and queue their events at once (so frames from several workers share
        batches); a second thread answers each frame once its events are settled."""
        answers: queue.SimpleQueue[list[Future[Receipt] | Error] | None] = queue.SimpleQueue()
        writer = threading.Thread(target=self._answer, args=(conn, send_lock, answers), daemon=True)
        writer.start()
        try:
            while True:
                try:
                    items: list[tuple[bytes, Preverified]] = _receive(conn)
                except (EOFError, OSError):
                    return
                outcomes: list[Future[Receipt] | Error] = []
                for raw, preverified in items:
                    try:
                        event = Event.parse(raw)
                    except Error as exc:
                        outcomes.append(exc)
                        continue
                    try:
                        outcomes.append(self.ledger.submit_checked(event, preverified))
                    except Error as exc:
                        outcomes.append(exc)
                answers.put(outcomes)
        finally:
            answers.put(None)
            writer.join()
            with self._lock:
                self._connections.pop(conn, None)
            with send_lock:  # not while a notice is being sent on it
                conn.close()

    @staticmethod
    def _answer(
        conn: socket.socket,
        send_lock: threading.Lock,
        answers: queue.SimpleQueue[list[Future[Receipt] | Error] | None],
    ) -> None:
        broken = False
        while (outcomes := answers.get()) is not None:
            results = []
            for outcome in outcomes:
                if isinstance(outcome, Future):
                    error = outcome.exception()
                    results.append(_encode(outcome.result() if error is None else error))
                else:
                    results.append(_encode(outcome))
            if broken:
                continue
            try:
                with send_lock:
                    _send(conn, results)
            except OSError:
                broken = True  # the worker is gone; keep draining so the reader can finish


# --- in an API worker -----------------------------------------------------------------------


class RemoteSequencer:
    """The sequencer process, from an API worker: ``submit_events`` returns a future per event.

    One connection, opened on first use and again after it breaks (the sequencer
    restarted); while it is down, submissions fail with StoreError (a 503).
    ``listeners`` are called, from this object's reader thread, with the (log
    index, event) pairs each answer appended, as ``Ledger.listeners`` are;
    ``growth_listeners`` with the log's size after each batch the sequencer
    committed, whichever worker's events it held.
    """

    def __init__(
        self, path: str, parties: Mapping[str, Party], connect_wait: float = CONNECT_WAIT
    ) -> None:
        self.path = path
        self.parties = parties  # where the signatures are checked ahead (encd.parties.preverify)
        self.connect_wait = connect_wait
        self.listeners: list[Callable[[list[tuple[int, Event]]], None]] = []
        self.growth_listeners: list[Callable[[int], None]] = []
        self._lock = threading.Lock()
        self._connection: _Connection | None = None
        self._closed = False

    def submit_events(self, events: Sequence[Event]) -> list[Future[Receipt]]:
        """Check the events' signatures here, on the calling thread, and queue them."""
        futures: list[Future[Receipt]] = [Future() for _ in events]
        frame = [(event.raw, preverify(event, self.parties)) for event in events]
        with self._lock:
            try:
                if self._closed:
                    raise StoreError("the service is shutting down")
                connection = self._connection or self._connect()
                connection.waiting.append((list(events), futures))
                try:
                    _send(connection.sock, frame)
                except OSError as exc:
                    self._drop(connection)
                    raise StoreError(f"the sequencer is unavailable: {exc}") from None
            except Error as exc:
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
        return futures

    def connect_soon(self) -> None:
        """Connect now, on a thread of its own, rather than at the first submission, so that
        a worker whose clients so far only read or listen hears the ``grown`` notices too.
        A connection that breaks is opened again by the next submission."""

        def connect() -> None:
            # one attempt at a time under the lock: close() and submissions never wait
            # behind this thread's wait for the sequencer's socket to appear
            deadline = time.monotonic() + self.connect_wait
            while time.monotonic() < deadline:
                with self._lock:
                    if self._connection is not None or self._closed:
                        return
                    with contextlib.suppress(StoreError):
                        self._connect(wait=0.0)
                        return
                time.sleep(0.05)

        threading.Thread(target=connect, name="encd-remote-connect", daemon=True).start()

    def _connect(self, wait: float | None = None) -> _Connection:
        """Connect, trying for ``wait`` seconds (default ``connect_wait``)."""
        deadline = time.monotonic() + (self.connect_wait if wait is None else wait)
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                break
            except OSError as exc:
                sock.close()
                if time.monotonic() >= deadline:
                    raise StoreError(f"the sequencer is unavailable: {exc}") from None
                time.sleep(0.05)
        connection = self._connection = _Connection(sock)
        threading.Thread(
            target=self._read, args=(connection,), name="encd-remote", daemon=True
        ).start()
        return connection

    def _drop(self, connection: _Connection) -> None:
        """Forget a broken connection (under _lock): what was sent on it and not answered
        fails (the sequencer may or may not have logged it: a retry gets the first receipt)."""
        if self._connection is connection:
            self._connection = None
        with contextlib.suppress(OSError):
            connection.sock.close()
        error = StoreError("the sequencer is unavailable: the connection to it broke")
        while connection.waiting:
            _, futures = connection.waiting.popleft()
            for future in futures:
                if not future.done():
                    future.set_exception(error)

    def _read(self, connection: _Connection) -> None:
        while True:
            try:
                results = _receive(connection.sock)
            except (EOFError, OSError, pickle.UnpicklingError):
                with self._lock:
                    self._drop(connection)
                return
            if isinstance(results, tuple) and results[:1] == ("grown",):
                for grown in list(self.growth_listeners):
                    grown(int(results[1]))
                continue
            with self._lock:
                if not connection.waiting or len(results) != len(connection.waiting[0][1]):
                    self._drop(connection)  # an answer that fits nothing: unusable
                    return
                events, futures = connection.waiting.popleft()
            appended: list[tuple[int, Event]] = []
            for event, future, value in zip(events, futures, results, strict=True):
                outcome = _decode(value)
                if isinstance(outcome, Receipt):
                    future.set_result(outcome)
                    if not outcome.duplicate:
                        appended.append((outcome.log_index, event))
                else:
                    future.set_exception(outcome)
            if appended:
                for listener in list(self.listeners):
                    listener(appended)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._connection is not None:
                with contextlib.suppress(OSError):
                    self._connection.sock.shutdown(socket.SHUT_RDWR)


class _Connection:
    """One connection to the sequencer process and the frames sent on it not yet answered."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.waiting: collections.deque[tuple[list[Event], list[Future[Receipt]]]] = (
            collections.deque()
        )


__all__ = ["RemoteSequencer", "SequencerServer"]
