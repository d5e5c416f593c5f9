"""Operator controls: cancel jobs; pause and resume a price source or the whole queue.

Everything is stored in the database (worker/sql/control.py), so every worker on every machine
honours it, and it outlives restarts:

- `cancel`: a pending job ends `cancelled` at once; a running one is marked, and its worker stops
  it (NOTIFY at once, or its next heartbeat), rolls back its writes and records `cancelled`
  (Runner: `_cancel_requested`). A job that committed its completion first stays completed;
  the command waits for running jobs to end and says which way each went.
- `pause SOURCE`: the rate limiter's own pause (`price_source_state`), with who paused it; every
  worker checks it before each request, and defers the jobs that need the source.
- `pause --queue`: no worker claims (the claim reads it); enqueueing goes on.

The docs: docs/operations/cancel-and-pause.md.
"""

import argparse
import asyncio
import getpass
import re
import socket
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from worker.core.db import Connection
from worker.core.errors import WorkerError, translates_database_errors
from worker.core.symbols import InvalidSymbolError, normalize_symbol
from worker.sql import control as sql

CANCEL_CHANNEL = sql.CANCEL_CHANNEL
RECENT_CANCELLED_LIMIT = 10
# How long `cancel` waits, by default, for the running jobs it asked to stop: a worker notices at
# once (NOTIFY) or within one heartbeat; stopping a fetch and rolling back takes moments.
CANCEL_WAIT_S = 30.0
CANCEL_POLL_S = 0.2

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

Fact = TypeVar("Fact")


class ControlError(WorkerError):
    """An operator command that cannot do what it was asked (one line for the command line)."""


def parse_duration(text: str) -> float:
    """`"90s"`, `"15m"`, `"2h"`, `"1d"` -> seconds; ValueError naming the accepted forms."""
    match = _DURATION.match(text.lower())
    seconds = float(match.group(1)) * _UNITS_S[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise ValueError(
            f"invalid duration {text!r}: expected a number and a unit, s, m, h or d"
            " (e.g. 90s, 15m, 2h)"
        )
    return seconds


def operator_name(given: str | None = None) -> str:
    """Who acts: `--by`, else the OS user at this host (what status shows as `paused by`)."""
    if given and given.strip():
        return given.strip()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# --- cancel ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelOutcome:
    job_id: uuid.UUID
    symbol: str | None
    # cancelled, cancelling, already completed / failed / cancelled, not found; after waiting
    # for a running job: cancelled, completed (it committed first), or still cancelling.
    result: str


@translates_database_errors
async def cancel(conn: asyncpg.Connection, job_id: uuid.UUID, by: str) -> str:
    """Cancel one job (cancel_symbol_onboarding); returns what it did."""
    return str(await conn.fetchval(sql.CANCEL, job_id, by))


@translates_database_errors
async def live_jobs_of(
    conn: asyncpg.Connection, symbols: Sequence[str]
) -> list[tuple[uuid.UUID, str]]:
    """The pending or processing job of each of `symbols` that has one."""
    return [(r["id"], r["symbol"]) for r in await conn.fetch(sql.LIVE_JOBS_OF, list(symbols))]


@translates_database_errors
async def job_status(conn: asyncpg.Connection, job_id: uuid.UUID) -> str | None:
    return await conn.fetchval(sql.JOB_STATUS, job_id)  # type: ignore[no-any-return]


async def wait_for_cancelled(
    conn: asyncpg.Connection,
    outcomes: list[CancelOutcome],
    timeout_s: float,
    *,
    poll_s: float = CANCEL_POLL_S,
) -> list[CancelOutcome]:
    """Wait up to `timeout_s` for each `cancelling` job to end; its outcome becomes how it
    ended (cancelled, or completed: its completion committed before the cancel)."""
    deadline = time.monotonic() + timeout_s
    results = list(outcomes)
    while True:
        waiting = [i for i, o in enumerate(results) if o.result == "cancelling"]
        for i in waiting:
            status = await job_status(conn, results[i].job_id)
            if status not in ("processing", None):
                results[i] = CancelOutcome(results[i].job_id, results[i].symbol, str(status))
        if not any(o.result == "cancelling" for o in results) or time.monotonic() >= deadline:
            return results
        await asyncio.sleep(poll_s)


# The worker's side (worker/runner.py).


@translates_database_errors
async def cancel_requested(
    db: asyncpg.Pool | Connection, job_ids: Sequence[uuid.UUID], worker_id: str
) -> set[uuid.UUID]:
    """Which of this worker's running jobs an operator asked to cancel."""
    rows = await db.fetch(sql.CANCEL_REQUESTED, list(job_ids), worker_id)
    return {r["id"] for r in rows}


@translates_database_errors
async def finish_cancelled(
    db: asyncpg.Pool | Connection,
    job_id: uuid.UUID,
    worker_id: str,
    started_at: datetime,
) -> bool:
    """Record `cancelled` for this claim, once its job has stopped; False when the claim is no
    longer ours or no cancel was asked (then it completed, was recovered, or is not cancelled)."""
    return bool(await db.fetchval(sql.FINISH_CANCELLED, job_id, worker_id, started_at) == 1)


# --- pause and resume -------------------------------------------------------------------------


@dataclass(frozen=True)
class PauseEnd:
    paused_until: datetime
    until_resumed: bool


@translates_database_errors
async def pause_source(
    conn: asyncpg.Connection, source: str, seconds: float | None, reason: str | None, by: str
) -> PauseEnd:
    """Pause `source` for every worker for `seconds` (None: until resumed)."""
    row = await conn.fetchrow(sql.PAUSE_SOURCE, source, seconds, reason, by)
    assert row is not None  # an upsert ... RETURNING always returns its row
    return PauseEnd(row["paused_until"], row["until_resumed"])


@translates_database_errors
async def resume_source(conn: asyncpg.Connection, source: str) -> int | None:
    """End `source`'s pause (whoever made it); the jobs deferred behind it woken, or None when
    it was not paused."""
    woken = await conn.fetchval(sql.RESUME_SOURCE, source)
    return None if woken is None else int(woken)


@translates_database_errors
async def pause_queue(
    conn: asyncpg.Connection, seconds: float | None, reason: str | None, by: str
) -> PauseEnd:
    """Stop every worker claiming for `seconds` (None: until resumed)."""
    row = await conn.fetchrow(sql.PAUSE_QUEUE, sql.QUEUE_NAME, seconds, reason, by)
    assert row is not None
    return PauseEnd(row["paused_until"], row["until_resumed"])


@translates_database_errors
async def resume_queue(conn: asyncpg.Connection) -> bool:
    """Let the workers claim again; False when the queue was not paused."""
    return bool(await conn.fetchval(sql.RESUME_QUEUE, sql.QUEUE_NAME))


# --- the facts status, the page and /metrics show ----------------------------------------------


@dataclass(frozen=True)
class QueuePause:
    queue: str
    paused_until: datetime
    reason: str | None
    paused_by: str
    paused_at: datetime
    until_resumed: bool
    remaining_s: float


@dataclass(frozen=True)
class SourcePause:
    source: str
    paused: bool
    paused_until: datetime | None
    reason: str | None
    paused_by: str | None  # None: the worker paused it (rate limit, block, circuit breaker)
    paused_at: datetime | None
    until_resumed: bool
    remaining_s: float


@dataclass(frozen=True)
class CancelledJob:
    job_id: str
    symbol: str
    kind: str
    cancelled_by: str | None
    cancelled_at: datetime
    ago_s: float
    detail: str | None


@dataclass(frozen=True)
class ControlFacts:
    queue_pause: QueuePause | None
    sources: list[SourcePause]  # every source with shared state, paused or not
    recent_cancelled: list[CancelledJob]

    @property
    def paused_sources(self) -> list[SourcePause]:
        return [s for s in self.sources if s.paused]


async def gather(conn: asyncpg.Connection | asyncpg.Pool, *, sources: bool = True) -> ControlFacts:
    """The pauses and the latest cancellations (run inside status's snapshot when it has one).
    `sources=False`: no per-source list (status shows source pauses with its own facts)."""
    queue_pause = await conn.fetchrow(sql.QUEUE_PAUSE)
    source_rows = await conn.fetch(sql.SOURCE_PAUSES) if sources else []
    cancelled = await conn.fetch(sql.LAST_CANCELLED, RECENT_CANCELLED_LIMIT)
    return ControlFacts(
        queue_pause=None if queue_pause is None else _row(QueuePause, queue_pause),
        sources=[_row(SourcePause, r) for r in source_rows],
        recent_cancelled=[_row(CancelledJob, r) for r in cancelled],
    )


def _row(cls: type[Fact], row: asyncpg.Record) -> Fact:
    return cls(**{f.name: row[f.name] for f in fields(cls)})  # type: ignore[arg-type]


def describe_until(paused_until: datetime | None, until_resumed: bool) -> str:
    if until_resumed:
        return "until resumed"
    return f"until {paused_until.isoformat(timespec='seconds')}" if paused_until else ""


def format_text(facts: dict[str, Any]) -> list[str]:
    """The lines `status` prints from the JSON view of ControlFacts (same values): the queue's
    pause and the latest cancellations (source pauses, the operator's and the worker's, are in
    status's `paused sources`)."""
    q = facts["queue_pause"]
    if q is None:
        lines = ["queue: claiming"]
    else:
        until = (
            "until resumed"
            if q["until_resumed"]
            else f"until {q['paused_until']} ({q['remaining_s']} s left)"
        )
        lines = [
            f"queue {q['queue']}: PAUSED {until} by {q['paused_by']} (since {q['paused_at']}):"
            f" {q['reason'] or 'no reason given'}; enqueueing goes on,"
            " `python -m worker resume --queue` ends it"
        ]
    lines.append(f"recent cancellations: {len(facts['recent_cancelled'])}")
    for c in facts["recent_cancelled"]:
        lines.append(
            f"  {c['symbol']:<12} {c['job_id']}  {c['kind']}  by {c['cancelled_by'] or 'unknown'}"
            f"  at {c['cancelled_at']} ({c['ago_s']} s ago)  {c['detail'] or ''}"
        )
    return lines


# --- the commands (registered in worker/cli.py) -----------------------------------------------


def add_cancel_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "job_ids", nargs="*", type=_uuid_arg, default=[], metavar="JOB_ID", help="jobs to cancel"
    )
    target.add_argument(
        "--symbol",
        dest="symbols",
        nargs="+",
        metavar="SYMBOL",
        help="cancel the pending or running job of each symbol",
    )
    parser.add_argument("--by", metavar="NAME", help="who cancels (default: OS user@host)")
    parser.add_argument(
        "--wait",
        type=_duration_arg,
        default=CANCEL_WAIT_S,
        metavar="DURATION",
        help=f"wait this long for running jobs to stop (default: {CANCEL_WAIT_S:g}s; 0s: do not"
        " wait, they show as cancelling)",
    )


def add_pause_arguments(parser: argparse.ArgumentParser, *, resume: bool) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "source", nargs="?", metavar="SOURCE", help="a price source: yahoo, polygon, tiingo, fmp"
    )
    target.add_argument(
        "--queue",
        action="store_true",
        help="the whole queue: no worker claims (enqueueing goes on)"
        if not resume
        else "the whole queue: workers claim again",
    )
    if resume:
        return
    parser.add_argument(
        "--for",
        dest="duration",
        type=_duration_arg,
        metavar="DURATION",
        help="e.g. 90s, 15m, 2h (default: until `resume`)",
    )
    parser.add_argument("--reason", metavar="TEXT", help="why (shown by status and the page)")
    parser.add_argument("--by", metavar="NAME", help="who pauses (default: OS user@host)")


def _uuid_arg(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a job id (a UUID), got {raw!r}") from None


def _duration_arg(raw: str) -> float:
    if raw.strip() in ("0", "0s"):
        return 0.0
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def cancel_command(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    """`cancel`: one line per job, `JOB_ID<TAB>SYMBOL<TAB>what happened`; exit 1 when a job was
    not found or is still stopping after --wait."""
    by = operator_name(args.by)
    targets: list[tuple[uuid.UUID, str | None]] = [(j, None) for j in args.job_ids]
    missing: list[str] = []
    if args.symbols:
        try:
            symbols = [normalize_symbol(s) for s in args.symbols]
        except InvalidSymbolError as exc:
            raise ControlError(f"{exc}; nothing was cancelled") from None
        live = await live_jobs_of(conn, symbols)
        targets += [(job_id, symbol) for job_id, symbol in live]
        missing = [s for s in symbols if s not in {symbol for _, symbol in live}]
    outcomes = []
    for job_id, symbol in targets:
        outcomes.append(CancelOutcome(job_id, symbol, await cancel(conn, job_id, by)))
    if args.wait > 0:
        outcomes = await wait_for_cancelled(conn, outcomes, args.wait)
    for o in outcomes:
        print(f"{o.job_id}\t{o.symbol or '-'}\t{_say(o.result)}")
    for symbol in missing:
        print(f"-\t{symbol}\tno pending or running job")
    unfinished = [o for o in outcomes if o.result in ("not found", "cancelling")]
    return 1 if missing or unfinished else 0


def _say(result: str) -> str:
    return {
        "completed": "completed before the cancel landed (kept)",
        "failed": "failed before the cancel landed (kept)",
        "cancelling": "cancelling (running: its worker stops it and records cancelled)",
    }.get(result, result)


async def pause_command(
    args: argparse.Namespace, conn: asyncpg.Connection, known_sources: Collection[str]
) -> int:
    by = operator_name(args.by)
    seconds = args.duration or None
    if args.queue:
        end = await pause_queue(conn, seconds, args.reason, by)
        print(
            f"queue paused {describe_until(end.paused_until, end.until_resumed)} by {by}:"
            " no worker claims (enqueueing goes on)"
        )
        return 0
    source = _check_source(args.source, known_sources)
    end = await pause_source(conn, source, seconds, args.reason, by)
    print(f"{source} paused {describe_until(end.paused_until, end.until_resumed)} by {by}")
    return 0


async def resume_command(
    args: argparse.Namespace, conn: asyncpg.Connection, known_sources: Collection[str]
) -> int:
    if args.queue:
        was = await resume_queue(conn)
        print("queue resumed: workers claim again" if was else "queue was not paused")
        return 0
    source = _check_source(args.source, known_sources)
    woken = await resume_source(conn, source)
    print(
        f"{source} was not paused"
        if woken is None
        else f"{source} resumed; {woken} deferred job(s) runnable now"
    )
    return 0


def _check_source(raw: str, known: Collection[str]) -> str:
    source = raw.strip().lower()
    if source not in known:
        raise ControlError(
            f"unknown price source {raw!r}: expected one of {', '.join(sorted(known))}"
            " (only HTTP sources are rate limited and paused)"
        )
    return source
