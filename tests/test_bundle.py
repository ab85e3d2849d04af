"""Bundles: the corridor story exported and verified, and every way a bundle can be wrong.

Each mutation fails at exactly the step of encd.bundle's docstring that
should catch it, with the message pinned.  The honest bundles come from a
real Ledger (on SQLite: the format does not depend on the store, and
tests/ledger/test_export.py runs the exporter on every database).  Bundles a
correct ledger would never write -- an event signed by the wrong party, a
revoked key -- come from ``rogue_bundle``, a log that signs whatever it is
given, as a compromised or buggy log would: the replay (step 5) must catch
what the log's signature vouches for.
"""

from __future__ import annotations

import base64
import io
import itertools
import os
import pickle
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from encd.bundle import (
    Bundle,
    BundleEntry,
    BundleHeader,
    RootMismatch,
    failed_step,
    read_bundle,
    verify_bundle,
)
from encd.canonical import canonical_bytes, parse_canonical
from encd.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from encd.document import STATEMENT
from encd.errors import Conflict, Error, InvalidInput, RuleViolation, VerificationError
from encd.events import Event, event_id
from encd.keys import SigningKey
from encd.logentry import LogEntry
from encd.merkle import CompactRange, InclusionError, inclusion_proof, short
from encd.title import Status
from ledger.export import export_document, export_ledger
from ledger.ledger import Ledger
from tests.kit import Cast, corridor_cast, corridor_document, resign, seeded_key

LOG_KEY = seeded_key("encd.test/log", "log")
TRUSTED = LOG_KEY.public
DOC = corridor_document()["id"]
SMALL = "CQ-SMALL-0001"
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


# --- the story ------------------------------------------------------------------------------


def step(cast: Cast, type: str, body: dict[str, Any], *signers: str, doc: str = DOC) -> bytes:
    raw = cast.doc_event(doc, type, body, [cast.actor(s) for s in signers])
    cast.append(raw)
    return raw


def pledge_body(cast: Cast) -> dict[str, Any]:
    return {
        "pledgee": cast.actor("bank").id,
        "loan_ref": "CQRCB-2026-0001",
        "amount": "100000.00",
        "currency": "USD",
        "registry_ref": "PBOC-CRCS-2026-000001",
        "maturity": "2026-08-01",
    }


def milestone_body(kind: str = "departed") -> dict[str, Any]:
    return {
        "kind": kind,
        "location": {"locode": "CNCKG", "name": "Luoqi Railway Port, Jiangjin"},
        "at": "2026-05-01T08:00:00Z",
    }


def corridor_story(cast: Cast) -> dict[str, bytes]:
    """Issue, a milestone, pledge, release, transfer, surrender, deliver; the events by name."""
    exporter = cast.actor("exporter").id
    return {
        "issue": step(
            cast, "issue", {"content": corridor_document(), "holder": exporter}, "carrier"
        ),
        "milestone": step(cast, "milestone", milestone_body(), "agent"),
        "pledge": step(cast, "pledge", pledge_body(cast), "exporter", "bank"),
        "release": step(cast, "release", {}, "bank"),
        "transfer": step(cast, "transfer", {"to": cast.actor("buyer").id}, "exporter"),
        "surrender": step(cast, "surrender", {}, "buyer"),
        "deliver": step(cast, "deliver", {}, "carrier"),
    }


def small_document(cast: Cast) -> dict[str, Any]:
    place = {"locode": "CNCKG", "name": "Luoqi"}
    return {
        "id": SMALL,
        "statement": STATEMENT,
        "negotiability": {"kind": "to_order_blank"},
        "carrier": {"name": "Carrier", "legal_id": cast.actor("carrier").id},
        "consignor": {"name": "Exporter", "legal_id": cast.actor("exporter").id},
        "place_of_receipt": place,
        "place_of_delivery": {"locode": "SGSIN", "name": "Singapore"},
        "taken_in_charge": "2026-03-10",
        "legs": [
            {
                "mode": "RAIL",
                "from": place,
                "to": {"locode": "CNQZH", "name": "Qinzhou"},
                "reference": "R1",
            }
        ],
        "goods": [
            {
                "description": "Parts",
                "hs_code": "871410",
                "packages": 1,
                "package_kind": "case",
                "gross_weight_kg": "10",
                "marks": "",
            }
        ],
        "containers": [],
        "underlying": [{"kind": "customs_entry", "number": "800020260000001"}],
        "place_of_issue": place,
        "issued_on": "2026-03-10",
        "freight": "prepaid",
    }


def ticking(start: datetime = T0) -> Any:
    """A clock one second further at every call: bundles are the same bytes at every run."""
    counter = itertools.count()
    return lambda: start + timedelta(seconds=next(counter))


@dataclass
class Story:
    cast: Cast
    events: dict[str, bytes]
    document: bytes  # the corridor document's bundle
    ledger: bytes  # the full-ledger export
    small: bytes  # a small document's bundle, for flipping bits


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    cast = corridor_cast()
    events = corridor_story(cast)
    path: Path = tmp_path_factory.mktemp("bundle") / "ledger.db"
    with Ledger(f"sqlite:///{path}", LOG_KEY, clock=ticking()) as ledger:
        for raw in cast.log:
            ledger.append(raw)
        document, export = io.BytesIO(), io.BytesIO()
        export_document(ledger, DOC, document)
        export_ledger(ledger, export)
    small = corridor_cast()
    step(
        small,
        "issue",
        {"content": small_document(small), "holder": small.actor("exporter").id},
        "carrier",
        doc=SMALL,
    )
    step(small, "surrender", {}, "exporter", doc=SMALL)
    path = tmp_path_factory.mktemp("small") / "ledger.db"
    with Ledger(f"sqlite:///{path}", LOG_KEY, clock=ticking()) as ledger:
        for raw in small.log:
            ledger.append(raw)
        small_bundle = io.BytesIO()
        export_document(ledger, SMALL, small_bundle)
    return Story(cast, events, document.getvalue(), export.getvalue(), small_bundle.getvalue())


# --- helpers to take bundles apart ------------------------------------------------------------


def split(bundle: bytes) -> list[bytes]:
    return bundle.splitlines(keepends=True)


def join(lines: list[bytes]) -> bytes:
    return b"".join(lines)


def value(line: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = parse_canonical(line.rstrip(b"\n"))
    return parsed


def encode(value: dict[str, Any]) -> bytes:
    return canonical_bytes(value) + b"\n"


def line_of(bundle: bytes, raw: bytes) -> tuple[int, int]:
    """(line number, log index) of the entry holding the event ``raw``."""
    for number, line in enumerate(split(bundle), 1):
        if number > 1 and value(line)["event"].encode() == raw:
            return number, value(line)["index"]
    raise AssertionError("event not in the bundle")


def fails(bundle: bytes, error: type[Error], step_number: int, message: str) -> Error:
    """Verification fails at ``step_number`` with exactly ``message`` (a regex if it starts with ^)."""
    with pytest.raises(error) as info:
        verify_bundle(bundle, TRUSTED)
    text = str(info.value)
    if message.startswith("^"):
        assert re.fullmatch(message, text), text
    else:
        assert text == message
    assert failed_step(info.value) == step_number
    return info.value


def checkpoint_of(bundle: bytes) -> Checkpoint:
    return open_checkpoint(value(split(bundle)[0])["checkpoint"].encode(), TRUSTED)


def rogue_bundle(
    events: list[bytes], kind: str, doc: str | None = None, key: SigningKey = LOG_KEY
) -> bytes:
    """A bundle of a log that holds exactly ``events``, signed by ``key`` without question."""
    nodes: dict[tuple[int, int], bytes] = {}
    tree = CompactRange()
    for i, raw in enumerate(events):
        tree, created = tree.append(LogEntry(event_id(raw), T0_MS + i).leaf_hash)
        nodes.update({(n.level, n.index): n.hash for n in created})
    checkpoint = Checkpoint(key.name, tree.size, tree.root())
    header = BundleHeader(
        kind, key.name, key.public, doc, tree.size, sign_checkpoint(checkpoint, key)
    )
    lines = [header.to_line()]
    for i, raw in enumerate(events):
        proof = None
        if kind == "document":
            proof = tuple(inclusion_proof(i, tree.size, lambda level, index: nodes[(level, index)]))
        lines.append(BundleEntry(i, T0_MS + i, raw, proof).to_line())
    return join(lines)


# --- honest bundles verify --------------------------------------------------------------------


def test_the_document_bundle_verifies_with_its_final_title(story: Story) -> None:
    report = verify_bundle(story.document, TRUSTED)
    cast = story.cast
    assert report.kind == "document" and report.document == DOC
    assert report.checkpoint.size == len(cast.log)
    state = report.documents[DOC]
    assert state == cast.replay.documents[DOC]
    assert state.status is Status.DELIVERED and state.holder == cast.actor("buyer").id
    # the parties its events depend on, and no others: not the second bank nor the auditor
    expected = {
        cast.actor(a).id for a in ("operator", "carrier", "exporter", "buyer", "bank", "agent")
    }
    assert set(report.parties) == expected
    assert report.entries == len(expected) + len(story.events)
    assert list(report.documents) == [DOC]


def test_the_ledger_export_verifies_every_entry(story: Story) -> None:
    report = verify_bundle(story.ledger, TRUSTED)
    assert report.kind == "ledger" and report.document is None
    assert report.entries == report.checkpoint.size == len(story.cast.log)
    assert dict(report.documents) == story.cast.replay.documents
    assert dict(report.parties) == story.cast.replay.parties


def test_a_stream_verifies_as_the_bytes_do(story: Story) -> None:
    for bundle in (story.document, story.ledger):
        assert verify_bundle(io.BytesIO(bundle), TRUSTED) == verify_bundle(bundle, TRUSTED)


def test_parsing_round_trips_to_the_same_bytes(story: Story) -> None:
    for bundle in (story.document, story.ledger, story.small):
        parsed = Bundle.parse(bundle)
        assert parsed.to_bytes() == bundle
    header, entries = read_bundle(io.BytesIO(story.ledger))
    first = next(entries)
    assert header.kind == "ledger" and first.index == 0 and first.proof is None and first.line == 2
    assert first.log_entry.event_id == event_id(story.cast.log[0])


def test_the_format_of_a_line(story: Story) -> None:
    header = value(split(story.document)[0])
    assert list(header) == ["checkpoint", "document", "format", "kind", "log_key", "origin", "size"]
    assert header["log_key"] == TRUSTED.vkey and header["origin"] == TRUSTED.name
    entry = value(split(story.document)[1])
    assert list(entry) == ["event", "index", "proof", "sequenced_at"]
    assert entry["event"].encode() == story.cast.log[0] and entry["index"] == 0
    assert list(value(split(story.ledger)[1])) == ["event", "index", "sequenced_at"]


# --- step 1: the header -------------------------------------------------------------------------


def test_a_wrong_log_key_fails_step_1(story: Story) -> None:
    other = seeded_key("encd.test/log", "another log")
    with pytest.raises(VerificationError) as info:
        verify_bundle(story.document, other.public)
    assert str(info.value) == (
        f"step 1: line 1: log_key: the bundle is for log key {TRUSTED.vkey}, "
        f"not the trusted log key {other.public.vkey}"
    )
    assert failed_step(info.value) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "encd-bundle/v2"}, "format: expected 'encd-bundle/v1', got 'encd-bundle/v2'"),
        ({"kind": "party"}, "kind: expected 'document' or 'ledger', got 'party'"),
        ({"document": None}, "document: a document bundle names its document id, got None"),
        ({"size": -1}, "size: expected an integer >= 0, got -1"),
        ({"extra": 1}, "extra: unknown field"),
        ({"checkpoint": 7}, "checkpoint: expected a non-empty string, got 7"),
        (
            {"log_key": TRUSTED.vkey.replace("+", "+ ", 1)},
            f"log_key: key hash must be 8 lowercase hex digits, got ' {TRUSTED.hash.hex()}'",
        ),
    ],
)
def test_a_malformed_header_fails_step_1(
    story: Story, change: dict[str, Any], message: str
) -> None:
    lines = split(story.document)
    lines[0] = encode({**value(lines[0]), **change})
    fails(join(lines), InvalidInput, 1, f"step 1: line 1: {message}")


def test_a_header_that_is_not_canonical_or_missing_fails_step_1(story: Story) -> None:
    lines = split(story.document)
    spaced = lines[0].replace(b'","', b'", "', 1)
    fails(
        join([spaced, *lines[1:]]),
        InvalidInput,
        1,
        "step 1: line 1: JSON is not in canonical form (RFC 8785)",
    )
    fails(b"", InvalidInput, 1, "step 1: line 1: the bundle is empty; line 1 must be its header")
    fails(
        lines[0].rstrip(b"\n"),
        InvalidInput,
        1,
        "step 1: line 1: the line does not end with a newline",
    )


# --- step 2: the checkpoint -----------------------------------------------------------------------


def test_a_checkpoint_from_another_log_fails_step_2(story: Story) -> None:
    lines = split(story.document)
    header = value(lines[0])
    checkpoint = checkpoint_of(story.document)
    for other in (seeded_key("encd.test/log", "impostor"), seeded_key("encd.test/other", "log")):
        forged = sign_checkpoint(Checkpoint(other.name, checkpoint.size, checkpoint.root), other)
        lines[0] = encode({**header, "checkpoint": forged.decode()})
        fails(
            join(lines),
            VerificationError,
            2,
            f"step 2: line 1: checkpoint: note has no signature from a known key (known: {TRUSTED.key_id})",
        )


def test_a_changed_size_fails_step_2(story: Story) -> None:
    lines = split(story.document)
    size = checkpoint_of(story.document).size
    lines[0] = encode({**value(lines[0]), "size": size + 1})
    fails(
        join(lines),
        VerificationError,
        2,
        f"step 2: line 1: size: the header says {size + 1}; the checkpoint's tree has {size}",
    )


def test_a_changed_origin_fails_step_2(story: Story) -> None:
    lines = split(story.document)
    lines[0] = encode({**value(lines[0]), "origin": "encd.test/elsewhere"})
    fails(
        join(lines),
        VerificationError,
        2,
        "step 2: line 1: origin: the header says 'encd.test/elsewhere'; the checkpoint's is 'encd.test/log'",
    )


# --- step 3: the entries ----------------------------------------------------------------------------


def test_reordered_entries_fail_step_3(story: Story) -> None:
    for bundle, message in (
        (story.document, "index: entries must be in increasing log order; {a} follows {b}"),
        (story.ledger, "index: a ledger export lists every entry in order: expected {a}, got {b}"),
    ):
        lines = split(bundle)
        lines[3], lines[4] = lines[4], lines[3]
        a, b = value(lines[4])["index"], value(lines[3])["index"]
        if bundle is story.document:
            fails(
                join(lines),
                InvalidInput,
                3,
                f"step 3: line 5 (index {a}): " + message.format(a=a, b=b),
            )
        else:
            fails(
                join(lines),
                InvalidInput,
                3,
                f"step 3: line 4 (index {b}): " + message.format(a=a, b=b),
            )


def test_a_missing_entry_of_a_ledger_export_fails_step_3(story: Story) -> None:
    lines = split(story.ledger)
    del lines[5]  # index 4
    fails(
        join(lines),
        InvalidInput,
        3,
        "step 3: line 6 (index 5): index: a ledger export lists every entry in order: expected 4, got 5",
    )


def test_an_index_beyond_the_checkpoint_fails_step_3(story: Story) -> None:
    lines = split(story.document)
    size = checkpoint_of(story.document).size
    lines[-1] = encode({**value(lines[-1]), "index": size})
    fails(
        join(lines),
        InvalidInput,
        3,
        f"step 3: line {len(lines)} (index {size}): index: {size} is not in the checkpoint's tree of {size} entries",
    )


def test_a_malformed_entry_fails_step_3_naming_line_and_field(story: Story) -> None:
    lines = split(story.document)
    entry = value(lines[4])
    cases = [
        (
            {**entry, "proof": [*entry["proof"][:2], "not base64!", *entry["proof"][3:]]},
            "proof[2]: 'not base64!' is not valid base64",
        ),
        (
            {**entry, "proof": [base64.b64encode(b"short").decode()]},
            "proof[0]: expected a 32-byte hash, got 5 bytes",
        ),
        (
            {k: v for k, v in entry.items() if k != "proof"},
            "proof: a document bundle gives each entry's inclusion proof",
        ),
        ({**entry, "sequenced_at": "soon"}, "sequenced_at: expected an integer >= 0, got 'soon'"),
        ({**entry, "index": True}, "index: expected an integer >= 0, got bool"),
        ({**entry, "note": "x"}, "note: unknown field"),
        (
            {**entry, "event": entry["event"].replace('"seq":0', '"seq": 0')},
            "event envelope: JSON is not in canonical form (RFC 8785)",
        ),
    ]
    for changed, message in cases:
        lines[4] = encode(changed)
        where = (
            "step 3: line 5"
            if "event" not in message
            else f"step 3: line 5 (index {entry['index']})"
        )
        fails(join(lines), InvalidInput, 3, f"{where}: {message}")
    lines[4] = b"[1,2]\n"
    fails(join(lines), InvalidInput, 3, "step 3: line 5: expected a JSON object, got list")
    lines[4] = b"\n"
    fails(
        join(lines),
        InvalidInput,
        3,
        "step 3: line 5: the line is empty; every line is one JSON object",
    )
    lines[4] = encode(entry)[:-1] + b"\r\n"  # a bundle saved with Windows line ends
    fails(
        join(lines),
        InvalidInput,
        3,
        "step 3: line 5: the line ends with CR LF; lines end with a bare LF (\\n)",
    )


def test_a_ledger_export_entry_with_a_proof_fails_step_3(story: Story) -> None:
    lines = split(story.ledger)
    lines[2] = encode({**value(lines[2]), "proof": []})
    fails(
        join(lines),
        InvalidInput,
        3,
        "step 3: line 3: proof: a ledger export has no proofs: its root is recomputed",
    )


def test_an_event_the_parser_chokes_on_fails_step_3_as_an_encd_error() -> None:
    """A type that is not a string once made Event.parse raise TypeError; an audit never does."""
    text = canonical_bytes(
        {"v": 1, "type": ["transfer"], "seq": 0, "prev": None, "time": "2026-05-01T08:00:00Z"}
        | {"body": {}, "doc": DOC}
    )
    raw = text + b"\n\n" + "— X ".encode() + base64.b64encode(bytes(68)) + b"\n"
    with pytest.raises(InvalidInput) as info:
        verify_bundle(rogue_bundle([raw], "ledger"), TRUSTED)
    assert failed_step(info.value) == 3
    assert str(info.value).startswith("step 3: line 2 (index 0): event")


def test_an_event_of_another_document_fails_step_3(story: Story) -> None:
    lines = split(story.document)
    lines[0] = encode({**value(lines[0]), "document": "CQ-OTHER-0001"})
    number, index = line_of(story.document, story.events["issue"])
    fails(
        join(lines),
        InvalidInput,
        3,
        f"step 3: line {number} (index {index}): event: an event of document {DOC} in the bundle of CQ-OTHER-0001",
    )


# --- step 4: the log ---------------------------------------------------------------------------------


def test_a_changed_byte_in_an_event_fails_step_4(story: Story) -> None:
    checkpoint = checkpoint_of(story.document)
    number, index = line_of(story.document, story.events["pledge"])
    lines = split(story.document)
    lines[number - 1] = lines[number - 1].replace(b"100000.00", b"100000.01")
    error = fails(
        join(lines),
        InclusionError,
        4,
        rf"^step 4: line {number} \(index {index}\): inclusion proof for leaf {index} of {checkpoint.size}: "
        rf"computed root [0-9a-f]{{16}}…, expected {short(checkpoint.root)}$",
    )
    # the error carries its evidence: the leaf, its index, the proof and the root it missed
    assert isinstance(error, InclusionError)
    changed = story.events["pledge"].replace(b"100000.00", b"100000.01")
    assert (
        error.leaf_hash
        == LogEntry(event_id(changed), value(lines[number - 1])["sequenced_at"]).leaf_hash
    )
    assert (error.index, error.size, error.root) == (index, checkpoint.size, checkpoint.root)


def test_a_changed_byte_in_a_ledger_export_fails_step_4_though_replay_fails_first(
    story: Story,
) -> None:
    """The changed event no longer verifies (step 5), but the root is what proves it forged."""
    checkpoint = checkpoint_of(story.ledger)
    number, _ = line_of(story.ledger, story.events["pledge"])
    lines = split(story.ledger)
    lines[number - 1] = lines[number - 1].replace(b"100000.00", b"100000.01")
    error = fails(
        join(lines),
        RootMismatch,
        4,
        rf"^step 4: the root of the {checkpoint.size} entries is [0-9a-f]{{16}}…; "
        rf"the checkpoint's root is {short(checkpoint.root)}$",
    )
    assert isinstance(error, RootMismatch) and error.checkpoint == checkpoint


def test_a_changed_proof_hash_fails_step_4(story: Story) -> None:
    lines = split(story.document)
    entry = value(lines[6])
    entry["proof"][1] = base64.b64encode(bytes(32)).decode()
    lines[6] = encode(entry)
    size = checkpoint_of(story.document).size
    fails(
        join(lines),
        InclusionError,
        4,
        rf"^step 4: line 7 \(index {entry['index']}\): inclusion proof for leaf {entry['index']} of {size}: computed root [0-9a-f]{{16}}…, expected [0-9a-f]{{16}}…$",
    )
    entry["proof"] = entry["proof"][:-1]
    lines[6] = encode(entry)
    n = len(entry["proof"])
    fails(
        join(lines),
        InclusionError,
        4,
        f"step 4: line 7 (index {entry['index']}): inclusion proof for leaf {entry['index']} of {size}: proof has {n} hashes, expected {n + 1}",
    )


def test_an_inserted_foreign_event_fails_step_4(story: Story) -> None:
    """A correctly signed event that the log never held, slipped in at a free index."""
    cast = story.cast
    foreign = cast.doc_event(DOC, "milestone", milestone_body("arrived"), [cast.actor("agent")])
    lines = split(story.document)
    indices = [value(line)["index"] for line in lines[1:]]
    free = next(i for i in range(len(cast.log)) if i not in indices)
    at = next(n for n, i in enumerate(indices, 1) if i > free)  # the line it goes before
    neighbour = value(lines[at])
    lines.insert(at, encode({**neighbour, "index": free, "event": foreign.decode()}))
    size = checkpoint_of(story.document).size
    fails(
        join(lines),
        InclusionError,
        4,
        rf"^step 4: line {at + 1} \(index {free}\): inclusion proof for leaf {free} of {size}: computed root [0-9a-f]{{16}}…, expected [0-9a-f]{{16}}…$",
    )


def test_a_truncated_ledger_export_fails_step_4(story: Story) -> None:
    lines = split(story.ledger)
    size = len(lines) - 1
    fails(
        join(lines[:-1]),
        VerificationError,
        4,
        f"step 4: the export holds {size - 1} entries; the checkpoint's tree has {size}",
    )


# --- step 5: the replay --------------------------------------------------------------------------------


def test_a_missing_document_event_fails_step_5(story: Story) -> None:
    events = story.events
    number, index = line_of(story.document, events["pledge"])
    lines = split(story.document)
    del lines[number - 1]
    fails(
        join(lines),
        Conflict,
        5,
        f"step 5: line {number} (index {index + 1}): document {DOC}: chain broken: expected seq 2 after "
        f"{event_id(events['milestone'])}, got seq 3 after {event_id(events['pledge'])}",
    )


def test_a_missing_party_event_fails_step_5(story: Story) -> None:
    cast = story.cast
    bank = cast.actor("bank")
    number, _ = line_of(story.document, cast.log[4])  # the bank's registration
    assert Event.parse(cast.log[4]).subject == bank.id
    lines = split(story.document)
    del lines[number - 1]
    pledge_line, pledge_index = line_of(story.document, story.events["pledge"])
    fails(
        join(lines),
        VerificationError,
        5,
        f"step 5: line {pledge_line - 1} (index {pledge_index}): signature by {bank.key.public.key_id}: "
        f"{bank.id} is not a registered party",
    )


def test_a_bundle_without_the_first_entry_fails_step_5(story: Story) -> None:
    lines = split(story.document)
    del lines[1]
    fails(
        join(lines),
        VerificationError,
        5,
        "step 5: line 2 (index 1): the first entry must be the log's first, index 0 (the operator's own registration)",
    )


@pytest.fixture(scope="module")
def before_transfer() -> tuple[Cast, list[bytes], bytes]:
    """A cast up to just before the transfer; the log so far and the honest transfer."""
    cast = corridor_cast()
    events = corridor_story(cast)
    log = cast.log[: cast.log.index(events["transfer"])]
    return cast, log, events["transfer"]


@pytest.mark.parametrize("kind", ["document", "ledger"])
def test_a_validly_signed_transfer_by_a_non_holder_fails_step_5(
    before_transfer: tuple[Cast, list[bytes], bytes], kind: str
) -> None:
    cast, log, transfer = before_transfer
    buyer, exporter = cast.actor("buyer"), cast.actor("exporter")
    forged = resign(transfer, [buyer.key])  # mutated and re-signed: the signature is valid
    bundle = rogue_bundle([*log, forged], kind, DOC if kind == "document" else None)
    fails(
        bundle,
        RuleViolation,
        5,
        f"step 5: line {len(log) + 2} (index {len(log)}): transfer must be signed by the holder "
        f"{exporter.id}; signed by {buyer.id}",
    )


@pytest.mark.parametrize("kind", ["document", "ledger"])
def test_a_signature_by_a_key_the_party_never_had_fails_step_5(
    before_transfer: tuple[Cast, list[bytes], bytes], kind: str
) -> None:
    cast, log, transfer = before_transfer
    exporter = cast.actor("exporter")
    mallory = seeded_key(exporter.id, "mallory")
    bundle = rogue_bundle(
        [*log, resign(transfer, [mallory])], kind, DOC if kind == "document" else None
    )
    fails(
        bundle,
        VerificationError,
        5,
        f"step 5: line {len(log) + 2} (index {len(log)}): signature by {mallory.public.key_id}: "
        f"no such key of party {exporter.id}",
    )


def test_a_signature_that_does_not_verify_fails_step_5(
    before_transfer: tuple[Cast, list[bytes], bytes],
) -> None:
    cast, log, transfer = before_transfer
    event = Event.parse(transfer)
    other = resign(transfer, [cast.actor("exporter").key], body__to=cast.actor("bank2").id)
    # the honest envelope with the signature of another envelope by the same key
    spliced = event.text + other[len(Event.parse(other).text) :]
    bundle = rogue_bundle([*log, spliced], "ledger")
    fails(
        bundle,
        VerificationError,
        5,
        f"step 5: line {len(log) + 2} (index {len(log)}): signature by "
        f"{cast.actor('exporter').key.public.key_id} does not verify",
    )


def test_a_signature_by_a_revoked_key_fails_step_5() -> None:
    cast = corridor_cast()
    exporter = cast.actor("exporter")
    old = exporter.key
    step(cast, "issue", {"content": corridor_document(), "holder": exporter.id}, "carrier")
    new = seeded_key(exporter.id, "exporter new")
    cast.append(cast.party_event(exporter, "add_key", {"key": new.public.vkey}, [old]))
    cast.append(cast.party_event(exporter, "revoke_key", {"key_id": old.public.key_id}, [new]))
    transfer = cast.doc_event(
        DOC, "transfer", {"to": cast.actor("buyer").id}, [cast.actor("exporter")]
    )
    assert Event.parse(transfer).signatures[0].key_hash == old.public.hash
    bundle = rogue_bundle([*cast.log, transfer], "document", DOC)
    fails(
        bundle,
        VerificationError,
        5,
        f"step 5: line {len(cast.log) + 2} (index {len(cast.log)}): signature by {old.public.key_id}: the key was revoked",
    )


def test_the_lowest_failing_step_is_reported(story: Story) -> None:
    """A chain broken early (step 5) and a bad proof later (step 4): step 4 is reported."""
    number, _ = line_of(story.document, story.events["pledge"])
    lines = split(story.document)
    del lines[number - 1]
    last = value(lines[-1])
    last["proof"][0] = base64.b64encode(bytes(32)).decode()
    lines[-1] = encode(last)
    with pytest.raises(InclusionError) as info:
        verify_bundle(join(lines), TRUSTED)
    assert failed_step(info.value) == 4
    assert str(info.value).startswith(f"step 4: line {len(lines)} (index {last['index']}): ")


# --- step 6: the document --------------------------------------------------------------------------------


def test_a_document_bundle_without_its_document_fails_step_6(story: Story) -> None:
    lines = split(story.document)
    party_lines = [line for line in lines[1:] if '"party' in value(line)["event"].split("\n")[0]]
    fails(
        join([lines[0], *party_lines]),
        VerificationError,
        6,
        f"step 6: the bundle holds no event of document {DOC}",
    )


# --- any single bit -----------------------------------------------------------------------------------------


BIT_STRIDE = 7  # every 7th bit: 7 and 8 are coprime, so every bit position of a byte is hit


def test_flipping_any_bit_of_a_small_bundle_raises_an_encd_error(story: Story) -> None:
    """Each flip fails verification with an encd Error naming its step, never another exception.

    The bundle is 4.3 KB (34,700 bits).  Every 7th bit is flipped, about 5,000
    verifications in ~4 s; every bit takes ~30 s, too slow for each run.  As 7
    and 8 are coprime the stride still reaches every bit position of a byte.
    """
    bundle = story.small
    assert verify_bundle(bundle, TRUSTED).documents[SMALL].status is Status.SURRENDERED
    steps: dict[int | None, int] = {}
    for bit in range(0, len(bundle) * 8, BIT_STRIDE):
        flipped = bytearray(bundle)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            verify_bundle(bytes(flipped), TRUSTED)
        except Error as exc:
            step_number = failed_step(exc)
            steps[step_number] = steps.get(step_number, 0) + 1
        else:  # pragma: no cover - the assertion's message
            raise AssertionError(
                f"bit {bit} (byte {bit // 8}) flipped and the bundle still verified"
            )
    assert None not in steps and set(steps) <= {1, 2, 3, 4, 5, 6}
    assert steps.get(3, 0) and steps.get(4, 0)


def test_the_worked_example_of_log_md() -> None:
    cast = corridor_cast()
    first = LogEntry(event_id(cast.log[0]), T0_MS)
    second = LogEntry(event_id(cast.log[1]), T0_MS + 1000)
    assert T0_MS == 1777622400000 and T0_MS.to_bytes(8, "big").hex() == "0000019de28d3c00"
    assert first.to_bytes().hex() == (
        "7f9631bc8e4557de8f01699e96fb49a40dbb631efe33ccf16b176cc11b9ede460000019de28d3c00"
    )
    assert (
        first.leaf_hash.hex() == "716cc4cb265d58336f189cdb0883ea79c6f0b79a8a457f7cb66e22bec47ce57c"
    )
    assert second.event_id.startswith("2d7587f0") and second.event_id.endswith("345b0eff")
    assert (
        second.leaf_hash.hex() == "67b51d629b4eeefc673e049663aea618451a0cd39f4b2a6a271560cb8e8bf019"
    )
    tree, _ = CompactRange().append(first.leaf_hash)
    tree, _ = tree.append(second.leaf_hash)
    assert base64.b64encode(tree.root()).decode() == "t8LWde0JDZyr0CA2XSRWX+cqnGGJkpRN/NWPxJ7OrMw="
    assert TRUSTED.vkey == "encd.test/log+6f73c67b+AWag6cppBjEBDURHA/JP2lMf7oW/tUVvrkiie9C0nYzy"


# --- signature checks in worker processes (encd.sigcheck) ------------------------------------


@pytest.fixture()
def processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ledger export checked in worker processes, in chunks of 3 (so that several
    chunks are out and back while the main thread parses and replays)."""
    import encd.bundle

    monkeypatch.setattr(encd.bundle, "PROCESS_MIN_ENTRIES", 0)
    monkeypatch.setattr(encd.bundle, "REPLAY_CHUNK", 3)


def outcome(bundle: bytes) -> tuple[str, Any]:
    try:
        report = verify_bundle(bundle, TRUSTED)
    except Error as exc:
        return (type(exc).__name__, str(exc))
    return ("ok", (report.entries, dict(report.documents), dict(report.parties)))


def test_worker_processes_check_what_threads_check(
    story: Story, before_transfer: tuple[Cast, list[bytes], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An honest export, forged ones and flipped bits: the same verdict and message either way."""
    import encd.bundle
    import encd.sigcheck

    cast, log, transfer = before_transfer
    exporter, buyer = cast.actor("exporter"), cast.actor("buyer")
    event = Event.parse(transfer)
    other = resign(transfer, [exporter.key], body__to=cast.actor("bank2").id)
    bundles = [
        story.ledger,
        rogue_bundle([*log, resign(transfer, [buyer.key])], "ledger"),
        rogue_bundle([*log, event.text + other[len(Event.parse(other).text) :]], "ledger"),
        rogue_bundle([*log, resign(transfer, [seeded_key(exporter.id, "mallory")])], "ledger"),
    ]
    flipped = bytearray(story.ledger)
    for bit in range(8 * len(split(story.ledger)[0]) + 5, len(flipped) * 8, 997):
        changed = bytearray(flipped)
        changed[bit // 8] ^= 1 << (bit % 8)
        bundles.append(bytes(changed))
    with monkeypatch.context() as threads:
        threads.setattr(encd.bundle, "REPLAY_CHUNK", 3)
        expected = [outcome(bundle) for bundle in bundles]
    monkeypatch.setattr(encd.bundle, "PROCESS_MIN_ENTRIES", 0)
    monkeypatch.setattr(encd.bundle, "REPLAY_CHUNK", 3)
    started = encd.sigcheck.workers()
    assert started is not None and not started.broken
    answers: list[int] = []
    receive = started.receive
    monkeypatch.setattr(started, "receive", lambda: answers.append(1) or receive())
    assert [outcome(bundle) for bundle in bundles] == expected
    assert len(answers) > len(bundles)  # the workers did check
    assert expected[0][0] == "ok" and {kind for kind, _ in expected[1:]} - {"ok"}
    assert encd.sigcheck.workers() is started  # kept for the next audit, free again
    assert started.lock.acquire(blocking=False)
    started.lock.release()


def test_dead_workers_cost_speed_not_the_verdict(story: Story, processes: None) -> None:
    import encd.sigcheck

    expected = outcome(story.ledger)
    assert expected[0] == "ok"
    started = encd.sigcheck.workers()
    assert started is not None
    for proc in started._procs:
        proc.kill()
        proc.join()
    assert outcome(story.ledger) == expected  # checked again on the main thread
    assert started.broken
    fresh = encd.sigcheck.workers()
    assert fresh is not None and fresh is not started and not fresh.broken
    assert outcome(story.ledger) == expected


def test_a_busy_pool_leaves_the_next_audit_to_threads(story: Story, processes: None) -> None:
    import encd.sigcheck

    started = encd.sigcheck.workers()
    assert started is not None
    with started.lock:  # another audit has the workers
        assert outcome(story.ledger)[0] == "ok"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_workers_keep_no_file_of_their_parent(tmp_path: Path) -> None:
    import encd.sigcheck

    with (tmp_path / "held").open("w"):
        fresh = encd.sigcheck.Workers(1)
        try:
            assert fresh._conns[0].send_bytes(pickle.dumps((None, []))) is None
            assert fresh._conns[0].recv_bytes() == b""  # it has started and answers
            (pid,) = (proc.pid for proc in fresh._procs)
            held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        finally:
            fresh.close()
    assert not any(str(tmp_path) in target for target in held), held


def test_interrupted_workers_are_not_used_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupt half-way through leaves answers in the pipes: the workers are marked
    broken (encd.sigcheck.workers() then starts new ones) and never read out of step."""
    import encd.sigcheck

    fresh = encd.sigcheck.Workers(1)
    try:
        key = seeded_key("worker.test", "w")
        jobs = [(key.public.raw, b"hello\n", key.sign(b"hello\n"))] * 3
        fresh.send(jobs)
        assert fresh.receive() == [True, True, True]
        fresh.send([(key.public.raw, b"other\n", key.sign(b"hello\n"))])

        def interrupted() -> bytes:
            raise KeyboardInterrupt

        monkeypatch.setattr(fresh._conns[0], "recv_bytes", interrupted)
        with pytest.raises(KeyboardInterrupt):
            fresh.receive()
        assert fresh.broken
    finally:
        fresh.close()


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two CPUs and sched_setaffinity",
)
def test_workers_run_where_their_caller_runs_now() -> None:
    """A benchmark pins its process to one core and unpins it: the workers follow."""
    import encd.sigcheck

    everywhere = os.sched_getaffinity(0)
    key = seeded_key("worker.test", "w")
    job = (key.public.raw, b"hello\n", key.sign(b"hello\n"))
    fresh = encd.sigcheck.Workers(1)
    (pid,) = (proc.pid for proc in fresh._procs)
    try:
        one = {min(everywhere)}
        os.sched_setaffinity(0, one)
        fresh.send([job])
        assert fresh.receive() == [True]
        assert os.sched_getaffinity(pid) == one
        os.sched_setaffinity(0, everywhere)
        fresh.send([job])
        assert fresh.receive() == [True]
        assert os.sched_getaffinity(pid) == everywhere
    finally:
        os.sched_setaffinity(0, everywhere)
        fresh.close()
