"""Benchmark: the daily refresh of a whole universe through a Polygon replay, grouped daily bars
(one request per session for every symbol) against per-symbol requests, in one run.

    python bench/refresh.py                  # 5,000 symbols
    python bench/refresh.py --symbols 500    # a quick run

A throwaway database (TEST_DATABASE_URL's server, else the embedded one) holds `--symbols` active
symbols whose last stored session is Friday 2023-01-06; the clock is fixed at Monday 2023-01-09
18:00 New York, so each symbol is one session behind (the refresh also re-reads its last stored
session, REFRESH_OVERLAP_SESSIONS=0, to compare it). A local HTTP server replays Polygon: the
grouped daily answer of each session (every symbol) and each symbol's aggregates. The refresh
jobs run through the real queue and Refresher, `--concurrency` at a time, rate limit off:
1. grouped daily (REFRESH_BULK=auto with PRICE_SOURCE=polygon);
2. per-symbol requests (REFRESH_BULK=off), after resetting the symbols to Friday.
Prints requests made and wall time for each, the time each would take under Polygon's free tier
(5 requests/minute, requests spaced 12 s), and rows/s of the refresh write path (rows stored per
second of each run, and the grouped day's own store statement).
"""

import argparse
import asyncio
import json
import sys
import time
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import throwaway_database
from tests.fakeprovider import FakeProvider, Reply
from worker.core import logs
from worker.core.db import asyncpg_dsn
from worker.core.settings import Settings
from worker.core.trading_calendar import TradingCalendar
from worker.jobs.onboarding import open_onboarder
from worker.jobs.refresh import build_refresher
from worker.jobs.schedule import enqueue_refresh
from worker.queue.store import Queue

# The bench smoke test (tests/acceptance/test_bench_scripts.py) runs it with these arguments and
# checks these lines; the defaults stay the full size.
SMOKE_ARGS = "--symbols 60 --concurrency 4"
SMOKE_OUTPUT = [r"^grouped daily: ", r"^per-symbol: ", r"^free tier ", r"^write path: "]

NEW_YORK = ZoneInfo("America/New_York")
FRIDAY, MONDAY = date(2023, 1, 6), date(2023, 1, 9)
NOW = datetime(2023, 1, 9, 18, 0, tzinfo=NEW_YORK)
FREE_TIER_SPACING_S = 12.0  # 5 requests/minute


def symbols_of(count: int) -> list[str]:
    return [f"S{i:05d}" for i in range(count)]


def close(symbol: str, day: date) -> float:
    return 50 + (int(symbol[1:]) % 400) / 4 + day.day / 100


def grouped_body(day: date, symbols: list[str]) -> bytes:
    stamp = int(datetime(day.year, day.month, day.day, 16, tzinfo=NEW_YORK).timestamp()) * 1000
    results = [
        {
            "T": s,
            "o": close(s, day),
            "h": close(s, day) + 1,
            "l": close(s, day) - 1,
            "c": close(s, day),
            "v": 1000000.0,
            "vw": close(s, day),
            "n": 100,
            "t": stamp,
        }
        for s in symbols
    ]
    return json.dumps(
        {
            "adjusted": True,
            "queryCount": len(results),
            "resultsCount": len(results),
            "results": results,
            "status": "OK",
            "request_id": "bench",
        }
    ).encode()


def aggs_body(symbol: str, days: list[date]) -> bytes:
    results = [
        {
            "o": close(symbol, d),
            "h": close(symbol, d) + 1,
            "l": close(symbol, d) - 1,
            "c": close(symbol, d),
            "v": 1000000.0,
            "vw": close(symbol, d),
            "n": 100,
            "t": int(datetime(d.year, d.month, d.day, tzinfo=NEW_YORK).timestamp()) * 1000,
        }
        for d in days
    ]
    return json.dumps(
        {
            "ticker": symbol,
            "queryCount": len(results),
            "resultsCount": len(results),
            "adjusted": True,
            "results": results,
            "status": "OK",
            "request_id": "bench",
        }
    ).encode()


async def reset(pool: asyncpg.Pool, symbols: list[str]) -> None:
    """Every symbol as of Friday: one stored row, last_price_date Friday; no jobs, no bulk days."""
    await pool.execute(
        "TRUNCATE symbol_onboarding_queue, symbol_prices_daily, symbol_universe,"
        " price_bulk_days, price_bulk_bars, symbol_refresh_state CASCADE"
    )
    await pool.execute(
        "INSERT INTO symbol_universe (symbol, status, last_price_date)"
        " SELECT unnest($1::text[]), 'active', $2",
        symbols,
        FRIDAY,
    )
    await pool.copy_records_to_table(
        "symbol_prices_daily",
        columns=[
            "symbol",
            "price_date",
            "open_price",
            "high_price",
            "low_price",
            "close_price",
            "volume",
        ],
        records=[
            (
                s,
                FRIDAY,
                round(close(s, FRIDAY), 4),
                round(close(s, FRIDAY) + 1, 4),
                round(close(s, FRIDAY) - 1, 4),
                round(close(s, FRIDAY), 4),
                1000000,
            )
            for s in symbols
        ],
    )
    await pool.execute("VACUUM ANALYZE symbol_prices_daily")


async def run_refresh(
    pool: asyncpg.Pool, settings: Settings, calendar: TradingCalendar, concurrency: int
) -> tuple[float, int]:
    """Enqueue the refresh of every symbol and run the jobs to the end: (wall s, rows stored)."""
    queue = Queue("bench")
    async with open_onboarder(
        settings, queue, pool, sources="polygon", today=lambda: MONDAY
    ) as onboarder:
        # What `run` builds: grouped daily days with REFRESH_BULK=auto, none with off.
        refresher = build_refresher(settings, queue, pool, onboarder, calendar, now=lambda: NOW)
        rows_before = await pool.fetchval("SELECT count(*) FROM symbol_prices_daily")
        started = time.perf_counter()
        async with pool.acquire() as conn:
            await enqueue_refresh(conn, MONDAY)

        async def worker() -> None:
            while True:
                jobs = await queue.claim(pool, 1)
                if not jobs:
                    if not await pool.fetchval(
                        "SELECT EXISTS (SELECT 1 FROM symbol_onboarding_queue"
                        " WHERE status IN ('pending', 'processing'))"
                    ):
                        return
                    await asyncio.sleep(0.05)  # deferred jobs waiting for a day being loaded
                    continue
                result = await refresher.run(jobs[0])
                if result.outcome not in ("completed", "deferred"):
                    raise RuntimeError(f"{jobs[0].symbol}: {result.outcome}: {result.error}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    rows = await pool.fetchval("SELECT count(*) FROM symbol_prices_daily") - rows_before
    behind = await pool.fetchval(
        "SELECT count(*) FROM symbol_universe WHERE last_price_date < $1", MONDAY
    )
    if behind:
        raise RuntimeError(f"{behind} symbols were not refreshed")
    return elapsed, rows


async def bench(args: argparse.Namespace) -> None:
    symbols = symbols_of(args.symbols)
    provider = FakeProvider()
    await provider.start()
    for day in (FRIDAY, MONDAY):
        provider.route(
            f"/v2/aggs/grouped/locale/us/market/stocks/{day.isoformat()}",
            Reply(body=grouped_body(day, symbols)),
        )
    for s in symbols:
        provider.route(
            f"/v2/aggs/ticker/{s}/range/1/day/{FRIDAY.isoformat()}/{MONDAY.isoformat()}",
            Reply(body=aggs_body(s, [FRIDAY, MONDAY])),
        )
    settings = Settings(
        price_source="polygon",
        polygon_base_url=provider.url,
        polygon_api_key="bench-key",
        rate_limit_polygon="off",
        refresh_overlap_sessions=0,
        source_failures_before_pause=0,
    )
    calendar = TradingCalendar("XNYS", now=NOW)
    try:
        async with throwaway_database("refresh") as url:
            pool = await asyncpg.create_pool(
                asyncpg_dsn(url), min_size=1, max_size=args.concurrency + 1
            )
            try:
                results = {}
                for mode, bulk in (("grouped daily", True), ("per-symbol", False)):
                    await reset(pool, symbols)
                    seen = len(provider.requests)
                    tuned = replace(settings, refresh_bulk="auto" if bulk else "off")
                    elapsed, rows = await run_refresh(pool, tuned, calendar, args.concurrency)
                    requests = len(provider.requests) - seen
                    results[mode] = (elapsed, rows, requests)
                    print(
                        f"{mode}: {requests} request(s), {elapsed:.2f} s wall for {len(symbols)}"
                        f" symbols ({len(symbols) / elapsed:,.0f} symbols/s), {rows} rows stored",
                        flush=True,
                    )
                grouped, per_symbol = results["grouped daily"], results["per-symbol"]
                for mode, (_, _, requests) in results.items():
                    wait = requests * FREE_TIER_SPACING_S
                    print(
                        f"free tier (5/minute) {mode}: {requests} requests take"
                        f" {wait / 60:,.1f} min ({wait / 3600:,.2f} h)"
                    )
                print(
                    f"ratio: per-symbol makes {per_symbol[2] / grouped[2]:,.0f}x the requests;"
                    f" wall time per-symbol / grouped {per_symbol[0] / grouped[0]:.2f}x"
                )
                store_s = await time_bulk_store(pool, symbols)
                print(
                    f"write path: grouped {grouped[1] / grouped[0]:,.0f} rows/s, per-symbol"
                    f" {per_symbol[1] / per_symbol[0]:,.0f} rows/s (whole jobs, end to end);"
                    f" one grouped day stored in {store_s * 1000:.1f} ms"
                    f" ({len(symbols) / store_s:,.0f} bars/s)"
                )
            finally:
                await pool.close()
    finally:
        await provider.stop()


async def time_bulk_store(pool: asyncpg.Pool, symbols: list[str]) -> float:
    """The grouped day's own write: every symbol's bar in one statement."""
    from worker.jobs.bulk import store_day
    from worker.prices.base import Reply as SourceReply
    from worker.prices.polygon import parse_grouped

    day = date(2023, 1, 10)
    grouped = parse_grouped(day, SourceReply(200, grouped_body(day, symbols), "application/json"))
    await pool.execute(
        "INSERT INTO price_bulk_days (source, price_date, leased_by, lease_until)"
        " VALUES ('polygon', $1, 'bench', now() + interval '1 minute')",
        day,
    )
    async with pool.acquire() as conn:
        started = time.perf_counter()
        stored = await store_day(conn, "polygon", day, grouped.bars, "bench")
        elapsed = time.perf_counter() - started
    if stored != len(symbols):
        raise RuntimeError(f"stored {stored} of {len(symbols)} bars")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=4, help="refresh jobs at a time")
    args = parser.parse_args()
    if min(args.symbols, args.concurrency) <= 0:
        parser.error("--symbols and --concurrency must be positive")
    # Warnings only: a line per job would time the terminal, not the refresh.
    logs.configure(Settings(log_format="json", log_level="warning"), stream=sys.stderr)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
