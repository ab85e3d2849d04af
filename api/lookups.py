"""Reads on the request path that skip the work the store says is unchanged.

- ``party``: the caller's party, checked against the store on every request
  (one indexed read of its stored state text) but parsed again only when that
  text has changed.  A key revoked by any process is refused at once: the
  revocation changes the text.
- ``exists``: whether a document or party has been created.  Neither is ever
  removed, so once the store has said yes the answer stays yes; a no is asked
  again every time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from encd.parties import KeyRecord, Party, load_party
from encd.validation import abridged
from ledger.ledger import Ledger, NotFound

MAX_PARTIES = 10_000  # parsed parties kept (only registered parties ever get in)
MAX_EXISTING = 200_000  # subjects known to exist


@dataclass(frozen=True)
class _Known:
    """A party parsed from its stored state text, with its keys by hash."""

    stored: str
    party: Party
    keys: dict[str, KeyRecord]


class StoredParties(Mapping[str, Party]):
    """The parties as the store holds them now, one look-up at a time (``Lookups.party``):
    what an API worker checks signatures against ahead of a sequencer process."""

    def __init__(self, lookups: Lookups) -> None:
        self.lookups = lookups

    def __getitem__(self, party_id: str) -> Party:
        try:
            return self.lookups.party(party_id)
        except NotFound:
            raise KeyError(party_id) from None

    def __iter__(self) -> Iterator[str]:  # pragma: no cover - only looked up by id
        return iter(self.lookups.ledger.parties())

    def __len__(self) -> int:  # pragma: no cover
        return len(self.lookups.ledger.parties())


class Lookups:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._parties: dict[str, _Known] = {}
        self._existing: set[tuple[str, str]] = set()

    def party(self, party_id: str) -> Party:
        """The party as the store holds it now (NotFound if it was never registered)."""
        return self._party(party_id).party

    def key(self, party_id: str, key_hash: str) -> tuple[Party, KeyRecord | None]:
        """The party as the store holds it now, and its key whose hash is ``key_hash`` (hex),
        if it has one, revoked or not (NotFound if the party was never registered)."""
        known = self._party(party_id)
        return known.party, known.keys.get(key_hash)

    def _party(self, party_id: str) -> _Known:
        stored = self.ledger.party_state_text(party_id)  # one read through the driver
        if stored is None:
            raise NotFound(f"no party {abridged(party_id)}")
        known = self._parties.get(party_id)
        if known is not None and known.stored == stored:
            return known
        party = load_party(json.loads(stored))
        known = _Known(stored, party, {r.key.hash.hex(): r for r in party.keys})
        if len(self._parties) >= MAX_PARTIES:
            self._parties.clear()
        self._parties[party_id] = known
        return known

    def exists(self, chain: str, subject: str) -> bool:
        """Whether a document (``chain`` "doc") or party ("party") has been created."""
        key = (chain, subject)
        if key in self._existing:
            return True
        if not self.ledger.exists(chain, subject):
            return False
        if len(self._existing) >= MAX_EXISTING:
            self._existing.clear()
        self._existing.add(key)
        return True
