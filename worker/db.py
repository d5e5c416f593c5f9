"""The import path hosts already use for the database URL and connection helpers; it lives in worker.core.db."""

from worker.core.db import (
    Connection,
    DatabaseUrlError,
    asyncpg_dsn,
    create_engine,
    pooler_connect_args,
    redact,
    sqlalchemy_url,
)

__all__ = [
    "Connection",
    "DatabaseUrlError",
    "asyncpg_dsn",
    "create_engine",
    "pooler_connect_args",
    "redact",
    "sqlalchemy_url",
]
