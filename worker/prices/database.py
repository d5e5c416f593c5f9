"""Onboard from rows already in `market_data_cache` (no network at all).

Deployed databases have no adjusted close in that table, so `adj_close_price` stays NULL;
`close_price` is the cached close, whose meaning depends on the provider that filled the cache
(its `data_source` column). The host may spell a symbol differently from how it was enqueued
(`BRK-B` for `BRK.B`): every spelling of it is read (worker/prices/spelling.py), the enqueued one
winning a date both have. The connection is held for the one read only.
"""

import asyncpg

from worker.prices.base import Bars, NoData, PermanentSourceError, PriceSource, RawBar, Window
from worker.prices.spelling import spellings
from worker.prices.validate import normalize
from worker.sql import prices as sql

NAME = "database"


class DatabaseSource(PriceSource):
    name = NAME

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def fetch(self, symbol: str, window: Window) -> Bars:
        try:
            records = await self._pool.fetch(
                sql.CACHED_PRICES, spellings(symbol), window.start, window.end
            )
        except asyncpg.UndefinedTableError:
            raise PermanentSourceError(
                NAME, "this database has no market_data_cache table to onboard from"
            ) from None
        if not records:
            raise NoData(NAME, f"no rows for {symbol} in market_data_cache between {window}")
        rows = [
            RawBar(
                price_date=r["date"],
                open=r["open"],
                high=r["high"],
                low=r["low"],
                close=r["close"],
                adj_close=None,
                volume=r["volume"],
            )
            for r in records
        ]
        return normalize(NAME, symbol, rows, window)
