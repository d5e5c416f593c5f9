"""The whole adoption of a host application's database, as its team would run it: `alembic
upgrade head` with no stamp, `health`, `alembic check`, enqueue by every path, onboarding from
the host's own cache, backfill, the host deleting a symbol, `downgrade base`, upgrade again."""

import asyncpg
import pytest

from tests import hostdb
from tests.acceptance.conftest import run_cli, worker_env
from tests.catalog import alembic_cli
from worker import enqueue_symbol
from worker.core.db import asyncpg_dsn, create_engine
from worker.core.schema import PROJECT_TABLES, VERSION_TABLE

pytestmark = pytest.mark.slow


async def cli(url: str, *args: str) -> str:
    code, out, err = await run_cli(worker_env(url), *args)
    assert code == 0, out + err
    return out


async def prices_by_symbol(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT symbol, count(*) AS n FROM symbol_prices_daily GROUP BY symbol ORDER BY symbol"
    )
    return {r["symbol"]: r["n"] for r in rows}


async def test_a_host_database_adopts_runs_and_gives_everything_back(
    host_database_url: str,
) -> None:
    url = host_database_url
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        alembic_cli(url, "upgrade", "head")  # no stamp
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == hostdb.HOST_HEAD
        assert "reachable" in await cli(url, "health")
        alembic_cli(url, "check")

        # Every enqueue path; the symbol is kept as the host spells it (BRK-B).
        engine = create_engine(url)
        try:
            async with engine.begin() as db:
                await enqueue_symbol(db, "aapl")
                await enqueue_symbol(db, "MSFT")  # one zero close among its cache rows
        finally:
            await engine.dispose()
        await conn.execute("SELECT enqueue_symbol_onboarding('BRK-B')")
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('NOTINUNIVERSE')")

        await cli(url, "run", "--burst", "--source", "database")
        jobs = dict(await conn.fetch("SELECT symbol, status FROM symbol_onboarding_queue"))
        assert jobs == dict.fromkeys(("AAPL", "BRK-B", "MSFT", "NOTINUNIVERSE"), "completed")
        onboarded = {"AAPL": hostdb.DAYS, "BRK-B": hostdb.DAYS, "NOTINUNIVERSE": hostdb.DAYS}
        # The zero close is skipped, never stored; the symbol's other rows are.
        assert await prices_by_symbol(conn) == {**onboarded, "MSFT": hostdb.DAYS - 1}
        null_volume = hostdb.weekdays(hostdb.DAYS)[hostdb.NULL_VOLUME[1]]
        assert (
            await conn.fetchval(
                "SELECT volume FROM symbol_prices_daily WHERE symbol = 'AAPL' AND price_date = $1",
                null_volume,
            )
            is None
        )
        universe = dict(await conn.fetch("SELECT symbol, status FROM symbol_universe"))
        assert universe["NOTINUNIVERSE"] == "active" and universe["OLDCO"] == "delisted"

        await conn.execute("DELETE FROM symbol_prices_daily WHERE symbol = 'MSFT'")
        await cli(url, "backfill")
        # Exactly the valid rows: every cache row but the zero close. The host's inactive symbol
        # gets its prices and stays delisted.
        assert await prices_by_symbol(conn) == {
            **onboarded,
            "MSFT": hostdb.DAYS - 1,
            "OLDCO": hostdb.DAYS,
        }
        assert await conn.fetchval("SELECT min(close_price) FROM symbol_prices_daily") > 0
        oldco = await conn.fetchrow(
            "SELECT status, is_active FROM symbol_universe WHERE symbol = 'OLDCO'"
        )
        assert tuple(oldco) == ("delisted", False)

        # The host deletes an onboarded symbol with a plain DELETE; every child row cascades.
        await conn.execute("DELETE FROM symbol_universe WHERE symbol = 'AAPL'")
        assert "AAPL" not in await prices_by_symbol(conn)

        counts = await hostdb.row_counts(url)
        alembic_cli(url, "downgrade", "base")
        assert await hostdb.row_counts(url) == counts
        tables = {r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
        assert tables & (PROJECT_TABLES | {VERSION_TABLE}) == set()
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == hostdb.HOST_HEAD

        await cli(url, "migrate")  # and back again, from the package's own configuration
        assert "reachable" in await cli(url, "health")
    finally:
        await conn.close()
