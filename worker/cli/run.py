"""`python -m worker run`: the run command's options; the worker is assembled in
worker/cli/assembly.py."""

import argparse

from worker.cli.common import Command, FatalError, positive_int
from worker.core import tracing
from worker.core.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="jobs in flight (WORKER_CONCURRENCY)",
    )
    parser.add_argument("--burst", action="store_true", help="exit 0 once no runnable job remains")
    parser.add_argument(
        "--source", help="price source or fallback chain, e.g. yahoo,polygon (PRICE_SOURCE)"
    )


def check(args: argparse.Namespace, settings: Settings) -> None:
    """Before the embedded server starts (seconds) or the database is reached: a typo in
    --source or PRICE_SOURCE fails at once."""
    from worker.prices.sources import check_source_config  # httpx: only `run` needs it

    check_source_config(settings, args.source)


async def run(args: argparse.Namespace, settings: Settings, url: str) -> int:
    # Imported here, not with the command line: numpy, aiohttp and the calendars load only for
    # the command that runs the worker.
    from worker.cli.assembly import WorkerAssembly
    from worker.ops import web

    tracing.configure()  # OpenTelemetry, when the otel extra and OTEL_* variables ask for it
    assembly = WorkerAssembly(settings, url, burst=args.burst, source=args.source)
    try:
        async with web.endpoint(settings, url, assembly.worker_id, assembly) as (metrics, server):
            return await assembly.run(metrics, server.url if server is not None else None)
    except web.EndpointError as exc:
        raise FatalError(str(exc)) from None


COMMANDS = [
    Command(
        "run",
        "run the worker until SIGTERM/SIGINT",
        add_arguments,
        run,
        settings=None,  # nearly every setting
        check=check,
    )
]
