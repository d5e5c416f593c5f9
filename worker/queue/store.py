"""The queue store: one method per operation on `symbol_onboarding_queue`, plus the enqueue helpers.

Crash recovery, the design: each worker process heartbeats the jobs it holds, with one UPDATE per
interval (`HEARTBEAT`, keyed by its `locked_by` id), and any worker sweeps jobs whose heartbeat is
older than the stall timeout back to pending (`RECOVER_STALLED`). Chosen over session advisory
locks because it works through transaction-pooling proxies (PgBouncer), needs no connection held
per job, survives a worker's own reconnects, and leaves the owner and its last sign of life in the
row where an operator can see them. A job is only taken from a worker that stopped heartbeating
for `stall_timeout_s`, so a live job is never stolen however long it runs; and every statement
that ends a claim is fenced on `locked_by`, so a worker that was presumed dead cannot complete a
job that has since been handed to someone else (it gets `JobLost` and its transaction rolls back).
"""

import os
import random
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, cast

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from worker.core.db import rows_affected
from worker.core.errors import JobLost, translates_database_errors
from worker.core.symbols import (
    UnknownRequesterError,
    check_priority,
    check_requested_by,
    normalize_symbol,
)
from worker.models.onboarding_queue import Priority
from worker.sql import queue as sql

__all__ = ["Job", "JobLost", "Queue", "Recovered", "enqueue_symbol", "enqueue_symbols"]


class Executor(Protocol):
    """An asyncpg Connection or Pool (`timeout` is asyncpg's own per-statement parameter)."""

    async def execute(self, query: str, *args: Any, timeout: float | None = ...) -> str: ...  # noqa: ASYNC109
    async def fetch(self, query: str, *args: Any, timeout: float | None = ...) -> list[Any]: ...  # noqa: ASYNC109
    async def fetchval(self, query: str, *args: Any, timeout: float | None = ...) -> Any: ...  # noqa: ASYNC109


# The statuses a job ends a claim in (RETRY_LATER), and those pruning deletes.
RetryStatus = Literal["pending", "failed"]
FinishedStatus = Literal["completed", "failed", "cancelled"]


@dataclass(frozen=True)
class Job:
    id: uuid.UUID
    symbol: str
    priority: Priority
    attempts: int  # including the current one
    requested_by: uuid.UUID | None
    created_at: datetime
    started_at: datetime  # this claim's token: every statement that ends the claim presents it
    kind: str = "onboarding"  # or "refresh" (worker/jobs/refresh.py)


@dataclass(frozen=True)
class Recovered:
    id: uuid.UUID
    symbol: str
    # pending again, failed when that was its last attempt, cancelled when an operator asked
    status: Literal["pending", "failed", "cancelled"]
    attempts: int


def new_worker_id(name: str | None = None) -> str:
    """Unique per process and start, readable by an operator: `host:pid:random`."""
    base = name or f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:{uuid.uuid4().hex[:6]}"


def retry_delay_s(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, then between half and all of it."""
    ceiling = min(max_s, base_s * 2.0 ** max(attempt - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Queue:
    """Queue operations for one worker process (its id fences every state change).

    Every method raises DatabaseUnavailable for an outage (worker/core/errors.py decides), JobLost
    for a job that is no longer this worker's, and any other error as it came.
    """

    def __init__(
        self,
        worker_id: str,
        *,
        max_attempts: int = 5,
        retry_base_s: float = 10.0,
        retry_max_s: float = 3600.0,
    ) -> None:
        self.worker_id = worker_id
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s

    @translates_database_errors
    async def claim(
        self, db: Executor, limit: int = 1, *, timeout_s: float | None = None
    ) -> list[Job]:
        """Claim up to `limit` runnable jobs, in claim order (onboarding high, normal, low, then
        refresh high, normal, low; oldest first within one); `timeout_s` bounds the statement
        (TimeoutError), None: the connection's command timeout."""
        rows = await db.fetch(sql.CLAIM, self.worker_id, limit, timeout=timeout_s)
        rows = sorted(rows, key=lambda r: (r["priority_rank"], r["run_after"]))
        return [
            Job(
                id=r["id"],
                symbol=r["symbol"],
                priority=r["priority"],
                attempts=r["attempts"],
                requested_by=r["requested_by"],
                created_at=r["created_at"],
                started_at=r["started_at"],
                kind=r["kind"],
            )
            for r in rows
        ]

    @translates_database_errors
    async def complete(self, db: Executor, job: Job) -> None:
        """Mark the job completed; raises JobLost if it is no longer ours."""
        self._check_owned(
            await db.execute(sql.COMPLETE, job.id, self.worker_id, job.started_at), job
        )

    @translates_database_errors
    async def complete_many(self, db: Executor, jobs: Sequence[Job]) -> None:
        """Complete a batch in one statement; raises JobLost naming any job no longer ours."""
        rows = await db.fetch(
            sql.COMPLETE_MANY,
            [job.id for job in jobs],
            self.worker_id,
            [job.started_at for job in jobs],
        )
        lost = {job.id for job in jobs} - {row["id"] for row in rows}
        if lost:
            raise JobLost(f"jobs {sorted(map(str, lost))} are no longer held by {self.worker_id}")

    async def retry_later(self, db: Executor, job: Job, error: str) -> RetryStatus:
        """A transient failure: pending again after a backoff, or failed after the last attempt."""
        delay = retry_delay_s(job.attempts, self.retry_base_s, self.retry_max_s)
        status = await db.fetchval(
            sql.RETRY_LATER, job.id, self.worker_id, self.max_attempts, delay, error, job.started_at
        )
        if status is None:
            raise JobLost(f"job {job.id} ({job.symbol}) is no longer held by {self.worker_id}")
        return cast(RetryStatus, status)

    @translates_database_errors
    async def fail(self, db: Executor, job: Job, error: str) -> None:
        """A permanent failure: failed at once with `error` for a person to act on (a pending
        symbol becomes `error`)."""
        if await db.fetchval(sql.FAIL, job.id, self.worker_id, error, job.started_at) != 1:
            raise JobLost(f"job {job.id} ({job.symbol}) is no longer held by {self.worker_id}")

    @translates_database_errors
    async def release(
        self, db: Executor, job: Job, *, delay_s: float = 0.0, reason: str | None = None
    ) -> None:
        """Hand the job back to pending without spending an attempt; with no delay it keeps its
        place in the claim order."""
        self._check_owned(
            await db.execute(sql.RELEASE, job.id, self.worker_id, delay_s, reason, job.started_at),
            job,
        )

    @translates_database_errors
    async def heartbeat(
        self, db: Executor, job_ids: Sequence[uuid.UUID], *, timeout_s: float | None = None
    ) -> int:
        """Refresh the heartbeat of the jobs this worker is running; returns how many.
        `timeout_s` bounds the statement (TimeoutError), None: the command timeout."""
        status = await db.execute(sql.HEARTBEAT, self.worker_id, list(job_ids), timeout=timeout_s)
        return rows_affected(status)

    @translates_database_errors
    async def completed(self, db: Executor, job: Job) -> bool:
        """Whether this claim of `job` ended completed (a completion that committed although
        this worker never got the answer: the connection dropped during its COMMIT)."""
        return bool(await db.fetchval(sql.CLAIM_COMPLETED, job.id, self.worker_id, job.started_at))

    @translates_database_errors
    async def recover_stalled(self, db: Executor, stall_timeout_s: float) -> list[Recovered]:
        rows = await db.fetch(sql.RECOVER_STALLED, stall_timeout_s, self.max_attempts)
        return [Recovered(r["id"], r["symbol"], r["status"], r["attempts"]) for r in rows]

    @translates_database_errors
    async def runnable_exists(self, db: Executor) -> bool:
        """Whether a runnable job exists, locked or not (burst mode's last check)."""
        return bool(await db.fetchval(sql.RUNNABLE_EXISTS))

    def _check_owned(self, status: str, job: Job) -> None:
        if rows_affected(status) != 1:
            raise JobLost(f"job {job.id} ({job.symbol}) is no longer held by {self.worker_id}")


@translates_database_errors
async def prune(
    db: Executor, status: FinishedStatus, older_than_days: float, batch_size: int
) -> int:
    """Delete one batch of `status` rows that ended more than `older_than_days` ago."""
    return rows_affected(await db.execute(sql.PRUNE, status, older_than_days, batch_size))


@translates_database_errors
async def retry_job(db: Executor, job_id: uuid.UUID) -> bool:
    """Operator retry of one failed job; False if it is not failed or its symbol has a live job."""
    return bool(await db.fetchval(sql.RETRY_JOB, job_id))


@translates_database_errors
async def run_now(db: Executor, job_id: uuid.UUID) -> bool:
    """Operator action: a pending job in backoff runs at once; False if it is not one."""
    return bool(await db.fetchval(sql.RUN_NOW, job_id))


@translates_database_errors
async def job_state(db: Executor, job_id: uuid.UUID) -> tuple[str, bool] | None:
    """A job's status and whether it waits for its run_after (None: no such job)."""
    rows = await db.fetch(sql.JOB_STATE, job_id)
    return (rows[0]["status"], rows[0]["waiting"]) if rows else None


@translates_database_errors
async def retry_failed(db: Executor) -> int:
    """Operator retry of every failed job whose symbol has no live job; returns how many."""
    return int(await db.fetchval(sql.RETRY_FAILED))


@translates_database_errors
async def enqueue_symbol(
    db: AsyncSession | AsyncConnection,
    symbol: str,
    *,
    priority: Priority = "normal",
    requested_by: uuid.UUID | None = None,
) -> uuid.UUID:
    """Enqueue one symbol in the caller's transaction (no commit); returns the live job's id.

    Bad input raises before anything is written, and leaves the caller's transaction usable:
    InvalidSymbolError, InvalidPriorityError, or UnknownRequesterError when `requested_by` is
    not a user (checked by the database in the same statement, before the insert). A database
    that cannot be reached raises DatabaseUnavailable (SQLAlchemy's error is its __cause__).
    """
    user = check_requested_by(requested_by)
    result = await db.execute(
        text(sql.ENQUEUE),
        {
            "symbol": normalize_symbol(symbol),
            "priority": check_priority(priority),
            "requested_by": user,
        },
    )
    job_id: uuid.UUID | None = result.scalar_one()
    if job_id is None:
        raise _unknown_requester(user)
    return job_id


@translates_database_errors
async def enqueue_symbols(
    db: AsyncSession | AsyncConnection,
    symbols: Iterable[str],
    *,
    priority: Priority = "normal",
    requested_by: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Enqueue several symbols in one round trip; ids in input order. All or nothing, and the
    same errors as `enqueue_symbol` (TypeError for a plain string: it is not a list)."""
    if isinstance(symbols, str | bytes):
        raise TypeError(
            f"symbols={symbols!r}: expected a list of symbols, not one string "
            "(use enqueue_symbol for one)"
        )
    normalized: Sequence[str] = [normalize_symbol(s) for s in symbols]
    user = check_requested_by(requested_by)
    priority = check_priority(priority)
    if not normalized:
        return []
    result = await db.execute(
        text(sql.ENQUEUE_MANY),
        {"symbols": list(normalized), "priority": priority, "requested_by": user},
    )
    ids = list(result.scalars())
    if not ids:
        raise _unknown_requester(user)
    return ids


def _unknown_requester(user: uuid.UUID | None) -> UnknownRequesterError:
    return UnknownRequesterError(f"invalid requested_by {user}: no such user; nothing enqueued")
