"""`python -m worker COMMAND`: argument parsing and wiring; the work lives in the modules it calls.

Exit codes: 0 success; 1 a fatal error, printed as one line on stderr (bad configuration, database
unreachable for a one-shot command, schema not migrated); 2 bad usage.
"""

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

import structlog

from worker.cli import control, data, database, queue_admin, reports, run
from worker.cli.common import Command, FatalError, print_error
from worker.core import embedded, logs
from worker.core.errors import ConfigurationError, DatabaseUnavailable
from worker.core.settings import Settings
from worker.ops import migrate
from worker.queue import registry

log = structlog.get_logger("worker.cli")

# Every command, in the order `--help` lists them; each registered the same way (Command).
COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        *run.COMMANDS,
        reports.COMMANDS[0],  # status
        *database.COMMANDS,
        *queue_admin.COMMANDS,
        reports.COMMANDS[1],  # prices
        reports.COMMANDS[2],  # show
        *data.COMMANDS,
        *control.COMMANDS,
    )
}
# The settings each command reads (None: every setting); see Command.settings.
COMMAND_SETTINGS: dict[str, frozenset[str] | None] = {
    name: c.settings for name, c in COMMANDS.items()
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
    command = COMMANDS[args.command]
    problem = command.usage(args) if command.usage is not None else None
    if problem is not None:
        parser.error(problem)
    tracebacks = args.command == "run"  # a one-shot command prints one line unless debugging
    writer: logs.LineWriter | None = None
    try:
        settings = Settings.from_env(
            uses=command.settings,
            concurrency=getattr(args, "concurrency", None),
            price_source=getattr(args, "source", None),
        )
        tracebacks = tracebacks or settings.log_level.lower() == "debug"
        writer = logs.configure(
            settings, stream=sys.stderr if args.command != "run" else sys.stdout
        )
        return asyncio.run(_dispatch(command, args, settings))
    except (FatalError, ConfigurationError) as exc:
        print_error(f"error: {exc}")
        return 1
    except DatabaseUnavailable as exc:  # `run --burst` gave up waiting for the database
        print_error(f"error: database unavailable: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: one line for the operator, the traceback if useful
        if tracebacks:
            log.exception("fatal_error")
        print_error(f"error: {type(exc).__name__}: {exc}".splitlines()[0])
        if not tracebacks:
            print_error("(LOG_LEVEL=debug shows the traceback)")
        return 1
    finally:
        if writer is not None:
            writer.flush(timeout_s=2.0)  # bounded: a full pipe must not hold the exit


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
    for command in COMMANDS.values():
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    return parser


async def _dispatch(command: Command, args: argparse.Namespace, settings: Settings) -> int:
    if command.check is not None:
        command.check(args, settings)
    async with _database(settings, migrate_embedded=command.migrates_embedded) as url:
        return await command.run(args, settings, url)


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
