"""The request path's reads: a party parsed once, but never served stale."""

from __future__ import annotations

import pytest

from api.lookups import Lookups
from ledger.ledger import Ledger, NotFound
from tests.kit import corridor_cast, corridor_document, seeded_key

LOG_KEY = seeded_key("encd.test/log", "log")


def test_a_key_revoked_by_another_process_is_refused_at_once(database_url: str) -> None:
    cast = corridor_cast()
    carrier = cast.actor("carrier")
    key_hash = carrier.key.public.hash.hex()
    with Ledger(database_url, LOG_KEY) as mine, Ledger(database_url, LOG_KEY) as other:
        for raw in cast.log:
            mine.append(raw)
        lookups = Lookups(mine)
        party, record = lookups.key(carrier.id, key_hash)
        assert record is not None and not record.revoked
        assert lookups.key(carrier.id, key_hash)[0] is party  # parsed once
        assert lookups.key(carrier.id, "00" * 8)[1] is None

        new = seeded_key(carrier.id, "carrier, rotated")
        raw = cast.party_event(
            carrier,
            "rotate_key",
            {"old": carrier.key.public.key_id, "new": new.public.vkey},
            [carrier.key],
        )
        cast.append(raw)
        other.append(raw)  # the other API process's sequencer, on the same store

        party, record = lookups.key(carrier.id, key_hash)
        assert record is not None and record.revoked
        assert party.seq == cast.replay.parties[carrier.id].seq
        fresh = lookups.key(carrier.id, new.public.hash.hex())[1]
        assert fresh is not None and not fresh.revoked


def test_an_unknown_party_is_not_found(database_url: str) -> None:
    with Ledger(database_url, LOG_KEY) as ledger:
        lookups = Lookups(ledger)
        with pytest.raises(NotFound):
            lookups.party("91500000MA7000000X")


def test_a_broken_connection_is_replaced(database_url: str) -> None:
    cast = corridor_cast()
    carrier = cast.actor("carrier")
    with Ledger(database_url, LOG_KEY) as ledger:
        for raw in cast.log:
            ledger.append(raw)
        lookups = Lookups(ledger)
        assert lookups.party(carrier.id).id == carrier.id
        ledger.reads._local.connection.dbapi_connection.close()  # as a server restart would
        assert lookups.party(carrier.id).id == carrier.id
        assert lookups.party(carrier.id).id == carrier.id


def test_existence_is_remembered_only_once_true(database_url: str) -> None:
    cast = corridor_cast()
    content = corridor_document()
    with Ledger(database_url, LOG_KEY) as ledger:
        for raw in cast.log:
            ledger.append(raw)
        lookups = Lookups(ledger)
        assert lookups.exists("party", cast.actor("carrier").id)
        assert not lookups.exists("doc", content["id"])
        raw = cast.doc_event(
            content["id"],
            "issue",
            {"content": content, "holder": cast.actor("exporter").id},
            [cast.actor("carrier")],
        )
        cast.append(raw)
        ledger.append(raw)
        assert lookups.exists("doc", content["id"])  # a no is asked again
        assert not lookups.exists("party", content["id"])
