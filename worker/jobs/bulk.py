"""Bulk refresh from Polygon's grouped daily bars: one request per session for the whole universe,
shared by every refresh job of every worker through the database.

A refresh job whose window is a few sessions long (at most `refresh_bulk_max_sessions`) asks
`BulkDays.bars`: for each session of its window that no job has loaded yet, it takes the day's
lease (one row in `price_bulk_days`; a lease that outlives `LEASE_S` is taken over), fetches the
grouped bars in one request through Polygon's rate limiter, and stores the bars of the symbols in
`symbol_universe` (`price_bulk_bars`). A job that finds the day leased by another is deferred for
a moment (no attempt spent) and then reads the stored day. Its bars come from those rows; a
symbol missing from any day of its window (grouped daily covers US stocks only) falls back to
the per-symbol request, as does every job when the grouped request fails for a reason other than
a pause. Stored days are swept after `BULK_KEEP_DAYS` by housekeeping.
"""

from dataclasses import dataclass
from datetime import date

import asyncpg
import structlog
from structlog.typing import FilteringBoundLogger

from worker.core.db import Connection
from worker.core.trading_calendar import TradingCalendar
from worker.prices.base import Bar, Bars, SourceError, SourcePaused, Window, ticks
from worker.prices.chain import Fetched
from worker.prices.polygon import PolygonSource
from worker.queue.store import Job
from worker.sql import refresh as sql

log = structlog.get_logger("worker.bulk")

LEASE_S = 120.0  # a fetch that has not stored its day by then is presumed dead
WAIT_S = 1.0  # how long a job waits for a day another job is loading
BULK_KEEP_DAYS = 14


@dataclass(frozen=True)
class Loaded:
    """The day's bars are stored (by this job or meanwhile by another)."""

    day: date


@dataclass(frozen=True)
class Waiting:
    """Another job is loading a day of this window: defer the job this long."""

    day: date
    delay_s: float


class BulkDays:
    """Grouped daily days shared through the database (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        source: PolygonSource,
        calendar: TradingCalendar,
        worker_id: str,
        *,
        max_sessions: int,
    ) -> None:
        self._pool = pool
        self.source = source
        self._calendar = calendar
        self._worker_id = worker_id
        self.max_sessions = max_sessions

    async def bars(
        self, job: Job, window: Window, log: FilteringBoundLogger
    ) -> Fetched | Waiting | SourcePaused | None:
        """The symbol's bars for `window` from grouped days; None: use per-symbol requests."""
        days = self._calendar.sessions_between(window.start, window.end)
        if not days or len(days) > self.max_sessions:
            return None
        loaded = set(await self._pool.fetchval(sql.BULK_DAYS_LOADED, self.source.name, days))
        for day in days:
            if day in loaded:
                continue
            outcome = await self._load(day)
            if not isinstance(outcome, Loaded):
                return outcome
        rows = await self._pool.fetch(sql.BULK_BARS, self.source.name, job.symbol, days)
        if len(rows) != len(days):
            log.info("bulk_not_covered", days=len(days), covered=len(rows))
            return None
        return Fetched(self.source, Bars([_bar(r) for r in rows]))

    async def _load(self, day: date) -> Loaded | Waiting | SourcePaused | None:
        """Load one day under its lease; None: it cannot be had (use per-symbol requests)."""
        leased = await self._pool.fetchval(
            sql.LEASE_BULK_DAY, self.source.name, day, self._worker_id, LEASE_S
        )
        if leased is None:
            return Waiting(day, WAIT_S)
        if leased == "loaded":
            return Loaded(day)
        try:
            grouped = await self.source.fetch_grouped(day)
        except SourcePaused as exc:
            await self._pool.execute(sql.UNLEASE_BULK_DAY, self.source.name, day, self._worker_id)
            return exc
        except SourceError as exc:
            await self._pool.execute(sql.UNLEASE_BULK_DAY, self.source.name, day, self._worker_id)
            log.warning(
                "bulk_day_failed", source=self.source.name, day=day.isoformat(), error=str(exc)
            )
            return None
        if not grouped.bars:
            # Not published yet (or a day without trading): nothing to share; per symbol.
            await self._pool.execute(sql.UNLEASE_BULK_DAY, self.source.name, day, self._worker_id)
            log.warning("bulk_day_empty", source=self.source.name, day=day.isoformat())
            return None
        async with self._pool.acquire() as conn:
            stored = await store_day(conn, self.source.name, day, grouped.bars, self._worker_id)
        log.info(
            "bulk_day_loaded",
            source=self.source.name,
            day=day.isoformat(),
            tickers=len(grouped.bars),
            skipped=grouped.skipped,
            stored=stored,
        )
        return Loaded(day)


async def store_day(
    conn: Connection, source: str, day: date, bars: dict[str, Bar], worker_id: str
) -> int:
    """The bars of the universe's symbols, and the day marked loaded: one transaction, fenced on
    the lease (a fetch presumed dead and taken over stores nothing)."""
    symbols = list(bars)
    async with conn.transaction():
        stored = await conn.fetchval(
            sql.STORE_BULK_DAY,
            source,
            day,
            symbols,
            [ticks(bars[s].open) for s in symbols],
            [ticks(bars[s].high) for s in symbols],
            [ticks(bars[s].low) for s in symbols],
            [ticks(bars[s].close) for s in symbols],
            [bars[s].volume for s in symbols],
            worker_id,
        )
    return int(stored or 0)


async def sweep_bulk_days(conn: Connection, batch_size: int) -> int:
    """Housekeeping: delete stored grouped days older than BULK_KEEP_DAYS (one batch)."""
    return int(await conn.fetchval(sql.SWEEP_BULK_DAYS, BULK_KEEP_DAYS, batch_size) or 0)


def _bar(row: asyncpg.Record) -> Bar:
    return Bar(
        row["price_date"],
        row["open_price"],
        row["high_price"],
        row["low_price"],
        row["close_price"],
        None,
        row["volume"],
    )
