"""Signatures gathered at once through two servers on one ledger are all kept.

The holder and the bank each post the same pledge, signed by itself, at the same
moment, one to each server.  Each signature is acknowledged (201 or 200), so the
pledge must apply: a proposal that kept only one of them would leave each side
waiting for the other until it expired (and on PostgreSQL, two first posts of one
proposal raced to insert it: a 500)."""

from __future__ import annotations

import threading
from typing import Any

from api.client import Client
from api.server import running
from api.settings import Settings
from tests.api.conftest import World
from tests.kit import T0

TRIALS = 12


def post(
    start: threading.Barrier, answers: dict[str, Any], name: str, client: Client, raw: bytes
) -> None:
    start.wait()
    answers[name] = client.propose(raw)


def pledge(world: World, loan_ref: str) -> dict[str, str]:
    return {
        "pledgee": world.id("bank"),
        "loan_ref": loan_ref,
        "amount": "1000.00",
        "currency": "USD",
        "registry_ref": "PBOC-CRCS-2026-000001",
        "maturity": "2026-08-01",
    }


def countersign(
    start: threading.Barrier,
    answers: dict[str, Any],
    name: str,
    client: Client,
    proposal_id: str,
    raw: bytes,
) -> None:
    start.wait()
    answers[name] = client.countersign(proposal_id, raw)


def test_two_servers_keep_every_signature_of_a_proposal(
    world: World, doc_id: str, settings: Settings
) -> None:
    exporter, bank = world.client("exporter"), world.client("bank")
    with running(settings) as other_url, Client(other_url, bank.key) as bank_there:
        for trial in range(TRIALS):
            body = pledge(world, f"LOAN-RACE-{trial}")
            by_holder = exporter.next_event(doc_id, "pledge", body, time_=T0)
            by_bank = exporter.next_event(doc_id, "pledge", body, [bank.key], time_=T0)
            answers: dict[str, Any] = {}
            start = threading.Barrier(2)

            threads = [
                threading.Thread(target=post, args=(start, answers, "holder", exporter, by_holder)),
                threading.Thread(target=post, args=(start, answers, "bank", bank_there, by_bank)),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert set(answers) == {"holder", "bank"}, "each post was acknowledged"
            states = sorted(a["state"] for a in answers.values())
            assert states == ["applied", "open"], (trial, answers)
            title = exporter.title(doc_id)
            assert title["pledge"]["loan_ref"] == f"LOAN-RACE-{trial}", (trial, title)
            proposal = exporter.proposal(answers["holder"]["id"])
            assert proposal["state"] == "applied"
            assert proposal["signed_by"] == sorted([world.id("exporter"), world.id("bank")])
            bank.submit(bank.next_event(doc_id, "release", {}))  # for the next trial


def test_a_proposal_needing_a_pledgee_of_a_document_not_pledged_is_422(
    world: World, doc_id: str
) -> None:
    """Release and enforce need the pledgee's signature: proposing either for a document
    that is not pledged is refused by the rules (it was an assertion: a 500)."""
    from api.client import ProblemError

    bank = world.client("bank")
    for kind in ("release", "enforce"):
        raw = bank.next_event(doc_id, kind, {})
        try:
            bank.propose(raw)
        except ProblemError as refused:
            assert refused.status == 422, refused.problem
            assert refused.problem["type"] == "urn:encd:problem:rule-violation"
            assert f"{doc_id} is not pledged" in refused.problem["detail"]
        else:
            raise AssertionError(f"a {kind} of a document not pledged was proposed")
    assert bank.proposals()["proposals"] == []


def test_a_proposal_whose_text_applied_under_other_signatures_says_applied(
    world: World, doc_id: str
) -> None:
    """A milestone needs the carrier or its agent.  The carrier logs it while its agent
    proposes the same text signed by itself: the agent's post finds the head moved, and
    the event with that text logged; the proposal applied (it was said failed)."""
    carrier, agent = world.client("carrier"), world.client("agent")
    body = {
        "kind": "departed",
        "location": {"locode": "CNCKG", "name": "Luoqi, Jiangjin"},
        "at": "2026-05-01T09:00:00Z",
    }
    by_carrier = carrier.next_event(doc_id, "milestone", body, time_=T0)
    by_agent = carrier.next_event(doc_id, "milestone", body, [agent.key], time_=T0)
    logged = carrier.submit(by_carrier)
    answer = agent.propose(by_agent)
    assert answer["state"] == "applied", answer
    assert answer["receipt"]["event_id"] == logged["event_id"]
    assert agent.proposal(answer["id"])["state"] == "applied"


def test_a_countersignature_posted_to_two_servers_at_once_gets_two_receipts(
    world: World, doc_id: str, settings: Settings
) -> None:
    """The bank's countersignature, the last one, sent to both servers at once (a client
    that retries on another host): one applies the pledge, the other answers as for a
    post made twice, with the event's receipt; neither says the proposal is closed (it
    could: a 409, when the first closed it between the second's two reads)."""
    exporter, bank = world.client("exporter"), world.client("bank")
    with running(settings) as other_url, Client(other_url, bank.key) as bank_there:
        for trial in range(TRIALS):
            body = pledge(world, f"LOAN-TWICE-{trial}")
            proposed = exporter.propose(exporter.next_event(doc_id, "pledge", body, time_=T0))
            signed = exporter.next_event(doc_id, "pledge", body, [bank.key], time_=T0)
            answers: dict[str, Any] = {}
            start = threading.Barrier(2)

            threads = [
                threading.Thread(
                    target=countersign,
                    args=(start, answers, name, client, proposed["id"], signed),
                )
                for name, client in (("here", bank), ("there", bank_there))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert set(answers) == {"here", "there"}, (trial, answers)
            receipts = [answer["receipt"] for answer in answers.values()]
            assert {r["event_id"] for r in receipts} == {exporter.title(doc_id)["head"]}
            assert sorted(r["duplicate"] for r in receipts) == [False, True], (trial, answers)
            bank.submit(bank.next_event(doc_id, "release", {}))  # for the next trial
