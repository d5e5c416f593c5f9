"""The onboarding job's factor step against real PostgreSQL: betas in the job's transaction,
reference ETFs enqueued and waited for, their jobs computing the waiting symbols' betas."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.factordata import store_prices
from tests.fakeprovider import FakeProvider, recorded
from tests.helpers import job_row
from tests.integration.conftest import claim, stored, symbol_row
from worker.core.settings import Settings
from worker.factors.betas import REFERENCE_ETFS
from worker.factors.store import FactorStore
from worker.jobs.onboarding import Onboarder, open_onboarder
from worker.prices.base import Window
from worker.prices.synthetic import generate
from worker.queue.store import Queue
from worker.sql import factors as sql

TODAY = date(2025, 1, 2)  # the window ends on Wednesday 2025-01-01 (a weekday: a bar)
WINDOW = Window(TODAY - timedelta(days=366), TODAY - timedelta(days=1))
LAST_DAY = WINDOW.end
NOT_FOUND = recorded("yahoo/error-404-unknown-symbol.TRANSCRIBED.json", status=404)


@pytest.fixture
async def make_onboarder(
    shared_pool: asyncpg.Pool, onboarder_for: Callable[..., Awaitable[Onboarder]]
) -> Callable[..., Awaitable[Onboarder]]:
    """Onboarders with the factor store on (detected like `run` does), closed afterwards:
    `await make_onboarder("synthetic", **settings)`."""
    store = await FactorStore.detect(shared_pool)

    async def make(
        sources: str = "synthetic",
        last_session: Callable[[], date] | None = None,
        **overrides: Any,
    ) -> Onboarder:
        return await onboarder_for(
            sources, today=TODAY, factor_store=store, last_session=last_session, **overrides
        )

    return make


async def seed_references(pool: asyncpg.Pool, *, end: date = LAST_DAY, skip: tuple = ()) -> None:
    """The reference ETFs' synthetic prices up to `end`, as their own jobs would store them."""
    series = {}
    for etf in REFERENCE_ETFS:
        if etf in skip:
            continue
        bars = generate(etf, Window(WINDOW.start, end))
        closes = [float(b.close) for b in bars]
        series[etf] = ([b.price_date for b in bars], closes, closes)
    async with pool.acquire() as conn:
        await store_prices(conn, series)


async def exposures(pool: asyncpg.Pool, symbol: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM symbol_factor_exposures WHERE symbol = $1", symbol)


async def waits(pool: asyncpg.Pool) -> dict[str, list[str]]:
    rows = await pool.fetch("SELECT symbol, waiting_for FROM symbol_factor_waits")
    return {r["symbol"]: sorted(r["waiting_for"]) for r in rows}


async def live_jobs(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT symbol, priority FROM symbol_onboarding_queue WHERE status = 'pending'"
    )
    return {r["symbol"]: r["priority"] for r in rows}


async def run_queue(pool: asyncpg.Pool, queue: Queue, onboarder: Onboarder) -> list[str]:
    """Claim and run jobs one at a time until none is runnable; returns their symbols."""
    done = []
    while jobs := await queue.claim(pool):
        await onboarder.run(jobs[0])
        done.append(jobs[0].symbol)
    return done


async def test_betas_are_written_with_the_prices_and_the_completion(
    shared_pool: asyncpg.Pool, queue: Queue, make_onboarder: Callable[..., Awaitable[Onboarder]]
) -> None:
    await seed_references(shared_pool)
    job = await claim(shared_pool, queue, "AAA")
    with capture_logs() as events:
        result = await (await make_onboarder()).run(job)
    assert result.outcome == "completed"
    assert (await job_row(shared_pool, job))["status"] == "completed"
    row = await exposures(shared_pool, "AAA")
    assert row is not None and row["calculation_date"] == LAST_DAY
    assert all(row[c] is not None for c in sql.WIDE_COLUMNS)
    universe = await symbol_row(shared_pool, "AAA")
    assert (universe["status"], universe["last_price_date"], universe["last_factor_date"]) == (
        "active",
        LAST_DAY,
        LAST_DAY,
    )
    assert await waits(shared_pool) == {} and await live_jobs(shared_pool) == {}
    computed = [e for e in events if e["event"] == "factors_computed"]
    assert computed and computed[0]["betas"] == 12 and computed[0]["symbol"] == "AAA"
    # The same betas as a recompute from the stored rows.
    async with shared_pool.acquire() as conn:
        from worker.factors.service import recompute_factors

        await recompute_factors(conn, ["AAA"])
    assert await exposures(shared_pool, "AAA") == row


async def test_missing_references_are_onboarded_first_and_the_betas_follow(
    shared_pool: asyncpg.Pool, queue: Queue, make_onboarder: Callable[..., Awaitable[Onboarder]]
) -> None:
    onboarder = await make_onboarder()
    job = await claim(shared_pool, queue, "AAA")
    assert (await onboarder.run(job)).outcome == "completed"
    # Prices at once; betas pending, the ETFs enqueued at high priority.
    assert len(await stored(shared_pool, "AAA")) > 250
    assert (await symbol_row(shared_pool, "AAA"))["last_factor_date"] is None
    assert await exposures(shared_pool, "AAA") is None
    assert await waits(shared_pool) == {"AAA": sorted(REFERENCE_ETFS)}
    assert await live_jobs(shared_pool) == dict.fromkeys(REFERENCE_ETFS, "high")
    # All ETFs but one land: AAA still waits (USMV's job is live).
    for _ in range(len(REFERENCE_ETFS) - 1):
        (etf_job,) = await queue.claim(shared_pool)
        if etf_job.symbol == "USMV":
            usmv = etf_job
            (etf_job,) = await queue.claim(shared_pool)
        await onboarder.run(etf_job)
    assert await exposures(shared_pool, "AAA") is None
    # The last one's transaction computes AAA's betas (and the ETFs' own): nobody re-enqueues.
    await onboarder.run(usmv)
    assert await waits(shared_pool) == {}
    row = await exposures(shared_pool, "AAA")
    assert row is not None and all(row[c] is not None for c in sql.WIDE_COLUMNS)
    assert (await symbol_row(shared_pool, "AAA"))["last_factor_date"] == LAST_DAY
    spy = await exposures(shared_pool, "SPY")
    assert str(spy["market_beta"]) == "1.000000"
    for etf in REFERENCE_ETFS:
        assert (await symbol_row(shared_pool, etf))["last_factor_date"] == LAST_DAY, etf
    statuses = await shared_pool.fetch("SELECT DISTINCT status FROM symbol_onboarding_queue")
    assert [r[0] for r in statuses] == ["completed"]


async def test_a_stale_reference_is_onboarded_again(
    shared_pool: asyncpg.Pool, queue: Queue, make_onboarder: Callable[..., Awaitable[Onboarder]]
) -> None:
    await seed_references(shared_pool, skip=("TLT",))
    await seed_references(
        shared_pool, end=LAST_DAY - timedelta(days=10), skip=REFERENCE_ETFS[:1] + REFERENCE_ETFS[2:]
    )
    onboarder = await make_onboarder()
    await onboarder.run(await claim(shared_pool, queue, "AAA"))
    assert await waits(shared_pool) == {"AAA": ["TLT"]}
    assert await live_jobs(shared_pool) == {"TLT": "high"}
    assert await run_queue(shared_pool, queue, onboarder) == ["TLT"]
    assert await waits(shared_pool) == {}
    assert (await exposures(shared_pool, "AAA"))["calculation_date"] == LAST_DAY


async def test_a_reference_without_the_symbols_session_is_refreshed_and_waited_for(
    shared_pool: asyncpg.Pool, queue: Queue, make_onboarder: Callable[..., Awaitable[Onboarder]]
) -> None:
    """Betas dated D use every ETF's price of D: ETFs two days behind are brought current
    first (a refresh at high priority: they have prices), not used as they are."""
    behind = LAST_DAY - timedelta(days=2)  # Monday 2024-12-30
    await seed_references(shared_pool, end=behind)
    await (await make_onboarder()).run(await claim(shared_pool, queue, "AAA"))
    assert await waits(shared_pool) == {"AAA": sorted(REFERENCE_ETFS)}
    assert await live_jobs(shared_pool) == dict.fromkeys(REFERENCE_ETFS, "high")
    kinds = await shared_pool.fetch(
        "SELECT DISTINCT kind FROM symbol_onboarding_queue WHERE symbol <> 'AAA'"
    )
    assert [r[0] for r in kinds] == ["refresh"]
    assert await exposures(shared_pool, "AAA") is None


async def test_references_as_current_as_the_calendar_allows_are_used_as_they_are(
    shared_pool: asyncpg.Pool, queue: Queue, make_onboarder: Callable[..., Awaitable[Onboarder]]
) -> None:
    """A symbol with a session the calendar has not closed for the ETFs (a foreign listing's
    day): the ETFs cannot have it, so the betas come from the sessions they have."""
    behind = LAST_DAY - timedelta(days=2)
    await seed_references(shared_pool, end=behind)
    onboarder = await make_onboarder(last_session=lambda: behind)
    with capture_logs() as events:
        await onboarder.run(await claim(shared_pool, queue, "AAA"))
    assert await waits(shared_pool) == {} and await live_jobs(shared_pool) == {}
    assert (await exposures(shared_pool, "AAA"))["calculation_date"] == behind
    assert (await symbol_row(shared_pool, "AAA"))["last_factor_date"] == behind
    [said] = [e for e in events if e["event"] == "factors_references_behind"]
    assert said["etfs"] == dict.fromkeys(REFERENCE_ETFS, behind.isoformat())


async def test_a_reference_that_fails_for_good_releases_its_waiters(
    shared_pool: asyncpg.Pool,
    queue: Queue,
    make_onboarder: Callable[..., Awaitable[Onboarder]],
    provider: FakeProvider,
) -> None:
    await seed_references(shared_pool, skip=("USMV",))
    await (await make_onboarder()).run(await claim(shared_pool, queue, "AAA"))
    assert await waits(shared_pool) == {"AAA": ["USMV"]}
    provider.route("/v8/finance/chart/USMV", NOT_FOUND)
    (usmv,) = await queue.claim(shared_pool)
    result = await (await make_onboarder("yahoo")).run(usmv)
    assert result.outcome == "failed"
    # USMV's failing transaction computed AAA from what there is: styles need USMV, so absent.
    assert await waits(shared_pool) == {}
    row = await exposures(shared_pool, "AAA")
    styles = ("value_beta", "growth_beta", "momentum_beta", "quality_beta", "size_beta")
    assert all(row[c] is None for c in (*styles, "low_vol_beta"))
    assert row["market_beta"] is not None and row["quality_spread"] is not None
    assert (await symbol_row(shared_pool, "AAA"))["last_factor_date"] == LAST_DAY


async def test_twenty_days_of_history_completes_without_betas(
    shared_pool: asyncpg.Pool, queue: Queue, make_onboarder: Callable[..., Awaitable[Onboarder]]
) -> None:
    await seed_references(shared_pool)
    job = await claim(shared_pool, queue, "NEWCO")
    with capture_logs() as events:
        result = await (await make_onboarder(price_lookback_days=27)).run(job)
    assert result.outcome == "completed" and len(await stored(shared_pool, "NEWCO")) == 20
    assert await exposures(shared_pool, "NEWCO") is None
    assert (await symbol_row(shared_pool, "NEWCO"))["last_factor_date"] is None
    assert await waits(shared_pool) == {}
    (event,) = [e for e in events if e["event"] == "factors_not_computed"]
    assert event["reasons"] == {"too_few_returns": 1} and event["symbol"] == "NEWCO"


async def test_a_lost_job_writes_neither_prices_nor_betas_nor_waits(
    shared_pool: asyncpg.Pool, queue: Queue, make_onboarder: Callable[..., Awaitable[Onboarder]]
) -> None:
    job = await claim(shared_pool, queue, "AAA")
    await shared_pool.execute("UPDATE symbol_onboarding_queue SET locked_by = 'someone-else'")
    from worker.core.errors import JobLost

    with pytest.raises(JobLost):
        await (await make_onboarder()).run(job)
    assert await stored(shared_pool, "AAA") == []
    assert await waits(shared_pool) == {} and await live_jobs(shared_pool) == {}


async def test_a_failing_factor_step_is_rolled_back_alone(
    database_pool: asyncpg.Pool, settings: Settings
) -> None:
    pool, queue = database_pool, Queue("test-worker")
    await seed_references(pool)
    await pool.execute(
        """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'exposures are read-only today'; END $$;
           CREATE TRIGGER refuse BEFORE INSERT ON symbol_factor_exposures
           FOR EACH ROW EXECUTE FUNCTION refuse();"""
    )
    async with open_onboarder(
        settings,
        queue,
        pool,
        sources="synthetic",
        today=lambda: TODAY,
        factor_store=await FactorStore.detect(pool),
    ) as onboarder:
        job = await claim(pool, queue, "AAA")
        with capture_logs() as events:
            assert (await onboarder.run(job)).outcome == "completed"
    assert len(await stored(pool, "AAA")) > 250
    universe = await symbol_row(pool, "AAA")
    assert (universe["status"], universe["last_factor_date"]) == ("active", None)
    (failed,) = [e for e in events if e["event"] == "factors_failed"]
    assert "read-only today" in failed["error"]


async def test_a_job_waits_for_a_reference_transaction_in_flight(
    shared_pool: asyncpg.Pool, queue: Queue, make_onboarder: Callable[..., Awaitable[Onboarder]]
) -> None:
    """The lost wake-up: while a reference ETF's transaction holds the exclusive lock, another
    job's write waits for it, and then sees what it committed (here SPY's prices)."""
    await seed_references(shared_pool, skip=("SPY",))
    job = await claim(shared_pool, queue, "AAA")
    async with shared_pool.acquire() as etf_conn:
        tx = etf_conn.transaction()
        await tx.start()
        await etf_conn.execute(sql.LOCK_REFERENCES_EXCLUSIVE, sql.REFERENCE_LOCK_KEY)
        running = asyncio.create_task((await make_onboarder()).run(job))
        await asyncio.sleep(0.5)
        assert not running.done()
        assert (
            await shared_pool.fetchval(
                "SELECT count(*) FROM symbol_prices_daily WHERE symbol = 'AAA'"
            )
        ) == 0
        bars = generate("SPY", WINDOW)
        await store_prices(
            etf_conn, {"SPY": ([b.price_date for b in bars], [float(b.close) for b in bars], None)}
        )
        await tx.commit()
    assert (await running).outcome == "completed"
    assert await waits(shared_pool) == {}
    assert (await exposures(shared_pool, "AAA"))["calculation_date"] == LAST_DAY
