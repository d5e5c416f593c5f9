"""Fixtures for the onboarding tests: the fake provider server, a pool, settings and a claimer."""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import date
from typing import Any

import asyncpg
import pytest

from tests import hostdb
from tests.fakeprovider import FakeProvider
from tests.harness import PgServer, run
from worker.core.db import asyncpg_dsn
from worker.core.metrics import Metrics
from worker.core.settings import Settings
from worker.factors.store import FactorStore
from worker.jobs.onboarding import Onboarder, open_onboarder
from worker.ops import migrate
from worker.queue.store import Job, Queue

TABLES = (
    "symbol_onboarding_queue",
    "symbol_prices_daily",
    "symbol_universe",
    "market_data_cache",
    "price_source_state",
    "refresh_schedule_runs",
    "price_bulk_days",
    "price_bulk_bars",
)
KEYS = {
    "polygon_api_key": "pk-SECRET-polygon-0001",
    "tiingo_api_key": "tk-SECRET-tiingo-0002",
    "fmp_api_key": "fk-SECRET-fmp-0003",
}


@pytest.fixture(scope="module")
def module_database_url(pg_server: PgServer, template_database: str) -> Iterator[str]:
    """One migrated database per module: `shared_pool` empties its tables before each test, which is
    much cheaper than a database per test. Tests that change the schema use `database_url`."""
    name = pg_server.new_name("onboarding")
    url = run(pg_server.create_database(name, template=template_database))
    try:
        yield url
    finally:
        run(pg_server.drop_database(name))


@pytest.fixture
async def shared_pool(module_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the module's database (shared by the module's tests), every table the
    onboarding touches emptied first; `database_pool` (tests/conftest.py) is a database of the test's own."""
    pool = await asyncpg.create_pool(asyncpg_dsn(module_database_url), min_size=1, max_size=4)
    try:
        await pool.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def settings(provider: FakeProvider) -> Settings:
    """Every HTTP source pointed at the fake provider; tiny waits; no rate limits. The HTTP
    timeout is generous, so that a loaded machine never turns an instant reply into a timeout;
    a test of timeouts sets its own (test_onboarding_sources.py)."""
    return Settings(
        yahoo_base_url=provider.url,
        polygon_base_url=provider.url,
        tiingo_base_url=provider.url,
        fmp_base_url=provider.url,
        http_timeout_s=5.0,
        http_retries=1,
        http_retry_wait_s=0.001,
        http_retry_max_wait_s=0.002,
        rate_limit_yahoo="off",
        rate_limit_polygon="off",
        rate_limit_tiingo="off",
        rate_limit_fmp="off",
        **KEYS,
    )


@pytest.fixture
def queue() -> Queue:
    return Queue("test-worker", max_attempts=3, retry_base_s=30.0, retry_max_s=60.0)


@pytest.fixture
async def onboarder_for(
    shared_pool: asyncpg.Pool, queue: Queue, settings: Settings
) -> AsyncIterator[Callable[..., Awaitable[Onboarder]]]:
    """Open Onboarders, closed after the test:
    `await onboarder_for("yahoo", today=..., **settings)`."""
    async with contextlib.AsyncExitStack() as opened:

        async def make(
            sources: str,
            *,
            today: date,
            queue_: Queue | None = None,
            metrics: Metrics | None = None,
            factor_store: FactorStore | None = None,
            last_session: Callable[[], date] | None = None,
            **overrides: Any,
        ) -> Onboarder:
            return await opened.enter_async_context(
                open_onboarder(
                    replace(settings, **overrides),
                    queue_ or queue,
                    shared_pool,
                    sources=sources,
                    today=lambda: today,
                    metrics=metrics,
                    factor_store=factor_store,
                    last_session=last_session,
                )
            )

        yield make


async def claim(pool: asyncpg.Pool, queue: Queue, symbol: str) -> Job:
    """Enqueue `symbol` the way any caller would, and claim it."""
    await pool.execute("SELECT enqueue_symbol_onboarding($1)", symbol)
    jobs = await queue.claim(pool)
    assert [j.symbol for j in jobs] == [symbol]
    return jobs[0]


async def symbol_row(pool: asyncpg.Pool, symbol: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM symbol_universe WHERE symbol = $1", symbol)


async def stored(pool: asyncpg.Pool, symbol: str) -> list[tuple[Any, ...]]:
    """The symbol's stored rows as (date, open, high, low, close, adj_close, volume), by date."""
    rows = await pool.fetch(
        """SELECT price_date, open_price, high_price, low_price, close_price, adj_close_price,
                  volume
           FROM symbol_prices_daily WHERE symbol = $1 ORDER BY price_date""",
        symbol,
    )
    return [tuple(r) for r in rows]


@pytest.fixture
async def host_conn(pg_server: PgServer) -> AsyncIterator[asyncpg.Connection]:
    """A host database (tests/fixtures/deployed/host-schema.sql, long exposures) adopted by
    `migrate.upgrade`, as `python -m worker migrate` does it."""
    name = pg_server.new_name("host")
    url = await pg_server.create_database(name)
    try:
        await hostdb.load_schema(url)
        await migrate.upgrade(url)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        await pg_server.drop_database(name)
