"""``encd serve`` killed outright under load, every process at once, then started again on
the same store: nothing it receipted is lost or moved, the log it serves extends every
checkpoint it handed out, and it takes the traffic up where it stopped.

SIGKILL gives no process a chance to finish what it holds: the sequencer may be in the
middle of a batch, a worker may hold a receipt it has not sent.  What a client was told
must hold anyway (design.md: a receipt is given only for a durable commit); what it was
not told may have happened or not, and sending it again settles it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.client import Client, Unreachable
from bench.workloads import Documents, Head
from encd.bundle import verify_bundle
from encd.checkpoint import open_checkpoint
from encd.keys import PublicKey, SigningKey
from encd.merkle import verify_consistency
from tests.api.test_workers import WORKERS, _running, close, corridor, verify_receipt
from tests.serving import Served, serve

DOCUMENTS = 6  # documents traded at once, one client each
CHAIN = 400  # transfers signed ahead for each: more than the load reaches before the kill
KILL_AFTER = 150  # receipts handed out before the kill


def _tree(pid: int) -> list[int]:
    """``pid`` and every process under it, from /proc."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += _tree(int(child))
    return found


def _kill_everything(served: Served, answerers_first: bool) -> None:
    """SIGKILL to the service's every process, the listener, its workers and its sequencer:
    all as close to at once as one loop can, or the workers that answer the clients first
    and the rest a moment later (so the sequencer may commit what no one will answer)."""
    pids = _tree(served.process.pid)
    assert len(pids) >= WORKERS + 2, pids  # the listener, the workers, the sequencer
    if answerers_first:
        _kill(served.answerers())
        time.sleep(0.05)
    _kill(pids)
    served.process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in pids):
        assert time.monotonic() < deadline, "a process of the service outlived SIGKILL"
        time.sleep(0.05)


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # gone already
            os.kill(pid, signal.SIGKILL)


class _Trader(threading.Thread):
    """Submits one document's signed transfers in order until one gets no answer."""

    def __init__(self, url: str, chain: list[tuple[bytes, SigningKey]]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.chain = chain
        self.receipts: list[dict[str, Any]] = []  # in chain order
        self.unanswered: int | None = None  # the chain position that got no answer

    def run(self) -> None:
        clients: dict[str, Client] = {}
        try:
            for position, (raw, key) in enumerate(self.chain):
                client = clients.setdefault(key.public.key_id, Client(self.url, key))
                try:
                    self.receipts.append(client.submit(raw))
                except Unreachable:
                    self.unanswered = position
                    return
        finally:
            for client in clients.values():
                client.close()


def _watch_checkpoints(url: str, seen: list[bytes], stop: threading.Event) -> None:
    with httpx.Client(timeout=5) as http:
        while not stop.is_set():
            try:
                seen.append(http.get(f"{url}/log/checkpoint").content)
            except httpx.TransportError:
                return
            time.sleep(0.01)


def _consistency(url: str, size1: int, size2: int) -> list[bytes]:
    answer = httpx.get(f"{url}/v1/log/consistency", params={"size1": size1, "size2": size2})
    assert answer.status_code == 200, answer.text
    return [base64.b64decode(h) for h in answer.json()["proof"]]


@pytest.mark.parametrize("answerers_first", [False, True], ids=["at-once", "answerers-first"])
def test_a_service_killed_outright_loses_nothing_it_receipted(
    tmp_path: Path, database_url: str, answerers_first: bool
) -> None:
    data_dir = tmp_path / "data"
    with serve(data_dir, database_url, "--workers", str(WORKERS)) as served:
        world, docs, heads = corridor(served, DOCUMENTS)
        log_key: PublicKey = world.log_key.public
        chains = [_signed_ahead(docs, head) for head in heads]
        traders = [_Trader(served.url, chain) for chain in chains]
        seen: list[bytes] = []
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_checkpoints, args=(served.url, seen, stop))
        watcher.start()
        for trader in traders:
            trader.start()
        deadline = time.monotonic() + 120
        while sum(len(t.receipts) for t in traders) < KILL_AFTER:
            assert time.monotonic() < deadline, "the load did not get going"
            assert all(t.is_alive() for t in traders), "a chain ran out before the kill"
            time.sleep(0.005)
        _kill_everything(served, answerers_first)
        for trader in traders:
            trader.join(timeout=60)
            assert not trader.is_alive()
        stop.set()
        watcher.join(timeout=30)
        close(world)
    assert all(t.unanswered is not None for t in traders)  # each was cut off mid-chain
    receipts = [r for t in traders for r in t.receipts]
    assert len(receipts) >= KILL_AFTER
    for receipt in receipts:
        verify_receipt(receipt, log_key)
    checkpoints = [open_checkpoint(note, log_key) for note in seen]

    with serve(data_dir, database_url, "--workers", str(WORKERS)) as again:
        auditor = Client(again.url, world.actors["auditor"].key)
        # every receipt handed out stands, at the same place and time
        for receipt in receipts:
            stored = auditor.get(f"/v1/events/{receipt['event_id']}/receipt")
            assert (stored["log_index"], stored["sequenced_at"]) == (
                receipt["log_index"],
                receipt["sequenced_at"],
            )
        # the log served now extends every tree head handed out before the kill
        now = open_checkpoint(httpx.get(f"{again.url}/log/checkpoint").content, log_key)
        assert now.size >= max(c.size for c in checkpoints)
        assert now.size > max(r["log_index"] for r in receipts)
        for before in {(c.size, c.root) for c in checkpoints}:
            size, root = before
            if size == now.size:
                assert root == now.root
            elif size > 0:
                verify_consistency(
                    size, now.size, _consistency(again.url, size, now.size), root, now.root
                )
        # what got no answer is settled by sending it again (logged now, or found logged
        # already: a duplicate); the chains then go on
        for trader in traders:
            position = trader.unanswered
            assert position is not None and position + 1 < CHAIN
            for raw, key in trader.chain[position : position + 2]:
                with Client(again.url, key) as client:
                    receipt = client.submit(raw)
                verify_receipt(receipt, log_key)
            assert not receipt["duplicate"]  # the one after was never sent before
        # the whole ledger audits, and each document's chain is the one its trader sent
        report = verify_bundle(auditor.export(), log_key)
        assert report.entries == report.checkpoint.size
        for trader, head in zip(traders, heads, strict=True):
            state = report.documents[head.doc]
            assert state.seq == 3 + (trader.unanswered or 0) + 1  # issue, pledge, release first
        auditor.close()
    assert again.process.returncode == 0, "".join(again.output)


def _signed_ahead(docs: Documents, head: Head) -> list[tuple[bytes, SigningKey]]:
    return [docs.transfer(head) for _ in range(CHAIN)]
