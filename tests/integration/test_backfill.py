"""The backfill of symbol_prices_daily from market_data_cache, against real PostgreSQL."""

import argparse
import asyncio
from collections.abc import Awaitable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.cli import backfill as backfill_cli
from worker.cli.backfill import add_arguments, command
from worker.core.db import asyncpg_dsn
from worker.host import backfill as backfill_module
from worker.host.backfill import BackfillError, BackfillProgress, backfill

START = date(2024, 1, 2)
DAYS = 5
SEEDED_AT = datetime(2020, 1, 1, tzinfo=UTC)
PRICE_COLUMNS = "open_price, high_price, low_price, close_price, adj_close_price, volume"


class Stop(Exception):
    """Raised from a progress callback to interrupt a run."""


@pytest.fixture
def db(conn: asyncpg.Connection) -> asyncpg.Connection:
    """The shared `conn` fixture (tests/conftest.py), under this module's name."""
    return conn


def cache_rows(symbols: Sequence[str], days: int = DAYS) -> list[tuple[Any, ...]]:
    """Distinct, recognisable OHLCV values per symbol and day."""
    rows = []
    for s, symbol in enumerate(symbols):
        for d in range(days):
            close = Decimal(100 * (s + 1) + d) + Decimal("0.1234")
            rows.append(
                (
                    symbol,
                    START + timedelta(days=d),
                    close - 1,
                    close + 2,
                    close - 3,
                    close,
                    1000 * (s + 1) + d,
                    "polygon",
                )
            )
    return rows


async def seed_cache(db: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    await db.copy_records_to_table(
        "market_data_cache",
        records=rows,
        columns=["symbol", "date", "open", "high", "low", "close", "volume", "data_source"],
    )


async def seed_universe(
    db: asyncpg.Connection, symbol: str, *, last_price_date: date | None = None
) -> None:
    await db.execute(
        """
        INSERT INTO symbol_universe (symbol, asset_type, sector, status, added_source,
                                     last_price_date, created_at, updated_at)
        VALUES ($1, 'stock', 'Technology', 'pending', 'seed', $2, $3, $3)
        """,
        symbol,
        last_price_date,
        SEEDED_AT,
    )


async def prices(db: asyncpg.Connection) -> dict[tuple[str, date], tuple[Any, ...]]:
    rows = await db.fetch(f"SELECT symbol, price_date, {PRICE_COLUMNS} FROM symbol_prices_daily")
    return {(r["symbol"], r["price_date"]): tuple(r)[2:] for r in rows}


def expected_prices(
    rows: list[tuple[Any, ...]], adjusted: dict[tuple[str, date], Decimal | None] | None = None
) -> dict[tuple[str, date], tuple[Any, ...]]:
    adjusted = adjusted or {}
    return {
        (symbol, day): (open_, high, low, close, adjusted.get((symbol, day)), volume)
        for symbol, day, open_, high, low, close, volume, _ in rows
    }


async def universe(db: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    rows = await db.fetch("SELECT * FROM symbol_universe")
    return {r["symbol"]: dict(r) for r in rows}


async def test_copies_every_row_and_adds_missing_symbols(
    db: asyncpg.Connection, database_url: str
) -> None:
    rows = cache_rows(["AAA", "BBB", "CCC"])
    await seed_cache(db, rows)
    await seed_universe(db, "AAA")
    before = (await universe(db))["AAA"]
    seen: list[BackfillProgress] = []

    # 7 rows reach into BBB, so the first batch is all of AAA and BBB, the second CCC.
    summary = await backfill(database_url, batch_size=7, progress=seen.append)

    assert await prices(db) == expected_prices(rows)
    assert (summary.rows_seen, summary.rows_inserted, summary.rows_skipped) == (15, 15, 0)
    assert (summary.symbols_added, summary.symbols_updated, summary.batches) == (2, 1, 2)
    assert not summary.adjusted_close and not summary.dry_run
    assert [(p.rows_done, p.rows_total, p.last_symbol) for p in seen] == [
        (10, 15, "BBB"),
        (15, 15, "CCC"),
    ]
    after = await universe(db)
    last_day = START + timedelta(days=DAYS - 1)
    assert after["AAA"] == {**before, "last_price_date": last_day}
    for symbol in ("BBB", "CCC"):
        assert after[symbol]["status"] == "active"
        assert after[symbol]["added_source"] == "batch"
        assert after[symbol]["last_price_date"] == last_day
        assert after[symbol]["is_active"] is True


async def test_rows_the_price_rule_refuses_are_counted_never_copied(
    db: asyncpg.Connection, database_url: str
) -> None:
    rows = cache_rows(["AAA", "BBB", "ZERO"])
    await seed_cache(db, rows)
    last_day = START + timedelta(days=DAYS - 1)
    # The host's real zero close, a negative close, high below low, a negative volume; and a
    # symbol whose every row is bad (it must not be added to the universe).
    await db.execute(
        "UPDATE market_data_cache SET close = 0 WHERE symbol = 'AAA' AND date = $1", START
    )
    await db.execute(
        "UPDATE market_data_cache SET close = -1 WHERE symbol = 'AAA' AND date = $1", last_day
    )
    await db.execute(
        "UPDATE market_data_cache SET high = low - 1 WHERE symbol = 'BBB' AND date = $1", START
    )
    await db.execute(
        "UPDATE market_data_cache SET volume = -5 WHERE symbol = 'BBB' AND date = $1",
        START + timedelta(days=1),
    )
    await db.execute("UPDATE market_data_cache SET close = 0 WHERE symbol = 'ZERO'")
    bad = {
        ("AAA", START),
        ("AAA", last_day),
        ("BBB", START),
        ("BBB", START + timedelta(days=1)),
        *(("ZERO", START + timedelta(days=d)) for d in range(DAYS)),
    }
    refused = {
        "close_price not positive": 7,
        "high_price below low_price": 1,
        "volume negative": 1,
    }

    preview = await backfill(database_url, batch_size=2, dry_run=True)
    summary = await backfill(database_url, batch_size=2)
    again = await backfill(database_url, batch_size=2)

    assert set(await prices(db)) == {(r[0], r[1]) for r in rows} - bad
    assert preview.rows_invalid == summary.rows_invalid == again.rows_invalid == refused
    assert (summary.rows_seen, summary.rows_inserted, summary.rows_skipped) == (15, 6, 0)
    assert (again.rows_inserted, again.rows_skipped) == (0, 6)
    assert preview.rows_inserted == 6 and preview.symbols_added == summary.symbols_added == 2
    after = await universe(db)
    assert set(after) == {"AAA", "BBB"}
    # last_price_date is the newest valid date: AAA's last day is refused.
    assert after["AAA"]["last_price_date"] == last_day - timedelta(days=1)
    assert "rows refused by the price rule (never copied): 9 (close_price not positive 7" in (
        backfill_cli.format_summary(summary)
    )


async def test_adjusted_close_is_copied_when_the_column_exists(
    db: asyncpg.Connection, database_url: str
) -> None:
    await db.execute("ALTER TABLE market_data_cache ADD COLUMN adjusted_close NUMERIC(12, 4)")
    rows = cache_rows(["AAA", "BBB"])
    await seed_cache(db, rows)
    # Every row gets close - 0.5 except one, whose unknown adjusted close must stay NULL.
    await db.execute("UPDATE market_data_cache SET adjusted_close = close - 0.5")
    await db.execute(
        "UPDATE market_data_cache SET adjusted_close = NULL WHERE symbol = 'BBB' AND date = $1",
        START,
    )
    adjusted = {(r[0], r[1]): r[5] - Decimal("0.5") for r in rows}
    adjusted[("BBB", START)] = None

    summary = await backfill(database_url, batch_size=3)

    assert summary.adjusted_close
    assert await prices(db) == expected_prices(rows, adjusted)


async def test_rerun_inserts_nothing_and_skips_everything(
    db: asyncpg.Connection, database_url: str
) -> None:
    rows = cache_rows(["AAA", "BBB", "CCC"])
    await seed_cache(db, rows)
    await backfill(database_url, batch_size=4)
    state = (await prices(db), await universe(db))

    again = await backfill(database_url, batch_size=4)

    assert (again.rows_seen, again.rows_inserted, again.rows_skipped) == (15, 0, 15)
    assert (again.symbols_added, again.symbols_updated) == (0, 0)
    assert (await prices(db), await universe(db)) == state


async def test_existing_prices_and_later_dates_are_kept(
    db: asyncpg.Connection, database_url: str
) -> None:
    rows = cache_rows(["AAA", "BBB"])
    await seed_cache(db, rows)
    # AAA came through onboarding: newer data, its own price for the first day.
    later = date(2030, 1, 1)
    await seed_universe(db, "AAA", last_price_date=later)
    await db.execute(
        "INSERT INTO symbol_prices_daily (symbol, price_date, close_price) VALUES ('AAA', $1, 1)",
        START,
    )

    summary = await backfill(database_url, batch_size=100)

    assert (summary.rows_inserted, summary.rows_skipped, summary.symbols_updated) == (9, 1, 0)
    stored = await prices(db)
    assert stored[("AAA", START)] == (None, None, None, Decimal("1.0000"), None, None)
    assert (await universe(db))["AAA"]["last_price_date"] == later


async def test_interrupted_run_resumes_where_it_stopped(
    db: asyncpg.Connection, database_url: str
) -> None:
    rows = cache_rows(["AAA", "BBB", "CCC"])
    await seed_cache(db, rows)

    def stop_after_first_batch(progress: BackfillProgress) -> None:
        raise Stop(progress.last_symbol)

    with pytest.raises(Stop, match="AAA"):
        await backfill(database_url, batch_size=DAYS, progress=stop_after_first_batch)
    assert set(await prices(db)) == {(s, d) for s, d, *_ in rows if s == "AAA"}
    assert set(await universe(db)) == {"AAA"}

    resumed = await backfill(database_url, batch_size=DAYS)

    assert (resumed.rows_inserted, resumed.rows_skipped, resumed.symbols_added) == (10, 5, 2)
    assert await prices(db) == expected_prices(rows)


async def test_symbols_limits_the_run_and_reports_absent_ones(
    db: asyncpg.Connection, database_url: str
) -> None:
    rows = cache_rows(["AAA", "BBB", "CCC", "DDD"])
    await seed_cache(db, rows)

    summary = await backfill(database_url, symbols=["ccc", " BBB ", "ZZZ", "BBB"], batch_size=1)

    assert set(await universe(db)) == {"BBB", "CCC"}
    assert await prices(db) == expected_prices([r for r in rows if r[0] in ("BBB", "CCC")])
    assert (summary.rows_seen, summary.batches) == (10, 2)
    assert summary.symbols_not_found == ("ZZZ",)


async def test_symbols_find_the_hosts_spelling_and_keep_it(
    db: asyncpg.Connection, database_url: str
) -> None:
    rows = cache_rows(["BRK-B", "AAA"])
    await seed_cache(db, rows)

    for asked in (["BRK.B"], ["brk-b"], ["BRK/B"]):
        await db.execute("DELETE FROM symbol_prices_daily")
        summary = await backfill(database_url, symbols=asked)
        assert summary.symbols_not_found == ()
        assert await prices(db) == expected_prices([r for r in rows if r[0] == "BRK-B"])
    assert set(await universe(db)) == {"BRK-B"}  # the cache's (the host's) spelling
    missing = await backfill(database_url, symbols=["BRK.A", "BRK.B"], dry_run=True)
    assert missing.symbols_not_found == ("BRK.A",)


async def test_dry_run_writes_nothing_and_predicts_the_real_run(
    db: asyncpg.Connection, database_url: str
) -> None:
    rows = cache_rows(["AAA", "BBB", "CCC"])
    await seed_cache(db, rows)
    await seed_universe(db, "AAA")
    await db.execute(
        "INSERT INTO symbol_prices_daily (symbol, price_date, close_price) VALUES ('AAA', $1, 1)",
        START,
    )
    state = (await prices(db), await universe(db))

    preview = await backfill(database_url, batch_size=4, dry_run=True)

    assert (await prices(db), await universe(db)) == state
    real = await backfill(database_url, batch_size=4)
    assert preview.dry_run and not real.dry_run

    def outcome(s: backfill_module.BackfillSummary) -> tuple[int, ...]:
        return (s.rows_seen, s.rows_inserted, s.symbols_added, s.symbols_updated, s.batches)

    assert outcome(preview) == outcome(real) == (15, 14, 2, 1, 3)


async def test_jobs_split_the_work_without_overlap(
    db: asyncpg.Connection, database_url: str
) -> None:
    symbols = [f"S{i}" for i in range(7)]
    rows = cache_rows(symbols)
    await seed_cache(db, rows)
    seen: list[BackfillProgress] = []

    summary = await backfill(database_url, batch_size=1, jobs=3, progress=seen.append)

    assert await prices(db) == expected_prices(rows)
    assert set(await universe(db)) == set(symbols)
    assert (summary.rows_seen, summary.rows_inserted, summary.symbols_added) == (35, 35, 7)
    assert summary.batches == len(seen) == 7
    assert sorted(p.last_symbol for p in seen) == symbols
    assert seen[-1].rows_done == 35


async def test_jobs_stop_together_and_keep_committed_batches(
    db: asyncpg.Connection, database_url: str
) -> None:
    symbols = [f"S{i}" for i in range(6)]
    rows = cache_rows(symbols)
    await seed_cache(db, rows)

    def stop_at_second_batch(progress: BackfillProgress) -> None:
        if progress.batches == 2:
            raise Stop(progress.last_symbol)

    with pytest.raises(Stop):
        await backfill(database_url, batch_size=1, jobs=2, progress=stop_at_second_batch)
    done = {s for s, _ in await prices(db)}
    assert 2 <= len(done) < len(symbols)

    resumed = await backfill(database_url, batch_size=1, jobs=2)

    assert resumed.rows_skipped == DAYS * len(done)
    assert await prices(db) == expected_prices(rows)


async def test_a_row_stored_concurrently_is_skipped_not_overwritten(
    db: asyncpg.Connection, database_url: str
) -> None:
    rows = cache_rows(["AAA"])
    await seed_cache(db, rows)
    await seed_universe(db, "AAA")
    other = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        # Onboarding stores the first day while the backfill runs: uncommitted at first, so the
        # backfill's insert waits on it, then skips the row once it is committed.
        onboarding = other.transaction()
        await onboarding.start()
        await other.execute(
            "INSERT INTO symbol_prices_daily (symbol, price_date, close_price) "
            "VALUES ('AAA', $1, 1)",
            START,
        )
        running = asyncio.create_task(backfill(database_url))
        await wait_for_a_lock_wait(db)
        await onboarding.commit()
        summary = await asyncio.wait_for(running, timeout=10)
    finally:
        await other.close()

    assert (summary.rows_inserted, summary.rows_skipped) == (DAYS - 1, 1)
    assert (await prices(db))[("AAA", START)][3] == Decimal("1.0000")


async def wait_for_a_lock_wait(db: asyncpg.Connection, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the backfill never waited on the concurrent insert")


async def test_missing_cache_table_is_a_clear_error(
    db: asyncpg.Connection, database_url: str
) -> None:
    await db.execute("DROP TABLE market_data_cache")

    with pytest.raises(BackfillError, match="no market_data_cache table"):
        await backfill(database_url)


async def test_accepts_an_engine_and_leaves_it_open(
    db: asyncpg.Connection, engine: AsyncEngine
) -> None:
    await seed_cache(db, cache_rows(["AAA"]))

    summary = await backfill(engine, batch_size=2)

    assert summary.rows_inserted == DAYS
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT 1")) == 1


async def test_command_runs_the_backfill_and_fails_on_an_absent_symbol(
    db: asyncpg.Connection, database_url: str
) -> None:
    await seed_cache(db, cache_rows(["AAA", "BBB"]))
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def run(*argv: str) -> Awaitable[int]:
        return command(parser.parse_args(argv), database_url)

    assert await run("--symbols", "aaa", "--dry-run") == 0
    assert await prices(db) == {}

    assert await run("--symbols", "aaa", "--batch-size", "2") == 0
    assert {s for s, _ in await prices(db)} == {"AAA"}

    with pytest.raises(BackfillError, match=r"no market_data_cache rows for NOPE \(the other"):
        await run("--symbols", "BBB,NOPE")
    assert {s for s, _ in await prices(db)} == {"AAA", "BBB"}
