"""What every command shares: the Command shape, the one-line fatal error, the database
connection a command opens (reachable, migrated) and the argument types."""

import argparse
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date

import asyncpg

from worker.core import db
from worker.core.db import redact
from worker.core.errors import ConfigurationError, DatabaseUnavailable, WorkerError
from worker.core.settings import WHOLE_NUMBER_ABOVE_ZERO, Settings
from worker.host import backfill
from worker.ops import migrate

# Errors no retry can fix: say what is wrong in one line and exit 1.
FATAL_DB_ERRORS = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)

# The settings every command that reaches the database reads (see Command.settings).
CONNECTION_SETTINGS = frozenset(
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


class FatalError(WorkerError):
    """Stop with exit code 1 and this one-line message."""


@dataclass(frozen=True)
class Command:
    """One `python -m worker NAME`: every command is registered this way (worker/cli/main.py).

    `settings`: the settings it reads; only these are checked before it starts, so a bad value of
    a setting a command never reads does not stop it (`WORKER_CONCURRENCY=abc` does not block
    `enqueue`). None: every setting. tests/acceptance/test_command_settings.py runs each command
    and fails when it reads a setting not listed. `usage`: a usage error argparse cannot see
    (exit 2), or None. `check`: what is checked before the database is reached. `migrates_embedded`:
    the embedded server is brought to head first (every command but `migrate`, so a first
    `health` or `enqueue` works before any `run`)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Settings, str], Awaitable[int]]
    settings: frozenset[str] | None = CONNECTION_SETTINGS
    usage: Callable[[argparse.Namespace], str | None] | None = None
    check: Callable[[argparse.Namespace, Settings], None] | None = None
    migrates_embedded: bool = True


def no_arguments(_parser: argparse.ArgumentParser) -> None:
    """For a command without options."""


def print_error(line: str) -> None:
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


@contextlib.contextmanager
def connect_errors(url: str, *, waited: str = "") -> Iterator[None]:
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
        raise FatalError(f"cannot use database URL {redact(url)}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


async def check_schema(conn: asyncpg.Pool | asyncpg.Connection) -> None:
    """A one-line error unless the schema is at head."""
    head = migrate.head_revision()
    try:
        current = await migrate.schema_revision(conn)
    except asyncpg.PostgresError as exc:
        raise FatalError(f"cannot read the schema version: {first_line(exc)}") from None
    if current != head:
        raise FatalError(
            f"database schema is at revision {current or 'none'}, expected {head}: "
            "run `python -m worker migrate` (or `alembic upgrade head` in a checkout)"
        )


@contextlib.asynccontextmanager
async def connection(
    settings: Settings, url: str, *, check: bool = True
) -> AsyncIterator[asyncpg.Connection]:
    """A one-shot command's connection: reachable and (with `check`) migrated to head, or a
    one-line error."""
    with connect_errors(url):
        conn = await db.connect(url, settings, timeout=10)
    try:
        if check:
            await check_schema(conn)
        yield conn
    finally:
        await conn.close()


async def connect_pool(settings: Settings, url: str) -> asyncpg.Pool:
    """A pool of concurrency + 1 connections, or a one-line error."""
    with connect_errors(url):
        return await db.create_pool(url, settings, min_size=1, max_size=settings.concurrency + 1)


def symbols_arg(raw: str) -> list[str]:
    try:
        return backfill.parse_symbols(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def date_arg(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid date {raw!r}: expected YYYY-MM-DD") from None


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected {WHOLE_NUMBER_ABOVE_ZERO}, got {raw!r}")
    return value


def uuid_arg(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a UUID, got {raw!r}") from None
