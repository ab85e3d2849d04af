"""A witness's state: per log origin, the size and root it last cosigned, in one SQLite file.

The witness (``encd.witness.Witness``) is a small service a bank runs beside
its own systems, not a ledger: it keeps one row per log it witnesses, so a
plain SQLite file (WAL, synchronous FULL: a cosignature is never handed out
before its record is on disk) is all it needs.  ``replace`` is the atomic
compare-and-set c2sp.org/tlog-witness asks for: the check of the old size
and the write of the new one are one ``BEGIN IMMEDIATE`` transaction, so two
requests for one log can never roll it back, whichever process serves them.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from types import TracebackType

_SCHEMA = """
CREATE TABLE IF NOT EXISTS witnessed (
    origin TEXT PRIMARY KEY,
    size TEXT NOT NULL,  -- decimal: a tree may hold up to 2**64 - 1 leaves, past SQLite's integers
    root BLOB NOT NULL,
    updated_at INTEGER NOT NULL DEFAULT (strftime('%s', 'now'))
)
"""


class WitnessDB:
    """``encd.witness.WitnessState`` in the SQLite file ``path`` (created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.execute(_SCHEMA)

    def latest(self, origin: str) -> tuple[int, bytes] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT size, root FROM witnessed WHERE origin = ?", (origin,)
            ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def replace(self, origin: str, old: tuple[int, bytes] | None, new: tuple[int, bytes]) -> bool:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT size, root FROM witnessed WHERE origin = ?", (origin,)
                ).fetchone()
                if (None if row is None else (int(row[0]), bytes(row[1]))) != old:
                    conn.execute("ROLLBACK")
                    return False
                conn.execute(
                    "INSERT INTO witnessed (origin, size, root) VALUES (?, ?, ?) "
                    "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, "
                    "root = excluded.root, updated_at = strftime('%s', 'now')",
                    (origin, str(new[0]), new[1]),
                )
                conn.execute("COMMIT")
                return True
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> WitnessDB:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["WitnessDB"]
