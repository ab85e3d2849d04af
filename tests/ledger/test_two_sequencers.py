"""Two ledgers (as two processes would be) appending to one database: the log never forks."""

from __future__ import annotations

import threading

from encd.checkpoint import open_checkpoint
from encd.errors import Conflict
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
