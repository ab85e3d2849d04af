"""Service settings: where the data lives and the limits the service enforces."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from encd.errors import InvalidInput
from encd.httpsig import normal_authority
from encd.validation import show
from ledger.db import DATABASE_URL_ENV

# host[:port] as RFC 3986 §3.2.2 writes it, lower case: a registered name or IPv4 address
# (no commas: they separate the list), or an IPv6 literal in brackets.
_AUTHORITY = re.compile(r"(?:[a-z0-9._~%!$&'()*+;=-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


def _now() -> datetime:
    return datetime.now(UTC)


def authority(name: str) -> str:
    """``name`` as the service compares a request's ``@authority``: ``host[:port]``, lower case,
    without a default port (80 or 443, see ``normal_authority``)."""
    normal = name.strip().lower()
    if not _AUTHORITY.fullmatch(normal):
        raise InvalidInput(
            "authority",
            "expected host[:port] (e.g. ledger.example.com or 127.0.0.1:8080), "
            f"got {show(name) if normal else 'an empty name'}",
        )
    return normal_authority(normal)


def parse_authorities(text: str) -> frozenset[str]:
    """The comma-separated ``host[:port]`` names of ``--authority`` / ENCD_AUTHORITY; blank: none."""
    if not text.strip():
        return frozenset()
    return frozenset(authority(name) for name in text.split(","))


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("encd-data")
    database_url: str | None = None  # None: ENCD_DATABASE_URL, else SQLite in data_dir
    origin: str = "encd.local/log"
    max_body: int = 512 * 1024
    signature_window: int = 300  # seconds either side of the server's clock
    proposal_ttl: int = 24 * 3600  # seconds a proposal waits for its signatures
    stream_poll: float = 1.0  # seconds between store polls of an idle event stream
    # Seconds between this process's checks of the store's log size while an event stream
    # is open: how soon a stream hears of events another process (another worker of
    # `encd serve --workers`, say) appended.  0: never (its own appends wake it at once).
    stream_watch: float = 0.025
    # The Unix socket of the sequencer process that appends for this API process (set by
    # `encd serve --workers`); None: this process appends itself.
    sequencer: str | None = None
    # The names (host[:port]) clients address this deployment by: a signed request whose
    # @authority (its Host) is none of them is refused.  Empty: any @authority (local use).
    authorities: frozenset[str] = frozenset()
    # The witnesses (c2sp.org/tlog-witness) the appending process sends new checkpoints
    # to, as lines of a witnesses file (api.witnessing): "witness <cosigner vkey> <URL>".
    witnesses: tuple[str, ...] = ()
    witness_interval: float = 1.0  # seconds between rounds of sending checkpoints
    clock: Callable[[], datetime] = field(default=_now, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "authorities", frozenset(map(authority, self.authorities)))

    def to_json(self) -> dict[str, object]:
        """The settings as JSON values (all but the clock), for ``from_json`` in another process."""
        return {
            "data_dir": str(self.data_dir),
            "database_url": self.database_url,
            "origin": self.origin,
            "max_body": self.max_body,
            "signature_window": self.signature_window,
            "proposal_ttl": self.proposal_ttl,
            "stream_poll": self.stream_poll,
            "stream_watch": self.stream_watch,
            "sequencer": self.sequencer,
            "authorities": sorted(self.authorities),
            "witnesses": list(self.witnesses),
            "witness_interval": self.witness_interval,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Settings:
        return cls(
            **{
                **value,
                "data_dir": Path(value["data_dir"]),
                "authorities": frozenset(value["authorities"]),
                "witnesses": tuple(value.get("witnesses", ())),
            }
        )

    @property
    def url(self) -> str:
        if self.database_url:
            return self.database_url
        return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{self.data_dir / 'ledger.db'}"

    def redacted_url(self) -> str:
        """``url`` as it may be printed: a password in it, or in its query, shown as ***;
        one that cannot be read is not shown at all (it may hold a password anywhere)."""
        from sqlalchemy.engine import make_url

        try:
            url = make_url(self.url)
            if "password" in url.query:
                url = url.update_query_dict({"password": "***"})
            return url.render_as_string(hide_password=True).encode("utf-8").decode()
        except Exception:  # ArgumentError, a port that is not a number, unencodable text
            return "(a database URL that cannot be read)"
