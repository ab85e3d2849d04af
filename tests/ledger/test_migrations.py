"""Schema migrations that rewrite data: a ledger made by an earlier version upgrades."""

from __future__ import annotations

import threading

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, select

from encd.errors import InvalidInput
from ledger.db import MIGRATIONS, make_engine, migrate
from ledger.schema import CARGO


def _at(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _cargo(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {key: doc for key, doc in conn.execute(select(CARGO.c.key, CARGO.c.doc_id))}


def test_0004_writes_cargo_numbers_without_separators(database_url: str) -> None:
    engine = make_engine(database_url, writer=True)
    try:
        _at(engine, "0003")
        rows = {
            "container:CSQU3054383": "DOC-1",
            "sea_bl:XBL-2026/000417": "DOC-1",
            "sea_bl:XBL2026000417": "DOC-1",  # the same number, listed twice by DOC-1
            "customs_entry:8000-2026-0417": "DOC-1",
            "rail_waybill:CQLQ2603100417": "DOC-2",
        }
        with engine.begin() as conn:
            conn.execute(insert(CARGO), [{"key": k, "doc_id": d} for k, d in rows.items()])
        migrate(engine)
        assert _cargo(engine) == {
            "container:CSQU3054383": "DOC-1",
            "sea_bl:XBL2026000417": "DOC-1",
            "customs_entry:800020260417": "DOC-1",
            "rail_waybill:CQLQ2603100417": "DOC-2",
        }
    finally:
        engine.dispose()


def test_0004_names_two_live_documents_that_cover_one_cargo(database_url: str) -> None:
    engine = make_engine(database_url, writer=True)
    try:
        _at(engine, "0003")
        with engine.begin() as conn:
            conn.execute(
                insert(CARGO),
                [
                    {"key": "sea_bl:XBL-2026000417", "doc_id": "DOC-1"},
                    {"key": "sea_bl:XBL2026000417", "doc_id": "DOC-2"},
                ],
            )
        with pytest.raises(RuntimeError) as refused:
            migrate(engine)
        assert "live documents DOC-1 and DOC-2 both cover sea_bl:XBL2026000417" in str(
            refused.value
        ) or "live documents DOC-2 and DOC-1 both cover sea_bl:XBL2026000417" in str(refused.value)
        assert len(_cargo(engine)) == 2, "nothing was rewritten"
    finally:
        engine.dispose()


def test_a_schema_newer_than_this_encd_is_refused_by_name(database_url: str) -> None:
    """A ledger a newer encd upgraded: the refusal says so, not Alembic's 'Can't locate'."""
    engine = make_engine(database_url)
    migrate(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0999'")
    with pytest.raises(InvalidInput) as info:
        migrate(engine)
    assert info.value.field == "ledger"
    assert "schema is at revision '0999', which this encd does not know" in info.value.message
    assert "a newer encd upgraded it" in info.value.message
    with engine.begin() as connection:  # unchanged
        found = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert found == "0999"
    engine.dispose()


def test_the_migrations_make_the_schema_the_code_declares(database_url: str) -> None:
    """Every table, column and index ledger.schema declares (and nothing else) is what
    the migrations build: an index declared without its migration would be missing from
    every ledger made or upgraded by `encd init`."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ledger.schema import SQLModel

    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_hosts_started_at_once_on_an_empty_database_each_find_the_schema_built(
    database_url: str,
) -> None:
    """Several hosts started (or upgraded) at the same moment on one database: each
    migrates in turn, and finds the schema the first built.  (On PostgreSQL all but
    one failed to start: "duplicate key value violates unique constraint
    pg_type_typname_nsp_index", two CREATE TABLE alembic_version at once.)"""
    hosts = 4
    engines = [make_engine(database_url, writer=True) for _ in range(hosts)]
    start = threading.Barrier(hosts)
    failures: list[BaseException] = []

    def host(engine: Engine) -> None:
        start.wait()
        try:
            migrate(engine)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=host, args=(engine,)) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        with engines[0].connect() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        assert version == ScriptDirectory.from_config(config).get_current_head()
    finally:
        for engine in engines:
            engine.dispose()
