"""Admitting one event, and replaying a whole log in memory.

``admit`` is the one code path every append goes through, live or in an
audit: verify the signatures against keys active at this point of the log,
apply the party or title rules, and say what changes in the cargo index.
The ledger supplies its stored state; ``Replay`` keeps everything in
memory, which is what an auditor (and the tests' reference model) uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from encd.events import Event
from encd.parties import Party, Preverified, apply_party, verify_signers
from encd.title import DocumentState, apply, cargo_delta


@dataclass(frozen=True, slots=True)
class Admitted:
    """What an admitted event changes."""

    event: Event
    signers: frozenset[str]
    document: DocumentState | None = None
    party: Party | None = None
    claimed: frozenset[str] = frozenset()
    released: frozenset[str] = frozenset()


def admit(
    event: Event,
    *,
    parties: Mapping[str, Party],
    document: DocumentState | None,
    cargo: Mapping[str, str],
    preverified: Preverified | None = None,
) -> Admitted:
    """Check ``event`` against the state just before it; raise or say what it changes.

    For a party event ``document`` is ignored and the party's own state is
    read from ``parties``.  ``preverified`` (see encd.parties.preverify)
    spares the signature checks already done elsewhere.
    """
    signers = verify_signers(event, parties, preverified)
    if event.is_party_event:
        party = apply_party(parties.get(event.subject), event, signers, parties)
        return Admitted(event, signers, party=party)
    after = apply(document, event, signers, parties, cargo)
    claimed, released = cargo_delta(document, after)
    return Admitted(event, signers, document=after, claimed=claimed, released=released)


@dataclass
class Replay:
    """Every party, document and cargo claim, built by admitting events in log order."""

    parties: dict[str, Party] = field(default_factory=dict)
    documents: dict[str, DocumentState] = field(default_factory=dict)
    cargo: dict[str, str] = field(default_factory=dict)
    size: int = 0

    def append(self, raw: bytes) -> Admitted:
        """Admit the next event of the log; the state changes only if it is admitted."""
        event = Event.parse(raw)
        admitted = admit(
            event,
            parties=self.parties,
            document=self.documents.get(event.subject) if not event.is_party_event else None,
            cargo=self.cargo,
        )
        self.commit(admitted)
        return admitted

    def commit(self, admitted: Admitted) -> None:
        if admitted.party is not None:
            self.parties[admitted.party.id] = admitted.party
        if admitted.document is not None:
            doc = admitted.document
            self.documents[doc.id] = doc
            for key in admitted.released:
                self.cargo.pop(key, None)
            for key in admitted.claimed:
                self.cargo[key] = doc.id
        self.size += 1
