"""Outages against real PostgreSQL: what hands a job back, what spends an attempt, and recovery.

The one decision (worker/core/errors.py): a lost connection is an outage (the job goes back without
spending an attempt); a statement that times out or a driver fault spends one, so it still
reaches QUEUE_MAX_ATTEMPTS.
"""

import asyncio

import asyncpg
import pytest

from tests.helpers import job_row
from tests.integration.test_runner import CrashingHandler
from worker.core.db import asyncpg_dsn, connect_options
from worker.core.errors import DatabaseUnavailable
from worker.core.settings import Settings
from worker.jobs.onboarding import open_onboarder
from worker.queue.housekeeping import Housekeeper
from worker.queue.runner import Runner
from worker.queue.store import Queue


def synthetic_settings(**overrides: object) -> Settings:
    base = {
        "price_source": "synthetic",
        "price_lookback_days": 10,
        "concurrency": 1,
        "poll_interval_s": 0.1,
        "heartbeat_interval_s": 0.2,
        "stall_timeout_s": 1.0,
        "shutdown_grace_s": 5.0,
        "reconnect_max_wait_s": 0.2,
        "max_attempts": 1,
    }
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


async def slow_price_writes(conn: asyncpg.Connection, seconds: float) -> None:
    """Every row of the price write sleeps `seconds` (once per statement is enough: one row)."""
    await conn.execute(
        f"""
        CREATE FUNCTION slow_price_write() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$;
        CREATE TRIGGER slow_price_write BEFORE INSERT ON symbol_prices_daily
        FOR EACH STATEMENT EXECUTE FUNCTION slow_price_write();
        """
    )


async def terminate_when_sleeping(conn: asyncpg.Connection) -> int:
    """Terminate the backend that sleeps in the price write, once it does; returns its pid."""
    while True:
        pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()"
        )
        if pid is not None:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
            return pid
        await asyncio.sleep(0.01)


async def enqueue(conn: asyncpg.Connection, symbol: str) -> None:
    await conn.execute("SELECT enqueue_symbol_onboarding($1)", symbol)


async def universe_status(conn: asyncpg.Connection, symbol: str) -> str | None:
    return await conn.fetchval("SELECT status FROM symbol_universe WHERE symbol = $1", symbol)


def worker_pool(database_url: str, settings: Settings):
    return asyncpg.create_pool(
        asyncpg_dsn(database_url), min_size=1, max_size=3, **connect_options(settings)
    )


async def test_connection_dropped_in_the_price_write_hands_the_job_back(database_url, conn) -> None:
    """Issue 11.2: the connection is terminated mid-write; with one attempt allowed, the job must
    not fail: it goes back without spending the attempt, and the next claim completes it."""
    await slow_price_writes(conn, 0.3)
    await enqueue(conn, "DROP")
    settings = synthetic_settings()
    queue = Queue("outage", max_attempts=1)
    async with (
        worker_pool(database_url, settings) as pool,
        open_onboarder(settings, queue, pool) as onboarder,
    ):
        runner = Runner(settings, pool, queue, onboarder, claim_dsn=asyncpg_dsn(database_url))
        killer = asyncio.create_task(terminate_when_sleeping(conn))
        task = asyncio.create_task(runner.run())
        try:
            await asyncio.wait_for(killer, 10)
            for _ in range(200):
                if (await job_row(conn, "DROP"))["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
        finally:
            runner.request_stop()
            await asyncio.wait_for(task, 10)
    row = await job_row(conn, "DROP")
    assert (row["status"], row["attempts"]) == ("completed", 1), tuple(row)
    assert await universe_status(conn, "DROP") == "active"


async def test_dropped_connection_in_the_write_is_an_outage_for_the_handler(
    database_url, conn
) -> None:
    """The same drop seen by the job itself: it raises the project's outage error, not a bug."""
    await slow_price_writes(conn, 0.3)
    await enqueue(conn, "DROP")
    settings = synthetic_settings()
    queue = Queue("outage", max_attempts=1)
    async with (
        worker_pool(database_url, settings) as pool,
        open_onboarder(settings, queue, pool) as onboarder,
    ):
        [job] = await queue.claim(pool)
        killer = asyncio.create_task(terminate_when_sleeping(conn))
        with pytest.raises(DatabaseUnavailable):
            await onboarder.run(job)
        await killer
    row = await job_row(conn, "DROP")
    assert (row["status"], row["attempts"]) == ("processing", 1)  # the runner hands it back


async def test_a_statement_that_always_times_out_spends_its_attempts(database_url, conn) -> None:
    """Issue 11.3: asyncpg's command_timeout is not an outage; the job reaches max attempts."""
    await slow_price_writes(conn, 2)
    await enqueue(conn, "SLOWW")
    settings = synthetic_settings(command_timeout_s=0.3)
    queue = Queue("timeout", max_attempts=1)
    async with (
        worker_pool(database_url, settings) as pool,
        open_onboarder(settings, queue, pool) as onboarder,
    ):
        [job] = await queue.claim(pool)
        result = await onboarder.run(job)
    assert result.outcome == "failed"
    row = await job_row(conn, "SLOWW")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "timed out" in row["error_message"]
    assert await universe_status(conn, "SLOWW") == "error"


async def test_a_crash_on_the_last_attempt_marks_the_symbol_error(
    database_pool, database_url, conn
) -> None:
    """Issue 11.4: the runner's crash path fails the job like every other failure path."""
    await enqueue(conn, "BUG")
    queue = Queue("crash", max_attempts=1)
    runner = Runner(
        synthetic_settings(),
        database_pool,
        queue,
        CrashingHandler(),
        claim_dsn=asyncpg_dsn(database_url),
        burst=True,
    )
    await asyncio.wait_for(runner.run(), 10)
    row = await job_row(conn, "BUG")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert await universe_status(conn, "BUG") == "error"


async def test_a_recovered_job_keeps_its_place_in_the_queue(conn) -> None:
    """Issue 11.6: a job recovered from a dead worker is claimed before younger ones."""
    await enqueue(conn, "FIRST")
    [first] = await Queue("dead").claim(conn)
    await enqueue(conn, "SECOND")
    await conn.execute(
        "UPDATE symbol_onboarding_queue SET heartbeat_at = now() - interval '1 minute'"
        " WHERE symbol = 'FIRST'"
    )
    recovered = await Queue("sweeper").recover_stalled(conn, stall_timeout_s=1)
    assert [r.symbol for r in recovered] == ["FIRST"]
    [next_job] = await Queue("next").claim(conn, 1)
    assert next_job.symbol == "FIRST"
    assert first.symbol == "FIRST"


async def test_a_hand_back_without_delay_keeps_its_place(conn) -> None:
    await enqueue(conn, "FIRST")
    queue = Queue("leaving")
    [first] = await queue.claim(conn)
    await enqueue(conn, "SECOND")
    await queue.release(conn, first, reason="shutting down")
    [next_job] = await Queue("next").claim(conn, 1)
    assert next_job.symbol == "FIRST"


async def test_worker_connections_end_a_frozen_transaction(database_url, conn) -> None:
    """Issue 11.6: a worker frozen inside its write transaction releases its locks after
    DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S, so recovery and other workers can go on."""
    await enqueue(conn, "FROZEN")
    settings = Settings(idle_in_transaction_timeout_s=0.5)
    frozen = await asyncpg.connect(asyncpg_dsn(database_url), **connect_options(settings))
    try:
        tx = frozen.transaction()
        await tx.start()
        await frozen.execute("SELECT 1 FROM symbol_onboarding_queue FOR UPDATE")
        await asyncio.sleep(1.5)  # frozen (SIGSTOP, a debugger, a blocked event loop)
        locked = await conn.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM symbol_onboarding_queue FOR UPDATE SKIP LOCKED) s"
        )
        assert locked == 1, "the frozen transaction still holds the row"
    finally:
        frozen.terminate()


async def test_prune_commits_each_analytics_cache_batch(database_url, conn) -> None:
    """Issue 11.7: `worker prune` sweeps the analytics cache in batches that each commit."""
    user = await conn.fetchval("INSERT INTO users (email) VALUES ('u@example.com') RETURNING id")
    portfolio = await conn.fetchval(
        "INSERT INTO portfolios (user_id, name) VALUES ($1, 'p') RETURNING id", user
    )
    await conn.execute(
        """
        INSERT INTO portfolio_analytics_cache (portfolio_id, cache_key, cache_type, cached_data,
                                               valid_until)
        SELECT $1, 'k' || i, 'factor_exposures', '{}', now() - interval '1 hour'
        FROM generate_series(1, 25) i
        """,
        portfolio,
    )
    await conn.execute(
        """
        CREATE TABLE sweep_transactions (xid xid8);
        CREATE FUNCTION note_sweep() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO sweep_transactions VALUES (pg_current_xact_id()); RETURN NULL; END $$;
        CREATE TRIGGER note_sweep AFTER DELETE ON portfolio_analytics_cache
        FOR EACH STATEMENT EXECUTE FUNCTION note_sweep();
        """
    )
    from worker.jobs.maintenance import housekeeper_for

    settings = Settings(prune_batch_size=10)
    async with worker_pool(database_url, settings) as pool:
        result = await housekeeper_for(settings, pool, Queue("prune")).prune(max_batches=None)
    assert result is not None and result.extra["expired_analytics_cache"] == 25
    assert await conn.fetchval("SELECT count(*) FROM portfolio_analytics_cache") == 0
    # Three batches (10, 10, 5), each its own transaction.
    assert await conn.fetchval("SELECT count(DISTINCT xid) FROM sweep_transactions") == 3


async def test_housekeeping_reports_an_outage_as_such() -> None:
    """Driver errors are translated where they enter: housekeeping raises the outage error."""
    async with asyncpg.create_pool("postgresql://postgres@127.0.0.1:1/x", min_size=0) as pool:
        keeper = Housekeeper(Settings(), pool, Queue("keeper"))
        with pytest.raises(DatabaseUnavailable):
            await keeper.recover_stalled()
