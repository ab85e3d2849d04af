"""The worked examples of docs/formats/document.md §3.7 hold against encd.identifiers.

The table there gives, for each row, a function of ``encd.identifiers``, a value it
accepts, the same value with one character changed, and a fragment of the message it
is refused with.  Reading the table from the document keeps the text and the code
from drifting apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from encd import identifiers

DOC = Path(__file__).resolve().parent.parent / "docs" / "formats" / "document.md"
HEADER = "| function | accepted | refused | message contains |"

# Every checker the section specifies has at least one worked example.
CHECKERS = {
    "check_container",
    "check_uscc",
    "check_lei",
    "check_legal_id",
    "check_locode",
    "check_currency",
    "check_hs_code",
}


def _cell(text: str) -> str:
    text = text.strip()
    assert text.startswith("`") and text.endswith("`"), f"expected a `code` cell, got {text!r}"
    return text[1:-1]


def _examples() -> list[tuple[str, str, str, str]]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    assert lines.count(HEADER) == 1, f"{DOC} should have one table headed {HEADER!r}"
    start = lines.index(HEADER) + 2  # skip the header and the |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = line.strip().strip("|").split("|")
        assert len(cells) == 4, f"expected 4 cells in {line!r}"
        name, accepted, refused, message = (_cell(c) for c in cells)
        rows.append((name, accepted, refused, message))
    return rows


EXAMPLES = _examples()


def test_every_checker_has_an_example() -> None:
    assert {name for name, *_ in EXAMPLES} == CHECKERS


@pytest.mark.parametrize(("name", "accepted", "refused", "message"), EXAMPLES)
def test_worked_example(name: str, accepted: str, refused: str, message: str) -> None:
    check = getattr(identifiers, name)
    result = check(accepted)
    # check_legal_id answers (scheme, value); the others answer the value.
    assert (result[1] if isinstance(result, tuple) else result) == accepted

    assert len(refused) == len(accepted)
    assert sum(a != b for a, b in zip(accepted, refused, strict=True)) == 1
    with pytest.raises(ValueError) as exc:
        check(refused)
    assert message in str(exc.value)


def test_the_currency_list_in_the_document_is_the_one_encd_checks() -> None:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("The currency codes, all ")
    block = text[text.index("```\n", start) + 4 :]
    listed = block[: block.index("```")].split()
    assert listed == sorted(identifiers.ISO_4217_CODES)
    assert f"all {len(listed)} of them" in text[start : start + 40]
