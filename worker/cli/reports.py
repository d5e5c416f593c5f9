"""The reading commands: `status` (the queue, workers, sources, betas) and `prices` (one
symbol's stored bars)."""

import argparse
import json

from worker.cli.common import CONNECTION_SETTINGS, Command, FatalError, connection, positive_int
from worker.core.settings import Settings
from worker.core.symbols import InvalidSymbolError, normalize_symbol
from worker.ops import prices, status


def status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


async def status_command(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker.factors.switch import FactorSwitch  # numpy: only the commands that use it

    async with connection(settings, url) as conn:
        # What a worker with these settings would find (it reads the same tables).
        switch = await FactorSwitch.probe(conn, settings.factors_mode)
        report = await status.gather(conn, settings, factors_unavailable=switch.unavailable)
    if args.json:
        print(json.dumps(status.report_dict(report), indent=2))
    else:
        print(status.format_text(report))
    return 0


def prices_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("symbol", metavar="SYMBOL", help="a ticker symbol, e.g. AAPL")
    parser.add_argument(
        "--last", type=positive_int, default=5, metavar="N", help="bars to show (default: 5)"
    )


async def prices_command(args: argparse.Namespace, settings: Settings, url: str) -> int:
    try:
        symbol = normalize_symbol(args.symbol)
    except InvalidSymbolError as exc:
        raise FatalError(str(exc)) from None
    async with connection(settings, url) as conn:
        stored = await prices.read(conn, symbol, args.last)
    if stored is None:
        raise FatalError(f"{symbol} is not in symbol_universe: enqueue it first")
    print(prices.format_text(stored))
    return 0


def show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="SYMBOL|JOB_ID", help="a ticker symbol or a job id")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


async def show_command(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker.factors.switch import FactorSwitch  # numpy: only the commands that use it
    from worker.ops import symbol_facts

    async with connection(settings, url) as conn:
        try:
            symbol, job_id = await symbol_facts.resolve(conn, args.target)
        except (InvalidSymbolError, LookupError) as exc:
            raise FatalError(str(exc)) from None
        switch = await FactorSwitch.probe(conn, settings.factors_mode)
        facts = await symbol_facts.gather(
            conn, settings, symbol, factors_unavailable=switch.unavailable
        )
    if facts is None:
        raise FatalError(f"{symbol} is not in symbol_universe and has no job: enqueue it first")
    if args.json:
        print(json.dumps(symbol_facts.facts_dict(facts), indent=2))
    else:
        print(symbol_facts.format_text(facts, job_id=job_id))
    return 0


COMMANDS = [
    Command(
        "status",
        "queue counts, running jobs, recent failures",
        status_arguments,
        status_command,
        settings=CONNECTION_SETTINGS
        | {
            "refresh_calendar",
            "refresh_schedule_time",
            "refresh_schedule_timezone",
            "stall_timeout_s",
            "source_failures_before_pause",
            "factors_enabled",  # says why betas are unavailable
        },
    ),
    Command(
        "prices",
        "a symbol's status and its newest stored daily bars",
        prices_arguments,
        prices_command,
    ),
    Command(
        "show",
        "a symbol's facts: universe row, bars, betas, jobs, whether it is behind",
        show_arguments,
        show_command,
        # reads what `status` reads of the calendar and the factor switch
        settings=CONNECTION_SETTINGS | {"refresh_calendar", "factors_enabled"},
    ),
]
