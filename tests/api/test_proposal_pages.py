"""GET /v1/proposals a page at a time: oldest first, ``next`` until there is no more, and
each caller sees only the proposals it signed or must sign."""

from __future__ import annotations

from typing import Any

import pytest

from api.client import ProblemError
from tests.api.conftest import World
from tests.api.test_lifecycle import pledge_body
from tests.api.test_web import countersigned  # (no browser: a helper of the Python client)


def propose(world: World, doc_id: str, bank: str, n: int) -> dict[str, Any]:
    exporter = world.client("exporter")
    body = pledge_body(world, bank) | {"loan_ref": f"LOAN-{bank}-{n}"}
    return dict(exporter.propose(exporter.next_event(doc_id, "pledge", body)))


def pages(world: World, label: str, limit: int) -> list[list[str]]:
    """The ids of each page ``label`` is given, following ``next``."""
    client = world.client(label)
    out: list[list[str]] = []
    after = None
    while True:
        page = client.proposals(limit=limit, after=after)
        out.append([p["id"] for p in page["proposals"]])
        after = page["next"]
        if after is None:
            return out


def test_pages_follow_one_another_oldest_first(world: World, doc_id: str) -> None:
    for_bank = [propose(world, doc_id, "bank", n)["id"] for n in range(5)]
    for_bank2 = [propose(world, doc_id, "bank2", n)["id"] for n in range(2)]

    assert pages(world, "bank", 2) == [for_bank[0:2], for_bank[2:4], for_bank[4:5]]
    assert pages(world, "bank", 5) == [for_bank]  # a full last page: no empty page after it
    assert pages(world, "bank2", 1) == [[for_bank2[0]], [for_bank2[1]]]
    # the holder signed every one; an auditor sees them all; a stranger none
    assert pages(world, "exporter", 4) == [for_bank[0:4], for_bank[4:] + for_bank2]
    assert pages(world, "auditor", 3) == [
        for_bank[0:3],
        for_bank[3:5] + for_bank2[:1],
        for_bank2[1:],
    ]
    assert pages(world, "buyer", 3) == [[]]
    assert list(world.client("bank").each_proposal(limit=2)) == list(
        world.client("bank").each_proposal()
    )
    assert world.client("bank").proposals()["next"] is None  # all 5 within the default page


def test_a_page_goes_on_after_a_proposal_that_closed_since(world: World, doc_id: str) -> None:
    first, second = (propose(world, doc_id, "bank", n) for n in range(2))
    page = world.client("bank").proposals(limit=1)
    assert [p["id"] for p in page["proposals"]] == [first["id"]]
    assert countersigned(world, first, "bank")["state"] == "applied"
    # the second can no longer apply (the document moved on): the page after is empty
    assert world.client("bank").proposals(after=page["next"]) == {"proposals": [], "next": None}
    assert second["state"] == "open"


@pytest.mark.parametrize(
    ("params", "field", "detail"),
    [
        ({"limit": "0"}, "limit", "greater than or equal to 1"),
        ({"limit": "1001"}, "limit", "less than or equal to 1000"),
        ({"limit": "ten"}, "limit", "decimal integer"),
        ({"after": "zz"}, "after", "64 lowercase hex digits"),
        ({"after": "A" * 64}, "after", "64 lowercase hex digits"),
        ({"after": "0" * 64}, "after", "no proposal"),
    ],
)
def test_a_bad_page_query_is_refused_by_name(
    world: World, doc_id: str, params: dict[str, str], field: str, detail: str
) -> None:
    propose(world, doc_id, "bank", 0)
    with pytest.raises(ProblemError) as refused:
        world.client("bank").get("/v1/proposals", **params)
    assert refused.value.status == 422
    assert refused.value.problem["field"] == field
    assert detail in refused.value.problem["detail"]
