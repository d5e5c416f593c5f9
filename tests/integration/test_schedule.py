"""The daily refresh schedule against real PostgreSQL, with an injected clock: one batch per
trading day across concurrent workers, catch-up after downtime, none again after a restart."""

import argparse
import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from worker.core.db import asyncpg_dsn
from worker.core.settings import Settings
from worker.core.trading_calendar import TradingCalendar
from worker.jobs.schedule import DailySchedule, ScheduleTimes, catch_up_day, command
from worker.ops import status

NEW_YORK = ZoneInfo("America/New_York")
CALENDAR = TradingCalendar("XNYS", now=datetime(2023, 12, 1, tzinfo=UTC))
TIMES = ScheduleTimes(CALENDAR, time(18, 0), NEW_YORK)
TUESDAY = date(2023, 11, 28)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


@pytest.fixture
async def pools(database_url: str) -> AsyncIterator[list[asyncpg.Pool]]:
    """Three pools: three worker processes' connections to one database."""
    made = [
        await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=1, max_size=2)
        for _ in range(3)
    ]
    await made[0].execute(
        "INSERT INTO symbol_universe (symbol, status, last_price_date)"
        " SELECT 'S' || i, 'active', date '2023-11-01' FROM generate_series(1, 50) AS i"
    )
    try:
        yield made
    finally:
        for pool in made:
            await pool.close()


async def batches(pool: asyncpg.Pool) -> list[tuple[date, int]]:
    rows = await pool.fetch("SELECT trading_day, jobs FROM refresh_schedule_runs ORDER BY 1")
    return [(r["trading_day"], r["jobs"]) for r in rows]


async def refresh_jobs(pool: asyncpg.Pool) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM symbol_onboarding_queue WHERE kind = 'refresh'"
    )


def schedules(pools: list[asyncpg.Pool], now: datetime) -> list[DailySchedule]:
    return [
        DailySchedule(pool, TIMES, f"worker-{i}", now=lambda: now) for i, pool in enumerate(pools)
    ]


async def test_three_workers_just_past_the_time_enqueue_exactly_one_batch(pools) -> None:
    workers = schedules(pools, at(TUESDAY, 18, 0) + timedelta(seconds=1))
    for _ in range(5):  # several housekeeping rounds each, concurrently
        await asyncio.gather(*(w() for w in workers))

    assert await batches(pools[0]) == [(TUESDAY, 50)]
    assert await refresh_jobs(pools[0]) == 50


async def test_before_the_time_nothing_is_due(pools) -> None:
    # Tuesday 17:59, and Monday's batch already ran.
    await pools[0].execute(
        "INSERT INTO refresh_schedule_runs (trading_day, through_session, jobs, worker_id)"
        " VALUES ('2023-11-27', '2023-11-27', 0, 'earlier')"
    )
    [worker] = schedules(pools[:1], at(TUESDAY, 17, 59))
    outcome = await worker()

    assert outcome is not None and outcome.status == "done"
    assert await refresh_jobs(pools[0]) == 0


async def test_a_worker_started_after_the_time_catches_up(pools) -> None:
    # Down from Friday to Wednesday morning: Tuesday's batch is still due, once.
    [worker] = schedules(pools[:1], at(date(2023, 11, 29), 9, 30))
    outcome = await worker()

    assert outcome is not None and (outcome.status, outcome.jobs) == ("enqueued", 50)
    assert await batches(pools[0]) == [(TUESDAY, 50)]
    through = await pools[0].fetchval("SELECT through_session FROM refresh_schedule_runs")
    assert through == TUESDAY  # Wednesday's session has not closed at 09:30


async def test_no_second_batch_the_same_day_after_a_restart(pools) -> None:
    now = at(TUESDAY, 20, 0)
    [first] = schedules(pools[:1], now)
    assert (await first()).status == "enqueued"
    await pools[0].execute(
        "UPDATE symbol_onboarding_queue SET status = 'completed', completed_at = now()"
    )
    # The same process later that day asks nothing of the database...
    assert await first() is None
    # ...and a restarted one (no memory) finds the day's row.
    [restarted] = schedules(pools[1:2], now + timedelta(hours=2))
    assert (await restarted()).status == "done"
    assert await refresh_jobs(pools[0]) == 50


async def test_weekends_and_holidays_have_no_schedule_of_their_own(pools) -> None:
    # Thanksgiving: Wednesday's batch is the due one; on Saturday, Friday's.
    assert TIMES.due_day(at(date(2023, 11, 23), 20, 0)) == date(2023, 11, 22)
    assert TIMES.due_day(at(date(2023, 11, 25), 20, 0)) == date(2023, 11, 24)
    assert TIMES.next_after(at(date(2023, 11, 25), 20, 0)) == at(date(2023, 11, 27), 18, 0)
    await pools[0].execute(
        "INSERT INTO refresh_schedule_runs (trading_day, through_session, jobs, worker_id)"
        " VALUES ('2023-11-24', '2023-11-24', 0, 'friday')"
    )
    [worker] = schedules(pools[:1], at(date(2023, 11, 26), 12, 0))
    assert (await worker()).status == "done"
    assert await refresh_jobs(pools[0]) == 0


async def test_a_due_batch_not_enqueued_yet_is_a_catch_up_day(pools) -> None:
    async with pools[0].acquire() as c:
        # Monday's batch not enqueued yet: a catch-up for the next worker round; once it is, none.
        assert await catch_up_day(c, TIMES, at(TUESDAY, 17, 0)) == date(2023, 11, 27)
        await c.execute(
            "INSERT INTO refresh_schedule_runs (trading_day, through_session, jobs, worker_id)"
            " VALUES ('2023-11-27', '2023-11-27', 0, 'monday')"
        )
        assert await catch_up_day(c, TIMES, at(TUESDAY, 17, 0)) is None
        assert await catch_up_day(c, None, at(TUESDAY, 17, 0)) is None
    assert TIMES.next_after(at(TUESDAY, 17, 0)) == at(TUESDAY, 18, 0)


async def test_status_shows_the_real_next_scheduled_time_before_any_schedule_round(
    pools,
) -> None:
    """Issue 22.6: before a worker's first schedule round, status said "next scheduled refresh:
    <now>" (a different time at every call); it shows the next scheduled time, and the missed
    day's batch as a catch-up of its own."""
    settings = Settings(refresh_schedule_time="18:00", refresh_schedule_timezone="America/New_York")
    async with pools[0].acquire() as c:
        report = await status.gather(c, settings)
    facts = report.refresh
    assert facts.next_scheduled_refresh is not None
    assert facts.next_scheduled_refresh > report.generated_at
    local = facts.next_scheduled_refresh.astimezone(NEW_YORK)
    assert (local.hour, local.minute) == (18, 0)
    assert facts.next_scheduled_refresh - report.generated_at <= timedelta(days=5)
    # No batch was ever enqueued: the latest due session's is the catch-up, scheduled before now.
    assert facts.catch_up_trading_day is not None and facts.catch_up_scheduled_at is not None
    assert facts.catch_up_scheduled_at <= report.generated_at
    text = status.format_text(report)
    assert f"next scheduled refresh: {facts.next_scheduled_refresh.isoformat()}" in text
    assert f"refresh batch of {facts.catch_up_trading_day.isoformat()} (scheduled" in text
    assert f"next scheduled refresh: {report.generated_at.isoformat()}" not in text

    await pools[0].execute(
        "INSERT INTO refresh_schedule_runs (trading_day, through_session, jobs, worker_id)"
        " VALUES ($1, $1, 0, 'w1')",
        facts.catch_up_trading_day,
    )
    async with pools[0].acquire() as c:
        after = (await status.gather(c, settings)).refresh
    assert after.catch_up_trading_day is None and after.catch_up_scheduled_at is None
    assert after.next_scheduled_refresh == facts.next_scheduled_refresh


async def test_status_shows_the_refresh_facts(pools) -> None:
    conn = pools[0]
    await conn.execute(
        "INSERT INTO symbol_universe (symbol, status, last_price_date) VALUES"
        " ('CUR', 'active', current_date - 400), ('OLD', 'delisted', '2020-01-02')"
    )
    await conn.execute("INSERT INTO symbol_universe (symbol) VALUES ('HOSTNEW')")
    await conn.execute(
        "INSERT INTO refresh_schedule_runs (trading_day, through_session, jobs, worker_id)"
        " VALUES ('2023-11-28', '2023-11-28', 50, 'w1')"
    )
    async with conn.acquire() as c:
        report = await status.gather(c, Settings(refresh_schedule_time="off"))
    facts = report.refresh
    # The database clock: every seeded symbol is behind whatever today is.
    assert facts.calendar == "XNYS"
    assert (facts.current, facts.behind, facts.without_prices, facts.delisted) == (0, 52, 1, 1)
    assert facts.oldest_last_price_date == date(2023, 11, 1)
    assert facts.last_batch is not None and facts.last_batch.jobs == 50
    assert facts.next_scheduled_refresh is None and facts.catch_up_trading_day is None
    text = status.format_text(report)
    assert "0 current, 52 behind (oldest last_price_date 2023-11-01), 1 without prices" in text
    assert "last refresh batch: 2023-11-28 (50 jobs through session 2023-11-28" in text
    assert "next scheduled refresh: off (REFRESH_SCHEDULE_TIME)" in text
    assert status.report_dict(report)["refresh"]["through_session"] == (
        facts.through_session.isoformat()
    )


async def test_refresh_command_enqueues_and_dry_run_costs_it_out(pools, capsys) -> None:
    settings = Settings(price_source="polygon,yahoo", polygon_api_key="k")
    now = at(TUESDAY, 19, 0)
    async with pools[0].acquire() as conn:
        dry = argparse.Namespace(symbols=None, dry_run=True)
        assert await command(dry, settings, conn, now=now) == 0
        out = capsys.readouterr().out
        assert "behind: 50 symbol(s), oldest last_price_date 2023-11-01" in out
        # Polygon's free limit, 5/minute: 50 requests 12 s apart.
        assert "requests: polygon 50 (12 s apart: about 10.0 min)" in out
        assert await refresh_jobs(pools[0]) == 0

        some = argparse.Namespace(symbols=["S1", "S2", "NOPE"], dry_run=False)
        assert await command(some, settings, conn, now=now) == 0
        out = capsys.readouterr().out
        assert "enqueued 2 refresh job(s) through session 2023-11-28" in out
        assert "not behind (current, delisted, pending or unknown): NOPE" in out

        everything = argparse.Namespace(symbols=None, dry_run=False)
        assert await command(everything, settings, conn, now=now) == 0
        assert "enqueued 48 refresh job(s)" in capsys.readouterr().out
    assert await refresh_jobs(pools[0]) == 50


async def test_host_rows_the_queue_would_refuse_are_counted_not_enqueued(pools, capsys) -> None:
    """The host inserts universe rows itself; one the queue's spelling rule refuses (including
    punctuation alone, revision 0006) must not roll the whole daily batch back."""
    await pools[0].execute(
        "INSERT INTO symbol_universe (symbol, status) VALUES ('..', 'active'), ('^', 'active'),"
        " ('BAD SYM', 'active'), ('aapl', 'active')"
    )
    settings = Settings(price_source="polygon,yahoo", polygon_api_key="k")
    async with pools[0].acquire() as conn:
        for dry_run in (True, False):
            args = argparse.Namespace(symbols=None, dry_run=dry_run)
            assert await command(args, settings, conn, now=at(TUESDAY, 19, 0)) == 0
        report = await status.gather(conn, settings)
    out = capsys.readouterr().out
    assert "skipped: 4 symbol(s) whose spelling the queue refuses" in out
    assert "enqueued 50 refresh job(s)" in out
    assert await refresh_jobs(pools[0]) == 50
    assert report.refresh.behind == 54  # status counts them behind: they are


async def test_dry_run_counts_one_grouped_request_per_session_with_polygon_first(
    pools, capsys
) -> None:
    settings = Settings(price_source="polygon", polygon_api_key="k")
    await pools[0].execute(
        "UPDATE symbol_universe SET last_price_date = '2023-11-22' WHERE symbol <> 'S1'"
    )
    async with pools[0].acquire() as conn:
        dry = argparse.Namespace(symbols=None, dry_run=True)
        assert await command(dry, settings, conn, now=at(TUESDAY, 19, 0)) == 0
    out = capsys.readouterr().out
    # 49 symbols: 3 overlap sessions + the 22nd + 3 missing = 7 grouped requests; S1 (from
    # 2023-11-01: 20 sessions, more than REFRESH_BULK_MAX_SESSIONS) asks on its own.
    assert "requests: polygon 8 (12 s apart: about 96 s)" in out
    assert "of which grouped daily: 7 (one per session) for 49 symbol(s); per symbol: 1" in out
