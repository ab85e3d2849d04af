"""Shared test setup: where the third-party vectors live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same examples every time (a landing must not depend on the draw);
# developers' runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

pytest_plugins = ["tests.dbfixtures"]

ROOT = Path(__file__).resolve().parent.parent
# CI and developers have a copy of shared/ beside the clone; tests never copy it in.
SHARED_VECTORS = ROOT.parent / "shared" / "vectors"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    if not SHARED_VECTORS.is_dir():
        pytest.skip(f"third-party vectors not found at {SHARED_VECTORS} (../shared/vectors)")
    return SHARED_VECTORS
