"""The queue commands: `enqueue`, `retry` and `prune`."""

import argparse

from sqlalchemy.exc import IntegrityError

from worker.cli.common import (
    CONNECTION_SETTINGS,
    Command,
    FatalError,
    connect_pool,
    connection,
    no_arguments,
    print_error,
    uuid_arg,
)
from worker.core import db
from worker.core.settings import Settings
from worker.core.symbols import InvalidPriorityError, InvalidSymbolError, UnknownRequesterError
from worker.models.onboarding_queue import PRIORITIES
from worker.queue import store


def enqueue_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "symbols", nargs="+", metavar="SYMBOL", help="ticker symbols, e.g. AAPL BRK.B ^GSPC"
    )
    parser.add_argument(
        "--priority",
        default="normal",
        choices=PRIORITIES,
        help="claim order: high, then normal, then low (default: normal)",
    )
    parser.add_argument(
        "--requested-by",
        type=uuid_arg,
        metavar="UUID",
        help="the id of the user asking (must exist in users)",
    )


async def enqueue(args: argparse.Namespace, settings: Settings, url: str) -> int:
    engine = db.create_engine(url, settings)
    try:
        async with connection(settings, url):
            pass  # reachable and migrated, or a one-line error
        async with engine.begin() as conn:
            ids = await store.enqueue_symbols(
                conn, args.symbols, priority=args.priority, requested_by=args.requested_by
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


def retry_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "job_id", nargs="?", type=uuid_arg, metavar="JOB_ID", help="the failed job to run again"
    )
    target.add_argument("--failed", action="store_true", help="every failed job")
    parser.add_argument(
        "--now",
        action="store_true",
        help="with JOB_ID: a pending job waiting out its backoff (or a deferral) runs at once",
    )


async def retry(args: argparse.Namespace, settings: Settings, url: str) -> int:
    if args.now and args.failed:
        print_error("error: --now takes a JOB_ID, not --failed")
        return 2
    async with connection(settings, url) as conn:
        if args.failed:
            print(f"retried {await store.retry_failed(conn)} failed job(s)")
            return 0
        if await store.retry_job(conn, args.job_id):
            print(f"retried {args.job_id}")
            return 0
        if args.now and await store.run_now(conn, args.job_id):
            print(f"{args.job_id} runs now")
            return 0
        state = await store.job_state(conn, args.job_id)
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


async def prune(_args: argparse.Namespace, settings: Settings, url: str) -> int:
    # numpy loads with the factor sweep: only the commands that use it import it.
    from worker.jobs.maintenance import housekeeper_for

    async with connection(settings, url):
        pass
    pool = await connect_pool(settings, url)
    try:
        housekeeper = housekeeper_for(settings, pool, store.Queue("prune"))
        result = await housekeeper.prune(max_batches=None)
    finally:
        await pool.close()
    if result is None:
        raise FatalError("another worker is pruning right now; try again later")
    print(f"pruned {result.completed} completed and {result.failed} failed job(s)")
    for name, count in result.extra.items():
        print(f"pruned {count} {name.replace('_', ' ')} row(s)")
    return 0


COMMANDS = [
    Command("enqueue", "enqueue symbols; prints each job id", enqueue_arguments, enqueue),
    Command(
        "retry",
        "retry a failed job, or every failed job; --now: run a job in backoff now",
        retry_arguments,
        retry,
    ),
    Command(
        "prune",
        "delete old completed/failed jobs now (QUEUE_PRUNE_*)",
        no_arguments,
        prune,
        settings=CONNECTION_SETTINGS
        | {
            "concurrency",  # the pool's size
            "stall_timeout_s",
            "dead_worker_retention_s",
            "housekeeping_interval_s",
            "prune_batch_size",
            "prune_completed_days",
            "prune_failed_days",
        },
    ),
]
