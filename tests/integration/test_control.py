"""Cancel, pause and resume at the SQL level (worker/control.py, worker/sql/control.py)."""

import asyncio
import uuid

import asyncpg
import pytest

from worker.core.db import asyncpg_dsn
from worker.core.errors import JobLost
from worker.queue import control
from worker.queue.store import Queue
from worker.sql import prices as prices_sql


async def enqueue(conn: asyncpg.Connection, symbol: str):
    return await conn.fetchval("SELECT enqueue_symbol_onboarding($1)", symbol)


async def row(conn: asyncpg.Connection, job_id):
    return await conn.fetchrow("SELECT * FROM symbol_onboarding_queue WHERE id = $1", job_id)


async def test_cancel_of_a_pending_job_ends_it_and_marks_its_pending_symbol_error(conn) -> None:
    job_id = await enqueue(conn, "AAPL")
    assert await conn.fetchval("SELECT cancel_symbol_onboarding($1, 'alice')", job_id) == (
        "cancelled"
    )
    job = await row(conn, job_id)
    assert job["status"] == "cancelled" and job["cancel_requested_by"] == "alice"
    assert job["completed_at"] is not None and job["error_message"] == "cancelled by alice"
    universe = await conn.fetchval("SELECT status FROM symbol_universe WHERE symbol = 'AAPL'")
    assert universe == "error"  # nothing will onboard it: the daily refresh skips it
    # Again: it says so; an unknown id: not found. A claim finds nothing to run.
    assert await control.cancel(conn, job_id, "bob") == "already cancelled"
    assert await control.cancel(conn, uuid.UUID(int=1), "bob") == "not found"
    assert await Queue("w").claim(conn, 5) == []
    # A new enqueue requests the symbol again: a new job, pending.
    again = await enqueue(conn, "AAPL")
    assert again != job_id and (await row(conn, again))["status"] == "pending"


async def test_cancel_of_an_active_symbols_job_keeps_the_symbol_active(conn) -> None:
    await conn.execute(
        "INSERT INTO symbol_universe (symbol, status, added_source) VALUES ('MSFT', 'active', 'x')"
    )
    job_id = await enqueue(conn, "MSFT")
    assert await control.cancel(conn, job_id, "alice") == "cancelled"
    assert await conn.fetchval("SELECT status FROM symbol_universe WHERE symbol = 'MSFT'") == (
        "active"
    )


async def test_running_job_cancel_is_cooperative_and_fences_completion(conn) -> None:
    job_id = await enqueue(conn, "IBM")
    queue = Queue("w1")
    (job,) = await queue.claim(conn, 1)
    assert await control.cancel(conn, job_id, "alice") == "cancelling"
    assert (await row(conn, job_id))["status"] == "processing"
    assert await control.cancel_requested(conn, [job_id], "w1") == {job_id}
    assert await control.cancel_requested(conn, [job_id], "other") == set()
    # Once the cancel has landed the job can neither complete nor go back to pending.
    with pytest.raises(JobLost):
        await queue.complete(conn, job)
    with pytest.raises(JobLost):
        await queue.release(conn, job)
    with pytest.raises(JobLost):
        await queue.retry_later(conn, job, "boom")
    assert not await control.finish_cancelled(conn, job.id, "other", job.started_at)
    assert await control.finish_cancelled(conn, job.id, "w1", job.started_at)
    ended = await row(conn, job_id)
    assert ended["status"] == "cancelled" and ended["attempts"] == 0
    assert ended["error_message"] == "cancelled by alice while running"
    assert await conn.fetchval("SELECT status FROM symbol_universe WHERE symbol = 'IBM'") == (
        "error"
    )


async def test_a_completion_that_commits_first_stays_completed(conn, database_url) -> None:
    """The cancel waits for the job's row lock: a completion in flight wins, and it says so."""
    job_id = await enqueue(conn, "KO")
    queue = Queue("w1")
    (job,) = await queue.claim(conn, 1)
    other = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        tx = conn.transaction()
        await tx.start()
        await queue.complete(conn, job)  # holds the row lock until COMMIT
        cancelling = asyncio.create_task(control.cancel(other, job_id, "alice"))
        await asyncio.sleep(0.3)
        assert not cancelling.done()  # waits for the completion to commit or roll back
        await tx.commit()
        assert await cancelling == "already completed"
    finally:
        await other.close()
    assert (await row(conn, job_id))["status"] == "completed"


async def test_a_stalled_job_with_a_cancel_is_recovered_as_cancelled(conn) -> None:
    job_id = await enqueue(conn, "GE")
    queue = Queue("dead")
    await queue.claim(conn, 1)
    await control.cancel(conn, job_id, "alice")
    await conn.execute(
        "UPDATE symbol_onboarding_queue SET heartbeat_at = now() - interval '1 hour' WHERE id = $1",
        job_id,
    )
    # Past a server start older than the stall timeout: use a timeout of 0 s.
    (recovered,) = await queue.recover_stalled(conn, 0)
    assert recovered.status == "cancelled"
    assert (await row(conn, job_id))["status"] == "cancelled"


async def test_operator_source_pause_is_not_shortened_by_an_automatic_one(conn) -> None:
    end = await control.pause_source(conn, "yahoo", 600, "maintenance", "alice")
    assert not end.until_resumed
    # The rate limiter pauses for 60 s: the operator's longer pause stays, with its author.
    await conn.fetchrow(prices_sql.PAUSE_SOURCE, "yahoo", 60.0, "HTTP 429")
    facts = await control.gather(conn)
    (yahoo,) = facts.sources
    assert yahoo.paused and yahoo.paused_by == "alice" and yahoo.reason == "maintenance"
    assert 590 < yahoo.remaining_s <= 600
    # A longer automatic pause takes over (the operator's end is inside it), as the worker's.
    await conn.fetchrow(prices_sql.PAUSE_SOURCE, "yahoo", 7200.0, "blocked")
    (yahoo,) = (await control.gather(conn)).sources
    assert yahoo.paused_by is None and yahoo.reason == "blocked"
    # An operator pause never ends an automatic one sooner; until resumed outlasts it.
    end = await control.pause_source(conn, "yahoo", 60, "short", "bob")
    (yahoo,) = (await control.gather(conn)).sources
    assert yahoo.remaining_s > 7000 and yahoo.paused_by == "bob"
    end = await control.pause_source(conn, "yahoo", None, "until further notice", "carol")
    assert end.until_resumed
    (yahoo,) = (await control.gather(conn)).sources
    assert yahoo.until_resumed and yahoo.paused_by == "carol"


async def test_resume_source_wakes_the_jobs_deferred_behind_it(conn) -> None:
    await control.pause_source(conn, "yahoo", None, None, "alice")
    deferred = await enqueue(conn, "AAPL")
    other = await enqueue(conn, "MSFT")
    await conn.execute(
        "UPDATE symbol_onboarding_queue SET run_after = '9999-12-31',"
        " error_message = 'deferred, yahoo paused for 1 s: paused' WHERE id = $1",
        deferred,
    )
    await conn.execute(
        "UPDATE symbol_onboarding_queue SET run_after = now() + interval '1 hour',"
        " error_message = 'deferred, polygon paused for 1 s: paused' WHERE id = $1",
        other,
    )
    assert await control.resume_source(conn, "yahoo") == 1
    assert await control.resume_source(conn, "yahoo") is None  # not paused any more
    assert await conn.fetchval(
        "SELECT run_after <= now() FROM symbol_onboarding_queue WHERE id = $1", deferred
    )
    assert not await conn.fetchval(
        "SELECT run_after <= now() FROM symbol_onboarding_queue WHERE id = $1", other
    )


async def test_queue_pause_stops_claims_but_not_enqueues(conn) -> None:
    end = await control.pause_queue(conn, None, "upgrade", "alice")
    assert end.until_resumed
    job_id = await enqueue(conn, "AAPL")  # enqueueing goes on
    assert job_id is not None
    assert await Queue("w").claim(conn, 5) == []
    assert not await Queue("w").runnable_exists(conn)  # a burst run ends
    facts = await control.gather(conn)
    assert facts.queue_pause is not None and facts.queue_pause.paused_by == "alice"
    assert await control.resume_queue(conn) is True
    assert await control.resume_queue(conn) is False
    assert [j.id for j in await Queue("w").claim(conn, 5)] == [job_id]


async def test_a_timed_queue_pause_ends_by_itself(conn) -> None:
    await control.pause_queue(conn, 0.5, None, "alice")
    await enqueue(conn, "AAPL")
    assert await Queue("w").claim(conn, 5) == []
    await asyncio.sleep(0.6)
    assert (await control.gather(conn)).queue_pause is None
    assert len(await Queue("w").claim(conn, 5)) == 1
