"""Where the tests' PostgreSQL comes from, and per-test databases copied from a migrated template.

Order: TEST_DATABASE_URL if set; else testcontainers if a Docker daemon answers within 2 s; else
the embedded server. DATABASE_URL is never read, so a developer's real database is never touched.
"""

import asyncio
import gc
import itertools
import os
import re
import socket
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from worker.core import embedded
from worker.core.db import asyncpg_dsn, sqlalchemy_url, with_database
from worker.ops import migrate

PREFIX = "sow_test"
_NAME = re.compile(rf"^{PREFIX}_(\d+)_")


@dataclass
class PgServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    admin_url: str  # a maintenance database on it (never one the tests drop)
    kind: str
    _stop: Callable[[], None] = field(default=lambda: None, repr=False)
    _counter: itertools.count = field(default_factory=itertools.count, repr=False)

    def url(self, database: str) -> str:
        return sqlalchemy_url(with_database(self.admin_url, database))

    def new_name(self, label: str) -> str:
        return f"{PREFIX}_{os.getpid()}_{label}_{next(self._counter)}"

    async def admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(asyncpg_dsn(self.admin_url))

    async def create_database(self, name: str, template: str | None = None) -> str:
        conn = await self.admin()
        try:
            clause = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{clause}')
        finally:
            await conn.close()
        return self.url(name)

    async def drop_database(self, name: str) -> None:
        conn = await self.admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def drop_stale_databases(self) -> None:
        """Drop databases left by test sessions that died (their PID no longer runs)."""
        conn = await self.admin()
        try:
            names = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{PREFIX}\\_%"
            )
        finally:
            await conn.close()
        for (name,) in names:
            match = _NAME.match(name)
            if match and not embedded.pid_alive(int(match.group(1))):
                await self.drop_database(name)

    def stop(self) -> None:
        self._stop()


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
    except Exception:
        client = None
    if client is None:
        # docker-py leaves the socket of its failed attempt unclosed: finalise it here, quietly,
        # rather than as a ResourceWarning (an error under pytest's filter) in a later test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (free when this returns)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_test_server() -> PgServer:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return PgServer(admin_url=sqlalchemy_url(url), kind="TEST_DATABASE_URL")
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine", driver=None).start()
        return PgServer(
            admin_url=sqlalchemy_url(container.get_connection_url()),
            kind="testcontainers",
            _stop=container.stop,
        )
    server = embedded.start(embedded_test_pgdata())
    return PgServer(admin_url=server.url("postgres"), kind="embedded", _stop=server.stop)


def embedded_test_pgdata() -> Path:
    # Under /tmp, not pytest's 0700 temp dirs: the server runs as its own user and must reach it.
    return Path(tempfile.gettempdir()) / f"symbol-onboarding-test-pg-{os.getuid()}"


async def build_template(server: PgServer) -> str:
    await server.drop_stale_databases()
    name = server.new_name("template")
    url = await server.create_database(name)
    await migrate.upgrade(url)
    return name


def run(coro):
    return asyncio.run(coro)
