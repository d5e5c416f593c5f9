"""Housekeeping against real PostgreSQL: recovery everywhere, pruning by one worker at a time."""

import asyncpg

from worker.core.db import asyncpg_dsn
from worker.core.settings import Settings
from worker.queue.housekeeping import Housekeeper
from worker.queue.store import Queue
from worker.sql import queue as sql


def settings(**overrides: object) -> Settings:
    base = {"prune_batch_size": 10, "stall_timeout_s": 2.0, "housekeeping_interval_s": 0.0}
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


async def test_a_round_recovers_stalled_jobs_and_prunes(database_pool, conn) -> None:
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue (symbol, status, completed_at)
        SELECT 'C' || i, 'completed', now() - interval '8 days' FROM generate_series(1, 35) i
        """
    )
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('STALL')")
    await Queue("dead").claim(conn)
    await conn.execute("UPDATE symbol_onboarding_queue SET heartbeat_at = now() - interval '1 min'")
    swept: list[int] = []

    async def extra(db: asyncpg.Connection, batch_size: int) -> int:
        swept.append(batch_size)
        return 3

    keeper = Housekeeper(settings(), database_pool, Queue("keeper"), extra_sweeps={"extra": extra})
    await keeper()
    assert (
        await conn.fetchval("SELECT status FROM symbol_onboarding_queue WHERE symbol = 'STALL'")
        == "pending"
    )
    # Bounded: at most max_batches (10 rows each) per round, all 35 here.
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM symbol_onboarding_queue WHERE status = 'completed'"
        )
        == 0
    )
    assert swept == [10]


async def test_rounds_are_bounded_per_call(database_pool, conn) -> None:
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue (symbol, status, completed_at)
        SELECT 'C' || i, 'completed', now() - interval '8 days' FROM generate_series(1, 35) i
        """
    )
    keeper = Housekeeper(settings(), database_pool, Queue("keeper"), max_batches=2)
    result = await keeper.prune(max_batches=2)
    assert result is not None and result.completed == 20
    assert (await keeper.prune(max_batches=None)).completed == 15


async def test_only_one_worker_prunes_at_a_time(database_pool, conn, database_url) -> None:
    holder = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with holder.transaction():  # another worker in the middle of a batch
            assert await holder.fetchval(sql.TRY_LOCK_HOUSEKEEPING, sql.HOUSEKEEPING_LOCK_KEY)
            assert await Housekeeper(settings(), database_pool, Queue("second")).prune() is None
    finally:
        await holder.close()
    assert await Housekeeper(settings(), database_pool, Queue("second")).prune() is not None


async def test_pruning_waits_for_its_interval(database_pool, conn) -> None:
    keeper = Housekeeper(settings(housekeeping_interval_s=3600.0), database_pool, Queue("keeper"))
    await keeper()  # first round prunes
    await conn.execute(
        "INSERT INTO symbol_onboarding_queue (symbol, status, completed_at)"
        " VALUES ('OLD', 'completed', now() - interval '8 days')"
    )
    await keeper()  # within the interval: recovery only
    assert await conn.fetchval("SELECT count(*) FROM symbol_onboarding_queue") == 1


async def test_fractional_days_are_not_truncated(database_pool, conn) -> None:
    await conn.execute(
        "INSERT INTO symbol_onboarding_queue (symbol, status, completed_at) VALUES"
        " ('FRESH', 'completed', now() - interval '1 second'),"
        " ('HALFDAY', 'completed', now() - interval '13 hours')"
    )
    keeper = Housekeeper(settings(prune_completed_days=0.5), database_pool, Queue("keeper"))
    assert (await keeper.prune()).completed == 1
    assert await conn.fetchval("SELECT symbol FROM symbol_onboarding_queue") == "FRESH"
    huge = Housekeeper(settings(prune_failed_days=36500.0), database_pool, Queue("keeper"))
    assert (await huge.prune()).failed == 0  # no overflow


async def test_a_failed_last_attempt_marks_a_pending_symbol_error(database_pool, conn) -> None:
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('GONE')")
    await Queue("dead", max_attempts=1).claim(conn)
    await conn.execute("UPDATE symbol_onboarding_queue SET heartbeat_at = now() - interval '1 min'")
    keeper = Housekeeper(settings(max_attempts=1), database_pool, Queue("keeper", max_attempts=1))
    assert await keeper.recover_stalled() == 1
    assert (
        await conn.fetchval("SELECT status FROM symbol_universe WHERE symbol = 'GONE'") == "error"
    )
