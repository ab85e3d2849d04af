"""The content of an eNCD: frozen types, validated once at the boundary.

``Document.from_json`` is the only way in.  It takes a JSON value (as parsed
by ``encd.canonical.parse_json``), checks every field and the rules that tie
fields together, and returns a frozen ``Document``; anything wrong becomes an
``InvalidInput`` whose ``field`` is a dotted path such as
``goods[0].hs_code``.  ``Document.to_json`` gives the JSON value back, so that
``Document.from_json(doc.to_json()) == doc``.

docs/formats/document.md describes the format field by field.  The rules that
span several fields, checked after every field is valid:

1. a leg by SEA names its vessel and voyage; a leg by RAIL names neither;
2. the carrier has a legal id (a USCC or an LEI);
3. container numbers are unique within the document;
4. underlying documents are unique by (kind, number);
5. the cargo is identified: at least one container or underlying document;
6. every declared value is in one currency.

Numbers that can be fractional (weights, amounts) are decimal strings, never
binary floats; the model keeps the string as given and ``Money.decimal``
gives its exact ``Decimal``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from encd.canonical import MAX_SAFE_INTEGER
from encd.errors import InvalidInput
from encd.identifiers import (
    check_container,
    check_currency,
    check_hs_code,
    check_legal_id,
    check_locode,
)
from encd.validation import Rule as _Rule
from encd.validation import given as _given
from encd.validation import invalid_input as _invalid_input
from encd.validation import show as _show

__all__ = [
    "STATEMENT",
    "Container",
    "Document",
    "GoodsLine",
    "Leg",
    "Money",
    "Negotiability",
    "PartyRef",
    "Place",
    "ToOrder",
    "ToOrderBlank",
    "UnderlyingDocument",
    "cargo_keys",
    "declared_value",
    "reference_key",
]

STATEMENT = (
    "This is a negotiable cargo document under the United Nations Convention on "
    "Negotiable Cargo Documents."
)

_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True)


# --- field checkers (each raises ValueError with "expected …, got …") --------------------------

Checker = Callable[[object], object]

# Characters never allowed in text: C0/C1 controls and DEL, surrogates, line and
# paragraph separators, and the bidirectional embeddings, overrides and isolates
# that can make a name display as something else.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
#: Unicode categories never allowed in text.  Their members are fixed by Unicode's
#: stability policies (Cc) or by the encoding (Cs, the surrogates), and Zl and Zp have
#: one member each, so ``_FORBIDDEN`` spells them out (tests/test_document.py checks it
#: against unicodedata, code point by code point).
_FORBIDDEN_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")
_FORBIDDEN_RANGES = "\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029" + "".join(sorted(_BIDI_CONTROLS))
_FORBIDDEN = re.compile(f"[\x00-\x0a{_FORBIDDEN_RANGES}]")
_FORBIDDEN_MULTILINE = re.compile(f"[\x00-\x09{_FORBIDDEN_RANGES}]")  # line feeds allowed


def _text(min_len: int, max_len: int, *, multiline: bool = False) -> Checker:
    """A string of ``min_len``..``max_len`` characters without control characters.

    ``multiline`` text may contain line feeds ("\\n") and nothing else of the kind.
    """

    def check(value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_given(value)}")
        if len(value) < min_len:
            raise ValueError(f"expected at least {min_len} character, got an empty string")
        if len(value) > max_len:
            raise ValueError(f"expected at most {max_len} characters, got {len(value)}")
        return (plain_lines if multiline else plain_text)(value)

    return check


def plain_text(value: str) -> str:
    """No control characters (as the document's own text: see ``_text``); for pydantic's
    ``AfterValidator`` on the names, references and reasons of events' bodies."""
    return _plain(value, _FORBIDDEN)


def plain_lines(value: str) -> str:
    """``plain_text`` that may also hold line feeds ("\\n"): free text, such as a reason."""
    return _plain(value, _FORBIDDEN_MULTILINE)


def _plain(value: str, forbidden: re.Pattern[str]) -> str:
    found = forbidden.search(value)
    if found:
        raise ValueError(
            f"expected text without control characters, got U+{ord(found.group()):04X} "
            f"at position {found.start()}"
        )
    return value


def _coded(checker: Callable[[str], object]) -> Checker:
    """A string checked by one of encd.identifiers' checkers."""

    def check(value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_given(value)}")
        checker(value)
        return value

    return check


def _pattern(regex: str, expected: str) -> Checker:
    compiled = re.compile(regex)

    def check(value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_given(value)}")
        if not compiled.fullmatch(value):
            raise ValueError(f"expected {expected}, got {_show(value)}")
        return value

    return check


def _decimal(places: int, unit: str) -> Checker:
    """A positive decimal string with at most ``places`` decimal places."""
    compiled = re.compile(rf"(0|[1-9][0-9]*)(\.[0-9]{{1,{places}}})?")
    shape = f'a decimal string with at most {places} decimal places, such as "1250.5"'

    def check(value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f"expected {unit} as {shape}, got {_given(value)}")
        if not compiled.fullmatch(value):
            raise ValueError(f"expected {unit} as {shape}, got {_show(value)}")
        if Decimal(value) == 0:
            raise ValueError(f"expected {unit} greater than 0, got {_show(value)}")
        return value

    return check


def _count(value: object) -> object:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {_given(value)}")
    if not 1 <= value <= MAX_SAFE_INTEGER:
        raise ValueError(f"expected a whole number from 1 to 2**53-1, got {value}")
    return value


_DATE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError(f"expected a date string YYYY-MM-DD, got {_given(value)}")
    if not _DATE_SHAPE.fullmatch(value):
        raise ValueError(f"expected a date string YYYY-MM-DD, got {_show(value)}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected a calendar date YYYY-MM-DD, got {_show(value)}") from None


def _statement(value: object) -> object:
    if value != STATEMENT:
        got = _show(value, 200) if isinstance(value, str) else _given(value)
        raise ValueError(f"expected exactly {STATEMENT!r}, got {got}")
    return value


def _array(min_items: int) -> Checker:
    """A JSON array, kept as a tuple so that the frozen model is immutable all the way down."""

    def check(value: object) -> object:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected an array, got {_given(value)}")
        if len(value) < min_items:
            raise ValueError(f"expected at least {min_items} item, got none")
        return tuple(value)

    return check


Name = Annotated[str, BeforeValidator(_text(1, 200))]
ShortText = Annotated[str, BeforeValidator(_text(1, 35))]
PlaceName = Annotated[str, BeforeValidator(_text(1, 100))]
Address = Annotated[str, BeforeValidator(_text(1, 500, multiline=True))]
Description = Annotated[str, BeforeValidator(_text(1, 500, multiline=True))]
Marks = Annotated[str, BeforeValidator(_text(0, 500, multiline=True))]
VesselName = Annotated[str, BeforeValidator(_text(1, 100))]
LegalId = Annotated[str, BeforeValidator(_coded(check_legal_id))]
Locode = Annotated[str, BeforeValidator(_coded(check_locode))]
HsCode = Annotated[str, BeforeValidator(_coded(check_hs_code))]
Currency = Annotated[str, BeforeValidator(_coded(check_currency))]
ContainerNumber = Annotated[str, BeforeValidator(_coded(check_container))]
Reference = Annotated[
    str,
    BeforeValidator(
        _pattern(
            r"(?=[/-]*[A-Z0-9])[A-Z0-9/-]{1,35}",
            "1 to 35 characters of A-Z, 0-9, '/' and '-', at least one a letter or digit",
        )
    ),
]
DocumentId = Annotated[
    str,
    BeforeValidator(
        _pattern(
            r"[A-Z0-9][A-Z0-9-]{2,63}",
            "3 to 64 characters of A-Z, 0-9 and '-', the first a letter or digit",
        )
    ),
]
SizeType = Annotated[
    str, BeforeValidator(_pattern(r"[0-9A-Z]{4}", "an ISO 6346 size-type code of 4 characters"))
]
Amount = Annotated[str, BeforeValidator(_decimal(4, "an amount"))]
Weight = Annotated[str, BeforeValidator(_decimal(3, "a weight in kg"))]
Count = Annotated[int, BeforeValidator(_count)]
Date = Annotated[dt.date, BeforeValidator(_date)]
Statement = Annotated[str, BeforeValidator(_statement)]


# --- the models --------------------------------------------------------------------------------


class PartyRef(BaseModel):
    """A party named in the document: display name, legal id (USCC or LEI) and address."""

    model_config = _CONFIG

    name: Name
    legal_id: LegalId | None = None
    address: Address | None = None


class Place(BaseModel):
    """A place: its UN/LOCODE and its name (a terminal, a port, a city)."""

    model_config = _CONFIG

    locode: Locode
    name: PlaceName


class ToOrder(BaseModel):
    """Negotiable to the order of a named party."""

    model_config = _CONFIG

    kind: Literal["to_order"]
    order_of: PartyRef


class ToOrderBlank(BaseModel):
    """Negotiable to order, in blank: no order party is named."""

    model_config = _CONFIG

    kind: Literal["to_order_blank"]


Negotiability = Annotated[ToOrder | ToOrderBlank, Field(discriminator="kind")]


class Leg(BaseModel):
    """One carriage: by RAIL under a rail waybill, or by SEA under a sea B/L on a vessel."""

    model_config = _CONFIG

    mode: Literal["RAIL", "SEA"]
    from_: Place = Field(alias="from")
    to: Place
    reference: Reference
    vessel: VesselName | None = None
    voyage: ShortText | None = None

    @model_validator(mode="after")
    def _vessel_for_sea_only(self) -> Leg:
        # Rule (1).
        for name in ("vessel", "voyage"):
            given = getattr(self, name)
            if self.mode == "SEA" and given is None:
                raise _Rule([name], f"required field is missing (a SEA leg names its {name})")
            if self.mode == "RAIL" and given is not None:
                raise _Rule([name], f"expected no {name} on a RAIL leg, got {_show(given)}")
        return self


class Money(BaseModel):
    """An exact amount in an ISO 4217 currency."""

    model_config = _CONFIG

    amount: Amount
    currency: Currency

    @property
    def decimal(self) -> Decimal:
        """The amount as an exact Decimal."""
        return Decimal(self.amount)


class GoodsLine(BaseModel):
    """One line of the goods description."""

    model_config = _CONFIG

    description: Description
    hs_code: HsCode
    packages: Count
    package_kind: ShortText
    gross_weight_kg: Weight
    marks: Marks
    declared_value: Money | None = None


class Container(BaseModel):
    """A freight container (ISO 6346 number) and the seals on it."""

    model_config = _CONFIG

    number: ContainerNumber
    seals: Annotated[tuple[ShortText, ...], BeforeValidator(_array(0))]
    size_type: SizeType | None = None


class UnderlyingDocument(BaseModel):
    """A transport or customs document the eNCD covers: its number is cargo identity."""

    model_config = _CONFIG

    kind: Literal["rail_waybill", "sea_bl", "customs_entry"]
    number: Reference


class Document(BaseModel):
    """An eNCD's content, fixed at issue and changed only by a signed amendment."""

    model_config = _CONFIG

    id: DocumentId
    statement: Statement
    negotiability: Negotiability
    carrier: PartyRef
    consignor: PartyRef
    consignee: PartyRef | None = None
    notify_party: PartyRef | None = None
    place_of_receipt: Place
    place_of_delivery: Place
    taken_in_charge: Date
    legs: Annotated[tuple[Leg, ...], BeforeValidator(_array(1))]
    goods: Annotated[tuple[GoodsLine, ...], BeforeValidator(_array(1))]
    containers: Annotated[tuple[Container, ...], BeforeValidator(_array(0))]
    underlying: Annotated[tuple[UnderlyingDocument, ...], BeforeValidator(_array(0))]
    place_of_issue: Place
    issued_on: Date
    freight: Literal["prepaid", "collect"]

    @model_validator(mode="after")
    def _document_rules(self) -> Document:
        # Rule (2).
        if self.carrier.legal_id is None:
            raise _Rule(
                ["carrier", "legal_id"],
                "required field is missing (the carrier is identified by a USCC or an LEI)",
            )
        # Rule (3).
        seen_containers: dict[str, int] = {}
        for i, container in enumerate(self.containers):
            if container.number in seen_containers:
                first = seen_containers[container.number]
                raise _Rule(
                    ["containers", i, "number"],
                    f"expected each container once, got {container.number} again "
                    f"(also containers[{first}])",
                )
            seen_containers[container.number] = i
        # Rule (4).
        seen_documents: dict[tuple[str, str], int] = {}
        for i, underlying in enumerate(self.underlying):
            key = (underlying.kind, underlying.number)
            if key in seen_documents:
                raise _Rule(
                    ["underlying", i, "number"],
                    f"expected each underlying document once, got {underlying.kind} "
                    f"{underlying.number} again (also underlying[{seen_documents[key]}])",
                )
            seen_documents[key] = i
        # Rule (5).
        if not self.containers and not self.underlying:
            raise _Rule(
                ["containers"],
                "expected at least one container or underlying document to identify the "
                "cargo, got neither",
            )
        # Rule (6).
        currency: tuple[str, int] | None = None
        for i, line in enumerate(self.goods):
            if line.declared_value is None:
                continue
            if currency is None:
                currency = (line.declared_value.currency, i)
            elif line.declared_value.currency != currency[0]:
                raise _Rule(
                    ["goods", i, "declared_value", "currency"],
                    f"expected every declared value in one currency, {currency[0]} as in "
                    f"goods[{currency[1]}], got {line.declared_value.currency}",
                )
        return self

    @classmethod
    def from_json(cls, value: object, field: str = "") -> Document:
        """Validate a JSON value as document content.

        Raises InvalidInput naming the first wrong field, as a dotted path under
        ``field``, and how many more errors there are.
        """
        if not isinstance(value, dict):
            raise InvalidInput(field, f"expected an object, got {_given(value)}")
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise _invalid_input(exc, value, field) from None

    def to_json(self) -> dict[str, Any]:
        """The JSON value of this content: dates as strings, "from"/"to", no nulls."""
        result: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return result


# --- derived values ----------------------------------------------------------------------------


def cargo_keys(doc: Document) -> frozenset[str]:
    """The identifiers that no other live document may share (cargo singularity).

    ``container:<number>``, ``<kind>:<number>`` for each underlying document,
    and each leg's reference as ``rail_waybill:<ref>`` or ``sea_bl:<ref>``; a
    reference in its key form (``reference_key``), so that one number written with
    and without separators is one cargo.
    """
    keys = {f"container:{c.number.upper()}" for c in doc.containers}
    keys.update(f"{u.kind}:{reference_key(u.number)}" for u in doc.underlying)
    for leg in doc.legs:
        kind = "rail_waybill" if leg.mode == "RAIL" else "sea_bl"
        keys.add(f"{kind}:{reference_key(leg.reference)}")
    return frozenset(keys)


def reference_key(reference: str) -> str:
    """A waybill, B/L or customs entry number as cargo singularity compares it: without
    its separators ('-' and '/'), so XBL-2026/0417 and XBL20260417 are one number."""
    return reference.upper().replace("-", "").replace("/", "")


def declared_value(doc: Document) -> Money | None:
    """The sum of the goods' declared values (exact), or None when no line declares one."""
    values = [line.declared_value for line in doc.goods if line.declared_value is not None]
    if not values:
        return None
    total = sum((v.decimal for v in values), Decimal(0))
    return Money.model_validate({"amount": format(total, "f"), "currency": values[0].currency})
