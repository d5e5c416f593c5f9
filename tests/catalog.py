"""A comparable snapshot of a database's schema, read from the PostgreSQL catalog; Alembic's view
of it (autogenerate's diff, `alembic` on the command line)."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

from worker.core.db import asyncpg_dsn, create_engine

ROOT = Path(__file__).resolve().parents[1]

COLUMNS = """
SELECT c.relname AS table_name, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid AND c.relkind = 'r'
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relname = ANY($1::text[])
"""

INDEXES = """
SELECT t.relname AS table_name, i.relname AS index_name, pg_get_indexdef(i.oid) AS definition
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'public'
WHERE t.relname = ANY($1::text[])
"""

CONSTRAINTS = """
SELECT t.relname AS table_name, c.conname AS name, c.contype AS kind,
       pg_get_constraintdef(c.oid) AS definition
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'public'
WHERE t.relname = ANY($1::text[]) AND c.contype IN ('p', 'f', 'u', 'c')
"""

TRIGGERS = """
SELECT t.relname AS table_name, g.tgname AS name, pg_get_triggerdef(g.oid) AS definition
FROM pg_trigger g
JOIN pg_class t ON t.oid = g.tgrelid
JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'public'
WHERE t.relname = ANY($1::text[]) AND NOT g.tgisinternal
"""

FUNCTIONS = """
SELECT p.proname, pg_get_function_identity_arguments(p.oid)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'public'
"""


async def snapshot(url: str, tables: list[str]) -> dict[str, set[tuple[Any, ...]]]:
    """Columns, indexes, constraints and triggers of `tables`, as sets of tuples."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {
            "columns": {tuple(r) for r in await conn.fetch(COLUMNS, tables)},
            "indexes": {tuple(r) for r in await conn.fetch(INDEXES, tables)},
            "constraints": {tuple(r) for r in await conn.fetch(CONSTRAINTS, tables)},
            "triggers": {tuple(r) for r in await conn.fetch(TRIGGERS, tables)},
        }
    finally:
        await conn.close()


async def table_names(url: str) -> set[str]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r[0] for r in rows}


async def functions(url: str) -> set[tuple[str, str]]:
    """Every function in the public schema, as (name, identity arguments)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {tuple(r) for r in await conn.fetch(FUNCTIONS)}
    finally:
        await conn.close()


async def autogenerate_diff(url: str, metadata: MetaData, **opts: Any) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match `metadata`."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"compare_type": True, "compare_server_default": True, **opts}
                    ),
                    metadata,
                )
            )
    finally:
        await engine.dispose()


def alembic_cli(url: str, *args: str) -> None:
    """`alembic ARGS` from the checkout (its alembic.ini) on `url`; fails the test on error."""
    result = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
