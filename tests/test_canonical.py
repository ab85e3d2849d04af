"""encd.canonical against RFC 8785's own examples, and encd's stricter rules for exact values."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from encd.canonical import (
    _NOT_SURE,
    MAX_SAFE_INTEGER,
    _check,
    _fast_canonical,
    canonical_bytes,
    parse_canonical,
    parse_json,
)
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


# --- the fast path (encd.canonical._fast_canonical) agrees with RFC 8785 -------------------

# Every character, astral ones and controls included (and lone surrogates, which are refused).
any_text = st.text(st.characters(codec=None), max_size=12)
wide_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
    | st.sampled_from(["\U0001f600", "\ufb33", "\u20ac", "\x00\x1f\x7f", '"\\/', "\u2028"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
            | st.sampled_from(["\U0001f600", "\ufb33", "\ue000", "a", "\U00010000x"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=24,
)


def reference_parse_canonical(data: bytes) -> Any:
    """parse_canonical as it was before the fast path: parse strictly, then compare."""
    value = parse_json(data)
    if rfc8785.dumps(value) != data:
        raise InvalidInput("", "JSON is not in canonical form (RFC 8785)")
    return value


def outcome(parse: Any, data: bytes) -> tuple[str, Any]:
    try:
        return ("ok", parse(data))
    except InvalidInput as exc:
        return ("error", exc.message)


@given(wide_values)
def test_fast_path_accepts_exactly_the_canonical_bytes(value: Any) -> None:
    data = rfc8785.dumps(value)
    fast = _fast_canonical(data)
    assert fast is _NOT_SURE or (fast == value and type(fast) is type(value))
    if not any(ord(c) > 0xFFFF for c in data.decode()):
        assert fast is not _NOT_SURE  # what it is there for: no detour for plain values
    assert parse_canonical(data) == value
    assert canonical_bytes(value) == data


@given(wide_values, st.data())
def test_fast_path_refuses_what_is_not_canonical(value: Any, data: st.DataObject) -> None:
    """Mutations of canonical bytes: parse_canonical answers exactly as the reference."""
    canonical = rfc8785.dumps(value)
    text = canonical.decode()
    edits = [
        lambda t: " " + t,
        lambda t: t + "\n",
        lambda t: t.replace(":", ": ", 1),
        lambda t: t.replace(",", ", ", 1),
        lambda t: t.replace('"', '"\\u0041', 1),
        lambda t: t.replace("1", "1.0", 1),
        lambda t: t.replace("1", "1e0", 1),
        lambda t: t.replace("0", "-0", 1),
        lambda t: t.replace("null", "NaN", 1),
        lambda t: t.replace("\\n", "\\u000a", 1),
        lambda t: t.replace("\\u001f", "\\u001F", 1),
        lambda t: t.replace("/", "\\/", 1),
        lambda t: t.replace("\U0001f600", "\\ud83d\\ude00", 1),
        lambda t: t.replace("{", '{"a":1,"a":2,', 1) if t != "{}" else '{"a":1,"a":1}',
        lambda t: t.replace("[", "[9007199254740992,", 1),
        lambda t: t.replace('"', '"\\udc00', 1),
    ]
    edit = data.draw(st.sampled_from(edits))
    changed = edit(text).encode("utf-8", "surrogatepass")
    assert outcome(parse_canonical, changed) == outcome(reference_parse_canonical, changed)
    # and any byte changed anywhere
    if canonical:
        at = data.draw(st.integers(0, len(canonical) - 1))
        byte = data.draw(st.integers(0, 255))
        flipped = canonical[:at] + bytes([byte]) + canonical[at + 1 :]
        assert outcome(parse_canonical, flipped) == outcome(reference_parse_canonical, flipped)


@given(st.binary(max_size=40) | any_text.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_fast_path_on_arbitrary_bytes(data: bytes) -> None:
    assert outcome(parse_canonical, data) == outcome(reference_parse_canonical, data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1.5}',
        b'{"a":1e3}',
        b'{"a":NaN}',
        b'{"a":-Infinity}',
        b'{"a":9007199254740992}',
        b'{"a":-9007199254740992}',
        b'{"a":-0}',
        b'{"a":"\\ud800"}',
        b'{"a":1,"a":1}',
        b'{"b":1,"a":2}',
        b'{"a":"\\/"}',
        b'{"a":"\\u0041"}',
        b'{"a":"\\u001F"}',
        b'{"a":"\\u000a"}',
        b'{ "a":1}',
        b"\xef\xbb\xbf{}",
        b'{"a":1}\n',
        b"[1]x",
        '{"\ufb33":1,"\U0001f600":2}'.encode(),
        '{"\U0001f600":2,"\ufb33":1}'.encode(),
        b"[" * 100_000,
        b"1" * 5000,
    ],
)
def test_fast_path_examples(data: bytes) -> None:
    assert outcome(parse_canonical, data) == outcome(reference_parse_canonical, data)
    assert _fast_canonical(data) is _NOT_SURE  # each goes the slow way, to its exact error


def _reference_outcome(value: Any) -> tuple[str, Any]:
    """RFC 8785's bytes for ``value`` after encd's own checks, or the check's message."""
    try:
        _check(value, "")
        return ("ok", rfc8785.dumps(value))
    except InvalidInput as exc:
        return ("error", exc.message)


def _bytes_outcome(value: Any) -> tuple[str, Any]:
    try:
        return ("ok", canonical_bytes(value))
    except InvalidInput as exc:
        return ("error", exc.message)


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1.0},
        {"a": (1, 2)},
        (1, 2),
        {"a": 2**53},
        {1: "x"},
        {"a": "\ud800"},
        {"a": float("nan")},
        {"\U0001f600": 2, "\ufb33": 1},
        {"a": [True, None, "x\n"]},
    ],
)
def test_canonical_bytes_fast_path_examples(value: Any) -> None:
    assert _bytes_outcome(value) == _reference_outcome(value)


dirty_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(
            any_text | st.integers(-3, 3) | st.booleans() | st.none(), children, max_size=3
        )
    ),
    max_leaves=12,
)


@given(dirty_values)
def test_canonical_bytes_agrees_with_rfc8785_on_any_value(value: Any) -> None:
    """The fast path of canonical_bytes gives RFC 8785's bytes or leaves the value to the
    slow path, which refuses what is not exact with its own message."""

    assert _bytes_outcome(value) == _reference_outcome(value)
