"""Handing events from the event loop to the sequencer, and their receipts back.

``Ledger.submit_events`` (or ``RemoteSequencer.submit_events``, when a sequencer
process appends for several API workers) checks the events' signatures on the
calling thread (PyNaCl releases the GIL) before queueing them, so it should not run
on the event loop.  ``asyncio.to_thread`` would do, but costs a pool work item, a
concurrent future and a second wake-up of the loop per event; here one
thread of our own takes the events from a queue, and the receipts of a
whole sequencer batch come back to the loop in one wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from concurrent.futures import Future
from typing import Any

from encd.events import Event
from ledger.ledger import Ledger, Receipt, StoreError
from ledger.sequencer import RemoteSequencer

_STOP = object()


class Submitter:
    def __init__(self, sequencer: Ledger | RemoteSequencer) -> None:
        self.sequencer = sequencer
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # lists of events, or _STOP
        self._buffered: dict[asyncio.AbstractEventLoop, list[Any]] = {}  # see submit()
        self._lock = threading.Lock()  # guards _closed, _thread and _settling
        self._closed = False
        self._thread: threading.Thread | None = None
        # Receipts waiting to be handed to their loop: one wake-up of the loop for them all.
        self._settling: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = {}

    def submit(self, event: Event) -> asyncio.Future[Receipt]:
        """Queue ``event`` for the sequencer; its receipt (or error) as a future of this loop.
        The events a loop submits in one pass of its callbacks reach the submitter's thread
        together, with one wake-up."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Receipt] = loop.create_future()
        buffered = self._buffered.get(loop)
        if buffered is None:
            if self._closed:
                raise StoreError("the service is shutting down")
            self._buffered[loop] = buffered = []
            loop.call_soon(self._hand_over, loop)
        buffered.append((event, loop, future))
        return future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        items = self._buffered.pop(loop)
        with self._lock:
            if not self._closed:
                self._queue.put(items)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="encd-submitter", daemon=True
                    )
                    self._thread.start()
                return
        for _, _, future in items:
            if not future.done():
                future.set_exception(StoreError("the service is shutting down"))

    def close(self) -> None:
        """Stop once every event queued so far is with the sequencer."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._queue.put(_STOP)
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            items = self._queue.get()
            if items is _STOP:
                return
            try:
                queued = self.sequencer.submit_events([event for event, _, _ in items])
            except Exception as exc:  # pragma: no cover - both sequencers settle each future
                for _, loop, future in items:
                    self._settle(loop, future, exc)
                continue
            for (_, loop, future), done in zip(items, queued, strict=True):
                done.add_done_callback(functools.partial(self._settle, loop, future))

    def _settle(self, loop: asyncio.AbstractEventLoop, future: Any, outcome: Any) -> None:
        """Hand ``outcome`` (a done ``Future`` or an exception) to ``future`` on its loop."""
        with self._lock:
            waiting = self._settling.get(loop)
            if waiting is not None:
                waiting.append((future, outcome))  # the loop is already called for
                return
            self._settling[loop] = [(future, outcome)]
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(self._settle_all, loop)

    def _settle_all(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            settled = self._settling.pop(loop, [])
        for future, outcome in settled:
            if future.done():  # its waiter was cancelled (the client went away)
                continue
            if isinstance(outcome, Future):
                error = outcome.exception()
                if error is None:
                    future.set_result(outcome.result())
                else:
                    future.set_exception(error)
            else:
                future.set_exception(outcome)
