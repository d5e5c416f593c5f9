"""Factor betas: what the onboarding job, the `factors` command and a refresh call.

Two pieces do the work, and every caller uses both: `betas.compute_betas` (pure numpy) and
`store.FactorStore` (reads price panels, writes either table shape). This module strings them
together:

- `recompute_factors(conn, symbols)`: read, compute, write for those symbols, in the caller's
  transaction (a savepoint). The `factors` command runs it per batch; a refresh that replaced a
  symbol's prices calls it for that symbol.
- `after_prices_stored(...)`: the onboarding job's factor step, in its write transaction, right
  after the prices and the job's completion.
- `resolve_waiting(...)`: betas for symbols that were waiting for reference ETFs.

Reference ETFs (SPY, TLT, VTV, VUG, MTUM, QUAL, IWM, USMV) are onboarded through the same queue
as any symbol. Betas dated D use every ETF's price of D (the host looks betas up at exactly its
last completed session). When a job stores a symbol's prices and an ETF lacks the symbol's latest
session (and the calendar has closed that session, so the ETF can have it), the job enqueues the
ETF's refresh (its onboarding if it has no prices; high priority; a live job is reused) and
records the symbol in `symbol_factor_waits`; the job still completes, so the prices are usable at
once, and `last_factor_date` is left as it is. The daily refresh enqueues the ETFs at high
priority, so they are usually current before the symbols are claimed. When a
reference ETF's job ends (completed, or failed for good), its transaction computes the betas of
every waiting symbol none of whose awaited ETFs has a live job any more, and removes them from
the waits. The housekeeping sweep does the same every WORKER_HOUSEKEEPING_INTERVAL_S, for what
a crashed job or a batch limit left behind.

The lost wake-up (a symbol starting to wait just as the last ETF's transaction looks for
waiters) is closed by a transaction-level advisory lock taken first in each write transaction:
shared by ordinary jobs, exclusive by a reference ETF's. The ETF's transaction therefore either
commits before the symbol's looks at the ETFs (the symbol sees fresh data and computes at once)
or waits for it to commit (and then sees its wait). Taken before any row lock, so it cannot
deadlock with the enqueue that raises a live ETF job's priority.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import structlog

from worker.core.db import Connection
from worker.core.settings import Settings
from worker.factors.betas import (
    COMPUTED,
    FACTORS,
    REASONS,
    REFERENCE_ETFS,
    ROWS_USED,
    Betas,
    compute_betas,
)
from worker.factors.store import FactorStore, ShapeError
from worker.host.tables import NO_HOST, HostTables

__all__ = [
    "RECENT_DATES",
    "REFERENCE_ETFS",
    "FactorStep",
    "FactorStore",
    "Recomputed",
    "ShapeError",
    "after_prices_stored",
    "lock_references",
    "recompute_factors",
    "resolve_waiting",
]

DEFAULT_HISTORY_DAYS: int = Settings.factor_history_days  # FACTOR_HISTORY_DAYS' default
RECENT_DATES = ROWS_USED + 10  # SPY's dates whose span is read per symbol at first (_recompute)
NO_PRICES = "no_prices_in_window"
NO_SPY = "spy_has_no_prices"

log = structlog.get_logger("worker.factors")


@dataclass
class Recomputed:
    """What a recompute did (or, with dry_run, would do)."""

    symbols: int = 0  # asked for
    computed: int = 0  # got at least one beta
    complete: int = 0  # got all twelve
    rows_written: int = 0  # exposure rows (wide: one per symbol; long: one per beta)
    skipped: dict[str, int] = field(default_factory=dict)  # why a symbol got no beta at all
    absent: dict[str, int] = field(default_factory=dict)  # "factor: why", among computed ones
    reread: int = 0  # symbols read a second time, without the cut (see _recompute)
    first_date: date | None = None  # calculation dates written
    last_date: date | None = None
    dry_run: bool = False

    def add(self, other: "Recomputed") -> None:
        self.symbols += other.symbols
        self.computed += other.computed
        self.complete += other.complete
        self.rows_written += other.rows_written
        self.reread += other.reread
        for mine, theirs in ((self.skipped, other.skipped), (self.absent, other.absent)):
            for reason, count in theirs.items():
                mine[reason] = mine.get(reason, 0) + count
        dates = [d for d in (self.first_date, other.first_date) if d is not None]
        self.first_date = min(dates, default=None)
        dates = [d for d in (self.last_date, other.last_date) if d is not None]
        self.last_date = max(dates, default=None)


async def lock_references(conn: Connection, symbol: str | None = None) -> None:
    """Take the reference lock for this transaction: call it first, before any write (a
    refresh's transaction too, if it then calls recompute_factors)."""
    await FactorStore.lock_references(conn, exclusive=symbol in REFERENCE_ETFS)


async def recompute_factors(
    conn: Connection,
    symbols: Sequence[str],
    *,
    store: FactorStore | None = None,
    as_of: date | None = None,
    history_days: int = DEFAULT_HISTORY_DAYS,
    dry_run: bool = False,
    host: HostTables = NO_HOST,
) -> Recomputed:
    """Compute and write the betas of `symbols` as of the latest data (or `as_of`), in one
    savepoint of the caller's transaction. `store`: detected once by the caller (else here);
    `host`: whose cached portfolio analytics go stale with the new betas."""
    if not symbols:
        return Recomputed(dry_run=dry_run)
    if store is None:
        store = await FactorStore.detect(conn)
    async with conn.transaction():
        await FactorStore.lock_references(conn, exclusive=False)
        result = await _recompute(conn, store, symbols, as_of, history_days, dry_run)
        if not dry_run and result.rows_written:
            await host.invalidate(conn, symbols)
        return result


async def _recompute(
    conn: Connection,
    store: FactorStore,
    symbols: Sequence[str],
    as_of: date | None,
    history_days: int,
    dry_run: bool = False,
) -> Recomputed:
    """recompute_factors' work, in the caller's transaction, which holds the reference lock."""
    result = Recomputed(symbols=len(set(symbols)), dry_run=dry_run)
    read = await store.read_panel(
        conn, symbols, as_of=as_of, history_days=history_days, recent_dates=RECENT_DATES
    )
    if read is None:
        result.skipped[NO_SPY] = result.symbols
        return result
    names, betas = list(read.symbols), compute_betas(read.panel)
    if read.recent_from is not None:
        # Prices were read from SPY's RECENT_DATES-th latest date on. A symbol whose regressions
        # did not all find their whole window there (a short history, dates an ETF lacks), or
        # that has no price since then, may find more before it: those are read again without
        # the cut. Every regression uses the latest dates its series share, and the cut read is
        # a suffix of them, so a whole window is the same window as the uncut read's.
        whole = betas.full_windows
        found = set(names)
        again = [n for n, w in zip(names, whole, strict=True) if not w]
        again += [s for s in dict.fromkeys(symbols) if s not in found]
        if again:
            result.reread = len(again)
            full = await store.read_panel(conn, again, as_of=as_of, history_days=history_days)
            if full is not None:  # else SPY's prices went in between: the first read stands
                keep = np.flatnonzero(whole)
                names = [names[i] for i in keep.tolist()] + list(full.symbols)
                betas = betas.take(keep).stacked(compute_betas(full.panel))
    unpriced = result.symbols - len(names)
    if unpriced:
        result.skipped[NO_PRICES] = unpriced
    _summarise(betas, result)
    if dry_run:
        result.rows_written = store.rows_for(betas)
    else:
        result.rows_written = await store.write(conn, names, betas)
    return result


def _summarise(betas: Betas, result: Recomputed) -> None:
    computed = betas.computed
    rows = computed.any(axis=1)
    result.computed += int(rows.sum())
    result.complete += int(computed.all(axis=1).sum())
    for status, count in zip(*np.unique(betas.status[~rows, 0], return_counts=True), strict=True):
        reason = REASONS[int(status)]
        result.skipped[reason] = result.skipped.get(reason, 0) + int(count)
    partial = betas.status[rows]
    for j, factor in enumerate(FACTORS):
        for status, count in zip(*np.unique(partial[:, j], return_counts=True), strict=True):
            if status != COMPUTED:
                key = f"{factor.column}: {REASONS[int(status)]}"
                result.absent[key] = result.absent.get(key, 0) + int(count)
    days = betas.calculation_day[rows]
    if days.size:
        epoch = date(1970, 1, 1)
        result.first_date = epoch + timedelta(days=int(days.min()))
        result.last_date = epoch + timedelta(days=int(days.max()))


@dataclass(frozen=True)
class FactorStep:
    """What the onboarding job's factor step did."""

    outcome: str  # computed | waiting | skipped
    waiting_for: tuple[str, ...] = ()
    resolved: int = 0  # waiting symbols this (reference ETF) job computed
    more_waiting: bool = False  # a batch limit left ready waiters for follow-up transactions


async def after_prices_stored(
    conn: Connection,
    store: FactorStore,
    symbol: str,
    last_price_date: date,
    *,
    through: date | None,
    history_days: int,
    batch_size: int,
    host: HostTables = NO_HOST,
    log: structlog.typing.FilteringBoundLogger = log,
) -> FactorStep:
    """The job's factor step, inside its write transaction (the caller took lock_references
    first): betas now if every reference ETF has the symbol's latest session, else bring them
    current and wait; then, for a reference ETF's own job, the waiting symbols it was the last to
    unblock. `through`: the last completed session of the calendar (None: unknown), which no ETF
    can be ahead of: an ETF that has it does not hold a later-dated symbol back."""
    started = time.perf_counter()
    dates, waiting = await FactorStore.reference_dates(conn, symbol)
    wanted = last_price_date if through is None else min(last_price_date, through)
    stale = tuple(
        etf for etf, last in dates.items() if etf != symbol and (last is None or last < wanted)
    )
    if stale:
        await FactorStore.enqueue_references(conn, stale)
        await FactorStore.wait_for_references(conn, symbol, stale)
        log.info(
            "factors_waiting",
            session=last_price_date.isoformat(),
            waiting_for=list(stale),
            missing=[e for e in stale if dates[e] is None],
        )
        step = FactorStep("waiting", waiting_for=stale)
    else:
        behind = {
            etf: last.isoformat()
            for etf, last in dates.items()
            if etf != symbol and last is not None and last < last_price_date
        }
        if behind:
            # A session the calendar has not closed for the ETFs (a foreign listing's day): the
            # betas are computed from the sessions the ETFs have, and dated accordingly.
            log.info("factors_references_behind", session=last_price_date.isoformat(), etfs=behind)
        result = await _recompute(conn, store, [symbol], None, history_days)
        if waiting:
            await FactorStore.stop_waiting(conn, [symbol])
        _log_symbol(log, result, started)
        step = FactorStep("computed" if result.computed else "skipped")
    if symbol in REFERENCE_ETFS:
        resolved, more = await resolve_waiting(
            conn, store, history_days=history_days, batch_size=batch_size, host=host
        )
        step = FactorStep(step.outcome, step.waiting_for, resolved, more)
    return step


def _log_symbol(log: structlog.typing.FilteringBoundLogger, r: Recomputed, started: float) -> None:
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
    if r.computed:
        log.info(
            "factors_computed",
            calculation_date=r.last_date.isoformat() if r.last_date else None,
            betas=len(FACTORS) - sum(r.absent.values()),
            absent=r.absent or None,
            elapsed_ms=elapsed_ms,
        )
    else:
        log.info("factors_not_computed", reasons=r.skipped, elapsed_ms=elapsed_ms)


async def resolve_waiting(
    conn: Connection,
    store: FactorStore,
    *,
    history_days: int = DEFAULT_HISTORY_DAYS,
    batch_size: int,
    host: HostTables = NO_HOST,
) -> tuple[int, bool]:
    """Betas for up to `batch_size` waiting symbols whose awaited ETFs have no live job, in the
    caller's transaction (which holds or here takes the exclusive reference lock). Returns how
    many were resolved and whether more are ready."""
    async with conn.transaction():
        await FactorStore.lock_references(conn, exclusive=True)
        ready = await FactorStore.ready_waiters(conn, batch_size + 1)
        symbols, more = ready[:batch_size], len(ready) > batch_size
        if not symbols:
            return 0, False
        result = await _recompute(conn, store, symbols, None, history_days)
        await FactorStore.stop_waiting(conn, symbols)
        await host.invalidate(conn, symbols)  # their betas changed
    log.info(
        "factors_waiters_resolved",
        symbols=len(symbols),
        computed=result.computed,
        skipped=result.skipped or None,
        more=more,
    )
    return len(symbols), more
