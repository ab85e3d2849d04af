"""RFC 6962 / 9162 proof vectors from transparency-dev/merkle, read from ../shared/vectors.

One test per JSON file under testdata/inclusion/** and testdata/consistency/**
(ids are the paths relative to testdata/).  Each case goes through
``verify_inclusion`` or ``verify_consistency`` and must give exactly the
listed outcome: ``wantErr: true`` raises an ``encd.errors.Error`` (and
nothing else), ``wantErr: false`` passes.  The files are never copied into
the project; without the folder the tests skip and say why.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from encd.errors import Error, InvalidInput
from encd.merkle import verify_consistency, verify_inclusion
from tests.conftest import SHARED_VECTORS

TESTDATA = SHARED_VECTORS / "transparency-dev-merkle" / "testdata"


def _cases() -> list[Any]:
    files = sorted(
        path.relative_to(TESTDATA).as_posix()
        for kind in ("inclusion", "consistency")
        for path in (TESTDATA / kind).rglob("*.json")
    )
    if not files:  # absent folder: one placeholder, skipped by the vectors_dir fixture
        return [pytest.param("", id="vectors-absent")]
    return files


# The one vector whose listed outcome encd deliberately does not give: its roots
# are the 12-byte placeholder "don't care 2", and encd refuses every hash that is
# not 32 bytes (as the vectors README says the stricter cases expect).  The case
# is still checked: it must fail for exactly that reason.
STRICTER = {
    "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": (
        "root1: hash must be 32 bytes (SHA-256), got 12"
    ),
}


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _run(case: dict[str, Any], kind: str) -> None:
    proof = [_b64(p) for p in case["proof"] or []]
    if kind == "inclusion":
        verify_inclusion(
            _b64(case["leafHash"]), case["leafIdx"], case["treeSize"], proof, _b64(case["root"])
        )
    else:
        verify_consistency(
            case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"])
        )


@pytest.mark.parametrize("relpath", _cases())
def test_vector(vectors_dir: Path, relpath: str) -> None:
    path = vectors_dir / "transparency-dev-merkle" / "testdata" / relpath
    case = json.loads(path.read_text())
    kind = relpath.split("/", 1)[0]
    if relpath in STRICTER:
        assert case["wantErr"] is False
        with pytest.raises(InvalidInput) as info:
            _run(case, kind)
        assert info.value.message == STRICTER[relpath]
    elif case["wantErr"]:
        with pytest.raises(Error):
            _run(case, kind)
    else:
        _run(case, kind)


def test_vectors_were_found(vectors_dir: Path) -> None:
    """Guard against a silently empty parametrization when the folder is present."""
    found = list((vectors_dir / "transparency-dev-merkle" / "testdata").rglob("*.json"))
    assert len(found) > 100
    assert all(Path(TESTDATA / rel).is_file() for rel in STRICTER)
