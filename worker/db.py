"""Database URLs and engines: one place that knows how a URL is spelled for each driver."""

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from worker.errors import ConfigurationError, translates_database_errors
from worker.sql import session as sql

if TYPE_CHECKING:
    from worker.settings import Settings

_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")


# A connection of our own or one acquired from a pool: the statements take either.
Connection = asyncpg.Connection | PoolConnectionProxy


class DatabaseUrlError(ConfigurationError, ValueError):
    """The configured database URL cannot be used."""


def connect_options(settings: "Settings") -> dict[str, Any]:
    """asyncpg options for every connection the worker and its commands open.

    force_custom_plan: a cached generic plan of the claim cannot know how few rows are pending
    and may sort all of them (seen in EXPLAIN: 37 ms against 2 ms); planning these short
    statements each time costs microseconds. idle_in_transaction_session_timeout: a worker
    frozen inside its write transaction (SIGSTOP, a blocked event loop) must not hold that
    symbol's rows locked for as long as it is frozen. Both are startup parameters, so only with
    a statement cache: behind a transaction-pooling proxy (cache size 0) statements are unnamed
    and planned each time anyway, the proxy refuses startup parameters, and its own
    `idle_transaction_timeout` does the second job (see the README). lock_timeout: every
    statement's lock waits end after DATABASE_LOCK_TIMEOUT_S (a host migration holding a table
    must not hold our statements until the command timeout); behind a proxy the transactions
    that touch host tables set it themselves (`bounded_lock_waits`).
    """
    options: dict[str, Any] = {
        "statement_cache_size": settings.statement_cache_size,
        "command_timeout": settings.command_timeout_s,
    }
    if settings.statement_cache_size > 0:
        server_settings = {
            "plan_cache_mode": "force_custom_plan",
            "lock_timeout": _milliseconds(settings.lock_timeout_s),
        }
        if settings.idle_in_transaction_timeout_s > 0:
            server_settings["idle_in_transaction_session_timeout"] = _milliseconds(
                settings.idle_in_transaction_timeout_s
            )
        options["server_settings"] = server_settings
    return options


@contextlib.asynccontextmanager
async def bounded_lock_waits(conn: Connection, lock_timeout_s: float) -> AsyncIterator[None]:
    """A transaction whose lock waits end after `lock_timeout_s` (SQLSTATE 55P03, translated
    to LockWaitTimeout): for the work that touches host tables.

    SET LOCAL rather than only the connection's startup parameter: it also holds behind a
    transaction-pooling proxy, which refuses startup parameters and on which a session SET
    would stay on a server connection that another client uses next. One round trip more per
    transaction. Inside a transaction already, it opens a savepoint and sets the rest of the
    outer transaction."""
    async with conn.transaction():
        await conn.execute(sql.SET_LOCK_TIMEOUT, _milliseconds(lock_timeout_s))
        yield


def _milliseconds(seconds: float) -> str:
    """A duration setting as PostgreSQL takes it: whole milliseconds, at least 1."""
    return str(max(1, round(seconds * 1000)))


def pooler_connect_args() -> dict[str, Any]:
    """SQLAlchemy `connect_args` for an asyncpg engine behind a transaction pooler (PgBouncer).

    SQLAlchemy prepares every statement under a name, and asyncpg names them
    `__asyncpg_stmt_N__` per client connection: through a transaction pooler two clients meet
    on one server connection and the second gets `prepared statement "__asyncpg_stmt_1__"
    already exists`. Unique names, and no statement caches (a cached statement may have been
    prepared on another server connection), make every transaction self-contained.
    """
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
    }


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


@translates_database_errors
async def connect(url: str, settings: "Settings", **kwargs: Any) -> asyncpg.Connection:
    """One asyncpg connection with the worker's options; an outage raises DatabaseUnavailable."""
    return await asyncpg.connect(asyncpg_dsn(url), **connect_options(settings), **kwargs)


@translates_database_errors
async def create_pool(url: str, settings: "Settings", **kwargs: Any) -> asyncpg.Pool:
    """An asyncpg pool with the worker's options; an outage raises DatabaseUnavailable."""
    return await asyncpg.create_pool(asyncpg_dsn(url), **connect_options(settings), **kwargs)


def sqlalchemy_url(url: str) -> str:
    """`postgresql://` or `postgresql+asyncpg://` -> the SQLAlchemy asyncpg form."""
    return f"postgresql+asyncpg://{_split(url)}"


def asyncpg_dsn(url: str) -> str:
    """Any accepted spelling -> the plain `postgresql://` DSN that asyncpg.connect takes."""
    return f"postgresql://{_split(url)}"


def redact(url: str) -> str:
    """The URL with its password replaced, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def with_database(url: str, name: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def create_engine(url: str, settings: "Settings | None" = None, **kwargs: Any) -> AsyncEngine:
    """A SQLAlchemy engine; with `settings` whose statement cache is 0, set up for a pooler."""
    if settings is not None and settings.statement_cache_size == 0:
        kwargs["connect_args"] = {**pooler_connect_args(), **kwargs.get("connect_args", {})}
    return create_async_engine(sqlalchemy_url(url), **kwargs)


def rows_affected(tag: str) -> int:
    """asyncpg's command tag (`UPDATE 3`, `DELETE 42`) -> the rows it touched."""
    return int(tag.rsplit(" ", 1)[-1])


def _split(url: str) -> str:
    """The part after `scheme://`, once the scheme is known to be PostgreSQL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise DatabaseUrlError(
            f"unsupported database URL scheme {scheme!r}: use postgresql:// or postgresql+asyncpg://"
        )
    return rest
