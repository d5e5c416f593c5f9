"""Fixtures: a real PostgreSQL for the session, a migrated template, one database copy per test."""

import os
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests import hostdb
from tests import pgbouncer as pgbouncer_harness
from tests.fakeprovider import FakeProvider
from tests.harness import PgServer, build_template, run, start_test_server
from worker.core.db import asyncpg_dsn, create_engine

# Code under test must never reach a developer's real database through the environment.
os.environ.pop("DATABASE_URL", None)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_test_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pgbouncer(pg_server: PgServer) -> Iterator[pgbouncer_harness.PgBouncer]:
    """A real PgBouncer in transaction pooling mode in front of the test server (skipped, with
    the reason, only where pgbouncer cannot run: not installed, or no TCP server behind it)."""
    try:
        bouncer = pgbouncer_harness.start(pg_server.admin_url)
    except pgbouncer_harness.PgBouncerUnavailable as exc:
        pytest.skip(f"no PgBouncer: {exc}")
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="session")
def template_database(pg_server: PgServer) -> Iterator[str]:
    name = run(build_template(pg_server))
    try:
        yield name
    finally:
        run(pg_server.drop_database(name))


@pytest.fixture
async def database_url(pg_server: PgServer, template_database: str) -> AsyncIterator[str]:
    """A fresh copy of the migrated template, dropped after the test."""
    name = pg_server.new_name("t")
    url = await pg_server.create_database(name, template=template_database)
    try:
        yield url
    finally:
        await pg_server.drop_database(name)


@pytest.fixture
async def empty_database_url(pg_server: PgServer) -> AsyncIterator[str]:
    """An empty database (no migrations applied), dropped after the test."""
    name = pg_server.new_name("empty")
    url = await pg_server.create_database(name)
    try:
        yield url
    finally:
        await pg_server.drop_database(name)


@pytest.fixture
async def host_database_url(pg_server: PgServer) -> AsyncIterator[str]:
    """A host application's database before the project arrives (tests/hostdb.py), seeded with
    rows like a live host's; not migrated. Dropped after the test."""
    name = pg_server.new_name("host")
    url = await pg_server.create_database(name)
    try:
        await hostdb.load_schema(url)
        await hostdb.seed(url)
        yield url
    finally:
        await pg_server.drop_database(name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the test's database (autocommit)."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def database_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on the test's own database copy."""
    pool = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    """A real HTTP server on 127.0.0.1 replaying recorded price-provider responses."""
    fake = FakeProvider()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
