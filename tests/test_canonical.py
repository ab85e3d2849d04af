"""encd.canonical against RFC 8785's own examples, and encd's stricter rules for exact values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encd.canonical import MAX_SAFE_INTEGER, canonical_bytes, parse_canonical, parse_json
from encd.errors import InvalidInput

# RFC 8785 §3.2.3 "Sorting of Object Properties": the example object ...
SORTING_INPUT = (
    b'{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
    b' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
    b' "\\u00f6": "Latin Small Letter O With Diaeresis"}'
)
# ... and its properties in the order the RFC gives (UTF-16 code units: the emoji's
# surrogate pair D83D DE00 sorts before U+FB33).
SORTING_ORDER = [
    "Carriage Return",
    "One",
    "Control",
    "Latin Small Letter O With Diaeresis",
    "Euro Sign",
    "Emoji: Grinning Face",
    "Hebrew Letter Dalet With Dagesh",
]
SORTING_OUTPUT = (
    '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
    '"ö":"Latin Small Letter O With Diaeresis","€":"Euro Sign",'
    '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
).encode()


def test_rfc8785_sorting_example() -> None:
    value = parse_json(SORTING_INPUT)
    out = canonical_bytes(value)
    assert out == SORTING_OUTPUT
    assert list(parse_canonical(out).values()) == SORTING_ORDER


def test_rfc8785_section_3_2_2_example_strings_and_literals() -> None:
    # RFC 8785 §3.2.2's example without its "numbers" member (encd refuses fractions).
    data = (
        b'{"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        b' "literals": [null, true, false]}'
    )
    expected = '{"literals":[null,true,false],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'.encode()
    assert canonical_bytes(parse_json(data)) == expected
    assert parse_canonical(expected) == parse_json(data)


def test_rfc8785_section_3_2_2_example_numbers_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json(
            b'{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001]}'
        )
    assert info.value.message == "number 333333333.33333329 is not an integer; use a decimal string"


# RFC 8785 Appendix B, the number serialization samples (§3.2.2.3): the integer
# results.  Zero is exact; 2**53 and beyond are outside encd's exact range.
def test_rfc8785_integer_samples() -> None:
    assert canonical_bytes(0) == b"0"
    assert parse_canonical(b"0") == 0
    assert canonical_bytes(MAX_SAFE_INTEGER) == b"9007199254740991"
    assert canonical_bytes(-MAX_SAFE_INTEGER) == b"-9007199254740991"
    with pytest.raises(InvalidInput) as info:
        parse_canonical(b"-0")  # minus zero serializes as 0
    assert info.value.message == "JSON is not in canonical form (RFC 8785)"


@pytest.mark.parametrize(
    "text",
    [
        "9007199254740992",
        "-9007199254740992",
        "295147905179352830000",
        "999999999999999700000",
        "999999999999999900000",
    ],
)
def test_rfc8785_integer_samples_beyond_2_53_are_refused(text: str) -> None:
    message = f"integer {text} is outside the exact range ±(2**53-1)"
    with pytest.raises(InvalidInput) as info:
        parse_canonical(text.encode())
    assert info.value.message == message
    with pytest.raises(InvalidInput) as info:
        canonical_bytes(int(text))
    assert info.value.message == message


@pytest.mark.parametrize(
    "text",
    [
        "5e-324",
        "-5e-324",
        "1.7976931348623157e+308",
        "9.999999999999997e+22",
        "1e+23",
        "1e+21",
        "0.000001",
        "333333333.3333333",
        "1424953923781206.2",
        "1.5",
        "4.50",
        "1E30",
        "2e-3",
    ],
)
def test_rfc8785_float_samples_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json(text.encode())
    assert info.value.message == f"number {text} is not an integer; use a decimal string"


def test_python_floats_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        canonical_bytes({"weight": 1.5})
    assert info.value.message == (
        "weight: binary float 1.5 is not exact; use a decimal string or an integer"
    )
    with pytest.raises(InvalidInput) as info:
        canonical_bytes(1.0)
    assert info.value.message == "binary float 1.0 is not exact; use a decimal string or an integer"


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json(text.encode())
    assert info.value.message == f"non-finite number {text} is not JSON"


@pytest.mark.parametrize(("value", "shown"), [(float("nan"), "nan"), (float("-inf"), "-inf")])
def test_non_finite_python_floats_are_refused(value: float, shown: str) -> None:
    with pytest.raises(InvalidInput) as info:
        canonical_bytes([value])
    assert info.value.message == f"[0]: non-finite number {shown} has no JSON form"


def test_duplicate_member_names_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json(b'{"a": 1, "b": {"c": 1, "c": 2}}')
    assert info.value.message == "c: duplicate object member name"
    assert info.value.field == "c"


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json(b'"\\ud800"')
    assert info.value.message == "lone surrogate U+D800 is not valid Unicode"
    with pytest.raises(InvalidInput) as info:
        parse_json(b'{"a": [1, {"b": "x\\udc00"}]}')
    assert info.value.message == "a[1].b: lone surrogate U+DC00 is not valid Unicode"
    with pytest.raises(InvalidInput) as info:
        canonical_bytes({"k": "\ud800"})
    assert info.value.message == "k: lone surrogate U+D800 is not valid Unicode"
    # a proper surrogate pair is one character, and fine
    assert parse_json(b'"\\ud83d\\ude00"') == "\U0001f600"


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}',  # whitespace
        b'{"a":1} ',
        b'\n{"a":1}',
        b'{"b":1,"a":2}',  # unsorted
        b'{"a":"\\u0041"}',  # escape where none is needed
        b'{"a":"\\/"}',
    ],
)
def test_non_canonical_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_canonical(data)
    assert info.value.message == "JSON is not in canonical form (RFC 8785)"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a":', "not JSON: Expecting value at line 1 column 6"),
        (b"\xff", "not valid UTF-8 at byte 0"),
        (b"[" * 100_000, "JSON is nested too deeply"),
        (b"1" * 5000, "number has too many digits to be an exact integer"),
    ],
)
def test_malformed_json(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json(data)
    assert info.value.message == message


def test_values_that_are_not_json_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        canonical_bytes({"a": {1, 2}})
    assert info.value.message == "a: set is not a JSON value"
    with pytest.raises(InvalidInput) as info:
        canonical_bytes({1: "x"})
    assert info.value.message == "object key 1 is not a string"


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"])), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_canonical_bytes_round_trip(value: Any) -> None:
    data = canonical_bytes(value)
    assert parse_canonical(data) == value
    assert canonical_bytes(parse_json(data)) == data
