"""`python -m worker factors [--symbols A,B] [--as-of DATE] [--dry-run]`: recompute the betas of
every active symbol (or the listed ones), `FACTOR_BATCH_SIZE` symbols per transaction on each of
`FACTOR_CONNECTIONS` connections at once, each batch read in one query (a second for the few
symbols the cut read leaves short) and solved by `compute_betas` in one go, every batch
committed on its own (a failure stops the command; a rerun recomputes all, safely). A progress
line on a terminal, `factors_progress` log lines otherwise; a summary at the end (computed,
skipped and why, read again). Exit status 1 when a listed symbol is not active."""

import asyncio
import sys
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

import structlog

from worker.core.db import Connection
from worker.core.settings import Settings
from worker.factors.service import RECENT_DATES, Recomputed, recompute_factors
from worker.factors.store import FactorStore
from worker.host.tables import NO_HOST, HostTables

LOG_INTERVAL_S = 10.0
log = structlog.get_logger("worker.factors")


async def command(
    conns: Sequence[Connection],
    store: FactorStore,
    settings: Settings,
    symbols: Sequence[str] | None,
    as_of: date | None,
    dry_run: bool,
    host: HostTables = NO_HOST,
) -> int:
    """Recompute on `conns` (FACTOR_CONNECTIONS of them): each takes the next batch when it
    has written its last, so one batch is read on the server while another is solved here."""
    started = time.monotonic()
    active, inactive = await store.active_symbols(conns[0], symbols)
    on_terminal = sys.stderr.isatty()
    total = Recomputed(dry_run=dry_run)
    last_log = float("-inf")
    size = settings.factor_batch_size
    batches = iter(range(0, len(active), size))

    async def lane(conn: Connection) -> None:
        nonlocal last_log
        for first in batches:  # shared: each batch goes to one lane
            # recompute_factors' transaction is the batch's (committed on its own).
            total.add(
                await recompute_factors(
                    conn,
                    active[first : first + size],
                    store=store,
                    as_of=as_of,
                    history_days=settings.factor_history_days,
                    dry_run=dry_run,
                    host=host,
                )
            )
            elapsed = time.monotonic() - started
            if on_terminal:
                sys.stderr.write(f"\r\x1b[K{format_progress(total, len(active), elapsed)}")
                sys.stderr.flush()
            elif time.monotonic() - last_log >= LOG_INTERVAL_S:
                last_log = time.monotonic()
                log.info(
                    "factors_progress",
                    symbols_done=total.symbols,
                    symbols_total=len(active),
                    computed=total.computed,
                    symbols_per_s=round(total.symbols / elapsed, 1) if elapsed > 0 else None,
                )

    try:
        async with asyncio.TaskGroup() as lanes:  # a failing batch stops the other lanes
            for conn in conns:
                lanes.create_task(lane(conn))
    except ExceptionGroup as group:  # the command line reports one error, as it is
        for other in group.exceptions[1:]:  # another lane failed too, before it was stopped
            log.error("factors_batch_failed", error=f"{type(other).__name__}: {other}")
        raise group.exceptions[0] from None
    elapsed = time.monotonic() - started
    if on_terminal:
        if active:
            sys.stderr.write("\n")
        print(format_summary(total, elapsed, store.shape, inactive), file=sys.stderr)
    else:
        log.info("factors_finished", **summary_fields(total, elapsed, store.shape))
    if inactive:
        log.error(
            "factors_symbols_not_active",
            symbols={symbol: status or "unknown" for symbol, status in inactive},
        )
        return 1
    return 0


def format_progress(r: Recomputed, total: int, elapsed_s: float) -> str:
    percent = 100.0 * r.symbols / total if total else 100.0
    rate = r.symbols / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"factors {r.symbols:,}/{total:,} symbols ({percent:.1f}%), {r.computed:,} computed, "
        f"{rate:,.0f} symbols/s"
    )


def summary_fields(r: Recomputed, elapsed_s: float, shape: str) -> dict[str, Any]:
    return {
        "symbols": r.symbols,
        "computed": r.computed,
        "complete": r.complete,
        "skipped": r.skipped,
        "absent": r.absent,
        "rows_written": r.rows_written,
        "reread": r.reread,
        "table_shape": shape,
        "first_calculation_date": r.first_date.isoformat() if r.first_date else None,
        "last_calculation_date": r.last_date.isoformat() if r.last_date else None,
        "dry_run": r.dry_run,
        "elapsed_s": round(elapsed_s, 3),
    }


def format_summary(
    r: Recomputed, elapsed_s: float, shape: str, inactive: Sequence[tuple[str, str | None]]
) -> str:
    """The end-of-run summary, for a person at a terminal."""
    verb = "would write" if r.dry_run else "wrote"
    dates = (
        f"{r.first_date} to {r.last_date}"
        if r.first_date and r.first_date != r.last_date
        else str(r.last_date)
    )
    lines = [
        f"factors {'dry run ' if r.dry_run else ''}done in {elapsed_s:.1f} s: "
        f"{r.symbols:,} symbols, {r.computed:,} with betas ({r.complete:,} with all twelve)",
        f"  {verb} {r.rows_written:,} rows ({shape} table), calculation dates {dates}",
    ]
    if r.reread:
        lines.append(f"  read again without the {RECENT_DATES}-date cut: {r.reread:,} symbols")
    for reason, count in sorted(r.skipped.items()):
        lines.append(f"  skipped, {reason.replace('_', ' ')}: {count:,}")
    for reason, count in sorted(r.absent.items()):
        lines.append(f"  beta absent, {reason.replace('_', ' ')}: {count:,}")
    for symbol, status in inactive:
        lines.append(f"  not active: {symbol} ({status or 'unknown'})")
    return "\n".join(lines)
