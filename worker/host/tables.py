"""What the worker keeps true in the host's own tables, in the job's write transaction.

The host's readers never read the worker's tables (CONTEXT.md, "What the host's own code reads"),
so besides `symbol_prices_daily` (the worker's own store, the spec's contract) a job that stores
bars also:
- mirrors them into the host's `market_data_cache` (HOST_PRICE_MIRROR=auto|on|off), under the
  host's own name for the provider; rows the host wrote itself are never overwritten, and where
  their close disagrees with the worker's the difference is recorded (host_price_disagreements);
  generated prices (`synthetic`) and rows that came from that table (`database`) never go back;
- deletes the cached analytics of every portfolio that holds the symbol (CACHE_INVALIDATION=
  auto|off), where the host has a `positions` table;
- fills the host's descriptive columns of `symbol_universe` while they are NULL.

`HostTables.detect` decides once at start-up what applies to this database.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from worker.core.db import Connection
from worker.core.errors import ConfigurationError
from worker.core.settings import Settings
from worker.sql import host as sql

log = structlog.get_logger("worker.host")

# The host's own data_source for a provider, where it has one (some host readers count only
# these as prices); the other sources keep their own name.
HOST_SOURCE_NAMES = {"yahoo": "yfinance", "polygon": "polygon", "fmp": "fmp"}
# Sources whose bars are never mirrored: generated prices are not market data, and `database`
# rows came from the host's table in the first place.
NOT_MIRRORED = frozenset({"synthetic", "database"})
# Every data_source the worker writes (and so may update or replace), whichever source serves.
MIRROR_NAMES = ("yfinance", "polygon", "fmp", "tiingo", "csv")
# Columns the cache invalidation reads from the host's `positions`.
POSITION_COLUMNS = frozenset({"portfolio_id", "symbol", "deleted_at", "exit_date"})


# STORE_PRICES' parallel column arrays: dates, then open, high, low, close and adjusted close in
# ten-thousandths, then volume.
PriceColumns = tuple[list[Any], ...]


def host_source_name(source: str) -> str:
    return HOST_SOURCE_NAMES.get(source, source)


@dataclass(frozen=True)
class Mirrored:
    """What one mirror statement did."""

    rows_written: int
    host_rows_kept: int  # the host's own rows among the batch's dates, left as they are
    host_disagrees: int  # ... whose close differs from the worker's by more than a tick
    out_of_range: int  # bars whose close NUMERIC(12,4) cannot hold: not mirrored
    volume_too_large: int  # volumes above INTEGER's range: stored NULL
    examples: list[dict[str, Any]]


@dataclass(frozen=True)
class HostTables:
    """Which of the host's tables this database has and the settings turn on."""

    mirror_prices: bool = False
    invalidate_cache: bool = False

    @classmethod
    async def detect(cls, conn: Connection, settings: Settings) -> "HostTables":
        """Read once at start-up; ConfigurationError when HOST_PRICE_MIRROR=on and there is no
        host-owned market_data_cache."""
        found = await conn.fetchrow(sql.HOST_TABLES)
        assert found is not None
        mirror = settings.host_price_mirror
        if mirror == "on" and not found["host_price_table"]:
            what = (
                "is the copy the baseline revision created, not the host's"
                if found["price_table"]
                else "does not exist"
            )
            raise ConfigurationError(
                f"HOST_PRICE_MIRROR=on but market_data_cache {what} "
                "(set HOST_PRICE_MIRROR=auto or off)"
            )
        invalidate = False
        if settings.cache_invalidation == "auto" and found["positions"]:
            columns = set(await conn.fetchval(sql.POSITION_COLUMNS) or ())
            invalidate = POSITION_COLUMNS <= columns
            if not invalidate:
                log.warning(
                    "cache_invalidation_off",
                    reason="positions lacks columns",
                    missing=sorted(POSITION_COLUMNS - columns),
                )
        return cls(
            mirror_prices=mirror != "off" and bool(found["host_price_table"]),
            invalidate_cache=invalidate,
        )

    def mirrors(self, source: str) -> bool:
        return self.mirror_prices and source not in NOT_MIRRORED

    async def mirror(
        self,
        conn: Connection,
        symbol: str,
        source: str,
        columns: PriceColumns,
        *,
        replace: bool = False,
    ) -> Mirrored | None:
        """The bars just stored (STORE_PRICES' column arrays say which dates) into
        market_data_cache (see sql.MIRROR_PRICES); None when not mirrored. Call it after
        STORE_PRICES, in its transaction. `replace`: the worker's own rows of the symbol go
        first (a replaced history)."""
        if not self.mirrors(source):
            return None
        if replace:
            await conn.execute(sql.DELETE_MIRRORED, symbol, list(MIRROR_NAMES))
        dates = columns[0]
        if not dates:
            return None
        row = await conn.fetchrow(
            sql.MIRROR_PRICES,
            symbol,
            min(dates),
            max(dates),
            host_source_name(source),
            list(MIRROR_NAMES),
        )
        assert row is not None
        return Mirrored(
            rows_written=row["rows_written"],
            host_rows_kept=row["host_rows_kept"],
            host_disagrees=row["host_disagrees"],
            out_of_range=row["out_of_range"],
            volume_too_large=row["volume_too_large"],
            examples=_json_list(row["examples"]),
        )

    async def invalidate(self, conn: Connection, symbols: Sequence[str]) -> int:
        """Delete the cached analytics of the portfolios holding `symbols`; returns the rows."""
        if not self.invalidate_cache or not symbols:
            return 0
        status = await conn.execute(sql.INVALIDATE_ANALYTICS, list(symbols))
        return int(status.split()[-1])


NO_HOST = HostTables()  # a database without the host's tables (or with them turned off)


def _json_list(value: Any) -> list[dict[str, Any]]:
    return list(json.loads(value)) if isinstance(value, str) else list(value)
