"""Turning pydantic's validation errors into encd's own InvalidInput.

A rejection names the field (a dotted path such as ``body.amount`` or
``content.goods[0].hs_code``), what was expected and what was given.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from encd.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def error_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "tagged-union", "literal[", "union")) or part in {
            "str",
            "int",
            "bool",
            "list",
            "dict",
        }:
            continue  # pydantic's names for union branches, not fields
        else:
            path = f"{path}.{part}" if path else part
    return path


def describe(error: ErrorDetails) -> str:
    kind = error["type"]
    given = error.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind in {"string_type", "int_type", "bool_type", "list_type", "dict_type", "model_type"}:
        return f"{message.lower()}, got {type(given).__name__} {given!r}"
    if kind == "value_error" or "given" in message or "got" in message:
        return message
    return f"{message.lower()}, got {given!r}"


def parse_model(model: type[M], value: Any, field: str = "") -> M:
    """Validate ``value`` (plain JSON data) as ``model``; raise InvalidInput naming the field."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        message = describe(first)
        if len(errors) > 1:
            more = len(errors) - 1
            message += f" (and {more} more error{'s' if more > 1 else ''})"
        raise InvalidInput(error_path(field, first["loc"]), message) from None
