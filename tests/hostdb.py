"""A host application's database as deployed before the project arrives.

`tests/fixtures/deployed/host-schema.sql` (a copy of the shared fixture) holds the host's real
shapes: its own Alembic head in `alembic_version`, its naming convention, `is_active`, a LONG
`symbol_factor_exposures`, child tables that cascade. `seed` adds rows like a live host's:
users and portfolios, universe rows including an inactive one and one without any price, and
`market_data_cache` rows for several symbols, including `BRK-B` (the host's spelling), a symbol
missing from the universe, a NULL volume and one zero close.
"""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from worker.core.db import asyncpg_dsn

HOST_SCHEMA = Path(__file__).parent / "fixtures" / "deployed" / "host-schema.sql"
HOST_HEAD = "h0st0000head"
# Every table the host has before the project arrives (alembic_version included).
HOST_TABLES = [
    "alembic_version",
    "users",
    "portfolios",
    "symbol_universe",
    "market_data_cache",
    "factor_definitions",
    "symbol_factor_exposures",
    "symbol_daily_metrics",
]
DAYS = 40  # weekdays of cache rows per symbol, all within the default lookback
# symbol -> is_active, for the host's own universe rows.
UNIVERSE = {"AAPL": True, "MSFT": True, "BRK-B": True, "OLDCO": False, "NOPRICE": True}
CACHED = ("AAPL", "MSFT", "BRK-B", "OLDCO", "NOTINUNIVERSE")
ZERO_CLOSE = ("MSFT", 5)  # (symbol, index of the weekday) whose close is 0
NULL_VOLUME = ("AAPL", 3)


def weekdays(n: int, today: date | None = None) -> list[date]:
    day = today or datetime.now(UTC).date()
    out: list[date] = []
    while len(out) < n:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            out.append(day)
    return sorted(out)


async def load_schema(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(HOST_SCHEMA.read_text())
    finally:
        await conn.close()


async def seed(url: str) -> None:
    now = datetime.now(UTC)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        user = uuid.uuid4()
        await conn.execute(
            "INSERT INTO users (id, email, hashed_password, full_name, is_active, created_at,"
            " updated_at) VALUES ($1, 'ann@example.com', 'x', 'Ann', true, $2, $2)",
            user,
            now,
        )
        await conn.execute(
            "INSERT INTO portfolios (id, user_id, name, currency, created_at, updated_at,"
            " account_name, account_type) VALUES ($1, $2, 'Main', 'USD', $3, $3, 'Broker',"
            " 'taxable')",
            uuid.uuid4(),
            user,
            now,
        )
        await conn.executemany(
            "INSERT INTO symbol_universe (symbol, asset_type, is_active) VALUES ($1, 'stock', $2)",
            list(UNIVERSE.items()),
        )
        rows = []
        for s, symbol in enumerate(CACHED):
            for i, day in enumerate(weekdays(DAYS)):
                close = Decimal(100 + s * 10) + Decimal(i) / 4
                if (symbol, i) == ZERO_CLOSE:
                    close = Decimal(0)
                volume = None if (symbol, i) == NULL_VOLUME else 1_000_000 + i
                rows.append(
                    (uuid.uuid4(), symbol, day, close - 1, close + 1, close - 2, close, volume, now)
                )
        await conn.executemany(
            "INSERT INTO market_data_cache (id, symbol, date, open, high, low, close, volume,"
            " data_source, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'fmp', $9, $9)",
            rows,
        )
        await conn.execute(
            "INSERT INTO symbol_factor_exposures (symbol, factor_id, calculation_date, beta_value,"
            " calculation_method) SELECT 'AAPL', id, current_date, 1.1, 'ols_market'"
            " FROM factor_definitions WHERE name = 'Market Beta (90D)'"
        )
        await conn.execute(
            "INSERT INTO symbol_daily_metrics (symbol, metrics_date, current_price)"
            " VALUES ('AAPL', current_date, 150)"
        )
    finally:
        await conn.close()


async def row_counts(url: str, tables: list[str] = HOST_TABLES) -> dict[str, int]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {t: await conn.fetchval(f'SELECT count(*) FROM "{t}"') for t in tables}
    finally:
        await conn.close()
