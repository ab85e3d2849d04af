"""``encd serve --workers 2``: two server processes, one port, one store, one log.

Every request below goes over a connection of its own, handed to the worker holding
the fewest (api.server.Dispatcher), so they reach both workers; what must hold does not depend on which worker
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
from encd.checkpoint import open_checkpoint
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
    said = " ".join((done.stdout + done.stderr).split())
    assert f"cannot open the ledger {db}: unable to open database file" in said, said
    assert "Traceback" not in done.stdout + done.stderr


def _client_ports(pid: int, port: int) -> set[int]:
    """The client ports of the established TCP connections to local ``port`` that process
    ``pid`` holds (from /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed since
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    held = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                held.add(int(fields[2].rsplit(":", 1)[1], 16))
    return held


def _open(port: int, count: int) -> list[socket.socket]:
    """``count`` connections, each answered once and kept open."""
    request = b"GET /healthz HTTP/1.1\r\nHost: encd\r\n\r\n"
    connections = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port))
        connections.append(connection)
        connection.sendall(request)
        assert connection.recv(4096).startswith(b"HTTP/1.1 200 ")
    return connections


def test_connections_go_to_the_worker_holding_fewest(served: Served) -> None:
    """Connections opened together are spread evenly, not all to whichever worker wakes
    first (uvicorn's own --workers) nor as the kernel hashes them (SO_REUSEPORT: 12 and
    20 of 32); and a worker whose clients left is given the next ones."""
    port = httpx.URL(served.url).port
    assert port is not None
    deadline = time.monotonic() + 60  # until both take connections (a loading one gets none)
    while "".join(served.output).count("ready for the connections") < WORKERS:
        assert time.monotonic() < deadline, "".join(served.output)
        time.sleep(0.05)
    time.sleep(0.2)  # its word reaches the dispatcher
    connections = _open(port, 16)
    try:
        held = {pid: _client_ports(pid, port) for pid in served.workers()}
        counts = sorted(len(ports) for ports in held.values())
        assert counts == [0] + [16 // WORKERS] * WORKERS, held  # the sequencer holds none
        # the clients of one worker leave; the next connections all go to that worker
        quiet = next(pid for pid, ports in held.items() if ports)
        for connection in connections:
            if connection.getsockname()[1] in held[quiet]:
                connection.close()
        deadline = time.monotonic() + 10
        while _client_ports(quiet, port):
            assert time.monotonic() < deadline, "the worker did not see its clients leave"
            time.sleep(0.02)
        time.sleep(0.2)  # its word that they closed reaches the dispatcher
        more = _open(port, 16 // WORKERS)
        connections += more
        assert {c.getsockname()[1] for c in more} == _client_ports(quiet, port)
    finally:
        for connection in connections:
            connection.close()


def test_a_burst_the_workers_cannot_take_at_once_waits_rather_than_being_closed(
    served: Served,
) -> None:
    """A worker's channel holds a few hundred connections not yet taken (its socket's
    buffer: ~280 here).  With every worker behind (stopped here; busy or slow in life),
    the connections of a burst were closed unanswered; now they wait, in the listening
    socket's backlog, and are answered once the workers take them."""
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    answerers = served.answerers()
    for pid in answerers:
        os.kill(pid, signal.SIGSTOP)
    try:
        burst = []
        for _ in range(1000):  # more than the channels hold, fewer than the backlog (2048)
            connection = socket.create_connection((host, int(port)))
            connection.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            burst.append(connection)
        time.sleep(1.0)
        closed = 0
        for connection in burst:
            connection.setblocking(False)
            try:
                closed += connection.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        assert closed == 0, f"{closed} of {len(burst)} connections were closed unanswered"
    finally:
        for pid in answerers:
            os.kill(pid, signal.SIGCONT)
    for connection in burst:
        connection.setblocking(True)
        connection.settimeout(30)
        with connection:
            assert connection.recv(64).startswith(b"HTTP/1.1 200 "), "not answered"


def test_a_flurry_of_stop_signals_still_stops_the_service(
    tmp_path: Path, database_url: str
) -> None:
    """A supervisor's SIGTERM and an operator's at once: the second handler ran inside the
    first one's threading.Event.set(), waited for the lock the first held, and the service
    never stopped (seen once, with `timeout` and `pkill` both sending).  The handlers now
    take no lock.  (The race is narrow: this sends many, it cannot force it.)"""
    with serve(tmp_path / "data", database_url, "--workers", str(WORKERS)) as served:
        for _ in range(50):
            os.kill(served.process.pid, signal.SIGTERM)
        assert served.process.wait(timeout=60) == 0, "".join(served.output)


def test_the_processes_stop_when_the_one_that_listens_dies(
    tmp_path: Path, database_url: str
) -> None:
    """``encd serve`` killed outright (no SIGTERM to pass on): its workers and its
    sequencer see their channels to it close and exit, rather than live on unreachable."""
    with serve(tmp_path / "data", database_url, "--workers", str(WORKERS)) as served:
        children = served.workers()
        assert len(children) == WORKERS + 1
        served.process.kill()
        served.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive := [pid for pid in children if _running(pid)]:
            assert time.monotonic() < deadline, f"processes {alive} outlived encd serve"
            time.sleep(0.1)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_client_gone_mid_body_is_no_server_error(served: Served) -> None:
    """Clients that close their connection before sending the body they announced: nothing
    is changed, the workers go on answering, and nothing is logged as a server error (each
    one logged a traceback ending in starlette's ClientDisconnect)."""
    before = httpx.get(f"{served.url}/log/checkpoint").text
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    for path in ("/v1/events", "/v1/parties", "/v1/proposals"):
        for _ in range(2 * WORKERS):  # each connection goes to the worker holding fewest
            with socket.create_connection((host, int(port))) as sock:
                head = (
                    f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
                    f"content-type: {EVENT_TYPE}\r\ncontent-length: 1000\r\n\r\n"
                )
                sock.sendall(head.encode() + b"x" * 500)
    time.sleep(1.0)  # each worker hears its connections close
    assert httpx.get(f"{served.url}/healthz").status_code == 200
    assert httpx.get(f"{served.url}/log/checkpoint").text == before
    logged = "".join(served.output)
    assert "Traceback" not in logged and "Exception in ASGI" not in logged, logged


def test_a_replacement_that_dies_as_it_starts_is_tried_again(served: Served) -> None:
    """A process that replaces a dead one and dies as it starts (its store down, say) does
    not stop the service: another is started after a wait, and the service appends again.
    (Only a process of the service's own start that dies so stops it: it cannot start.)"""
    world, docs, heads = corridor(served, 1)
    time.sleep(5.5)  # past the service's start
    before = served.workers()
    os.kill(before[-1], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not (new := set(served.workers()) - set(before)):
        assert time.monotonic() < deadline, "no replacement was started"
        time.sleep(0.05)
    (replacement,) = new
    os.kill(replacement, signal.SIGKILL)  # within its first seconds
    while "as it started: starting another in 2 s" not in "".join(served.output):
        assert time.monotonic() < deadline, "".join(served.output)
        time.sleep(0.1)
    while len(served.workers()) < len(before):
        assert time.monotonic() < deadline, "the replacement's replacement did not start"
        assert served.process.poll() is None, "".join(served.output)
        time.sleep(0.1)
    raw, key = docs.transfer(heads[0])
    for _ in range(50):
        try:
            with Client(served.url, key) as client:
                receipt = client.submit(raw)
            break
        except (httpx.TransportError, ProblemError) as exc:
            if isinstance(exc, ProblemError) and exc.status != 503:
                raise
            time.sleep(0.2)
    else:
        raise AssertionError("no submission went through")
    verify_receipt(receipt, world.log_key.public)
    close(world)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopping_finishes_what_the_workers_hold(
    tmp_path: Path, database_url: str, stop: signal.Signals
) -> None:
    """SIGTERM to `encd serve` (a supervisor), or SIGINT to its whole process group (a
    Ctrl-C): the workers stop first, answering the submissions they hold with receipts, and
    the sequencer after them; no submission gets a 503 for a sequencer already gone.
    (Whether a submission is in flight at the signal is up to the scheduler; stopped all
    at once, about one in three hundred got that 503, and the stop took 30 s.)"""
    with serve(tmp_path / "data", database_url, "--workers", str(WORKERS)) as served:
        world, docs, heads = corridor(served, 8)
        answers: list[int | str] = []
        started = threading.Barrier(len(heads) + 1)

        def submit(head: Head) -> None:
            started.wait()
            while True:
                raw, key = docs.transfer(head)
                try:
                    with Client(served.url, key) as client:
                        client.submit(raw)
                    answers.append(201)
                except ProblemError as exc:
                    answers.append(exc.status)
                    return
                except Exception as exc:  # the service stopped taking connections
                    answers.append(type(exc).__name__)
                    return

        threads = [threading.Thread(target=submit, args=(head,)) for head in heads]
        for thread in threads:
            thread.start()
        started.wait()
        time.sleep(1.0)
        # a Ctrl-C reaches every process of the terminal's group at once
        group = [served.process.pid, *served.workers()] if stop == signal.SIGINT else []
        for pid in group or [served.process.pid]:
            os.kill(pid, stop)
        for thread in threads:
            thread.join(timeout=60)
        assert served.process.wait(timeout=60) == 0, "".join(served.output)
    assert answers.count(201) > 0
    assert not [a for a in answers if a not in (201, "Unreachable")], answers
    close(world)


@pytest.mark.parametrize("args", [(), ("--workers", str(WORKERS))], ids=["one", "workers"])
def test_the_newest_checkpoint_is_kept_in_the_data_directory(
    tmp_path: Path, database_url: str, args: tuple[str, ...]
) -> None:
    """The appending process keeps <data dir>/checkpoint up with the log (about once a
    second), so that the next start finds out a restored older ledger."""
    kept = tmp_path / "data" / "checkpoint"

    def kept_size(log_key: PublicKey) -> int:
        return open_checkpoint(kept.read_bytes(), log_key).size

    with serve(tmp_path / "data", database_url, *args) as running:
        world, _, _ = corridor(running, 2)
        log_key = world.log_key.public
        size = open_checkpoint(world.operator.checkpoint(), log_key).size
        assert size > 1
        deadline = time.monotonic() + 30
        while kept_size(log_key) < size and time.monotonic() < deadline:
            time.sleep(0.1)
        assert kept_size(log_key) == size
        close(world)
    # (one process ends as uvicorn does after a graceful stop: by the SIGTERM it caught)
    assert running.process.returncode in (0, -signal.SIGTERM), "".join(running.output)
    assert kept_size(log_key) == size
