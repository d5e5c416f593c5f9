"""Backfill `symbol_prices_daily` from the legacy `market_data_cache`, set-based and resumable.

The spec's version inserts row by row in one transaction; this one copies a batch of whole symbols
per statement (`INSERT ... SELECT ... ON CONFLICT DO NOTHING`), one short transaction per batch:
1. add the batch's symbols missing from `symbol_universe` (status `active`, added_source `batch`,
   last_price_date from the data), which the foreign key needs;
2. copy the batch's prices, skipping rows already there;
3. move `last_price_date` of the batch's existing symbols forward to their latest cached date.
Batches walk the symbols in order (keyset on symbol), so a live database sees only short
transactions, an interrupted run keeps every committed batch, and rerunning skips what is done.
With `jobs` > 1, that many connections take batches off the same cursor side by side.
`adjusted_close` is copied when the cache has that column (read from the catalog at run time);
deployed caches do not, and then `adj_close_price` stays NULL.
"""

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.core.db import create_engine
from worker.core.errors import WorkerError
from worker.core.symbols import normalize_symbol
from worker.prices.spelling import spellings
from worker.sql import backfill as sql

DEFAULT_BATCH_SIZE = 50_000
# Bounds how long one batch holds its locks and how much one transaction writes.
MAX_BATCH_SIZE = 1_000_000
# Connections side by side; the deployment has 20-30 in total for every process.
MAX_JOBS = 8
LOG_INTERVAL_S = 10.0

log = structlog.get_logger()


class BackfillError(WorkerError, RuntimeError):
    """The database cannot be backfilled as it is (e.g. it has no `market_data_cache`)."""


@dataclass(frozen=True)
class BackfillProgress:
    """Where a running backfill stands after a committed batch."""

    rows_done: int
    rows_total: int  # counted before the first batch; rows added meanwhile may exceed it
    rows_inserted: int
    symbols_added: int
    batches: int
    last_symbol: str  # the end of the batch just committed (with jobs > 1, others may be running)
    elapsed_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the average rate so far; None before there is a rate."""
        if self.rows_per_s <= 0:
            return None
        return max(self.rows_total - self.rows_done, 0) / self.rows_per_s


@dataclass(frozen=True)
class BackfillSummary:
    """What a backfill did (or, with dry_run, would do)."""

    rows_seen: int
    rows_inserted: int
    symbols_added: int
    symbols_updated: int  # existing universe rows whose last_price_date moved forward
    batches: int
    elapsed_s: float
    dry_run: bool
    adjusted_close: bool  # the cache had an adjusted_close column, and it was copied
    symbols_not_found: tuple[str, ...]  # requested with --symbols, but absent from the cache
    # Cache rows never copied because the price rule refuses them, by reason (validate.py).
    rows_invalid: dict[str, int] = field(default_factory=dict)

    @property
    def rows_skipped(self) -> int:
        """Rows already in symbol_prices_daily (valid, but not inserted)."""
        return self.rows_seen - self.rows_inserted - self.rows_invalid_total

    @property
    def rows_invalid_total(self) -> int:
        return sum(self.rows_invalid.values())

    @property
    def rows_per_s(self) -> float:
        return self.rows_seen / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def log_fields(self) -> dict[str, Any]:
        fields = asdict(self)
        fields["symbols_not_found"] = list(self.symbols_not_found)
        fields["rows_skipped"] = self.rows_skipped
        fields["rows_invalid_total"] = self.rows_invalid_total
        fields["rows_per_s"] = round(self.rows_per_s, 1)
        fields["elapsed_s"] = round(self.elapsed_s, 3)
        return fields


ProgressCallback = Callable[[BackfillProgress], None]


def check_batch_size(batch_size: object) -> int:
    """A batch size in 1..MAX_BATCH_SIZE, or ValueError saying why not."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ValueError(f"invalid batch size {batch_size!r}: expected an integer")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"invalid batch size {batch_size}: expected 1 to {MAX_BATCH_SIZE:,}")
    return batch_size


def check_jobs(jobs: object) -> int:
    """A number of connections in 1..MAX_JOBS, or ValueError saying why not."""
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise ValueError(f"invalid jobs {jobs!r}: expected an integer")
    if not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"invalid jobs {jobs}: expected 1 to {MAX_JOBS}")
    return jobs


def parse_symbols(raw: str) -> list[str]:
    """`"aapl, BRK.B"` -> `["AAPL", "BRK.B"]` (sorted, deduplicated); ValueError on a bad entry."""
    parts = raw.split(",")
    if any(not part.strip() for part in parts):
        raise ValueError(f"invalid symbol list {raw!r}: empty entry (expected A,B,C)")
    return sorted({normalize_symbol(part) for part in parts})


async def backfill(
    database: str | AsyncEngine,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    symbols: Iterable[str] | None = None,
    dry_run: bool = False,
    jobs: int = 1,
    progress: ProgressCallback | None = None,
) -> BackfillSummary:
    """Backfill in batches of about `batch_size` rows (whole symbols), one transaction each.

    `database` is a URL in any form worker.core.db accepts, or an AsyncEngine (left open).
    `symbols` limits the run to those symbols (normalized; ValueError on a bad one), each found
    under any of its spellings (`BRK.B` finds the host's `BRK-B`: worker/prices/spelling.py).
    `jobs` connections run batches side by side (disjoint symbol ranges, so they never wait
    for each other). `progress` is called after each committed batch; an exception from it
    stops the run, with every committed batch kept. With `dry_run`, nothing is written and
    the summary says what a real run would do.
    """
    batch_size = check_batch_size(batch_size)
    jobs = check_jobs(jobs)
    if isinstance(symbols, str):
        raise TypeError(
            f"symbols={symbols!r}: expected a list of symbols (parse_symbols splits A,B)"
        )
    wanted = None if symbols is None else sorted({normalize_symbol(s) for s in symbols})
    if wanted is not None and not wanted:
        raise ValueError("invalid symbol list: empty (omit it to backfill every symbol)")
    if isinstance(database, AsyncEngine):
        return await _Backfill(database, batch_size, wanted, dry_run, progress).run(jobs)
    engine = create_engine(database, poolclass=pool.NullPool)
    try:
        return await _Backfill(engine, batch_size, wanted, dry_run, progress).run(jobs)
    finally:
        await engine.dispose()


@dataclass
class _Counts:
    seen: int = 0
    inserted: int = 0
    added: int = 0
    updated: int = 0
    invalid: dict[str, int] = field(default_factory=dict)


class _Backfill:
    """One run: the keyset cursor its connections share, and the running totals."""

    def __init__(
        self,
        engine: AsyncEngine,
        batch_size: int,
        symbols: list[str] | None,
        dry_run: bool,
        progress: ProgressCallback | None,
    ) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.requested = symbols
        # Every spelling of each requested symbol (BRK.B finds the host's BRK-B rows); the rows
        # are copied under the cache's own spelling.
        self.symbols = (
            None if symbols is None else sorted({sp for s in symbols for sp in spellings(s)})
        )
        self.dry_run = dry_run
        self.progress = progress
        self.started = time.monotonic()
        self.after = ""  # every symbol up to here is taken by a batch
        self.exhausted = False
        self.cursor_lock = asyncio.Lock()
        self.totals = _Counts()
        self.batches = 0
        self.rows_total = 0
        self.has_adjusted_close = False
        self.not_found: tuple[str, ...] = ()

    async def run(self, jobs: int) -> BackfillSummary:
        async with self.engine.connect() as conn, conn.begin():
            await conn.execute(text(sql.READ_ONLY))
            has_table, self.has_adjusted_close = (await conn.execute(text(sql.CACHE_COLUMNS))).one()
            if not has_table:
                raise BackfillError(
                    "no market_data_cache table in this database: nothing to backfill"
                )
            params = {"symbols": self.symbols}
            self.rows_total = (await conn.execute(text(sql.COUNT_ROWS), params)).scalar_one()
            if self.requested is not None:
                found = set((await conn.execute(text(sql.SYMBOLS_FOUND), params)).scalars())
                self.not_found = tuple(
                    s for s in self.requested if not found.intersection(spellings(s))
                )
        if jobs == 1:
            await self._work()
        else:
            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(jobs):
                        group.create_task(self._work())
            except BaseExceptionGroup as failures:
                # The first failure cancelled the other jobs; raise it as a single run would.
                if len(failures.exceptions) == 1:
                    raise failures.exceptions[0] from None
                raise
        return BackfillSummary(
            rows_seen=self.totals.seen,
            rows_inserted=self.totals.inserted,
            symbols_added=self.totals.added,
            symbols_updated=self.totals.updated,
            batches=self.batches,
            elapsed_s=time.monotonic() - self.started,
            dry_run=self.dry_run,
            adjusted_close=bool(self.has_adjusted_close),
            symbols_not_found=self.not_found,
            rows_invalid=dict(sorted(self.totals.invalid.items())),
        )

    async def _work(self) -> None:
        """Take the next batch and run it, on one connection, until no rows are left."""
        async with self.engine.connect() as conn:
            while (batch := await self._next_batch(conn)) is not None:
                after, upto = batch
                params = {"after": after, "upto": upto, "symbols": self.symbols}
                counts = await (
                    self._preview(conn, params) if self.dry_run else self._copy(conn, params)
                )
                self.totals.seen += counts.seen
                self.totals.inserted += counts.inserted
                self.totals.added += counts.added
                self.totals.updated += counts.updated
                for reason, rows in counts.invalid.items():
                    self.totals.invalid[reason] = self.totals.invalid.get(reason, 0) + rows
                self.batches += 1
                if self.progress is not None:
                    self.progress(
                        BackfillProgress(
                            rows_done=self.totals.seen,
                            rows_total=self.rows_total,
                            rows_inserted=self.totals.inserted,
                            symbols_added=self.totals.added,
                            batches=self.batches,
                            last_symbol=upto,
                            elapsed_s=time.monotonic() - self.started,
                        )
                    )

    async def _next_batch(self, conn: AsyncConnection) -> tuple[str, str] | None:
        """The next symbol range `(after, upto]`, or None when every row is taken."""
        # One connection at a time moves the cursor, so no two batches overlap.
        async with self.cursor_lock:
            if self.exhausted:
                return None
            async with conn.begin():
                await conn.execute(text(sql.READ_ONLY))
                upto = (
                    await conn.execute(
                        text(sql.NEXT_BATCH_END),
                        {
                            "after": self.after,
                            "symbols": self.symbols,
                            "batch_size": self.batch_size,
                        },
                    )
                ).scalar_one()
            if upto is None:
                self.exhausted = True
                return None
            after, self.after = self.after, upto
            return after, upto

    async def _copy(self, conn: AsyncConnection, params: dict[str, Any]) -> _Counts:
        """Write one batch in one transaction."""
        statements = self._statements()
        async with conn.begin():
            # Symbols first: the prices' foreign key needs them.
            added = (await conn.execute(text(statements.add_missing_symbols), params)).rowcount
            seen, inserted, invalid = (
                await conn.execute(text(statements.insert_prices), params)
            ).one()
            updated = (
                await conn.execute(text(statements.advance_last_price_date), params)
            ).rowcount
        return _Counts(seen, inserted, added, updated, json.loads(invalid))

    async def _preview(self, conn: AsyncConnection, params: dict[str, Any]) -> _Counts:
        """What `_copy` would do to one batch, in a read-only transaction."""
        async with conn.begin():
            await conn.execute(text(sql.READ_ONLY))
            seen, inserted, added, updated, invalid = (
                await conn.execute(text(self._statements().preview_batch), params)
            ).one()
        return _Counts(seen, inserted, added, updated, json.loads(invalid))

    def _statements(self) -> sql.BatchStatements:
        return sql.BATCH_WITH_ADJUSTED_CLOSE if self.has_adjusted_close else sql.BATCH
