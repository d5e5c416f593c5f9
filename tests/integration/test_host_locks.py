"""A host lock on its own table (issue 22.2): a lock wait is not the job's fault.

The host's migration holds ACCESS EXCLUSIVE on symbol_universe for longer than the command
timeout. Every statement that waits for it ends after DATABASE_LOCK_TIMEOUT_S (55P03): the job
goes back with a delay and no attempt spent, housekeeping warns once and tries again next round,
and everything completes once the lock is released. Directly (the lock_timeout startup
parameter) and behind PgBouncer in transaction pooling (SET LOCAL in each transaction).
"""

import asyncio

import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.integration.test_outages import enqueue, synthetic_settings
from worker.core.db import asyncpg_dsn, bounded_lock_waits, connect_options
from worker.core.errors import LockWaitTimeout, translate
from worker.core.settings import Settings, SettingsError
from worker.jobs.onboarding import open_onboarder
from worker.queue.housekeeping import Housekeeper
from worker.queue.runner import Runner
from worker.queue.store import Queue

pytestmark = pytest.mark.slow

SYMBOLS = ["HOLD1", "HOLD2", "HOLD3"]
HOLD_S = 3.0  # longer than the command timeout below


@pytest.fixture(params=["direct", "pgbouncer"])
def worker_url(request, database_url: str) -> tuple[str, int]:
    """The URL the worker uses and its statement cache size (0 behind the pooler)."""
    if request.param == "direct":
        return database_url, 100
    bouncer = request.getfixturevalue("pgbouncer")
    return bouncer.url(database_url), 0


async def test_a_host_lock_spends_no_attempt_and_housekeeping_warns_once(worker_url, conn) -> None:
    url, cache_size = worker_url
    for symbol in SYMBOLS:
        await enqueue(conn, symbol)
    settings = synthetic_settings(
        concurrency=3,
        max_attempts=1,  # a spent attempt would fail the job: nothing may fail
        command_timeout_s=HOLD_S - 1,
        lock_timeout_s=0.3,
        retry_base_s=0.2,
        statement_cache_size=cache_size,
        stall_timeout_s=1.5,
    )
    queue = Queue("locked", max_attempts=1)
    holder = conn.transaction()
    await holder.start()
    await conn.execute("LOCK TABLE symbol_universe IN ACCESS EXCLUSIVE MODE")
    released = False
    with capture_logs() as events:
        async with (
            asyncpg.create_pool(
                asyncpg_dsn(url), min_size=1, max_size=5, **connect_options(settings)
            ) as pool,
            open_onboarder(settings, queue, pool) as onboarder,
        ):
            runner = Runner(
                settings,
                pool,
                queue,
                onboarder,
                claim_dsn=asyncpg_dsn(url),
                housekeeping=Housekeeper(settings, pool, queue),
            )
            task = asyncio.create_task(runner.run())
            try:
                await asyncio.sleep(HOLD_S)
                await holder.rollback()
                released = True
                for _ in range(200):
                    done = await conn.fetchval(
                        "SELECT count(*) FROM symbol_onboarding_queue WHERE status = 'completed'"
                    )
                    if done == len(SYMBOLS):
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)  # a housekeeping round after the release
            finally:
                if not released:
                    await holder.rollback()
                runner.request_stop()
                await asyncio.wait_for(task, 10)
    rows = await conn.fetch(
        "SELECT symbol, status, attempts FROM symbol_onboarding_queue ORDER BY symbol"
    )
    assert [tuple(r) for r in rows] == [(s, "completed", 1) for s in SYMBOLS]
    statuses = await conn.fetch(
        "SELECT status FROM symbol_universe WHERE symbol = ANY($1)", SYMBOLS
    )
    assert {r["status"] for r in statuses} == {"active"}
    # The lock was met (jobs deferred, not timed out) and nothing was logged as an error.
    deferred = [e for e in events if e["event"] == "job_finished" and e["outcome"] == "deferred"]
    assert deferred and all("lock" in e["error"] for e in deferred), deferred
    assert not [e for e in events if e["log_level"] in ("error", "critical")], [
        e for e in events if e["log_level"] in ("error", "critical")
    ]
    failed = [e for e in events if e["event"] == "housekeeping_failed"]
    assert len(failed) == 1 and failed[0]["lock_wait"] is True, failed
    assert failed[0]["log_level"] == "warning"
    assert [e for e in events if e["event"] == "housekeeping_resumed"]


async def test_bounded_lock_waits_end_in_a_lock_wait_timeout(database_url, conn) -> None:
    """Without the startup parameter (as behind a pooler), the transaction sets it itself."""
    await conn.execute("INSERT INTO symbol_universe (symbol) VALUES ('HELD')")
    holder = conn.transaction()
    await holder.start()
    await conn.execute("LOCK TABLE symbol_universe IN ACCESS EXCLUSIVE MODE")
    other = await asyncpg.connect(asyncpg_dsn(database_url), command_timeout=5)
    try:
        with pytest.raises(asyncpg.exceptions.LockNotAvailableError) as caught:
            async with bounded_lock_waits(other, 0.2):
                await other.execute("SELECT 1 FROM symbol_universe")
        assert isinstance(translate(caught.value), LockWaitTimeout)
        await holder.rollback()
        # SET LOCAL ended with the transaction: the session's own setting is back.
        assert await other.fetchval("SHOW lock_timeout") == "0"
    finally:
        await other.close()


def test_the_lock_timeout_must_be_shorter_than_the_command_timeout() -> None:
    env = {"DATABASE_LOCK_TIMEOUT_S": "60", "DATABASE_COMMAND_TIMEOUT_S": "60"}
    with pytest.raises(
        SettingsError,
        match="DATABASE_LOCK_TIMEOUT_S: expected less than DATABASE_COMMAND_TIMEOUT_S",
    ):
        Settings.from_env(env)
    assert Settings.from_env({}).lock_timeout_s < Settings.from_env({}).command_timeout_s
