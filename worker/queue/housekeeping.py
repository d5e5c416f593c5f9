"""Housekeeping inside the worker: stalled-job recovery often, pruning at a low rate, and
periodic tasks (the daily refresh schedule, worker/jobs/schedule.py) every round.

Recovery runs in every worker (it is one cheap statement with SKIP LOCKED, and the recovery bound
must not depend on one process). Pruning is taken by one worker at a time with an advisory lock,
and does at most `max_batches` bounded batches per round so it never competes with the claim loop.
"""

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
import structlog

from worker.core.db import Connection, bounded_lock_waits
from worker.core.errors import translates_database_errors
from worker.core.settings import Settings
from worker.queue import registry
from worker.queue.store import Queue, prune
from worker.sql import queue as sql

log = structlog.get_logger("worker.housekeeping")

# An extra sweep run under the same lock: deletes ONE batch of at most `batch_size` rows on the
# connection it is given and returns how many it deleted. The housekeeper runs batches until one
# comes back short, each in a transaction of its own, like the queue's pruning.
Sweep = Callable[[Connection, int], Awaitable[int]]


@dataclass(frozen=True)
class PruneResult:
    completed: int
    failed: int
    extra: dict[str, int]


class Housekeeper:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        queue: Queue,
        *,
        extra_sweeps: dict[str, Sweep] | None = None,
        max_batches: int = 10,
        periodic: Sequence[Callable[[], Awaitable[object]]] = (),
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.queue = queue
        self.extra_sweeps = extra_sweeps or {}
        self.max_batches = max_batches
        # Each decides for itself whether it has work this round (cheap when it has none).
        self.periodic = tuple(periodic)
        self._last_prune = float("-inf")

    @translates_database_errors
    async def __call__(self) -> None:
        await self.recover_stalled()
        if time.monotonic() - self._last_prune >= self.settings.housekeeping_interval_s:
            self._last_prune = time.monotonic()
            await self.prune(max_batches=self.max_batches)
        for task in self.periodic:
            await task()

    @translates_database_errors
    async def recover_stalled(self) -> int:
        # It also marks symbols in the host's symbol_universe: a host lock there must end the
        # sweep in DATABASE_LOCK_TIMEOUT_S (LockWaitTimeout), not hold it for the command timeout.
        async with (
            self.pool.acquire() as conn,
            bounded_lock_waits(conn, self.settings.lock_timeout_s),
        ):
            recovered = await self.queue.recover_stalled(conn, self.settings.stall_timeout_s)
        for job in recovered:
            log.warning(
                "job_recovered",
                job_id=str(job.id),
                symbol=job.symbol,
                attempt=job.attempts,
                status=job.status,
            )
        return len(recovered)

    @translates_database_errors
    async def prune(self, *, max_batches: int | None = None) -> PruneResult | None:
        """Prune old finished jobs (and extra sweeps); None if another worker is pruning."""
        batch = self.settings.prune_batch_size
        settings = self.settings
        async with self.pool.acquire() as conn:
            completed = await self._batches(
                conn,
                lambda c: prune(c, "completed", settings.prune_completed_days, batch),
                max_batches,
            )
            if completed is None:
                return None
            failed = await self._batches(
                conn, lambda c: prune(c, "failed", settings.prune_failed_days, batch), max_batches
            )
            extra: dict[str, int] = {}
            # Cancelled jobs are kept as long as failed ones: both ended without completing.
            cancelled = await self._batches(
                conn,
                lambda c: prune(c, "cancelled", settings.prune_failed_days, batch),
                max_batches,
            )
            if cancelled is not None:
                extra["cancelled_jobs"] = cancelled
            for name, sweep in self.extra_sweeps.items():
                swept = await self._batches(conn, _one_batch(sweep, batch), max_batches)
                if swept is not None:
                    extra[name] = swept
            # Long-dead workers' rows in the live-worker registry: one bounded statement.
            async with conn.transaction():
                if await self._locked(conn):
                    extra["dead_workers"] = await registry.forget_dead(
                        conn, settings.dead_worker_retention_s
                    )
        result = PruneResult(completed=completed, failed=failed or 0, extra=extra)
        if result.completed or result.failed or any(result.extra.values()):
            log.info(
                "jobs_pruned", completed=result.completed, failed=result.failed, **result.extra
            )
        return result

    @staticmethod
    async def _locked(conn: Connection) -> bool:
        return bool(await conn.fetchval(sql.TRY_LOCK_HOUSEKEEPING, sql.HOUSEKEEPING_LOCK_KEY))

    async def _batches(
        self,
        conn: Connection,
        delete_batch: Callable[[Connection], Awaitable[int]],
        max_batches: int | None,
    ) -> int | None:
        """Bounded batches, each its own transaction under the lock; None if the lock is taken."""
        total, batches = 0, 0
        batch = self.settings.prune_batch_size
        while max_batches is None or batches < max_batches:
            async with bounded_lock_waits(conn, self.settings.lock_timeout_s):
                if not await self._locked(conn):
                    return None if batches == 0 else total
                deleted = await delete_batch(conn)
            total += deleted
            batches += 1
            if deleted < batch:
                break
        return total


def _one_batch(sweep: Sweep, batch_size: int) -> Callable[[Connection], Awaitable[int]]:
    """`sweep` bound to the batch size: one batch per call, as `_batches` runs it."""
    return lambda conn: sweep(conn, batch_size)
