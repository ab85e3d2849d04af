"""Turning pydantic's validation errors into encd's own InvalidInput.

A rejection names the field (a dotted path such as ``body.amount`` or
``content.goods[0].hs_code``), what was expected and what was given.
Validators raise ``ValueError("expected …, got …")``, or ``Rule`` to point
at a member below the one that checks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from encd.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


# --- describing what was given ---------------------------------------------------------------


def show(text: str, limit: int = 40) -> str:
    if len(text) > limit:
        return repr(text[:limit]) + f"… ({len(text)} characters)"
    return repr(text)


def abridged(text: str, limit: int = 100) -> str:
    """``text`` for a message as it is, or its first ``limit`` characters and its length
    (an id from a request path may be of any length)."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def given(value: object) -> str:
    """What a JSON value is, for the "got …" half of a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {show(value)}"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


class Rule(ValueError):
    """A rule broken at ``path`` below the model (or field) that checks it."""

    def __init__(self, path: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.path = tuple(path)


# --- ValidationError -> InvalidInput -----------------------------------------------------------


def error_path(prefix: str, loc: Sequence[str | int], value: object) -> str:
    """The dotted path of ``loc`` in ``value``, without the tags of tagged unions."""
    out = prefix
    current: object = value
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            ok = isinstance(current, list | tuple) and 0 <= part < len(current)
            current = current[part] if ok else None  # type: ignore[index]
            continue
        # pydantic puts the tag of a discriminated union ("to_order") in loc; it is
        # not a key of the input, whose "kind" member holds it.
        if isinstance(current, dict) and part not in current and current.get("kind") == part:
            continue
        out = f"{out}.{part}" if out else part
        current = current.get(part) if isinstance(current, dict) else None
    return out


def describe(error: ErrorDetails) -> tuple[tuple[str | int, ...], str]:
    """An extra path below the error's loc, and the message for one pydantic error."""
    kind = error["type"]
    ctx = error.get("ctx", {})
    supplied = error["input"]
    if kind == "missing":
        return (), "required field is missing"
    if kind == "extra_forbidden":
        return (), "unknown field"
    if kind == "value_error":
        cause = ctx.get("error")
        if isinstance(cause, Rule):
            return cause.path, str(cause)
        return (), str(cause)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return (), f"expected an object, got {given(supplied)}"
    if kind == "literal_error":
        return (), f"expected {ctx['expected']}, got {given(supplied)}"
    if kind == "union_tag_invalid":
        discriminator = str(ctx["discriminator"]).strip("'")
        expected = " or ".join(str(ctx["expected_tags"]).rsplit(", ", 1))
        tag = supplied.get(discriminator) if isinstance(supplied, dict) else ctx["tag"]
        return (discriminator,), f"expected {expected}, got {given(tag)}"
    if kind == "union_tag_not_found":
        discriminator = str(ctx["discriminator"]).strip("'")
        return (discriminator,), "required field is missing"
    if kind == "string_pattern_mismatch":
        return (), f"expected a string matching {ctx['pattern']}, got {given(supplied)}"
    if kind == "string_too_short":
        return (), f"expected at least {ctx['min_length']} characters, got {given(supplied)}"
    if kind == "string_too_long":
        return (), f"expected at most {ctx['max_length']} characters, got {given(supplied)}"
    if kind in ("too_short", "too_long"):
        bound = "at least" if kind == "too_short" else "at most"
        limit = ctx["min_length"] if kind == "too_short" else ctx["max_length"]
        return (), f"expected {bound} {limit} items, got {ctx.get('actual_length')}"
    # Every field above is checked by a validator of ours; this is a safety net.
    return (), f"expected {error['msg'].removeprefix('Input should be ')}, got {given(supplied)}"


def invalid_input(exc: ValidationError, value: object, prefix: str) -> InvalidInput:
    errors = exc.errors(include_url=False)
    first = errors[0]
    extra, message = describe(first)
    field = error_path(prefix, (*first["loc"], *extra), value)
    more = len(errors) - 1
    if more:
        message += f" (and {more} more error{'s' if more > 1 else ''})"
    return InvalidInput(field, message)


def parse_model(model: type[M], value: Any, field: str = "") -> M:
    """Validate ``value`` (plain JSON data) as ``model``; raise InvalidInput naming the field."""
    if not isinstance(value, dict):
        raise InvalidInput(field, f"expected an object, got {given(value)}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid_input(exc, value, field) from None
