"""Database URLs and engines: one place that knows how a URL is spelled for each driver."""

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential_jitter,
)

from worker.core.errors import ConfigurationError, DatabaseUnavailable, translates_database_errors
from worker.sql import session as sql

log = structlog.get_logger("worker.db")

if TYPE_CHECKING:
    from worker.core.settings import Settings

_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
DEFAULT_PORT = 5432


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
    `idle_transaction_timeout` does the second job (see docs/operations/pgbouncer.md).
    lock_timeout: every statement's lock waits end after DATABASE_LOCK_TIMEOUT_S (a host
    migration holding a table must not hold our statements until the command timeout); behind a
    proxy the transactions that touch host tables set it themselves (`bounded_lock_waits`).
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


async def create_pool_waiting(
    url: str, settings: "Settings", *, max_outage_s: float | None, **kwargs: Any
) -> asyncpg.Pool:
    """`create_pool`, waiting out an outage (DatabaseUnavailable, TimeoutError) with jittered
    backoff up to DATABASE_RECONNECT_MAX_WAIT_S between tries: for ever (None), or for
    `max_outage_s` and then the last error. Each wait is logged (`database_unavailable`)."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((DatabaseUnavailable, TimeoutError)),
        wait=wait_exponential_jitter(multiplier=0.2, max=settings.reconnect_max_wait_s),
        stop=stop_after_delay(max_outage_s) if max_outage_s is not None else stop_never,
        reraise=True,
        before_sleep=lambda state: log.warning(
            "database_unavailable",
            database=redact(url),
            attempt=state.attempt_number,
            error=str(state.outcome.exception()) if state.outcome else None,
        ),
    ):
        with attempt:
            return await create_pool(url, settings, **kwargs)
    raise AssertionError("unreachable")  # reraise=True: the last try's error propagates


def sqlalchemy_url(url: str) -> str:
    """`postgresql://` or `postgresql+asyncpg://` -> the SQLAlchemy asyncpg form.

    Several hosts (a primary and its replicas, in any spelling `parse_hosts` accepts) become
    SQLAlchemy's own `?host=h1:p1&host=h2:p2`: it cannot read libpq's `h1:p1,h2:p2` (it takes
    `p1,h2:p2` for the first port), and its asyncpg dialect hands the list to asyncpg, which
    tries the hosts in order and keeps the first that `target_session_attrs` accepts.
    """
    many = _many_hosts(url)
    if many is None:
        return f"postgresql+asyncpg://{_split(url)}"
    for host, _port in many.hosts:
        if ":" in host:
            raise DatabaseUrlError(
                f"IPv6 address {host} in a list of several hosts: SQLAlchemy cannot read it "
                "there (it splits host:port at the colon); use a host name"
            )
    hosts = [("host", f"{host}:{port}") for host, port in many.hosts]
    return _render("postgresql+asyncpg", many, hosts)


def asyncpg_dsn(url: str) -> str:
    """Any accepted spelling -> the plain `postgresql://` DSN that asyncpg.connect takes.

    Several hosts become `?host=h1,h2&port=p1,p2`, which asyncpg reads for unix sockets and
    IPv6 addresses alike (and, unlike a repeated `host=`, of which it keeps only the last).
    """
    many = _many_hosts(url)
    if many is None:
        return f"postgresql://{_split(url)}"
    hosts = [
        ("host", ",".join(f"[{h}]" if ":" in h else h for h, _ in many.hosts)),
        ("port", ",".join(str(port) for _, port in many.hosts)),
    ]
    return _render("postgresql", many, hosts)


class Hosts(NamedTuple):
    """A URL's servers, and the rest of it as written: for a URL naming several hosts."""

    hosts: list[tuple[str, int]]  # (host, port) in the order given, each port filled in
    auth: str  # `user:password@` as written (percent-escapes kept), or ""
    path: str  # `/dbname` as written
    query: list[tuple[str, str]]  # every parameter but host and port, in order


def parse_hosts(url: str) -> Hosts:
    """The servers `url` names, in either libpq spelling: `h1:p1,h2:p2` after the `@`, or
    `?host=h1,h2&port=p1,p2` (also SQLAlchemy's `?host=h1:p1&host=h2:p2`). A host without a
    port is on 5432; a port list of one applies to every host. DatabaseUrlError when the two
    spellings are mixed, a port is not a number, or the ports do not match the hosts."""
    rest = _split(url)
    rest, _, _fragment = rest.partition("#")
    location, _, raw_query = rest.partition("?")
    netloc, slash, dbname = location.partition("/")
    auth, at, hostlist = netloc.rpartition("@")
    query = parse_qsl(raw_query, keep_blank_values=True)
    query_hosts = [h for key, value in query if key == "host" for h in value.split(",") if h]
    query_ports = [p for key, value in query if key == "port" for p in value.split(",") if p]
    if hostlist and query_hosts:
        raise DatabaseUrlError(
            "database URL names hosts twice (after the @ and in ?host=): use one of the two"
        )
    if hostlist:
        specs = [_host_port(unquote(spec)) for spec in hostlist.split(",")]
    else:
        specs = [_host_port(spec) for spec in query_hosts]
    ports = [_port(p) for p in query_ports]
    if ports and any(port is not None for _, port in specs):
        raise DatabaseUrlError(
            "database URL gives ports twice (host:port and ?port=): use one of the two"
        )
    if ports and len(ports) not in (1, len(specs)):
        raise DatabaseUrlError(
            f"database URL lists {len(specs)} hosts and {len(ports)} ports: give one port, "
            "or one per host"
        )
    if ports:
        specs = [
            (host, ports[0] if len(ports) == 1 else ports[i]) for i, (host, _) in enumerate(specs)
        ]
    return Hosts(
        hosts=[(host, DEFAULT_PORT if port is None else port) for host, port in specs],
        auth=auth + at,
        path=slash + dbname,
        query=[(key, value) for key, value in query if key not in ("host", "port")],
    )


def _many_hosts(url: str) -> Hosts | None:
    """`url`'s hosts when it names several; None for one (such a URL is passed on as it is)."""
    parsed = parse_hosts(url)
    return parsed if len(parsed.hosts) > 1 else None


def _host_port(spec: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` or a unix socket directory -> (host, port)."""
    if spec.startswith("["):
        host, bracket, port = spec[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise DatabaseUrlError(f"invalid IPv6 address {spec!r} in the database URL")
        return host, _port(port[1:]) if port else None
    if spec.startswith("/"):
        return spec, None  # a unix socket directory: its port comes from ?port=
    host, colon, port = spec.partition(":")
    return host, _port(port) if colon else None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise DatabaseUrlError(f"port {text!r} in the database URL is not a port number")
    return int(text)


def _render(scheme: str, parsed: Hosts, hosts: list[tuple[str, str]]) -> str:
    query = urlencode([*hosts, *parsed.query], quote_via=quote, safe="/,:[]")
    return f"{scheme}://{parsed.auth}{parsed.path}?{query}"


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
