"""The refresh job: bring one known symbol current with the sessions it is missing.

A refresh is a queue job like an onboarding (same claim, fencing, retries and deferrals); only
what it fetches and how it stores differ (`Refresher.run`):
- a symbol already current with the last completed session (trading calendar) is not requested;
- a symbol with no prices yet (the host inserted its universe row itself) gets a full onboarding;
- otherwise it fetches from `last_price_date` minus `refresh_overlap_sessions` sessions to the
  last completed session, and compares the overlap with the stored rows. Equal (to the tick):
  the new rows are upserted. Different (a split or dividend re-adjusted the history, or the
  provider corrected a bar): the whole lookback is fetched again and replaces the symbol's rows in
  one transaction, the change is logged (`price_history_changed`: dates, old and new values, the
  ratio when it looks like a split), and its betas are recomputed;
- when every source calls the symbol unknown or delisted, the miss is counted; at
  `refresh_delist_after` misses in a row the symbol becomes `delisted` (prices kept) and is no
  longer refreshed. Any served refresh resets the count.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import asyncpg
import structlog
from structlog.typing import FilteringBoundLogger

from worker.core.db import bounded_lock_waits
from worker.core.settings import Settings
from worker.core.trading_calendar import TradingCalendar
from worker.jobs.bulk import BulkDays, Waiting
from worker.jobs.onboarding import JobParts, Onboarder
from worker.prices.base import Bar, NoData, SourcePaused, SymbolNotFound, Window
from worker.prices.chain import Fetched, Unfetched
from worker.prices.polygon import PolygonSource
from worker.queue.outcome import JobResult, classify, clip
from worker.queue.store import Job, Queue
from worker.sql import refresh as sql

logger = structlog.get_logger()

TICK = Decimal("0.0001")  # prices are stored at 4 decimals: one tick apart is rounding
MAX_LOGGED_CHANGES = 10


@dataclass(frozen=True)
class PriceChange:
    price_date: date
    column: str  # close_price or adj_close_price
    old: Decimal
    new: Decimal


def price_changes(
    stored: Sequence[asyncpg.Record | tuple[date, Decimal | None, Decimal | None]],
    bars: Sequence[Bar],
) -> list[PriceChange]:
    """Where the fetched bars differ from the stored (date, close, adj_close) rows by more than
    one tick (rounding). A value one side lacks is not a change (a source without adjusted
    closes cannot contradict a stored one)."""
    fetched = {bar.price_date: bar for bar in bars}
    changes = []
    for price_date, close, adj_close in stored:
        bar = fetched.get(price_date)
        if bar is None:
            continue
        for column, old, new in (
            ("close_price", close, bar.close),
            ("adj_close_price", adj_close, bar.adj_close),
        ):
            if old is not None and new is not None and abs(new - old) > TICK:
                changes.append(PriceChange(price_date, column, old, new))
    return changes


def split_ratio(changes: Sequence[PriceChange]) -> str | None:
    """ "2:1" when every changed value moved by the same simple ratio, far from 1 (a split or
    reverse split applied to the history); None otherwise (a dividend or a correction)."""
    ratios = [c.old / c.new for c in changes if c.new > 0]
    if not ratios or len(ratios) != len(changes):
        return None
    low, high = min(ratios), max(ratios)
    if high / low > Decimal("1.01") or Decimal("0.95") < low < Decimal("1.05"):
        return None
    middle = (low + high) / 2
    # Splits are N:M with small M (2:1, 3:2, 5:4) or reverse 1:N (1:10): both shapes are tried.
    for fraction in (
        Fraction(middle).limit_denominator(4),
        1 / Fraction(1 / middle).limit_denominator(4),
    ):
        value = Decimal(fraction.numerator) / fraction.denominator
        if fraction and abs(value - middle) / middle <= Decimal("0.005"):
            break
    else:
        return None
    return f"{fraction.numerator}:{fraction.denominator}"


class Refresher:
    """Runs refresh jobs with the onboarding's parts (source chain, price writer, queue
    transitions); a symbol without prices yet is onboarded by the Onboarder itself."""

    def __init__(
        self,
        settings: Settings,
        queue: Queue,
        pool: asyncpg.Pool,
        onboarder: Onboarder,
        calendar: TradingCalendar,
        *,
        now: Callable[[], datetime] | None = None,
        bulk: BulkDays | None = None,
    ) -> None:
        """`now`: the clock (tests); `bulk`:
        grouped daily days (when the chain's first source is Polygon)."""
        self._settings = settings
        self._queue = queue
        self._pool = pool
        self._onboarder = onboarder
        self._parts: JobParts = onboarder.parts
        self._calendar = calendar
        self._now = now or (lambda: datetime.now(UTC))
        self._bulk = bulk

    async def run(self, job: Job) -> JobResult:
        log = logger.bind(
            job_id=str(job.id), symbol=job.symbol, attempt=job.attempts, kind="refresh"
        )
        return await classify(
            job,
            self._refresh(job, log),
            kind="refresh",
            settings=self._settings,
            retry_later=self._parts.ends.retry_later,
            log=log,
            mask=self._parts.masked,
        )

    def window(self, last_price_date: date) -> Window:
        """From `refresh_overlap_sessions` sessions before `last_price_date` to the last
        completed session."""
        through = self._calendar.last_completed_session(self._now())
        start = self._calendar.sessions_back(
            last_price_date, self._settings.refresh_overlap_sessions
        )
        return Window(start, through)

    def lookback(self) -> Window:
        """The onboarding's `price_lookback_days`, ending with the last completed session."""
        through = self._calendar.last_completed_session(self._now())
        return Window(through - timedelta(days=self._settings.price_lookback_days), through)

    async def _refresh(self, job: Job, log: FilteringBoundLogger) -> JobResult:
        target = await self._pool.fetchrow(sql.REFRESH_TARGET, job.symbol)
        if target is None or target["status"] in ("delisted", "error"):
            # Deleted by the host, delisted or errored since the batch: nothing to refresh.
            status = None if target is None else target["status"]
            log.info("refresh_skipped", status=status)
            await self._parts.ends.complete_unchanged(job)
            return JobResult("completed", rows=0)
        last = target["last_price_date"]
        if last is None:
            log.info("refresh_onboards", reason="no prices stored yet")
            return await self._onboarder.run(job)
        window = self.window(last)
        if last >= window.end:
            log.info("refresh_up_to_date", last_price_date=last.isoformat())
            await self._parts.ends.complete_unchanged(job)
            return JobResult("completed", rows=0)

        got: Fetched | Unfetched | None = None
        if self._bulk is not None:
            shared = await self._bulk.bars(job, window, log)
            if isinstance(shared, Waiting):
                reason = f"deferred: waiting for {self._bulk.source.name}'s grouped daily bars of {shared.day.isoformat()}, loaded by another job"
                await self._queue.release(self._pool, job, delay_s=shared.delay_s, reason=reason)
                return JobResult("deferred", error=reason)
            if isinstance(shared, SourcePaused):
                return await self._parts.ends.settle(
                    job, Unfetched([shared], []), self._parts.chain
                )
            got = shared
        if got is None:
            got = await self._parts.chain.fetch(job.symbol, window, log)
        if isinstance(got, Unfetched):
            return await self._unfetched(job, got, log)
        stored = await self._pool.fetch(sql.STORED_OVERLAP, job.symbol, window.start, last)
        changes = price_changes(stored, got.fetched.bars)
        await self._pool.execute(sql.RESET_MISSES, job.symbol)
        if not changes:
            return await self._parts.writer.store(
                job, got.source, got.fetched, log, through=window.end
            )
        return await self._replace(job, changes, log)

    async def _replace(
        self, job: Job, changes: list[PriceChange], log: FilteringBoundLogger
    ) -> JobResult:
        """The stored history no longer matches the provider's: re-fetch the whole lookback and
        replace the symbol's rows with it in one transaction, in which the Onboarder's factor
        step (worker/jobs/write.py) also recomputes its betas from the new history."""
        log.warning(
            "price_history_changed",
            changed_values=len(changes),
            first_date=changes[0].price_date.isoformat(),
            last_date=changes[-1].price_date.isoformat(),
            split_ratio=split_ratio(changes),
            changes=[
                {
                    "date": c.price_date.isoformat(),
                    "column": c.column,
                    "old": str(c.old),
                    "new": str(c.new),
                }
                for c in changes[:MAX_LOGGED_CHANGES]
            ],
        )
        lookback = self.lookback()
        got = await self._parts.chain.fetch(job.symbol, lookback, log)
        if isinstance(got, Unfetched):
            return await self._parts.ends.settle(job, got, self._parts.chain)
        return await self._parts.writer.store(
            job, got.source, got.fetched, log, replace=True, through=lookback.end
        )

    async def _unfetched(self, job: Job, got: Unfetched, log: FilteringBoundLogger) -> JobResult:
        """No source served the window. Unknown or no data at every source (and nothing paused)
        is a miss toward delisting; anything else settles as for an onboarding."""
        if got.deferrals or not got.failures:
            return await self._parts.ends.settle(job, got, self._parts.chain)
        if not all(isinstance(f, SymbolNotFound | NoData) for f in got.failures):
            return await self._parts.ends.settle(job, got, self._parts.chain)
        reason = clip("; ".join(str(f) for f in got.failures))
        async with (
            self._pool.acquire() as conn,
            bounded_lock_waits(conn, self._settings.lock_timeout_s),
        ):
            count = await conn.fetchval(sql.RECORD_MISS, job.symbol, reason)
            delist = count >= self._settings.refresh_delist_after
            if delist:
                await conn.execute(sql.DELIST, job.symbol)
            # Failed, so an operator sees why in `status`; the symbol keeps its status until
            # the last miss delists it. A reference ETF's end releases the symbols waiting for
            # it, as any failed end does (JobEnds.fail).
            await self._parts.ends.lock_references(conn, job)
            await self._queue.fail(conn, job, reason)
            await self._parts.ends.reference_ended(conn, job)
        log.warning(
            "symbol_delisted" if delist else "refresh_missed",
            misses=count,
            delist_after=self._settings.refresh_delist_after,
            reason=reason,
        )
        return JobResult("failed", error=reason)


class JobsByKind:
    """The runner's handler: each claimed job goes to the handler of its kind."""

    def __init__(self, onboarding: Onboarder, refresh: Refresher) -> None:
        self._onboarding = onboarding
        self._refresh = refresh

    async def run(self, job: Job) -> JobResult:
        if job.kind == "refresh":
            return await self._refresh.run(job)
        return await self._onboarding.run(job)


def build_refresher(
    settings: Settings,
    queue: Queue,
    pool: asyncpg.Pool,
    onboarder: Onboarder,
    calendar: TradingCalendar,
    *,
    now: Callable[[], datetime] | None = None,
) -> Refresher:
    """The worker's Refresher: with grouped daily days when REFRESH_BULK=auto and Polygon leads
    the source chain (the chain's first source serves refreshes; another first source keeps its
    own per-symbol requests, so a refresh never changes whose data a symbol has). `now`: the
    clock (tests, benchmarks)."""
    first = onboarder.sources[0]
    bulk = None
    if settings.refresh_bulk == "auto" and isinstance(first, PolygonSource):
        bulk = BulkDays(
            pool, first, calendar, queue.worker_id, max_sessions=settings.refresh_bulk_max_sessions
        )
    return Refresher(settings, queue, pool, onboarder, calendar, now=now, bulk=bulk)
