"""A fresh, empty database for each test, on SQLite or on a real PostgreSQL server.

Without ENCD_DATABASE_URL each test gets ``sqlite:///<tmp_path>/ledger.db``.  With
ENCD_DATABASE_URL naming a PostgreSQL database (``scripts/postgres.sh start`` prints one;
``make test-pg`` and .ci/run set it), each test gets a database of its own, created on that
server before the test and dropped after it.  The URL's user must be allowed to create
databases.  One connection to the server's admin database serves the whole session.

tests/conftest.py loads this module with ``pytest_plugins = ["tests.dbfixtures"]``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

DATABASE_URL_ENV = "ENCD_DATABASE_URL"
TEST_DATABASE_PREFIX = "encd_test_"

Backend = Literal["sqlite", "postgresql"]


def server_url() -> URL | None:
    """The PostgreSQL URL in ENCD_DATABASE_URL, or None for SQLite (unset, or an SQLite URL)."""
    raw = os.environ.get(DATABASE_URL_ENV, "").strip()
    if not raw:
        return None
    url = make_url(raw)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return None
    if backend != "postgresql":
        raise pytest.UsageError(f"{DATABASE_URL_ENV}: expected sqlite or postgresql, got {raw!r}")
    if url.drivername == "postgresql":  # SQLAlchemy's default driver would be psycopg2
        url = url.set(drivername="postgresql+psycopg")
    return url


def current_backend() -> Backend:
    return "sqlite" if server_url() is None else "postgresql"


def render_url(url: URL) -> str:
    """``url`` as a string, password included, with the query's slashes left readable."""
    rendered = url.render_as_string(hide_password=False)
    base, sep, query = rendered.partition("?")
    return base + sep + query.replace("%2F", "/").replace("%2f", "/")


@contextmanager
def fresh_postgres_database(admin: Engine, base: URL) -> Iterator[str]:
    """Create an empty database on ``admin``'s server; yield its URL; drop it on exit.

    ``admin`` must use AUTOCOMMIT (CREATE and DROP DATABASE refuse to run in a transaction).
    The drop uses WITH (FORCE), so connections a test left open do not keep it alive.
    """
    name = TEST_DATABASE_PREFIX + uuid.uuid4().hex[:12]
    with admin.connect() as conn:
        # template0: always pristine, and nobody is ever connected to it.  FILE_COPY: for a
        # database this small it is about twice as fast to create and drop as WAL_LOG.
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY'))
    try:
        yield render_url(base.set(database=name))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_admin_engine() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on ENCD_DATABASE_URL's own database (PostgreSQL runs only)."""
    url = server_url()
    if url is None:
        pytest.skip(f"{DATABASE_URL_ENV} does not name a PostgreSQL server")
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        raise RuntimeError(
            f"cannot connect to {DATABASE_URL_ENV}={render_url(url)} "
            f"(is the server running? scripts/postgres.sh start): {exc}"
        ) from exc
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def backend() -> Backend:
    """Which database the tests run on: "sqlite" or "postgresql" (from ENCD_DATABASE_URL)."""
    return current_backend()


@pytest.fixture()
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database that is this test's alone."""
    url = server_url()
    if url is None:
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    admin: Engine = request.getfixturevalue("postgres_admin_engine")
    with fresh_postgres_database(admin, url) as fresh:
        yield fresh
