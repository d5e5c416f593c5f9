"""The refresh job against real PostgreSQL and a local Polygon replay: the incremental window, no
request when current (or on a weekend or holiday), a re-adjusted history replaced in one
transaction, delisting, host-added symbols, and refreshes queued behind users' onboarding."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.factordata import store_prices
from tests.fakeprovider import FakeProvider, Reply, recorded
from tests.helpers import job_row
from tests.integration.conftest import stored, symbol_row
from tests.integration.test_outages import slow_price_writes, terminate_when_sleeping
from worker.core.errors import DatabaseUnavailable
from worker.core.settings import Settings
from worker.core.trading_calendar import TradingCalendar
from worker.factors.betas import REFERENCE_ETFS
from worker.factors.service import recompute_factors
from worker.factors.store import FactorStore
from worker.jobs.onboarding import Onboarder
from worker.jobs.refresh import JobsByKind, Refresher
from worker.jobs.schedule import enqueue_refresh
from worker.prices.base import Window
from worker.prices.synthetic import generate
from worker.queue.store import Job, Queue

NEW_YORK = ZoneInfo("America/New_York")
CALENDAR = TradingCalendar("XNYS", now=datetime(2023, 12, 1, tzinfo=UTC))
# Tuesday 2023-11-28, 17:00 in New York: the 28th's session has closed. Thanksgiving (Thu 23rd)
# was a holiday; Friday 24th closed early.
NOW = datetime(2023, 11, 28, 17, 0, tzinfo=NEW_YORK)
NOT_FOUND = recorded("yahoo/error-404-unknown-symbol.TRANSCRIBED.json", status=404)


def close_of(day: date) -> Decimal:
    """A deterministic close per date (so every test knows the 'true' history)."""
    return Decimal(100) + Decimal(day.toordinal() % 97) / 4


def polygon_aggs(symbol: str, days: list[date], divide: int = 1) -> bytes:
    """A Polygon aggregates body in its documented shape (bars stamped 00:00 New York, in ms);
    `divide` applies a split to every close (a 2:1 split halves the adjusted history)."""
    results = []
    for day in days:
        close = close_of(day) / divide
        stamp = datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp()
        results.append(
            {
                "v": 1000000.0,
                "vw": float(close),
                "o": float(close),
                "c": float(close),
                "h": float(close + 1),
                "l": float(close - 1),
                "t": int(stamp) * 1000,
                "n": 100,
            }
        )
    return json.dumps(
        {
            "ticker": symbol,
            "queryCount": len(results),
            "resultsCount": len(results),
            "adjusted": True,
            "results": results,
            "status": "OK",
            "request_id": "built-from-the-documented-format",
            "count": len(results),
        }
    ).encode()


def aggs_path(symbol: str, start: date, end: date) -> str:
    return f"/v2/aggs/ticker/{symbol}/range/1/day/{start.isoformat()}/{end.isoformat()}"


async def seed(pool: asyncpg.Pool, symbol: str, days: list[date], divide: int = 1) -> None:
    """An onboarded symbol: active, with these stored closes and last_price_date the newest."""
    await pool.execute(
        "INSERT INTO symbol_universe (symbol, status, last_price_date) VALUES ($1, 'active', $2)",
        symbol,
        max(days),
    )
    await pool.executemany(
        """INSERT INTO symbol_prices_daily
               (symbol, price_date, open_price, high_price, low_price, close_price, volume)
           VALUES ($1, $2, $3::numeric, $3::numeric + 1, $3::numeric - 1, $3::numeric, 1000000)""",
        [(symbol, d, (close_of(d) / divide).quantize(Decimal("0.0001"))) for d in days],
    )


@pytest.fixture
def refresher_for(
    shared_pool: asyncpg.Pool,
    queue: Queue,
    settings: Settings,
    onboarder_for: Callable[..., Awaitable[Onboarder]],
) -> Callable[..., Awaitable[Refresher]]:
    """`await refresher_for("polygon", now=..., factors=True, **settings)`; `factors`: the
    Onboarder's factor step on, as `run` has it."""

    async def make(
        sources: str = "polygon", *, now: datetime = NOW, factors: bool = False, **overrides: Any
    ) -> Refresher:
        onboarder = await onboarder_for(
            sources,
            today=now.astimezone(UTC).date(),
            factor_store=await FactorStore.detect(shared_pool) if factors else None,
            **overrides,
        )
        tuned = replace(settings, **overrides)
        return Refresher(tuned, queue, shared_pool, onboarder, CALENDAR, now=lambda: now)

    return make


async def claim_refresh(pool: asyncpg.Pool, queue: Queue, symbol: str, through: date) -> Job:
    async with pool.acquire() as conn:
        assert await enqueue_refresh(conn, through, [symbol]) == 1
    [job] = await queue.claim(pool)
    assert (job.symbol, job.kind) == (symbol, "refresh")
    return job


def sessions(start: date, end: date) -> list[date]:
    return CALENDAR.sessions_between(start, end)


# --- the window ---------------------------------------------------------------------------------


async def test_an_up_to_date_symbol_is_not_requested(
    provider: FakeProvider, shared_pool, queue, refresher_for
) -> None:
    await seed(shared_pool, "AAPL", sessions(date(2023, 11, 1), date(2023, 11, 28)))
    job = await claim_refresh(shared_pool, queue, "AAPL", date(2023, 11, 29))

    result = await (await refresher_for()).run(job)

    assert result.outcome == "completed"
    assert provider.requests == []
    assert (await job_row(shared_pool, job))["status"] == "completed"


async def test_three_sessions_behind_fetches_the_incremental_window_and_stores_the_missing_rows(
    provider: FakeProvider, shared_pool, queue, refresher_for
) -> None:
    have = sessions(date(2023, 11, 1), date(2023, 11, 22))
    await seed(shared_pool, "AAPL", have)
    before = await stored(shared_pool, "AAPL")
    # Overlap: the 3 sessions before the 22nd; then the missing 24th, 27th and 28th.
    path = aggs_path("AAPL", date(2023, 11, 17), date(2023, 11, 28))
    provider.route(path, Reply(body=polygon_aggs("AAPL", sessions(date(2023, 11, 17), NOW.date()))))
    job = await claim_refresh(shared_pool, queue, "AAPL", NOW.date())

    result = await (await refresher_for()).run(job)

    assert result.outcome == "completed", result.error
    assert [r.path for r in provider.requests] == [path]  # the incremental window only
    after = await stored(shared_pool, "AAPL")
    assert after[: len(before)] == before  # the overlap was not rewritten
    assert [r[0] for r in after[len(before) :]] == [
        date(2023, 11, 24),
        date(2023, 11, 27),
        date(2023, 11, 28),
    ]
    assert [r[4] for r in after[len(before) :]] == [
        close_of(d).quantize(Decimal("0.0001"))
        for d in (date(2023, 11, 24), date(2023, 11, 27), date(2023, 11, 28))
    ]
    assert (await symbol_row(shared_pool, "AAPL"))["last_price_date"] == date(2023, 11, 28)
    assert (await job_row(shared_pool, job))["status"] == "completed"


async def test_a_connection_dropped_in_the_refresh_write_is_an_outage(
    provider: FakeProvider, shared_pool, queue, refresher_for
) -> None:
    """As for an onboarding (test_outages.py): the refresh's price write loses its connection;
    the job sees the project's outage error (the runner hands it back, spending no attempt),
    not a bug that spends one."""
    await seed(shared_pool, "AAPL", sessions(date(2023, 11, 1), date(2023, 11, 22)))
    path = aggs_path("AAPL", date(2023, 11, 17), date(2023, 11, 28))
    provider.route(path, Reply(body=polygon_aggs("AAPL", sessions(date(2023, 11, 17), NOW.date()))))
    job = await claim_refresh(shared_pool, queue, "AAPL", NOW.date())
    refresher = await refresher_for()
    async with shared_pool.acquire() as killer_conn:  # the module's database: undone below
        await slow_price_writes(killer_conn, 0.3)
        try:
            killer = asyncio.create_task(terminate_when_sleeping(killer_conn))
            with pytest.raises(DatabaseUnavailable):
                await refresher.run(job)
            await killer
        finally:
            await killer_conn.execute(
                "DROP TRIGGER slow_price_write ON symbol_prices_daily;"
                " DROP FUNCTION slow_price_write()"
            )
    row = await job_row(shared_pool, job)
    assert (row["status"], row["attempts"]) == ("processing", 1)  # the runner hands it back


@pytest.mark.parametrize(
    "now",
    [
        datetime(2023, 11, 23, 20, 0, tzinfo=NEW_YORK),  # Thanksgiving evening
        datetime(2023, 11, 25, 12, 0, tzinfo=NEW_YORK),  # Saturday
        datetime(2023, 11, 26, 23, 0, tzinfo=NEW_YORK),  # Sunday night
    ],
    ids=["holiday", "saturday", "sunday"],
)
async def test_a_holiday_or_weekend_requests_nothing(
    provider: FakeProvider, shared_pool, queue, refresher_for, now: datetime
) -> None:
    last = CALENDAR.last_completed_session(now)
    await seed(shared_pool, "AAPL", sessions(date(2023, 11, 1), last))
    async with shared_pool.acquire() as conn:
        # Nothing is even behind the last completed session...
        assert await enqueue_refresh(conn, last) == 0
    # ...and a refresh job that runs anyway (enqueued by hand) asks for nothing.
    await shared_pool.execute(
        "INSERT INTO symbol_onboarding_queue (symbol, kind) VALUES ('AAPL', 'refresh')"
    )
    [job] = await queue.claim(shared_pool)

    result = await (await refresher_for(now=now)).run(job)

    assert result.outcome == "completed"
    assert provider.requests == []


# --- corrections and corporate actions ----------------------------------------------------------


async def test_a_split_in_the_history_is_detected_and_the_lookback_replaced(
    provider: FakeProvider, shared_pool, queue, refresher_for
) -> None:
    have = sessions(date(2023, 10, 2), date(2023, 11, 22))
    await seed(shared_pool, "AAPL", have)
    # The provider now applies a 2:1 split to every earlier (adjusted) close.
    incremental = aggs_path("AAPL", date(2023, 11, 17), date(2023, 11, 28))
    provider.route(
        incremental,
        Reply(body=polygon_aggs("AAPL", sessions(date(2023, 11, 17), NOW.date()), divide=2)),
    )
    lookback_start = NOW.date() - timedelta(days=60)
    lookback = aggs_path("AAPL", lookback_start, NOW.date())
    fresh = sessions(lookback_start, NOW.date())
    provider.route(lookback, Reply(body=polygon_aggs("AAPL", fresh, divide=2)))
    # The reference ETFs are current, and AAPL's betas were computed as of the 22nd.
    series = {}
    for etf in REFERENCE_ETFS:
        bars = generate(etf, Window(lookback_start - timedelta(days=30), NOW.date()))
        series[etf] = ([b.price_date for b in bars], [float(b.close) for b in bars], None)
    async with shared_pool.acquire() as conn:
        await store_prices(conn, {k: (d, c, c) for k, (d, c, _) in series.items()})
        await recompute_factors(conn, ["AAPL"])
    assert (await symbol_row(shared_pool, "AAPL"))["last_factor_date"] == date(2023, 11, 22)

    job = await claim_refresh(shared_pool, queue, "AAPL", NOW.date())
    with capture_logs() as logs:
        result = await (await refresher_for(price_lookback_days=60, factors=True)).run(job)

    assert result.outcome == "completed", result.error
    assert [r.path for r in provider.requests] == [incremental, lookback]
    rows = await stored(shared_pool, "AAPL")
    expected = [(d, (close_of(d) / 2).quantize(Decimal("0.0001"))) for d in fresh]
    assert [(r[0], r[4]) for r in rows] == expected  # replaced: no row of the old scale is left
    # ...and its betas recomputed from the new history, in the same transaction.
    assert (await symbol_row(shared_pool, "AAPL"))["last_factor_date"] == NOW.date()
    latest = await shared_pool.fetchrow(
        "SELECT calculation_date, market_beta FROM symbol_factor_exposures"
        " WHERE symbol = 'AAPL' ORDER BY calculation_date DESC LIMIT 1"
    )
    assert latest["calculation_date"] == NOW.date() and latest["market_beta"] is not None
    [changed] = [e for e in logs if e["event"] == "price_history_changed"]
    assert changed["split_ratio"] == "2:1"
    assert changed["first_date"] == "2023-11-17" and changed["last_date"] == "2023-11-22"
    first = changed["changes"][0]
    assert first["date"] == "2023-11-17" and first["column"] == "close_price"
    assert Decimal(first["old"]) == (close_of(date(2023, 11, 17))).quantize(Decimal("0.0001"))
    assert Decimal(first["new"]) == (close_of(date(2023, 11, 17)) / 2).quantize(Decimal("0.0001"))
    assert (await symbol_row(shared_pool, "AAPL"))["last_price_date"] == NOW.date()


async def test_a_replace_that_fails_leaves_the_old_history_whole(
    provider: FakeProvider, shared_pool, queue, refresher_for
) -> None:
    have = sessions(date(2023, 10, 2), date(2023, 11, 22))
    await seed(shared_pool, "AAPL", have)
    before = await stored(shared_pool, "AAPL")
    provider.route(
        aggs_path("AAPL", date(2023, 11, 17), date(2023, 11, 28)),
        Reply(body=polygon_aggs("AAPL", sessions(date(2023, 11, 17), NOW.date()), divide=2)),
    )
    start = NOW.date() - timedelta(days=60)
    provider.route(
        aggs_path("AAPL", start, NOW.date()),
        Reply(body=polygon_aggs("AAPL", sessions(start, NOW.date()), divide=2)),
    )
    job = await claim_refresh(shared_pool, queue, "AAPL", NOW.date())
    await shared_pool.execute(
        """
        CREATE FUNCTION refuse_completion() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'injected failure after the replace'; END $$;
        CREATE TRIGGER refuse_completion BEFORE UPDATE ON symbol_onboarding_queue
            FOR EACH ROW WHEN (NEW.status = 'completed') EXECUTE FUNCTION refuse_completion();
        """
    )
    try:
        result = await (await refresher_for(price_lookback_days=60)).run(job)
    finally:
        await shared_pool.execute(
            "DROP TRIGGER refuse_completion ON symbol_onboarding_queue;"
            " DROP FUNCTION refuse_completion()"
        )

    assert result.outcome == "retried"
    assert await stored(shared_pool, "AAPL") == before
    assert (await symbol_row(shared_pool, "AAPL"))["last_price_date"] == date(2023, 11, 22)


async def test_values_equal_to_the_tick_are_not_a_change(
    provider: FakeProvider, shared_pool, queue, refresher_for
) -> None:
    """Float artefacts (125.07000000001) round to the stored value: no re-fetch."""
    await seed(shared_pool, "AAPL", sessions(date(2023, 11, 1), date(2023, 11, 22)))
    body = polygon_aggs("AAPL", sessions(date(2023, 11, 17), NOW.date()))
    document = json.loads(body)
    for bar in document["results"]:
        bar["c"] += 0.00004
    path = aggs_path("AAPL", date(2023, 11, 17), date(2023, 11, 28))
    provider.route(path, Reply(body=json.dumps(document).encode()))
    job = await claim_refresh(shared_pool, queue, "AAPL", NOW.date())

    result = await (await refresher_for()).run(job)

    assert result.outcome == "completed"
    assert [r.path for r in provider.requests] == [path]


# --- delisting ----------------------------------------------------------------------------------


async def test_unknown_on_n_refreshes_in_a_row_delists_and_keeps_the_prices(
    provider: FakeProvider, shared_pool, queue, refresher_for
) -> None:
    await seed(shared_pool, "GONE", sessions(date(2023, 11, 1), date(2023, 11, 22)))
    before = await stored(shared_pool, "GONE")
    provider.route("/v8/finance/chart/GONE", NOT_FOUND)
    refresher = await refresher_for("yahoo", refresh_delist_after=2)

    first = await refresher.run(await claim_refresh(shared_pool, queue, "GONE", NOW.date()))
    assert first.outcome == "failed" and "unknown symbol GONE" in (first.error or "")
    row = await symbol_row(shared_pool, "GONE")
    assert (row["status"], row["is_active"]) == ("active", True)

    second = await refresher.run(await claim_refresh(shared_pool, queue, "GONE", NOW.date()))
    assert second.outcome == "failed"
    row = await symbol_row(shared_pool, "GONE")
    assert (row["status"], row["is_active"]) == ("delisted", False)
    assert await stored(shared_pool, "GONE") == before
    async with shared_pool.acquire() as conn:
        assert await enqueue_refresh(conn, NOW.date()) == 0  # no longer refreshed


async def test_a_served_refresh_resets_the_miss_count(
    provider: FakeProvider, shared_pool, queue, refresher_for
) -> None:
    await seed(shared_pool, "AAPL", sessions(date(2023, 11, 1), date(2023, 11, 22)))
    path = aggs_path("AAPL", date(2023, 11, 17), date(2023, 11, 28))
    provider.route(
        path,
        Reply(
            status=404,
            body=b'{"status":"NOT_FOUND","request_id":"x","message":"Ticker not found."}',
        ),
        Reply(body=polygon_aggs("AAPL", sessions(date(2023, 11, 17), NOW.date()))),
    )
    refresher = await refresher_for(refresh_delist_after=2)
    miss = await refresher.run(await claim_refresh(shared_pool, queue, "AAPL", NOW.date()))
    assert miss.outcome == "failed"
    assert (
        await shared_pool.fetchval(
            "SELECT consecutive_misses FROM symbol_refresh_state WHERE symbol = 'AAPL'"
        )
        == 1
    )
    await shared_pool.execute(
        "UPDATE symbol_universe SET last_price_date = '2023-11-22' WHERE symbol = 'AAPL'"
    )
    served = await refresher.run(await claim_refresh(shared_pool, queue, "AAPL", NOW.date()))
    assert served.outcome == "completed"
    assert (
        await shared_pool.fetchval(
            "SELECT consecutive_misses FROM symbol_refresh_state WHERE symbol = 'AAPL'"
        )
        == 0
    )


# --- host-added symbols, priorities -------------------------------------------------------------


async def test_a_host_inserted_symbol_without_prices_gets_a_full_onboarding(
    provider: FakeProvider, shared_pool, queue, refresher_for
) -> None:
    # The host's own code: a plain row, status defaulting to 'active', no prices.
    await shared_pool.execute("INSERT INTO symbol_universe (symbol) VALUES ('AAPL')")
    lookback_start = NOW.date() - timedelta(days=1) - timedelta(days=20)
    path = aggs_path("AAPL", lookback_start, NOW.date() - timedelta(days=1))
    provider.route(path, Reply(body=polygon_aggs("AAPL", sessions(lookback_start, NOW.date()))))
    job = await claim_refresh(shared_pool, queue, "AAPL", NOW.date())

    result = await (await refresher_for(price_lookback_days=20)).run(job)

    assert result.outcome == "completed", result.error
    assert [r.path for r in provider.requests] == [path]  # the onboarding's whole lookback
    assert len(await stored(shared_pool, "AAPL")) == len(
        sessions(lookback_start, NOW.date() - timedelta(days=1))
    )
    assert (await symbol_row(shared_pool, "AAPL"))["status"] == "active"


async def test_a_users_onboarding_behind_1000_refreshes_is_claimed_first(
    shared_pool, queue
) -> None:
    symbols = [f"R{i:04d}" for i in range(1000)]
    await shared_pool.execute(
        "INSERT INTO symbol_universe (symbol, status, last_price_date)"
        " SELECT unnest($1::text[]), 'active', date '2023-11-01'",
        symbols,
    )
    async with shared_pool.acquire() as conn:
        assert await enqueue_refresh(conn, NOW.date()) == 1000
    # A low-priority user request still overtakes every refresh, even a high one.
    await shared_pool.execute(
        "UPDATE symbol_onboarding_queue SET priority = 'high' WHERE symbol = 'R0500'"
    )
    user = await shared_pool.fetchval("SELECT enqueue_symbol_onboarding('NEWCO', 'low')")

    [first] = await queue.claim(shared_pool)
    assert (first.id, first.kind) == (user, "onboarding")
    [second] = await queue.claim(shared_pool)
    assert (second.symbol, second.kind) == ("R0500", "refresh")


async def test_an_onboarding_request_takes_over_a_pending_refresh(shared_pool, queue) -> None:
    await shared_pool.execute(
        "INSERT INTO symbol_universe (symbol, status, last_price_date)"
        " VALUES ('AAA', 'active', '2023-11-01'), ('BBB', 'active', '2023-11-01')"
    )
    async with shared_pool.acquire() as conn:
        assert await enqueue_refresh(conn, NOW.date()) == 2
    refresh_id = await shared_pool.fetchval(
        "SELECT id FROM symbol_onboarding_queue WHERE symbol = 'BBB'"
    )
    taken = await shared_pool.fetchval("SELECT enqueue_symbol_onboarding('BBB', 'low')")

    assert taken == refresh_id  # still one live job for the symbol
    row = await shared_pool.fetchrow(
        "SELECT kind, priority FROM symbol_onboarding_queue WHERE id = $1", taken
    )
    assert (row["kind"], row["priority"]) == ("onboarding", "normal")  # the higher priority
    assert await shared_pool.fetchval("SELECT count(*) FROM symbol_onboarding_queue") == 2
    [first] = await queue.claim(shared_pool)
    assert (first.symbol, first.kind) == ("BBB", "onboarding")


async def test_a_running_refresh_is_not_turned_into_an_onboarding(shared_pool, queue) -> None:
    await shared_pool.execute(
        "INSERT INTO symbol_universe (symbol, status, last_price_date)"
        " VALUES ('AAA', 'active', '2023-11-01')"
    )
    job = await claim_refresh(shared_pool, queue, "AAA", NOW.date())
    assert await shared_pool.fetchval("SELECT enqueue_symbol_onboarding('AAA', 'high')") == job.id
    row = await job_row(shared_pool, job)
    assert (row["kind"], row["priority"], row["status"]) == ("refresh", "high", "processing")


async def test_jobs_go_to_the_handler_of_their_kind(
    provider: FakeProvider, shared_pool, queue, refresher_for
) -> None:
    await seed(shared_pool, "AAPL", sessions(date(2023, 11, 1), date(2023, 11, 28)))
    refresher = await refresher_for()
    router = JobsByKind(refresher._onboarder, refresher)
    job = await claim_refresh(shared_pool, queue, "AAPL", date(2023, 11, 29))
    with capture_logs() as logs:
        assert (await router.run(job)).outcome == "completed"
    assert [e["event"] for e in logs] == ["refresh_up_to_date"]


async def test_pending_rows_without_prices_or_job_are_onboarded_not_duplicated(
    shared_pool, queue
) -> None:
    # ORPHAN: pending with no job (e.g. re-activated by the host); QUEUED: a live onboarding.
    await shared_pool.execute(
        "INSERT INTO symbol_universe (symbol, status) VALUES ('ORPHAN', 'pending')"
    )
    queued = await shared_pool.fetchval("SELECT enqueue_symbol_onboarding('QUEUED')")
    async with shared_pool.acquire() as conn:
        assert await enqueue_refresh(conn, NOW.date()) == 1
    rows = await shared_pool.fetch(
        "SELECT id, symbol, kind FROM symbol_onboarding_queue ORDER BY symbol"
    )
    assert [(r["symbol"], r["kind"]) for r in rows] == [
        ("ORPHAN", "refresh"),
        ("QUEUED", "onboarding"),
    ]
    assert rows[1]["id"] == queued
