"""The migrations against real PostgreSQL: up, down, up; the spec's schema; models == migrations."""

from pathlib import Path

import asyncpg
import pytest

from tests.catalog import alembic_cli, autogenerate_diff, snapshot, table_names
from tests.harness import PgServer
from worker.core.db import asyncpg_dsn
from worker.core.schema import VERSION_TABLE
from worker.models import Base
from worker.ops import migrate

SPEC_SQL = (Path(__file__).parent / "spec_schema.sql").read_text()
SPEC_TABLES = [
    "symbol_prices_daily",
    "portfolio_analytics_cache",
    "symbol_onboarding_queue",
    "symbol_universe",
]
ALL_TABLES = sorted(Base.metadata.tables)


async def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    await migrate.upgrade(empty_database_url)
    at_head = await snapshot(empty_database_url, ALL_TABLES)
    assert set(ALL_TABLES) <= await table_names(empty_database_url)

    await migrate.downgrade(empty_database_url, "base")
    assert await table_names(empty_database_url) == set()  # the version table too

    await migrate.upgrade(empty_database_url)
    assert await snapshot(empty_database_url, ALL_TABLES) == at_head
    assert await migrate.current_revision(empty_database_url) == migrate.head_revision()


async def test_spec_revision_matches_the_specs_sql(pg_server: PgServer) -> None:
    """Revision 0002 builds exactly what the spec's SQL builds on the same baseline."""
    ours_name, spec_name = pg_server.new_name("ours"), pg_server.new_name("spec")
    ours = await pg_server.create_database(ours_name)
    spec = await pg_server.create_database(spec_name)
    try:
        await migrate.upgrade(ours, "0002")
        await migrate.upgrade(spec, "0001")
        conn = await asyncpg.connect(asyncpg_dsn(spec))
        try:
            await conn.execute(SPEC_SQL)
        finally:
            await conn.close()

        expected = await snapshot(spec, SPEC_TABLES)
        actual = await snapshot(ours, SPEC_TABLES)
        for part in ("columns", "indexes", "constraints"):
            assert actual[part] - expected[part] == set(), f"{part} we add beyond the spec"
            assert expected[part] - actual[part] == set(), f"{part} of the spec we miss"
    finally:
        await pg_server.drop_database(ours_name)
        await pg_server.drop_database(spec_name)


async def test_spec_schema_survives_to_head(pg_server: PgServer, database_url: str) -> None:
    """Later revisions may add to the spec's schema, never silently drop or change it."""
    spec_name = pg_server.new_name("spec")
    spec = await pg_server.create_database(spec_name)
    try:
        await migrate.upgrade(spec, "0001")
        conn = await asyncpg.connect(asyncpg_dsn(spec))
        try:
            await conn.execute(SPEC_SQL)
        finally:
            await conn.close()
        expected = await snapshot(spec, SPEC_TABLES)
    finally:
        await pg_server.drop_database(spec_name)

    at_head = await snapshot(database_url, SPEC_TABLES)
    for part in ("columns", "indexes", "constraints"):
        missing = {row for row in expected[part] if row not in at_head[part]}
        assert missing == DELIBERATE_CHANGES[part], f"{part} changed since the spec"


# What later revisions deliberately change in the spec's schema, each for a reason named in its
# revision. Empty sets mean head still carries the spec's schema unchanged.
DELIBERATE_CHANGES: dict[str, set[tuple[object, ...]]] = {
    # 0003: a job always has a status, a priority and a creation time (NOT NULL).
    "columns": {
        ("symbol_onboarding_queue", "created_at", "timestamp with time zone", False, "now()"),
        (
            "symbol_onboarding_queue",
            "priority",
            "character varying(10)",
            False,
            "'normal'::character varying",
        ),
        (
            "symbol_onboarding_queue",
            "status",
            "character varying(20)",
            False,
            "'pending'::character varying",
        ),
    },
    "indexes": set(),
    # 0008: the host's deletes of a symbol, a portfolio or a user are not blocked by our rows.
    "constraints": {
        (
            "symbol_prices_daily",
            "symbol_prices_daily_symbol_fkey",
            b"f",
            "FOREIGN KEY (symbol) REFERENCES symbol_universe(symbol)",
        ),
        (
            "portfolio_analytics_cache",
            "portfolio_analytics_cache_portfolio_id_fkey",
            b"f",
            "FOREIGN KEY (portfolio_id) REFERENCES portfolios(id)",
        ),
        (
            "symbol_onboarding_queue",
            "symbol_onboarding_queue_requested_by_fkey",
            b"f",
            "FOREIGN KEY (requested_by) REFERENCES users(id)",
        ),
    },
}


async def test_models_match_migrations(database_url: str) -> None:
    assert await autogenerate_diff(database_url, Base.metadata, version_table=VERSION_TABLE) == []


@pytest.mark.slow
def test_alembic_check_passes(database_url: str) -> None:
    alembic_cli(database_url, "check")
