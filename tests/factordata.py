"""Price data for the factor tests and bench/factors.py: reference ETFs and symbols with known
structure (seeded numpy generators, so every run is the same), stored with COPY."""

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal

import asyncpg
import numpy as np

from worker.factors.betas import REFERENCE_ETFS

FIRST_DAY = date(2024, 1, 2)  # a Tuesday


def business_days(n: int, first: date = FIRST_DAY) -> list[date]:
    """`n` weekdays from `first` on."""
    days, day = [], first
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def reference_returns(rng: np.random.Generator, n: int) -> np.ndarray:
    """(8, n) daily returns of the reference ETFs: a shared market factor plus their own noise."""
    market = rng.normal(0.0004, 0.01, n)
    loadings = np.array([1.0, -0.3, 0.9, 1.1, 1.0, 0.95, 1.2, 0.7])
    return loadings[:, None] * market + rng.normal(0, 0.004, (len(REFERENCE_ETFS), n))


def closes(returns: np.ndarray, start: float = 100.0) -> np.ndarray:
    """Prices from returns, rounded to the store's 4 decimals."""
    return np.round(start * np.cumprod(1.0 + returns, axis=-1), 4)


def symbol_returns(rng: np.random.Generator, refs: np.ndarray, k: int) -> np.ndarray:
    """(k, n) returns of symbols loading on the ETFs, with their own noise."""
    loadings = rng.normal(0.2, 0.4, (k, refs.shape[0]))
    return loadings @ refs + rng.normal(0, 0.01, (k, refs.shape[1]))


Series = tuple[Sequence[date], Sequence[float], Sequence[float] | None]  # dates, close, adj


async def store_prices(
    conn: asyncpg.Connection, series: Mapping[str, Series], *, status: str = "active"
) -> None:
    """Universe rows (status `status`, last_price_date set) and prices, with COPY."""
    await conn.executemany(
        """INSERT INTO symbol_universe (symbol, status, added_source, last_price_date)
           VALUES ($1, $2, 'seed', $3)
           ON CONFLICT (symbol) DO UPDATE SET status = EXCLUDED.status,
               last_price_date = EXCLUDED.last_price_date""",
        [(s, status, max(d)) for s, (d, _, _) in series.items()],
    )
    records = [
        (
            symbol,
            day,
            _money(close),
            None if adj is None else _money(adj[i]),
        )
        for symbol, (days, close_prices, adj) in series.items()
        for i, (day, close) in enumerate(zip(days, close_prices, strict=True))
    ]
    await conn.copy_records_to_table(
        "symbol_prices_daily",
        records=records,
        columns=["symbol", "price_date", "close_price", "adj_close_price"],
    )


def _money(value: float) -> Decimal:
    return Decimal(f"{value:.4f}")


def reference_series(days: Sequence[date], seed: int = 1) -> dict[str, Series]:
    """The eight ETFs on `days`, closes = adjusted closes."""
    rng = np.random.default_rng(seed)
    prices = closes(reference_returns(rng, len(days)))
    return {
        etf: (days, prices[i].tolist(), prices[i].tolist()) for i, etf in enumerate(REFERENCE_ETFS)
    }
