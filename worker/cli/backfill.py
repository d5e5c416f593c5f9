"""`python -m worker backfill`: its options, its progress (a redrawn terminal line or log lines)
and its summary; the copy itself is worker/host/backfill.py's."""

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.host.backfill import (
    DEFAULT_BATCH_SIZE,
    LOG_INTERVAL_S,
    MAX_BATCH_SIZE,
    MAX_JOBS,
    BackfillError,
    BackfillProgress,
    BackfillSummary,
    backfill,
    check_batch_size,
    check_jobs,
    parse_symbols,
)

log = structlog.get_logger()


def format_duration(seconds: float | None) -> str:
    """`3725.2` -> `1:02:05`; None -> `--:--`."""
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_progress(p: BackfillProgress) -> str:
    """One terminal line: rows done of total, percentage, rows/s and ETA."""
    percent = 100.0 * p.rows_done / p.rows_total if p.rows_total else 100.0
    return (
        f"backfill {p.rows_done:,}/{p.rows_total:,} rows ({percent:.1f}%), "
        f"{p.rows_inserted:,} inserted, {p.symbols_added:,} symbols added, "
        f"{p.rows_per_s:,.0f} rows/s, ETA {format_duration(p.eta_s)}"
    )


def format_summary(s: BackfillSummary) -> str:
    """The end-of-run summary, for a person at a terminal."""
    verb = "would insert" if s.dry_run else "inserted"
    lines = [
        f"backfill {'dry run ' if s.dry_run else ''}done in {format_duration(s.elapsed_s)}: "
        f"{s.rows_seen:,} cache rows in {s.batches:,} batches ({s.rows_per_s:,.0f} rows/s)",
        f"  rows {verb}: {s.rows_inserted:,}, skipped (already there): {s.rows_skipped:,}",
        f"  rows refused by the price rule (never copied): {s.rows_invalid_total:,}"
        + (
            " (" + ", ".join(f"{reason} {n:,}" for reason, n in s.rows_invalid.items()) + ")"
            if s.rows_invalid
            else ""
        ),
        f"  symbols {'to add' if s.dry_run else 'added'} to symbol_universe: {s.symbols_added:,}, "
        f"last_price_date {'to move' if s.dry_run else 'moved'} forward: {s.symbols_updated:,}",
        "  adj_close_price: "
        + ("copied from adjusted_close" if s.adjusted_close else "NULL (no adjusted_close column)"),
    ]
    if s.symbols_not_found:
        lines.append(f"  not in market_data_cache: {', '.join(s.symbols_not_found)}")
    return "\n".join(lines)


class TerminalProgress:
    """Redraws one progress line in place on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._drawn = False

    def __call__(self, p: BackfillProgress) -> None:
        self.stream.write(f"\r\x1b[K{format_progress(p)}")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the progress line, so what follows starts on its own line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class LogProgress:
    """A `backfill_progress` log line at most every `interval_s` (the first batch always logs)."""

    def __init__(
        self, interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: float | None = None

    def __call__(self, p: BackfillProgress) -> None:
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_s:
            return
        self._last = now
        eta = p.eta_s
        log.info(
            "backfill_progress",
            rows_done=p.rows_done,
            rows_total=p.rows_total,
            rows_inserted=p.rows_inserted,
            symbols_added=p.symbols_added,
            batches=p.batches,
            last_symbol=p.last_symbol,
            rows_per_s=round(p.rows_per_s, 1),
            eta_s=None if eta is None else round(eta, 1),
        )

    def close(self) -> None:
        """Nothing to end: log lines are complete."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `backfill` subcommand's options."""
    parser.add_argument(
        "--batch-size",
        type=_batch_size_arg,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"cache rows per transaction, rounded up to whole symbols "
        f"(1 to {MAX_BATCH_SIZE:,}; default {DEFAULT_BATCH_SIZE:,})",
    )
    parser.add_argument(
        "--jobs",
        type=_jobs_arg,
        default=1,
        metavar="N",
        help=f"connections running batches side by side (1 to {MAX_JOBS}; default 1)",
    )
    parser.add_argument(
        "--symbols",
        type=_symbols_arg,
        default=None,
        metavar="A,B,...",
        help="only these symbols (comma-separated); exit status 1 if one has no cache rows",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="write nothing; report what a real run would insert, skip and add",
    )


async def command(args: argparse.Namespace, database: str | AsyncEngine) -> int:
    """Run `python -m worker backfill`; 0 when done. BackfillError when it could not run or a
    requested symbol has no cache rows (after copying the others)."""
    on_terminal = sys.stderr.isatty()
    reporter: TerminalProgress | LogProgress = (
        TerminalProgress(sys.stderr) if on_terminal else LogProgress()
    )
    try:
        summary = await backfill(
            database,
            batch_size=args.batch_size,
            symbols=args.symbols,
            dry_run=args.dry_run,
            jobs=args.jobs,
            progress=reporter,
        )
    except BackfillError:
        reporter.close()
        raise  # the command line prints it as one line
    except asyncio.CancelledError:
        reporter.close()
        # Every committed batch stays; a rerun skips those rows at ON CONFLICT speed.
        log.warning("backfill_interrupted", hint="rerun the same command to resume")
        raise
    reporter.close()
    if on_terminal:
        print(format_summary(summary), file=sys.stderr)
    else:
        log.info("backfill_finished", **summary.log_fields())
    if summary.symbols_not_found:
        raise BackfillError(
            f"no market_data_cache rows for {', '.join(summary.symbols_not_found)} "
            "(the other symbols were copied)"
        )
    return 0


def _batch_size_arg(raw: str) -> int:
    return _int_arg(raw, "batch size", check_batch_size)


def _jobs_arg(raw: str) -> int:
    return _int_arg(raw, "jobs", check_jobs)


def _int_arg(raw: str, name: str, check: Callable[[object], int]) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {name} {raw!r}: expected an integer") from None
    try:
        return check(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _symbols_arg(raw: str) -> list[str]:
    try:
        return parse_symbols(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
