"""The title rules of design.md §4, one behaviour at a time, on the corridor cast."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from encd.errors import Conflict, InvalidInput, RuleViolation, VerificationError
from encd.events import Event, content_digest
from encd.title import RULES, Status
from tests.kit import Cast, corridor_cast, corridor_document, resign

DOC = corridor_document()["id"]


@pytest.fixture()
def cast() -> Cast:
    return corridor_cast()


def issue(cast: Cast, content: dict[str, Any] | None = None, holder: str | None = None) -> None:
    content = content or corridor_document()
    cast.append(
        cast.doc_event(
            content["id"],
            "issue",
            {"content": content, "holder": holder or cast.actor("exporter").id},
            [cast.actor("carrier")],
        )
    )


def pledge_body(cast: Cast, bank: str = "bank", amount: str = "100000.00") -> dict[str, Any]:
    return {
        "pledgee": cast.actor(bank).id,
        "loan_ref": "CQRCB-2026-0001",
        "amount": amount,
        "currency": "USD",
        "registry_ref": "PBOC-CRCS-2026-000001",
        "maturity": "2026-08-01",
    }


def step(cast: Cast, type: str, body: dict[str, Any], *signers: str) -> None:
    cast.append(cast.doc_event(DOC, type, body, [cast.actor(s) for s in signers]))


def rejects(
    cast: Cast, error: type[Exception], message: str, type: str, body: dict[str, Any], *signers: str
) -> None:
    before = cast.replay.documents.get(DOC)
    with pytest.raises(error) as info:
        step(cast, type, body, *signers)
    assert str(info.value) == message
    assert cast.replay.documents.get(DOC) == before  # nothing changed


DEPARTED = {
    "kind": "departed",
    "location": {"locode": "CNCKG", "name": "Luoqi, Jiangjin"},
    "at": "2026-05-01T09:00:00Z",
}


def state(cast: Cast):  # type: ignore[no-untyped-def]
    return cast.replay.documents[DOC]


def test_the_corridor_lifecycle(cast: Cast) -> None:
    exporter, buyer, bank = (cast.actor(n).id for n in ("exporter", "buyer", "bank"))
    issue(cast)
    assert state(cast).holder == exporter and state(cast).status is Status.ACTIVE
    step(
        cast,
        "milestone",
        DEPARTED,
        "agent",
    )
    assert state(cast).location is not None and state(cast).location.kind == "departed"
    step(cast, "pledge", pledge_body(cast), "exporter", "bank")
    assert (
        state(cast).pledge is not None
        and state(cast).controller == bank
        and state(cast).holder == exporter
    )
    step(cast, "release", {}, "bank")
    assert state(cast).pledge is None and state(cast).controller == exporter
    step(cast, "transfer", {"to": buyer}, "exporter")
    assert state(cast).holder == buyer
    step(cast, "surrender", {}, "buyer")
    assert state(cast).status is Status.SURRENDERED
    step(cast, "deliver", {}, "carrier")
    assert state(cast).status is Status.DELIVERED
    assert cast.replay.cargo == {}  # a delivered document frees its cargo
    assert [e.kind for e in state(cast).endorsements] == ["issue", "transfer"]


def test_cargo_singularity_refuses_a_second_live_document(cast: Cast) -> None:
    issue(cast)
    second = copy.deepcopy(corridor_document())
    second["id"] = "CQ-SECOND-0001"
    second["underlying"] = []
    second["legs"] = [dict(leg, reference=f"X{i}") for i, leg in enumerate(second["legs"])]
    container = second["containers"][0]["number"]
    with pytest.raises(RuleViolation) as info:
        issue(cast, second)
    assert str(info.value) == f"container {container} is already covered by live document {DOC}"
    assert "CQ-SECOND-0001" not in cast.replay.documents


def test_cargo_singularity_is_not_beaten_by_separators(cast: Cast) -> None:
    """Bulk cargo named by its B/L alone: the same number with '-' in it is the same cargo."""
    first = copy.deepcopy(corridor_document())
    first["containers"] = []
    first["underlying"] = [{"kind": "sea_bl", "number": "XBL2026000417"}]
    first["legs"] = [dict(leg, reference=f"XBL202600041{i}") for i, leg in enumerate(first["legs"])]
    issue(cast, first)
    for written in ("XBL-2026000417", "XBL/2026000417", "XBL-2026-000417", "xbl2026000417"):
        second = copy.deepcopy(first)
        second["id"] = "CQ-SECOND-0001"
        second["underlying"] = [{"kind": "sea_bl", "number": written}]
        second["legs"] = [dict(leg, reference=f"Y{i}") for i, leg in enumerate(first["legs"])]
        with pytest.raises((RuleViolation, InvalidInput)) as info:
            issue(cast, second)
        if isinstance(info.value, RuleViolation):
            assert str(info.value) == (
                f"sea bl XBL2026000417 is already covered by live document {DOC} "
                "(numbers are compared without '-' and '/')"
            )
        else:  # lower case is refused as written (identifiers are in normal form)
            assert written.islower()


def test_a_second_pledge_is_refused_while_pledged(cast: Cast) -> None:
    issue(cast)
    step(cast, "pledge", pledge_body(cast), "exporter", "bank")
    rejects(
        cast,
        RuleViolation,
        f"pledge needs a document that is not pledged; {DOC} is pledged to {cast.actor('bank').id}",
        "pledge",
        pledge_body(cast, "bank2"),
        "exporter",
        "bank2",
    )


def test_holder_cannot_transfer_while_pledged(cast: Cast) -> None:
    issue(cast)
    step(cast, "pledge", pledge_body(cast), "exporter", "bank")
    rejects(
        cast,
        RuleViolation,
        f"transfer needs a document that is not pledged; {DOC} is pledged to {cast.actor('bank').id}",
        "transfer",
        {"to": cast.actor("buyer").id},
        "exporter",
    )


def test_pledge_needs_both_holder_and_bank(cast: Cast) -> None:
    issue(cast)
    exporter, bank = cast.actor("exporter").id, cast.actor("bank").id
    rejects(
        cast,
        RuleViolation,
        f"pledge must be signed by the holder {exporter} and the pledgee {bank}; signed by {exporter}",
        "pledge",
        pledge_body(cast),
        "exporter",
    )


def test_pledge_amount_cannot_exceed_declared_value(cast: Cast) -> None:
    issue(cast)
    rejects(
        cast,
        RuleViolation,
        f"pledge amount 999999999.00 USD exceeds the declared value {_declared()} USD",
        "pledge",
        pledge_body(cast, amount="999999999.00"),
        "exporter",
        "bank",
    )


def _declared() -> str:
    from encd.document import Document, declared_value

    value = declared_value(Document.from_json(corridor_document()))
    assert value is not None
    return value.amount


def test_enforce_makes_the_bank_holder(cast: Cast) -> None:
    issue(cast)
    step(cast, "pledge", pledge_body(cast), "exporter", "bank")
    step(cast, "enforce", {"reason": "loan in default"}, "bank")
    assert state(cast).holder == cast.actor("bank").id and state(cast).pledge is None


def test_reject_transfer_reverts_only_right_after_the_transfer(cast: Cast) -> None:
    issue(cast)
    step(cast, "transfer", {"to": cast.actor("buyer").id, "blank": True}, "exporter")
    step(cast, "reject_transfer", {"reason": "not our cargo"}, "buyer")
    assert state(cast).holder == cast.actor("exporter").id
    assert state(cast).endorsements[-1].rejected and state(cast).endorsements[-1].blank
    rejects(
        cast,
        RuleViolation,
        "reject_transfer must come right after a transfer; the last event was reject_transfer",
        "reject_transfer",
        {},
        "exporter",
    )


def test_transfer_by_a_non_holder_is_an_illegal_transition_not_a_bad_signature(cast: Cast) -> None:
    """Mutate and re-sign: a correctly signed transfer by the wrong party fails as illegal."""
    issue(cast)
    good = cast.doc_event(DOC, "transfer", {"to": cast.actor("bank2").id}, [cast.actor("exporter")])
    forged = resign(good, [cast.actor("buyer").key])
    with pytest.raises(RuleViolation) as info:
        cast.append(forged)
    exporter, buyer = cast.actor("exporter").id, cast.actor("buyer").id
    assert str(info.value) == f"transfer must be signed by the holder {exporter}; signed by {buyer}"
    assert info.value.rule == "transfer"


def test_a_changed_byte_is_a_bad_signature(cast: Cast) -> None:
    issue(cast)
    good = cast.doc_event(DOC, "transfer", {"to": cast.actor("buyer").id}, [cast.actor("exporter")])
    tampered = good.replace(b'"blank"', b'"blank"', 1).replace(
        cast.actor("buyer").id.encode(), cast.actor("bank2").id.encode()
    )
    with pytest.raises(VerificationError) as info:
        cast.append(tampered)
    assert (
        str(info.value)
        == f"signature by {cast.actor('exporter').key.public.key_id} does not verify"
    )


def test_a_stale_event_conflicts_and_names_the_head(cast: Cast) -> None:
    issue(cast)
    first = cast.doc_event(
        DOC, "transfer", {"to": cast.actor("buyer").id}, [cast.actor("exporter")]
    )
    second = cast.doc_event(
        DOC, "transfer", {"to": cast.actor("bank2").id}, [cast.actor("exporter")]
    )
    cast.append(first)
    head = state(cast).head
    with pytest.raises(Conflict) as info:
        cast.append(second)
    assert info.value.current_head == head and info.value.current_seq == 1
    assert str(info.value) == (
        f"document {DOC}: chain broken: expected seq 2 after {head}, got seq 1 after {Event.parse(first).prev}"
    )


def test_a_replayed_event_conflicts(cast: Cast) -> None:
    issue(cast)
    transfer = cast.doc_event(
        DOC, "transfer", {"to": cast.actor("buyer").id}, [cast.actor("exporter")]
    )
    cast.append(transfer)
    with pytest.raises(Conflict):
        cast.append(transfer)


def test_revoked_key_no_longer_signs(cast: Cast) -> None:
    issue(cast)
    exporter = cast.actor("exporter")
    cast.append(
        cast.party_event(
            exporter,
            "rotate_key",
            {"old": exporter.key.public.key_id, "new": _new_key(exporter.id).public.vkey},
            [exporter.key],
        )
    )
    with pytest.raises(VerificationError) as info:
        step(cast, "transfer", {"to": cast.actor("buyer").id}, "exporter")
    assert str(info.value) == f"signature by {exporter.key.public.key_id}: the key was revoked"


def _new_key(pid: str):  # type: ignore[no-untyped-def]
    from tests.kit import seeded_key

    return seeded_key(pid, "rotated")


def test_milestone_by_a_stranger_is_refused(cast: Cast) -> None:
    issue(cast)
    carrier = cast.actor("carrier").id
    rejects(
        cast,
        RuleViolation,
        f"milestone must be signed by the carrier {carrier} or its agent; signed by {cast.actor('bank2').id}",
        "milestone",
        {
            "kind": "arrived",
            "location": {"locode": "CNQZH", "name": "Qinzhou"},
            "at": "2026-05-03T09:00:00Z",
        },
        "bank2",
    )


def test_void_only_before_any_transfer_or_pledge(cast: Cast) -> None:
    issue(cast)
    step(cast, "pledge", pledge_body(cast), "exporter", "bank")
    step(cast, "release", {}, "bank")
    rejects(
        cast,
        RuleViolation,
        f"{DOC} was transferred or pledged and can no longer be voided",
        "void",
        {"reason": "issued in error"},
        "carrier",
        "exporter",
    )


def test_void_frees_the_cargo(cast: Cast) -> None:
    issue(cast)
    step(cast, "void", {"reason": "issued in error"}, "carrier", "exporter")
    assert state(cast).status is Status.VOID and cast.replay.cargo == {}
    issue(cast, dict(corridor_document(), id="CQ-REISSUED-0001"))


def test_amend_while_pledged_needs_the_pledgee(cast: Cast) -> None:
    issue(cast)
    step(cast, "pledge", pledge_body(cast), "exporter", "bank")
    new = corridor_document()
    new["goods"][0]["marks"] = "AMENDED MARKS"
    body = {"content": new, "supersedes": content_digest(corridor_document())}
    carrier, exporter, bank = (cast.actor(n).id for n in ("carrier", "exporter", "bank"))
    rejects(
        cast,
        RuleViolation,
        f"amend must be signed by the carrier {carrier} and the holder {exporter} and the pledgee {bank}; "
        f"signed by {', '.join(sorted([carrier, exporter]))}",
        "amend",
        body,
        "carrier",
        "exporter",
    )
    step(cast, "amend", body, "carrier", "exporter", "bank")
    assert state(cast).content_version == 2 and state(cast).content_digest == content_digest(new)


def test_deliver_needs_surrender_first(cast: Cast) -> None:
    issue(cast)
    rejects(
        cast,
        RuleViolation,
        f"deliver needs a document that is surrendered; {DOC} is active",
        "deliver",
        {},
        "carrier",
    )


def test_refuse_returns_to_active(cast: Cast) -> None:
    issue(cast)
    step(cast, "surrender", {}, "exporter")
    step(cast, "refuse", {"reason": "charges unpaid"}, "carrier")
    assert state(cast).status is Status.ACTIVE


def test_switch_to_paper_is_terminal(cast: Cast) -> None:
    issue(cast)
    step(cast, "switch_to_paper", {"paper_document_number": "PAPER-0001"}, "carrier", "exporter")
    assert state(cast).status is Status.SWITCHED_TO_PAPER
    rejects(
        cast,
        RuleViolation,
        f"transfer needs a document that is active; {DOC} is switched_to_paper",
        "transfer",
        {"to": cast.actor("buyer").id},
        "exporter",
    )


def test_instruction_and_acknowledgement(cast: Cast) -> None:
    issue(cast)
    step(
        cast,
        "instruct",
        {"instruction": "Hold the cargo at Qinzhou until further notice."},
        "exporter",
    )
    instruction = state(cast).head
    step(cast, "acknowledge", {"instruction": instruction, "accepted": True}, "carrier")
    assert state(cast).instructions[0].answer is True
    rejects(
        cast,
        RuleViolation,
        f"instruction {instruction} was already answered",
        "acknowledge",
        {"instruction": instruction, "accepted": False},
        "carrier",
    )


def test_unknown_body_field_names_the_field(cast: Cast) -> None:
    issue(cast)
    rejects(
        cast,
        InvalidInput,
        "body.colour: unknown field",
        "transfer",
        {"to": cast.actor("buyer").id, "colour": "red"},
        "exporter",
    )


def test_first_holder_must_be_consignor_or_order_party(cast: Cast) -> None:
    with pytest.raises(RuleViolation) as info:
        issue(cast, holder=cast.actor("bank2").id)
    assert str(info.value).startswith(
        "the first holder must be the consignor or the named order party"
    )


def test_every_event_type_has_a_rule() -> None:
    from encd.events import DOCUMENT_EVENTS

    assert set(RULES) == DOCUMENT_EVENTS


def test_a_malformed_party_id_names_the_pattern(cast: Cast) -> None:
    issue(cast)
    rejects(
        cast,
        InvalidInput,
        "body.to: expected a string matching ^[A-Z0-9]{18}([A-Z0-9]{2})?$, got the string 'nobody'",
        "transfer",
        {"to": "nobody"},
        "exporter",
    )


def test_a_float_amount_is_refused_before_signing(cast: Cast) -> None:
    issue(cast)
    body = dict(pledge_body(cast), amount=1000.5)
    with pytest.raises(InvalidInput) as info:
        step(cast, "pledge", body, "exporter", "bank")
    assert (
        str(info.value)
        == "body.amount: binary float 1000.5 is not exact; use a decimal string or an integer"
    )


@pytest.mark.parametrize(
    ("location", "field", "message"),
    [
        ({"locode": "cnckg", "name": "Luoqi, Jiangjin"}, "body.location.locode", None),
        ({"locode": "CNCKG", "name": "Luoqi\x00"}, "body.location.name", None),
        ({"locode": "CNCKG", "name": "Luoqi, Jiangjin", "x": 1}, "body.location.x", None),
        ({"name": "Luoqi, Jiangjin", "locode": "CNCKG", "x": [1]}, "body.location.x", None),
        ({"locode": "CNCKG", "name": ["Luoqi"]}, "body.location.name", None),
        ({"locode": "CNCKG"}, "body.location.name", "required field is missing"),
    ],
)
def test_a_remembered_place_does_not_admit_a_wrong_one(
    cast: Cast, location: dict[str, Any], field: str, message: str | None
) -> None:
    """Places are remembered once valid (encd.title._place); a wrong one is still refused,
    with pydantic's message, right after the right one was admitted."""
    from encd.document import Place
    from encd.validation import parse_model

    issue(cast)
    good = {"locode": "CNCKG", "name": "Luoqi, Jiangjin"}
    milestone = {"kind": "departed", "at": "2026-05-01T09:00:00Z"}
    step(cast, "milestone", {**milestone, "location": good}, "agent")
    step(cast, "milestone", {**milestone, "location": dict(good)}, "agent")
    with pytest.raises(InvalidInput) as expected:
        parse_model(Place, location, "body.location")
    assert expected.value.field == field
    if message is not None:
        assert expected.value.reason == message
    rejects(
        cast,
        InvalidInput,
        str(expected.value),
        "milestone",
        {**milestone, "location": location},
        "agent",
    )


def test_cargo_is_released_and_claimed_as_the_state_changes(cast: Cast) -> None:
    """An event that keeps the content and liveness changes nothing in the cargo index;
    a surrender keeps it (surrendered is live), a delivery releases it."""
    issue(cast)
    keys = set(cast.replay.cargo)
    assert keys and all(owner == DOC for owner in cast.replay.cargo.values())
    step(
        cast,
        "milestone",
        DEPARTED,
        "agent",
    )
    assert set(cast.replay.cargo) == keys
    step(cast, "surrender", {}, "exporter")
    assert set(cast.replay.cargo) == keys
    step(cast, "deliver", {}, "carrier")
    assert cast.replay.cargo == {}


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        ("register", {"name": "Evil\x1b]0;pwned\x07", "roles": ["trader"], "keys": ["k"]}, "name"),
        ("reason", {"reason": "no\x00thanks"}, "reason"),
        ("reason", {"reason": "line\u2028separator"}, "reason"),
        ("pledge_ref", {"loan_ref": "L\n1"}, "loan_ref"),
    ],
)
def test_names_references_and_reasons_hold_no_control_characters(
    model: str, body: dict[str, Any], field: str
) -> None:
    """As the document's own text: an escape sequence in a party's name reached the
    terminal of whoever listed it."""
    from encd.parties import RegisterBody
    from encd.title import PledgeBody, ReasonBody
    from encd.validation import parse_model

    if model == "pledge_ref":
        body = {
            "pledgee": "91500000202800000W",
            "amount": "1.00",
            "currency": "USD",
            "registry_ref": "R-1",
            "maturity": "2026-08-01",
        } | body
    kinds = {"register": RegisterBody, "reason": ReasonBody, "pledge_ref": PledgeBody}
    with pytest.raises(InvalidInput, match="expected text without control characters") as err:
        parse_model(kinds[model], body, "body")
    assert err.value.field == f"body.{field}"


def test_free_text_may_hold_line_feeds() -> None:
    from encd.title import ReasonBody
    from encd.validation import parse_model

    assert parse_model(ReasonBody, {"reason": "two\nlines"}).reason == "two\nlines"
