"""The eNCD content model: the corridor fixture, every rule's rejection, round trips."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import string
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encd.canonical import canonical_bytes, parse_canonical
from encd.document import (
    STATEMENT,
    Document,
    Money,
    cargo_keys,
    declared_value,
)
from encd.errors import InvalidInput

FIXTURE = Path(__file__).parent / "data" / "corridor-document.json"


def corridor() -> dict[str, Any]:
    """A fresh copy of the corridor fixture's JSON value."""
    value: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return value


# --- editing a JSON value by dotted path ------------------------------------------------------

DELETE = object()
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    return [key if key else int(index) for key, index in _STEP.findall(path)]


def edit(value: dict[str, Any], path: str, new: object) -> dict[str, Any]:
    """A copy of ``value`` with ``path`` set to ``new`` (or deleted, for DELETE)."""
    result = copy.deepcopy(value)
    *parents, last = _steps(path)
    target: Any = result
    for step in parents:
        target = target[step]
    if new is DELETE:
        del target[last]
    elif isinstance(target, list) and last == len(target):
        target.append(new)
    else:
        target[last] = new
    return result


def rejected(value: object, field: str = "") -> InvalidInput:
    with pytest.raises(InvalidInput) as exc:
        Document.from_json(value, field=field)
    return exc.value


# --- the fixture ------------------------------------------------------------------------------


def test_fixture_is_valid_and_in_normal_form() -> None:
    doc = Document.from_json(corridor())
    # The fixture is written as to_json writes it: no nulls, "from"/"to", dates as strings.
    assert doc.to_json() == corridor()


def test_fixture_content() -> None:
    doc = Document.from_json(corridor())
    assert doc.id == "ENCD-CQ-2026-000417"
    assert doc.statement == STATEMENT
    assert doc.negotiability.kind == "to_order"
    assert doc.carrier.legal_id == "91500000MA5UCQ7L66"
    assert doc.consignor.legal_id == "91500116MA60JJ3K6D"
    assert doc.consignee is not None and doc.consignee.legal_id == "5493004XJL8RK2TQ6M58"
    assert doc.notify_party is not None and doc.notify_party.legal_id is None
    assert doc.taken_in_charge == dt.date(2026, 3, 10)
    assert [(leg.mode, leg.from_.locode, leg.to.locode) for leg in doc.legs] == [
        ("RAIL", "CNCKG", "CNQZH"),
        ("SEA", "CNQZH", "SGSIN"),
    ]
    assert doc.legs[0].vessel is None and doc.legs[1].vessel == "BEIBU GULF PIONEER"


def test_round_trip() -> None:
    doc = Document.from_json(corridor())
    again = Document.from_json(doc.to_json())
    assert again == doc
    assert hash(again) == hash(doc)


def test_to_json_is_canonical_json() -> None:
    # No floats, no dates, nothing RFC 8785 cannot encode exactly.
    doc = Document.from_json(corridor())
    data = canonical_bytes(doc.to_json())
    assert Document.from_json(parse_canonical(data)) == doc


def test_to_json_uses_from_and_to_and_omits_none() -> None:
    value = corridor()
    value["legs"][0]["vessel"] = None  # explicit null reads as absent
    del value["consignee"]
    out = Document.from_json(value).to_json()
    assert set(out["legs"][0]) == {"mode", "from", "to", "reference"}
    assert "consignee" not in out
    assert out["taken_in_charge"] == "2026-03-10"


def test_document_is_frozen_all_the_way_down() -> None:
    doc = Document.from_json(corridor())
    with pytest.raises(pydantic.ValidationError):
        doc.id = "OTHER"
    with pytest.raises(pydantic.ValidationError):
        doc.goods[0].packages = 1
    assert isinstance(doc.goods, tuple) and isinstance(doc.containers[0].seals, tuple)


def test_negotiability_in_blank() -> None:
    value = edit(corridor(), "negotiability", {"kind": "to_order_blank"})
    doc = Document.from_json(value)
    assert doc.negotiability.kind == "to_order_blank"
    assert doc.to_json()["negotiability"] == {"kind": "to_order_blank"}


def test_underlying_documents_alone_identify_the_cargo() -> None:
    doc = Document.from_json(edit(corridor(), "containers", []))
    assert not any(key.startswith("container:") for key in cargo_keys(doc))


def test_containers_alone_identify_the_cargo() -> None:
    Document.from_json(edit(corridor(), "underlying", []))


# --- cargo keys and declared value ------------------------------------------------------------


def test_cargo_keys() -> None:
    assert cargo_keys(Document.from_json(corridor())) == {
        "container:CSQU3054383",
        "container:CSQU3054399",
        "rail_waybill:CQLQ2603100417",
        "sea_bl:QZHSIN26031701",
        "customs_entry:800020260001234567",
    }


def test_cargo_keys_include_leg_references_not_listed_as_underlying() -> None:
    value = edit(corridor(), "legs[1].reference", "QZHSIN26031799")
    keys = cargo_keys(Document.from_json(value))
    assert {"sea_bl:QZHSIN26031799", "sea_bl:QZHSIN26031701"} <= keys


def test_cargo_keys_compare_numbers_without_separators() -> None:
    """One B/L, waybill or customs entry number written with '-' or '/' or without is one
    cargo: the separators cannot make a second live document for it."""
    plain = cargo_keys(Document.from_json(corridor()))
    value = edit(corridor(), "legs[0].reference", "CQLQ-2603/100417")
    value = edit(value, "legs[1].reference", "QZHSIN-26031701")
    value = edit(value, "underlying[2].number", "8000-2026-0001-234567")
    assert cargo_keys(Document.from_json(value)) == plain


def test_declared_value_is_the_exact_sum() -> None:
    total = declared_value(Document.from_json(corridor()))
    assert total == Money.model_validate({"amount": "185030.50", "currency": "USD"})
    assert total is not None
    assert total.decimal == Decimal("148250.00") + Decimal("36780.5")


def test_declared_value_has_no_binary_rounding() -> None:
    value = edit(corridor(), "goods[0].declared_value.amount", "0.1")
    value = edit(value, "goods[1].declared_value.amount", "0.2")
    total = declared_value(Document.from_json(value))
    assert total is not None and total.amount == "0.3"


def test_declared_value_skips_lines_without_one() -> None:
    value = edit(corridor(), "goods[1].declared_value", DELETE)
    total = declared_value(Document.from_json(value))
    assert total is not None and total.amount == "148250.00"


def test_declared_value_none_when_no_line_declares_one() -> None:
    value = edit(corridor(), "goods[0].declared_value", DELETE)
    value = edit(value, "goods[1].declared_value", DELETE)
    assert declared_value(Document.from_json(value)) is None


# --- every rule, rejected with its field and message --------------------------------------------

LOCODE = (
    "UN/LOCODE must be a 2-letter country code and 3 characters of A-Z or 2-9, "
    "uppercase, without a space, got "
)
REFERENCE = (
    "expected 1 to 35 characters of A-Z, 0-9, '/' and '-', at least one a letter or digit, got "
)
CONTROL = "expected text without control characters, got "
DATE = "expected a date string YYYY-MM-DD, got "
WEIGHT = 'expected a weight in kg as a decimal string with at most 3 decimal places, such as "1250.5", got '
AMOUNT = (
    'expected an amount as a decimal string with at most 4 decimal places, such as "1250.5", got '
)
MISSING = "required field is missing"
UNKNOWN = "unknown field"
DOC_ID = "expected 3 to 64 characters of A-Z, 0-9 and '-', the first a letter or digit, got "
BUYER = corridor()["consignee"]

# (path to edit, new value or DELETE, field reported, message)
CASES: list[tuple[str, object, str, str]] = [
    # id
    ("id", "EN", "id", DOC_ID + "'EN'"),
    ("id", "-ENCD-1", "id", DOC_ID + "'-ENCD-1'"),
    ("id", "encd-1", "id", DOC_ID + "'encd-1'"),
    ("id", "E" * 65, "id", DOC_ID + f"{'E' * 40!r}… (65 characters)"),
    ("id", 417, "id", "expected a string, got the number 417"),
    ("id", DELETE, "id", MISSING),
    # statement
    ("statement", "A bill of lading.", "statement", f"expected exactly {STATEMENT!r}, got 'A bill of lading.'"),
    ("statement", STATEMENT.lower(), "statement", f"expected exactly {STATEMENT!r}, got {STATEMENT.lower()!r}"),
    ("statement", None, "statement", f"expected exactly {STATEMENT!r}, got null"),
    # negotiability
    ("negotiability.kind", "bearer", "negotiability.kind", "expected 'to_order' or 'to_order_blank', got the string 'bearer'"),
    ("negotiability.kind", DELETE, "negotiability.kind", MISSING),
    ("negotiability", "to order", "negotiability", "expected an object, got the string 'to order'"),
    ("negotiability.order_of", DELETE, "negotiability.order_of", MISSING),
    ("negotiability", {"kind": "to_order_blank", "order_of": BUYER}, "negotiability.order_of", UNKNOWN),
    ("negotiability.order_of.legal_id", "5493004XJL8RK2TQ6M59", "negotiability.order_of.legal_id", "ISO 17442 check digits of 5493004XJL8RK2TQ6M59 should be 58, got 59"),
    ("negotiability.order_of.name", "", "negotiability.order_of.name", "expected at least 1 character, got an empty string"),
    # carrier and parties
    ("carrier.legal_id", DELETE, "carrier.legal_id", MISSING + " (the carrier is identified by a USCC or an LEI)"),
    ("carrier.legal_id", None, "carrier.legal_id", MISSING + " (the carrier is identified by a USCC or an LEI)"),
    ("carrier.legal_id", "91500000MA5UCQ7L67", "carrier.legal_id", "GB 32100 check character of 91500000MA5UCQ7L67 should be 6, got 7"),
    ("carrier.legal_id", "91500000-MA5UCQ7L6", "carrier.legal_id", "unified social credit code must use only digits and capital letters other than I, O, S, V and Z, got '-' in '91500000-MA5UCQ7L6'"),
    ("carrier.legal_id", "CN-91500000", "carrier.legal_id", "legal id must be an 18-character unified social credit code (GB 32100) or a 20-character LEI (ISO 17442), got 11 characters: 'CN-91500000'"),
    ("carrier.legal_id", 91500000, "carrier.legal_id", "expected a string, got the number 91500000"),
    ("carrier", DELETE, "carrier", MISSING),
    ("consignor.name", "", "consignor.name", "expected at least 1 character, got an empty string"),
    ("consignor.name", "Y" * 201, "consignor.name", "expected at most 200 characters, got 201"),
    ("consignor.name", "Yuanfeng\x1b[31m", "consignor.name", CONTROL + "U+001B at position 8"),
    ("consignor.name", "Yuanfeng\nParts", "consignor.name", CONTROL + "U+000A at position 8"),
    ("consignor.name", "Yuanfeng \u202eLtd", "consignor.name", CONTROL + "U+202E at position 9"),
    ("consignor.name", "Yuanfeng\x85", "consignor.name", CONTROL + "U+0085 at position 8"),
    ("consignor.name", None, "consignor.name", "expected a string, got null"),
    ("consignor.address", "Jiangjin\tChongqing", "consignor.address", CONTROL + "U+0009 at position 8"),
    ("consignor.address", "Jiangjin\r\nChongqing", "consignor.address", CONTROL + "U+000D at position 8"),
    ("consignor.address", "x" * 501, "consignor.address", "expected at most 500 characters, got 501"),
    ("consignor.tax_id", "X", "consignor.tax_id", UNKNOWN),
    ("consignee.name", DELETE, "consignee.name", MISSING),
    ("notify_party", "Straits Customs Brokerage", "notify_party", "expected an object, got the string 'Straits Customs Brokerage'"),
    # places and dates
    ("place_of_receipt.locode", "cnckg", "place_of_receipt.locode", LOCODE + "'cnckg'"),
    ("place_of_receipt.locode", "CN CKG", "place_of_receipt.locode", LOCODE + "'CN CKG'"),
    ("place_of_receipt.locode", "CNCK1", "place_of_receipt.locode", LOCODE + "'CNCK1'"),
    ("place_of_delivery.name", "", "place_of_delivery.name", "expected at least 1 character, got an empty string"),
    ("place_of_delivery.name", "S" * 101, "place_of_delivery.name", "expected at most 100 characters, got 101"),
    ("place_of_delivery", DELETE, "place_of_delivery", MISSING),
    ("place_of_issue.locode", DELETE, "place_of_issue.locode", MISSING),
    ("place_of_issue.country", "CN", "place_of_issue.country", UNKNOWN),
    ("taken_in_charge", "2026-3-10", "taken_in_charge", DATE + "'2026-3-10'"),
    ("taken_in_charge", "20260310", "taken_in_charge", DATE + "'20260310'"),
    ("taken_in_charge", "10/03/2026", "taken_in_charge", DATE + "'10/03/2026'"),
    ("taken_in_charge", "2026-W11-2", "taken_in_charge", DATE + "'2026-W11-2'"),
    ("taken_in_charge", 20260310, "taken_in_charge", DATE + "the number 20260310"),
    ("taken_in_charge", "2026-02-30", "taken_in_charge", "expected a calendar date YYYY-MM-DD, got '2026-02-30'"),
    ("issued_on", "2026-03-10T08:00:00Z", "issued_on", DATE + "'2026-03-10T08:00:00Z'"),
    ("issued_on", "2026-03-10 ", "issued_on", DATE + "'2026-03-10 '"),
    ("issued_on", DELETE, "issued_on", MISSING),
    # legs
    ("legs", [], "legs", "expected at least 1 item, got none"),
    ("legs", {"mode": "RAIL"}, "legs", "expected an array, got an object"),
    ("legs[0].mode", "ROAD", "legs[0].mode", "expected 'RAIL' or 'SEA', got the string 'ROAD'"),
    ("legs[0].mode", "rail", "legs[0].mode", "expected 'RAIL' or 'SEA', got the string 'rail'"),
    ("legs[0].from", DELETE, "legs[0].from", MISSING),
    ("legs[0].to", DELETE, "legs[0].to", MISSING),
    ("legs[0].from_", {"locode": "CNCKG", "name": "Luoqi"}, "legs[0].from_", UNKNOWN),
    ("legs[1].to.locode", "SG SIN", "legs[1].to.locode", LOCODE + "'SG SIN'"),
    ("legs[0].reference", "cqlq2603100417", "legs[0].reference", REFERENCE + "'cqlq2603100417'"),
    ("legs[0].reference", "CQLQ 2603100417", "legs[0].reference", REFERENCE + "'CQLQ 2603100417'"),
    ("legs[0].reference", "", "legs[0].reference", REFERENCE + "''"),
    ("legs[0].reference", "C" * 36, "legs[0].reference", REFERENCE + repr("C" * 36)),
    ("legs[0].reference", "-/-", "legs[0].reference", REFERENCE + "'-/-'"),
    ("legs[0].vessel", "XIN HAI", "legs[0].vessel", "expected no vessel on a RAIL leg, got 'XIN HAI'"),
    ("legs[0].voyage", "001", "legs[0].voyage", "expected no voyage on a RAIL leg, got '001'"),
    ("legs[1].vessel", DELETE, "legs[1].vessel", MISSING + " (a SEA leg names its vessel)"),
    ("legs[1].vessel", None, "legs[1].vessel", MISSING + " (a SEA leg names its vessel)"),
    ("legs[1].voyage", DELETE, "legs[1].voyage", MISSING + " (a SEA leg names its voyage)"),
    ("legs[1].voyage", "V" * 36, "legs[1].voyage", "expected at most 35 characters, got 36"),
    ("legs[1].vessel", "", "legs[1].vessel", "expected at least 1 character, got an empty string"),
    # goods
    ("goods", [], "goods", "expected at least 1 item, got none"),
    ("goods[0].description", "", "goods[0].description", "expected at least 1 character, got an empty string"),
    ("goods[0].description", "d" * 501, "goods[0].description", "expected at most 500 characters, got 501"),
    ("goods[0].description", "parts\x00", "goods[0].description", CONTROL + "U+0000 at position 5"),
    ("goods[0].hs_code", "87141", "goods[0].hs_code", "HS code must be 6, 8 or 10 digits, got '87141'"),
    ("goods[0].hs_code", "8714.10", "goods[0].hs_code", "HS code must be 6, 8 or 10 digits, got '8714.10'"),
    ("goods[0].hs_code", 871410, "goods[0].hs_code", "expected a string, got the number 871410"),
    ("goods[0].packages", "120", "goods[0].packages", "expected a whole number, got the string '120'"),
    ("goods[0].packages", 120.0, "goods[0].packages", "expected a whole number, got the number 120.0"),
    ("goods[0].packages", True, "goods[0].packages", "expected a whole number, got true"),
    ("goods[0].packages", 0, "goods[0].packages", "expected a whole number from 1 to 2**53-1, got 0"),
    ("goods[0].packages", -3, "goods[0].packages", "expected a whole number from 1 to 2**53-1, got -3"),
    ("goods[0].packages", 2**53, "goods[0].packages", f"expected a whole number from 1 to 2**53-1, got {2**53}"),
    ("goods[0].package_kind", "p" * 36, "goods[0].package_kind", "expected at most 35 characters, got 36"),
    ("goods[0].gross_weight_kg", 18650.5, "goods[0].gross_weight_kg", WEIGHT + "the number 18650.5"),
    ("goods[0].gross_weight_kg", 18650, "goods[0].gross_weight_kg", WEIGHT + "the number 18650"),
    ("goods[0].gross_weight_kg", "18650.5000", "goods[0].gross_weight_kg", WEIGHT + "'18650.5000'"),
    ("goods[0].gross_weight_kg", "018650.5", "goods[0].gross_weight_kg", WEIGHT + "'018650.5'"),
    ("goods[0].gross_weight_kg", "-1", "goods[0].gross_weight_kg", WEIGHT + "'-1'"),
    ("goods[0].gross_weight_kg", "1.865e4", "goods[0].gross_weight_kg", WEIGHT + "'1.865e4'"),
    ("goods[0].gross_weight_kg", "18650.", "goods[0].gross_weight_kg", WEIGHT + "'18650.'"),
    ("goods[0].gross_weight_kg", "18 650.5", "goods[0].gross_weight_kg", WEIGHT + "'18 650.5'"),
    ("goods[0].gross_weight_kg", "18650.5\n", "goods[0].gross_weight_kg", WEIGHT + "'18650.5\\n'"),
    ("goods[0].gross_weight_kg", "0", "goods[0].gross_weight_kg", "expected a weight in kg greater than 0, got '0'"),
    ("goods[0].gross_weight_kg", "0.000", "goods[0].gross_weight_kg", "expected a weight in kg greater than 0, got '0.000'"),
    ("goods[0].marks", 417, "goods[0].marks", "expected a string, got the number 417"),
    ("goods[0].marks", DELETE, "goods[0].marks", MISSING),
    ("goods[0].weight", "1", "goods[0].weight", UNKNOWN),
    ("goods[0].declared_value.amount", "148250.00001", "goods[0].declared_value.amount", AMOUNT + "'148250.00001'"),
    ("goods[0].declared_value.amount", 148250, "goods[0].declared_value.amount", AMOUNT + "the number 148250"),
    ("goods[0].declared_value.amount", "0.0000", "goods[0].declared_value.amount", "expected an amount greater than 0, got '0.0000'"),
    ("goods[0].declared_value.currency", "usd", "goods[0].declared_value.currency", "ISO 4217 currency code must be 3 uppercase letters, got 'usd'"),
    ("goods[0].declared_value.currency", "RMB", "goods[0].declared_value.currency", "ISO 4217 currency code RMB is not an active code"),
    ("goods[0].declared_value.currency", DELETE, "goods[0].declared_value.currency", MISSING),
    ("goods[1].declared_value.currency", "CNY", "goods[1].declared_value.currency", "expected every declared value in one currency, USD as in goods[0], got CNY"),
    # containers
    ("containers[0].number", "CSQU3054384", "containers[0].number", "ISO 6346 check digit of CSQU3054384 should be 3, got 4"),
    ("containers[0].number", "CSQU 305438 3", "containers[0].number", "ISO 6346 container number must be 11 characters: a 3-letter owner code, a category letter, 6 serial digits and a check digit, got 'CSQU 305438 3'"),
    ("containers[1].number", "CSQU3054383", "containers[1].number", "expected each container once, got CSQU3054383 again (also containers[0])"),
    ("containers[0].seals", "CN2603104171", "containers[0].seals", "expected an array, got the string 'CN2603104171'"),
    ("containers[0].seals", DELETE, "containers[0].seals", MISSING),
    ("containers[1].seals[1]", "", "containers[1].seals[1]", "expected at least 1 character, got an empty string"),
    ("containers[1].seals[1]", "S" * 36, "containers[1].seals[1]", "expected at most 35 characters, got 36"),
    ("containers[0].size_type", "45g1", "containers[0].size_type", "expected an ISO 6346 size-type code of 4 characters, got '45g1'"),
    ("containers[0].size_type", "40HQ1", "containers[0].size_type", "expected an ISO 6346 size-type code of 4 characters, got '40HQ1'"),
    ("containers", DELETE, "containers", MISSING),
    ("containers", "CSQU3054383", "containers", "expected an array, got the string 'CSQU3054383'"),
    # underlying documents
    ("underlying[0].kind", "air_waybill", "underlying[0].kind", "expected 'rail_waybill', 'sea_bl' or 'customs_entry', got the string 'air_waybill'"),
    ("underlying[2].number", "8000 2026 0001", "underlying[2].number", REFERENCE + "'8000 2026 0001'"),
    ("underlying[3]", {"kind": "sea_bl", "number": "QZHSIN26031701"}, "underlying[3].number", "expected each underlying document once, got sea_bl QZHSIN26031701 again (also underlying[1])"),
    ("underlying", DELETE, "underlying", MISSING),
    # the rest
    ("freight", "CIF", "freight", "expected 'prepaid' or 'collect', got the string 'CIF'"),
    ("freight", DELETE, "freight", MISSING),
    ("signature", "MEUCIQ", "signature", UNKNOWN),
]  # fmt: skip


@pytest.mark.parametrize(("path", "new", "field", "message"), CASES, ids=[c[0] for c in CASES])
def test_rule_rejected(path: str, new: object, field: str, message: str) -> None:
    error = rejected(edit(corridor(), path, new))
    assert (error.field, error.reason) == (field, message)
    assert str(error) == f"{field}: {message}"


def test_cargo_must_be_identified() -> None:
    value = edit(edit(corridor(), "containers", []), "underlying", [])
    error = rejected(value)
    assert (error.field, error.reason) == (
        "containers",
        "expected at least one container or underlying document to identify the cargo, got neither",
    )


def test_same_number_different_kinds_is_allowed() -> None:
    # Uniqueness is by (kind, number): a waybill and a B/L may share a number.
    value = edit(corridor(), "underlying[3]", {"kind": "sea_bl", "number": "CQLQ2603100417"})
    Document.from_json(value)


def test_currency_rule_skips_lines_without_value() -> None:
    value = edit(corridor(), "goods[0].declared_value", DELETE)
    value = edit(value, "goods[1].declared_value.currency", "CNY")
    Document.from_json(value)


@pytest.mark.parametrize("digit", string.digits)
@pytest.mark.parametrize("index", [0, 1])
def test_container_every_wrong_check_digit_rejected(index: int, digit: str) -> None:
    number = corridor()["containers"][index]["number"]
    if digit == number[10]:
        return
    wrong = number[:10] + digit
    error = rejected(edit(corridor(), f"containers[{index}].number", wrong))
    assert (error.field, error.reason) == (
        f"containers[{index}].number",
        f"ISO 6346 check digit of {wrong} should be {number[10]}, got {digit}",
    )


# --- how errors are reported ------------------------------------------------------------------


def test_prefix_names_the_enclosing_field() -> None:
    error = rejected(edit(corridor(), "goods[0].hs_code", "87141"), field="content")
    assert error.field == "content.goods[0].hs_code"
    assert str(error) == "content.goods[0].hs_code: HS code must be 6, 8 or 10 digits, got '87141'"


def test_prefix_applies_to_rules_across_fields() -> None:
    error = rejected(edit(corridor(), "legs[1].vessel", DELETE), field="content")
    assert error.field == "content.legs[1].vessel"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "expected an object, got an array"),
        ("{}", "expected an object, got the string '{}'"),
        (None, "expected an object, got null"),
        (Document.from_json(corridor()), "expected an object, got a Document"),
    ],
)
def test_not_an_object(value: object, message: str) -> None:
    assert (rejected(value).field, rejected(value).reason) == ("", message)
    assert (rejected(value, "content").field, rejected(value, "content").reason) == (
        "content",
        message,
    )


def test_first_error_reported_with_count_of_the_rest() -> None:
    value = edit(corridor(), "goods[0].hs_code", "87141")
    value = edit(value, "goods[1].packages", 0)
    error = rejected(value)
    assert error.field == "goods[0].hs_code"
    assert error.reason == "HS code must be 6, 8 or 10 digits, got '87141' (and 1 more error)"
    value = edit(value, "freight", "CIF")
    assert rejected(value).reason.endswith("(and 2 more errors)")


def test_all_missing() -> None:
    error = rejected({})
    # 17 fields, of which consignee and notify_party are optional.
    assert (error.field, error.reason) == ("id", "required field is missing (and 14 more errors)")


def test_messages_are_not_pydantic_text() -> None:
    # A sweep over every case: no pydantic phrasing leaks into a message a user reads.
    for path, new, _, _ in CASES:
        reason = rejected(edit(corridor(), path, new)).reason
        assert "Input should" not in reason and "Value error" not in reason, (path, reason)


# --- round trip over generated documents ------------------------------------------------------

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_single_line = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters=_BIDI)
_multi_line = st.one_of(_single_line, st.just("\n"))


def _text(max_size: int, *, multiline: bool = False, min_size: int = 1) -> st.SearchStrategy[str]:
    return st.text(_multi_line if multiline else _single_line, min_size=min_size, max_size=max_size)


# Free-text fields of the fixture and what may go in them.
FREE_TEXT: dict[str, st.SearchStrategy[str]] = {
    "negotiability.order_of.name": _text(200),
    "negotiability.order_of.address": _text(500, multiline=True),
    "carrier.name": _text(200),
    "carrier.address": _text(500, multiline=True),
    "consignor.name": _text(200),
    "consignee.name": _text(200),
    "notify_party.name": _text(200),
    "notify_party.address": _text(500, multiline=True),
    "place_of_receipt.name": _text(100),
    "place_of_delivery.name": _text(100),
    "legs[0].from.name": _text(100),
    "legs[1].to.name": _text(100),
    "legs[1].vessel": _text(100),
    "legs[1].voyage": _text(35),
    "goods[0].description": _text(500, multiline=True),
    "goods[0].package_kind": _text(35),
    "goods[0].marks": _text(500, multiline=True, min_size=0),
    "goods[1].description": _text(500, multiline=True),
    "goods[1].marks": _text(500, multiline=True, min_size=0),
    "containers[1].seals[0]": _text(35),
    "place_of_issue.name": _text(100),
}


@st.composite
def corridor_variants(draw: Callable[..., Any]) -> dict[str, Any]:
    value = corridor()
    paths = draw(st.lists(st.sampled_from(sorted(FREE_TEXT)), min_size=1, unique=True))
    for path in paths:
        value = edit(value, path, draw(FREE_TEXT[path]))
    if draw(st.booleans()):
        value = edit(value, "goods[0].packages", draw(st.integers(1, 2**53 - 1)))
    return value


@settings(max_examples=60, deadline=None)
@given(corridor_variants())
def test_round_trip_property(value: dict[str, Any]) -> None:
    doc = Document.from_json(value)
    assert Document.from_json(doc.to_json()) == doc
    assert doc.to_json() == value
    assert Document.from_json(parse_canonical(canonical_bytes(doc.to_json()))) == doc


def test_the_characters_refused_in_text_are_those_of_their_unicode_categories() -> None:
    """encd.document spells out the code points of Cc, Cs, Zl and Zp (and the bidi
    controls) as a regex; they are exactly unicodedata's, code point by code point."""
    import unicodedata

    from encd.document import (
        _BIDI_CONTROLS,
        _FORBIDDEN,
        _FORBIDDEN_CATEGORIES,
        _FORBIDDEN_MULTILINE,
    )

    for code in range(0x110000):
        ch = chr(code)
        refused = unicodedata.category(ch) in _FORBIDDEN_CATEGORIES or ch in _BIDI_CONTROLS
        assert bool(_FORBIDDEN.match(ch)) == refused, hex(code)
        assert bool(_FORBIDDEN_MULTILINE.match(ch)) == (refused and ch != "\n"), hex(code)
