"""The media type of request bodies, and the rule a request's Content-Type must follow.

One module for the client that sends it and the service that checks it.  Pure:
no HTTP library.
"""

from __future__ import annotations

from collections.abc import Sequence

from encd.validation import show

EVENT_TYPE = "application/vnd.encd.event"
"""A signed event (docs/formats/events.md): the body of every POST the service takes."""

CHARSETS = frozenset({"utf-8"})
"""The one ``charset`` parameter an event may carry: its bytes are UTF-8 text."""


def content_type_mismatch(values: Sequence[str], expected: str) -> str | None:
    """Why the Content-Type field lines ``values`` do not name ``expected``; None when they do.

    RFC 9110 §8.3: one Content-Type; type and subtype compare case-insensitively,
    with optional whitespace around parameters; the only parameter accepted is
    ``charset=utf-8`` (any case, quoted or not).  Any other parameter is refused
    rather than ignored: this service knows none.
    """
    if len(values) == 1 and values[0] == expected:  # what every client sends: one comparison
        return None
    if not values:
        return f"expected {expected}, got none"
    if len(values) > 1:
        return f"expected {expected} once, got {len(values)} Content-Type fields"
    value = values[0]
    essence, *params = value.split(";")
    if essence.strip(" \t").lower() != expected:
        return f"expected {expected}, got {show(value, 100)}"
    for param in params:
        name, _, arg = param.strip(" \t").partition("=")
        if not name and not arg:  # RFC 9110 allows empty parameters: "a;;b", "a;"
            continue
        if len(arg) >= 2 and arg[0] == arg[-1] == '"':
            arg = arg[1:-1]
        if name.lower() != "charset" or arg.lower() not in CHARSETS:
            return f"expected {expected} with no parameter other than charset=utf-8, got {show(value, 100)}"
    return None
