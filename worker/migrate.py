"""Run Alembic from Python on a URL: `python -m worker migrate`, `make run`, the health check and
the tests.

The configuration is built here from the installed package (`worker.migrations`), so an installed
wheel migrates without the repo's alembic.ini; that file stays for developers running `alembic`
from a checkout (`alembic revision`, `alembic check`) and points at the same folder.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import Connection

import worker.migrations
from worker.db import create_engine

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


async def upgrade(url: str, revision: str = "head") -> None:
    await _run(url, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(url: str, revision: str = "base") -> None:
    await _run(url, lambda cfg: command.downgrade(cfg, revision))


async def current_revision(url: str) -> str | None:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


async def _run(url: str, operation) -> None:
    engine = create_engine(url, poolclass=pool.NullPool)

    def run_on(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        operation(cfg)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()
