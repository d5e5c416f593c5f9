"""Benchmark: worker.host.backfill against the spec's row-by-row backfill, in one run on one database.

    python bench/backfill.py                     # 8,000 symbols x 250 days = 2,000,000 rows
    python bench/backfill.py --symbols 400       # a quick run (100,000 rows)

Creates a throwaway database (on TEST_DATABASE_URL's server if set, else the embedded server),
migrates it, loads market_data_cache with COPY (half the symbols already in symbol_universe, half
missing, as in deployed databases), then:
1. the spec's backfill, translated faithfully (SQLAlchemy session, one INSERT ... ON CONFLICT DO
   NOTHING per row, one commit at the end) on half of a sample of whole symbols; its symbols are
   added to symbol_universe first, since the spec's code would otherwise crash on the foreign key;
   then its rows are deleted again;
2. worker.host.backfill on every row, with one connection;
3. worker.host.backfill again (the resume case: every row already there, all skipped);
4. worker.host.backfill on every row with --jobs connections (on an emptied table);
5. the spec's backfill on the other half of the sample (load on a shared machine drifts: the
   row-by-row rate is the two halves together).
Prints rows/s for each and the ratio to the row-by-row rate; drops the database at the end.
"""

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
from sqlalchemy import pool, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import async_sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.core import embedded
from worker.core.db import asyncpg_dsn, create_engine, redact, with_database
from worker.host.backfill import DEFAULT_BATCH_SIZE, backfill
from worker.models import MarketDataCache, SymbolPricesDaily, SymbolUniverse
from worker.ops import migrate

# The bench smoke test (tests/acceptance/test_bench_scripts.py) runs it with these arguments and
# checks these lines; the defaults stay the full size.
SMOKE_ARGS = ["--symbols", "20", "--days", "20", "--sample-rows", "100", "--batch-size", "100"]
SMOKE_OUTPUT = [r"^worker\.backfill, jobs=1: ", r"^worker\.backfill, jobs=2: ", r"^ratio, jobs=1: "]

EMBEDDED_PGDATA = Path("/tmp/symbol-onboarding-bench-pg")
FIRST_DAY = date(2024, 1, 2)
TARGET_RATIO = 50.0
CACHE_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume", "data_source"]


def symbol_names(count: int) -> list[str]:
    return [f"S{i:05d}" for i in range(count)]


def cache_records(symbols: list[str], days: int) -> Iterator[tuple[object, ...]]:
    """A deterministic random-walk-ish OHLCV series per symbol, on consecutive days."""
    for s, symbol in enumerate(symbols):
        base = 20 + (s % 500)
        for d in range(days):
            close = Decimal(base * 10_000 + (d * 37 + s * 11) % 5_000).scaleb(-4)
            yield (
                symbol,
                FIRST_DAY + timedelta(days=d),
                close - Decimal("0.25"),
                close + Decimal("0.5"),
                close - Decimal("0.75"),
                close,
                100_000 + (s * 7 + d * 13) % 900_000,
                "polygon",
            )


async def load(dsn: str, symbols: list[str], days: int) -> float:
    """COPY the cache rows in and seed every other symbol into the universe; returns seconds."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "market_data_cache", records=cache_records(symbols, days), columns=CACHE_COLUMNS
        )
        await conn.executemany(
            "INSERT INTO symbol_universe (symbol, status, added_source) VALUES ($1, 'active', 'seed')",
            [(s,) for s in symbols[::2]],
        )
    finally:
        await conn.close()
    return time.perf_counter() - started


async def spec_row_by_row(url: str, sample: list[str]) -> tuple[int, float]:
    """The spec's backfill_symbol_prices(), limited to `sample`; returns (rows, seconds)."""
    engine = create_engine(url, poolclass=pool.NullPool)
    session_factory = async_sessionmaker(engine, expire_on_commit=False)
    # Not part of the timing: the spec's code needs these to exist (foreign key).
    async with engine.begin() as conn:
        await conn.execute(
            pg_insert(SymbolUniverse)
            .values([{"symbol": s, "status": "active", "added_source": "bench"} for s in sample])
            .on_conflict_do_nothing()
        )
    rows = 0
    started = time.perf_counter()
    async with session_factory() as db:
        symbols = await db.execute(
            select(MarketDataCache.symbol).where(MarketDataCache.symbol.in_(sample)).distinct()
        )
        for symbol in symbols.scalars().all():
            prices = await db.execute(
                select(MarketDataCache)
                .where(MarketDataCache.symbol == symbol)
                .order_by(MarketDataCache.date)
            )
            for price in prices.scalars().all():
                await db.execute(
                    pg_insert(SymbolPricesDaily)
                    .values(
                        symbol=price.symbol,
                        price_date=price.date,
                        open_price=price.open,
                        high_price=price.high,
                        low_price=price.low,
                        close_price=price.close,
                        # The spec reads price.adjusted_close, which deployed caches lack.
                        adj_close_price=getattr(price, "adjusted_close", None),
                        volume=price.volume,
                    )
                    .on_conflict_do_nothing()
                )
                rows += 1
        await db.commit()
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return rows, elapsed


async def reset(dsn: str) -> None:
    """Back to the loaded state: no prices, only the seeded universe, nothing left to flush."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE symbol_prices_daily")
        await conn.execute("DELETE FROM symbol_universe WHERE added_source IN ('bench', 'batch')")
        # Fresh statistics, and no checkpoint of earlier writes running during the next timing.
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def time_backfill(url: str, args: argparse.Namespace, jobs: int) -> float:
    """One full backfill, checked to have done the whole job; returns its rows/s."""
    started = time.perf_counter()
    summary = await backfill(url, batch_size=args.batch_size, jobs=jobs)
    elapsed = time.perf_counter() - started
    total = args.symbols * args.days
    missing = len(symbol_names(args.symbols)[1::2])
    if (summary.rows_inserted, summary.symbols_added) != (total, missing):
        raise SystemExit(
            f"backfill did not do the whole job: inserted {summary.rows_inserted:,} of {total:,} "
            f"rows, added {summary.symbols_added:,} of {missing:,} symbols"
        )
    rate = summary.rows_seen / elapsed
    print(
        f"worker.backfill, jobs={jobs}: {total:>10,} rows in {elapsed:7.2f} s = "
        f"{rate:>9,.0f} rows/s ({summary.batches:,} batches of {args.batch_size:,}+ rows, "
        f"{summary.symbols_added:,} symbols added)"
    )
    return rate


async def time_row_by_row(url: str, sample: list[str], when: str) -> tuple[int, float]:
    rows, elapsed = await spec_row_by_row(url, sample)
    print(
        f"spec row by row, {when}: {rows:>8,} rows in {elapsed:7.2f} s = "
        f"{rows / elapsed:>9,.0f} rows/s ({len(sample):,} symbols)"
    )
    return rows, elapsed


async def bench(url: str, args: argparse.Namespace) -> None:
    symbols = symbol_names(args.symbols)
    total = args.symbols * args.days
    sample_symbols = max(2, min(args.symbols, round(args.sample_rows / args.days)))
    # Half the baseline sample runs before our runs and half after, so a change of machine load
    # during the script weighs on both sides alike.
    before, after = symbols[: sample_symbols // 2], symbols[sample_symbols // 2 : sample_symbols]
    dsn = asyncpg_dsn(url)
    await migrate.upgrade(url)
    load_s = await load(dsn, symbols, args.days)
    print(f"loaded {total:,} market_data_cache rows with COPY in {load_s:.1f} s")
    await reset(dsn)

    rows_a, seconds_a = await time_row_by_row(url, before, "before")
    await reset(dsn)

    rates = {1: await time_backfill(url, args, jobs=1)}
    started = time.perf_counter()
    rerun = await backfill(url, batch_size=args.batch_size)
    rerun_s = time.perf_counter() - started
    print(
        f"rerun, all skipped:     {rerun.rows_skipped:>10,} rows in {rerun_s:7.2f} s = "
        f"{rerun.rows_seen / rerun_s:>9,.0f} rows/s"
    )
    if args.jobs > 1:
        await reset(dsn)
        rates[args.jobs] = await time_backfill(url, args, jobs=args.jobs)
    await reset(dsn)

    rows_b, seconds_b = await time_row_by_row(url, after, "after ")
    base_rate = (rows_a + rows_b) / (seconds_a + seconds_b)
    print(f"spec row by row, both halves: {base_rate:,.0f} rows/s")
    for jobs, rate in rates.items():
        ratio = rate / base_rate
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        print(
            f"ratio, jobs={jobs}: {ratio:,.1f}x the row-by-row rate "
            f"({verdict} the {TARGET_RATIO:.0f}x target)"
        )


async def with_database_of_its_own(admin_url: str, args: argparse.Namespace) -> None:
    name = f"bench_backfill_{os.getpid()}"
    admin = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(admin_url, name)
    load1, load5, _ = os.getloadavg()
    print(
        f"database {redact(url)}; {os.cpu_count()} CPUs, load average {load1:.1f} (1 min), "
        f"{load5:.1f} (5 min)"
    )
    try:
        await bench(url, args)
    finally:
        admin = await asyncpg.connect(asyncpg_dsn(admin_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=8_000, help="symbols in the cache")
    parser.add_argument("--days", type=int, default=250, help="daily rows per symbol")
    parser.add_argument(
        "--sample-rows", type=int, default=20_000, help="rows for the row-by-row baseline"
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--jobs", type=int, default=2, help="also time a run with this many connections"
    )
    args = parser.parse_args()
    if min(args.symbols, args.days, args.sample_rows, args.batch_size, args.jobs) <= 0:
        parser.error("--symbols, --days, --sample-rows, --batch-size and --jobs must be positive")
    admin_url = os.environ.get("TEST_DATABASE_URL")
    server = None
    if not admin_url:
        server = embedded.start(EMBEDDED_PGDATA)
        admin_url = server.url("postgres")
    try:
        asyncio.run(with_database_of_its_own(admin_url, args))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
