"""Request nonces seen within the signature window, kept in the store.

Every API process shares the store, so a request replayed to another
process, or to the same one after a restart, is refused too (design.md §7:
several stateless API processes behind a load balancer).  Nonces are not
part of the log: they are written without waiting for the disk (SQLite
``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``), and rows past
their expiry are swept away as new ones arrive.

On SQLite they live in a file of their own beside the ledger's
(``<ledger>.nonces``): SQLite has one writer per file, and a request's
nonce must not wait for the sequencer's batch, nor hold it up.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from ledger.db import make_engine
from ledger.schema import NONCE, SQLModel


class NonceStore:
    def __init__(self, url: str, window: int) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            parsed = parsed.set(database=parsed.database + ".nonces")
            self.engine = make_engine(
                parsed.render_as_string(hide_password=False), writer=True, durable=False
            )
            SQLModel.metadata.create_all(self.engine, tables=[NONCE])
        else:
            self.engine = make_engine(url, writer=True, durable=False)
        self.window = window
        self._next_sweep = 0.0

    def use(self, key_id: str, nonce: str, now: float) -> bool:
        """Record ``nonce`` for ``key_id``; False if it was already used within the window."""
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SET LOCAL synchronous_commit = off"))
                if now >= self._next_sweep:
                    conn.execute(delete(NONCE).where(NONCE.c.expires_at < int(now * 1000)))
                    self._next_sweep = now + self.window
                expires = int((now + 2 * self.window) * 1000)
                conn.execute(insert(NONCE).values(key_id=key_id, nonce=nonce, expires_at=expires))
        except IntegrityError:
            return False
        return True

    def close(self) -> None:
        self.engine.dispose()
