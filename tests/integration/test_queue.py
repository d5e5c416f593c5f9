"""Queue core against real PostgreSQL: claim order, concurrency, lifecycle, recovery, pruning."""

import asyncio
import dataclasses
import os
import re
import signal
import sys
import textwrap
from pathlib import Path
from typing import get_args

import asyncpg
import pytest

from tests.helpers import job_row
from worker.core.db import asyncpg_dsn
from worker.core.errors import DatabaseUnavailable, JobLost
from worker.models.onboarding_queue import Priority, Status
from worker.queue import store as q
from worker.queue.store import Queue
from worker.sql import queue as sql

ROOT = Path(__file__).resolve().parents[2]
RANK = {"high": 0, "normal": 1, "low": 2}


async def enqueue(conn: asyncpg.Connection, symbols: list[str], priority: str = "normal") -> None:
    await conn.execute(
        "INSERT INTO symbol_onboarding_queue (symbol, priority) SELECT s, $2 FROM unnest($1::text[]) s",
        symbols,
        priority,
    )


# --- claim ---------------------------------------------------------------------------------------


async def test_claim_order_is_high_normal_low_then_oldest_first(conn) -> None:
    await enqueue(conn, ["L1"], "low")
    await enqueue(conn, ["N1", "N2"], "normal")
    await enqueue(conn, ["H1"], "high")
    await enqueue(conn, ["L2"], "low")
    await enqueue(conn, ["H2"], "high")
    worker = Queue("w")
    claimed = [j.symbol for _ in range(6) for j in await worker.claim(conn)]
    assert claimed == ["H1", "H2", "N1", "N2", "L1", "L2"]
    assert await worker.claim(conn) == []


async def test_batch_claim_returns_claim_order_and_marks_processing(conn) -> None:
    await enqueue(conn, ["L1"], "low")
    await enqueue(conn, ["N1"], "normal")
    await enqueue(conn, ["H1"], "high")
    jobs = await Queue("w").claim(conn, 10)
    assert [j.symbol for j in jobs] == ["H1", "N1", "L1"]
    rows = await conn.fetch(
        "SELECT status, locked_by, attempts, started_at FROM symbol_onboarding_queue"
    )
    assert {(r["status"], r["locked_by"], r["attempts"]) for r in rows} == {("processing", "w", 1)}
    assert all(r["started_at"] is not None for r in rows)


@pytest.mark.parametrize(("batch", "batch_complete"), [(1, False), (7, False), (7, True)])
async def test_concurrent_claimers_take_every_job_exactly_once(
    database_url, conn, batch, batch_complete
) -> None:
    symbols = {p: [f"{p[0].upper()}{i}" for i in range(150)] for p in RANK}
    for priority, names in symbols.items():
        await enqueue(conn, names, priority)

    async def claimer(name: str) -> list[q.Job]:
        worker = Queue(name)
        mine: list[q.Job] = []
        c = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            while jobs := await worker.claim(c, batch):
                mine.extend(jobs)
                if batch_complete:
                    await worker.complete_many(c, jobs)
                    continue
                for job in jobs:
                    await worker.complete(c, job)
        finally:
            await c.close()
        return mine

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(8)))
    claimed = [job.id for jobs in results for job in jobs]
    assert len(claimed) == len(set(claimed)) == 450
    for jobs in results:  # each claimer saw the priority order
        ranks = [RANK[j.priority] for j in jobs]
        assert ranks == sorted(ranks)
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM symbol_onboarding_queue WHERE status = 'completed' AND attempts = 1"
        )
        == 450
    )


async def test_claim_uses_the_claim_index_at_a_realistic_size(conn) -> None:
    """No sort of the pending set and no sequential scan, with many pending and finished rows."""
    # Bulk load without the per-row enqueue triggers (this test's own database copy).
    await conn.execute("ALTER TABLE symbol_onboarding_queue DISABLE TRIGGER USER")
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue (symbol, priority, status, completed_at)
        SELECT 'F' || i, 'normal', CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END, now()
        FROM generate_series(1, 100000) i
        """
    )
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue (symbol, priority)
        SELECT 'P' || i, (ARRAY['high', 'normal', 'low'])[1 + i % 3] FROM generate_series(1, 20000) i
        """
    )
    await conn.execute("ALTER TABLE symbol_onboarding_queue ENABLE TRIGGER USER")
    await conn.execute("ANALYZE symbol_onboarding_queue")
    claim_select = sql.CLAIM.split("next AS (")[1].split(")\nUPDATE")[0].replace("$2", "10")
    plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + claim_select))
    assert "idx_queue_claim" in plan, plan
    # The queue-pause table (one row per queue at most, worker/control.py) is read whole.
    queue_scan = re.compile(r"Seq Scan on symbol_onboarding_queue(?!_pauses)")
    assert not queue_scan.search(plan), plan
    assert "Sort" not in plan, plan
    full = "\n".join(
        r[0]
        for r in await conn.fetch("EXPLAIN " + sql.CLAIM.replace("$1", "'w'").replace("$2", "10"))
    )
    assert not queue_scan.search(full) and "Sort" not in full, full
    # The fenced completion finds its row by key, not by filtering every processing row.
    await Queue("w").claim(conn, 500)
    await conn.execute("ANALYZE symbol_onboarding_queue")
    job_id = await conn.fetchval("SELECT id FROM symbol_onboarding_queue LIMIT 1")
    complete = sql.COMPLETE.replace("$1", f"'{job_id}'").replace("$2", "'w'").replace("$3", "now()")
    plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + complete))
    assert "Index Cond: (" in plan and "id = " in plan.split("Index Cond:")[1], plan


# --- lifecycle -----------------------------------------------------------------------------------


async def test_complete_clears_the_error(conn) -> None:
    await enqueue(conn, ["AAPL"])
    worker = Queue("w", retry_base_s=0.001, retry_max_s=0.001)
    (job,) = await worker.claim(conn)
    assert await worker.retry_later(conn, job, "timeout") == "pending"
    await asyncio.sleep(0.01)
    (job,) = await worker.claim(conn)
    await worker.complete(conn, job)
    row = await job_row(conn, "AAPL")
    assert (row["status"], row["error_message"], row["attempts"]) == ("completed", None, 2)
    assert row["completed_at"] is not None


async def test_transient_failure_backs_off_then_fails_after_max_attempts(conn) -> None:
    await enqueue(conn, ["AAPL"])
    worker = Queue("w", max_attempts=3, retry_base_s=60, retry_max_s=600)
    (job,) = await worker.claim(conn)
    assert await worker.retry_later(conn, job, "HTTP 503 from yahoo") == "pending"
    row = await job_row(conn, "AAPL")
    wait = await conn.fetchval(
        "SELECT extract(epoch FROM run_after - now()) FROM symbol_onboarding_queue"
    )
    assert 30 <= wait <= 60  # first retry: between half and all of the base delay
    assert (row["status"], row["attempts"], row["error_message"]) == (
        "pending",
        1,
        "HTTP 503 from yahoo",
    )
    assert await worker.claim(conn) == []  # not claimable during the backoff

    for attempt in (2, 3):
        await conn.execute("UPDATE symbol_onboarding_queue SET run_after = now()")
        (job,) = await worker.claim(conn)
        assert job.attempts == attempt
        status = await worker.retry_later(conn, job, f"failure {attempt}")
    assert status == "failed"
    row = await job_row(conn, "AAPL")
    assert (row["status"], row["attempts"], row["error_message"]) == ("failed", 3, "failure 3")
    assert row["completed_at"] is not None


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    delays = [q.retry_delay_s(n, base_s=10, max_s=100) for n in (1, 2, 3, 4, 5, 6)]
    for n, delay in zip((1, 2, 3, 4), delays, strict=False):
        ceiling = 10 * 2 ** (n - 1)
        assert ceiling / 2 <= delay <= ceiling
    assert all(50 <= d <= 100 for d in delays[4:])
    assert len({q.retry_delay_s(3, 10, 100) for _ in range(20)}) > 1  # jittered


async def test_permanent_failure_fails_at_once(conn) -> None:
    await enqueue(conn, ["ZZZZ"])
    worker = Queue("w")
    (job,) = await worker.claim(conn)
    await worker.fail(conn, job, "unknown symbol ZZZZ (yahoo: 404 Not Found)")
    row = await job_row(conn, "ZZZZ")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["error_message"] == "unknown symbol ZZZZ (yahoo: 404 Not Found)"


async def test_release_hands_back_without_spending_an_attempt(conn) -> None:
    await enqueue(conn, ["AAPL"])
    worker = Queue("w")
    (job,) = await worker.claim(conn)
    await worker.release(conn, job, delay_s=120, reason="yahoo paused: rate limited")
    row = await job_row(conn, "AAPL")
    assert (row["status"], row["attempts"], row["locked_by"]) == ("pending", 0, None)
    assert row["error_message"] == "yahoo paused: rate limited"
    assert await worker.claim(conn) == []
    await conn.execute("UPDATE symbol_onboarding_queue SET run_after = now()")
    (job,) = await worker.claim(conn)
    assert job.attempts == 1


# --- crash recovery ------------------------------------------------------------------------------


async def test_stalled_job_is_recovered_and_the_old_owner_is_fenced_out(conn) -> None:
    await enqueue(conn, ["AAPL"])
    dead, alive = Queue("dead"), Queue("alive")
    (job,) = await dead.claim(conn)
    await conn.execute("UPDATE symbol_onboarding_queue SET heartbeat_at = now() - interval '3 s'")

    recovered = await alive.recover_stalled(conn, stall_timeout_s=2)
    assert [(r.symbol, r.status) for r in recovered] == [("AAPL", "pending")]
    assert (
        "worker dead stopped responding during attempt 1"
        in (await job_row(conn, "AAPL"))["error_message"]
    )

    (again,) = await alive.claim(conn)
    assert again.id == job.id and again.attempts == 2
    with pytest.raises(JobLost):
        await dead.complete(conn, job)
    with pytest.raises(JobLost, match=str(job.id)):
        await dead.complete_many(conn, [job])
    await alive.complete(conn, again)
    assert (await job_row(conn, "AAPL"))["status"] == "completed"


async def test_a_live_job_is_never_stolen_however_long_it_runs(conn) -> None:
    await enqueue(conn, ["SLOW"])
    worker = Queue("slow")
    (job,) = await worker.claim(conn)
    # Started long ago, but its worker keeps heartbeating.
    started = await conn.fetchval(
        "UPDATE symbol_onboarding_queue SET started_at = now() - interval '6 hours'"
        " RETURNING started_at"
    )
    job = dataclasses.replace(job, started_at=started)
    assert await worker.heartbeat(conn, [job.id]) == 1
    assert await Queue("other").recover_stalled(conn, stall_timeout_s=2) == []
    await worker.complete(conn, job)


async def test_recovery_of_the_last_attempt_fails_the_job(conn) -> None:
    await enqueue(conn, ["BOOM"])
    worker = Queue("w", max_attempts=1)
    await worker.claim(conn)
    await conn.execute(
        "UPDATE symbol_onboarding_queue SET heartbeat_at = now() - interval '1 hour'"
    )
    (recovered,) = await worker.recover_stalled(conn, stall_timeout_s=2)
    assert recovered.status == "failed"
    assert (await job_row(conn, "BOOM"))["completed_at"] is not None


async def test_terminated_connection_mid_job_is_recovered_and_completed_once(
    database_url, conn
) -> None:
    await enqueue(conn, ["AAPL"])
    victim = await asyncpg.connect(asyncpg_dsn(database_url))
    dead = Queue("victim")
    tx = victim.transaction()
    await tx.start()
    (job,) = await dead.claim(victim)  # claimed and committed below, then the job "runs"
    await tx.commit()
    pid = victim.get_server_pid()
    # pg_terminate_backend only signals: wait until the backend is gone, so that the statement
    # below cannot reach it first on a loaded machine.
    assert await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    with pytest.raises(DatabaseUnavailable):  # translated where it enters the queue
        await dead.complete(victim, job)

    await asyncio.sleep(1.1)
    survivor = Queue("survivor")
    assert [r.symbol for r in await survivor.recover_stalled(conn, stall_timeout_s=1)] == ["AAPL"]
    (again,) = await survivor.claim(conn)
    await survivor.complete(conn, again)
    rows = await conn.fetch("SELECT status FROM symbol_onboarding_queue")
    assert [r["status"] for r in rows] == ["completed"]


CLAIM_AND_HANG = textwrap.dedent(
    """
    import asyncio, sys
    import asyncpg
    from worker.queue.store import Queue

    async def main():
        conn = await asyncpg.connect(sys.argv[1])
        jobs = await Queue("doomed").claim(conn)
        print(jobs[0].symbol, flush=True)
        while True:  # heartbeat like a live worker until killed
            await Queue("doomed").heartbeat(conn, [jobs[0].id])
            await asyncio.sleep(0.2)

    asyncio.run(main())
    """
)


async def test_sigkilled_worker_process_job_is_recovered_and_completed_once(
    database_url, conn
) -> None:
    await enqueue(conn, ["MSFT"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLAIM_AND_HANG,
        asyncpg_dsn(database_url),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == "MSFT"
        survivor = Queue("survivor")
        await asyncio.sleep(1.2)
        # Alive and heartbeating: not stolen, even with a 1 s stall timeout.
        assert await survivor.recover_stalled(conn, stall_timeout_s=1) == []
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        deadline = asyncio.get_running_loop().time() + 10
        while not (recovered := await survivor.recover_stalled(conn, stall_timeout_s=1)):
            assert asyncio.get_running_loop().time() < deadline, "job never recovered"
            await asyncio.sleep(0.2)
        assert [r.symbol for r in recovered] == ["MSFT"]
        (job,) = await survivor.claim(conn)
        await survivor.complete(conn, job)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    row = await job_row(conn, "MSFT")
    assert (row["status"], row["attempts"], row["locked_by"]) == ("completed", 2, "survivor")
    assert await conn.fetchval("SELECT count(*) FROM symbol_onboarding_queue") == 1


# --- pruning and operator retry ------------------------------------------------------------------


async def test_prune_deletes_old_finished_rows_in_bounded_batches(conn) -> None:
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue (symbol, status, completed_at)
        SELECT 'C' || i, 'completed', now() - interval '10 days' FROM generate_series(1, 25) i
        UNION ALL SELECT 'R' || i, 'completed', now() - interval '1 day' FROM generate_series(1, 5) i
        UNION ALL SELECT 'F' || i, 'failed', now() - interval '10 days' FROM generate_series(1, 4) i
        UNION ALL SELECT 'G' || i, 'failed', now() - interval '40 days' FROM generate_series(1, 3) i
        """
    )
    await enqueue(conn, ["PENDING"])
    assert await q.prune(conn, "completed", older_than_days=7, batch_size=10) == 10
    assert await q.prune(conn, "completed", older_than_days=7, batch_size=10) == 10
    assert await q.prune(conn, "completed", older_than_days=7, batch_size=10) == 5
    assert await q.prune(conn, "completed", older_than_days=7, batch_size=10) == 0
    assert await q.prune(conn, "failed", older_than_days=30, batch_size=10) == 3
    left = await conn.fetch(
        "SELECT left(symbol, 1) AS kind, count(*) FROM symbol_onboarding_queue GROUP BY 1"
    )
    assert dict(map(tuple, left)) == {"R": 5, "F": 4, "P": 1}


async def test_operator_retry_of_failed_jobs(conn) -> None:
    await enqueue(conn, ["A", "B", "C"])
    worker = Queue("w", max_attempts=1)
    jobs = {j.symbol: j for j in await worker.claim(conn, 3)}
    for job in jobs.values():
        await worker.fail(conn, job, "boom")
    await enqueue(conn, ["C"])  # C already has a new live job: retrying it must not duplicate

    assert await q.retry_job(conn, jobs["A"].id) is True
    assert await q.retry_job(conn, jobs["A"].id) is False  # no longer failed
    assert await q.retry_job(conn, jobs["C"].id) is False
    assert await q.retry_failed(conn) == 1  # B only
    rows = {
        r["symbol"]: r
        for r in await conn.fetch(
            "SELECT symbol, status, attempts, error_message FROM symbol_onboarding_queue WHERE status = 'pending'"
        )
    }
    assert sorted(rows) == ["A", "B", "C"]
    assert rows["A"]["attempts"] == 0 and rows["A"]["error_message"] == "boom"
    # Runnable order: C's new job was enqueued before A and B were retried.
    assert [j.symbol for j in await Queue("w2").claim(conn, 3)] == ["C", "A", "B"]


async def test_a_stale_execution_cannot_end_the_same_workers_next_claim(conn) -> None:
    """Fencing is per claim: recovered and re-claimed by the same worker, the old run is lost."""
    await enqueue(conn, ["AAPL"])
    worker = Queue("w")
    (first,) = await worker.claim(conn)
    await conn.execute("UPDATE symbol_onboarding_queue SET heartbeat_at = now() - interval '1 min'")
    await worker.recover_stalled(conn, stall_timeout_s=2)
    (second,) = await worker.claim(conn)
    assert second.id == first.id and second.started_at != first.started_at
    for end in (worker.complete, worker.fail, worker.retry_later, worker.release):
        args = ("boom",) if end in (worker.fail, worker.retry_later) else ()
        with pytest.raises(JobLost):
            await end(conn, first, *args)
    await worker.complete(conn, second)


async def test_heartbeat_skips_a_row_locked_by_an_open_enqueue(database_url, conn) -> None:
    await enqueue(conn, ["AAPL", "MSFT"])
    worker = Queue("w")
    jobs = await worker.claim(conn, 2)
    backend = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        tx = backend.transaction()
        await tx.start()
        await backend.fetchval("SELECT enqueue_symbol_onboarding('AAPL', 'high')")  # row lock
        beat = await asyncio.wait_for(worker.heartbeat(conn, [j.id for j in jobs]), 5)
        assert beat == 1  # MSFT now; AAPL next time, without waiting for the backend
        await tx.rollback()
    finally:
        await backend.close()


async def test_retry_racing_an_enqueue_returns_false_instead_of_raising(conn) -> None:
    await enqueue(conn, ["AAPL"])
    worker = Queue("w", max_attempts=1)
    (job,) = await worker.claim(conn)
    await worker.fail(conn, job, "boom")
    await conn.execute("UPDATE symbol_universe SET status = 'error' WHERE symbol = 'AAPL'")
    # The race, made deterministic: a live job appears between the check and the update.
    await conn.execute(
        "CREATE FUNCTION sneak() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO symbol_onboarding_queue (symbol) VALUES (NEW.symbol); RETURN NEW; END $$"
    )
    await conn.execute(
        "CREATE TRIGGER sneak BEFORE UPDATE OF status ON symbol_onboarding_queue"
        " FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION sneak()"
    )
    assert await q.retry_job(conn, job.id) is False
    assert await q.retry_failed(conn) == 0
    await conn.execute("DROP TRIGGER sneak ON symbol_onboarding_queue")
    await conn.execute("DELETE FROM symbol_onboarding_queue WHERE status = 'pending'")
    assert await q.retry_job(conn, job.id) is True
    assert (
        await conn.fetchval("SELECT status FROM symbol_universe WHERE symbol = 'AAPL'") == "pending"
    )


async def test_no_recovery_right_after_a_server_start(conn) -> None:
    """After a restart, live workers get one stall timeout to heartbeat again first."""
    await enqueue(conn, ["AAPL"])
    await Queue("w").claim(conn)
    await conn.execute("UPDATE symbol_onboarding_queue SET heartbeat_at = now() - interval '1 day'")
    uptime_s = await conn.fetchval(
        "SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8"
    )
    # A stall timeout longer than the server has been up: as if it had just restarted.
    assert await Queue("x").recover_stalled(conn, stall_timeout_s=uptime_s + 3600) == []
    assert [r.symbol for r in await Queue("x").recover_stalled(conn, stall_timeout_s=1)] == ["AAPL"]


@pytest.mark.parametrize("column", ["status", "priority"])
async def test_status_and_priority_types_match_the_database(conn, column: str) -> None:
    """The Literal types the code uses allow exactly what the table's CHECK constraints allow."""
    definition = await conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'symbol_onboarding_queue'::regclass AND contype = 'c' "
        "AND pg_get_constraintdef(oid) LIKE $1",
        f"%({column})::text%",
    )
    allowed = set(re.findall(r"'(\w+)'::", definition))
    expected = {"status": get_args(Status), "priority": get_args(Priority)}[column]
    assert allowed == set(expected), definition
