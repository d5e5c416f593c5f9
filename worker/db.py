"""Database URLs and engines: one place that knows how a URL is spelled for each driver."""

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from worker.settings import Settings

_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")

# What a lost or refused database connection looks like from asyncpg: network errors and
# timeouts (OSError), SQLSTATE class 08, the server shutting down, crashing, starting up or full
# (57P01-57P03, 53300), and the client's own broken-connection states. Not a statement timeout
# or a cancelled query (57014): those are the job's own failures and spend an attempt.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InternalClientError,
)


# A connection of our own or one acquired from a pool: the statements take either.
Connection = asyncpg.Connection | PoolConnectionProxy


class DatabaseUrlError(ValueError):
    """The configured database URL cannot be used."""


def connect_options(settings: "Settings") -> dict[str, Any]:
    """asyncpg options for the worker's own connections (pool and claim connection).

    force_custom_plan: a cached generic plan of the claim cannot know how few rows are pending
    and may sort all of them (seen in EXPLAIN: 37 ms against 2 ms); planning these short
    statements each time costs microseconds. Only with a statement cache: behind a
    transaction-pooling proxy (cache size 0) statements are unnamed and planned each time anyway,
    and the proxy would refuse the startup parameter.
    """
    options: dict[str, Any] = {
        "statement_cache_size": settings.statement_cache_size,
        "command_timeout": settings.command_timeout_s,
    }
    if settings.statement_cache_size > 0:
        options["server_settings"] = {"plan_cache_mode": "force_custom_plan"}
    return options


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


def create_engine(url: str, **kwargs: object) -> AsyncEngine:
    return create_async_engine(sqlalchemy_url(url), **kwargs)


def _split(url: str) -> str:
    """The part after `scheme://`, once the scheme is known to be PostgreSQL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise DatabaseUrlError(
            f"unsupported database URL scheme {scheme!r}: use postgresql:// or postgresql+asyncpg://"
        )
    return rest
