"""``encd serve --workers 2``: two server processes, one port, one store, one log.

Every request below goes over a connection of its own, so the kernel spreads them
over both workers (SO_REUSEPORT); what must hold does not depend on which worker
answers: one log that never forks, receipts that verify, streams that hear every
worker's appends, a nonce used once across all of them, a dead worker replaced.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.client import Client, ProblemError
from api.media import EVENT_TYPE
from bench.workloads import Documents, Head
from encd.events import Event, event_id, make_event
from encd.keys import PublicKey, SigningKey
from encd.logentry import LogEntry
from encd.tlogproof import TlogProof
from tests.api.conftest import World
from tests.kit import T0, corridor_cast
from tests.serving import Served, serve

WORKERS = 2


@pytest.fixture()
def served(tmp_path: Path, database_url: str) -> Iterator[Served]:
    with serve(tmp_path / "data", database_url, "--workers", str(WORKERS)) as running:
        yield running
    assert running.process.returncode == 0, "".join(running.output)


def corridor(served: Served, documents: int) -> tuple[World, Documents, list[Head]]:
    """The corridor's parties registered, and ``documents`` documents issued, pledged and
    released (each event submitted by its first signer)."""
    url = served.url
    data_dir = served.data_dir
    service = Client(url, SigningKey.generate("nobody")).service()
    operator = Client(url, SigningKey.load(service["operator"], data_dir / "operator.key"))
    log_key = SigningKey.load(service["origin"], data_dir / "log.key")
    cast = corridor_cast()
    actors = {label: a for label, a in cast.actors.items() if label != "operator"}
    clients = {label: Client(url, a.key) for label, a in actors.items()}
    world = World(url, data_dir, operator, actors, clients, log_key)
    for label in actors:
        world.register(label)
    docs = Documents(cast)
    raws, heads = docs.tradeable(documents)
    by_key = {a.key.public.key_id: label for label, a in actors.items()}
    for raw in raws:
        first = Event.parse(raw).signatures[0]
        label = next(lb for lb, a in actors.items() if a.key.public.hash == first.key_hash)
        assert label in by_key.values()
        world.client(label).submit(raw)
    return world, docs, heads


def verify_receipt(receipt: dict[str, object], log_key: PublicKey) -> None:
    proof = TlogProof.parse(str(receipt["tlog_proof"]).encode())
    assert proof.index == receipt["log_index"]
    entry = LogEntry(str(receipt["event_id"]), int(str(receipt["sequenced_at"])))
    proof.verify(entry.leaf_hash, log_key)


def close(world: World) -> None:
    for client in [world.operator, *world.clients.values()]:
        client.close()


def test_workers_append_to_one_log(served: Served) -> None:
    world, docs, heads = corridor(served, 8)
    log_key = world.log_key.public
    before = int(Client(served.url, world.log_key).checkpoint().split(b"\n")[1])
    receipts: list[dict[str, object]] = []
    errors: list[BaseException] = []

    def trade(head: Head) -> None:
        try:
            for _ in range(5):
                raw, key = docs.transfer(head)
                with Client(served.url, key) as client:  # a new connection each time
                    receipts.append(client.submit(raw))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=trade, args=(head,)) for head in heads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(receipts) == 40
    indexes = sorted(int(str(r["log_index"])) for r in receipts)
    assert indexes == list(range(before, before + 40))  # one log, no gap, no fork
    for receipt in receipts:
        verify_receipt(receipt, log_key)
    for head in heads:  # each worker saw the other's transfers: the holders agree
        title = world.client("bank").verified_title(head.doc, log_key)
        assert title["seq"] == head.seq - 1 and title["holder"] == head.holder
    close(world)


def test_a_stream_hears_what_every_worker_appended(served: Served) -> None:
    world, docs, heads = corridor(served, 4)
    size = int(Client(served.url, world.log_key).checkpoint().split(b"\n")[1])
    expected: list[str] = []
    heard: list[str] = []
    done = threading.Event()

    def listen() -> None:
        with Client(served.url, world.actors["bank"].key) as bank:
            for message in bank.stream(last_event_id=size - 1, read_timeout=30):
                heard.append(message["event_id"])
                if len(heard) == 12:
                    done.set()
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    for i in range(12):
        raw, key = docs.transfer(heads[i % len(heads)])
        expected.append(event_id(raw))
        with Client(served.url, key) as client:
            client.submit(raw)
    assert done.wait(30), f"the stream delivered {len(heard)} of 12 events"
    assert heard == expected
    close(world)


def test_a_nonce_is_used_once_across_the_workers(served: Served) -> None:
    world, docs, heads = corridor(served, 1)
    raw, key = docs.transfer(heads[0])
    headers = Client(served.url, key).signed_headers("POST", "/v1/events", "", raw)
    headers["content-type"] = EVENT_TYPE
    statuses = []
    for _ in range(8):  # the same signed request, each time on a new connection
        response = httpx.post(served.url + "/v1/events", content=raw, headers=headers)
        statuses.append(response.status_code)
        if response.status_code == 401:
            assert "already used: a replayed request" in response.json()["detail"]
    assert sorted(statuses) == [201] + [401] * 7
    close(world)


def test_a_process_that_dies_is_replaced(served: Served) -> None:
    """The sequencer process and each worker, killed in turn: another takes its place and
    the service appends again (a submission made meanwhile waits for the new sequencer)."""
    world, docs, heads = corridor(served, 1)
    children = served.workers()
    assert len(children) == WORKERS + 1  # the workers and the sequencer
    time.sleep(5.5)  # past the time in which a death counts as failing to start
    for victim in children:
        before = served.workers()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in (now := served.workers()) or len(now) < len(before):
            assert time.monotonic() < deadline, f"processes {now} after {victim} died"
            time.sleep(0.1)
        raw, key = docs.transfer(heads[0])
        for _ in range(20):  # a connection may have gone to the dead worker
            try:
                with Client(served.url, key) as client:
                    receipt = client.submit(raw)
                break
            except (httpx.TransportError, ProblemError) as exc:
                if isinstance(exc, ProblemError) and exc.status != 503:
                    raise
                time.sleep(0.2)
        else:
            raise AssertionError(f"no submission went through after {victim} died")
        verify_receipt(receipt, world.log_key.public)
    assert "exited (code -9): starting another" in "".join(served.output)
    close(world)


def test_the_sequencer_process_refusals_are_the_usual_problems(served: Served) -> None:
    """What the sequencer process refuses reaches the client as the one-process service
    says it: a stale event is 409 with the current head, a broken rule 422 naming it."""
    world, docs, heads = corridor(served, 1)
    head = heads[0]
    first, key = docs.transfer(head)
    with Client(served.url, key) as client:
        client.submit(first)
    stale = Head(head.doc, head.seq - 1, Event.parse(first).prev, head.holder)
    again, key = docs.transfer(stale)  # signed against the head the first transfer replaced
    with Client(served.url, key) as client, pytest.raises(ProblemError) as refused:
        client.submit(again)
    assert refused.value.status == 409
    assert refused.value.problem["current_head"] == event_id(first)
    assert refused.value.problem["current_seq"] == head.seq - 1
    # the buyer (holder now) transfers to itself: a rule, not a chain, is broken
    holder = world.actors["buyer"] if head.holder == world.id("buyer") else world.actors["exporter"]
    assert holder.id == head.holder
    raw = make_event(
        [holder.key],
        type="transfer",
        doc=head.doc,
        seq=head.seq,
        prev=head.head,
        time=T0,
        body={"to": holder.id},
    )
    with Client(served.url, holder.key) as client, pytest.raises(ProblemError) as refused:
        client.submit(raw)
    assert refused.value.status == 422
    assert refused.value.problem["type"].endswith("rule-violation"), refused.value.problem
    assert refused.value.problem["rule"]
    close(world)


def encd_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "encd.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_workers_refuse_a_port_already_taken(tmp_path: Path) -> None:
    """Even by another server that shares ports: two services would split the connections."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # a ledger of its own: ENCD_DATABASE_URL may name a database other tests have filled
        db = f"sqlite:///{tmp_path / 'ledger.db'}"
        done = encd_serve(
            "--data-dir", str(tmp_path / "data"), "--db", db, "--workers", "2", "--port", str(port)
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_workers_say_why_the_ledger_does_not_open(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'no such directory' / 'ledger.db'}"
    done = encd_serve(
        "--data-dir", str(tmp_path / "data"), "--db", db, "--workers", "2", "--port", "0"
    )
    assert done.returncode == 1
    assert "cannot open the ledger: unable to open database file" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def _connections_held(pid: int, port: int, state: str = "01") -> int:
    """TCP sockets on local ``port`` that process ``pid`` holds, in ``state`` (/proc/net/tcp:
    "01" established, "0A" listening)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed since
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == state and fields[9] in inodes:
                held += 1
    return held


def test_connections_opened_together_go_to_every_worker(served: Served) -> None:
    """Not all to whichever worker wakes first (uvicorn's own --workers did that: one
    shared socket, from which a worker accepts every waiting connection at once).  Each
    worker's socket of its own gets the connections the kernel hashes to it: all 16 on
    one worker would happen once in ~30,000 runs."""
    port = httpx.URL(served.url).port
    assert port is not None
    deadline = time.monotonic() + 30
    # the service announces itself as it starts the workers: wait until each listens
    while sum(1 for pid in served.workers() if _connections_held(pid, port, "0A")) < WORKERS:
        assert time.monotonic() < deadline, "a worker is not listening"
        time.sleep(0.05)
    request = b"GET /healthz HTTP/1.1\r\nHost: encd\r\n\r\n"
    connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    try:
        for connection in connections:  # each one accepted and answered, and kept open
            connection.sendall(request)
            assert connection.recv(4096).startswith(b"HTTP/1.1 200 ")
        held = {pid: _connections_held(pid, port) for pid in served.workers()}
        assert sum(held.values()) == len(connections), held
        assert len([count for count in held.values() if count]) == WORKERS, held
    finally:
        for connection in connections:
            connection.close()
