"""The proposal store: signatures gathered one at a time, and kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from encd.events import envelope_text, sign_text
from encd.keys import SigningKey
from ledger import proposals as store
from ledger.ledger import Ledger
from ledger.proposals import APPLIED, FAILED, OPEN, Proposal

LOG_KEY = SigningKey.generate("encd.test/log")
BANK = "91500000676129728J"
HOLDER = "91500116MA60JJ3K6D"
TEXT = envelope_text(
    type="release", seq=3, prev="ab" * 32, time="2026-05-01T08:30:00Z", body={}, doc="DOC-1"
)


@pytest.fixture()
def ledger(database_url: str) -> Iterator[Ledger]:
    with Ledger(database_url, LOG_KEY) as opened:
        yield opened


def new(now: int = 1_000) -> Proposal:
    pid = store.proposal_id(TEXT)
    return Proposal(pid, "DOC-1", "release", TEXT, (), now, now + 60_000, OPEN, None)


def test_signatures_are_added_and_a_party_signs_once(ledger: Ledger) -> None:
    holder, bank, bank_again = (
        SigningKey.generate(HOLDER),
        SigningKey.generate(BANK),
        SigningKey.generate(BANK),  # a second key of the bank (another officer)
    )
    made, created = store.gather(ledger, new(), sign_text(TEXT, [holder]), 1_000)
    assert created and [s.name for s in made.signatures] == [HOLDER]
    kept, created = store.gather(ledger, new(), sign_text(TEXT, [bank]), 1_001)
    assert not created and {s.name for s in kept.signatures} == {HOLDER, BANK}
    again, _ = store.gather(ledger, new(), sign_text(TEXT, [bank_again]), 1_002)
    assert {s.key_id for s in again.signatures} == {holder.public.key_id, bank.public.key_id}
    assert store.get(ledger, new().id).signatures == again.signatures


def test_a_closed_proposal_keeps_its_state(ledger: Ledger) -> None:
    store.gather(ledger, new(), sign_text(TEXT, [SigningKey.generate(HOLDER)]), 1_000)
    store.finish(ledger, new().id, APPLIED, "cd" * 32)
    store.finish(ledger, new().id, FAILED)  # a request that lost a race says so later
    closed = store.get(ledger, new().id)
    assert (closed.state, closed.event_id) == (APPLIED, "cd" * 32)
    late, _ = store.gather(ledger, new(), sign_text(TEXT, [SigningKey.generate(BANK)]), 1_001)
    assert late.state == APPLIED and [s.name for s in late.signatures] == [HOLDER]
