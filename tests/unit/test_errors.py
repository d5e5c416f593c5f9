"""The one decision of what is an outage, and the one error root (worker/core/errors.py; no database)."""

import importlib
import inspect
import pkgutil
import socket

import asyncpg
import httpx
import pytest
import sqlalchemy.exc
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

import worker
from worker.core.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    WorkerError,
    database_errors,
    is_outage,
    translate,
)


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


def sqlalchemy_wrapped(driver_error: BaseException) -> BaseException:
    """What SQLAlchemy raises for a driver error: its DBAPIError around an adapted error."""
    adapted = chained(
        AsyncAdapt_asyncpg_dbapi.OperationalError(str(driver_error), driver_error), driver_error
    )
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, adapted)


OUTAGES = [
    ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"),
    ConnectionResetError(104, "Connection reset by peer"),
    BrokenPipeError(32, "Broken pipe"),
    OSError("Multiple exceptions: [Errno 111] ..., [Errno 99] ..."),
    socket.gaierror(-2, "Name or service not known"),
    FileNotFoundError(2, "No such file or directory"),  # a unix socket while the server is down
    asyncpg.exceptions.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"
    ),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CrashShutdownError("terminating connection because of crash"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.ConnectionFailureError("connection failure"),
    asyncpg.InterfaceError(
        "cannot call Transaction.__aexit__(): the underlying connection is closed"
    ),
    asyncpg.InterfaceError("connection is closed"),
    sqlalchemy_wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")),
    DatabaseUnavailable("already translated"),
    # A multi-host URL with target_session_attrs=read-write while no host is a primary yet.
    asyncpg.exceptions.TargetServerAttributeNotMatched(
        "None of the hosts match the target attribute requirement <SessionAttribute.read_write>"
    ),
]

SPEND_AN_ATTEMPT = [
    TimeoutError(),  # asyncpg's command_timeout: a statement that always times out must end
    asyncpg.exceptions.InternalClientError("cannot switch to state 11"),
    asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.exceptions.UniqueViolationError("duplicate key value"),
    asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow"),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    # An HTTP client's connect error raised from an OSError is a provider problem, not ours.
    chained(httpx.ConnectError("connection refused"), ConnectionRefusedError(111, "refused")),
    KeyError("a bug"),
    sqlalchemy_wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key value")),
]


@pytest.mark.parametrize("exc", OUTAGES, ids=lambda e: type(e).__name__)
def test_outages(exc: BaseException) -> None:
    assert is_outage(exc)
    assert isinstance(translate(exc), DatabaseUnavailable)


@pytest.mark.parametrize("exc", SPEND_AN_ATTEMPT, ids=lambda e: type(e).__name__)
def test_everything_else_spends_an_attempt(exc: BaseException) -> None:
    assert not is_outage(exc)
    assert translate(exc) is exc


def test_a_pooler_refusing_a_startup_parameter_is_a_configuration_error() -> None:
    """Issue 11.9: PgBouncer refuses plan_cache_mode (class 08P01): fatal, naming the setting."""
    exc = asyncpg.exceptions.ProtocolViolationError(
        "unsupported startup parameter: plan_cache_mode"
    )
    assert not is_outage(exc)
    translated = translate(exc)
    assert isinstance(translated, ConfigurationError)
    assert "DATABASE_STATEMENT_CACHE_SIZE=0" in str(translated)
    assert "plan_cache_mode" in str(translated)


class ClosedConnection:
    def is_closed(self) -> bool:
        return True


def test_any_error_on_a_connection_that_is_now_closed_is_an_outage() -> None:
    """A backend terminated between two statements can surface as InternalClientError."""
    exc = asyncpg.exceptions.InternalClientError("cannot switch to state 11")
    with pytest.raises(DatabaseUnavailable) as raised:
        with database_errors(ClosedConnection()):
            raise exc
    assert raised.value.__cause__ is exc
    with pytest.raises(TimeoutError):  # a timeout leaves the connection open: not an outage
        with database_errors(ClosedConnection()):
            raise TimeoutError


def test_translation_keeps_other_errors_and_chains_the_driver_error() -> None:
    with pytest.raises(KeyError):
        with database_errors():
            raise KeyError("a bug")
    refused = ConnectionRefusedError(111, "refused")
    with pytest.raises(DatabaseUnavailable, match="ConnectionRefusedError") as raised:
        with database_errors():
            raise refused
    assert raised.value.__cause__ is refused


def test_every_error_the_project_defines_derives_from_the_one_root() -> None:
    """One error root: every exception class defined in the worker package is a WorkerError."""
    found = []
    for module_info in pkgutil.walk_packages(worker.__path__, "worker."):
        if module_info.name.startswith(("worker.migrations", "worker.__main__")):
            continue
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, BaseException):
                found.append(cls)
    assert len(found) > 10
    assert [c.__qualname__ for c in found if not issubclass(c, WorkerError)] == []
