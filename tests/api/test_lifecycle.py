"""The whole corridor lifecycle over real HTTP, each title answer checked against its proof."""

from __future__ import annotations

import copy
import time

import pytest
from sqlalchemy import select

from api.client import ProblemError, verify_title, verify_title_replay
from api.settings import Settings
from encd.errors import VerificationError
from encd.events import Event, event_id, make_event, sign_text
from encd.keys import SigningKey
from ledger.db import make_engine
from ledger.schema import PROPOSAL
from tests.api.conftest import World
from tests.kit import T0, corridor_document

DOC = corridor_document()["id"]


def pledge_body(world: World, bank: str) -> dict[str, str]:
    return {
        "pledgee": world.id(bank),
        "loan_ref": "CQRCB-2026-0001",
        "amount": "100000.00",
        "currency": "USD",
        "registry_ref": "PBOC-CRCS-2026-000001",
        "maturity": "2026-08-01",
    }


def issue(world: World) -> dict[str, object]:
    carrier = world.client("carrier")
    raw = make_event(
        [carrier.key],
        type="issue",
        doc=DOC,
        seq=0,
        prev=None,
        time=T0,
        body={"content": corridor_document(), "holder": world.id("exporter")},
    )
    return carrier.submit(raw)


def title(world: World, label: str = "auditor") -> dict[str, object]:
    answer = world.client(label).title(DOC)
    verify_title(answer, world.log_key.public)
    return answer


def test_corridor_lifecycle_over_http(world: World) -> None:
    receipt = issue(world)
    assert receipt["log_index"] == 8 and not receipt["duplicate"]
    assert title(world)["holder"] == world.id("exporter")

    agent = world.client("agent")
    agent.submit(
        agent.next_event(
            DOC,
            "milestone",
            {
                "kind": "departed",
                "location": {"locode": "CNCKG", "name": "Luoqi, Jiangjin"},
                "at": "2026-05-01T09:00:00Z",
            },
        )
    )
    assert title(world)["location"]["kind"] == "departed"

    # the exporter proposes a pledge; the bank finds it and countersigns; it applies
    exporter, bank = world.client("exporter"), world.client("bank")
    proposal = exporter.propose(exporter.next_event(DOC, "pledge", pledge_body(world, "bank")))
    assert proposal["state"] == "open" and proposal["missing"] == [
        f"the pledgee {world.id('bank')}"
    ]
    waiting = bank.proposals()["proposals"]
    assert [p["id"] for p in waiting] == [proposal["id"]]
    text = waiting[0]["text"].encode()
    note = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [bank.key]))
    applied = bank.countersign(proposal["id"], note)
    assert applied["state"] == "applied" and applied["receipt"]["event_id"] == applied["event_id"]
    answer = title(world, "bank2")  # any registered party may ask
    assert answer["pledge"]["pledgee"] == world.id("bank") and answer["controller"] == world.id(
        "bank"
    )
    assert answer["holder"] == world.id("exporter")

    # a second bank cannot take the same document in pledge
    bank2 = world.client("bank2")
    with pytest.raises(ProblemError) as refused:
        exporter.propose(exporter.next_event(DOC, "pledge", pledge_body(world, "bank2")))
    assert refused.value.status == 422 and refused.value.problem["rule"] == "pledge"
    assert "is pledged to" in refused.value.problem["detail"]

    # nor can a second document cover the same containers
    second = copy.deepcopy(corridor_document())
    second["id"] = "CQ-DOUBLE-0001"
    raw = make_event(
        [world.client("carrier").key],
        type="issue",
        doc=second["id"],
        seq=0,
        prev=None,
        time=T0,
        body={"content": second, "holder": world.id("exporter")},
    )
    with pytest.raises(ProblemError) as double:
        world.client("carrier").submit(raw)
    assert double.value.status == 422 and double.value.problem["rule"] == "singularity"

    bank.submit(bank.next_event(DOC, "release", {"reason": "loan repaid"}))
    assert title(world)["pledge"] is None
    exporter.submit(exporter.next_event(DOC, "transfer", {"to": world.id("buyer")}))
    assert title(world)["holder"] == world.id("buyer")
    buyer = world.client("buyer")
    buyer.submit(buyer.next_event(DOC, "surrender", {}))
    carrier = world.client("carrier")
    carrier.submit(carrier.next_event(DOC, "deliver", {}))
    final = title(world)
    assert final["status"] == "delivered" and final["holder"] == world.id("buyer")

    history = buyer.history(DOC)["events"]
    types = [Event.parse(e["event"].encode()).type for e in history]
    assert types == ["issue", "milestone", "pledge", "release", "transfer", "surrender", "deliver"]
    with pytest.raises(ProblemError) as stranger:
        bank2.history(DOC)
    assert stranger.value.status == 403


def test_a_title_answer_is_checked_against_the_documents_events(world: World) -> None:
    """The head's proof alone binds no other field of a title answer to the log: replayed
    from the document's bundle, a changed holder, a stale answer or a head borrowed from
    another answer is caught, and a malformed answer is refused, not a crash."""
    issue(world)
    key = world.log_key.public
    exporter = world.client("exporter")
    before = exporter.title(DOC)
    exporter.submit(exporter.next_event(DOC, "transfer", {"to": world.id("buyer")}))
    now = exporter.title(DOC)
    bundle = exporter.bundle(DOC)
    verify_title(now, key, DOC)
    assert verify_title_replay(now, bundle, key) >= 2  # the issue and the transfer, at least
    assert now["holder"] == world.id("buyer")

    lies = {
        "holder": (now | {"holder": world.id("exporter")}, "holder: the service says"),
        "status": (now | {"status": "delivered"}, "status: the service says"),
        "stale": (before, "bundle ends at event"),
        "borrowed head": (
            now | {k: before[k] for k in ("head", "head_index", "head_sequenced_at", "tlog_proof")},
            "bundle ends at event",
        ),
        # equal to Python, not as JSON: the replay compares JSON values, type included
        "seq true": (now | {"seq": True}, "seq: the service says true"),
        "seq float": (now | {"seq": 1.0}, "seq: the service says the number 1.0"),
        "no pledge": ({k: v for k, v in now.items() if k != "pledge"}, "pledge: the title"),
    }
    assert now["seq"] == 1 and now["pledge"] is None
    for answer, message in lies.values():
        verify_title(answer, key, DOC)  # the head is proved in each: the proof is not enough
        with pytest.raises(VerificationError, match=message):
            verify_title_replay(answer, bundle, key)

    malformed = {
        "another document": (now | {"document": "CQ-ELSEWHERE"}, "asked for the title of"),
        "head not hex": (now | {"head": "zz"}, "head: expected an event id"),
        "head null": (now | {"head": None}, "head: expected an event id"),
        "negative time": (now | {"head_sequenced_at": -1}, "head_sequenced_at: expected"),
        "huge time": (now | {"head_sequenced_at": 2**70}, "head_sequenced_at: expected"),
        "time as text": (now | {"head_sequenced_at": "1"}, "head_sequenced_at: expected"),
        "index true": (now | {"head_index": True}, "head_index: expected"),
        "proof not text": (now | {"tlog_proof": 5}, "tlog_proof: expected a string"),
        "not an object": ([now], "a title answer is a JSON object"),
    }
    for answer, message in malformed.values():
        with pytest.raises(VerificationError, match=message):
            verify_title(answer, key, DOC)


def test_a_proposal_the_document_has_moved_past_is_closed(world: World, settings: Settings) -> None:
    """A pledge proposed and then overtaken by a transfer can never apply (its prev is no
    longer the head): it leaves everyone's list, and is recorded as failed once a list
    has found it so (each list looked again, reading the document's whole history); a
    signature posted to it is a 409 with the head now, not a rule about who need not
    sign."""
    issue(world)
    exporter, bank = world.client("exporter"), world.client("bank")
    proposal = exporter.propose(exporter.next_event(DOC, "pledge", pledge_body(world, "bank")))
    assert [p["id"] for p in bank.proposals()["proposals"]] == [proposal["id"]]
    exporter.submit(exporter.next_event(DOC, "transfer", {"to": world.id("buyer")}))

    assert stored_state(settings, proposal["id"]) == "open"  # nobody has looked since
    for label in ("bank", "buyer", "exporter"):
        assert world.client(label).proposals()["proposals"] == [], label
    assert stored_state(settings, proposal["id"]) == "failed"
    failed = exporter.proposal(proposal["id"])
    assert failed["state"] == "failed"
    # who it needed when it was proposed (the exporter held it then; the buyer does now),
    # and the place it was still waiting for when it failed
    assert failed["required"] == proposal["required"], failed
    assert failed["missing"] == [f"the pledgee {world.id('bank')}"], failed
    text = proposal["text"].encode()
    note = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [bank.key]))
    with pytest.raises(ProblemError) as refused:
        bank.countersign(proposal["id"], note)
    problem = refused.value.problem
    assert refused.value.status == 409 and problem["current_seq"] == 1, problem
    assert "can no longer apply, the document has moved on" in problem["detail"], problem
    assert exporter.proposal(proposal["id"])["state"] == "failed"  # and it stays closed


def stored_state(settings: Settings, proposal_id: str) -> str:
    engine = make_engine(settings.url)
    try:
        with engine.connect() as conn:
            return str(conn.scalar(select(PROPOSAL.c.state).where(PROPOSAL.c.id == proposal_id)))
    finally:
        engine.dispose()


def test_a_stranger_to_a_proposal_is_told_who_signs_it(world: World) -> None:
    issue(world)
    exporter, bank2 = world.client("exporter"), world.client("bank2")
    pledge = exporter.next_event(DOC, "pledge", pledge_body(world, "bank"))
    text = pledge.split(b"\n\n")[0] + b"\n"
    note = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [bank2.key]))
    with pytest.raises(ProblemError) as refused:
        bank2.propose(note)
    detail = refused.value.problem["detail"]
    assert refused.value.status == 422, refused.value.problem
    assert detail == (
        f"{world.id('bank2')} need not sign this pledge: it is signed by the holder "
        f"{world.id('exporter')} and the pledgee {world.id('bank')}"
    ), detail


def test_a_signature_posted_again_after_it_applied_gets_the_first_receipt(world: World) -> None:
    """An answer lost on its way: the bank posts its countersignature again once the pledge
    applied, and the proposer its own proposal again.  Both get the proposal as applied and
    the receipt its event got (duplicate); a post with any other signature is still a 409,
    and the log does not grow."""
    issue(world)
    exporter, bank = world.client("exporter"), world.client("bank")
    proposal = exporter.propose(exporter.next_event(DOC, "pledge", pledge_body(world, "bank")))
    text = proposal["text"].encode()
    note = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [bank.key]))
    first = bank.countersign(proposal["id"], note)
    assert first["state"] == "applied"
    # the event as logged, both signatures on it: what the receipt's event id names
    logged = first["event"].encode()
    assert event_id(logged) == first["receipt"]["event_id"] == first["event_id"]
    assert Event.parse(logged).text == text
    assert {s.name for s in Event.parse(logged).signatures} == {
        world.id("exporter"),
        world.id("bank"),
    }
    size = exporter.service()["log_size"]

    again = bank.countersign(proposal["id"], note)
    assert again["state"] == "applied" and again["event_id"] == first["event_id"]
    assert again["event"] == first["event"]
    assert again["receipt"] == {**first["receipt"], "duplicate": True}
    own = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [exporter.key]))
    assert exporter.propose(own)["receipt"]["event_id"] == first["event_id"]

    other_key = SigningKey(exporter.key.name, bytes(range(32)))  # not the signature it holds
    other = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [other_key]))
    with pytest.raises(ProblemError) as refused:
        exporter.propose(other)
    problem = refused.value.problem
    assert refused.value.status == 409 and problem["type"] == "urn:encd:problem:proposal-closed"
    assert problem["state"] == "applied" and first["event_id"] in problem["detail"], problem
    assert exporter.service()["log_size"] == size


@pytest.mark.settings(proposal_ttl=1)
def test_a_signature_for_an_expired_proposal_says_it_expired(world: World) -> None:
    issue(world)
    exporter, bank = world.client("exporter"), world.client("bank")
    proposal = exporter.propose(exporter.next_event(DOC, "pledge", pledge_body(world, "bank")))
    size = exporter.service()["log_size"]
    time.sleep(1.2)
    text = proposal["text"].encode()
    note = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [bank.key]))
    with pytest.raises(ProblemError) as refused:
        bank.countersign(proposal["id"], note)
    problem = refused.value.problem
    assert refused.value.status == 409 and problem["type"] == "urn:encd:problem:proposal-closed"
    assert problem["state"] == "expired", problem
    assert problem["title"] == "The proposal takes no more signatures"
    assert "expired at 20" in problem["detail"] and "current_seq" not in problem, problem
    assert exporter.service()["log_size"] == size
    assert exporter.title(DOC)["pledge"] is None
    expired = exporter.proposal(proposal["id"])  # and what it was waiting for
    assert expired["state"] == "expired" and expired["required"] == proposal["required"]
    assert expired["missing"] == [f"the pledgee {world.id('bank')}"], expired
