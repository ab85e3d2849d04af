"""The sequencer's socket (ledger.sequencer): a real Unix socket and a real ledger, the
server on a thread here as it runs in its own process under ``encd serve --workers``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from encd.errors import Conflict, InvalidInput
from encd.events import Event
from ledger.ledger import Ledger, Receipt, StoreError
from ledger.sequencer import RemoteSequencer, SequencerServer, _decode, _receive, _send
from tests.kit import corridor_cast, corridor_document, seeded_key

LOG_KEY = seeded_key("encd.test/log", "log")


@contextmanager
def sequencer(ledger: Ledger, path: Path) -> Iterator[SequencerServer]:
    server = SequencerServer(ledger, str(path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(timeout=10)


def results(remote: RemoteSequencer, raws: list[bytes]) -> list[Receipt | BaseException]:
    out: list[Receipt | BaseException] = []
    for future in remote.submit_events([Event.parse(raw) for raw in raws]):
        error = future.exception(timeout=30)
        out.append(future.result() if error is None else error)
    return out


def test_receipts_and_refusals_come_back_as_the_ledger_gives_them(
    database_url: str, tmp_path: Path
) -> None:
    cast = corridor_cast()
    path = tmp_path / "sequencer.sock"
    with Ledger(database_url, LOG_KEY) as ledger, sequencer(ledger, path):
        remote = RemoteSequencer(str(path), ledger.parties())
        heard: list[list[int]] = []
        remote.listeners.append(lambda appended: heard.append([i for i, _ in appended]))
        got = results(remote, cast.log)
        assert [r.log_index for r in got if isinstance(r, Receipt)] == list(range(len(cast.log)))
        issue = cast.doc_event(
            "CQ-REMOTE",
            "issue",
            {
                "content": corridor_document() | {"id": "CQ-REMOTE"},
                "holder": cast.actor("exporter").id,
            },
            [cast.actor("carrier")],
        )
        cast.append(issue)
        stale = cast.doc_event(
            "CQ-REMOTE",
            "transfer",
            {"to": cast.actor("buyer").id},
            [cast.actor("exporter")],
            seq=1,
            prev="0" * 64,
        )
        again = results(remote, [issue, stale, issue])
        first, conflict, duplicate = again
        assert isinstance(first, Receipt) and first.log_index == len(cast.log) - 1
        assert isinstance(conflict, Conflict)
        assert conflict.current_head == Event.parse(issue).id and conflict.current_seq == 0
        assert conflict.rule == "chain"
        assert isinstance(duplicate, Receipt) and duplicate.duplicate
        assert duplicate.log_index == first.log_index
        # the sequencer parses what it is sent: bytes that are no event are refused there
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw_client:
            raw_client.connect(str(path))
            _send(raw_client, [(b"not an event\n", {})])
            # the notice of an earlier batch's growth may reach a new connection first
            while isinstance(frame := _receive(raw_client), tuple) and frame[0] == "grown":
                pass
            (answer,) = frame
        broken = _decode(answer)
        assert isinstance(broken, InvalidInput) and broken.field == "event"
        # the listeners hear of a batch on the connection's reader thread, just after its
        # receipts are handed out: by now, or very soon
        expected = list(range(len(cast.log)))
        deadline = time.monotonic() + 30
        while sorted(i for batch in heard for i in batch) != expected:
            assert time.monotonic() < deadline, f"heard {heard}"
            time.sleep(0.01)
        remote.close()


def test_a_lost_sequencer_fails_what_it_owed_and_a_new_one_is_found(
    database_url: str, tmp_path: Path
) -> None:
    cast = corridor_cast()
    path = tmp_path / "sequencer.sock"
    with Ledger(database_url, LOG_KEY) as ledger:
        remote = RemoteSequencer(str(path), ledger.parties(), connect_wait=5)
        with sequencer(ledger, path):
            assert all(isinstance(r, Receipt) for r in results(remote, cast.log[:3]))
        # gone: the next submission finds no sequencer and says so
        remote.connect_wait = 0.2
        with pytest.raises(StoreError, match="unavailable"):
            remote.submit_events([Event.parse(cast.log[3])])[0].result(timeout=30)
        # back (a new process on the same path): the same remote goes on where the log is
        with sequencer(ledger, path):
            rest = results(remote, cast.log[3:])
        assert [r.log_index for r in rest if isinstance(r, Receipt)] == list(
            range(3, len(cast.log))
        )
        assert ledger.size() == len(cast.log)
        remote.close()


def test_every_connected_worker_hears_that_the_log_grew(database_url: str, tmp_path: Path) -> None:
    """A worker whose clients submitted nothing still hears of each batch (its event
    streams wake at once), and the notices do not disturb the answers to its own frames."""
    cast = corridor_cast()
    path = tmp_path / "sequencer.sock"
    with Ledger(database_url, LOG_KEY) as ledger, sequencer(ledger, path) as server:
        submitter = RemoteSequencer(str(path), ledger.parties())
        listener = RemoteSequencer(str(path), ledger.parties())
        sizes: list[int] = []
        own: list[int] = []
        reached = threading.Event()

        def grown(size: int) -> None:
            sizes.append(size)
            if size == len(cast.log) - 1:
                reached.set()

        listener.growth_listeners.append(grown)
        listener.listeners.append(lambda appended: own.extend(i for i, _ in appended))
        listener.connect_soon()  # connected without submitting anything
        deadline = time.monotonic() + 30
        while len(server._connections) < 1:
            assert time.monotonic() < deadline, "the listener did not connect"
            time.sleep(0.01)
        for raw in cast.log[:-1]:  # one batch each
            assert isinstance(results(submitter, [raw])[0], Receipt)
        assert reached.wait(30), f"the listener heard sizes {sizes}"
        assert sizes == sorted(sizes) and sizes[-1] == len(cast.log) - 1
        assert own == []  # none of those events were its own
        # its own submission still gets its own answer, and the notice of its batch
        (mine,) = results(listener, cast.log[-1:])
        assert isinstance(mine, Receipt) and mine.log_index == len(cast.log) - 1
        assert own == [len(cast.log) - 1]
        deadline = time.monotonic() + 30
        while sizes[-1] != len(cast.log):
            assert time.monotonic() < deadline, f"the listener heard sizes {sizes}"
            time.sleep(0.01)
        submitter.close()
        listener.close()
