"""Start-up reads O(log n) rows, never every leaf: at 1,000,000 events it stays a few seconds."""

from __future__ import annotations

import shutil
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from api.setup import ensure_genesis, load_or_init
from ledger.ledger import Ledger
from tests.kit import corridor_cast, seeded_key

LOG_KEY = seeded_key("encd.test/log", "log")
WAIT = 60.0  # seconds a host may take to open its ledger, and then its genesis


@contextmanager
def counting() -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def rows_read_at_startup(url: str) -> int:
    with counting() as statements, Ledger(url, LOG_KEY):
        pass
    for statement in statements:
        flat = " ".join(statement.split())
        if "FROM tree_node" in flat:  # one node at a time, by its position
            assert "tree_node.level =" in flat and "tree_node.idx =" in flat, flat
        if "FROM event" in flat:  # the log's size, never its rows
            assert "max(event.log_index)" in flat, flat
    return len(statements)


def test_startup_does_not_grow_with_the_log(database_url: str) -> None:
    cast = corridor_cast()
    with Ledger(database_url, LOG_KEY) as ledger:
        for raw in cast.log:
            ledger.append(raw)
        small = ledger.size()
    at_small = rows_read_at_startup(database_url)
    carrier = cast.actor("carrier")
    added = []
    for i in range(1024 - small):  # grow the log to 1024 entries: ten levels of tree
        key = seeded_key(carrier.id, f"k{i // 2}").public  # added, then revoked
        body = {"key": key.vkey} if i % 2 == 0 else {"key_id": key.key_id}
        kind = "add_key" if i % 2 == 0 else "revoke_key"
        added.append(cast.party_event(carrier, kind, body, [carrier.key]))
        cast.append(added[-1])
    with Ledger(database_url, LOG_KEY) as ledger:
        ledger.append_many(added)
        assert ledger.size() == 1024
    at_large = rows_read_at_startup(database_url)
    # a 1024-leaf tree has a one-node border, a 9-leaf one two nodes: start-up cost
    # depends on the bits of the size, not on the number of leaves
    assert at_large <= at_small + 2, (at_small, at_large)


def test_hosts_beginning_one_ledger_at_once_agree_on_its_genesis(
    tmp_path: Path, database_url: str
) -> None:
    """Copies of one new data directory (service.json without a genesis yet) started at
    the same moment on one empty ledger: the first genesis appended begins the log, and
    every host records that one and starts.  (The others failed to start: their own
    genesis, a second registration of the operator, was refused.)"""
    original = load_or_init(tmp_path / "data")
    assert original.genesis is None
    hosts = 3
    copies = [shutil.copytree(tmp_path / "data", tmp_path / f"host{n}") for n in range(hosts)]
    start = threading.Barrier(hosts)
    failures: list[BaseException] = []
    now = datetime.now(UTC)

    def host(n: int) -> None:
        try:
            service = load_or_init(copies[n])
            with Ledger(database_url, service.log_key) as ledger:
                start.wait(timeout=WAIT)
                # each a moment apart: each host's genesis event is its own
                ensure_genesis(ledger, service, now - timedelta(seconds=n))
        except BaseException as exc:  # (a host that fails breaks the barrier for the rest)
            failures.append(exc)
            start.abort()

    threads = [threading.Thread(target=host, args=(n,)) for n in range(hosts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * WAIT)
    assert not any(thread.is_alive() for thread in threads), "a host did not finish"
    assert not failures, "\n".join(
        "".join(traceback.format_exception(failure)) for failure in failures
    )
    with Ledger(database_url, original.log_key) as ledger:
        assert ledger.size() == 1
        first = ledger.entries(0, 1)[0][1]
    recorded = {load_or_init(copy).genesis for copy in copies}
    assert recorded == {first}, recorded
