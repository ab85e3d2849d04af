"""The busy read paths' connections (ledger.db.DirectReads): never a stale answer, and a
broken connection is replaced."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.exc import DBAPIError

from encd.checkpoint import open_checkpoint
from encd.logentry import LogEntry
from encd.merkle import verify_inclusion
from ledger.ledger import Ledger
from tests.kit import corridor_cast, corridor_document, seeded_key

LOG_KEY = seeded_key("encd.test/log", "log")


def test_titles_and_proofs_follow_what_another_sequencer_appends(database_url: str) -> None:
    """A reader's connection stays open between reads: each read must still see every
    commit made before it, by this process or another one."""
    cast = corridor_cast()
    with Ledger(database_url, LOG_KEY) as writer, Ledger(database_url, LOG_KEY) as reader:
        for raw in cast.log:
            writer.append(raw)
        exporter, buyer = cast.actor("exporter"), cast.actor("buyer")
        issue = cast.doc_event(
            "CQ-READS",
            "issue",
            {"content": corridor_document() | {"id": "CQ-READS"}, "holder": exporter.id},
            [cast.actor("carrier")],
        )
        cast.append(issue)
        writer.append(issue)
        holder, other = exporter, buyer
        for turn in range(4):
            title = reader.title_proof("CQ-READS")  # its connection is open from here on
            assert title.stored["holder"] == holder.id and title.stored["seq"] == turn
            raw = cast.doc_event("CQ-READS", "transfer", {"to": other.id}, [holder])
            cast.append(raw)
            receipt = writer.append(raw)
            holder, other = other, holder
            title = reader.title_proof("CQ-READS")
            assert title.stored["holder"] == holder.id and title.stored["seq"] == turn + 1
            assert title.head_index == receipt.log_index
            checkpoint = open_checkpoint(title.checkpoint, LOG_KEY.public)
            leaf = LogEntry(receipt.event_id, receipt.sequenced_at).leaf_hash
            verify_inclusion(
                leaf, receipt.log_index, checkpoint.size, list(title.proof.proof), checkpoint.root
            )
            assert reader.title("CQ-READS")[0].holder == holder.id


def test_a_broken_connection_is_replaced_and_each_thread_has_its_own(database_url: str) -> None:
    cast = corridor_cast()
    with Ledger(database_url, LOG_KEY) as ledger:
        for raw in cast.log:
            ledger.append(raw)
        size = len(cast.log)
        query = "SELECT count(*) FROM event WHERE log_index < ?"
        assert ledger.reads.rows(query, (size,))[0][0] == size
        mine = ledger.reads._local.connection
        mine.dbapi_connection.close()  # as a database server's restart would
        assert ledger.reads.rows(query, (size,))[0][0] == size
        assert ledger.reads._local.connection is not mine
        theirs: list[object] = []
        thread = threading.Thread(
            target=lambda: (
                ledger.reads.rows(query, (1,)),
                theirs.append(ledger.reads._local.connection),
            )
        )
        thread.start()
        thread.join()
        assert theirs and theirs[0] is not ledger.reads._local.connection


def test_a_failing_read_is_the_drivers_error_as_sqlalchemy_raises_it(database_url: str) -> None:
    with Ledger(database_url, LOG_KEY) as ledger:
        with pytest.raises(DBAPIError):
            ledger.reads.rows("SELECT no_such_column FROM event", ())
        assert ledger.reads.rows("SELECT count(*) FROM event", ())[0][0] >= 0


def test_a_thread_that_ends_does_not_keep_its_connection(database_url: str) -> None:
    """A service's thread pool replaces its threads over weeks: the connection each one read
    on is closed once another thread connects, so open files do not grow with them."""
    import os

    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    with Ledger(database_url, seeded_key("encd.test/log", 0)) as ledger:
        ledger.size()
        reads = ledger.reads

        def read() -> None:
            assert reads.rows("SELECT count(*) FROM event")[0][0] >= 0

        def short_lived(count: int) -> None:
            for _ in range(count):
                thread = threading.Thread(target=read)
                thread.start()
                thread.join()

        short_lived(5)
        before = open_files()
        short_lived(60)
        assert open_files() <= before + 2  # (the last thread's, until the next one connects)
        # a thread still running is not reaped with the ended ones: it reads on afterwards
        stop = threading.Event()
        read_again: list[bool] = []

        def long_lived() -> None:
            read()
            stop.wait()
            read()
            read_again.append(True)

        alive = threading.Thread(target=long_lived)
        alive.start()
        try:
            short_lived(20)
        finally:
            stop.set()
            alive.join()
        assert read_again == [True]
