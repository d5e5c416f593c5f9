"""Run Alembic from Python on a URL: `python -m worker migrate`, `make run`, the health check and
the tests.

The configuration is built here from the installed package (`worker.migrations`), so an installed
wheel migrates without the repo's alembic.ini; that file stays for developers running `alembic`
from a checkout (`alembic revision`, `alembic check`) and points at the same folder.
"""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import Connection

import worker.migrations
from worker.core.db import create_engine
from worker.core.schema import VERSION_TABLE

if TYPE_CHECKING:
    from worker.core.settings import Settings

# The project's own version table; a host's `alembic_version` is never read.
VERSION_QUERY = f"SELECT version_num FROM {VERSION_TABLE}"
MIGRATIONS_DIR = Path(worker.migrations.__file__).resolve().parent


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def schema_revision(db: Any) -> str | None:
    """The revision a database is at, on an asyncpg Connection or Pool (None: not migrated)."""
    try:
        revision: str | None = await db.fetchval(VERSION_QUERY)
        return revision
    except asyncpg.UndefinedTableError:
        return None


# `settings`, where a function takes it, sets up the engine for a transaction pooler when
# DATABASE_STATEMENT_CACHE_SIZE is 0 (worker.core.db.create_engine).


async def upgrade(url: str, revision: str = "head", settings: "Settings | None" = None) -> None:
    await _run(url, lambda cfg: command.upgrade(cfg, revision), settings)


async def downgrade(url: str, revision: str = "base", settings: "Settings | None" = None) -> None:
    await _run(url, lambda cfg: command.downgrade(cfg, revision), settings)


async def current_revision(url: str, settings: "Settings | None" = None) -> str | None:
    engine = create_engine(url, settings, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(
                    sync, opts={"version_table": VERSION_TABLE}
                ).get_current_revision()
            )
    finally:
        await engine.dispose()


async def _run(
    url: str, operation: Callable[[Config], None], settings: "Settings | None" = None
) -> None:
    engine = create_engine(url, settings, poolclass=pool.NullPool)

    def run_on(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        operation(cfg)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()
