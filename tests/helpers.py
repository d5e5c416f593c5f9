"""Helpers the test modules share: reading the queue's rows and waiting for a condition."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from worker.queue.store import Job

# An asyncpg connection or pool (both have fetch/fetchrow/fetchval).
Db = asyncpg.Connection | asyncpg.Pool


async def job_row(db: Db, job: Job | str) -> asyncpg.Record:
    """Every column of a job's row: this claim's job, or the newest job of a symbol."""
    if isinstance(job, Job):
        return await db.fetchrow("SELECT * FROM symbol_onboarding_queue WHERE id = $1", job.id)
    return await db.fetchrow(
        "SELECT * FROM symbol_onboarding_queue WHERE symbol = $1 ORDER BY created_at DESC LIMIT 1",
        job,
    )


async def statuses(db: Db) -> dict[str, str]:
    """Each queued symbol's job status."""
    rows = await db.fetch("SELECT symbol, status FROM symbol_onboarding_queue")
    return {r["symbol"]: r["status"] for r in rows}


async def statuses_and_attempts(db: Db) -> dict[str, tuple[str, int]]:
    """Each queued symbol's job status and attempts."""
    rows = await db.fetch("SELECT symbol, status, attempts FROM symbol_onboarding_queue")
    return {r["symbol"]: (r["status"], r["attempts"]) for r in rows}


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, interval_s: float = 0.02
) -> None:
    """Poll `predicate` until it holds; fail the test after `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(interval_s)


async def wait_until_value(
    db: Db, query: str, expected: object, timeout_s: float = 60.0, interval_s: float = 0.1
) -> None:
    """Poll `query`'s value until it is `expected`; fail naming the last value after
    `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    value: Any
    while (value := await db.fetchval(query)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{query}: {value!r}"
        await asyncio.sleep(interval_s)
