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
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785

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
    value = parse_json(data)
    if rfc8785.dumps(value) != data:
        raise InvalidInput("", "JSON is not in canonical form (RFC 8785)")
    return value
