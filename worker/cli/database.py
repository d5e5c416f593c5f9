"""The database commands: `health` (reachable and migrated?) and `migrate`."""

import argparse

from worker.cli.common import Command, connection, no_arguments
from worker.core.db import redact
from worker.core.settings import Settings
from worker.ops import migrate


async def health(_args: argparse.Namespace, settings: Settings, url: str) -> int:
    async with connection(settings, url):
        print(f"ok: database {redact(url)} reachable, schema at {migrate.head_revision()}")
    return 0


def migrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "revision", nargs="?", default="head", help="target revision (default: head)"
    )
    parser.add_argument(
        "--downgrade",
        action="store_true",
        help="go down to REVISION instead (`base` removes everything this project created)",
    )


def migrate_usage(args: argparse.Namespace) -> str | None:
    if args.downgrade and args.revision == "head":
        return "migrate --downgrade needs a target revision, e.g. `base`"
    return None


async def migrate_command(args: argparse.Namespace, settings: Settings, url: str) -> int:
    async with connection(settings, url, check=False):
        pass  # reachable, or a one-line error
    before = await migrate.current_revision(url, settings)
    if args.downgrade:
        await migrate.downgrade(url, args.revision, settings)
    else:
        await migrate.upgrade(url, args.revision, settings)
    after = await migrate.current_revision(url, settings)
    print(f"ok: database {redact(url)} schema at {after or 'base'} (was {before or 'base'})")
    return 0


COMMANDS = [
    Command(
        "health",
        "exit 0 if the database is reachable and migrated to head",
        no_arguments,
        health,
    ),
    Command(
        "migrate",
        "migrate the database to head (creates or adopts; `alembic upgrade head`)",
        migrate_arguments,
        migrate_command,
        usage=migrate_usage,
        migrates_embedded=False,
    ),
]
