"""The sequencer's document states in memory: bounded by their weight, never by trust.

A state that left the cache is read back from the store; the events appended to its
document are judged exactly as if it had stayed.
"""

from __future__ import annotations

import pytest

import ledger.ledger as ledger_module
from bench.workloads import content
from encd.errors import RuleViolation
from encd.title import Status
from ledger.ledger import DOC_OVERHEAD, MEMORY_PER_TEXT_BYTE, DocumentCache, Ledger
from tests.kit import Cast, corridor_cast, seeded_key

LOG_KEY = seeded_key("encd.test/log", "log")


def test_the_cache_weighs_states_and_lets_the_least_recent_go() -> None:
    forgotten: list[str] = []
    weight = DOC_OVERHEAD + MEMORY_PER_TEXT_BYTE * 1000
    cache = DocumentCache(3 * weight, forgotten.append)
    state = object()  # the cache keeps what it is given; it never looks inside
    for doc in "abc":
        cache.put(doc, state, 0, 1000)  # type: ignore[arg-type]
    assert len(cache) == 3 and cache.weight == 3 * weight and forgotten == []
    assert cache.get("a") is state
    cache.put("a", state, 1, 1000)  # type: ignore[arg-type]  # "a" is the most recent now
    cache.put("d", state, 0, 1000)  # type: ignore[arg-type]
    assert forgotten == ["b"] and cache.get("b") is None and len(cache) == 3
    cache.put("big", state, 0, 10_000)  # type: ignore[arg-type]  # more than the budget
    assert cache.get("big") is state and len(cache) == 1  # kept alone, the others out
    assert forgotten == ["b", "c", "a", "d"]
    cache.pop("big")
    cache.clear()
    assert cache.weight == 0 and forgotten[-1] == "big"


def issue(cast: Cast, n: int) -> bytes:
    value = content(n)
    return cast.doc_event(
        value["id"],
        "issue",
        {"content": value, "holder": cast.actor("exporter").id},
        [cast.actor("carrier")],
    )


def test_documents_beyond_the_budget_are_read_back_and_judged_the_same(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_module, "DOC_CACHE_BYTES", 100_000)  # about three documents
    cast = corridor_cast()
    with Ledger(database_url, LOG_KEY) as ledger:
        for raw in cast.log:
            ledger.append(raw)
        issued = []
        for n in range(12):
            raw = issue(cast, n)
            cast.append(raw)
            ledger.append(raw)
            issued.append(content(n)["id"])
        cache = ledger._docs
        assert 1 <= len(cache) <= 4 and cache.weight <= 100_000, (len(cache), cache.weight)
        assert len(ledger._serialised) <= len(cache)  # texts leave with their states
        # the first documents left the cache long ago: their events are judged on the
        # stored state, as the cached one would have been
        exporter, buyer = cast.actor("exporter"), cast.actor("buyer")
        for doc in issued[:3]:
            raw = cast.doc_event(doc, "transfer", {"to": buyer.id}, [exporter])
            cast.append(raw)
            ledger.append(raw)
            assert ledger.title(doc)[0].holder == buyer.id
        again = cast.doc_event(issued[0], "transfer", {"to": exporter.id}, [exporter])
        with pytest.raises(RuleViolation, match="must be signed by the holder"):
            ledger.append(again)  # the exporter no longer holds it
        assert all(ledger.title(doc)[0].status == Status.ACTIVE for doc in issued)
        assert cache.weight <= 100_000
