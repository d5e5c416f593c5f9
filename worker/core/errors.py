"""The project's error root, and the one place that decides what a database error means.

Every error the worker raises derives from `WorkerError`. Driver errors (asyncpg, and asyncpg's
inside SQLAlchemy's) are translated where they enter the queue and database layer
(`database_errors`, `translates_database_errors`): code above it catches `DatabaseUnavailable`
and never names a driver class.

What is an outage (`is_outage`), decided here once:
- An outage: the database, or the way to it, is away. The connection was refused, reset or
  closed under us (any OSError but a timeout, such as a unix socket missing while the server is
  down) (asyncpg's `ConnectionDoesNotExistError`, and its `InterfaceError` "the
  underlying connection is closed" from a transaction's exit after a drop), SQLSTATE class 08,
  the server shutting down, crashing or starting up (57P01-57P03), or full (53300), or no host
  of a multi-host URL that `target_session_attrs` accepts (a failover under way: the old
  primary answers as a standby, or the replica is not promoted yet). A job it
  interrupts goes back to pending WITHOUT spending an attempt; loops wait and reconnect.
- A lock wait that outlasted DATABASE_LOCK_TIMEOUT_S (SQLSTATE 55P03, `LockWaitTimeout`): not
  an outage, but not the job's fault either (the host holds one of its tables, e.g. for its own
  migration). Handled like an outage: the job goes back, after a delay, WITHOUT spending an
  attempt; loops log it and try again next round.
- Anything else spends an attempt: a statement that times out (asyncpg's `command_timeout`,
  or the server's 57014), a driver fault (`InternalClientError`), a constraint violation, a bug.
  Such a job is retried with backoff and fails at QUEUE_MAX_ATTEMPTS instead of coming back
  forever.
"""

import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar

import asyncpg

P = ParamSpec("P")
T = TypeVar("T")

# The server or the way to it is away: class 08 (PostgresConnectionError covers it, including
# ConnectionDoesNotExistError), shutdown/crash/start-up (57P01-57P03), too many connections.
_OUTAGE_SQLSTATE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)
# asyncpg's wording for a connection that closed under an operation (InterfaceError).
_CLOSED_WORDS = ("connection is closed", "connection was closed")


class WorkerError(Exception):
    """The root of every error this project raises."""


class ConfigurationError(WorkerError):
    """A setting, URL or deployment the worker cannot run with; no retry can fix it."""


class DatabaseUnavailable(WorkerError):
    """The database cannot be reached right now (an outage): try again later, spend no attempt."""


class LockWaitTimeout(DatabaseUnavailable):
    """A lock wait outlasted DATABASE_LOCK_TIMEOUT_S (55P03): someone holds the table; try again
    after a delay, spend no attempt."""


class JobLost(WorkerError, RuntimeError):
    """The job is no longer ours (it was recovered as stalled and may run elsewhere)."""


def is_outage(exc: BaseException) -> bool:
    """True if `exc` means the database, or the way to it, is away (see the module docstring)."""
    for error in _causes(exc):
        if isinstance(error, DatabaseUnavailable):
            return True
        if isinstance(error, asyncpg.exceptions.TargetServerAttributeNotMatched):
            return True  # no writable primary among the hosts right now: it comes back
        if isinstance(error, TimeoutError | asyncpg.exceptions.InternalClientError):
            return False  # no answer in time, or a driver fault: the job's own failure
        if _network_error(error) or isinstance(error, _OUTAGE_SQLSTATE_ERRORS):
            return _refused_startup_parameter(error) is None
        if isinstance(error, asyncpg.InterfaceError) and any(
            words in str(error) for words in _CLOSED_WORDS
        ):
            return True
    return False


def translate(exc: BaseException, connection: object = None) -> BaseException:
    """The project's error for a driver error (`exc` itself when it has none).

    `connection`, when given, is the asyncpg connection the failed operation ran on: any error
    after which it is closed is an outage, whatever asyncpg called it (a backend terminated
    between two statements can surface as an `InternalClientError` on the next one).
    """
    if isinstance(exc, WorkerError):
        return exc
    for error in _causes(exc):
        parameter = _refused_startup_parameter(error)
        if parameter is not None:
            return ConfigurationError(
                f"the database server refused the startup parameter {parameter} (a "
                "transaction-pooling proxy such as PgBouncer does): set "
                "DATABASE_STATEMENT_CACHE_SIZE=0 when DATABASE_URL points at a pooler"
            )
    if any(isinstance(e, asyncpg.exceptions.LockNotAvailableError) for e in _causes(exc)):
        return LockWaitTimeout(describe(exc))
    if is_outage(exc) or (
        not isinstance(exc, TimeoutError) and _closed(connection)  # a timeout leaves it open
    ):
        return DatabaseUnavailable(describe(exc))
    return exc


@contextlib.contextmanager
def database_errors(connection: object = None) -> Iterator[None]:
    """Translate driver errors raised inside the block (others pass through unchanged);
    `connection`: the asyncpg connection the block uses, if it has one (see `translate`)."""
    try:
        yield
    except Exception as exc:
        translated = translate(exc, connection)
        if translated is exc:
            raise
        raise translated from exc


def translates_database_errors(
    function: Callable[P, Awaitable[T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorate a coroutine function of the database layer with `database_errors`; the first
    argument that is an asyncpg connection (or a pool's proxy of one) is the one it ran on."""

    @functools.wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        connection = next((a for a in args if callable(getattr(a, "is_closed", None))), None)
        with database_errors(connection):
            return await function(*args, **kwargs)

    return wrapper


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, for logs and error messages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _closed(connection: object) -> bool:
    """Whether `connection` (an asyncpg connection, if anything) is closed."""
    try:
        is_closed = getattr(connection, "is_closed", None)
        return bool(is_closed()) if callable(is_closed) else False
    except Exception:  # a pool's proxy already released: nothing to tell
        return False


def _network_error(exc: BaseException) -> bool:
    """A socket that could not connect or broke: refused, reset, unreachable, a DNS failure, or
    a unix socket whose file is missing while the server is down (FileNotFoundError). Any
    OSError but a timeout (checked before): this is only asked about database operations."""
    return isinstance(exc, OSError) and not isinstance(exc, TimeoutError)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then the driver error SQLAlchemy wraps in it (`.orig`, then its `__cause__`).

    Other causes are not followed: an HTTP client's error raised from an OSError is not a
    database outage.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "orig", None)
        if isinstance(wrapped, BaseException):
            current = wrapped
        elif type(current).__module__.startswith("sqlalchemy."):
            current = current.__cause__
        else:
            current = None


def _refused_startup_parameter(exc: BaseException) -> str | None:
    """The parameter a pooler refused at connect (`unsupported startup parameter: X`), if so."""
    if isinstance(exc, asyncpg.exceptions.ProtocolViolationError):
        _, found, parameter = str(exc).partition("unsupported startup parameter:")
        if found:
            return parameter.strip() or "?"
    return None
