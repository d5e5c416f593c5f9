"""Adopting a host application's database: one `upgrade head`, no stamp, the host untouched;
`downgrade base` removes only what the project created; both Alembic chains coexist."""

import asyncpg
import pytest
from sqlalchemy import MetaData

from tests import hostdb
from tests.catalog import alembic_cli, autogenerate_diff, functions, snapshot, table_names
from tests.harness import PgServer
from worker.core.db import asyncpg_dsn, create_engine
from worker.core.schema import (
    PROJECT_COLUMNS,
    PROJECT_TABLES,
    VERSION_TABLE,
    include_host_object,
    include_object,
)
from worker.models import Base
from worker.ops import migrate

ADDED_COLUMNS = {("symbol_universe", c) for c in PROJECT_COLUMNS["symbol_universe"]}


async def fetch(url: str, query: str, *args):
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def test_upgrade_adopts_a_host_database_and_adds_only_four_columns(
    host_database_url: str,
) -> None:
    url = host_database_url
    before = await snapshot(url, hostdb.HOST_TABLES)
    counts = await hostdb.row_counts(url)

    await migrate.upgrade(url)

    assert await migrate.current_revision(url) == migrate.head_revision()
    assert [tuple(r) for r in await fetch(url, "SELECT * FROM alembic_version")] == [
        (hostdb.HOST_HEAD,)
    ]
    after = await snapshot(url, hostdb.HOST_TABLES)
    added = {row[:2] for row in after["columns"] - before["columns"]}
    assert added == ADDED_COLUMNS
    assert before["columns"] - after["columns"] == set()
    for part in ("indexes", "constraints"):
        assert after[part] == before[part], part
    # The one project object on a host table: it keeps status and is_active consistent.
    assert {row[:2] for row in after["triggers"] - before["triggers"]} == {
        ("symbol_universe", "symbol_onboarding_sync_is_active")
    }
    assert before["triggers"] - after["triggers"] == set()
    assert await hostdb.row_counts(url) == counts
    # The baseline created none of the host's tables.
    assert await fetch(url, "SELECT * FROM symbol_onboarding_baseline_tables") == []
    assert PROJECT_TABLES | {VERSION_TABLE} <= await table_names(url)


async def test_downgrade_base_on_a_host_database_removes_only_the_projects_objects(
    host_database_url: str,
) -> None:
    url = host_database_url
    tables_before = await table_names(url)
    before = await snapshot(url, hostdb.HOST_TABLES)
    functions_before = await functions(url)
    counts = await hostdb.row_counts(url)

    await migrate.upgrade(url)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:  # the project in use: a job, a price row, an analytics cache row
        await conn.execute("SELECT enqueue_symbol_onboarding('AAPL')")
        await conn.execute(
            "INSERT INTO symbol_prices_daily (symbol, price_date, close_price)"
            " VALUES ('AAPL', current_date, 1)"
        )
    finally:
        await conn.close()
    await migrate.downgrade(url, "base")

    assert await table_names(url) == tables_before
    assert await snapshot(url, hostdb.HOST_TABLES) == before
    assert await functions(url) == functions_before
    assert await hostdb.row_counts(url) == counts
    assert await migrate.current_revision(url) is None

    await migrate.upgrade(url)  # and again
    assert await migrate.current_revision(url) == migrate.head_revision()


async def test_baseline_creates_and_later_drops_only_the_host_tables_that_were_missing(
    pg_server: PgServer,
) -> None:
    name = pg_server.new_name("partial")
    url = await pg_server.create_database(name)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute(
                "CREATE TABLE users (id uuid PRIMARY KEY, email text NOT NULL);"
                "INSERT INTO users VALUES (gen_random_uuid(), 'a@example.com');"
            )
        finally:
            await conn.close()
        await migrate.upgrade(url)
        created = {r[0] for r in await fetch(url, "SELECT table_name FROM " + BASELINE_RECORD)}
        assert created == {
            "portfolios",
            "symbol_universe",
            "market_data_cache",
            "symbol_factor_exposures",
        }
        await migrate.downgrade(url, "base")
        assert await table_names(url) == {"users"}
        assert [r[0] for r in await fetch(url, "SELECT email FROM users")] == ["a@example.com"]
    finally:
        await pg_server.drop_database(name)


BASELINE_RECORD = "symbol_onboarding_baseline_tables"


async def test_project_autogenerate_compares_only_its_own_objects_on_a_host_database(
    host_database_url: str,
) -> None:
    await migrate.upgrade(host_database_url)
    unfiltered = await autogenerate_diff(
        host_database_url, Base.metadata, version_table=VERSION_TABLE
    )
    assert any(d[0] == "remove_table" for d in unfiltered)  # the host's other tables
    filtered = await autogenerate_diff(
        host_database_url,
        Base.metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
    )
    assert filtered == []


async def _host_metadata(url: str) -> MetaData:
    """The host's own models, as its env.py would have them: every host table, reflected before
    the project arrived (the host does not model its version table)."""
    engine = create_engine(url)
    metadata = MetaData()
    try:
        async with engine.connect() as conn:
            await conn.run_sync(lambda sync: metadata.reflect(sync))
    finally:
        await engine.dispose()
    metadata.remove(metadata.tables["alembic_version"])
    return metadata


async def test_host_autogenerate_with_the_exported_filter_leaves_the_project_alone(
    host_database_url: str,
) -> None:
    host_metadata = await _host_metadata(host_database_url)
    await migrate.upgrade(host_database_url)

    unfiltered = await autogenerate_diff(host_database_url, host_metadata)
    removed_tables = {d[1].name for d in unfiltered if d[0] == "remove_table"}
    assert removed_tables == PROJECT_TABLES | {VERSION_TABLE}
    removed_columns = {(d[2], d[3].name) for d in unfiltered if d[0] == "remove_column"}
    assert removed_columns == ADDED_COLUMNS

    assert (
        await autogenerate_diff(
            host_database_url, host_metadata, include_object=include_host_object
        )
        == []
    )


@pytest.mark.slow
def test_alembic_check_passes_on_a_host_database(host_database_url: str) -> None:
    alembic_cli(host_database_url, "upgrade", "head")
    alembic_cli(host_database_url, "check")


async def test_a_database_migrated_before_the_own_version_table_moves_its_row_once(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:  # what an earlier version of the project left: its revision in alembic_version
        head = await conn.fetchval(f"SELECT version_num FROM {VERSION_TABLE}")
        await conn.execute(
            f"DROP TABLE {VERSION_TABLE};"
            "CREATE TABLE alembic_version (version_num varchar(32) NOT NULL,"
            " CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));"
        )
        await conn.execute("INSERT INTO alembic_version VALUES ($1)", head)
    finally:
        await conn.close()
    assert await migrate.current_revision(database_url) is None

    await migrate.upgrade(database_url)

    assert await migrate.current_revision(database_url) == migrate.head_revision()
    assert "alembic_version" not in await table_names(database_url)
