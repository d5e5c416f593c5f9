"""Host fit on the host's real schema (tests/fixtures/deployed/host-schema.sql, adopted): what the
host's own code reads after the worker ran, read with the host's own queries as CONTEXT.md states
them ("What the host's own code reads"):
- prices: `market_data_cache.close` for a date;
- betas: `symbol_factor_exposures` joined to `factor_definitions` by name at an EXACT
  `calculation_date`, the most recent completed trading day;
- cached portfolio analytics: `portfolio_analytics_cache` of the portfolios holding a symbol.

The price provider is a Yahoo replay built from Yahoo's documented chart format (bars stamped
09:30 New York, `meta.instrumentType`), with deterministic random-walk closes per symbol.
"""

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.fakeprovider import FakeProvider, Reply
from worker.core.db import asyncpg_dsn
from worker.core.errors import ConfigurationError
from worker.core.settings import Settings
from worker.core.trading_calendar import TradingCalendar
from worker.factors.betas import REFERENCE_ETFS
from worker.factors.service import recompute_factors
from worker.factors.switch import FactorSwitch
from worker.host.backfill import backfill
from worker.host.tables import HostTables
from worker.jobs.maintenance import sweep_factor_waits
from worker.jobs.onboarding import open_onboarder
from worker.jobs.refresh import JobsByKind, Refresher
from worker.jobs.schedule import enqueue_refresh
from worker.ops import migrate
from worker.queue.store import Queue

NEW_YORK = ZoneInfo("America/New_York")
CALENDAR = TradingCalendar("XNYS", now=datetime(2023, 12, 1, tzinfo=UTC))
# Monday 2023-11-27 and Tuesday the 28th, 17:00 in New York: that day's session has closed.
DAY1, DAY2 = date(2023, 11, 27), date(2023, 11, 28)
NOW1 = datetime(2023, 11, 27, 17, 0, tzinfo=NEW_YORK)
NOW2 = datetime(2023, 11, 28, 17, 0, tzinfo=NEW_YORK)
HISTORY = CALENDAR.sessions_between(date(2022, 11, 1), DAY2)
SYMBOLS = ("AAPL", "BRK-B", "MSFT", "ZION")  # two sort before SPY, two after
FACTOR_NAMES = (
    "Market Beta (90D)",
    "IR Beta",
    "Value",
    "Growth",
    "Momentum",
    "Quality",
    "Size",
    "Low Volatility",
    "Growth-Value Spread",
    "Momentum Spread",
    "Size Spread",
    "Quality Spread",
)
BIG_VOLUME = 3_000_000_000  # above INTEGER's 2^31-1


def closes(symbol: str) -> dict[date, Decimal]:
    """A deterministic random walk per symbol over HISTORY (4 decimals)."""
    rng = random.Random(symbol)
    price, out = 50.0 + rng.random() * 200, {}
    for day in HISTORY:
        price *= 1 + rng.gauss(0.0003, 0.015)
        out[day] = Decimal(f"{price:.4f}")
    return out


def yahoo_body(
    symbol: str, through: date, *, asset_type: str = "EQUITY", big_volume_on: date | None = None
) -> bytes:
    """A Yahoo v8 chart body of `symbol`'s closes through `through`."""
    series = {d: c for d, c in closes(symbol).items() if d <= through}
    days = sorted(series)
    stamps = [
        int(datetime(d.year, d.month, d.day, 9, 30, tzinfo=NEW_YORK).timestamp()) for d in days
    ]
    values = [float(series[d]) for d in days]
    volumes = [BIG_VOLUME if d == big_volume_on else 1_000_000 + i for i, d in enumerate(days)]
    result = {
        "meta": {
            "currency": "USD",
            "symbol": symbol,
            "instrumentType": asset_type,
            "exchangeTimezoneName": "America/New_York",
        },
        "timestamp": stamps,
        "indicators": {
            "quote": [
                {
                    "open": values,
                    "high": [v * 1.01 for v in values],
                    "low": [v * 0.99 for v in values],
                    "close": values,
                    "volume": volumes,
                }
            ],
            "adjclose": [{"adjclose": values}],
        },
    }
    return json.dumps({"chart": {"result": [result], "error": None}}).encode()


def serve(provider: FakeProvider, through: date, **kwargs: Any) -> None:
    for symbol in (*SYMBOLS, *REFERENCE_ETFS):
        kind = "ETF" if symbol in REFERENCE_ETFS else "EQUITY"
        provider.route(
            f"/v8/finance/chart/{symbol}",
            Reply(body=yahoo_body(symbol, through, asset_type=kind, **kwargs.get(symbol, {}))),
        )


POSITIONS = """
CREATE TABLE positions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    portfolio_id uuid NOT NULL REFERENCES portfolios (id),
    symbol varchar(20) NOT NULL,
    quantity numeric(20, 6) NOT NULL,
    last_price numeric(12, 4),
    market_value numeric(20, 2),
    exit_date date,
    deleted_at timestamptz
)
"""


@pytest.fixture
async def host_pool(host_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The host's database, adopted (upgrade head), with the host's `positions` table (its shape
    as CONTEXT.md gives it; the schema fixture predates it)."""
    await migrate.upgrade(host_database_url)
    pool = await asyncpg.create_pool(asyncpg_dsn(host_database_url), min_size=1, max_size=6)
    try:
        await pool.execute(POSITIONS)
        # The host's seeded symbol without prices would join every refresh batch; this replay
        # does not serve it.
        await pool.execute("DELETE FROM symbol_universe WHERE symbol = 'NOPRICE'")
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def host_settings(provider: FakeProvider) -> Settings:
    return Settings(
        yahoo_base_url=provider.url,
        http_timeout_s=5.0,
        http_retries=1,
        http_retry_wait_s=0.001,
        http_retry_max_wait_s=0.002,
        rate_limit_yahoo="off",
        price_lookback_days=400,
    )


@dataclass
class Worker:
    """The worker's job handler as `run` builds it, and its queue."""

    handler: JobsByKind
    queue: Queue
    factors: FactorSwitch


WorkerFor = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def worker_for(host_pool: asyncpg.Pool, host_settings: Settings) -> AsyncIterator[WorkerFor]:
    """`await worker_for(now, **settings)`: the handler with the factor switch and the host
    tables detected as `run` detects them, on the clock `now`."""
    queue = Queue("host-fit", max_attempts=3, retry_base_s=30.0, retry_max_s=60.0)
    async with contextlib.AsyncExitStack() as opened:

        async def make(now: datetime, **overrides: Any) -> Worker:
            settings = replace(host_settings, **overrides)
            switch = await FactorSwitch.detect(host_pool, settings.factors_mode)
            host = await HostTables.detect(host_pool, settings)
            onboarder = await opened.enter_async_context(
                open_onboarder(
                    settings,
                    queue,
                    host_pool,
                    sources="yahoo",
                    today=lambda: now.astimezone(UTC).date(),
                    factor_store=switch,
                    host=host,
                    last_session=lambda: CALENDAR.last_completed_session(now),
                )
            )
            refresher = Refresher(settings, queue, host_pool, onboarder, CALENDAR, now=lambda: now)
            return Worker(JobsByKind(onboarder, refresher), queue, switch)

        yield make


async def drain(pool: asyncpg.Pool, worker: Worker, concurrency: int = 4) -> list[str]:
    """Run every runnable job on `concurrency` lanes, each claiming one job at a time in the
    queue's claim order; returns the symbols in the order their jobs were claimed."""
    claimed: list[str] = []

    async def lane() -> None:
        while True:
            jobs = await worker.queue.claim(pool)
            if not jobs:
                return
            claimed.append(jobs[0].symbol)
            result = await worker.handler.run(jobs[0])
            assert result.outcome == "completed", (jobs[0].symbol, result)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return claimed


async def host_close(pool: asyncpg.Pool, symbol: str, day: date) -> Decimal | None:
    """The host's price cache: (symbol, date, close) for a date."""
    return await pool.fetchval(
        "SELECT close FROM market_data_cache WHERE symbol = $1 AND date = $2", symbol, day
    )


async def host_betas(pool: asyncpg.Pool, symbol: str, day: date) -> dict[str, Decimal]:
    """The host's factor read: exposures joined to factor_definitions by name, at exactly `day`."""
    rows = await pool.fetch(
        """SELECT fd.name, e.beta_value
           FROM symbol_factor_exposures AS e
           JOIN factor_definitions AS fd ON fd.id = e.factor_id
           WHERE e.symbol = $1 AND e.calculation_date = $2""",
        symbol,
        day,
    )
    return {r["name"]: r["beta_value"] for r in rows}


async def test_the_host_reads_every_price_and_beta_on_its_trading_day_in_any_claim_order(
    provider: FakeProvider, host_pool: asyncpg.Pool, worker_for: WorkerFor
) -> None:
    # Day 1: a user's symbols are enqueued through the helper's SQL; the ETFs come with them.
    serve(provider, DAY1)
    for symbol in SYMBOLS:
        await host_pool.execute("SELECT enqueue_symbol_onboarding($1)", symbol)
    await drain(host_pool, await worker_for(NOW1))
    for symbol in (*SYMBOLS, *REFERENCE_ETFS):
        assert await host_close(host_pool, symbol, DAY1) == closes(symbol)[DAY1], symbol
        assert set(await host_betas(host_pool, symbol, DAY1)) == set(FACTOR_NAMES), symbol
    sources = await host_pool.fetch(
        "SELECT DISTINCT data_source FROM market_data_cache WHERE date <= '2023-12-31'"
    )
    assert [r[0] for r in sources] == ["yfinance"]  # the host's own name for Yahoo

    # Day 2: one more session served; the daily batch, with the ETFs deliberately claimed last.
    serve(provider, DAY2)
    async with host_pool.acquire() as conn:
        created = await enqueue_refresh(conn, DAY2)
    assert created == len(SYMBOLS) + len(REFERENCE_ETFS)
    etf_priorities = await host_pool.fetch(
        "SELECT DISTINCT priority FROM symbol_onboarding_queue"
        " WHERE kind = 'refresh' AND status = 'pending' AND symbol = ANY($1)",
        list(REFERENCE_ETFS),
    )
    assert [r[0] for r in etf_priorities] == ["high"]  # the batch puts them first ...
    await host_pool.execute(  # ... this test puts them last
        "UPDATE symbol_onboarding_queue SET priority = 'low'"
        " WHERE status = 'pending' AND symbol = ANY($1)",
        list(REFERENCE_ETFS),
    )
    order = await drain(host_pool, await worker_for(NOW2), concurrency=4)
    assert set(order[-len(REFERENCE_ETFS) :]) == set(REFERENCE_ETFS)
    for symbol in (*SYMBOLS, *REFERENCE_ETFS):
        assert await host_close(host_pool, symbol, DAY2) == closes(symbol)[DAY2], symbol
        betas = await host_betas(host_pool, symbol, DAY2)
        assert set(betas) == set(FACTOR_NAMES), symbol
    behind = await host_pool.fetchval(
        "SELECT count(*) FROM symbol_universe WHERE status = 'active'"
        " AND last_factor_date IS DISTINCT FROM last_price_date"
    )
    assert behind == 0
    assert await host_pool.fetchval("SELECT count(*) FROM symbol_factor_waits") == 0


async def test_betas_dated_d_use_every_etfs_price_of_d(
    provider: FakeProvider, host_pool: asyncpg.Pool, worker_for: WorkerFor
) -> None:
    """A symbol refreshed while VTV still lacks the session waits, and its betas of D, computed
    when VTV lands, equal a recompute from the complete data."""
    serve(provider, DAY1)
    await host_pool.execute("SELECT enqueue_symbol_onboarding('AAPL')")
    await drain(host_pool, await worker_for(NOW1))
    serve(provider, DAY2)
    async with host_pool.acquire() as conn:
        await enqueue_refresh(conn, DAY2)
    worker = await worker_for(NOW2)
    # Every job but VTV's first, AAPL's included: VTV's job is claimed and held (as a slow
    # provider would), so AAPL must wait for VTV's session.
    held = None
    with capture_logs() as logs:
        while jobs := await worker.queue.claim(host_pool):
            if jobs[0].symbol == "VTV":
                held = jobs[0]
                continue
            assert (await worker.handler.run(jobs[0])).outcome == "completed"
    assert held is not None
    waiting = [e for e in logs if e["event"] == "factors_waiting" and e.get("symbol") == "AAPL"]
    assert waiting and waiting[0]["waiting_for"] == ["VTV"]
    assert await host_betas(host_pool, "AAPL", DAY2) == {}  # not dated D with VTV at D-1
    await worker.handler.run(held)  # VTV lands: AAPL's betas of D are computed in its transaction
    late = await host_betas(host_pool, "AAPL", DAY2)
    assert set(late) == set(FACTOR_NAMES)
    async with host_pool.acquire() as conn:
        await recompute_factors(conn, ["AAPL"])
    assert await host_betas(host_pool, "AAPL", DAY2) == late


async def test_host_rows_are_kept_and_disagreements_counted(
    provider: FakeProvider, host_pool: asyncpg.Pool, worker_for: WorkerFor
) -> None:
    serve(provider, DAY1, MSFT={"big_volume_on": DAY1})
    await host_pool.execute("UPDATE symbol_universe SET asset_type = NULL WHERE symbol = 'MSFT'")
    now = datetime.now(UTC)
    day_a, day_b = HISTORY[-3], HISTORY[-4]  # both sessions before DAY1
    true_a = closes("MSFT")[day_a]
    await host_pool.executemany(
        "INSERT INTO market_data_cache (id, symbol, date, close, volume, data_source,"
        " created_at, updated_at) VALUES (gen_random_uuid(), 'MSFT', $1, $2, 7, 'host_batch', $3, $3)",
        [(day_a, true_a + Decimal("1.5"), now), (day_b, closes("MSFT")[day_b], now)],
    )
    await host_pool.execute("SELECT enqueue_symbol_onboarding('MSFT')")
    with capture_logs() as logs:
        await drain(host_pool, await worker_for(NOW1, factors_enabled="off"))
    kept = await host_pool.fetch(
        "SELECT date, close, volume, data_source FROM market_data_cache"
        " WHERE symbol = 'MSFT' AND data_source = 'host_batch' ORDER BY date"
    )
    assert [(r["date"], r["close"], r["volume"]) for r in kept] == [
        (day_b, closes("MSFT")[day_b], 7),
        (day_a, true_a + Decimal("1.5"), 7),
    ]
    [disagrees] = [e for e in logs if e["event"] == "host_price_disagrees"]
    assert disagrees["rows"] == 1 and disagrees["host_rows_kept"] == 2
    assert disagrees["examples"][0]["date"] == day_a.isoformat()
    recorded = await host_pool.fetch("SELECT symbol, price_date FROM host_price_disagreements")
    assert [tuple(r) for r in recorded] == [("MSFT", day_a)]
    # The volume INTEGER cannot hold is stored NULL, and counted; the close is there.
    row = await host_pool.fetchrow(
        "SELECT close, volume FROM market_data_cache WHERE symbol = 'MSFT' AND date = $1", DAY1
    )
    assert row["close"] == closes("MSFT")[DAY1] and row["volume"] is None
    [refused] = [e for e in logs if e["event"] == "host_price_values_refused"]
    assert refused["volume_stored_null"] == 1
    assert (
        await host_pool.fetchval(
            "SELECT volume FROM symbol_prices_daily WHERE symbol = 'MSFT' AND price_date = $1", DAY1
        )
        == BIG_VOLUME
    )  # the worker's own table keeps it
    # The host's descriptive columns, filled while NULL.
    universe = await host_pool.fetchrow(
        "SELECT asset_type, first_seen_date FROM symbol_universe WHERE symbol = 'MSFT'"
    )
    assert universe["asset_type"] == "EQUITY" and universe["first_seen_date"] is not None


async def test_the_hosts_own_asset_type_is_never_overwritten(
    provider: FakeProvider, host_pool: asyncpg.Pool, worker_for: WorkerFor
) -> None:
    serve(provider, DAY1)
    # hostdb seeds AAPL with asset_type 'stock' and no first_seen_date.
    await host_pool.execute("SELECT enqueue_symbol_onboarding('AAPL')")
    await drain(host_pool, await worker_for(NOW1, factors_enabled="off"))
    row = await host_pool.fetchrow(
        "SELECT asset_type, first_seen_date FROM symbol_universe WHERE symbol = 'AAPL'"
    )
    assert row["asset_type"] == "stock" and row["first_seen_date"] is not None


async def test_synthetic_prices_never_reach_the_host(
    host_pool: asyncpg.Pool, host_settings: Settings
) -> None:
    queue = Queue("host-fit", max_attempts=3, retry_base_s=30.0, retry_max_s=60.0)
    host = await HostTables.detect(host_pool, host_settings)
    assert host.mirror_prices
    before = await host_pool.fetchval("SELECT count(*) FROM market_data_cache")
    async with open_onboarder(
        host_settings, queue, host_pool, sources="synthetic", host=host
    ) as onboarder:
        await host_pool.execute("SELECT enqueue_symbol_onboarding('SYNTH')")
        [job] = await queue.claim(host_pool)
        assert (await onboarder.run(job)).outcome == "completed"
    assert (
        await host_pool.fetchval("SELECT count(*) FROM symbol_prices_daily WHERE symbol = 'SYNTH'")
        > 200
    )
    assert await host_pool.fetchval("SELECT count(*) FROM market_data_cache") == before


async def test_mirror_off_writes_nothing_there_and_on_needs_the_hosts_table(
    provider: FakeProvider,
    host_pool: asyncpg.Pool,
    worker_for: WorkerFor,
    database_url: str,
    host_settings: Settings,
) -> None:
    serve(provider, DAY1)
    before = await host_pool.fetchval("SELECT count(*) FROM market_data_cache")
    await host_pool.execute("SELECT enqueue_symbol_onboarding('AAPL')")
    await drain(host_pool, await worker_for(NOW1, host_price_mirror="off", factors_enabled="off"))
    assert (
        await host_pool.fetchval("SELECT count(*) FROM symbol_prices_daily WHERE symbol = 'AAPL'")
        > 200
    )
    assert await host_pool.fetchval("SELECT count(*) FROM market_data_cache") == before
    # A fresh install: the baseline's own copy of market_data_cache is not the host's.
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        assert not (await HostTables.detect(conn, host_settings)).mirror_prices
        with pytest.raises(
            ConfigurationError, match="HOST_PRICE_MIRROR=on but market_data_cache is the copy"
        ):
            await HostTables.detect(conn, replace(host_settings, host_price_mirror="on"))
        await conn.execute("DROP TABLE market_data_cache")
        with pytest.raises(ConfigurationError, match="market_data_cache does not exist"):
            await HostTables.detect(conn, replace(host_settings, host_price_mirror="on"))
    finally:
        await conn.close()


async def test_a_split_replaces_the_workers_mirror_rows_and_keeps_the_hosts(
    provider: FakeProvider, host_pool: asyncpg.Pool, worker_for: WorkerFor
) -> None:
    serve(provider, DAY1)
    await host_pool.execute("SELECT enqueue_symbol_onboarding('AAPL')")
    await drain(host_pool, await worker_for(NOW1, factors_enabled="off"))
    host_day = HISTORY[-30]
    await host_pool.execute(
        "UPDATE market_data_cache SET data_source = 'host_batch', close = close * 3"
        " WHERE symbol = 'AAPL' AND date = $1",
        host_day,
    )
    # The provider now serves a 2:1 split applied to the whole history.
    halved = {d: (c / 2).quantize(Decimal("0.0001")) for d, c in closes("AAPL").items()}
    body = json.loads(yahoo_body("AAPL", DAY2))
    quote = body["chart"]["result"][0]["indicators"]["quote"][0]
    quote["close"] = [float(halved[d]) for d in HISTORY]
    for key in ("open", "high", "low"):
        quote[key] = [v / 2 for v in quote[key]]
    body["chart"]["result"][0]["indicators"]["adjclose"][0]["adjclose"] = quote["close"]
    provider.route("/v8/finance/chart/AAPL", Reply(body=json.dumps(body).encode()))
    async with host_pool.acquire() as conn:
        await enqueue_refresh(conn, DAY2, ["AAPL"])
    with capture_logs() as logs:
        await drain(host_pool, await worker_for(NOW2, factors_enabled="off"))
    assert any(e["event"] == "price_history_changed" for e in logs)
    mirrored = await host_pool.fetch(
        "SELECT date, close FROM market_data_cache WHERE symbol = 'AAPL' AND data_source = 'yfinance'"
    )
    assert mirrored and all(r["close"] == halved[r["date"]] for r in mirrored)
    assert max(r["date"] for r in mirrored) == DAY2
    host_row = await host_pool.fetchrow(
        "SELECT close, data_source FROM market_data_cache WHERE symbol = 'AAPL' AND date = $1",
        host_day,
    )
    assert host_row["data_source"] == "host_batch"  # left, and counted as disagreeing
    assert (
        await host_pool.fetchval(
            "SELECT count(*) FROM host_price_disagreements WHERE symbol = 'AAPL' AND price_date = $1",
            host_day,
        )
        == 1
    )


async def test_cached_analytics_of_holding_portfolios_are_invalidated(
    provider: FakeProvider, host_pool: asyncpg.Pool, worker_for: WorkerFor
) -> None:
    user = await host_pool.fetchval("SELECT id FROM users LIMIT 1")
    now = datetime.now(UTC)
    portfolios = {name: uuid.uuid4() for name in ("holds", "exited", "deleted", "other")}
    for name, pid in portfolios.items():
        await host_pool.execute(
            "INSERT INTO portfolios (id, user_id, name, currency, created_at, updated_at,"
            " account_name, account_type) VALUES ($1, $2, $3, 'USD', $4, $4, 'B', 'taxable')",
            pid,
            user,
            name,
            now,
        )
        await host_pool.execute(
            "INSERT INTO portfolio_analytics_cache (portfolio_id, cache_type, cache_key, cached_data,"
            " valid_until) VALUES ($1, 'risk', 'k', '{}', now() + interval '1 day')",
            pid,
        )
    positions = [
        ("holds", "AAPL", None, None),
        ("exited", "AAPL", date(2020, 1, 2), None),
        ("deleted", "AAPL", None, now),
        ("other", "MSFT", None, None),
    ]
    for name, symbol, exit_date, deleted_at in positions:
        await host_pool.execute(
            "INSERT INTO positions (portfolio_id, symbol, quantity, exit_date, deleted_at)"
            " VALUES ($1, $2, 10, $3, $4)",
            portfolios[name],
            symbol,
            exit_date,
            deleted_at,
        )
    serve(provider, DAY1)
    await host_pool.execute("SELECT enqueue_symbol_onboarding('AAPL')")
    await drain(host_pool, await worker_for(NOW1, factors_enabled="off"))
    left = await host_pool.fetch(
        "SELECT p.name FROM portfolio_analytics_cache c JOIN portfolios p ON p.id = c.portfolio_id"
        " ORDER BY p.name"
    )
    assert [r[0] for r in left] == ["deleted", "exited", "other"]
    # CACHE_INVALIDATION=off leaves them all.
    await host_pool.execute(
        "INSERT INTO portfolio_analytics_cache (portfolio_id, cache_type, cache_key, cached_data,"
        " valid_until) VALUES ($1, 'risk', 'k', '{}', now() + interval '1 day')",
        portfolios["holds"],
    )
    serve(provider, DAY2)
    async with host_pool.acquire() as conn:
        await enqueue_refresh(conn, DAY2, ["AAPL"])
    await drain(host_pool, await worker_for(NOW2, factors_enabled="off", cache_invalidation="off"))
    assert await host_pool.fetchval("SELECT count(*) FROM portfolio_analytics_cache") == 4


async def test_missing_factor_names_degrade_then_betas_come_once_seeded(
    provider: FakeProvider, host_pool: asyncpg.Pool, worker_for: WorkerFor
) -> None:
    # A database whose host application has not seeded its names yet (its migrations insert
    # only the spreads): the names are hidden, and given back as the host's start-up would.
    hidden = (
        "UPDATE factor_definitions SET name = 'unseeded ' || name WHERE name NOT LIKE '%Spread'"
    )
    await host_pool.execute(hidden)
    with pytest.raises(ConfigurationError, match="FACTORS_ENABLED"):
        await FactorSwitch.detect(host_pool, "on")
    serve(provider, DAY1)
    for symbol in ("AAPL", *REFERENCE_ETFS):
        await host_pool.execute("SELECT enqueue_symbol_onboarding($1)", symbol)
    with capture_logs() as logs:
        worker = await worker_for(NOW1)
        await drain(host_pool, worker)
    [warning] = [e for e in logs if e["event"] == "factors_unavailable"]
    assert "Market Beta (90D)" in warning["reason"] and not worker.factors.available
    # Prices flowed; no betas; the symbols are recorded as skipped (nothing to wait for).
    assert await host_close(host_pool, "AAPL", DAY1) == closes("AAPL")[DAY1]
    assert await host_betas(host_pool, "AAPL", DAY1) == {}
    skipped = await host_pool.fetch("SELECT symbol, waiting_for FROM symbol_factor_waits")
    assert {r["symbol"] for r in skipped} == {"AAPL", *REFERENCE_ETFS}
    assert all(r["waiting_for"] == [] for r in skipped)
    # A sweep before the names are there changes nothing.
    async with host_pool.acquire() as conn:
        assert await sweep(conn, worker.factors) == 0
    # The host seeds its names; the next housekeeping sweep notices, without a restart.
    await host_pool.execute(
        "UPDATE factor_definitions SET name = substr(name, 10) WHERE name LIKE 'unseeded %'"
    )
    async with host_pool.acquire() as conn:
        assert await sweep(conn, worker.factors) == 1 + len(REFERENCE_ETFS)
    assert worker.factors.available and worker.factors.reason is None
    assert await host_pool.fetchval("SELECT count(*) FROM symbol_factor_waits") == 0
    assert set(await host_betas(host_pool, "AAPL", DAY1)) == set(FACTOR_NAMES)


async def sweep(conn: asyncpg.Connection, factors: FactorSwitch) -> int:
    """The worker's housekeeping sweep of the factor waits, as `run` registers it."""
    return await sweep_factor_waits(
        conn, 100, factors=factors, host=HostTables(), settings=Settings()
    )


async def test_backfilled_rows_are_not_written_back_and_downgrade_keeps_mirrored_rows(
    provider: FakeProvider, host_pool: asyncpg.Pool, worker_for: WorkerFor, host_database_url: str
) -> None:
    """The backfill reads market_data_cache into symbol_prices_daily and never writes there; a
    downgrade leaves the mirrored rows (valid prices in a host table)."""
    cache = (
        "SELECT symbol, date, close, data_source, updated_at FROM market_data_cache ORDER BY 1, 2"
    )
    before = [tuple(r) for r in await host_pool.fetch(cache)]
    summary = await backfill(host_database_url)
    assert summary.rows_inserted > 0
    assert [tuple(r) for r in await host_pool.fetch(cache)] == before
    serve(provider, DAY1)
    await host_pool.execute("SELECT enqueue_symbol_onboarding('ZION')")
    await drain(host_pool, await worker_for(NOW1, factors_enabled="off"))
    mirrored = await host_pool.fetchval(
        "SELECT count(*) FROM market_data_cache WHERE symbol = 'ZION' AND data_source = 'yfinance'"
    )
    assert mirrored > 200
    await migrate.downgrade(host_database_url, "base")
    assert (
        await host_pool.fetchval("SELECT count(*) FROM market_data_cache WHERE symbol = 'ZION'")
        == mirrored
    )
