"""The queue transitions every job kind ends with, each in one short transaction that also keeps
the factor betas' references right: a reference ETF's ending takes the reference lock first and
releases the symbols waiting only for it."""

import asyncpg

from worker.core.db import Connection, bounded_lock_waits
from worker.core.settings import Settings
from worker.factors import service as factors
from worker.factors.switch import FactorSwitch
from worker.host.tables import HostTables
from worker.prices.chain import SourceChain, Unfetched
from worker.prices.decide import Defer, Retry, decide
from worker.prices.http import scrub
from worker.queue.outcome import JobResult, clip
from worker.queue.store import Job, Queue


class JobEnds:
    """Completes, fails, retries, defers; safe to share between concurrent jobs."""

    def __init__(
        self,
        settings: Settings,
        queue: Queue,
        pool: asyncpg.Pool,
        *,
        factors_switch: FactorSwitch | None,
        host: HostTables,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._pool = pool
        self._factors = factors_switch
        self._host = host

    @property
    def computes_betas(self) -> bool:
        """Betas are written by this worker's jobs now (FACTORS_ENABLED and the table shape)."""
        return self._factors is not None and self._factors.available

    async def settle(self, job: Job, got: Unfetched, chain: SourceChain) -> JobResult:
        """No source delivered: defer, retry or fail, as worker/prices/decide.py decides."""
        deferrals = got.deferrals
        if deferrals:
            deferrals = await chain.slot_for(job.symbol, deferrals)
        decision = decide(deferrals, [scrub(f, chain.secrets) for f in got.failures])
        if isinstance(decision, Defer):
            reason = clip(decision.reason)
            await self._queue.release(self._pool, job, delay_s=decision.delay_s, reason=reason)
            return JobResult("deferred", error=reason)
        if isinstance(decision, Retry):
            return await self.retry_later(job, clip(decision.error))
        return await self.fail(job, clip(decision.error))

    async def complete_unchanged(self, job: Job) -> None:
        """Completed with nothing to store (already current, or nothing left to refresh); a
        reference ETF's job still releases the symbols waiting for it, as any ending does."""
        async with (
            self._pool.acquire() as conn,
            bounded_lock_waits(conn, self._settings.lock_timeout_s),
        ):
            await self.lock_references(conn, job)
            await self._queue.complete(conn, job)
            await self.reference_ended(conn, job)

    async def fail(self, job: Job, error: str) -> JobResult:
        """Failed at once; the queue marks a pending symbol `error` in the same statement."""
        async with (
            self._pool.acquire() as conn,
            bounded_lock_waits(conn, self._settings.lock_timeout_s),
        ):
            await self.lock_references(conn, job)
            await self._queue.fail(conn, job, error)
            await self.reference_ended(conn, job)
        return JobResult("failed", error=error)

    async def retry_later(self, job: Job, error: str) -> JobResult:
        """Retried with backoff, or failed on the last attempt (the queue then marks a pending
        symbol `error` in the same statement)."""
        async with (
            self._pool.acquire() as conn,
            bounded_lock_waits(conn, self._settings.lock_timeout_s),
        ):
            await self.lock_references(conn, job)
            status = await self._queue.retry_later(conn, job, error)
            if status == "failed":  # that was its last attempt
                await self.reference_ended(conn, job)
        return JobResult("retried" if status == "pending" else "failed", error=error)

    async def lock_references(self, conn: Connection, job: Job) -> None:
        """A reference ETF's ending transaction takes the reference lock first (before its job
        row), as its completing one does."""
        if self.computes_betas and job.symbol in factors.REFERENCE_ETFS:
            await factors.lock_references(conn, job.symbol)

    async def reference_ended(self, conn: Connection, job: Job) -> None:
        """A reference ETF's job failed for good: the symbols waiting only for it get their
        betas from what is there (its transaction holds the exclusive reference lock)."""
        store = self._factors.store if self._factors is not None else None
        if store is None or job.symbol not in factors.REFERENCE_ETFS:
            return
        await factors.resolve_waiting(
            conn,
            store,
            history_days=self._settings.factor_history_days,
            batch_size=self._settings.factor_batch_size,
            host=self._host,
        )
