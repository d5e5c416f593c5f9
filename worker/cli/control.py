"""The operator's controls: `cancel` (jobs, pending or running), `pause` and `resume` (a price
source, or the whole queue). The operations live in worker/queue/control.py."""

import argparse
from collections.abc import Awaitable, Callable, Collection

import asyncpg

from worker.cli.common import Command, FatalError, connection
from worker.core.settings import Settings
from worker.prices.sources import HTTP_SOURCES
from worker.queue import control

Pausing = Callable[[argparse.Namespace, asyncpg.Connection, Collection[str]], Awaitable[int]]


async def cancel(args: argparse.Namespace, settings: Settings, url: str) -> int:
    try:
        async with connection(settings, url) as conn:
            return await control.cancel_command(args, conn)
    except control.ControlError as exc:
        raise FatalError(str(exc)) from None


def _pausing(command: Pausing) -> Callable[[argparse.Namespace, Settings, str], Awaitable[int]]:
    async def run(args: argparse.Namespace, settings: Settings, url: str) -> int:
        try:
            async with connection(settings, url) as conn:
                return await command(args, conn, HTTP_SOURCES)
        except control.ControlError as exc:
            raise FatalError(str(exc)) from None

    return run


def _pause_arguments(parser: argparse.ArgumentParser) -> None:
    control.add_pause_arguments(parser, resume=False)


def _resume_arguments(parser: argparse.ArgumentParser) -> None:
    control.add_pause_arguments(parser, resume=True)


COMMANDS = [
    Command(
        "cancel",
        "cancel jobs, pending or running; says what became of each",
        control.add_cancel_arguments,
        cancel,
    ),
    Command(
        "pause",
        "pause a price source, or --queue: no worker claims",
        _pause_arguments,
        _pausing(control.pause_command),
    ),
    Command(
        "resume",
        "end a pause of a price source, or --queue",
        _resume_arguments,
        _pausing(control.resume_command),
    ),
]
