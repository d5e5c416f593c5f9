"""The runner against real PostgreSQL, with a small handler that records what it ran.

(The onboarding job itself is tested in test_onboarding*.py; here the job only completes.)
"""

import asyncio
import uuid
from dataclasses import dataclass, field

import asyncpg

from tests.helpers import statuses, wait_until
from worker.core.db import asyncpg_dsn
from worker.core.settings import Settings
from worker.queue.runner import Runner
from worker.queue.store import Job, Queue


@dataclass(frozen=True)
class Result:
    outcome: str
    rows: int | None = None
    error: str | None = None


@dataclass
class RecordingHandler:
    queue: Queue
    pool: asyncpg.Pool
    delay_s: float = 0.0
    ran: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    max_in_flight: int = 0

    async def run(self, job: Job) -> Result:
        self.ran.append(job.symbol)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.started.set()
        try:
            await asyncio.sleep(self.delay_s)
            await self.queue.complete(self.pool, job)
        finally:
            self.in_flight -= 1
        return Result("completed", rows=0)


def make_settings(**overrides: object) -> Settings:
    base = {
        "concurrency": 2,
        "poll_interval_s": 30.0,  # long: wake-ups in these tests must come from NOTIFY
        "heartbeat_interval_s": 0.2,
        "stall_timeout_s": 1.0,
        "shutdown_grace_s": 5.0,
        "reconnect_max_wait_s": 0.5,
    }
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


def runner_for(pool, database_url, *, delay_s=0.0, burst=False, **overrides):
    settings = make_settings(**overrides)
    queue = Queue(f"test-{uuid.uuid4().hex[:6]}")
    handler = RecordingHandler(queue, pool, delay_s=delay_s)
    runner = Runner(
        settings,
        pool,
        queue,
        handler,
        claim_dsn=asyncpg_dsn(database_url),
        listen_dsn=asyncpg_dsn(database_url),
        burst=burst,
    )
    return runner, handler


async def test_plain_insert_wakes_an_idle_worker(database_pool, database_url, conn) -> None:
    runner, _handler = runner_for(database_pool, database_url)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.listening.wait(), 10)
    await asyncio.sleep(0.1)  # idle: waiting on NOTIFY, next poll 30 s away
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('AAPL')")
    await wait_until(lambda: _status_is(conn, "AAPL", "completed"), timeout_s=5)
    runner.request_stop()
    await asyncio.wait_for(task, 10)


async def _status_is(conn, symbol: str, status: str) -> bool:
    return (await statuses(conn)).get(symbol) == status


async def test_burst_runs_everything_runnable_then_exits(database_pool, database_url, conn) -> None:
    await conn.execute(
        "INSERT INTO symbol_onboarding_queue (symbol) SELECT 'S' || i FROM generate_series(1, 25) i"
    )
    await conn.execute(
        "INSERT INTO symbol_onboarding_queue (symbol, run_after) VALUES ('LATER', now() + interval '1 hour')"
    )
    runner, handler = runner_for(database_pool, database_url, burst=True, concurrency=3)
    await asyncio.wait_for(runner.run(), 30)
    assert sorted(handler.ran) == sorted(f"S{i}" for i in range(1, 26))
    assert 1 < handler.max_in_flight <= 3
    assert (await statuses(conn))["LATER"] == "pending"


async def test_graceful_stop_lets_in_flight_jobs_finish(database_pool, database_url, conn) -> None:
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('SLOW')")
    runner, handler = runner_for(database_pool, database_url, delay_s=0.5)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(handler.started.wait(), 10)
    runner.request_stop()
    await asyncio.wait_for(task, 10)
    assert await statuses(conn) == {"SLOW": "completed"}


async def test_grace_period_expiry_hands_unfinished_jobs_back(
    database_pool, database_url, conn
) -> None:
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('STUCK')")
    runner, handler = runner_for(database_pool, database_url, delay_s=60, shutdown_grace_s=0.3)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(handler.started.wait(), 10)
    runner.request_stop()
    await asyncio.wait_for(task, 10)
    row = await conn.fetchrow("SELECT status, attempts, locked_by FROM symbol_onboarding_queue")
    assert tuple(row) == ("pending", 0, None)


async def test_second_stop_request_aborts_at_once(database_pool, database_url, conn) -> None:
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('STUCK')")
    runner, handler = runner_for(database_pool, database_url, delay_s=60, shutdown_grace_s=60)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(handler.started.wait(), 10)
    runner.request_stop()
    await asyncio.sleep(0.2)
    assert not task.done()  # waiting out the grace period
    runner.request_stop()
    await asyncio.wait_for(task, 5)
    assert await statuses(conn) == {"STUCK": "pending"}


async def test_heartbeats_keep_a_long_job_and_recovery_takes_an_abandoned_one(
    database_pool, database_url, conn
) -> None:
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('LONG')")
    runner, handler = runner_for(database_pool, database_url, delay_s=2.0)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(handler.started.wait(), 10)
    for _ in range(4):  # twice the 1 s stall timeout: heartbeats keep it
        await asyncio.sleep(0.5)
        assert await Queue("thief").recover_stalled(conn, stall_timeout_s=1.0) == []
    await wait_until(lambda: _status_is(conn, "LONG", "completed"))
    runner.request_stop()
    await asyncio.wait_for(task, 10)


async def test_listener_and_pool_survive_terminated_backends(
    database_pool, database_url, conn
) -> None:
    runner, _handler = runner_for(database_pool, database_url)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.listening.wait(), 10)
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    await wait_until(lambda: _listening_again(runner), timeout_s=10)
    assert runner.listener_connects == 2
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('AFTER')")
    await wait_until(lambda: _status_is(conn, "AFTER", "completed"), timeout_s=10)
    runner.request_stop()
    await asyncio.wait_for(task, 10)


async def _listening_again(runner: Runner) -> bool:
    await asyncio.sleep(0.05)
    return runner.listening.is_set() and runner.listener_connects >= 2


async def test_poll_only_mode_without_listen(database_pool, database_url, conn) -> None:
    """WORKER_LISTEN=false (behind a transaction pooler): polling alone finds the work."""
    settings = make_settings(poll_interval_s=0.2)
    queue = Queue("poller")
    handler = RecordingHandler(queue, database_pool)
    runner = Runner(settings, database_pool, queue, handler, claim_dsn=asyncpg_dsn(database_url))
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.3)
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('POLLED')")
    await wait_until(lambda: _status_is(conn, "POLLED", "completed"), timeout_s=5)
    assert runner.listener_connects == 0
    runner.request_stop()
    await asyncio.wait_for(task, 10)


async def test_background_failures_do_not_stop_recovery(database_pool, database_url, conn) -> None:
    rounds: list[int] = []

    async def flaky_housekeeping() -> None:
        rounds.append(len(rounds))
        if len(rounds) <= 2:
            raise ValueError("numeric field overflow")  # not a connection error

    settings = make_settings(stall_timeout_s=0.6, heartbeat_interval_s=0.1)
    queue = Queue("bg")
    handler = RecordingHandler(queue, database_pool)
    runner = Runner(
        settings,
        database_pool,
        queue,
        handler,
        claim_dsn=asyncpg_dsn(database_url),
        housekeeping=flaky_housekeeping,
    )
    task = asyncio.create_task(runner.run())
    await wait_until(lambda: _true_when(len(rounds) >= 4), timeout_s=5)
    assert not task.done()
    runner.request_stop()
    await asyncio.wait_for(task, 10)


async def _true_when(value: bool) -> bool:
    return value


async def test_burst_waits_for_a_runnable_job_locked_elsewhere(
    database_pool, database_url, conn
) -> None:
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('IBM')")
    backend = await asyncpg.connect(asyncpg_dsn(database_url))
    tx = backend.transaction()
    await tx.start()
    await backend.fetchval("SELECT enqueue_symbol_onboarding('IBM', 'high')")  # holds the row
    runner, handler = runner_for(database_pool, database_url, burst=True, poll_interval_s=0.1)
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.5)
    assert not task.done()  # the claim skips the locked row, but burst must not call it done
    await tx.commit()
    await backend.close()
    await asyncio.wait_for(task, 10)
    assert handler.ran == ["IBM"]


@dataclass
class CrashingHandler:
    async def run(self, job: Job) -> Result:
        raise KeyError("a bug in the handler")


async def test_a_handler_bug_spends_an_attempt_and_keeps_the_job(
    database_pool, database_url, conn
) -> None:
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('BUG')")
    queue = Queue("crash", retry_base_s=60)
    runner = Runner(
        make_settings(),
        database_pool,
        queue,
        CrashingHandler(),
        claim_dsn=asyncpg_dsn(database_url),
        burst=True,
    )
    await asyncio.wait_for(runner.run(), 10)
    row = await conn.fetchrow("SELECT status, attempts, error_message FROM symbol_onboarding_queue")
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "KeyError" in row["error_message"] and "a bug in the handler" in row["error_message"]
