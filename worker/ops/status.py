"""The status facts: ONE layer gathers them; `status` (text), `status --json`, the HTML page and the
Prometheus collector are views of it, so they cannot disagree.

`gather` reads every fact in one read-only REPEATABLE READ transaction (one moment, database
time); `gather_depth` is the cheap part (one index-only statement over the live rows) that
/metrics reads at scrape time.
`report_dict` is the one serialisation (the JSON view, and what the text view walks), so text
and JSON carry the same fields, empty groups included. To add a fact: a field on `StatusReport`,
its statement in worker/sql/status.py, a line in `gather`, and a section in `format_text`.
"""

from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import asyncpg

from worker.core.settings import Settings
from worker.core.trading_calendar import shared_calendar
from worker.jobs.schedule import ScheduleTimes, catch_up_day
from worker.models.onboarding_queue import PRIORITIES, STATUSES
from worker.queue import control
from worker.queue.control import ControlFacts
from worker.sql import host as host_sql
from worker.sql import status as sql

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

BACKOFF_LIMIT = 20
RECENT_FAILURES_LIMIT = 10
HISTORY_MINUTES = 60
LIVE_STATUSES = ("pending", "processing")

BreakerState = Literal["off", "closed", "open", "half-open"]


Fact = TypeVar("Fact", bound="DataclassInstance")  # a status fact


@dataclass(frozen=True)
class OldestPending:
    job_id: str
    symbol: str
    priority: str
    attempts: int
    created_at: datetime
    wait_s: float


@dataclass(frozen=True)
class QueueDepth:
    """Jobs by status and priority (every pair present, zeros included) and the oldest pending
    job's age. From `gather_depth`: the live statuses only (pending, processing)."""

    counts: dict[str, dict[str, int]]
    oldest_pending_age_s: float | None


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    symbol: str
    priority: str
    owner: str | None
    attempt: int
    running_s: float
    heartbeat_age_s: float
    stalled: bool  # heartbeat older than the stall timeout: the sweep may take it back


@dataclass(frozen=True)
class WaitingJob:
    """A pending job that may not run yet: retry backoff, or deferred behind a paused source."""

    job_id: str
    symbol: str
    priority: str
    attempts: int
    next_run_at: datetime
    next_run_in_s: float
    last_error: str | None


@dataclass(frozen=True)
class PausedSource:
    source: str
    reason: str | None
    paused_until: datetime
    remaining_s: float
    paused_by: str | None = None  # an operator (`pause`); None: the worker (rate limit, ...)
    until_resumed: bool = False


@dataclass(frozen=True)
class CircuitBreaker:
    """A source's breaker: closed (counting failures), open (tripped: paused), half-open (the
    pause ended but the count is still at the threshold: one more failure pauses it again)."""

    source: str
    state: BreakerState
    consecutive_failures: int
    threshold: int


@dataclass(frozen=True)
class LiveWorker:
    worker_id: str
    host: str
    pid: int
    version: str
    concurrency: int
    jobs_in_flight: int
    stopping: bool
    http_url: str | None
    started_at: datetime
    up_s: float
    last_tick_age_s: float | None
    heartbeat_age_s: float
    alive: bool  # heartbeat within the stall timeout


@dataclass(frozen=True)
class FinishedJob:
    job_id: str
    symbol: str
    priority: str
    attempts: int
    finished_at: datetime
    ago_s: float
    error: str | None


@dataclass(frozen=True)
class RefreshBatch:
    trading_day: date
    enqueued_at: datetime
    through_session: date
    jobs: int
    worker_id: str


@dataclass(frozen=True)
class RefreshCounts:
    """The universe against the last completed session (REFRESH_FACTS)."""

    current: int  # active symbols with a price for it
    behind: int  # active symbols without (host rows with no prices included)
    oldest_last_price_date: date | None  # among those behind
    without_prices: int
    delisted: int
    error: int  # status 'error': the onboarding failed (`show SYMBOL` says why)
    refresh_jobs_live: int  # pending or processing


@dataclass(frozen=True)
class RefreshFacts:
    """How current the universe is (worker/jobs/refresh.py, worker/jobs/schedule.py)."""

    calendar: str
    through_session: date  # the last completed session
    current: int  # active symbols with a price for it
    behind: int  # active symbols without (host rows with no prices included)
    oldest_last_price_date: date | None  # among those behind
    without_prices: int
    delisted: int
    error: int  # status 'error': the onboarding failed (`show SYMBOL` says why)
    refresh_jobs_live: int  # pending or processing
    last_batch: RefreshBatch | None
    next_scheduled_refresh: datetime | None  # the next scheduled time; None: schedule off
    # A due day whose batch is not enqueued yet: a running worker enqueues it (catch-up).
    catch_up_trading_day: date | None
    catch_up_scheduled_at: datetime | None


@dataclass(frozen=True)
class FactorFacts:
    """How many active symbols have their factor betas (worker/factors)."""

    with_betas: int  # last_factor_date set
    oldest_last_factor_date: date | None  # among those
    without_betas: int  # not yet: waiting, too little history, or never computed
    waiting_for_references: int  # prices stored, betas waiting for reference ETF prices (may
    # have older betas: a refresh that waits keeps the last ones)
    unavailable: str | None = None  # why this worker writes no betas at all (None: it does)


@dataclass(frozen=True)
class HostFacts:
    """The host's own market_data_cache rows that disagree with the worker's (worker/host/tables.py)."""

    host_price_disagreements: int  # (symbol, date) rows the host wrote whose close differs
    symbols: int
    last_seen: datetime | None


@dataclass(frozen=True)
class UniverseFacts:
    """What /metrics reads of the universe at scrape time: the counts, not the schedule."""

    refresh: RefreshCounts
    factors: FactorFacts


@dataclass(frozen=True)
class StatusReport:
    generated_at: datetime
    stall_timeout_s: float
    counts: dict[str, dict[str, int]]
    oldest_pending: OldestPending | None
    running: list[RunningJob]
    backoff_total: int
    backoff: list[WaitingJob]  # the first BACKOFF_LIMIT by next run
    paused_sources: list[PausedSource]
    circuit_breakers: list[CircuitBreaker]
    workers: list[LiveWorker]
    last_completed: FinishedJob | None
    recent_failures: list[FinishedJob]
    refresh: RefreshFacts
    factors: FactorFacts
    host: HostFacts
    control: ControlFacts  # the queue's pause and the latest cancellations (worker/control.py)


@dataclass(frozen=True)
class MinuteCounts:
    minutes_ago: int  # 0: the current minute
    completed: int
    failed: int


# --- gathering -----------------------------------------------------------------------------------


async def gather(
    conn: asyncpg.Connection, settings: Settings, *, factors_unavailable: str | None = None
) -> StatusReport:
    """Every status fact, as of one moment. `factors_unavailable`: why the worker writes no
    betas (its FactorSwitch's reason), if so."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        now = await conn.fetchval(sql.NOW)
        depth = await _depth(conn, sql.COUNTS, STATUSES)
        oldest = await conn.fetchrow(sql.OLDEST_PENDING)
        running = await conn.fetch(sql.RUNNING, settings.stall_timeout_s)
        backoff = await conn.fetch(sql.BACKOFF, BACKOFF_LIMIT)
        sources = await conn.fetch(sql.SOURCES)
        workers = await conn.fetch(sql.WORKERS, settings.stall_timeout_s)
        completed = await conn.fetch(sql.LAST_FINISHED, "completed", 1)
        failures = await conn.fetch(sql.LAST_FINISHED, "failed", RECENT_FAILURES_LIMIT)
        refresh = await _refresh(conn, settings, now)
        factor_facts = await _factors(conn, factors_unavailable)
        host = await conn.fetchrow(host_sql.DISAGREEMENT_FACTS)
        assert host is not None  # an aggregate without GROUP BY: always one row
        control_facts = await control.gather(conn, sources=False)
    return StatusReport(
        generated_at=now,
        stall_timeout_s=settings.stall_timeout_s,
        counts=depth.counts,
        oldest_pending=None if oldest is None else _row(OldestPending, oldest),
        running=[_row(RunningJob, r) for r in running],
        backoff_total=backoff[0]["total"] if backoff else 0,
        backoff=[_row(WaitingJob, r) for r in backoff],
        paused_sources=[
            _row(PausedSource, r)
            for r in sources
            if r["remaining_s"] is not None and r["remaining_s"] > 0
        ],
        circuit_breakers=[_breaker(r, settings.source_failures_before_pause) for r in sources],
        workers=[_row(LiveWorker, r) for r in workers],
        last_completed=_row(FinishedJob, completed[0]) if completed else None,
        recent_failures=[_row(FinishedJob, r) for r in failures],
        refresh=refresh,
        factors=factor_facts,
        host=_row(HostFacts, host),
        control=control_facts,
    )


async def gather_universe(conn: asyncpg.Connection, settings: Settings) -> UniverseFacts:
    """The universe's freshness and betas, as of one moment (the /metrics gauges)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        now = await conn.fetchval(sql.NOW)
        calendar = shared_calendar(settings.refresh_calendar)
        counts = await _refresh_counts(conn, calendar.last_completed_session(now))
        return UniverseFacts(counts, await _factors(conn))


async def gather_depth(conn: asyncpg.Connection | asyncpg.Pool) -> QueueDepth:
    """Only the queue depth (pending and processing jobs) and the oldest pending age: one cheap
    statement."""
    return await _depth(conn, sql.LIVE_COUNTS, LIVE_STATUSES)


async def gather_history(
    conn: asyncpg.Connection, minutes: int = HISTORY_MINUTES
) -> list[MinuteCounts]:
    """Jobs completed and failed per minute, oldest minute first, every minute present."""
    rows = await conn.fetch(sql.FINISHED_PER_MINUTE, minutes)
    by_minute = {m: {"completed": 0, "failed": 0} for m in range(minutes)}
    for r in rows:
        if r["minutes_ago"] in by_minute:
            by_minute[r["minutes_ago"]][r["status"]] = r["jobs"]
    return [MinuteCounts(m, c["completed"], c["failed"]) for m, c in sorted(by_minute.items())][
        ::-1
    ]


async def _depth(
    conn: asyncpg.Connection | asyncpg.Pool, statement: str, statuses: tuple[str, ...]
) -> QueueDepth:
    rows = await conn.fetch(statement)
    counts: dict[str, dict[str, int]] = {
        status: dict.fromkeys(PRIORITIES, 0) for status in statuses
    }
    oldest: float | None = None
    for r in rows:
        counts.setdefault(r["status"], dict.fromkeys(PRIORITIES, 0))[r["priority"]] = r["jobs"]
        if r["status"] == "pending":
            oldest = max(oldest or 0.0, r["oldest_age_s"])
    return QueueDepth(counts=counts, oldest_pending_age_s=oldest)


async def _refresh(conn: asyncpg.Connection, settings: Settings, now: datetime) -> RefreshFacts:
    calendar = shared_calendar(settings.refresh_calendar)
    through = calendar.last_completed_session(now)
    counts = await _refresh_counts(conn, through)
    last = await conn.fetchrow(sql.LAST_SCHEDULE_RUN)
    times = ScheduleTimes.from_settings(settings, calendar)
    catch_up = await catch_up_day(conn, times, now)
    return RefreshFacts(
        calendar=calendar.name,
        through_session=through,
        **asdict(counts),
        last_batch=None if last is None else _row(RefreshBatch, last),
        next_scheduled_refresh=None if times is None else times.next_after(now),
        catch_up_trading_day=catch_up,
        catch_up_scheduled_at=(
            None if times is None or catch_up is None else times.scheduled_at(catch_up)
        ),
    )


async def _refresh_counts(conn: asyncpg.Connection, through: date) -> RefreshCounts:
    facts = await conn.fetchrow(sql.REFRESH_FACTS, through)
    assert facts is not None  # an aggregate without GROUP BY: always one row
    return _row(RefreshCounts, facts)


async def _factors(conn: asyncpg.Connection, unavailable: str | None = None) -> FactorFacts:
    facts = await conn.fetchrow(sql.FACTOR_FACTS)
    assert facts is not None  # an aggregate without GROUP BY: always one row
    return replace(_row(FactorFacts, facts), unavailable=unavailable)


def _breaker(row: asyncpg.Record, threshold: int) -> CircuitBreaker:
    failures = row["consecutive_failures"]
    paused = row["remaining_s"] is not None and row["remaining_s"] > 0
    state: BreakerState
    if threshold <= 0:
        state = "off"
    elif failures < threshold:
        state = "closed"
    else:
        state = "open" if paused else "half-open"
    return CircuitBreaker(row["source"], state, failures, threshold)


def _row(cls: type[Fact], row: asyncpg.Record) -> Fact:
    """A status fact from a row whose columns are named after its fields (others ignored; a
    field with a default may have no column)."""
    columns = set(row.keys())
    return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in columns})


# --- views: JSON and text --------------------------------------------------------------------------


def report_dict(report: StatusReport) -> dict[str, Any]:
    """The JSON view: every field, datetimes as ISO 8601, seconds to 0.1 s."""
    plain: dict[str, Any] = _plain(report)
    return plain


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 1)
    return value


def format_text(report: StatusReport) -> str:
    """The text view: every field of `report_dict`, each group shown even when empty."""
    d = report_dict(report)
    lines = [
        f"status at {d['generated_at']} (stall timeout {d['stall_timeout_s']} s)",
        "jobs by status (high/normal/low):",
    ]
    for status, by_priority in d["counts"].items():
        parts = "/".join(str(by_priority[p]) for p in PRIORITIES)
        lines.append(f"  {status:<11} {sum(by_priority.values()):>8}  ({parts})")
    oldest = d["oldest_pending"]
    lines.append(
        "oldest pending: none"
        if oldest is None
        else f"oldest pending: {oldest['symbol']} {oldest['job_id']} ({oldest['priority']},"
        f" attempts {oldest['attempts']}) enqueued {oldest['created_at']},"
        f" waiting {oldest['wait_s']} s"
    )
    lines.append(f"running: {len(d['running'])}")
    for r in d["running"]:
        lines.append(
            f"  {r['symbol']:<12} {r['job_id']}  {r['priority']}  owner {r['owner']}"
            f"  attempt {r['attempt']}  running {r['running_s']} s"
            f"  heartbeat {r['heartbeat_age_s']} s ago"
            + ("  STALLED (past the stall timeout)" if r["stalled"] else "")
        )
    lines.append(f"in backoff: {d['backoff_total']}")
    for r in d["backoff"]:
        lines.append(
            f"  {r['symbol']:<12} {r['job_id']}  {r['priority']}  attempts {r['attempts']}"
            f"  next run {r['next_run_at']} (in {r['next_run_in_s']} s)"
            f"  last error: {r['last_error'] or 'none'}"
        )
    if d["backoff_total"] > len(d["backoff"]):
        lines.append(f"  ... and {d['backoff_total'] - len(d['backoff'])} more")
    lines.append(f"paused sources: {len(d['paused_sources'])}")
    for s in d["paused_sources"]:
        until = (
            "until resumed"
            if s["until_resumed"]
            else f"until {s['paused_until']} ({s['remaining_s']} s left)"
        )
        lines.append(
            f"  {s['source']:<10} {until} by {s['paused_by'] or 'the worker (automatic)'}: "
            f"{s['reason'] or 'no reason recorded'}"
        )
    lines.extend(control.format_text(d["control"]))
    lines.append(f"circuit breakers: {len(d['circuit_breakers'])}")
    for b in d["circuit_breakers"]:
        lines.append(
            f"  {b['source']:<10} {b['state']}  {b['consecutive_failures']} consecutive"
            f" failure(s), threshold {b['threshold']}"
        )
    alive = sum(1 for w in d["workers"] if w["alive"])
    lines.append(f"workers: {alive} alive, {len(d['workers']) - alive} dead")
    for w in d["workers"]:
        lines.append(
            f"  {w['worker_id']}  {'alive' if w['alive'] else 'DEAD'}"
            + ("  stopping" if w["stopping"] else "")
            + f"  host {w['host']} pid {w['pid']} version {w['version']}"
            f"  jobs {w['jobs_in_flight']}/{w['concurrency']}  started {w['started_at']}"
            f" (up {w['up_s']} s)  claim loop {w['last_tick_age_s']} s ago"
            f"  heartbeat {w['heartbeat_age_s']} s ago"
            + (f"  {w['http_url']}" if w["http_url"] else "")
        )
    last = d["last_completed"]
    lines.append(
        "last completed: none"
        if last is None
        else f"last completed: {last['symbol']} {last['job_id']} ({last['priority']},"
        f" attempts {last['attempts']}) at {last['finished_at']} ({last['ago_s']} s ago)"
    )
    lines.append(f"recent failures: {len(d['recent_failures'])}")
    for r in d["recent_failures"]:
        lines.append(
            f"  {r['symbol']:<12} {r['job_id']}  {r['priority']}  attempts {r['attempts']}"
            f"  {r['finished_at']} ({r['ago_s']} s ago)  {r['error']}"
        )
    r = d["refresh"]
    lines.append(
        f"symbols ({r['calendar']} through session {r['through_session']}): {r['current']} current,"
        f" {r['behind']} behind"
        + (f" (oldest last_price_date {r['oldest_last_price_date']})" if r["behind"] else "")
        + f", {r['without_prices']} without prices, {r['delisted']} delisted,"
        f" {r['error']} in error"
        + (" (`python -m worker show SYMBOL` says why)" if r["error"] else "")
    )
    lines.append(f"refresh jobs live: {r['refresh_jobs_live']}")
    batch = r["last_batch"]
    lines.append(
        "last refresh batch: none"
        if batch is None
        else f"last refresh batch: {batch['trading_day']} ({batch['jobs']} jobs through session"
        f" {batch['through_session']}, enqueued {batch['enqueued_at']} by {batch['worker_id']})"
    )
    lines.append(
        f"next scheduled refresh: {r['next_scheduled_refresh'] or 'off (REFRESH_SCHEDULE_TIME)'}"
    )
    if r["catch_up_trading_day"]:
        lines.append(
            f"refresh batch of {r['catch_up_trading_day']} (scheduled"
            f" {r['catch_up_scheduled_at']}) not enqueued yet: a running worker enqueues it at"
            " its next housekeeping round"
        )
    f = d["factors"]
    lines.append(
        f"betas: {f['with_betas']} active symbols with betas"
        + (
            f" (oldest calculation date {f['oldest_last_factor_date']})"
            if f["oldest_last_factor_date"]
            else ""
        )
        + f", {f['without_betas']} without, {f['waiting_for_references']} waiting for"
        " reference ETF prices"
    )
    if f["unavailable"]:
        lines.append(f"betas unavailable: {f['unavailable']} (prices still flow)")
    h = d["host"]
    if h["host_price_disagreements"]:
        lines.append(
            f"host prices: {h['host_price_disagreements']} market_data_cache rows the host wrote"
            f" disagree with the worker's close ({h['symbols']} symbols, last seen"
            f" {h['last_seen']}; kept as the host wrote them, see host_price_disagreements)"
        )
    return "\n".join(lines)
