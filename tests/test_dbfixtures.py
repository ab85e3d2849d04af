"""The database fixtures: a fresh database per test, on the backend ENCD_DATABASE_URL names."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
    text,
)
from sqlalchemy.engine import make_url

from tests.dbfixtures import (
    DATABASE_URL_ENV,
    TEST_DATABASE_PREFIX,
    fresh_postgres_database,
    server_url,
)


def expected_backend() -> str:
    raw = os.environ.get(DATABASE_URL_ENV, "")
    return make_url(raw).get_backend_name() if raw else "sqlite"


@pytest.fixture()
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def test_a_row_goes_in_and_comes_back(engine: Engine, backend: str) -> None:
    metadata = MetaData()
    notes = Table(
        "notes",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("body", String(100), nullable=False),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(notes.insert(), [{"body": "bill of lading"}, {"body": "sea waybill"}])
    with engine.connect() as conn:
        rows = conn.execute(notes.select().order_by(notes.c.id)).all()
    assert [row.body for row in rows] == ["bill of lading", "sea waybill"]
    assert engine.dialect.name == backend == expected_backend()


def test_the_backend_is_the_real_one(engine: Engine, backend: str) -> None:
    with engine.connect() as conn:
        if backend == "postgresql":
            version = conn.execute(text("SELECT version()")).scalar_one()
            assert "PostgreSQL" in version
            name = conn.execute(text("SELECT current_database()")).scalar_one()
            assert name.startswith(TEST_DATABASE_PREFIX)
        else:
            assert conn.execute(text("SELECT sqlite_version()")).scalar_one()


@pytest.mark.parametrize("turn", [1, 2])
def test_each_test_starts_with_an_empty_database(engine: Engine, turn: int) -> None:
    # Both turns create the same table: the second would fail on a shared database.
    assert inspect(engine).get_table_names() == []
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE leftover (turn INTEGER)"))
        conn.execute(text("INSERT INTO leftover VALUES (:turn)"), {"turn": turn})


def test_a_sqlite_database_is_a_file_in_the_tests_tmp_path(
    database_url: str, backend: str, tmp_path: Path
) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite runs only")
    assert database_url == f"sqlite:///{tmp_path}/ledger.db"


def test_a_postgres_database_is_dropped_after_its_test(postgres_admin_engine: Engine) -> None:
    base = server_url()
    assert base is not None

    def exists(name: str) -> bool:
        with postgres_admin_engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar_one()
        return bool(found)

    with fresh_postgres_database(postgres_admin_engine, base) as url:
        name = make_url(url).database
        assert name is not None and name.startswith(TEST_DATABASE_PREFIX)
        assert exists(name)
        # A connection the test forgot to close does not keep the database alive.
        forgotten = create_engine(url).connect()
        forgotten.execute(text("SELECT 1"))
    assert not exists(name)
    forgotten.invalidate()


def test_a_postgres_url_keeps_the_servers_address(database_url: str) -> None:
    base = server_url()
    if base is None:
        pytest.skip("PostgreSQL runs only")
    url = make_url(database_url)
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.host, url.port, dict(url.query)) == (
        base.username,
        base.host,
        base.port,
        dict(base.query),
    )
    assert url.database != base.database
