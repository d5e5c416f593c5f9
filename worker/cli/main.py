"""`python -m worker COMMAND`: argument parsing and wiring; the work lives in the modules it calls.

Exit codes: 0 success; 1 a fatal error, printed as one line on stderr (bad configuration, database
unreachable for a one-shot command, schema not migrated); 2 bad usage.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog
from sqlalchemy import pool as sa_pool
from sqlalchemy.exc import IntegrityError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential_jitter,
)

from worker.core import db, embedded, logs
from worker.core.db import asyncpg_dsn, redact
from worker.core.errors import ConfigurationError, DatabaseUnavailable, WorkerError
from worker.core.settings import WHOLE_NUMBER_ABOVE_ZERO, Settings
from worker.core.symbols import (
    InvalidPriorityError,
    InvalidSymbolError,
    UnknownRequesterError,
    normalize_symbol,
)
from worker.host import analytics_cache, backfill
from worker.host.tables import NO_HOST, HostTables
from worker.jobs import schedule
from worker.models.onboarding_queue import PRIORITIES
from worker.ops import migrate, status
from worker.queue import registry
from worker.queue import store as queue_ops
from worker.queue.housekeeping import Housekeeper
from worker.sql import prices as prices_sql

if TYPE_CHECKING:  # numpy loads with worker.factors: only the commands that use it import it
    from worker.core.metrics import Metrics
    from worker.factors.service import FactorStore
    from worker.factors.switch import FactorSwitch
    from worker.ops.web import StatusServer
    from worker.queue.housekeeping import Sweep

log = structlog.get_logger("worker.cli")

# Errors no retry can fix: say what is wrong in one line and exit 1.
FATAL_DB_ERRORS = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


class FatalError(WorkerError):
    """Stop with exit code 1 and this one-line message."""


# The settings each command reads: only these are checked before it starts, so a bad value of a
# setting a command never reads does not stop it (`WORKER_CONCURRENCY=abc` no longer blocks
# `enqueue`). None: every setting (`run` reads nearly all of them). tests/integration/
# test_command_settings.py runs each command and fails when it reads a setting not listed here.
_CONNECTION = frozenset(
    {
        # the database, or the embedded server when DATABASE_URL is unset
        "database_url",
        "embedded_pgdata",
        "statement_cache_size",
        "command_timeout_s",
        "lock_timeout_s",
        "idle_in_transaction_timeout_s",
        # the logs, which mask every secret
        "log_format",
        "log_level",
        "listen_database_url",
        "polygon_api_key",
        "tiingo_api_key",
        "fmp_api_key",
    }
)
COMMAND_SETTINGS: dict[str, frozenset[str] | None] = {
    "run": None,
    "health": _CONNECTION,
    "migrate": _CONNECTION,
    "enqueue": _CONNECTION,
    "retry": _CONNECTION,
    "prices": _CONNECTION,
    "backfill": _CONNECTION,
    "status": _CONNECTION
    | {
        "refresh_calendar",
        "refresh_schedule_time",
        "refresh_schedule_timezone",
        "stall_timeout_s",
        "source_failures_before_pause",
        "factors_enabled",  # says why betas are unavailable
    },
    "prune": _CONNECTION
    | {
        "concurrency",  # the pool's size
        "stall_timeout_s",
        "dead_worker_retention_s",
        "housekeeping_interval_s",
        "prune_batch_size",
        "prune_completed_days",
        "prune_failed_days",
    },
    "refresh": None,
    "factors": None,
}


DESCRIPTION = """\
Onboard stock symbols: a PostgreSQL job queue whose worker loads about a year of daily prices
for each enqueued symbol and marks it active.

Every command uses DATABASE_URL, or an embedded PostgreSQL in EMBEDDED_PGDATA (.data/pg) when it
is unset (created and migrated on first use). Settings are environment variables (see the
README); `python -m worker COMMAND --help` describes a command.
"""
EPILOG = """\
exit status: 0 success; 1 a fatal error, printed as one line on stderr (bad configuration,
database unreachable, schema not migrated); 2 bad usage
"""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "migrate" and args.downgrade and args.revision == "head":
        parser.error("migrate --downgrade needs a target revision, e.g. `base`")
    tracebacks = args.command == "run"  # a one-shot command prints one line unless debugging
    writer: logs.LineWriter | None = None
    try:
        settings = Settings.from_env(
            uses=COMMAND_SETTINGS[args.command],
            concurrency=getattr(args, "concurrency", None),
            price_source=getattr(args, "source", None),
        )
        tracebacks = tracebacks or settings.log_level.lower() == "debug"
        writer = logs.configure(
            settings, stream=sys.stderr if args.command != "run" else sys.stdout
        )
        return asyncio.run(_dispatch(args, settings))
    except (FatalError, ConfigurationError) as exc:
        _print_error(f"error: {exc}")
        return 1
    except DatabaseUnavailable as exc:  # `run --burst` gave up waiting for the database
        _print_error(f"error: database unavailable: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: one line for the operator, the traceback if useful
        if tracebacks:
            log.exception("fatal_error")
        _print_error(f"error: {type(exc).__name__}: {exc}".splitlines()[0])
        if not tracebacks:
            _print_error("(LOG_LEVEL=debug shows the traceback)")
        return 1
    finally:
        if writer is not None:
            writer.flush(timeout_s=2.0)  # bounded: a full pipe must not hold the exit


def _print_error(line: str) -> None:
    """The one-line error on stderr; a closed stderr must not turn exit 1 into a traceback.

    One os.write of the whole line: the background log writer shares the descriptor, and
    `print` would send the text and its newline separately, letting a log line in between.
    """
    with contextlib.suppress(OSError, ValueError):
        try:
            fd = sys.stderr.fileno()
        except (OSError, ValueError):  # a replaced stderr (tests, embedding): no descriptor
            print(line, file=sys.stderr, flush=True)
            return
        sys.stderr.flush()
        data = (line + "\n").encode()
        while data:  # a pipe takes a short line whole; a partial write is finished, not lost
            data = data[os.write(fd, data) :]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {registry.package_version('(not installed)')}",
        help="print the version",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the worker until SIGTERM/SIGINT")
    run.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="jobs in flight (WORKER_CONCURRENCY)",
    )
    run.add_argument("--burst", action="store_true", help="exit 0 once no runnable job remains")
    run.add_argument(
        "--source", help="price source or fallback chain, e.g. yahoo,polygon (PRICE_SOURCE)"
    )

    status = sub.add_parser("status", help="queue counts, running jobs, recent failures")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("health", help="exit 0 if the database is reachable and migrated to head")

    migrate_cmd = sub.add_parser(
        "migrate", help="migrate the database to head (creates or adopts; `alembic upgrade head`)"
    )
    migrate_cmd.add_argument(
        "revision", nargs="?", default="head", help="target revision (default: head)"
    )
    migrate_cmd.add_argument(
        "--downgrade",
        action="store_true",
        help="go down to REVISION instead (`base` removes everything this project created)",
    )

    enqueue = sub.add_parser("enqueue", help="enqueue symbols; prints each job id")
    enqueue.add_argument(
        "symbols", nargs="+", metavar="SYMBOL", help="ticker symbols, e.g. AAPL BRK.B ^GSPC"
    )
    enqueue.add_argument(
        "--priority",
        default="normal",
        choices=PRIORITIES,
        help="claim order: high, then normal, then low (default: normal)",
    )
    enqueue.add_argument(
        "--requested-by",
        type=_uuid_arg,
        metavar="UUID",
        help="the id of the user asking (must exist in users)",
    )

    retry = sub.add_parser(
        "retry", help="retry a failed job, or every failed job; --now: run a job in backoff now"
    )
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "job_id", nargs="?", type=_uuid_arg, metavar="JOB_ID", help="the failed job to run again"
    )
    target.add_argument("--failed", action="store_true", help="every failed job")
    retry.add_argument(
        "--now",
        action="store_true",
        help="with JOB_ID: a pending job waiting out its backoff (or a deferral) runs at once",
    )

    sub.add_parser("prune", help="delete old completed/failed jobs now (QUEUE_PRUNE_*)")

    prices = sub.add_parser("prices", help="a symbol's status and its newest stored daily bars")
    prices.add_argument("symbol", metavar="SYMBOL", help="a ticker symbol, e.g. AAPL")
    prices.add_argument(
        "--last", type=_positive_int, default=5, metavar="N", help="bars to show (default: 5)"
    )

    backfill.add_arguments(
        sub.add_parser("backfill", help="copy market_data_cache into symbol_prices_daily")
    )
    schedule.add_arguments(
        sub.add_parser("refresh", help="enqueue a refresh of every symbol that is behind")
    )
    factors = sub.add_parser("factors", help="recompute the factor betas of active symbols")
    factors.add_argument(
        "--symbols",
        type=_symbols_arg,
        metavar="A,B,...",
        help="only these symbols (comma-separated); exit status 1 if one is not active",
    )
    factors.add_argument(
        "--as-of",
        type=_date_arg,
        metavar="YYYY-MM-DD",
        help="compute as of this date (default: the latest SPY price)",
    )
    factors.add_argument(
        "--dry-run", action="store_true", help="write nothing; report what would be computed"
    )
    return parser


def _symbols_arg(raw: str) -> list[str]:
    try:
        return backfill.parse_symbols(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _date_arg(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid date {raw!r}: expected YYYY-MM-DD") from None


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected {WHOLE_NUMBER_ABOVE_ZERO}, got {raw!r}")
    return value


def _uuid_arg(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a UUID, got {raw!r}") from None


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    commands: dict[str, Callable[[argparse.Namespace, Settings, str], Awaitable[int]]] = {
        "run": _run,
        "status": _status,
        "health": _health,
        "migrate": _migrate,
        "enqueue": _enqueue,
        "retry": _retry,
        "prune": _prune,
        "prices": _prices,
        "backfill": _backfill,
        "refresh": _refresh,
        "factors": _factors,
    }
    if args.command == "run":
        # The price sources are checked before the embedded server starts (seconds) or the
        # database is reached: a typo in --source or PRICE_SOURCE fails at once.
        from worker.prices.sources import check_source_config

        check_source_config(settings, args.source)
    # The embedded server is the worker's own: every command but `migrate` brings it to head
    # first, so a first `health` or `enqueue` works before any `run`.
    async with _database(settings, migrate_embedded=args.command != "migrate") as url:
        return await commands[args.command](args, settings, url)


@contextlib.asynccontextmanager
async def _database(settings: Settings, *, migrate_embedded: bool) -> AsyncIterator[str]:
    """DATABASE_URL, or the embedded server (started here and stopped on the way out)."""
    if settings.database_url:
        yield settings.database_url
        return
    server = await asyncio.to_thread(embedded.start, settings.embedded_pgdata)
    try:
        url = server.url("postgres")
        if migrate_embedded:
            await migrate.upgrade(url)
        log.info("embedded_postgres_started", pgdata=str(server.pgdata))
        yield url
    finally:
        await asyncio.to_thread(server.stop)


# --- run -----------------------------------------------------------------------------------------


async def _run(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker.ops import web

    worker_id = queue_ops.new_worker_id(settings.worker_name)
    try:
        async with web.endpoint(settings, url, worker_id) as (metrics, server):
            return await _run_worker(args, settings, url, worker_id, metrics, server)
    except web.EndpointError as exc:
        raise FatalError(str(exc)) from None


async def _run_worker(
    args: argparse.Namespace,
    settings: Settings,
    url: str,
    worker_id: str,
    metrics: "Metrics",
    server: "StatusServer | None",
) -> int:
    from worker.core.trading_calendar import shared_calendar
    from worker.factors.switch import FactorSwitch
    from worker.jobs.onboarding import open_onboarder
    from worker.jobs.refresh import JobsByKind, build_refresher
    from worker.queue.runner import Runner

    stop_requests: list[Callable[[], None]] = []

    def on_signal() -> None:
        for stop in list(stop_requests):
            stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    startup = asyncio.Event()
    stop_requests.append(startup.set)  # a signal during start-up ends the start-up
    pool = await _wait_for(_connect_pool(settings, url, retry=True, burst=args.burst), startup)
    if pool is None:
        return 0
    try:
        await _check_schema(pool)
        queue = queue_ops.Queue(
            worker_id,
            max_attempts=settings.max_attempts,
            retry_base_s=settings.retry_base_s,
            retry_max_s=settings.retry_max_s,
        )
        calendar = shared_calendar(settings.refresh_calendar)  # the status page's too
        times = schedule.ScheduleTimes.from_settings(settings, calendar)
        # --burst drains the queue and exits: the daily schedule is the long-running worker's.
        daily = (
            []
            if args.burst or times is None
            else [schedule.DailySchedule(pool, times, queue.worker_id)]
        )
        switch = await FactorSwitch.detect(pool, settings.factors_mode)
        host = await HostTables.detect(pool, settings)
        log.info(
            "host_tables",
            price_mirror=host.mirror_prices,
            cache_invalidation=host.invalidate_cache,
            factors=switch.available,
        )
        metrics.factors_state = lambda: (switch.available, switch.unavailable)

        def last_session() -> date:
            return calendar.last_completed_session(datetime.now(UTC))

        async with open_onboarder(
            settings,
            queue,
            pool,
            sources=args.source,
            metrics=metrics,
            factor_store=switch,
            host=host,
            last_session=last_session,
        ) as handler:
            runner = Runner(
                settings,
                pool,
                queue,
                JobsByKind(handler, build_refresher(settings, queue, pool, handler, calendar)),
                claim_dsn=asyncpg_dsn(url),
                listen_dsn=_listen_dsn(settings, url),
                burst=args.burst,
                housekeeping=housekeeper_for(
                    settings, pool, queue, factors=switch, host=host, periodic=daily
                ),
                metrics=metrics,
            )
            if server is not None:
                server.worker = runner
                runner.info = dataclasses.replace(runner.info, http_url=server.url)
            stop_requests[:] = [runner.request_stop]
            if startup.is_set():
                return 0
            await runner.run()
    finally:
        await pool.close()
    return 0


async def _factor_store(db: asyncpg.Pool | asyncpg.Connection) -> "FactorStore":
    """The shape of symbol_factor_exposures, read once at start-up; one line if unwritable."""
    from worker.factors.service import FactorStore, ShapeError

    try:
        return await FactorStore.detect(db)
    except ShapeError as exc:
        raise FatalError(f"cannot write factor betas: {exc} (or set FACTORS_ENABLED=off)") from None


async def _sweep_factor_waits(
    conn: asyncpg.Connection,
    _batch_size: int,
    *,
    factors: "FactorSwitch",
    host: HostTables,
    settings: Settings,
) -> int:
    """Housekeeping: betas for one batch of waiting symbols whose reference jobs have ended (or
    that were skipped while the factor names were missing: looked for again first)."""
    from worker.factors.service import resolve_waiting

    if not await factors.look_again(conn):
        return 0
    assert factors.store is not None
    resolved, _ = await resolve_waiting(
        conn,
        factors.store,
        history_days=settings.factor_history_days,
        batch_size=settings.factor_batch_size,
        host=host,
    )
    return resolved


def _listen_dsn(settings: Settings, url: str) -> str | None:
    if not settings.listen_enabled:
        return None
    return asyncpg_dsn(settings.listen_database_url or url)


async def _wait_for(coro: Awaitable[Any], cancelled: asyncio.Event) -> Any:
    """Await `coro` unless `cancelled` is set first (then None)."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.create_task(cancelled.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, DatabaseUnavailable):
        await task
    return None


def housekeeper_for(
    settings: Settings,
    pool: asyncpg.Pool,
    queue: queue_ops.Queue,
    *,
    factors: "FactorSwitch | None" = None,
    host: HostTables = NO_HOST,
    periodic: Sequence[Callable[[], Awaitable[object]]] = (),
) -> Housekeeper:
    """The worker's housekeeping (also `worker prune`): the queue, the analytics cache, the bulk
    refresh's old sessions, and the symbols waiting for factor betas (with a factor store). Each
    sweep deletes one batch per call: the housekeeper commits each batch on its own. `periodic`:
    the running worker's daily refresh schedule."""
    from worker.jobs.bulk import sweep_bulk_days

    sweeps: dict[str, Sweep] = {
        "expired_analytics_cache": functools.partial(analytics_cache.sweep_expired, max_batches=1),
        "old_bulk_days": sweep_bulk_days,
    }
    if factors is not None and factors.mode != "off":
        sweeps["factor_waits_resolved"] = functools.partial(
            _sweep_factor_waits, factors=factors, host=host, settings=settings
        )
    return Housekeeper(settings, pool, queue, extra_sweeps=sweeps, periodic=periodic)


async def _connect_pool(
    settings: Settings, url: str, *, retry: bool, burst: bool = False
) -> asyncpg.Pool:
    """A pool of concurrency + 1 connections (claims, completions, heartbeats, housekeeping).

    With `retry`, waits out an outage: for ever, or in burst mode (cron, CI) for
    WORKER_BURST_MAX_OUTAGE_S, then a one-line error (exit 1).
    """

    async def connect() -> asyncpg.Pool:
        return await db.create_pool(url, settings, min_size=1, max_size=settings.concurrency + 1)

    with _connect_errors(url, waited=f" for {settings.burst_max_outage_s:g} s" if retry else ""):
        if not retry:
            return await connect()
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((DatabaseUnavailable, TimeoutError)),
            wait=wait_exponential_jitter(multiplier=0.2, max=settings.reconnect_max_wait_s),
            stop=stop_after_delay(settings.burst_max_outage_s) if burst else stop_never,
            reraise=True,
            before_sleep=lambda state: log.warning(
                "database_unavailable",
                database=redact(url),
                attempt=state.attempt_number,
                error=str(state.outcome.exception()) if state.outcome else None,
            ),
        ):
            with attempt:
                return await connect()
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _connect_errors(url: str, *, waited: str = "") -> Iterator[None]:
    """A connection that cannot be made becomes the one-line error the command line prints;
    `waited`: how long an outage was waited out, for its message."""
    try:
        yield
    except FATAL_DB_ERRORS as exc:
        raise FatalError(f"cannot use database {redact(url)}: {exc}") from None
    except (DatabaseUnavailable, TimeoutError) as exc:
        raise FatalError(f"database {redact(url)} is unreachable{waited}: {exc}") from None
    except ConfigurationError:
        raise
    except (ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise FatalError(f"cannot use database URL {redact(url)}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


async def _check_schema(db: asyncpg.Pool | asyncpg.Connection) -> None:
    head = migrate.head_revision()
    try:
        current = await migrate.schema_revision(db)
    except asyncpg.PostgresError as exc:
        raise FatalError(f"cannot read the schema version: {_first_line(exc)}") from None
    if current != head:
        raise FatalError(
            f"database schema is at revision {current or 'none'}, expected {head}: "
            "run `python -m worker migrate` (or `alembic upgrade head` in a checkout)"
        )


# --- one-shot commands ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _connection(
    settings: Settings, url: str, *, check_schema: bool = True
) -> AsyncIterator[asyncpg.Connection]:
    with _connect_errors(url):
        conn = await db.connect(url, settings, timeout=10)
    try:
        if check_schema:
            await _check_schema(conn)
        yield conn
    finally:
        await conn.close()


async def _health(_args: argparse.Namespace, settings: Settings, url: str) -> int:
    async with _connection(settings, url):
        print(f"ok: database {redact(url)} reachable, schema at {migrate.head_revision()}")
    return 0


async def _prices(args: argparse.Namespace, settings: Settings, url: str) -> int:
    try:
        symbol = normalize_symbol(args.symbol)
    except InvalidSymbolError as exc:
        raise FatalError(str(exc)) from None
    async with _connection(settings, url) as conn:
        row = await conn.fetchrow(prices_sql.SYMBOL_STATUS, symbol)
        bars = await conn.fetch(prices_sql.LATEST_PRICES, symbol, args.last)
    if row is None:
        raise FatalError(f"{symbol} is not in symbol_universe: enqueue it first")
    last = row["last_price_date"]
    print(
        f"{symbol}: {row['status']}, {row['bars']} daily bars stored"
        + (f", the newest {last.isoformat()}" if last else "")
    )
    if bars:
        print(
            f"{'date':<10} {'open':>12} {'high':>12} {'low':>12} {'close':>12} {'adj close':>12}"
            f" {'volume':>14}"
        )
    for bar in bars:
        cells = [
            bar[c]
            for c in ("open_price", "high_price", "low_price", "close_price", "adj_close_price")
        ]
        print(
            f"{bar['price_date'].isoformat():<10} "
            + " ".join(f"{'' if v is None else v:>12}" for v in cells)
            + f" {'' if bar['volume'] is None else bar['volume']:>14}"
        )
    return 0


async def _backfill(args: argparse.Namespace, settings: Settings, url: str) -> int:
    async with _connection(settings, url):
        pass  # reachable and migrated, or a one-line error
    engine = db.create_engine(url, settings, poolclass=sa_pool.NullPool)
    try:
        return await backfill.command(args, engine)
    except backfill.BackfillError as exc:
        raise FatalError(str(exc)) from None
    finally:
        await engine.dispose()


async def _migrate(args: argparse.Namespace, settings: Settings, url: str) -> int:
    async with _connection(settings, url, check_schema=False):
        pass  # reachable, or a one-line error
    before = await migrate.current_revision(url, settings)
    if args.downgrade:
        await migrate.downgrade(url, args.revision, settings)
    else:
        await migrate.upgrade(url, args.revision, settings)
    after = await migrate.current_revision(url, settings)
    print(f"ok: database {redact(url)} schema at {after or 'base'} (was {before or 'base'})")
    return 0


async def _enqueue(args: argparse.Namespace, settings: Settings, url: str) -> int:
    engine = db.create_engine(url, settings)
    try:
        async with _connection(settings, url):
            pass  # reachable and migrated, or a one-line error
        async with engine.begin() as connection:
            ids = await queue_ops.enqueue_symbols(
                connection, args.symbols, priority=args.priority, requested_by=args.requested_by
            )
    # The batch is one transaction, and every symbol is checked before any is written: a refused
    # batch leaves the queue as it was, which the message says.
    except (InvalidSymbolError, InvalidPriorityError) as exc:
        raise FatalError(f"{exc}; nothing was enqueued") from None
    except UnknownRequesterError:
        raise FatalError(
            f"--requested-by {args.requested_by}: no such user; nothing was enqueued"
        ) from None
    except IntegrityError as exc:
        raise FatalError(f"{str(exc.orig).splitlines()[0]}; nothing was enqueued") from None
    finally:
        await engine.dispose()
    for symbol, job_id in zip(args.symbols, ids, strict=True):
        print(f"{job_id}\t{symbol.strip().upper()}")
    return 0


async def _retry(args: argparse.Namespace, settings: Settings, url: str) -> int:
    if args.now and args.failed:
        _print_error("error: --now takes a JOB_ID, not --failed")
        return 2
    async with _connection(settings, url) as conn:
        if args.failed:
            print(f"retried {await queue_ops.retry_failed(conn)} failed job(s)")
            return 0
        if await queue_ops.retry_job(conn, args.job_id):
            print(f"retried {args.job_id}")
            return 0
        if args.now and await queue_ops.run_now(conn, args.job_id):
            print(f"{args.job_id} runs now")
            return 0
        state = await queue_ops.job_state(conn, args.job_id)
    if state is None:
        raise FatalError(f"no job {args.job_id}")
    job_status, waiting = state
    if job_status == "pending" and not waiting and args.now:
        print(f"{args.job_id} is pending and already runnable")
        return 0
    if job_status == "pending" and waiting:
        raise FatalError(
            f"job {args.job_id} is pending in backoff, not failed: `retry {args.job_id} --now`"
            " runs it at once"
        )
    if job_status != "failed":
        raise FatalError(f"job {args.job_id} is {job_status}, not failed: nothing to retry")
    raise FatalError(f"job {args.job_id}: its symbol already has a pending or processing job")


async def _prune(_args: argparse.Namespace, settings: Settings, url: str) -> int:
    async with _connection(settings, url):
        pass
    pool = await _connect_pool(settings, url, retry=False)
    try:
        housekeeper = housekeeper_for(settings, pool, queue_ops.Queue("prune"))
        result = await housekeeper.prune(max_batches=None)
    finally:
        await pool.close()
    if result is None:
        raise FatalError("another worker is pruning right now; try again later")
    print(f"pruned {result.completed} completed and {result.failed} failed job(s)")
    for name, count in result.extra.items():
        print(f"pruned {count} {name.replace('_', ' ')} row(s)")
    return 0


async def _refresh(args: argparse.Namespace, settings: Settings, url: str) -> int:
    async with _connection(settings, url) as conn:
        return await schedule.command(args, settings, conn)


async def _factors(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker.factors.command import command

    lanes = settings.factor_connections
    if args.symbols is not None:  # no more connections than batches
        lanes = min(lanes, -(-len(args.symbols) // settings.factor_batch_size))
    async with contextlib.AsyncExitStack() as stack:
        conns = [
            await stack.enter_async_context(_connection(settings, url, check_schema=i == 0))
            for i in range(max(lanes, 1))
        ]
        store = await _factor_store(conns[0])
        host = await HostTables.detect(conns[0], settings)
        return await command(
            conns, store, settings, args.symbols, args.as_of, args.dry_run, host=host
        )


async def _status(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker.factors.switch import FactorSwitch

    async with _connection(settings, url) as conn:
        # What a worker with these settings would find (it reads the same tables).
        switch = await FactorSwitch.detect(
            conn,
            "auto" if settings.factors_mode == "on" else settings.factors_mode,
            log_unavailable=False,
        )
        report = await status.gather(conn, settings, factors_unavailable=switch.unavailable)
    if args.json:
        print(json.dumps(status.report_dict(report), indent=2))
    else:
        print(status.format_text(report))
    return 0
