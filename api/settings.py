"""Service settings: where the data lives and the limits the service enforces."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ledger.db import DATABASE_URL_ENV


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("encd-data")
    database_url: str | None = None  # None: ENCD_DATABASE_URL, else SQLite in data_dir
    origin: str = "encd.local/log"
    max_body: int = 512 * 1024
    signature_window: int = 300  # seconds either side of the server's clock
    proposal_ttl: int = 24 * 3600  # seconds a proposal waits for its signatures
    stream_poll: float = 1.0  # seconds between store polls of an idle event stream
    clock: Callable[[], datetime] = field(default=_now, compare=False)

    @property
    def url(self) -> str:
        if self.database_url:
            return self.database_url
        return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{self.data_dir / 'ledger.db'}"
