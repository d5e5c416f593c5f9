"""The data commands: `backfill` (the legacy cache into symbol_prices_daily), `refresh` (enqueue
the symbols that are behind) and `factors` (recompute betas)."""

import argparse
import contextlib

import asyncpg
from sqlalchemy import pool as sa_pool

from worker.cli import backfill as backfill_cli
from worker.cli.common import Command, FatalError, connection, date_arg, symbols_arg
from worker.core import db
from worker.core.settings import Settings
from worker.host import backfill
from worker.host.tables import HostTables
from worker.jobs import schedule


async def backfill_command(args: argparse.Namespace, settings: Settings, url: str) -> int:
    async with connection(settings, url):
        pass  # reachable and migrated, or a one-line error
    engine = db.create_engine(url, settings, poolclass=sa_pool.NullPool)
    try:
        return await backfill_cli.command(args, engine)
    except backfill.BackfillError as exc:
        raise FatalError(str(exc)) from None
    finally:
        await engine.dispose()


async def refresh_command(args: argparse.Namespace, settings: Settings, url: str) -> int:
    async with connection(settings, url) as conn:
        return await schedule.command(args, settings, conn)


def factors_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--symbols",
        type=symbols_arg,
        metavar="A,B,...",
        help="only these symbols (comma-separated); exit status 1 if one is not active",
    )
    parser.add_argument(
        "--as-of",
        type=date_arg,
        metavar="YYYY-MM-DD",
        help="compute as of this date (default: the latest SPY price)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="write nothing; report what would be computed"
    )


async def factors_command(args: argparse.Namespace, settings: Settings, url: str) -> int:
    # numpy loads with worker.factors: only the commands that use it import it.
    from worker.factors.command import command
    from worker.factors.store import FactorStore, ShapeError

    lanes = settings.factor_connections
    if args.symbols is not None:  # no more connections than batches
        lanes = min(lanes, -(-len(args.symbols) // settings.factor_batch_size))
    async with contextlib.AsyncExitStack() as stack:
        conns: list[asyncpg.Connection] = [
            await stack.enter_async_context(connection(settings, url, check=i == 0))
            for i in range(max(lanes, 1))
        ]
        try:  # the shape of symbol_factor_exposures, read once at start-up
            store = await FactorStore.detect(conns[0])
        except ShapeError as exc:
            raise FatalError(
                f"cannot write factor betas: {exc} (or set FACTORS_ENABLED=off)"
            ) from None
        host = await HostTables.detect(conns[0], settings)
        return await command(
            conns, store, settings, args.symbols, args.as_of, args.dry_run, host=host
        )


COMMANDS = [
    Command(
        "backfill",
        "copy market_data_cache into symbol_prices_daily",
        backfill_cli.add_arguments,
        backfill_command,
    ),
    Command(
        "refresh",
        "enqueue a refresh of every symbol that is behind",
        schedule.add_arguments,
        refresh_command,
        settings=None,
    ),
    Command(
        "factors",
        "recompute the factor betas of active symbols",
        factors_arguments,
        factors_command,
        settings=None,
    ),
]
