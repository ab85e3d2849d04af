"""ledger.db.make_engine: a database URL that cannot hold a ledger is refused, named."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

import ledger.db
from encd.errors import InvalidInput
from encd.keys import SigningKey
from ledger.db import durability_warning, make_engine
from ledger.ledger import Ledger


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "expected sqlite:/// or postgresql://, got mysql"),
        ("sqlite://", "an in-memory SQLite database cannot hold a ledger"),
        ("sqlite:///:memory:", "an in-memory SQLite database cannot hold a ledger"),
        ("not a url", "not a database URL"),
        # pysqlite would ignore these with a warning, or (uri=true) open the file otherwise
        (
            "sqlite:///{dir}/l.db?password=abc",
            "an SQLite URL takes no query arguments, got password",
        ),
        (
            "sqlite:///{dir}/l.db?uri=true&mode=ro",
            "an SQLite URL takes no query arguments, got mode, uri",
        ),
    ],
)
def test_a_url_that_cannot_hold_a_ledger_is_refused(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        make_engine(url.format(dir=tmp_path))
    assert info.value.field == "database url"
    assert message in info.value.message
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_a_plain_sqlite_file_url_is_taken(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/l.db")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_connections_opening_a_new_sqlite_file_at_once_all_open(tmp_path: Path) -> None:
    """Turning a new file to WAL is refused at once ("database is locked") while another
    connection does it; each connection tries again.  Before, 8 connections at once on a
    new file failed about one round in fifteen, and a ledger opened then did not start."""

    def connect(engine: Engine, start: threading.Barrier, failures: list[BaseException]) -> None:
        try:
            start.wait(timeout=30)
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        except BaseException as exc:
            failures.append(exc)

    for round_ in range(60):
        url = f"sqlite:///{tmp_path / f'ledger{round_}.db'}"
        engines = [make_engine(url) for _ in range(8)]
        start = threading.Barrier(len(engines))
        failures: list[BaseException] = []
        threads = [threading.Thread(target=connect, args=(e, start, failures)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for engine in engines:
            engine.dispose()
        assert not failures, f"round {round_}: {failures}"


def test_an_sqlite_write_ahead_log_is_cut_back_once_a_long_reader_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader holding an old snapshot (a long export) keeps the WAL from being
    checkpointed, so it grows; once the reader is done and the WAL checkpointed, its file
    is cut back to ledger.db.WAL_LIMIT (it kept its largest size for good)."""
    monkeypatch.setattr(ledger.db, "WAL_LIMIT", 1024 * 1024)
    path = tmp_path / "l.db"
    engine = make_engine(f"sqlite:///{path}", writer=True)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x BLOB)")
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchall()  # holds its snapshot
        for _ in range(150):
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (?)", (os.urandom(40_000),))
        grown = (tmp_path / "l.db-wal").stat().st_size
        assert grown > 5 * 1024 * 1024
        reader.execute("COMMIT")
        reader.close()
        for _ in range(3):  # the first commit checkpoints, the next starts the WAL anew
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (?)", (b"small",))
        assert (tmp_path / "l.db-wal").stat().st_size <= 1024 * 1024 < grown
    finally:
        engine.dispose()


def test_the_ledger_s_commits_are_durable_whatever_the_server_s_default(
    database_url: str,
) -> None:
    """A receipt is handed out after a commit that survives a crash of the database: on
    PostgreSQL the writer's sessions set synchronous_commit on (the test server's default
    is off), SQLite runs synchronous=FULL; a server without fsync is named at start."""
    ledger_key = SigningKey("encd.test/log", bytes(32))
    with Ledger(database_url, ledger_key) as ledger, ledger.writer.connect() as conn:
        if conn.dialect.name == "postgresql":
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
            # a frozen host does not hold the log's advisory lock for good
            idle = conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar()
            assert idle == "10s"
            fsync = conn.exec_driver_sql("SHOW fsync").scalar()
            warning = durability_warning(ledger.writer)
            assert (warning is not None) == (fsync == "off")
        else:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert durability_warning(ledger.writer) is None


@pytest.mark.parametrize("ahead", [0, 60, -60])
def test_a_host_whose_clock_is_off_the_database_s_is_named_at_start(
    database_url: str, ahead: int
) -> None:
    """Hosts sharing a PostgreSQL ledger each time its entries and nonces by their own
    clock: a host more than a few seconds off the server's is named in a WARNING as its
    ledger opens.  SQLite has no clock to compare with (one host)."""
    ledger_key = SigningKey("encd.test/log", bytes(32))

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=ahead)

    logged: list[logging.LogRecord] = []
    log = logging.getLogger("uvicorn.error")  # (uvicorn's loggers do not reach the root's)
    keep = logging.Handler()
    keep.emit = logged.append  # type: ignore[method-assign]
    log.addHandler(keep)
    try:
        with Ledger(database_url, ledger_key, clock=clock):
            pass
    finally:
        log.removeHandler(keep)
    named = [r.getMessage() for r in logged if "this host's clock is" in r.getMessage()]
    if ahead == 0 or not database_url.startswith("postgresql"):
        assert named == []
    else:
        way = "ahead of" if ahead > 0 else "behind"
        assert len(named) == 1 and f" {way} the PostgreSQL server's" in named[0], named
        assert "NTP" in named[0]
