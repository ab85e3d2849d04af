"""The measurements.  Each function runs in a fresh process (``bench.child``) and returns
plain numbers; ``bench.run`` turns them into figures and ratios.

Every workload is real: SQLite files in a temporary directory (durable
commits, WAL), the corridor parties' real Ed25519 keys, HTTP through uvicorn
on 127.0.0.1 in a process of its own.  Every loop is bounded by a count.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult, percentile, request_bytes, run_load
from bench.serve import Server
from bench.workloads import (
    Documents,
    Head,
    World,
    append_all,
    new_world,
    signature_pairs,
)
from encd.keys import SigningKey

EVENT_TYPE = "application/vnd.encd.event"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ms(seconds: float) -> float:
    return seconds * 1000.0


class Stolen:
    """The share of the machine's CPU time the hypervisor took (``steal`` in /proc/stat) over
    the windows measured with ``window()``: on a shared virtual machine the cores are not
    all ours, and how much they were not is part of reading a figure."""

    def __init__(self) -> None:
        self.steal = 0
        self.total = 0

    @staticmethod
    def snapshot() -> list[int]:
        try:
            with open("/proc/stat") as stat:
                return [int(x) for x in stat.readline().split()[1:]]
        except (OSError, ValueError):  # pragma: no cover - not Linux
            return []

    @contextmanager
    def window(self) -> Iterator[None]:
        before = self.snapshot()
        yield
        after = self.snapshot()
        if len(before) > 7 and len(after) > 7:
            self.steal += after[7] - before[7]
            self.total += sum(after) - sum(before)

    @property
    def share(self) -> float:
        return self.steal / self.total if self.total else 0.0


def latency_summary(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    return {
        f"{prefix}_p50_ms": ms(percentile(seconds, 50)),
        f"{prefix}_p99_ms": ms(percentile(seconds, 99)),
        f"{prefix}_max_ms": ms(max(seconds)) if seconds else 0.0,
    }


@contextmanager
def scratch(keep: str | None = None) -> Iterator[Path]:
    """A temporary directory (or ``keep``, left in place, for a look afterwards)."""
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="encd-bench-") as tmp:
        yield Path(tmp)


def pin_all(cpus: set[int]) -> None:
    """Set the CPU mask of every thread of this process (threads started later inherit the
    calling thread's mask)."""
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError, PermissionError):  # a thread just ended
            os.sched_setaffinity(int(task), cpus)


# --- profiles ------------------------------------------------------------------------------


@contextmanager
def profiled(
    pid: int, out: str | None, rate: int = 200, subprocesses: bool = False
) -> Iterator[None]:
    """py-spy samples process ``pid`` (all its threads, idle or not, ``rate`` Hz) while the block
    runs and writes collapsed stacks to ``out``; nothing when ``out`` is None.
    ``bench.profile`` sets the waiting samples apart.  py-spy pauses the process for each
    sample, so a profiled run is slower and its figures are not the benchmark's."""
    if out is None:
        yield
        return
    spy = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--idle",
            *(["--subprocesses"] if subprocesses else []),
            "--format",
            "raw",
            "--output",
            out,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # py-spy attaches
    if spy.poll() is not None:
        log(f"py-spy did not start: {spy.stderr.read() if spy.stderr else ''}")
    try:
        yield
    finally:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()


# --- 1. the verify limit and in-process appends -----------------------------------------------


def verify_limit(
    documents: int, per_document: int, seconds: float = 1.0, threads: int = 1
) -> dict[str, Any]:
    """Raw PyNaCl Ed25519 verifications/s over the signatures of the append workload
    (the envelope texts the ledger verifies), ``threads`` threads at once."""
    import nacl.signing

    from tests.kit import corridor_cast

    raws = Documents(corridor_cast()).lifecycle(documents, per_document)
    pairs, events = signature_pairs(raws)
    keys = {pk: nacl.signing.VerifyKey(pk) for pk, _, _ in pairs}
    items = [(keys[pk], message, sig) for pk, message, sig in pairs]

    def loop(deadline: float) -> int:
        count = 0
        while True:
            for key, message, sig in items:
                key.verify(message, sig)
            count += len(items)
            if time.perf_counter() >= deadline:
                return count

    loop(time.perf_counter() + 0.2)  # warm-up
    started = time.perf_counter()
    deadline = started + seconds
    counts: list[int] = []
    workers = [
        threading.Thread(target=lambda: counts.append(loop(deadline))) for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return {
        "verify_per_s": sum(counts) / elapsed,
        "signatures_per_event": len(pairs) / events,
        "message_bytes_mean": statistics.fmean(len(m) for _, m, _ in pairs),
        "threads": threads,
    }


def append(
    documents: int, per_document: int, threads: int = 1, profile: str | None = None
) -> dict[str, Any]:
    """Events/s through ``Ledger.append_many`` on a fresh ledger: parse, verify signatures,
    admit, store, commit (durable) and receipts.  ``threads`` callers at once, each with its
    own documents (a document's events stay in order within one caller)."""
    with scratch() as tmp:
        world = new_world(tmp / "data")
        raws = Documents(world.cast).lifecycle(documents, per_document)
        parts = [
            [raw for i, raw in enumerate(raws) if (i % documents) % threads == t]
            for t in range(threads)
        ]
        with world.open() as ledger:
            before = ledger.size()
            batches: list[int] = []
            ledger.listeners.append(lambda appended: batches.append(len(appended)))
            with profiled(os.getpid(), profile):
                started = time.perf_counter()
                if threads == 1:
                    append_all(ledger, raws)
                else:
                    workers = [
                        threading.Thread(target=append_all, args=(ledger, part)) for part in parts
                    ]
                    for worker in workers:
                        worker.start()
                    for worker in workers:
                        worker.join()
                elapsed = time.perf_counter() - started
            appended = ledger.size() - before
    if appended != len(raws):
        raise RuntimeError(f"appended {appended} of {len(raws)} events")
    return {
        "events": len(raws),
        "seconds": elapsed,
        "events_per_s": len(raws) / elapsed,
        "threads": threads,
        "batches": len(batches),
        "batch_mean": statistics.fmean(batches),
    }


def sqlite_commit(commits: int = 300) -> dict[str, Any]:
    """The disk's limit on durable commits: one small row per transaction in an SQLite file
    set up as the ledger's (WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE``), sqlite3 alone."""
    import sqlite3

    with scratch() as tmp:
        db = sqlite3.connect(tmp / "commits.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        times = []
        for i in range(commits + 10):
            t0 = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (v) VALUES (?)", (os.urandom(64),))
            db.execute("COMMIT")
            if i >= 10:
                times.append(time.perf_counter() - t0)
        db.close()
    return {
        "sqlite_commits_per_s": len(times) / sum(times),
        **latency_summary("sqlite_commit", times),
    }


# --- 2, 3. HTTP: submissions against a hello world, and time to agreement ------------------


def _signer(url: str) -> Callable[[SigningKey, str, str, bytes], dict[str, str]]:
    """Signs request headers with one Client per key (built once)."""
    from api.client import Client

    clients: dict[str, Client] = {}

    def sign(key: SigningKey, method: str, path: str, body: bytes) -> dict[str, str]:
        client = clients.get(key.name)
        if client is None:
            client = clients[key.name] = Client(url, key)
        headers = client.signed_headers(method, path, "", body)
        if body:
            headers["content-type"] = EVENT_TYPE
        return headers

    return sign


def http(
    connections: int = 32,
    docs_per_connection: int = 4,
    requests_per_connection: int = 50,
    warmup_per_connection: int = 5,
    agreement_transfers: int = 100,
    rounds: int = 1,
    workers: int | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Signed transfers/s over HTTP with ``connections`` concurrent clients, a FastAPI
    hello-world POST (same bodies, same headers) as the limit, and time to agreement.

    Both servers run ``workers`` processes (default: one per usable core), as
    ``encd serve --workers`` would be run on this machine.

    The two servers run side by side and take turns: ``rounds`` rounds of hello world
    then encd, each with its share of the requests.  The ratio is the median of the
    rounds' own ratios (a slow spell of a shared machine falls on both sides of one);
    rates are the medians of the rounds; latencies are taken over every request."""
    with scratch() as tmp:
        world = new_world(tmp / "data")
        docs = Documents(world.cast)
        raws, heads = docs.tradeable(connections * docs_per_connection + 1)
        with world.open() as ledger:
            append_all(ledger, raws)
        if workers is None:
            workers = len(os.sched_getaffinity(0))
        per_round = max(requests_per_connection // rounds, 1)
        total = warmup_per_connection + per_round * rounds
        chains: list[list[tuple[bytes, SigningKey]]] = []
        for c in range(connections):
            mine = heads[c * docs_per_connection : (c + 1) * docs_per_connection]
            chains.append([docs.transfer(mine[i % len(mine)]) for i in range(total)])
        agreement_head = heads[-1]
        result: dict[str, Any] = {
            "connections": connections,
            "requests": connections * per_round * rounds,
            "documents": len(heads),
            "rounds": rounds,
            "workers": workers,
        }
        with (
            Server("hello", str(workers)) as hello,
            Server("encd", str(workers), str(world.data_dir)) as server,
        ):
            log(
                f"hello world at {hello.url}, encd at {server.url}: signing {connections * total} requests each"
            )
            targets = [(hello, "/hello"), (server, "/v1/events")]
            prepared = [_prepare(s, path, chains) for s, path in targets]
            for (s, _), requests in zip(targets, prepared, strict=True):
                run_load(s.port, [p[:warmup_per_connection] for p in requests]).check([201])
            before = _metrics(server.url)
            loads: list[list[LoadResult]] = [[], []]
            stolen = [Stolen(), Stolen()]
            for r in range(rounds):
                window = slice(
                    warmup_per_connection + r * per_round,
                    warmup_per_connection + (r + 1) * per_round,
                )
                for (s, _), requests, out, steal in zip(
                    targets, prepared, loads, stolen, strict=True
                ):
                    with steal.window():
                        load = run_load(s.port, [p[window] for p in requests])
                    load.check([201])
                    out.append(load)
                log(
                    f"round {r + 1}: hello world {loads[0][-1].rate:.0f}/s, encd {loads[1][-1].rate:.0f}/s"
                )
            after = _metrics(server.url)
            for name, out in zip(("hello", "http"), loads, strict=True):
                result[f"{name}_per_s"] = statistics.median(load.rate for load in out)
                result[f"{name}_per_s_rounds"] = [load.rate for load in out]
                result.update(latency_summary(name, [t for load in out for t in load.latencies()]))
            result["http_ratio"] = statistics.median(
                e.rate / h.rate for h, e in zip(loads[0], loads[1], strict=True)
            )
            result["http_seconds"] = sum(load.seconds for load in loads[1])
            result["hello_cpu_stolen"] = stolen[0].share
            result["http_cpu_stolen"] = stolen[1].share
            if workers == 1:  # (with several workers, /metrics counts the one that answers)
                batches = after["encd_batch_events_count"] - before["encd_batch_events_count"]
                result["http_batches"] = batches
                result["http_batch_mean"] = (
                    after["encd_batch_events_sum"] - before["encd_batch_events_sum"]
                ) / max(batches, 1)
                appended = after["encd_append_seconds_count"] - before["encd_append_seconds_count"]
                result["http_server_append_mean_ms"] = ms(
                    (after["encd_append_seconds_sum"] - before["encd_append_seconds_sum"])
                    / max(appended, 1)
                )
            log(
                f"encd: {result['http_per_s']:.0f} transfers/s (ratio {result['http_ratio']:.2f}),"
                f" p99 {result['http_p99_ms']:.1f} ms"
            )
            result.update(_agreement(server, world, docs, agreement_head, agreement_transfers))
            if profile is not None:
                more = [
                    [
                        docs.transfer(heads[c * docs_per_connection + i % docs_per_connection])
                        for i in range(requests_per_connection)
                    ]
                    for c in range(connections)
                ]
                again = _prepare(server, "/v1/events", more)
                with profiled(server.pid, profile, rate=50, subprocesses=workers > 1):
                    profiled_load = run_load(server.port, again)
                profiled_load.check([201])
                result["profiled_http_per_s"] = profiled_load.rate
    return result


def _prepare(
    server: Server, path: str, chains: list[list[tuple[bytes, SigningKey]]]
) -> list[list[bytes]]:
    """Every chain's requests as the bytes sent: a signed POST of each body to ``path``."""
    sign = _signer(server.url)
    return [
        [
            request_bytes("POST", path, server.port, sign(key, "POST", path, raw), raw)
            for raw, key in chain
        ]
        for chain in chains
    ]


def _metrics(url: str) -> dict[str, float]:
    """The service's Prometheus counters (GET /metrics), the plain ``name value`` lines."""
    import httpx

    values: dict[str, float] = {}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        name, _, value = line.partition(" ")
        if line and not line.startswith("#") and "{" not in name:
            values[name] = float(value)
    return values


def _agreement(
    server: Server, world: World, docs: Documents, head: Head, transfers: int
) -> dict[str, Any]:
    """From a transfer's submission until the bank's open event stream has delivered it and
    the bank has fetched its receipt and verified the proof against the log key.  One
    transfer at a time (the next once the last one is agreed)."""
    import httpx

    from api.client import Client
    from encd.logentry import LogEntry
    from encd.tlogproof import TlogProof

    warmup = 5
    events = [docs.transfer(head) for _ in range(warmup + transfers)]
    from encd.events import event_id

    ids = [event_id(raw) for raw, _ in events]
    sign = _signer(server.url)
    headers = [sign(key, "POST", "/v1/events", raw) for raw, key in events]
    log_key = world.log_key.public
    bank_key = world.actor("bank").key
    sent: dict[str, float] = {}
    delivered: dict[str, float] = {}
    agreed: queue.Queue[tuple[str, float] | BaseException] = queue.Queue()
    size = int(Client(server.url, bank_key).checkpoint().split(b"\n")[1])
    listener = Client(server.url, bank_key)
    fetcher = Client(server.url, bank_key)

    def listen() -> None:
        try:
            for message in listener.stream(last_event_id=size - 1, read_timeout=30):
                eid = message["event_id"]
                if eid not in sent:
                    continue
                delivered[eid] = time.perf_counter()
                receipt = fetcher.get(f"/v1/events/{eid}/receipt")
                proof = TlogProof.parse(receipt["tlog_proof"].encode())
                proof.verify(LogEntry(eid, receipt["sequenced_at"]).leaf_hash, log_key)
                agreed.put((eid, time.perf_counter()))
                if eid == ids[-1]:
                    return
        except BaseException as exc:
            agreed.put(exc)

    thread = threading.Thread(target=listen, name="bank-stream", daemon=True)
    thread.start()
    latencies: list[float] = []
    deliveries: list[float] = []
    submits: list[float] = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for i, ((raw, _), eid, header) in enumerate(zip(events, ids, headers, strict=True)):
                sent[eid] = started = time.perf_counter()
                response = http.post("/v1/events", content=raw, headers=header)
                submitted = time.perf_counter()
                if response.status_code != 201:
                    raise RuntimeError(f"transfer refused: {response.status_code} {response.text}")
                item = agreed.get(timeout=10)
                if isinstance(item, BaseException):
                    raise item
                if item[0] != eid:
                    raise RuntimeError(f"agreed on {item[0]}, expected {eid}")
                if i >= warmup:
                    latencies.append(item[1] - started)
                    deliveries.append(delivered[eid] - started)
                    submits.append(submitted - started)
    finally:
        thread.join(timeout=10)
        listener.close()
        fetcher.close()
    log(f"agreement p99 {ms(percentile(latencies, 99)):.1f} ms over {len(latencies)} transfers")
    return {
        "agreement_transfers": len(latencies),
        **latency_summary("agreement", latencies),
        **latency_summary("stream_delivery", deliveries),
        **latency_summary("agreement_submit", submits),
    }


# --- 4, 5, 6. a large ledger: growth, proofs, title, start-up, size, export and audit --------


def big(
    size: int,
    chunk_docs: int,
    per_document: int,
    probe_chunks: int = 3,
    proof_samples: int = 1000,
    title_samples: int = 500,
    keep: str | None = None,
    pin_build: bool = True,
) -> dict[str, Any]:
    """Build a ledger of ``size`` events in chunks of ``chunk_docs`` documents (each chunk
    signed, then appended with ``append_many`` and timed), then measure at that size.

    With ``pin_build`` the build and the probe chunks run with the process pinned to one
    core: unpinned, how many events the sequencer gets per batch depends on how the two
    threads meet on two cores (see docs/benchmarks.md), which swamps any effect of the
    ledger's size.  Everything after the build runs on every core again."""
    from encd.audit import audit_file
    from ledger.export import export_ledger

    chunk = chunk_docs * per_document
    result: dict[str, Any] = {"chunk_events": chunk, "per_document": per_document}
    with scratch(keep) as tmp:
        world = new_world(tmp / "data")
        docs = Documents(world.cast)
        series: list[dict[str, float]] = []
        sign_seconds = append_seconds = 0.0
        started = time.perf_counter()
        next_report = 0.0
        every_core = os.sched_getaffinity(0)
        result["build_pinned"] = pin_build
        if pin_build:
            pin_all({min(every_core)})
        with world.open() as ledger:
            current = ledger.size()
            result["registered_events"] = current

            def one_chunk() -> dict[str, float]:
                nonlocal current, sign_seconds, append_seconds
                t0 = time.perf_counter()
                raws = docs.lifecycle(chunk_docs, per_document)
                t1 = time.perf_counter()
                append_all(ledger, raws)
                t2 = time.perf_counter()
                sign_seconds += t1 - t0
                append_seconds += t2 - t1
                point = {
                    "size": current,
                    "events": len(raws),
                    "events_per_s": len(raws) / (t2 - t1),
                }
                current += len(raws)
                return point

            while current < size:
                series.append(one_chunk())
                if current >= next_report:
                    log(
                        f"built {current:,} events ({series[-1]['events_per_s']:.0f}/s; "
                        f"{time.perf_counter() - started:.0f} s)"
                    )
                    next_report += size / 10
            built = current
            result["build_s"] = time.perf_counter() - started
            result["build_sign_s"] = sign_seconds
            result["build_append_s"] = append_seconds
            # Growth: chunks at the full size taken in turn with chunks on a fresh, nearly
            # empty ledger in the same process, so that a slow spell of a shared machine
            # falls on both sides of the ratio rather than on one.
            fresh_world = new_world(tmp / "fresh")
            fresh_docs = Documents(fresh_world.cast)
            probes, fresh = [], []
            with fresh_world.open() as small:
                fresh_size = small.size()

                def fresh_chunk() -> dict[str, float]:
                    nonlocal fresh_size
                    raws = fresh_docs.lifecycle(chunk_docs, per_document)
                    t0 = time.perf_counter()
                    append_all(small, raws)
                    point = {
                        "size": fresh_size,
                        "events": len(raws),
                        "events_per_s": len(raws) / (time.perf_counter() - t0),
                    }
                    fresh_size += len(raws)
                    return point

                fresh_chunk()  # this ledger's warm-up, not counted
                for _ in range(probe_chunks):
                    probes.append(one_chunk())
                    fresh.append(fresh_chunk())
            final = current
        pin_all(every_core)
        result["ledger_size"] = built
        result["final_size"] = final
        result["series"] = series
        result["probes"] = probes
        result["fresh_probes"] = fresh
        result["append_per_s_empty"] = statistics.median(p["events_per_s"] for p in fresh)
        result["append_per_s_at_size"] = statistics.median(p["events_per_s"] for p in probes)
        # the build's own start, for comparison (its first chunk warms the process up)
        early = series[1 : 1 + probe_chunks] or series[:1]
        result["append_per_s_build_start"] = statistics.median(p["events_per_s"] for p in early)
        result["build_append_per_s"] = (built - result["registered_events"]) / result[
            "build_append_s"
        ]
        db = world.data_dir / "ledger.db"
        stored = sum(p.stat().st_size for p in db.parent.glob("ledger.db*"))
        result["db_bytes"] = stored
        result["bytes_per_event"] = stored / final
        raw_bytes = 0
        # (start-up) opening the big ledger: migrations check, log size, tree border, parties
        startups = []
        for _ in range(3):
            t0 = time.perf_counter()
            ledger = world.open()
            startups.append(time.perf_counter() - t0)
            if len(startups) < 3:
                ledger.close()
        result["startup_s"] = statistics.median(startups)
        try:
            raw_bytes = sum(len(r[3]) for r in ledger.entries(final - 1000, final))
            result["event_bytes_mean"] = raw_bytes / 1000
            result.update(_proofs(ledger, final, proof_samples, int(probes[0]["size"])))
            export_path = tmp / "ledger.encd"
            t0 = time.perf_counter()
            with export_path.open("wb") as out:
                exported = export_ledger(ledger, out)
            result["export_s"] = time.perf_counter() - t0
        finally:
            ledger.close()
        result["export_per_s"] = exported.entries / result["export_s"]
        result["export_bytes"] = export_path.stat().st_size
        log(f"exported {exported.entries:,} entries in {result['export_s']:.1f} s")
        result.update(_title(world, final, docs.next, title_samples))
        policy = tmp / "policy"
        policy.write_text(f"log {world.log_key.public.vkey}\n")
        limits = [verify_limit(20, 50)["verify_per_s"]]  # the audit's limit, on either side
        t0 = time.perf_counter()
        report = audit_file(export_path, policy)
        result["audit_s"] = time.perf_counter() - t0
        limits.append(verify_limit(20, 50)["verify_per_s"])
        result["verify_per_s_at_audit"] = statistics.fmean(limits)
        if not report.ok or report.entries != exported.entries:
            raise RuntimeError(f"the audit failed: {report.message}")
        result["audit_entries"] = report.entries
        result["audit_per_s"] = report.entries / result["audit_s"]
        log(f"audited {report.entries:,} entries in {result['audit_s']:.1f} s")
        export_path.unlink()
    return result


def audit_profile(documents: int, per_document: int, profile: str) -> dict[str, Any]:
    """A ledger of ``documents`` lifecycles exported, then audited under py-spy (200 Hz)."""
    from encd.audit import audit_file
    from ledger.export import export_ledger

    with scratch() as tmp:
        world = new_world(tmp / "data")
        raws = Documents(world.cast).lifecycle(documents, per_document)
        export_path = tmp / "ledger.encd"
        with world.open() as ledger:
            append_all(ledger, raws)
            with export_path.open("wb") as out:
                exported = export_ledger(ledger, out)
        policy = tmp / "policy"
        policy.write_text(f"log {world.log_key.public.vkey}\n")
        with profiled(os.getpid(), profile):
            t0 = time.perf_counter()
            report = audit_file(export_path, policy)
            elapsed = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError(f"the audit failed: {report.message}")
    return {"entries": exported.entries, "audit_per_s": exported.entries / elapsed}


def _proofs(ledger: Any, size: int, samples: int, signed: int) -> dict[str, Any]:
    """Inclusion and consistency proofs from ``Ledger`` (store and its node cache) at
    ``size``: random leaves and random earlier sizes.  One proof of each kind is verified,
    the consistency one from ``signed``, a size the log signed a checkpoint for."""
    from encd.checkpoint import open_checkpoint
    from encd.logentry import LogEntry
    from encd.merkle import verify_consistency, verify_inclusion

    rng = random.Random(6)
    both: list[float] = []
    inclusions: list[float] = []
    consistencies: list[float] = []
    for n in range(samples + 50):
        index, earlier = rng.randrange(size), rng.randrange(1, size)
        t0 = time.perf_counter()
        inclusion = ledger.inclusion(index, size)
        t1 = time.perf_counter()
        ledger.consistency(earlier, size)
        t2 = time.perf_counter()
        if n >= 50:  # the first 50 warm the connection pool and the node cache
            inclusions.append(t1 - t0)
            consistencies.append(t2 - t1)
            both.append(t2 - t0)
    checkpoint = open_checkpoint(ledger.checkpoint_at(size), ledger.log_key.public)
    _, eid, at, _ = ledger.entries(index, index + 1)[0]
    leaf = LogEntry(eid, at).leaf_hash
    verify_inclusion(leaf, index, size, inclusion, checkpoint.root)
    first = open_checkpoint(ledger.checkpoint_at(signed), ledger.log_key.public)
    proof = ledger.consistency(signed, size)
    verify_consistency(signed, size, proof, first.root, checkpoint.root)
    return {
        "proof_samples": len(both),
        **latency_summary("proof", both),
        **latency_summary("inclusion", inclusions),
        **latency_summary("consistency", consistencies),
    }


def _title(world: World, size: int, documents: int, samples: int) -> dict[str, Any]:
    """GET /v1/documents/<id>/title for random documents, one request at a time, signed by
    the bank (any registered party may ask); one answer's proof is verified."""
    import json

    from api.client import verify_title
    from bench.workloads import doc_id

    rng = random.Random(4)
    with Server("encd", "1", str(world.data_dir)) as server:
        sign = _signer(server.url)
        bank = world.actor("bank").key
        paths = [f"/v1/documents/{doc_id(rng.randrange(documents))}/title" for _ in range(samples)]
        warm = [f"/v1/documents/{doc_id(n % documents)}/title" for n in range(20)]
        prepared = [
            request_bytes("GET", p, server.port, sign(bank, "GET", p, b"")) for p in [*warm, *paths]
        ]
        run_load(server.port, [prepared[: len(warm)]]).check([200])
        load = run_load(server.port, [prepared[len(warm) :]])
        load.check([200])
        answer = json.loads(load.responses[0][-1].body)
        verify_title(answer, world.log_key.public)
    log(f"title p99 {ms(percentile(load.latencies(), 99)):.2f} ms at {size:,} events")
    return {"title_samples": load.count, **latency_summary("title", load.latencies())}


# --- 7. the Merkle layer beside pymerkle ------------------------------------------------------


def merkle(size: int, samples: int = 1000) -> dict[str, Any]:
    """``encd.merkle`` (CompactRange appends, nodes kept in a dict as the ledger keeps them,
    proofs through ``get_node``) against pymerkle's InmemoryTree on the same entries."""
    import hashlib

    from encd.merkle import CompactRange, consistency_proof, inclusion_proof, leaf_hash

    entries = [
        hashlib.sha256(i.to_bytes(8, "big")).digest() + i.to_bytes(8, "big") for i in range(size)
    ]
    result: dict[str, Any] = {"merkle_size": size}
    t0 = time.perf_counter()
    tree = CompactRange()
    nodes: dict[tuple[int, int], bytes] = {}
    for data in entries:
        tree, created = tree.append(leaf_hash(data))
        for node in created:
            nodes[(node.level, node.index)] = node.hash
    root = tree.root()
    result["encd_merkle_append_per_s"] = size / (time.perf_counter() - t0)

    def get_node(level: int, index: int) -> bytes:
        return nodes[(level, index)]

    rng = random.Random(7)
    points = [(rng.randrange(size), rng.randrange(1, size)) for _ in range(samples)]
    result.update(
        _timed_proofs(
            "encd",
            points,
            lambda i: inclusion_proof(i, size, get_node),
            lambda m: consistency_proof(m, size, get_node),
        )
    )
    try:
        from pymerkle import InmemoryTree  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        result["pymerkle"] = "not installed"
        return result
    t0 = time.perf_counter()
    peer = InmemoryTree()
    for data in entries:
        peer.append_entry(data)
    peer_root = peer.get_root()
    result["pymerkle_append_per_s"] = size / (time.perf_counter() - t0)
    result["roots_agree"] = bytes(peer_root) == root
    result.update(
        _timed_proofs(
            "pymerkle",
            points,
            lambda i: peer.prove_inclusion(i + 1, size),
            lambda m: peer.prove_consistency(m, size),
        )
    )
    import pymerkle  # type: ignore[import-untyped,import-not-found,unused-ignore]

    result["pymerkle_version"] = getattr(pymerkle, "__version__", "?")
    return result


def _timed_proofs(
    name: str,
    points: Sequence[tuple[int, int]],
    inclusion: Callable[[int], object],
    consistency: Callable[[int], object],
) -> dict[str, float]:
    inclusions, consistencies = [], []
    for index, earlier in points:
        t0 = time.perf_counter()
        inclusion(index)
        t1 = time.perf_counter()
        consistency(earlier)
        t2 = time.perf_counter()
        inclusions.append(t1 - t0)
        consistencies.append(t2 - t1)
    return {
        f"{name}_inclusion_us": statistics.fmean(inclusions) * 1e6,
        f"{name}_consistency_us": statistics.fmean(consistencies) * 1e6,
    }
