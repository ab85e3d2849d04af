"""The request-nonce store: a nonce counts once per key, across stores, groups and restarts."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import sqlalchemy.exc

from ledger.db import make_engine, migrate
from ledger.ledger import StoreError
from ledger.nonces import NonceStore

WINDOW = 300
NOW = 1_767_225_600.0


@pytest.fixture()
def store_url(database_url: str) -> str:
    """The test's database with the store's schema (on PostgreSQL the nonce table is the
    ledger's migration 0003; on SQLite the store makes its own file)."""
    engine = make_engine(database_url, writer=True)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    return database_url


def test_a_nonce_is_used_once_per_key(store_url: str) -> None:
    store = NonceStore(store_url, WINDOW)
    try:
        assert store.use("alice+00", "nonce-0001", NOW)
        assert not store.use("alice+00", "nonce-0001", NOW + 1)
        assert store.use("bob+00", "nonce-0001", NOW)  # another key's nonce is its own
        assert store.use("alice+00", "nonce-0002", NOW)
    finally:
        store.close()


def test_two_stores_refuse_each_others_replays(store_url: str) -> None:
    """Two API processes on one store (here two stores in one process, on one database)."""
    first, second = NonceStore(store_url, WINDOW), NonceStore(store_url, WINDOW)
    try:
        assert first.use("alice+00", "nonce-0001", NOW)
        assert not second.use("alice+00", "nonce-0001", NOW)
        assert second.use("alice+00", "nonce-0002", NOW)
        assert not first.use("alice+00", "nonce-0002", NOW)
        # both writing at once: each nonce is granted to exactly one of them
        nonces = [f"race-{i:04d}" for i in range(200)]
        outcomes: dict[int, list[bool]] = {}

        def claim(n: int, store: NonceStore) -> None:
            futures = [store.submit("alice+00", nonce, NOW) for nonce in nonces]
            outcomes[n] = [f.result() for f in futures]

        threads = [
            threading.Thread(target=claim, args=(n, s)) for n, s in enumerate((first, second))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(a != b for a, b in zip(outcomes[0], outcomes[1], strict=True))
    finally:
        first.close()
        second.close()


def test_a_replay_after_a_restart_is_refused(store_url: str) -> None:
    store = NonceStore(store_url, WINDOW)
    assert store.use("alice+00", "nonce-0001", NOW)
    store.close()
    store = NonceStore(store_url, WINDOW)
    try:
        assert not store.use("alice+00", "nonce-0001", NOW)
    finally:
        store.close()


class Held:
    """Holds a store's writer before each group until released: the claims made meanwhile
    all go into its next group.  Records the groups' sizes."""

    def __init__(self, store: NonceStore) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sizes: list[int] = []
        store.before_write = self.hold

    def hold(self, group: list[Any]) -> None:
        self.sizes.append(len(group))
        self.entered.set()
        assert self.release.wait(10)


def test_a_replay_within_one_group_is_refused(store_url: str) -> None:
    store = NonceStore(store_url, WINDOW)
    assert store.use("alice+00", "stored-0001", NOW)
    held = Held(store)
    try:
        first = store.submit("alice+00", "first-0001", NOW)
        assert held.entered.wait(10)  # the writer holds the group of that one claim
        claims = ["a-000001", "b-000001", "a-000001", "stored-0001", "b-000001", "c-000001"]
        futures = [store.submit("alice+00", nonce, NOW) for nonce in claims]
        held.release.set()
        assert first.result(10)
        assert [f.result(10) for f in futures] == [True, True, False, False, False, True]
        assert held.sizes == [1, len(claims)]  # the six in one group, one transaction
    finally:
        held.release.set()
        store.close()


def test_claims_from_a_coroutine(store_url: str) -> None:
    store = NonceStore(store_url, WINDOW)
    held = Held(store)
    held.release.set()

    async def main() -> list[bool]:
        # made in one pass of the loop's callbacks: handed to the writer together
        claims = [store.claim("alice+00", f"nonce-{i % 5:04d}", NOW) for i in range(10)]
        return list(await asyncio.gather(*claims))

    try:
        assert asyncio.run(main()) == [True] * 5 + [False] * 5
        assert held.sizes == [10]
    finally:
        store.close()


def test_a_claim_the_store_refuses_does_not_fail_its_group(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = NonceStore(store_url, WINDOW)
    held = Held(store)
    write = store._write

    def refusing(group: list[Any]) -> set[int]:
        if any(claim.nonce == "poison-0001" for claim in group):
            raise RuntimeError("the store refused the row")
        return write(group)

    monkeypatch.setattr(store, "_write", refusing)
    try:
        first = store.submit("alice+00", "first-0001", NOW)
        assert held.entered.wait(10)
        nonces = ("ok-000001", "poison-0001", "ok-000002", "ok-000001")
        futures = [store.submit("alice+00", n, NOW) for n in nonces]
        held.release.set()
        assert first.result(10)
        assert futures[0].result(10) and futures[2].result(10)
        assert not futures[3].result(10)  # written on its own, after its twin: a replay
        with pytest.raises(RuntimeError, match="refused the row"):
            futures[1].result(10)
        assert held.sizes == [1, len(nonces)]
    finally:
        held.release.set()
        store.close()


def test_expired_nonces_are_swept(store_url: str) -> None:
    store = NonceStore(store_url, WINDOW)
    try:
        assert store.use("alice+00", "nonce-0001", NOW)
        later = NOW + 4 * WINDOW  # past the row's expiry (2 windows) and a window's grace
        assert store.use("alice+00", "nonce-0002", later)
        assert store.use("alice+00", "nonce-0001", later)
    finally:
        store.close()


def test_a_host_whose_clock_runs_ahead_does_not_sweep_a_nonce_another_still_takes(
    store_url: str,
) -> None:
    """Two hosts on one store, one's clock 100 s ahead.  A request signed a window ahead
    (the most the window allows) is taken here at NOW: its signature is good here until
    NOW + 2 windows.  Shortly before that, the fast host sweeps; the replay here must
    still be refused (it was taken: the fast host had swept the row at its expiry)."""
    here, fast = NonceStore(store_url, WINDOW), NonceStore(store_url, WINDOW)
    try:
        assert here.use("alice+00", "nonce-0001", NOW)
        replay_at = NOW + 2 * WINDOW - 50
        assert fast.use("alice+00", "nonce-0002", replay_at + 100)  # (and it sweeps)
        assert not here.use("alice+00", "nonce-0001", replay_at)
    finally:
        here.close()
        fast.close()


def test_a_closed_store_takes_no_claims(store_url: str) -> None:
    store = NonceStore(store_url, WINDOW)
    future = store.submit("alice+00", "nonce-0001", NOW)
    store.close()
    assert future.result(10)  # answered before the store closed
    with pytest.raises(StoreError):
        store.submit("alice+00", "nonce-0002", NOW)


def test_a_store_that_cannot_be_reached_is_a_store_error_not_a_driver_s(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's connection failing to open (PostgreSQL shutting down) is raised as
    SQLAlchemy's OperationalError, which the service answers 503; the driver's own
    exception went through as a 500."""
    store = NonceStore(store_url, WINDOW)
    dbapi = store.engine.dialect.loaded_dbapi

    def shutting_down() -> Any:
        raise dbapi.OperationalError("the database system is shutting down")

    monkeypatch.setattr(store, "_connection", None)
    monkeypatch.setattr(store.engine, "raw_connection", shutting_down)
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError, match="shutting down"):
            store.use("alice+00", "nonce-0001", NOW)
        monkeypatch.undo()
        assert store.use("alice+00", "nonce-0001", NOW)  # and once it answers, it works
    finally:
        store.close()


def test_a_kept_connection_the_server_dropped_is_opened_anew(store_url: str) -> None:
    """After a PostgreSQL restart the writer's kept connection is dead: the first write finds
    that before anything of it reached the server, and writes on a new connection instead
    of failing a request (the first signed request after a restart got a 503)."""
    store = NonceStore(store_url, WINDOW)
    try:
        assert store.use("alice+00", "nonce-0001", NOW)
        if not store._postgres:
            pytest.skip("PostgreSQL only: an SQLite file has no server to restart")
        pid = store._connection.dbapi_connection.info.backend_pid
        engine = make_engine(store_url)
        try:  # as a restart of the server leaves it
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        finally:
            engine.dispose()
        assert store.use("alice+00", "nonce-0002", NOW)
        assert not store.use("alice+00", "nonce-0001", NOW)
    finally:
        store.close()
