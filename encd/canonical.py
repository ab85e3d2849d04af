"""Canonical JSON bytes (RFC 8785, the JSON Canonicalization Scheme).

Signatures and hashes in encd are over exact bytes.  ``canonical_bytes`` makes
those bytes from a value; ``parse_canonical`` takes bytes from outside and
refuses anything that is not already in canonical form, so one value has one
encoding and a verifier never has to re-serialize.

encd values are a strict subset of JSON, so that every value is exact:

- numbers are integers in the IEEE 754 safe range (|n| <= 2**53 - 1);
  fractions (money, weights) travel as decimal strings, never binary floats;
- strings are valid Unicode: no lone surrogates;
- objects have no duplicate member names.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import rfc8785

try:
    import _json
except ImportError:  # pragma: no cover - not CPython
    _json = None  # type: ignore[assignment]

from encd.errors import InvalidInput

MAX_SAFE_INTEGER = 2**53 - 1

JSONValue = None | bool | int | str | Sequence["JSONValue"] | Mapping[str, "JSONValue"]


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidInput(path, f"integer {value} is outside the exact range ±(2**53-1)")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(path, f"non-finite number {value!r} has no JSON form")
        raise InvalidInput(
            path, f"binary float {value!r} is not exact; use a decimal string or an integer"
        )
    if isinstance(value, str):
        _check_string(value, path)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(path, f"object key {key!r} is not a string")
            _check_string(key, path)
            _check(item, f"{path}.{key}" if path else key)
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    raise InvalidInput(path, f"{type(value).__name__} is not a JSON value")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_string(text: str, path: str) -> None:
    found = _SURROGATE.search(text)
    if found:
        code = ord(found.group())
        raise InvalidInput(path, f"lone surrogate U+{code:04X} is not valid Unicode")


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 bytes of ``value``; raises InvalidInput for what cannot be exact."""
    fast = _fast_bytes(value)
    if fast is not None:
        return fast
    _check(value, "")
    result: bytes = rfc8785.dumps(value)
    return result


def _reject_float(text: str) -> Any:
    raise InvalidInput("", f"number {text} is not an integer; use a decimal string")


def _reject_constant(text: str) -> Any:
    raise InvalidInput("", f"non-finite number {text} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput(key, "duplicate object member name")
        result[key] = value
    return result


def parse_json(data: bytes) -> Any:
    """Parse JSON bytes strictly (UTF-8, no duplicate names, integers only, no lone surrogates).

    Unlike ``parse_canonical`` this accepts any whitespace and member order.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("", f"not valid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            "", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidInput("", "JSON is nested too deeply") from None
    except ValueError:  # int() refuses numbers of more than 4300 digits
        raise InvalidInput("", "number has too many digits to be an exact integer") from None
    _check(value, "")
    return value


def parse_canonical(data: bytes) -> Any:
    """Parse bytes that must already be canonical (RFC 8785); returns the value."""
    value = _fast_canonical(data)
    if value is not _NOT_SURE:
        return value
    value = parse_json(data)
    if rfc8785.dumps(value) != data:
        raise InvalidInput("", "JSON is not in canonical form (RFC 8785)")
    return value


# --- the fast path of parse_canonical -------------------------------------------------------
#
# Canonical bytes are exactly what ``json`` writes with sorted keys, no whitespace and
# UTF-8 text, whenever (a) every number is an integer, written as Python writes ints,
# and (b) sorting keys by code point (Python) agrees with sorting them by UTF-16 code
# unit (RFC 8785 §3.2.3), which holds when no character is outside the Basic
# Multilingual Plane.  Python's string escapes are RFC 8785's (§3.2.2.2): \" \\ \b
# \f \n \r \t and \u00xx (lowercase) for the other controls, nothing else escaped.
#
# So: parse with the C scanner (no hooks but for numbers), write the value back with
# the C encoder and compare with the input.  Equal bytes are canonical and the value
# is the one ``parse_json`` returns.  Anything else -- a float, a constant, an unsafe
# integer, a lone surrogate (the UTF-8 encoding fails), a duplicate name, whitespace,
# an escape that need not be one, a character outside the BMP, malformed JSON -- goes
# the slow way, which gives the exact answer and error.

_NOT_SURE = object()


def _fast_int(text: str) -> int:
    number = int(text)
    if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        return number
    raise ValueError(text)


def _fast_refuse(text: str) -> Any:
    raise ValueError(text)


_DECODER = json.JSONDecoder(
    parse_int=_fast_int, parse_float=_fast_refuse, parse_constant=_fast_refuse
)
#: The decoder's C scanner: (text, index) -> (value, end); no whitespace skipped.
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, check_circular=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


def _no_default(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _c_write(value: Any) -> str:
    """``_ENCODER.encode(value)`` without building the C encoder again on every call."""
    return "".join(_C_ENCODER(value, 0))


if _json is not None:
    _C_ENCODER = _json.make_encoder(
        None, _no_default, _json.encode_basestring, None, ":", ",", True, False, False
    )
    _WRITE: Callable[[Any], str] = _c_write
else:  # pragma: no cover - not CPython
    _WRITE = _ENCODER.encode


#: The lead bytes of 4-byte UTF-8 sequences (and bytes never in UTF-8).
_LEAD_4 = bytes(range(0xF0, 0x100))


def _astral(data: bytes) -> bool:
    """Whether UTF-8 ``data`` has a character outside the BMP (a 4-byte sequence), where
    sorting by code point (Python) and by UTF-16 code unit (RFC 8785) may disagree."""
    return len(data.translate(None, _LEAD_4)) != len(data)


def _fast_canonical(data: bytes) -> Any:
    """The value of ``data`` if it is sure to be canonical, else ``_NOT_SURE``."""
    if type(data) is not bytes:
        return _NOT_SURE
    try:
        text = data.decode("utf-8")
        if not text.isascii() and _astral(data):
            return _NOT_SURE
        value, end = _SCAN(text, 0)
        if end == len(text) and _WRITE(value).encode("utf-8") == data:
            return value
    except Exception:  # any doubt: the slow path decides, with its own error
        pass
    return _NOT_SURE


def _fast_bytes(value: Any) -> bytes | None:
    """The canonical bytes of ``value`` if the fast path is sure of them, else None.

    ``json`` writes the value; if those bytes read back through the fast path's scanner
    (integers only and safe, whole, no character outside the BMP) as a value equal to
    ``value``, they are its canonical bytes: what json writes from the value read back
    is the same text again, so ``_fast_canonical`` would accept them.  A float, a
    non-string key, a tuple, an unsafe integer, a lone surrogate ... fails one test or
    the other and goes the slow way."""
    try:
        text = _WRITE(value)
        data = text.encode("utf-8")
        if not text.isascii() and _astral(data):
            return None
        parsed, end = _SCAN(text, 0)
    except Exception:  # not JSON as json sees it: the slow path says why
        return None
    if end != len(text) or parsed != value:
        return None
    return data
