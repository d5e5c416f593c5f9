"""A symbol's status and its newest stored daily bars, as `python -m worker prices` shows them."""

from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from worker.sql import prices as sql
from worker.sql import symbol as symbol_sql


@dataclass(frozen=True)
class StoredPrices:
    symbol: str
    status: str
    bars_stored: int
    last_price_date: date | None
    newest: list[Any]  # rows of LATEST_PRICES, newest first
    failure: Any = None  # the last failed job's row (LAST_FAILED_JOB), if any


async def read(conn: asyncpg.Connection, symbol: str, last: int) -> StoredPrices | None:
    """The symbol's status and its `last` newest bars; None when it is not in symbol_universe."""
    row = await conn.fetchrow(sql.SYMBOL_STATUS, symbol)
    bars = await conn.fetch(sql.LATEST_PRICES, symbol, last)
    failure = await conn.fetchrow(symbol_sql.LAST_FAILED_JOB, symbol)
    if row is None:
        return None
    return StoredPrices(
        symbol, row["status"], row["bars"], row["last_price_date"], list(bars), failure
    )


def format_text(p: StoredPrices) -> str:
    """A status line, then one line a bar under a header (no header without bars)."""
    last = p.last_price_date
    lines = [
        f"{p.symbol}: {p.status}, {p.bars_stored} daily bars stored"
        + (f", the newest {last.isoformat()}" if last else "")
    ]
    failure = p.failure
    if p.status == "error":  # why: its last failed job's error
        lines.append(
            f"in error: no failed job of {p.symbol} is kept (pruned?)"
            if failure is None
            else f"in error: its {failure['kind']} job {failure['job_id']} failed"
            f" {failure['finished_at']:%Y-%m-%d %H:%M:%S%z} after {failure['attempts']}"
            f" attempt(s): {failure['error'] or 'no error recorded'}"
            f" (`python -m worker show {p.symbol}` for more; `retry JOB_ID` runs it again)"
        )
    if p.newest:
        lines.append(
            f"{'date':<10} {'open':>12} {'high':>12} {'low':>12} {'close':>12} {'adj close':>12}"
            f" {'volume':>14}"
        )
    for bar in p.newest:
        cells = [
            bar[c]
            for c in ("open_price", "high_price", "low_price", "close_price", "adj_close_price")
        ]
        lines.append(
            f"{bar['price_date'].isoformat():<10} "
            + " ".join(f"{'' if v is None else v:>12}" for v in cells)
            + f" {'' if bar['volume'] is None else bar['volume']:>14}"
        )
    return "\n".join(lines)
