"""The daily refresh: which symbols are behind, the batch that enqueues their refresh jobs, the
once-per-trading-day schedule inside the running worker, and `python -m worker refresh`.

Exactly once: the batch for a trading day is enqueued in one transaction that holds a
transaction-level advisory lock and inserts that day's `refresh_schedule_runs` row, so however
many workers (on however many machines) reach the scheduled time, one enqueues and the others
find the row; a crash before the commit leaves neither the jobs nor the row. The due day is the
latest session whose scheduled time has passed, so a worker that starts after the time (or after
days of downtime) enqueues the batch then (catch-up), and a restart the same day finds the row.
"""

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import structlog

from worker.core.db import Connection
from worker.core.settings import Settings
from worker.core.symbols import normalize_symbol
from worker.core.trading_calendar import TradingCalendar
from worker.factors.betas import REFERENCE_ETFS
from worker.sql import refresh as sql

log = structlog.get_logger("worker.schedule")


@dataclass(frozen=True)
class Behind:
    through_session: date  # the last completed session
    symbols: list[tuple[str, date | None]]  # (symbol, last_price_date), oldest first
    invalid: int  # universe rows behind whose spelling the queue refuses (skipped)

    @property
    def without_prices(self) -> int:
        return sum(1 for _, last in self.symbols if last is None)


async def behind(conn: Connection, through: date, symbols: Sequence[str] | None = None) -> Behind:
    """The symbols that have no price on or after session `through` (or only those listed)."""
    names = list(symbols) if symbols is not None else None
    rows = await conn.fetch(sql.BEHIND, through, names)
    invalid = await conn.fetchval(sql.BEHIND_INVALID, through, names)
    return Behind(through, [(r["symbol"], r["last_price_date"]) for r in rows], invalid)


async def enqueue_refresh(
    conn: Connection, through: date, symbols: Sequence[str] | None = None
) -> int:
    """Enqueue a refresh job for every symbol behind session `through` that has no live job;
    returns how many were created (in the caller's transaction)."""
    names = list(symbols) if symbols is not None else None
    return len(await conn.fetch(sql.ENQUEUE_REFRESH, through, names, list(REFERENCE_ETFS)))


@dataclass(frozen=True)
class BatchOutcome:
    status: str  # enqueued | done (another run did it) | busy (another worker is doing it now)
    jobs: int = 0


async def enqueue_daily_batch(
    conn: Connection, trading_day: date, through: date, worker_id: str
) -> BatchOutcome:
    """The scheduled batch of `trading_day`, at most once ever (see the module docstring)."""
    async with conn.transaction():
        if not await conn.fetchval(sql.TRY_LOCK_SCHEDULE, sql.SCHEDULE_LOCK_KEY):
            return BatchOutcome("busy")
        if await conn.fetchval(sql.SCHEDULE_DONE, trading_day):
            return BatchOutcome("done")
        jobs = await enqueue_refresh(conn, through)
        await conn.fetchval(sql.RECORD_SCHEDULE_RUN, trading_day, through, jobs, worker_id)
    return BatchOutcome("enqueued", jobs)


@dataclass(frozen=True)
class ScheduleTimes:
    """When the daily refresh is due: `at` in `zone` on each session of `calendar`."""

    calendar: TradingCalendar
    at: time
    zone: ZoneInfo

    def scheduled_at(self, day: date) -> datetime:
        return datetime.combine(day, self.at, tzinfo=self.zone)

    def due_day(self, now: datetime) -> date | None:
        """The latest session whose scheduled time is at or before `now`."""
        local = now.astimezone(self.zone).date()
        for day in reversed(self.calendar.sessions_between(local - timedelta(days=14), local)):
            if self.scheduled_at(day) <= now:
                return day
        return None

    def next_after(self, now: datetime) -> datetime:
        """The first scheduled time after `now`."""
        local = now.astimezone(self.zone).date()
        for day in self.calendar.sessions_on_or_after(local, 10):
            if self.scheduled_at(day) > now:
                return self.scheduled_at(day)
        raise ValueError(f"no {self.calendar.name} session within 10 sessions of {local}")

    @classmethod
    def from_settings(cls, settings: Settings, calendar: TradingCalendar) -> "ScheduleTimes | None":
        spec = settings.schedule_time()
        return None if spec is None else cls(calendar, *spec)


class DailySchedule:
    """Run by the worker's housekeeping loop: enqueues the day's refresh batch once its time has
    passed. Cheap when there is nothing to do (no query once this process saw the day done)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        times: ScheduleTimes,
        worker_id: str,
        *,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._pool = pool
        self.times = times
        self._worker_id = worker_id
        self._now = now or (lambda: datetime.now(UTC))
        self._done: date | None = None

    async def __call__(self) -> BatchOutcome | None:
        """Enqueue the due day's batch unless done; None when nothing was due or known done."""
        now = self._now()
        day = self.times.due_day(now)
        if day is None or day == self._done:
            return None
        through = self.times.calendar.last_completed_session(now)
        async with self._pool.acquire() as conn:
            outcome = await enqueue_daily_batch(conn, day, through, self._worker_id)
        if outcome.status == "busy":
            return outcome  # another worker holds the lock: look again next round
        self._done = day
        if outcome.status == "enqueued":
            log.info(
                "refresh_batch_enqueued",
                trading_day=day.isoformat(),
                through_session=through.isoformat(),
                jobs=outcome.jobs,
                scheduled_at=self.times.scheduled_at(day).isoformat(),
            )
        return outcome


async def catch_up_day(conn: Connection, times: ScheduleTimes | None, now: datetime) -> date | None:
    """The due trading day whose batch is not enqueued yet (a running worker enqueues it at its
    next housekeeping round), or None. Not "the next refresh is now": status said so, a new
    time at every call, before a worker's first schedule round."""
    if times is None:
        return None
    day = times.due_day(now)
    if day is not None and not await conn.fetchval(sql.SCHEDULE_DONE, day):
        return day
    return None


# --- python -m worker refresh ----------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--symbols",
        type=_symbols,
        metavar="A,B",
        help="only these symbols (default: every symbol that is behind)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print how many symbols are behind, the requests per source and how long they take",
    )


def _symbols(raw: str) -> list[str]:
    try:
        return [normalize_symbol(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class SourceCost:
    source: str
    requests: int
    spacing_s: float | None  # None: no rate limit

    @property
    def duration_s(self) -> float:
        return 0.0 if self.spacing_s is None else self.requests * self.spacing_s


def request_plan(
    settings: Settings, found: Behind, calendar: TradingCalendar
) -> tuple[SourceCost, int, int]:
    """The requests a refresh of `found` costs at the chain's first source (the others are only
    asked when it fails; none for a local source): one per symbol, except that with grouped daily
    bars (REFRESH_BULK=auto, Polygon first) one request per session serves every symbol whose
    window is short enough. Also: how many grouped requests, and how many symbols they serve."""
    # Here, not at the top: worker.ops.status imports this module, and the price sources import
    # worker.ops.prometheus, which imports worker.ops.status.
    from worker.prices.sources import HTTP_SOURCES, check_source_config, source_rates

    names = check_source_config(settings)
    first = names[0]
    if first not in HTTP_SOURCES:
        return SourceCost(first, 0, None), 0, 0
    rate = source_rates(settings, [first])[first]
    per_symbol, served, sessions = len(found.symbols), 0, set()
    if first == "polygon" and settings.refresh_bulk == "auto":
        for _, last in found.symbols:
            if last is None:
                continue  # a full onboarding: its whole lookback, per symbol
            start = calendar.sessions_back(last, settings.refresh_overlap_sessions)
            days = calendar.sessions_between(start, found.through_session)
            if len(days) <= settings.refresh_bulk_max_sessions:
                sessions.update(days)
                served += 1
        per_symbol -= served
    spacing = None if rate is None else rate.spacing_s
    return SourceCost(first, per_symbol + len(sessions), spacing), len(sessions), served


def format_plan(found: Behind, plan: tuple[SourceCost, int, int], settings: Settings) -> str:
    oldest = min((last for _, last in found.symbols if last is not None), default=None)
    lines = [
        f"through session: {found.through_session.isoformat()} ({settings.refresh_calendar})",
        f"behind: {len(found.symbols)} symbol(s)"
        + (f", oldest last_price_date {oldest.isoformat()}" if oldest else "")
        + (
            f", {found.without_prices} without prices (full onboarding)"
            if found.without_prices
            else ""
        ),
    ]
    if found.invalid:
        lines.append(f"skipped: {found.invalid} symbol(s) whose spelling the queue refuses")
    cost, grouped, served = plan
    if cost.spacing_s is None:
        pace = "no rate limit"
    else:
        pace = f"{cost.spacing_s:g} s apart: about {_duration(cost.duration_s)}"
    lines.append(f"requests: {cost.source} {cost.requests} ({pace})")
    if grouped:
        lines.append(
            f"  of which grouped daily: {grouped} (one per session) for {served} symbol(s);"
            f" per symbol: {cost.requests - grouped}"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


async def command(
    args: argparse.Namespace,
    settings: Settings,
    conn: Connection,
    *,
    now: datetime | None = None,
) -> int:
    """`refresh`: enqueue (or with --dry-run, cost out) a refresh of every symbol behind."""
    calendar = TradingCalendar(settings.refresh_calendar, now=now)
    through = calendar.last_completed_session(now or datetime.now(UTC))
    if args.dry_run:
        async with conn.transaction(readonly=True):
            found = await behind(conn, through, args.symbols)
        print(format_plan(found, request_plan(settings, found, calendar), settings))
        return 0
    async with conn.transaction():
        found = await behind(conn, through, args.symbols)
        jobs = await enqueue_refresh(conn, through, args.symbols)
    print(
        f"enqueued {jobs} refresh job(s) through session {through.isoformat()} "
        f"({len(found.symbols) - jobs} of {len(found.symbols)} behind already had a live job)"
    )
    if args.symbols:
        listed = {symbol for symbol, _ in found.symbols}
        current = [s for s in args.symbols if s not in listed]
        if current:
            print(f"not behind (current, delisted, pending or unknown): {', '.join(current)}")
    return 0
