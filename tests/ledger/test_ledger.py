"""The ledger on a real database: appends, receipts, conflicts, group commit, atomicity."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from encd.checkpoint import open_checkpoint
from encd.errors import Conflict, InvalidInput, RuleViolation, VerificationError
from encd.events import format_time
from encd.logentry import LogEntry
from encd.merkle import root_naive, verify_consistency, verify_inclusion
from encd.title import dump_state
from encd.tlogproof import TlogProof
from ledger.ledger import Ledger, Receipt
from tests.kit import T0, Actor, Cast, corridor_cast, corridor_document, seeded_key

LOG_KEY = seeded_key("encd.test/log", "log")
DOC = corridor_document()["id"]


@pytest.fixture()
def cast() -> Cast:
    return corridor_cast()


@pytest.fixture()
def ledger(database_url: str) -> Iterator[Ledger]:
    with Ledger(database_url, LOG_KEY) as opened:
        yield opened


def load(ledger: Ledger, cast: Cast) -> list[Receipt]:
    """Append every event the cast has replayed so far (parties first), in log order."""
    return [ledger.append(raw) for raw in cast.log]


def issue_event(cast: Cast) -> bytes:
    return cast.doc_event(
        DOC,
        "issue",
        {"content": corridor_document(), "holder": cast.actor("exporter").id},
        [cast.actor("carrier")],
    )


def check_receipt(receipt: Receipt, raw_id: str) -> None:
    entry = LogEntry(raw_id, receipt.sequenced_at)
    checkpoint = TlogProof.parse(receipt.proof).verify(entry.leaf_hash, LOG_KEY.public)
    assert checkpoint.size > receipt.log_index


def test_corridor_lifecycle_with_receipts(ledger: Ledger, cast: Cast) -> None:
    receipts = load(ledger, cast)
    raw = issue_event(cast)
    cast.append(raw)
    receipts.append(ledger.append(raw))
    transfer = cast.doc_event(
        DOC, "transfer", {"to": cast.actor("buyer").id}, [cast.actor("exporter")]
    )
    cast.append(transfer)
    receipts.append(ledger.append(transfer))
    for receipt, raw in zip(receipts, cast.log, strict=True):
        check_receipt(receipt, receipt.event_id)
        assert receipt.event_id == hashlib.sha256(raw).hexdigest()
    state, head_index = ledger.title(DOC)
    assert state.holder == cast.actor("buyer").id and head_index == len(cast.log) - 1
    assert state == cast.replay.documents[DOC]
    checkpoint = open_checkpoint(ledger.checkpoint(), LOG_KEY.public)
    assert checkpoint.size == len(cast.log) == ledger.size()
    assert ledger.cargo_owner("container:" + corridor_document()["containers"][0]["number"]) == DOC


def test_the_same_event_again_returns_its_first_receipt(ledger: Ledger, cast: Cast) -> None:
    load(ledger, cast)
    raw = issue_event(cast)
    first = ledger.append(raw)
    size = ledger.size()
    again = ledger.append(raw)
    assert again.duplicate and not first.duplicate
    assert (again.log_index, again.proof, again.checkpoint) == (
        first.log_index,
        first.proof,
        first.checkpoint,
    )
    assert ledger.size() == size
    assert ledger.receipt(first.event_id).proof == first.proof


def test_a_stale_event_conflicts_naming_the_head_and_appends_nothing(
    ledger: Ledger, cast: Cast
) -> None:
    load(ledger, cast)
    raw = issue_event(cast)
    cast.append(raw)
    ledger.append(raw)
    a = cast.doc_event(DOC, "transfer", {"to": cast.actor("buyer").id}, [cast.actor("exporter")])
    b = cast.doc_event(DOC, "transfer", {"to": cast.actor("bank2").id}, [cast.actor("exporter")])
    ledger.append(a)
    size = ledger.size()
    with pytest.raises(Conflict) as info:
        ledger.append(b)
    head = ledger.title(DOC)[0].head
    assert info.value.current_head == head and head in str(info.value)
    assert ledger.size() == size


def test_rule_and_signature_failures_append_nothing(ledger: Ledger, cast: Cast) -> None:
    load(ledger, cast)
    raw = issue_event(cast)
    ledger.append(raw)
    size = ledger.size()
    by_buyer = cast.doc_event(
        DOC,
        "transfer",
        {"to": cast.actor("bank2").id},
        [cast.actor("buyer")],
        seq=1,
        prev=hashlib.sha256(raw).hexdigest(),
    )
    with pytest.raises(RuleViolation):
        ledger.append(by_buyer)
    forged = by_buyer.replace(b'"seq":1', b'"seq":1 ', 1)
    with pytest.raises(InvalidInput):
        ledger.append(forged)
    tampered = by_buyer.replace(cast.actor("bank2").id.encode(), cast.actor("bank").id.encode())
    with pytest.raises(VerificationError):
        ledger.append(tampered)
    assert ledger.size() == size


def test_concurrent_conflicting_transfers_exactly_one_wins(ledger: Ledger, cast: Cast) -> None:
    load(ledger, cast)
    raw = issue_event(cast)
    cast.append(raw)
    ledger.append(raw)
    targets = ["buyer", "bank", "bank2"] * 4
    events = [
        cast.doc_event(DOC, "transfer", {"to": cast.actor(t).id}, [cast.actor("exporter")])
        for t in targets
    ]
    results: list[object] = [None] * len(events)
    barrier = threading.Barrier(len(events))

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = ledger.append(events[i])
        except Conflict as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [r for r in results if isinstance(r, Receipt)]
    assert len(wins) == 1
    assert all(isinstance(r, Conflict) for r in results if r not in wins)
    assert ledger.title(DOC)[0].seq == 1


def test_concurrent_appends_share_one_commit_and_checkpoint(ledger: Ledger, cast: Cast) -> None:
    load(ledger, cast)
    raw = issue_event(cast)
    cast.append(raw)
    ledger.append(raw)
    milestones = []
    for i in range(50):
        m = cast.doc_event(
            DOC,
            "milestone",
            {
                "kind": "other",
                "location": {"locode": "CNQZH", "name": "Qinzhou"},
                "at": "2026-05-03T09:00:00Z",
                "note": f"reading {i}",
            },
            [cast.actor("agent")],
        )
        cast.append(m)
        milestones.append(m)
    before = _count(ledger, "checkpoint")
    with ledger._state_lock:  # hold the sequencer so the queue fills up
        futures = [ledger.submit(m) for m in milestones]
    receipts = [f.result() for f in futures]
    assert [r.log_index for r in receipts] == list(
        range(receipts[0].log_index, receipts[0].log_index + 50)
    )
    # the sequencer may have taken the first event alone before it blocked; the rest share a batch
    assert _count(ledger, "checkpoint") - before <= 2
    for r in receipts:
        check_receipt(r, r.event_id)


def _count(ledger: Ledger, table: str) -> int:
    with ledger.reader.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.mark.parametrize("table", ["event", "tree_node", "checkpoint"])
@pytest.mark.parametrize("statement", ["UPDATE {t} SET {c} = {c}", "DELETE FROM {t}"])
def test_the_log_tables_are_append_only_in_the_database(
    ledger: Ledger, cast: Cast, table: str, statement: str
) -> None:
    load(ledger, cast)
    column = {"event": "seq", "tree_node": "level", "checkpoint": "size"}[table]
    before = _count(ledger, table)
    with pytest.raises(sa.exc.DatabaseError) as info, ledger.writer.begin() as conn:
        conn.execute(sa.text(statement.format(t=table, c=column)))
    assert "append-only" in str(info.value)
    assert _count(ledger, table) == before


STEPS = [
    "after_events",
    "after_parties",
    "after_documents",
    "after_cargo",
    "after_tree",
    "after_checkpoint",
    "before_commit",
]


@pytest.mark.parametrize("step", STEPS)
def test_a_failure_between_any_two_steps_leaves_the_old_state(
    ledger: Ledger, cast: Cast, step: str, caplog: pytest.LogCaptureFixture
) -> None:
    load(ledger, cast)
    raw = issue_event(cast)
    snapshot = _snapshot(ledger)

    def fail(name: str) -> None:
        if name == step:
            raise RuntimeError(f"injected failure {name}")

    ledger.fault = fail
    with pytest.raises(Exception, match="the batch was rolled back, nothing of it is logged"):
        ledger.append(raw)
    # the submitter is told nothing of the store's own words; the service's log is
    assert f"injected failure {step}" in caplog.text
    assert _snapshot(ledger) == snapshot
    ledger.fault = None
    receipt = ledger.append(raw)  # and the ledger carries on from the old state
    check_receipt(receipt, receipt.event_id)
    assert ledger.title(DOC)[0].holder == cast.actor("exporter").id


def _snapshot(ledger: Ledger) -> dict[str, int | bytes]:
    return {
        **{
            t: _count(ledger, t)
            for t in ["event", "tree_node", "checkpoint", "party", "document", "cargo"]
        },
        "checkpoint_note": ledger.checkpoint(),
    }


def test_tree_matches_naive_hash_and_all_proofs_verify(ledger: Ledger, cast: Cast) -> None:
    load(ledger, cast)  # one event per batch: a checkpoint at every size
    raw = issue_event(cast)
    cast.append(raw)
    ledger.append(raw)
    for i in range(12):
        m = cast.doc_event(
            DOC,
            "milestone",
            {
                "kind": "other",
                "location": {"locode": "CNQZH", "name": "Qinzhou"},
                "at": "2026-05-03T09:00:00Z",
                "note": f"n{i}",
            },
            [cast.actor("carrier")],
        )
        cast.append(m)
        ledger.append(m)
    n = ledger.size()
    entries = ledger.entries(0, n)
    leaves = [LogEntry(eid, at).leaf_hash for _, eid, at, _ in entries]
    roots = {
        size: open_checkpoint(ledger.checkpoint_at(size), LOG_KEY.public).root
        for size in range(1, n + 1)
    }
    for size in range(1, n + 1):
        assert roots[size] == root_naive(leaves[:size])
    for size1 in range(1, n + 1):
        for size2 in range(size1, n + 1):
            verify_consistency(
                size1, size2, ledger.consistency(size1, size2), roots[size1], roots[size2]
            )


def test_a_reader_with_no_cached_nodes_serves_the_same_proofs(
    ledger: Ledger, cast: Cast, database_url: str
) -> None:
    load(ledger, cast)
    raw = issue_event(cast)
    cast.append(raw)
    ledger.append(raw)
    n = ledger.size()
    # a second process's view: nothing in its node cache, every node read from the store
    with Ledger(database_url, LOG_KEY) as other:
        other._nodes.clear()
        entries = other.entries(0, n)
        for index, eid, at, _ in entries:
            proof = other.inclusion(index, n)
            assert proof == ledger.inclusion(index, n)
            TlogProof(index, tuple(proof), other.checkpoint_at(n)).verify(
                LogEntry(eid, at).leaf_hash, LOG_KEY.public
            )
        for size1 in range(1, n):
            other._nodes.clear()
            assert other.consistency(size1, n) == ledger.consistency(size1, n)
        other._nodes.clear()
        found = other.title_proof(DOC)
        assert found.state.head == entries[-1][1]
        assert found.head_index == n - 1 and found.checkpoint == other.checkpoint()
        head = LogEntry(entries[-1][1], found.head_sequenced_at)
        assert found.proof.verify(head.leaf_hash, LOG_KEY.public).size == n


def test_proofs_from_a_partly_cached_tree_are_right(
    ledger: Ledger, cast: Cast, database_url: str
) -> None:
    """A proof first runs on the nodes in the cache, with placeholders for the missing
    ones: nothing composed from a placeholder may be kept for the proofs after it."""
    load(ledger, cast)
    raw = issue_event(cast)
    cast.append(raw)
    ledger.append(raw)
    for note in ("a", "b", "c", "d", "e"):  # a size with ragged edges at several levels
        m = cast.doc_event(
            DOC,
            "milestone",
            {
                "kind": "other",
                "at": "2026-05-03T09:00:00Z",
                "location": {"locode": "CNQZH", "name": "Qinzhou"},
                "note": note,
            },
            [cast.actor("carrier")],
        )
        cast.append(m)
        ledger.append(m)
    n = ledger.size()
    leaves = [LogEntry(eid, at).leaf_hash for _, eid, at, _ in ledger.entries(0, n)]
    roots = {size: root_naive(leaves[:size]) for size in range(1, n + 1)}
    rng = random.Random(5)
    with Ledger(database_url, LOG_KEY) as other:
        for size2 in range(1, n + 1):
            for size1 in range(1, size2 + 1):
                cached = sorted(other._nodes)
                for key in rng.sample(cached, len(cached) // 2):
                    del other._nodes[key]
                proof = other.consistency(size1, size2)
                verify_consistency(size1, size2, proof, roots[size1], roots[size2])
                index = rng.randrange(size2)
                verify_inclusion(
                    leaves[index], index, size2, other.inclusion(index, size2), roots[size2]
                )


def test_reopening_continues_the_same_log(database_url: str, cast: Cast) -> None:
    with Ledger(database_url, LOG_KEY) as first:
        load(first, cast)
        note = first.checkpoint()
    with Ledger(database_url, LOG_KEY) as again:
        assert again.checkpoint() == note
        raw = issue_event(cast)
        receipt = again.append(raw)
        assert receipt.log_index == len(cast.log)
        check_receipt(receipt, receipt.event_id)


def test_a_store_refuses_another_log_key(database_url: str) -> None:
    Ledger(database_url, LOG_KEY).close()
    other = seeded_key("encd.test/log", "other")
    with pytest.raises(InvalidInput) as info:
        Ledger(database_url, other)
    assert str(info.value).startswith("log key: this store belongs to log key encd.test/log+")


def test_cargo_already_covered_is_refused_in_the_same_batch_and_after(
    ledger: Ledger, cast: Cast
) -> None:
    load(ledger, cast)
    raw = issue_event(cast)
    cast.append(raw)

    def second(doc_id: str) -> bytes:
        content = corridor_document()
        content["id"] = doc_id
        return cast.doc_event(
            doc_id,
            "issue",
            {"content": content, "holder": cast.actor("exporter").id},
            [cast.actor("carrier")],
        )

    # the first issue and a rival in one batch: the rival sees the batch's own claim
    same_batch = ledger.append_many([raw, second("CQ-DOUBLE-0001")])
    assert isinstance(same_batch[0], Receipt)
    assert isinstance(same_batch[1], RuleViolation) and same_batch[1].rule == "singularity"
    # a later batch reads the stored claims
    with pytest.raises(RuleViolation) as later:
        ledger.append(second("CQ-DOUBLE-0002"))
    assert later.value.rule == "singularity"
    assert f"is already covered by live document {DOC}" in str(later.value)


def test_cargo_released_and_claimed_again_in_one_batch_moves_to_the_new_document(
    database_url: str, cast: Cast
) -> None:
    """A container freed (void) and taken by a new document in the same batch: both apply,
    and the stored index names the new document (the flush deleted no row, and the
    insert broke the key: the whole batch, bystanders too, was refused)."""
    with Ledger(database_url, LOG_KEY) as ledger:
        load(ledger, cast)
        raw = issue_event(cast)
        cast.append(raw)
        ledger.append(raw)
        void = cast.doc_event(DOC, "void", {}, [cast.actor("carrier"), cast.actor("exporter")])
        cast.append(void)
        content = corridor_document()
        content["id"] = "CQ-REUSE-0001"
        again = cast.doc_event(
            "CQ-REUSE-0001",
            "issue",
            {"content": content, "holder": cast.actor("buyer").id},
            [cast.actor("carrier")],
        )
        cast.append(again)
        outcomes = ledger.append_many([void, again])
        assert all(isinstance(o, Receipt) for o in outcomes), outcomes
    container = "container:" + corridor_document()["containers"][0]["number"]
    with Ledger(database_url, LOG_KEY) as reopened:  # as stored, nothing cached
        assert reopened.cargo_owner(container) == "CQ-REUSE-0001"


def _stored_state(ledger: Ledger, doc_id: str) -> dict[str, object]:
    with ledger.reader.connect() as conn:
        text = conn.execute(
            sa.text("SELECT state FROM document WHERE id = :id"), {"id": doc_id}
        ).scalar_one()
    return dict(json.loads(text))


def test_the_stored_state_is_the_replayed_one_along_a_long_chain(
    database_url: str, cast: Cast
) -> None:
    """The sequencer writes a document's endorsement chain one new entry at a time
    (``Ledger._state_text``); what it stores must stay exactly ``dump_state`` of the
    state an independent replay reaches: as the chain grows, when an entry is changed
    rather than added (a rejected transfer), and after a restart (nothing cached)."""
    exporter, buyer = cast.actor("exporter"), cast.actor("buyer")

    def transfer(holder: Actor, to: Actor) -> bytes:
        return cast.doc_event(DOC, "transfer", {"to": to.id}, [holder])

    with Ledger(database_url, LOG_KEY) as ledger:
        load(ledger, cast)
        raw = issue_event(cast)
        cast.append(raw)
        ledger.append(raw)
        for n in range(12):
            holder, to = (exporter, buyer) if n % 2 == 0 else (buyer, exporter)
            raw = transfer(holder, to)
            cast.append(raw)
            ledger.append(raw)
            assert _stored_state(ledger, DOC) == dump_state(cast.replay.documents[DOC])
        raw = transfer(exporter, buyer)
        cast.append(raw)
        ledger.append(raw)
        raw = cast.doc_event(DOC, "reject_transfer", {"reason": "not ours"}, [buyer])
        cast.append(raw)
        ledger.append(raw)
        replayed = cast.replay.documents[DOC]
        assert replayed.endorsements[-1].rejected
        assert _stored_state(ledger, DOC) == dump_state(replayed)
    with Ledger(database_url, LOG_KEY) as reopened:
        for holder, to in ((exporter, buyer), (buyer, exporter)):
            raw = transfer(holder, to)
            cast.append(raw)
            reopened.append(raw)
            assert _stored_state(reopened, DOC) == dump_state(cast.replay.documents[DOC])
        assert len(cast.replay.documents[DOC].endorsements) == 16


def test_an_event_dated_or_placed_after_the_log_s_clock_is_refused(
    database_url: str, cast: Cast
) -> None:
    """A signer's clock set wrong (a year typed 2062) would be in the log for good: an
    event more than 300 s after the log's clock, or a milestone placed there, is refused,
    naming the field; a few minutes ahead is a clock's ordinary drift."""
    now = T0 + timedelta(days=30)
    with Ledger(database_url, LOG_KEY, clock=lambda: now) as ledger:
        load(ledger, cast)
        issue = issue_event(cast)
        cast.append(issue)
        ledger.append(issue)
        size = ledger.size()

        def milestone(signed: datetime, at: datetime) -> bytes:
            cast.clock = signed - timedelta(seconds=1)  # doc_event ticks it once
            place = {"locode": "CNQZH", "name": "Qinzhou"}
            body = {"kind": "arrived", "location": place, "at": format_time(at)}
            return cast.doc_event(DOC, "milestone", body, [cast.actor("carrier")])

        ahead = now + timedelta(seconds=301)
        with pytest.raises(InvalidInput) as dated:
            ledger.append(milestone(ahead, now))
        assert dated.value.field == "time" and "after the log's clock" in str(dated.value)
        with pytest.raises(InvalidInput) as placed:
            ledger.append(milestone(now, ahead))
        assert placed.value.field == "body.at" and format_time(ahead) in str(placed.value)
        assert ledger.size() == size
        drift = now + timedelta(seconds=240)
        ledger.append(milestone(drift, drift))
        assert ledger.size() == size + 1
