"""Revision 0008 on a host's database: `status` agrees with `is_active`, and the host's deletes
of a symbol, a portfolio or a user are not blocked by the project's rows."""

import asyncpg
import pytest

from tests import hostdb
from worker.core.db import asyncpg_dsn
from worker.ops import migrate

HOST_SEMANTICS = "0008"  # this revision; the test below starts just before it


@pytest.fixture
async def host(host_database_url: str):
    await migrate.upgrade(host_database_url)
    conn = await asyncpg.connect(asyncpg_dsn(host_database_url))
    try:
        yield conn
    finally:
        await conn.close()


async def state(conn: asyncpg.Connection, symbol: str) -> tuple[str, bool]:
    row = await conn.fetchrow(
        "SELECT status, is_active FROM symbol_universe WHERE symbol = $1", symbol
    )
    return row["status"], row["is_active"]


async def test_migration_fills_status_from_is_active_and_prices(host) -> None:
    assert {s: await state(host, s) for s in hostdb.UNIVERSE} == {
        "AAPL": ("active", True),
        "MSFT": ("active", True),
        "BRK-B": ("active", True),
        "OLDCO": ("delisted", False),  # the host marked it inactive (it has cache rows)
        "NOPRICE": ("pending", True),  # no price anywhere
    }


async def test_migration_fill_keeps_statuses_the_worker_set(database_url: str) -> None:
    """On a project database upgraded in place only rows the 0002 default made active move."""
    before = migrate.ScriptDirectory.from_config(migrate.alembic_config()).get_revision(
        HOST_SEMANTICS
    )
    await migrate.downgrade(database_url, before.down_revision)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO symbol_universe (symbol, status) VALUES ('P', 'pending'), ('E', 'error'),"
            " ('A', 'active'), ('N', 'active');"
            "INSERT INTO symbol_prices_daily (symbol, price_date, close_price)"
            " VALUES ('A', current_date, 1)"
        )
        await migrate.upgrade(database_url)
        rows = await conn.fetch("SELECT symbol, status FROM symbol_universe ORDER BY symbol")
    finally:
        await conn.close()
    assert dict(rows) == {"A": "active", "E": "error", "N": "pending", "P": "pending"}


async def test_host_marking_a_symbol_inactive_makes_it_delisted_and_back(host) -> None:
    await host.execute("UPDATE symbol_universe SET is_active = false WHERE symbol = 'AAPL'")
    assert await state(host, "AAPL") == ("delisted", False)

    await host.execute(
        "UPDATE symbol_universe SET last_price_date = current_date WHERE symbol = 'AAPL'"
    )
    await host.execute("UPDATE symbol_universe SET is_active = true WHERE symbol = 'AAPL'")
    assert await state(host, "AAPL") == ("active", True)

    # Re-activated without any price: pending (to be enqueued), never active.
    await host.execute("UPDATE symbol_universe SET is_active = true WHERE symbol = 'OLDCO'")
    assert await state(host, "OLDCO") == ("pending", True)

    # The host's ORM inserting an inactive symbol (status left to its default).
    await host.execute("INSERT INTO symbol_universe (symbol, is_active) VALUES ('GONE', false)")
    assert await state(host, "GONE") == ("delisted", False)
    # An unrelated update of an inactive row does not touch status.
    await host.execute("UPDATE symbol_universe SET sector = 'Tech' WHERE symbol = 'GONE'")
    assert await state(host, "GONE") == ("delisted", False)


async def test_worker_status_changes_carry_is_active(host) -> None:
    await host.execute("UPDATE symbol_universe SET status = 'delisted' WHERE symbol = 'MSFT'")
    assert await state(host, "MSFT") == ("delisted", False)
    await host.execute("UPDATE symbol_universe SET status = 'active' WHERE symbol = 'MSFT'")
    assert await state(host, "MSFT") == ("active", True)
    # pending and error leave is_active as the host set it.
    await host.execute("UPDATE symbol_universe SET status = 'error' WHERE symbol = 'NOPRICE'")
    assert await state(host, "NOPRICE") == ("error", True)


async def test_host_deletes_are_not_blocked_by_project_rows(host) -> None:
    user, portfolio = await host.fetchrow(
        "SELECT u.id, p.id FROM users u JOIN portfolios p ON p.user_id = u.id"
    )
    await host.execute("SELECT enqueue_symbol_onboarding('AAPL', 'normal', $1)", user)
    await host.execute(
        "INSERT INTO symbol_prices_daily (symbol, price_date, close_price)"
        " VALUES ('AAPL', current_date, 1);"
    )
    await host.execute(
        "INSERT INTO portfolio_analytics_cache (portfolio_id, cache_key, cache_type, cached_data,"
        " valid_until) VALUES ($1, 'k', 'factor_exposures', '{}', now() + interval '1 day')",
        portfolio,
    )

    await host.execute("DELETE FROM symbol_universe WHERE symbol = 'AAPL'")
    assert await host.fetchval("SELECT count(*) FROM symbol_prices_daily") == 0
    await host.execute("DELETE FROM portfolios WHERE id = $1", portfolio)
    assert await host.fetchval("SELECT count(*) FROM portfolio_analytics_cache") == 0
    await host.execute("DELETE FROM users WHERE id = $1", user)
    job = await host.fetchrow("SELECT symbol, requested_by FROM symbol_onboarding_queue")
    assert tuple(job) == ("AAPL", None)
