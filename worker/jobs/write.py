"""The price write every job kind ends a fetch with: the bars, the symbol's state, the job's
completion, the host's tables and the betas, in one transaction (all of it commits or none)."""

from collections.abc import Callable
from datetime import UTC, date

import asyncpg
from structlog.typing import FilteringBoundLogger

from worker.core import tracing
from worker.core.db import Connection, bounded_lock_waits
from worker.core.metrics import Metrics
from worker.core.settings import Settings
from worker.factors import service as factors
from worker.factors.switch import FactorSwitch
from worker.host.tables import HostTables, Mirrored
from worker.prices.base import Bar, Bars, PriceSource, ticks
from worker.prices.chain import SourceChain
from worker.queue.outcome import PROPAGATE, JobResult
from worker.queue.store import Job, Queue
from worker.sql import prices as sql


class PriceWriter:
    """Writes a fetch's bars and completes the job; safe to share between concurrent jobs."""

    def __init__(
        self,
        settings: Settings,
        queue: Queue,
        pool: asyncpg.Pool,
        chain: SourceChain,
        *,
        factors_switch: FactorSwitch | None,
        host: HostTables,
        metrics: Metrics,
        last_session: Callable[[], date] | None = None,
    ) -> None:
        """`last_session`: the calendar's last completed session (the newest a reference ETF
        can have)."""
        self._settings = settings
        self._queue = queue
        self._pool = pool
        self._chain = chain
        self._factors = factors_switch
        self._host = host
        self._metrics = metrics
        self._last_session = last_session

    async def store(
        self,
        job: Job,
        source: PriceSource,
        fetched: Bars,
        log: FilteringBoundLogger,
        *,
        replace: bool = False,
        through: date | None = None,
    ) -> JobResult:
        """Upsert the bars, mark the symbol active, complete the job, keep the host's tables
        true (worker/host/tables.py) and write its betas: one transaction. `replace`: the symbol's
        stored rows are deleted first, in the same transaction (a refresh that found its history
        re-adjusted). `through`: the calendar's last completed session (else the onboarder's
        own clock says). Traced as the job's `write` span (worker/core/tracing.py)."""
        attributes: tracing.Attributes = {
            "source": source.name,
            "rows": len(fetched.bars),
            "replace": replace,
        }
        with tracing.span(tracing.WRITE_SPAN, attributes):  # the job's `write` span
            bars = fetched.bars
            columns = columns_of(bars)
            store = self._factors.store if self._factors is not None else None
            if through is None and self._last_session is not None:
                through = self._last_session()
            step: factors.FactorStep | None = None
            async with self._pool.acquire() as conn:
                # Before the write transaction, so that never waits on the source's state row.
                await self._chain.answered(conn, source)
                async with bounded_lock_waits(conn, self._settings.lock_timeout_s):
                    if store is not None:
                        await factors.lock_references(conn, job.symbol)  # first: see factors
                    if replace:
                        await conn.execute(sql.DELETE_PRICES, job.symbol)
                    stored = await conn.fetchrow(
                        sql.STORE_PRICES,
                        job.symbol,
                        *columns,
                        source.replaces_stored,
                        job.created_at.astimezone(UTC).date(),
                        fetched.asset_type,
                    )
                    await self._queue.complete(conn, job)
                    assert stored is not None  # the statement returns one summary row
                    mirrored = await self._host.mirror(
                        conn, job.symbol, source.name, columns, replace=replace
                    )
                    if store is not None:
                        step = await self._factor_step(
                            conn, store, job.symbol, stored["last_price_date"], through, log
                        )
                    elif self._factors is not None and self._factors.skipping:
                        await factors.FactorStore.wait_for_references(conn, job.symbol, ())
                    betas = step is not None and step.outcome == "computed"
                    if stored["rows_written"] or replace or betas:
                        await self._host.invalidate(conn, [job.symbol])
            written, last_price_date = stored["rows_written"], stored["last_price_date"]
            self._metrics.rows_written(source.name, written)
            log.info(
                "prices_stored",
                source=source.name,
                rows=len(bars),
                rows_written=written,
                replaced=replace,
                rows_skipped=fetched.skipped or None,
                last_price_date=last_price_date.isoformat() if last_price_date else None,
            )
            if mirrored is not None:
                self._record_mirror(source.name, mirrored, log)
            if step is not None and step.more_waiting:
                await self._resolve_waiting(log)
            return JobResult(
                "completed", rows=len(bars), skipped=fetched.skipped or None, source=source.name
            )

    def _record_mirror(self, source: str, mirrored: Mirrored, log: FilteringBoundLogger) -> None:
        self._metrics.host_prices_mirrored(source, mirrored)
        if mirrored.host_disagrees:
            log.warning(
                "host_price_disagrees",
                rows=mirrored.host_disagrees,
                host_rows_kept=mirrored.host_rows_kept,
                examples=mirrored.examples,
            )
        if mirrored.volume_too_large or mirrored.out_of_range:
            log.warning(
                "host_price_values_refused",
                volume_stored_null=mirrored.volume_too_large,
                bars_not_mirrored=mirrored.out_of_range,
                reason="market_data_cache holds volume as INTEGER and prices as NUMERIC(12,4)",
            )

    async def _factor_step(
        self,
        conn: Connection,
        store: factors.FactorStore,
        symbol: str,
        last_price_date: date,
        through: date | None,
        log: FilteringBoundLogger,
    ) -> factors.FactorStep | None:
        """The betas, in a savepoint of the job's transaction: a failure there (a bug, a host
        table changed under us) is logged and rolled back alone, and the prices still land."""
        try:
            with tracing.span(tracing.FACTORS_SPAN, {"symbol": symbol}):
                async with conn.transaction():
                    return await factors.after_prices_stored(
                        conn,
                        store,
                        symbol,
                        last_price_date,
                        through=through,
                        history_days=self._settings.factor_history_days,
                        batch_size=self._settings.factor_batch_size,
                        host=self._host,
                        log=log,
                    )
        except PROPAGATE:
            raise
        except Exception as exc:
            log.exception("factors_failed", error=f"{type(exc).__name__}: {exc}")
            return None

    async def _resolve_waiting(self, log: FilteringBoundLogger) -> None:
        """Follow-up transactions for the waiting symbols a batch limit left; the job is done,
        so a failure is only logged (the housekeeping sweep takes what is left)."""
        store = self._factors.store if self._factors is not None else None
        assert store is not None
        try:
            more = True
            while more:
                async with self._pool.acquire() as conn:  # resolve_waiting's own transaction
                    _, more = await factors.resolve_waiting(
                        conn,
                        store,
                        history_days=self._settings.factor_history_days,
                        batch_size=self._settings.factor_batch_size,
                        host=self._host,
                    )
        except Exception as exc:
            log.warning("factors_resolve_deferred", error=f"{type(exc).__name__}: {exc}")


def columns_of(bars: list[Bar]) -> tuple[list[object], ...]:
    """Bars as the parallel column arrays of STORE_PRICES, prices in ten-thousandths."""
    return (
        [b.price_date for b in bars],
        [ticks(b.open) for b in bars],
        [ticks(b.high) for b in bars],
        [ticks(b.low) for b in bars],
        [ticks(b.close) for b in bars],
        [ticks(b.adj_close) for b in bars],
        [b.volume for b in bars],
    )
