"""ledger.db.make_engine: a database URL that cannot hold a ledger is refused, named."""

from __future__ import annotations

from pathlib import Path

import pytest

from encd.errors import InvalidInput
from ledger.db import make_engine


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "expected sqlite:/// or postgresql://, got mysql"),
        ("sqlite://", "an in-memory SQLite database cannot hold a ledger"),
        ("sqlite:///:memory:", "an in-memory SQLite database cannot hold a ledger"),
        ("not a url", "not a database URL"),
        # pysqlite would ignore these with a warning, or (uri=true) open the file otherwise
        (
            "sqlite:///{dir}/l.db?password=abc",
            "an SQLite URL takes no query arguments, got password",
        ),
        (
            "sqlite:///{dir}/l.db?uri=true&mode=ro",
            "an SQLite URL takes no query arguments, got mode, uri",
        ),
    ],
)
def test_a_url_that_cannot_hold_a_ledger_is_refused(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        make_engine(url.format(dir=tmp_path))
    assert info.value.field == "database url"
    assert message in info.value.message
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_a_plain_sqlite_file_url_is_taken(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/l.db")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
