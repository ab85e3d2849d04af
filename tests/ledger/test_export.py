"""Exports from a real Ledger: what a document bundle holds, one checkpoint throughout, scale."""

from __future__ import annotations

import copy
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from encd.bundle import Bundle, verify_bundle
from encd.errors import Error
from encd.events import Event, event_id, make_event
from encd.identifiers import container_check_digit
from encd.title import Status
from ledger.export import document_parties, export_document, export_ledger
from ledger.ledger import Ledger, NotFound
from tests.kit import Actor, Cast, corridor_cast, corridor_document, seeded_key, uscc

LOG_KEY = seeded_key("encd.test/log", "log")
TRUSTED = LOG_KEY.public
DOC = corridor_document()["id"]


@pytest.fixture()
def cast() -> Cast:
    return corridor_cast()


@pytest.fixture()
def ledger(database_url: str) -> Iterator[Ledger]:
    with Ledger(database_url, LOG_KEY) as opened:
        yield opened


def step(cast: Cast, type: str, body: dict[str, Any], *signers: str, doc: str = DOC) -> bytes:
    raw = cast.doc_event(doc, type, body, [cast.actor(s) for s in signers])
    cast.append(raw)
    return raw


def issue(cast: Cast, content: dict[str, Any] | None = None) -> bytes:
    content = content or corridor_document()
    body = {"content": content, "holder": cast.actor("exporter").id}
    return step(cast, "issue", body, "carrier", doc=content["id"])


def milestone(kind: str = "departed", note: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": kind,
        "location": {"locode": "CNQZH", "name": "Qinzhou Port"},
        "at": "2026-05-03T09:00:00Z",
    }
    if note is not None:
        body["note"] = note
    return body


def pledge(cast: Cast) -> dict[str, Any]:
    return {
        "pledgee": cast.actor("bank").id,
        "loan_ref": "CQRCB-2026-0001",
        "amount": "100000.00",
        "currency": "USD",
        "registry_ref": "PBOC-CRCS-2026-000001",
        "maturity": "2026-08-01",
    }


def load(ledger: Ledger, raws: list[bytes]) -> None:
    for raw in raws:
        ledger.append(raw)


def bundle_of(ledger: Ledger, doc_id: str = DOC) -> bytes:
    out = io.BytesIO()
    export_document(ledger, doc_id, out)
    return out.getvalue()


def export_of(ledger: Ledger, **options: Any) -> bytes:
    out = io.BytesIO()
    export_ledger(ledger, out, **options)
    return out.getvalue()


def subjects(bundle: bytes) -> set[str]:
    return {Event.parse(e.event).subject for e in Bundle.parse(bundle).entries}


# --- what a document bundle holds --------------------------------------------------------------


def test_a_document_bundle_holds_its_events_and_the_parties_they_depend_on(
    ledger: Ledger, cast: Cast
) -> None:
    issue(cast)
    step(cast, "milestone", milestone(), "agent")
    step(cast, "pledge", pledge(cast), "exporter", "bank")
    step(cast, "release", {}, "bank")
    step(cast, "transfer", {"to": cast.actor("buyer").id}, "exporter")
    # another document the bundle must not carry, and its parties' events
    other = copy.deepcopy(corridor_document())
    other.update(id="CQ-OTHER-0001", containers=[], underlying=[])
    other["legs"] = [dict(leg, reference=f"OTHER{i}") for i, leg in enumerate(other["legs"])]
    other["underlying"] = [{"kind": "customs_entry", "number": "800020269999999"}]
    issue(cast, other)
    load(ledger, cast.log)
    bundle = bundle_of(ledger)
    parsed = Bundle.parse(bundle)
    ids = {a: cast.actor(a).id for a in cast.actors}
    # the buyer is named by the transfer and the content; the agent signed; the bank pledged
    assert subjects(bundle) == {DOC} | {
        ids[a] for a in ("operator", "carrier", "exporter", "buyer", "bank", "agent")
    }
    assert [e.index for e in parsed.entries] == sorted(e.index for e in parsed.entries)
    assert all(e.proof is not None for e in parsed.entries)
    report = verify_bundle(bundle, TRUSTED)
    assert report.documents[DOC] == ledger.title(DOC)[0]
    assert report.checkpoint.size == ledger.size()


def test_a_document_bearing_a_party_s_id_bundles_only_its_own_events(
    ledger: Ledger, cast: Cast
) -> None:
    """A document id may be a party id (both are letters, digits and '-'): the document's
    events are its chain's only, so its bundle holds each entry once and verifies."""
    named = cast.actor("exporter").id
    content = copy.deepcopy(corridor_document())
    content["id"] = named
    issue(cast, content)
    step(cast, "pledge", pledge(cast), "exporter", "bank", doc=named)
    load(ledger, cast.log)
    assert [Event.parse(raw).type for _, _, raw in ledger.events_of(named)] == ["issue", "pledge"]
    assert [Event.parse(raw).type for _, _, raw in ledger.events_of(named, "party")] == ["register"]
    bundle = bundle_of(ledger, named)
    indexes = [e.index for e in Bundle.parse(bundle).entries]
    assert indexes == sorted(set(indexes))
    report = verify_bundle(bundle, TRUSTED)
    assert report.documents[named] == ledger.title(named)[0]


def test_key_changes_travel_with_the_bundle(ledger: Ledger, cast: Cast) -> None:
    """The exporter rotates its key before endorsing: the rotation is in the bundle."""
    issue(cast)
    exporter = cast.actor("exporter")
    new = seeded_key(exporter.id, "exporter rotated")
    rotate = {"old": exporter.key.public.key_id, "new": new.public.vkey}
    cast.append(cast.party_event(exporter, "rotate_key", rotate, [exporter.key]))
    exporter.key = new
    step(cast, "transfer", {"to": cast.actor("buyer").id}, "exporter")
    load(ledger, cast.log)
    bundle = bundle_of(ledger)
    types = [Event.parse(e.event).type for e in Bundle.parse(bundle).entries]
    assert "rotate_key" in types
    assert verify_bundle(bundle, TRUSTED).documents[DOC].holder == cast.actor("buyer").id


def test_an_operator_that_steps_down_brings_the_other_operators(ledger: Ledger, cast: Cast) -> None:
    """The last-operator rule counts operators, so the bundle carries the one that remained."""
    operator = cast.actor("operator")
    second = cast.add_actor("operator2", uscc("91500000MA6000002"), "Second Operator", ["operator"])
    cast.append(cast.register_event(second))
    stand_down = {"roles": ["auditor"]}
    cast.append(cast.party_event(operator, "set_roles", stand_down, [operator.key]))
    issue(cast)
    load(ledger, cast.log)
    bundle = bundle_of(ledger)
    assert second.id in subjects(bundle)
    assert verify_bundle(bundle, TRUSTED).documents[DOC].status is Status.ACTIVE
    # without that rule the operator's chain alone would not replay
    events = [Event.parse(raw) for raw in cast.log]
    parties = [e for e in events if e.is_party_event]
    needed = document_parties([e for e in events if not e.is_party_event], parties)
    assert second.id in needed and cast.actor("bank2").id not in needed


def test_an_unknown_document_is_not_found(ledger: Ledger, cast: Cast) -> None:
    load(ledger, cast.log)
    with pytest.raises(NotFound) as info:
        bundle_of(ledger, "CQ-NONE-0001")
    assert str(info.value) == f"no document CQ-NONE-0001 in the log at tree size {len(cast.log)}"


# --- one checkpoint, streaming ----------------------------------------------------------------------


class AppendsWhileWriting(io.BytesIO):
    """An output that appends an event to the ledger when the export writes its first line."""

    def __init__(self, ledger: Ledger, raw: bytes) -> None:
        super().__init__()
        self.ledger = ledger
        self.raw: bytes | None = raw

    def write(self, data: Any) -> int:
        if self.raw is not None:
            raw, self.raw = self.raw, None
            self.ledger.append(raw)
        return super().write(data)


def test_exports_keep_to_the_checkpoint_they_started_with(ledger: Ledger, cast: Cast) -> None:
    issue(cast)
    load(ledger, cast.log)
    size = ledger.size()
    late = [step(cast, "milestone", milestone(note=f"late {i}"), "carrier") for i in range(2)]
    out = AppendsWhileWriting(ledger, late[0])
    export_ledger(ledger, out, chunk=3)
    assert ledger.size() == size + 1
    report = verify_bundle(out.getvalue(), TRUSTED)
    assert report.entries == report.checkpoint.size == size
    out = AppendsWhileWriting(ledger, late[1])
    export_document(ledger, DOC, out)
    assert ledger.size() == size + 2
    report = verify_bundle(out.getvalue(), TRUSTED)
    assert report.checkpoint.size == size + 1 and report.documents[DOC].seq == 1


def test_the_chunk_size_does_not_change_the_export(ledger: Ledger, cast: Cast) -> None:
    issue(cast)
    load(ledger, cast.log)
    whole = export_of(ledger)
    assert export_of(ledger, chunk=3) == whole == export_of(ledger, chunk=1)
    assert verify_bundle(whole, TRUSTED).entries == len(cast.log)


def test_an_empty_log_exports_and_verifies(ledger: Ledger) -> None:
    report = verify_bundle(export_of(ledger), TRUSTED)
    assert report.entries == 0 and report.checkpoint.size == 0 and not report.documents


# --- scale ----------------------------------------------------------------------------------------


def big_content(n: int) -> dict[str, Any]:
    """The corridor document as document ``n``: its own id and cargo (containers, legs, entries)."""
    content = copy.deepcopy(corridor_document())
    content["id"] = f"ENCD-BIG-{n:06d}"
    for i, container in enumerate(content["containers"]):
        serial = f"CSQU{2 * n + i:06d}"
        container["number"] = serial + str(container_check_digit(serial))
    content["legs"][0]["reference"] = f"CQLQ{n:010d}"
    content["legs"][1]["reference"] = f"QZHSIN{n:08d}"
    content["underlying"] = [
        {"kind": "rail_waybill", "number": f"CQLQ{n:010d}"},
        {"kind": "sea_bl", "number": f"QZHSIN{n:08d}"},
        {"kind": "customs_entry", "number": f"8000{n:014d}"},
    ]
    return content


def big_ledger_events(cast: Cast, documents: int, per_document: int) -> Iterator[bytes]:
    """``documents`` documents of ``per_document`` events, interleaved as live traffic would be.

    Each document: issue, pledge, release, transfer, milestones, surrender,
    deliver.  Events are signed with the cast's fixed keys; chain heads are
    tracked here (no replay), so building costs one signature an event.
    """
    a = {label: cast.actor(label) for label in ("carrier", "exporter", "buyer", "bank", "agent")}
    plan: list[tuple[str, list[Actor], Any]] = [
        ("issue", [a["carrier"]], None),
        ("pledge", [a["exporter"], a["bank"]], pledge(cast)),
        ("release", [a["bank"]], {}),
        ("transfer", [a["exporter"]], {"to": a["buyer"].id}),
    ]
    plan += [("milestone", [a["agent"]], milestone("other"))] * (per_document - 6)
    plan += [("surrender", [a["buyer"]], {}), ("deliver", [a["carrier"]], {})]
    heads: list[str | None] = [None] * documents
    for seq, (kind, signers, body) in enumerate(plan):
        for n in range(documents):
            if kind == "issue":
                body_n = {"content": big_content(n), "holder": a["exporter"].id}
            else:
                body_n = body
            raw = make_event(
                [s.key for s in signers],
                type=kind,
                doc=f"ENCD-BIG-{n:06d}",
                seq=seq,
                prev=heads[n],
                time=cast.tick(),
                body=body_n,
            )
            heads[n] = event_id(raw)
            yield raw


def build_big_ledger(
    ledger: Ledger, cast: Cast, documents: int, per_document: int, chunk: int = 5_000
) -> int:
    """Append the cast's parties and the documents' events via ``append_many``; the log size."""
    load(ledger, cast.log)
    batch: list[bytes] = []
    for raw in big_ledger_events(cast, documents, per_document):
        batch.append(raw)
        if len(batch) == chunk:
            _append_all(ledger, batch)
            batch = []
    _append_all(ledger, batch)
    return ledger.size()


def _append_all(ledger: Ledger, raws: list[bytes]) -> None:
    for result in ledger.append_many(raws):
        if isinstance(result, Error):
            raise result


def test_a_small_big_ledger_verifies(ledger: Ledger, cast: Cast) -> None:
    """The scale test's helper, at a size every run can afford."""
    size = build_big_ledger(ledger, cast, documents=4, per_document=8)
    assert size == len(cast.log) + 32
    report = verify_bundle(export_of(ledger, chunk=7), TRUSTED)
    assert report.entries == size and len(report.documents) == 4
    assert {s.status for s in report.documents.values()} == {Status.DELIVERED}


@pytest.mark.slow
def test_a_100000_event_ledger_exports_and_verifies_end_to_end(
    ledger: Ledger, cast: Cast, tmp_path: Path
) -> None:
    """2,000 documents x 50 events (and the 8 party registrations), streamed through a file."""
    started = time.perf_counter()
    size = build_big_ledger(ledger, cast, documents=2_000, per_document=50)
    built = time.perf_counter()
    assert size == 100_008
    path = tmp_path / "ledger.encd"
    with path.open("wb") as out:
        exported = export_ledger(ledger, out)
    written = time.perf_counter()
    assert exported.entries == size
    with path.open("rb") as stream:
        report = verify_bundle(stream, TRUSTED)
    verified = time.perf_counter()
    assert report.entries == report.checkpoint.size == size
    assert len(report.documents) == 2_000
    assert all(s.status is Status.DELIVERED for s in report.documents.values())
    one = bundle_of(ledger, "ENCD-BIG-001999")
    single = verify_bundle(one, TRUSTED)
    assert single.documents["ENCD-BIG-001999"] == ledger.title("ENCD-BIG-001999")[0]
    print(
        f"\n100k ledger: build {built - started:.1f}s, export {written - built:.1f}s "
        f"({path.stat().st_size / 1e6:.0f} MB), verify {verified - written:.1f}s, "
        f"one document's bundle {time.perf_counter() - verified:.2f}s"
    )
