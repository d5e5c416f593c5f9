"""The daily refresh schedule with real worker processes: three workers started just past the
scheduled time enqueue exactly one batch (the catch-up of a worker that starts after the time),
and a restart the same day enqueues no second one."""

import asyncio
import signal
from datetime import UTC, datetime, timedelta

import pytest

from tests.acceptance.conftest import start_worker, worker_env
from tests.helpers import wait_until_value

pytestmark = pytest.mark.slow

SYMBOLS = [f"H{i}" for i in range(20)]


async def test_three_workers_enqueue_one_batch_and_a_restart_none(database_url, conn) -> None:
    # Rows the host inserted itself: no status given (so 'active'), no prices.
    await conn.execute("INSERT INTO symbol_universe (symbol) SELECT unnest($1::text[])", SYMBOLS)
    # The clock is the real one; the schedule is set a minute before it (in UTC), so the due
    # day is whichever session that is: the outcome does not depend on today's date.
    just_past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%H:%M")
    env = worker_env(
        database_url,
        PRICE_SOURCE="synthetic",
        WORKER_HOUSEKEEPING_INTERVAL_S="0.3",
        REFRESH_SCHEDULE_TIME=just_past,
        REFRESH_SCHEDULE_TIMEZONE="UTC",
    )
    workers = [await start_worker(env) for _ in range(3)]
    try:
        await wait_until_value(
            conn,
            "SELECT count(*) FROM symbol_onboarding_queue"
            " WHERE kind = 'refresh' AND status = 'completed'",
            len(SYMBOLS),
        )
        await asyncio.sleep(1.5)  # several more housekeeping rounds in every worker
        for w in workers:
            w.proc.send_signal(signal.SIGTERM)
        assert [await w.finish() for w in workers] == [0, 0, 0]
    finally:
        for w in workers:
            await w.kill()
    runs = await conn.fetch("SELECT jobs, worker_id FROM refresh_schedule_runs")
    assert [r["jobs"] for r in runs] == [len(SYMBOLS)]
    enqueued = [e for w in workers for e in w.events if e.get("event") == "refresh_batch_enqueued"]
    assert len(enqueued) == 1 and enqueued[0]["jobs"] == len(SYMBOLS)
    # The host's symbols got a full onboarding through their refresh job.
    assert await conn.fetchval("SELECT count(DISTINCT symbol) FROM symbol_prices_daily") == len(
        SYMBOLS
    )

    # A restart the same day: the day's row is there, so no second batch.
    await conn.execute("UPDATE symbol_universe SET last_price_date = last_price_date - 30")
    restarted = await start_worker(env)
    try:
        await restarted.wait_for("worker_started")
        await asyncio.sleep(1.5)
        restarted.proc.send_signal(signal.SIGTERM)
        assert await restarted.finish() == 0
    finally:
        await restarted.kill()
    assert await conn.fetchval("SELECT count(*) FROM refresh_schedule_runs") == 1
    assert await conn.fetchval(
        "SELECT count(*) FROM symbol_onboarding_queue WHERE kind = 'refresh'"
    ) == len(SYMBOLS)
