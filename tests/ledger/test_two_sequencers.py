"""Two ledgers (as two processes would be) appending to one database: the log never forks."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from encd.checkpoint import open_checkpoint
from encd.errors import Conflict, Error
from encd.logentry import LogEntry
from encd.merkle import root_naive
from ledger.ledger import Ledger, Receipt
from tests.kit import corridor_cast, corridor_document, seeded_key

LOG_KEY = seeded_key("encd.test/log", "log")


def test_two_sequencers_share_one_log(database_url: str) -> None:
    cast = corridor_cast()
    with Ledger(database_url, LOG_KEY) as first, Ledger(database_url, LOG_KEY) as second:
        for raw in cast.log:
            first.append(raw)
        # two documents, each fed by its own sequencer, interleaving in the one log
        docs = []
        for n in range(2):
            content = corridor_document()
            content["id"] = f"CQ-TWO-{n}"
            content["containers"] = [content["containers"][n]]
            content["underlying"] = []
            content["legs"] = [
                dict(leg, reference=f"TWO{n}{i}") for i, leg in enumerate(content["legs"])
            ]
            raw = cast.doc_event(
                content["id"],
                "issue",
                {"content": content, "holder": cast.actor("exporter").id},
                [cast.actor("carrier")],
            )
            cast.append(raw)
            (first if n == 0 else second).append(raw)
            docs.append(content["id"])
        batches: dict[int, list[bytes]] = {0: [], 1: []}
        for i in range(60):
            n = i % 2
            raw = cast.doc_event(
                docs[n],
                "milestone",
                {
                    "kind": "other",
                    "location": {"locode": "CNQZH", "name": "Qinzhou"},
                    "at": "2026-05-03T09:00:00Z",
                    "note": f"m{i}",
                },
                [cast.actor("carrier")],
            )
            cast.append(raw)
            batches[n].append(raw)
        results: dict[int, list[Receipt]] = {0: [], 1: []}

        def feed(n: int, ledger: Ledger) -> None:
            for raw in batches[n]:
                results[n].append(ledger.append(raw))

        threads = [
            threading.Thread(target=feed, args=(n, led)) for n, led in ((0, first), (1, second))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        size = first.size()
        assert size == len(cast.log)
        indexes = sorted(r.log_index for rs in results.values() for r in rs)
        assert len(set(indexes)) == len(indexes) == 60
        entries = first.entries(0, size)
        assert [e[0] for e in entries] == list(range(size))
        root = root_naive([LogEntry(eid, at).leaf_hash for _, eid, at, _ in entries])
        assert open_checkpoint(first.checkpoint(), LOG_KEY.public).root == root
        assert open_checkpoint(second.checkpoint(), LOG_KEY.public).root == root
        # and a stale head seen by one sequencer is still refused by the other
        stale = cast.doc_event(
            docs[0],
            "milestone",
            {
                "kind": "other",
                "location": {"locode": "CNQZH", "name": "Qinzhou"},
                "at": "2026-05-03T09:00:00Z",
            },
            [cast.actor("carrier")],
            seq=1,
            prev=first.title(docs[0])[0].head,
        )
        try:
            second.append(stale)
        except Conflict:
            pass
        else:
            raise AssertionError("a stale event was appended by the second sequencer")


def test_each_sequencer_sees_what_the_other_appended(database_url: str) -> None:
    """Title and keys move under one sequencer; the other judges the next event by the store,
    not by what it had cached before."""
    cast = corridor_cast()
    with Ledger(database_url, LOG_KEY) as first, Ledger(database_url, LOG_KEY) as second:
        for raw in cast.log:
            first.append(raw)
        exporter, buyer = cast.actor("exporter"), cast.actor("buyer")
        issue = cast.doc_event(
            "CQ-TURNS",
            "issue",
            {"content": corridor_document() | {"id": "CQ-TURNS"}, "holder": exporter.id},
            [cast.actor("carrier")],
        )
        cast.append(issue)
        first.append(issue)
        second.title("CQ-TURNS")  # each has the document in its cache now
        # the document changes hands six times, each time under the other sequencer
        holder, other = exporter, buyer
        for turn in range(6):
            raw = cast.doc_event("CQ-TURNS", "transfer", {"to": other.id}, [holder])
            cast.append(raw)
            receipt = (first if turn % 2 else second).append(raw)
            assert receipt.log_index == len(cast.log) - 1
            holder, other = other, holder
        for ledger in (first, second):
            state, _ = ledger.title("CQ-TURNS")
            assert state.holder == holder.id and state.seq == 6
        # the holder rotates its key through one sequencer: the other refuses the old key
        new = seeded_key(holder.id, "rotated in turns")
        rotate = {"old": holder.key.public.key_id, "new": new.public.vkey}
        raw = cast.party_event(holder, "rotate_key", rotate, [holder.key])
        cast.append(raw)
        second.append(raw)
        old_key = cast.doc_event("CQ-TURNS", "transfer", {"to": other.id}, [holder])
        try:
            first.append(old_key)
        except Error as exc:
            assert "key" in str(exc)
        else:
            raise AssertionError("a rotated-out key signed an event the other sequencer took")
        holder.key = new
        raw = cast.doc_event("CQ-TURNS", "transfer", {"to": other.id}, [holder])
        cast.append(raw)
        assert first.append(raw).log_index == len(cast.log) - 1
        size = second.size()
        assert size == len(cast.log)
        assert open_checkpoint(first.checkpoint(), LOG_KEY.public).size == size
        assert [e[3] for e in second.entries(0, size)] == cast.log


def test_the_log_s_times_never_go_back(database_url: str) -> None:
    """A clock stepped back, or a host whose clock runs behind another's on one ledger: each
    entry's sequenced_at is at least the one before it (formats/log.md §1)."""
    cast = corridor_cast()
    base = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    ahead = [base + timedelta(minutes=1)]  # a clock a minute fast, then stepped back
    with (
        Ledger(database_url, LOG_KEY, clock=lambda: ahead[0]) as fast,
        Ledger(database_url, LOG_KEY, clock=lambda: base) as slow,
    ):
        receipts = [fast.append(raw) for raw in cast.log[:3]]
        receipts += [slow.append(raw) for raw in cast.log[3:5]]  # behind what fast logged
        ahead[0] = base - timedelta(minutes=5)  # stepped back, past both
        receipts += [fast.append(raw) for raw in cast.log[5:]]
        times = [r.sequenced_at for r in receipts]
        assert times == sorted(times), times
        minute_ahead = int((base + timedelta(minutes=1)).timestamp() * 1000)
        assert times[0] == times[-1] == minute_ahead  # held at the newest until clocks pass it
        stored = [at for _, _, at, _ in fast.entries(0, len(receipts))]
        assert stored == times


def test_a_registry_read_sees_parties_another_ledger_registered(database_url: str) -> None:
    """parties() is read again once any host stored a party event: a ledger's API paths
    (a proposal's signers) never miss a party another host registered."""
    cast = corridor_cast()
    *before, last = cast.log
    with Ledger(database_url, LOG_KEY) as first, Ledger(database_url, LOG_KEY) as second:
        for raw in before:
            first.append(raw)
        known = first.parties()
        known.clear()  # a copy: the next read is whole
        assert first.parties().keys() == second.parties().keys() and first.parties()
        second.append(last)
        assert first.parties().keys() == second.parties().keys()
        assert len(first.parties()) == len(before) + 1
