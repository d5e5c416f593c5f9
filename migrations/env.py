"""Alembic environment on asyncpg.

The URL comes from DATABASE_URL. A caller (the tests, `worker.ops.migrate`) can instead hand in an
open connection through `config.attributes["connection"]`, so migrations run on its connection.

The project's revisions live in their own version table (`symbol_onboarding_alembic_version`), so
they coexist with a host application's Alembic chain in `alembic_version`, which is never read or
written. Autogenerate compares only what the project owns (worker/core/schema.py). At `base` the
version table itself is dropped: a downgrade to base leaves nothing of the project behind.
"""

import asyncio
import os

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection

from worker.core.db import create_engine
from worker.core.schema import VERSION_TABLE, include_object
from worker.models import Base

config = context.config
target_metadata = Base.metadata

# Databases migrated before the project had its own version table kept its revision in
# `alembic_version`. Only such a database (it has the queue table, and no project version table)
# has that row moved, once; a host's database never matches, so its `alembic_version` is untouched.
LEGACY_VERSION_ROW = """
SELECT v.version_num
FROM alembic_version AS v
WHERE to_regclass('symbol_onboarding_queue') IS NOT NULL
  AND v.version_num = ANY(:revisions)
"""


def _move_legacy_version_row(connection: Connection) -> None:
    has = connection.execute(
        text("SELECT to_regclass(:ours) IS NULL AND to_regclass('alembic_version') IS NOT NULL"),
        {"ours": VERSION_TABLE},
    ).scalar()
    if not has:
        return
    revisions = [script.revision for script in context.script.walk_revisions()]
    legacy = connection.execute(text(LEGACY_VERSION_ROW), {"revisions": revisions}).scalar()
    if legacy is None:
        return
    connection.execute(
        text(
            f"CREATE TABLE {VERSION_TABLE} (version_num varchar(32) NOT NULL,"
            f" CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
        )
    )
    connection.execute(text(f"INSERT INTO {VERSION_TABLE} VALUES (:v)"), {"v": legacy})
    connection.execute(text("DELETE FROM alembic_version WHERE version_num = :v"), {"v": legacy})
    if connection.execute(text("SELECT NOT EXISTS (SELECT 1 FROM alembic_version)")).scalar():
        connection.execute(text("DROP TABLE alembic_version"))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        compare_type=True,
        compare_server_default=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        _move_legacy_version_row(connection)
        context.run_migrations()
        if not context.get_context().get_current_heads():
            connection.execute(text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))


async def _run_from_url(url: str) -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("DATABASE_URL is not set: export it, e.g. postgresql://user@host/dbname")
    asyncio.run(_run_from_url(url))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported; run against a database")
run_migrations_online()
