"""Engines for SQLite (the default, one file) and PostgreSQL, and schema migrations.

SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is durable when
it returns) and every write transaction starts with ``BEGIN IMMEDIATE``, so
writers are serialised by the database.  On PostgreSQL the sequencer takes a
transaction-level advisory lock (see ledger.ledger), and its writer sessions
set ``synchronous_commit = on`` whatever the server's default.

SQLite makes a writer that finds the lock taken sleep and retry (after 1, 2,
5, 10, ... 100 ms), so a sequencer queued behind another process's batch
could wait far longer than the batch took.  Writers that take turns often
(the sequencers, the nonce writers of several server processes) therefore
queue on an ``flock`` of a file beside the database first (``WriterLock``),
which wakes the next one as soon as the lock is let go.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from encd.errors import InvalidInput

DATABASE_URL_ENV = "ENCD_DATABASE_URL"
MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT = 20.0  # seconds an SQLite statement waits for a lock another connection holds
#: Bytes an SQLite write-ahead log is cut back to once checkpointed.  While a reader holds
#: an old snapshot (a long export, say) the log cannot be checkpointed and grows; without
#: a limit its file stayed that size for good.
WAL_LIMIT = 64 * 1024 * 1024


def default_url(data_dir: Path) -> str:
    """ENCD_DATABASE_URL when set, else an SQLite file in ``data_dir``."""
    return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{data_dir / 'ledger.db'}"


def make_engine(url: str, *, writer: bool = False, durable: bool = True) -> Engine:
    """An engine for ``url``.  A ``writer`` engine's transactions take the write lock first;
    a non-``durable`` one (for data outside the log) does not wait for the disk on SQLite."""
    try:
        parsed = make_url(url)
    except Exception:
        raise InvalidInput(
            "database url",
            "not a database URL: expected sqlite:///<path> or "
            "postgresql://<user>[:<password>]@<host>[:<port>]/<database>",
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.query:
            # pysqlite would ignore them (with a warning), or with uri=true open the file
            # another way (read-only, shared memory); a ledger's file is opened one way.
            names = ", ".join(sorted(parsed.query))
            raise InvalidInput(
                "database url", f"an SQLite URL takes no query arguments, got {names}"
            )
        return _sqlite_engine(url, writer, durable)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=8)
        if writer and durable:
            event.listen(engine, "connect", _synchronous_commit)
        return engine
    raise InvalidInput("database url", f"expected sqlite:/// or postgresql://, got {backend}")


IDLE_IN_TRANSACTION = 10  # seconds a writer session may sit idle inside a transaction


def _synchronous_commit(dbapi_connection: Any, _record: Any) -> None:
    """A receipt means a durable commit, whatever the server's default: a PostgreSQL set to
    ``synchronous_commit = off`` answers a commit before its WAL is written, and a crash
    of the server then loses receipted events (and the log key has signed them)."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = on")
        # A process that stops between statements (frozen, paused, cut off without a FIN)
        # must not hold the log's lock for good: the server ends its session, and the other
        # hosts' sequencers go on; its own commit then fails, so nothing forks.
        cursor.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}s'")
    dbapi_connection.commit()


#: Seconds a host's clock may differ from its PostgreSQL server's before it is named.
CLOCK_SKEW = 5.0


def clock_warning(engine: Engine, now: datetime) -> str | None:
    """What to warn of when this host's clock (``now``) and the PostgreSQL server's differ
    by more than ``CLOCK_SKEW`` seconds: hosts that share a ledger time its entries, check
    signature times and time out request nonces each by its own clock (None on SQLite,
    which has no clock of its own)."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        server = conn.exec_driver_sql("SELECT clock_timestamp()").scalar()
    if not isinstance(server, datetime):  # pragma: no cover - psycopg answers a datetime
        return None
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    skew = (now - server).total_seconds()
    if abs(skew) <= CLOCK_SKEW:
        return None
    way = "ahead of" if skew > 0 else "behind"
    return (
        f"this host's clock is {abs(skew):.0f} s {way} the PostgreSQL server's: hosts that "
        "share a ledger must keep their clocks in step (NTP), or the log's times go back "
        "and forth and a request nonce may be forgotten while another host still takes "
        "its signature"
    )


def durability_warning(engine: Engine) -> str | None:
    """What the store's own settings leave undurable, if anything: a PostgreSQL server with
    ``fsync = off`` can lose committed transactions when its machine stops."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        fsync = conn.exec_driver_sql("SHOW fsync").scalar()
    if str(fsync).lower() != "off":
        return None
    return (
        "the PostgreSQL server runs with fsync = off: if its machine stops, receipted "
        "events can be lost and the log would sign a fork; set fsync = on for a real ledger"
    )


def _write_ahead(cursor: sqlite3.Cursor) -> None:
    """``PRAGMA journal_mode=WAL``, tried again while another connection holds the lock.
    Turning a new file to WAL takes an exclusive lock, and SQLite answers "database is
    locked" at once rather than wait for it (the busy handler is not called): processes
    or threads opening a new ledger at the same moment each met it about one time in
    fifteen (8 at once), and the one that did failed to start."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.1)


def _sqlite_engine(url: str, writer: bool, durable: bool = True) -> Engine:
    if ":memory:" in url or url.rstrip("/") == "sqlite:":
        raise InvalidInput("database url", "an in-memory SQLite database cannot hold a ledger")
    # A lock held elsewhere (another program's transaction on the file) is waited for 20 s,
    # then a 503: within a client's usual 30 s (ENCD_TIMEOUT), so it hears why.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" decide when a transaction starts (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _write_ahead(cursor)
        cursor.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
        cursor.execute(f"PRAGMA journal_size_limit={int(WAL_LIMIT)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A writer takes SQLite's write lock at once, so two writers never
        # deadlock upgrading read locks; readers see a consistent snapshot.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


class WriterLock:
    """Held around a write transaction: an exclusive ``flock`` of ``<database>-<name>.lock``
    on SQLite (see the module's text), nothing else on PostgreSQL (its locks wake the
    next waiter well).  Threads of one process queue on its mutex: an flock does not tell
    them apart."""

    def __init__(self, url: str, name: str) -> None:
        parsed = make_url(url)
        self.path: Path | None = None
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            database = Path(parsed.database)
            self.path = database.with_name(f"{database.name}-{name}.lock")
        self._mutex = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        self._mutex.acquire()
        if self.path is None:
            return self
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._mutex.release()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def close(self) -> None:
        with self._mutex:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class DirectReads:
    """Reads through the driver, on a connection of the calling thread's own, outside the
    engine's pool: for the short reads of a busy path (a proof's tree nodes, a title, the
    caller's party on every signed request), where SQLAlchemy's connection (a pool
    check-out, BEGIN, the query, ROLLBACK and check-in) costs more than the query.

    The connections are in autocommit: no transaction is left open between reads, and
    each statement sees every commit made before it (so several reads are not one
    snapshot).  Statements are written with ``?`` (turned into ``%s`` for psycopg).  A
    connection that fails (the server restarted, say) is dropped and the read tried once
    more on a new one; a second failure is raised as SQLAlchemy raises a driver's error."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._owners: dict[int, threading.Thread] = {}  # id(connection): the thread it is for
        self._sql: dict[str, str] = {}

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of one query."""
        statement = self._sql.get(sql)
        if statement is None:
            statement = self._sql[sql] = sql.replace("?", "%s") if self._postgres else sql
        for attempt in (1, 2):
            connection = getattr(self._local, "connection", None)
            try:
                if connection is None:
                    connection = self._connect()
                cursor = connection.cursor()
                try:
                    cursor.execute(statement, params)
                    return list(cursor.fetchall())
                finally:
                    cursor.close()
            except self._error as exc:  # (the pool raises a driver's error unwrapped too)
                if connection is not None:
                    self._drop(connection)
                if attempt == 2:
                    raise DBAPIError.instance(statement, params, exc, self._error) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every thread's connection (a thread that reads again gets a new one)."""
        with self._lock:
            connections, self._connections = self._connections, []
            self._owners.clear()
        for connection in connections:
            with contextlib.suppress(Exception):
                connection.close()

    def _connect(self) -> Any:
        connection = self._engine.raw_connection()
        connection.detach()
        if self._postgres:
            try:
                connection.rollback()  # the pool's liveness ping may have begun a transaction
                connection.dbapi_connection.autocommit = True  # type: ignore[union-attr]
            except BaseException:
                connection.close()
                raise
        # (SQLite's connections are made with isolation_level None: autocommit already)
        with self._lock:
            # the connections of threads that have ended go (a thread pool replaces its
            # threads over the weeks a service runs: each kept two files and a page cache)
            ended = [c for c in self._connections if not self._owners[id(c)].is_alive()]
            for gone in ended:
                self._connections.remove(gone)
                del self._owners[id(gone)]
            self._connections.append(connection)
            self._owners[id(connection)] = threading.current_thread()
        for gone in ended:
            with contextlib.suppress(Exception):
                gone.close()
        self._local.connection = connection
        return connection

    def _drop(self, connection: Any) -> None:
        self._local.connection = None
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
                del self._owners[id(connection)]
        with contextlib.suppress(Exception):
            connection.close()


#: The PostgreSQL advisory lock (transaction-level) that a batch of appends holds
#: (ledger.ledger), and a migration: one host at a time changes the schema, the others
#: wait and then find it done, and no append runs during the change.
ADVISORY_LOCK = 0x656E6364  # "encd"


def lock_log(connection: Connection) -> None:
    """Take the log's lock for ``connection``'s transaction (PostgreSQL; on SQLite the
    transaction's ``BEGIN IMMEDIATE`` is the lock)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK})


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (creating it on an empty database).  On
    PostgreSQL under the log's lock: hosts started at once on an empty database (or
    upgraded at once) migrate one after another, not into each other."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        lock_log(connection)
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "head")
        except CommandError as exc:
            unknown = re.fullmatch(r"Can't locate revision identified by '(.*)'", str(exc))
            if unknown is None:
                raise
            newest = ScriptDirectory.from_config(config).get_current_head()
            raise InvalidInput(
                "ledger",
                f"its schema is at revision {unknown.group(1)!r}, which this encd does not know "
                f"(its newest is {newest!r}): a newer encd upgraded it.  Run that version, or "
                "restore a backup made before the upgrade",
            ) from None


def has_schema(url: str) -> bool:
    """Whether the database at ``url`` holds encd's schema (Alembic's version table, which
    the first migration makes), looked at without changing anything (an SQLite file is
    opened read-only: ``make_engine``'s WAL setting would write its header)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        uri = Path(parsed.database).resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            found = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()
            return found is not None
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return inspect(connection).has_table("alembic_version")
    finally:
        engine.dispose()
