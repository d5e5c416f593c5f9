"""Database URLs and engines: one place that knows how a URL is spelled for each driver."""

from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")

# What a lost or refused database connection looks like from asyncpg: network errors (OSError,
# which includes timeouts), SQLSTATE classes 08 (connection) and 57 (operator intervention:
# shutdown, pg_terminate_backend, "starting up"), and the client's own broken-connection states.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


class DatabaseUrlError(ValueError):
    """The configured database URL cannot be used."""


# Settings for the worker's own connections. force_custom_plan: a cached generic plan of the claim
# cannot know that few rows are pending and may sort the whole pending set (seen in EXPLAIN:
# 37 ms against 2 ms); planning these short statements each time costs microseconds.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


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
