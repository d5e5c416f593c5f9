"""The factor store: reads price panels and writes betas in either table shape. Thin: each
method runs one or two statements of worker/sql/factors.py; the math lives in betas.py.

Two shapes of `symbol_factor_exposures` are real, and the store finds out which one a database
has from the catalog (`FactorStore.detect`, once at start-up):
- wide (the spec's, a fresh install): one row per (symbol, calculation_date) with twelve beta
  columns, NULL where a beta was not computed;
- long (the host's): one row per (symbol, factor, calculation_date), the factor found by name in
  `factor_definitions`, with R^2, observations, method, ridge alpha and window; a factor that was
  not computed has no row.
A table that is neither, lacks the unique key the upsert needs, has a NOT NULL column the worker
cannot fill, or (long) a `factor_definitions` without one of the twelve names is refused with a
ShapeError saying what is missing.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import asyncpg
import numpy as np
import numpy.typing as npt

from worker.core.db import Connection
from worker.core.errors import ConfigurationError
from worker.factors.betas import FACTORS, REFERENCE_ETFS, Betas, Panel
from worker.sql import factors as sql

TABLE = "symbol_factor_exposures"
WIDE_KEY = ("calculation_date", "symbol")
LONG_KEY = ("calculation_date", "factor_id", "symbol")
LONG_COLUMNS = (
    "symbol",
    "factor_id",
    "calculation_date",
    "beta_value",
    "r_squared",
    "observations",
    "quality_flag",
    "calculation_method",
    "regularization_alpha",
    "regression_window_days",
)
CAPPED_FLAG = "capped"  # quality_flag of a long row whose raw beta was outside [-5, 5]


# Elements of PostgreSQL's binary array format (array_send): a big-endian int32 length, then
# the value. READ_PANEL cuts off each array's 20-byte header (dimensions, NULL flag, element
# type, length, lower bound), so that the elements of every symbol's array are one buffer.
DAY = np.dtype([("length", ">i4"), ("value", ">i4")])
PRICE = np.dtype([("length", ">i4"), ("value", ">f8")])


def binary_elements(
    chunks: Sequence[bytes], element: np.dtype
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    """The values of one-dimensional arrays sent by array_send without their headers, all of
    them in one array, and how many values each chunk holds. Every element must be a value of
    the element's width: a NULL (length -1) or a chunk cut anywhere else is refused."""
    sizes = np.fromiter(map(len, chunks), np.int64, len(chunks))
    if (sizes % element.itemsize).any():
        raise ValueError(f"array bodies are not whole {element.itemsize}-byte elements")
    cells = np.frombuffer(b"".join(chunks), element)
    width = element["value"].itemsize
    if not (cells["length"] == width).all():
        raise ValueError(f"expected arrays of {width}-byte values without NULLs")
    return cells["value"], sizes // element.itemsize


class ShapeError(ConfigurationError, RuntimeError):
    """symbol_factor_exposures has a shape the worker cannot write."""


@dataclass(frozen=True)
class PricePanel:
    """What the store read: the symbols that have prices in the window, in a Panel's row order."""

    symbols: tuple[str, ...]
    panel: Panel
    recent_from: date | None  # the series start here at the earliest (None: no cut)


@dataclass(frozen=True)
class FactorStore:
    shape: Literal["wide", "long"]
    factor_ids: tuple[uuid.UUID, ...] = ()  # long: the ids of FACTORS, in order

    @classmethod
    async def detect(cls, conn: Connection | asyncpg.Pool) -> "FactorStore":
        """The shape this database's table has; ShapeError when the worker cannot write it."""
        columns = {r["name"]: r for r in await conn.fetch(sql.TABLE_COLUMNS, TABLE)}
        if not columns:
            raise ShapeError(f"no {TABLE} table: run `alembic upgrade head`")
        shape: Literal["wide", "long"] = "long" if "factor_id" in columns else "wide"
        written, key = (
            (("symbol", "calculation_date", *sql.WIDE_COLUMNS), WIDE_KEY)
            if shape == "wide"
            else (LONG_COLUMNS, LONG_KEY)
        )
        missing = [c for c in written if c not in columns]
        if missing:
            raise ShapeError(
                f"{TABLE} looks {shape} but has no column {', '.join(missing)}: "
                f"the worker writes {', '.join(written)}"
            )
        unfillable = sorted(
            name
            for name, c in columns.items()
            if c["not_null"] and not c["has_default"] and name not in written
        )
        if unfillable:
            raise ShapeError(
                f"{TABLE} has NOT NULL column(s) without a default that the worker cannot "
                f"fill: {', '.join(unfillable)}"
            )
        keys = {tuple(r["columns"]) for r in await conn.fetch(sql.UNIQUE_KEYS, TABLE)}
        if key not in keys:
            raise ShapeError(
                f"{TABLE} ({shape}) has no unique constraint on ({', '.join(sorted(key))}) "
                "to upsert on"
            )
        if shape == "wide":
            return cls("wide")
        names = [f.name for f in FACTORS]
        try:
            found = {r["name"]: r["id"] for r in await conn.fetch(sql.FACTOR_IDS, names)}
        except asyncpg.UndefinedTableError:
            raise ShapeError(f"{TABLE} is long but there is no factor_definitions table") from None
        absent = [n for n in names if n not in found]
        if absent:
            raise ShapeError(f"factor_definitions has no factor named {', '.join(absent)}")
        return cls("long", tuple(found[n] for n in names))

    async def read_panel(
        self,
        conn: Connection,
        symbols: Sequence[str],
        *,
        as_of: date | None,
        history_days: int,
        recent_dates: int | None = None,
    ) -> PricePanel | None:
        """The symbols' and the reference ETFs' prices for `history_days` up to SPY's latest
        date on or before `as_of` (None: the latest); None when SPY has no price by then.
        `recent_dates`: every series only from SPY's `recent_dates`-th latest date on
        (PricePanel.recent_from; None when SPY has fewer, or no cut was asked for)."""
        wanted = list(dict.fromkeys([*symbols, *REFERENCE_ETFS]))
        fetched = await conn.fetch(sql.READ_PANEL, wanted, as_of, history_days, recent_dates)
        if not fetched:  # not even SPY: it has no price by then
            return None
        rows = {r["symbol"]: r for r in fetched}
        found = tuple(s for s in dict.fromkeys(symbols) if s in rows)
        series = [rows[s] for s in found] + [rows.get(e) for e in REFERENCE_ETFS]
        present = [r for r in series if r is not None]
        day_values, lengths = binary_elements([r["days"] for r in present], DAY)
        prices, price_lengths = binary_elements([r["prices"] for r in present], PRICE)
        if not np.array_equal(lengths, price_lengths):
            raise ValueError("a symbol's dates and prices differ in number")
        # The grid: every date any series has. Day numbers span about FACTOR_HISTORY_DAYS, so
        # a table over that span places each price in its column without sorting.
        offsets = day_values - day_values.min()
        seen = np.zeros(int(offsets.max()) + 1, dtype=bool)
        seen[offsets] = True
        grid = np.flatnonzero(seen) + int(day_values.min())
        column = np.cumsum(seen) - 1
        matrix = np.full((len(series), grid.size), np.nan)
        rows_of = [i for i, r in enumerate(series) if r is not None]
        matrix[np.repeat(rows_of, lengths), column[offsets]] = prices
        k = len(found)
        recent_from = fetched[0]["recent_from"]
        return PricePanel(found, Panel(grid, matrix[:k], matrix[k:]), recent_from)

    def rows_for(self, betas: Betas) -> int:
        """The exposure rows `write` would write."""
        if self.shape == "wide":
            return int(betas.computed.any(axis=1).sum())
        return int(betas.computed.sum())

    async def write(self, conn: Connection, symbols: Sequence[str], betas: Betas) -> int:
        """Upsert every symbol with at least one computed beta and move its last_factor_date;
        returns the exposure rows written. Universe rows first (the job's lock order)."""
        rows = np.flatnonzero(betas.computed.any(axis=1))
        if rows.size == 0:
            return 0
        names = [symbols[i] for i in rows.tolist()]
        days = betas.calculation_day[rows].tolist()
        await conn.execute(sql.ADVANCE_LAST_FACTOR_DATE, names, days)
        computed = betas.computed[rows]
        if self.shape == "wide":
            values = np.where(computed, betas.beta[rows], np.nan).T
            await conn.execute(sql.UPSERT_WIDE, names, days, *values.tolist())
            return len(names)
        cell_rows, cell_factors = np.nonzero(computed)
        picked = rows[cell_rows]
        await conn.execute(
            sql.UPSERT_LONG,
            [names[i] for i in cell_rows],
            betas.calculation_day[picked].tolist(),
            [self.factor_ids[j] for j in cell_factors],
            betas.beta[picked, cell_factors].tolist(),
            betas.r_squared[picked, cell_factors].tolist(),
            betas.observations[picked, cell_factors].tolist(),
            [CAPPED_FLAG if c else None for c in betas.capped[picked, cell_factors]],
            [FACTORS[j].method for j in cell_factors],
            [np.nan if FACTORS[j].alpha is None else FACTORS[j].alpha for j in cell_factors],
            [FACTORS[j].window for j in cell_factors],
            list(self.factor_ids),
        )
        return int(cell_rows.size)

    @staticmethod
    async def active_symbols(
        conn: Connection, symbols: Sequence[str] | None
    ) -> tuple[list[str], list[tuple[str, str | None]]]:
        """The active symbols (all, or those of `symbols`), and the requested ones that are not
        active with their status (None: unknown)."""
        wanted = None if symbols is None else list(symbols)
        active = [r[0] for r in await conn.fetch(sql.ACTIVE_SYMBOLS, wanted)]
        inactive = (
            [] if wanted is None else [tuple(r) for r in await conn.fetch(sql.NOT_ACTIVE, wanted)]
        )
        return active, inactive

    # --- reference ETFs and the symbols waiting for them ---------------------------------------

    @staticmethod
    async def lock_references(conn: Connection, *, exclusive: bool) -> None:
        """The reference lock, until the transaction ends (see worker/factors/__init__.py)."""
        statement = sql.LOCK_REFERENCES_EXCLUSIVE if exclusive else sql.LOCK_REFERENCES_SHARED
        await conn.execute(statement, sql.REFERENCE_LOCK_KEY)

    @staticmethod
    async def reference_dates(conn: Connection, symbol: str) -> tuple[dict[str, date | None], bool]:
        """Each reference ETF's latest stored price date (None: no prices), and whether
        `symbol` is waiting for reference data."""
        rows = await conn.fetch(sql.REFERENCE_DATES, list(REFERENCE_ETFS), symbol)
        return {r["symbol"]: r["last_price_date"] for r in rows}, bool(rows[0]["waiting"])

    @staticmethod
    async def enqueue_references(conn: Connection, etfs: Sequence[str]) -> None:
        await conn.execute(sql.ENQUEUE_REFERENCES, list(etfs))

    @staticmethod
    async def wait_for_references(conn: Connection, symbol: str, etfs: Sequence[str]) -> None:
        await conn.execute(sql.WAIT_FOR_REFERENCES, symbol, list(etfs))

    @staticmethod
    async def ready_waiters(conn: Connection, limit: int) -> list[str]:
        return [r[0] for r in await conn.fetch(sql.READY_WAITERS, limit)]

    @staticmethod
    async def stop_waiting(conn: Connection, symbols: Sequence[str]) -> None:
        await conn.execute(sql.STOP_WAITING, list(symbols))
