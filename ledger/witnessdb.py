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

from encd.errors import InvalidInput

_SCHEMA = """
CREATE TABLE IF NOT EXISTS witnessed (
    origin TEXT PRIMARY KEY,
    size TEXT NOT NULL,  -- decimal: a tree may hold up to 2**64 - 1 leaves, past SQLite's integers
    root BLOB NOT NULL,
    updated_at INTEGER NOT NULL DEFAULT (strftime('%s', 'now'))
)
"""


class WitnessDB:
    """``encd.witness.WitnessState`` in the SQLite file ``path``.

    Only ``create`` makes a new file (``encd witness init``).  Otherwise a missing file is
    refused: a witness that silently started over would cosign any history of a log,
    a fork of the one it already cosigned included.  A file that is not a witness's
    state is refused too; both as InvalidInput naming the file.
    """

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        if not create and not path.is_file():
            raise InvalidInput(
                "witness.db",
                f"{path} is missing: a witness must not forget what it cosigned (it would "
                "cosign a fork). If it was moved, put it back; an older copy is as bad as none "
                "(the witness would cosign again from an older size). Otherwise retire this "
                "witness: start a new one with a new key (`encd witness init`) and give its "
                "key to the logs and auditors",
            )
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._conn.execute("PRAGMA busy_timeout=10000")
            if create:
                self._conn.execute(_SCHEMA)
            # (checked before anything is written: a file that is not ours is left as it is)
            self._conn.execute("SELECT origin, size, root, updated_at FROM witnessed LIMIT 0")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise InvalidInput(
                "witness.db", f"{path} is not a witness's state (a SQLite file): {exc}"
            ) from None

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
