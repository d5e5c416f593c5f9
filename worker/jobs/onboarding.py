"""The onboarding job for one claimed symbol: fetch about a year of daily bars, validate them,
and store them, mark the symbol active and complete the job in one transaction.

`Onboarder.run` is the one place that classifies a job's outcome and moves it in the queue:
- completed: prices upserted, `symbol_universe` active with `last_price_date`, job completed,
  and (with a factor store) the betas written with `last_factor_date`, or the symbol recorded as
  waiting for reference ETFs: all in one transaction (all of it commits or none of it);
- retried: a transient failure (after the in-process retries), a job past JOB_TIMEOUT_S (a
  dripping provider), or an unexpected exception (a bug: retried so nothing is lost); `Queue.retry_later` may turn it into failed on the last
  attempt;
- failed: a permanent failure (unknown symbol, no data, bad key, invalid data) with a message a
  person can act on; a `pending` symbol becomes `error`, an `active` one keeps its status;
- deferred: every usable source is paused (rate limit, block) or its next request slot is too
  far away: the job is released without spending an attempt.
It lets cancellation, `JobLost` and `DatabaseUnavailable` (an outage, as worker/core/errors.py
decides: driver errors are translated here, where the job's SQL runs) propagate to the runner,
which hands the job back without spending an attempt (after a delay for a lock wait that
outlasted DATABASE_LOCK_TIMEOUT_S: the host holds a table). A database connection is held only for
short statements and the write transaction, never while waiting on a provider.
"""

import asyncio
import contextlib
import functools
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import httpx
import structlog
from structlog.typing import FilteringBoundLogger
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from worker.core.db import Connection, bounded_lock_waits
from worker.core.errors import ConfigurationError, DatabaseUnavailable, database_errors
from worker.core.logs import redact_text
from worker.core.settings import Settings
from worker.factors import service as factors
from worker.factors.switch import FactorSwitch
from worker.host.tables import NO_HOST, HostTables, Mirrored, fill_description
from worker.ops.prometheus import Metrics
from worker.prices.base import (
    Bar,
    Bars,
    PriceSource,
    RateLimited,
    SourceBlocked,
    SourceError,
    SourcePaused,
    SourceUnreachable,
    TransientSourceError,
    Window,
    ticks,
)
from worker.prices.http import MaskSecrets, scrub
from worker.prices.ratelimit import SourceGate
from worker.prices.sources import (
    HTTP_SOURCES,
    build_sources,
    check_source_config,
    source_rates,
    source_secrets,
)
from worker.queue.runner import Outcome
from worker.queue.store import Job, JobLost, Queue
from worker.sql import prices as sql

logger = structlog.get_logger()

# The runner handles these (lost jobs, database outages); run() never swallows them (nor
# cancellation, which is not an Exception).
PROPAGATE: tuple[type[Exception], ...] = (JobLost, DatabaseUnavailable, ConfigurationError)
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class JobResult:
    outcome: Outcome
    rows: int | None = None  # rows stored, when known
    error: str | None = None
    # Rows the serving source skipped (invalid, or without a close), by reason; None: none.
    skipped: dict[str, int] | None = None


@contextlib.asynccontextmanager
async def open_onboarder(
    settings: Settings,
    queue: Queue,
    pool: asyncpg.Pool,
    *,
    sources: str | None = None,
    today: Callable[[], date] | None = None,
    metrics: Metrics | None = None,
    factor_store: "factors.FactorStore | FactorSwitch | None" = None,
    host: HostTables = NO_HOST,
    last_session: Callable[[], date] | None = None,
) -> AsyncIterator["Onboarder"]:
    """An Onboarder with the resources it needs, released on the way out:

        async with open_onboarder(settings, queue, pool) as onboarder:
            result = await onboarder.run(job)

    `sources` overrides settings.price_source (the --source flag); `today` is the UTC date clock
    (tests, benchmarks): the window ends the day before it; `metrics` what the sources and the
    gate count into (a fresh registry if None); `factor_store` turns on the betas; `host`: the
    host's tables kept true; `last_session`: the calendar's last completed session (the newest a
    reference ETF can have). The chain is checked before anything
    is built (SettingsError for one it cannot run); then the HTTP client (only for HTTP sources),
    the log filter that masks the chain's API keys, the rate gate and the sources are built in
    turn, and whatever was built is released again if a later part fails to build."""
    names = check_source_config(settings, sources)
    # Longest first, so a key inside another is not half-hidden.
    secrets = sorted(source_secrets(settings, names), key=len, reverse=True)
    metrics = metrics or Metrics()
    async with contextlib.AsyncExitStack() as resources:
        client: httpx.AsyncClient | None = None
        if any(name in HTTP_SOURCES for name in names):
            client = await resources.enter_async_context(http_client(settings))
        mask = MaskSecrets(secrets)
        mask.attach()
        resources.callback(mask.detach)
        gate = SourceGate(
            pool,
            source_rates(settings, names),
            max_wait_s=settings.rate_limit_max_wait_s,
            metrics=metrics,
        )
        chain = build_sources(settings, names, pool=pool, client=client, gate=gate, metrics=metrics)
        yield Onboarder(
            settings,
            queue,
            pool,
            sources=chain,
            gate=gate,
            secrets=secrets,
            today=today,
            metrics=metrics,
            factor_store=factor_store,
            host=host,
            last_session=last_session,
        )


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The client every HTTP source of one Onboarder shares (a connection pool)."""
    timeout = settings.http_timeout_s
    return httpx.AsyncClient(
        verify=tls_context(),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=False,  # a redirect is a consent or login page: classified
    )


class Onboarder:
    """Runs onboarding jobs; safe to share between concurrent jobs of one process.

    It holds no resource of its own: `open_onboarder` builds its parts, and releases them."""

    def __init__(
        self,
        settings: Settings,
        queue: Queue,
        pool: asyncpg.Pool,
        *,
        sources: Sequence[PriceSource],
        gate: SourceGate,
        secrets: Sequence[str] = (),
        today: Callable[[], date] | None = None,
        metrics: Metrics | None = None,
        factor_store: "factors.FactorStore | FactorSwitch | None" = None,
        host: HostTables = NO_HOST,
        last_session: Callable[[], date] | None = None,
    ) -> None:
        """`sources`: the chain, in order, built on `gate`; `secrets`: the values to mask in
        error messages (longest first); `today`: the UTC date clock; `factor_store` (detected
        at start-up) turns on the betas."""
        self._settings = settings
        self._queue = queue
        self._pool = pool
        self._metrics = metrics or Metrics()
        self._today = today or (lambda: datetime.now(UTC).date())
        self._factors = (
            FactorSwitch.on(factor_store)
            if isinstance(factor_store, factors.FactorStore)
            else factor_store
        )
        self._host = host
        self._last_session = last_session
        self._secrets = list(secrets)
        self._gate = gate
        self.sources = list(sources)
        # Only the HTTP sources are ever paused (rate limits, blocks, the circuit breaker) and
        # counted by the circuit breaker; their pause is checked before each request.
        self._pausable = [s.name for s in self.sources if s.name in HTTP_SOURCES]

    @property
    def computes_betas(self) -> bool:
        """Betas are written by this worker's jobs now (FACTORS_ENABLED and the table shape)."""
        return self._factors is not None and self._factors.available

    def window(self) -> Window:
        """The `price_lookback_days` ending yesterday (UTC): today's bar is not final until the
        close (Yahoo serves it live; Polygon's free plan refuses it before the end of the day);
        or ending with the calendar's last completed session when that is later (after the
        close, today's session is final, and it is the one the host asks for)."""
        end = self._today() - timedelta(days=1)
        if self._last_session is not None:
            end = max(end, self._last_session())
        return Window(end - timedelta(days=self._settings.price_lookback_days), end)

    async def run(self, job: Job) -> JobResult:
        """Onboard one claimed job and move it in the queue; see the module docstring."""
        log = logger.bind(job_id=str(job.id), symbol=job.symbol, attempt=job.attempts)
        return await self.classify(job, log, self._onboard(job, log), kind="onboarding")

    async def classify(
        self,
        job: Job,
        log: FilteringBoundLogger,
        work: Awaitable[JobResult],
        *,
        kind: str,
    ) -> JobResult:
        """Run a job's work and settle how it ended, the same way for every kind of job: an
        outage, a lost job or a configuration error propagates (the runner hands the job back
        or stops); a statement timeout, a bug and a job past JOB_TIMEOUT_S are retried with
        backoff (an attempt spent)."""
        deadline = asyncio.timeout(self._settings.job_timeout_s)
        try:
            with database_errors():
                async with deadline:
                    result = await work
        except PROPAGATE:
            raise
        except TimeoutError:
            if deadline.expired():
                # A slow or dripping provider (each request is bounded at twice
                # PRICE_HTTP_TIMEOUT_S, each try of the in-process retries again): the slot goes
                # to other symbols, and the queue's backoff tries this one later.
                error = (
                    f"the job hit its deadline of {self._settings.job_timeout_s:g} s "
                    "(JOB_TIMEOUT_S) and was stopped"
                )
                log.warning(f"{kind}_deadline_exceeded", error=error)
                return await self.retry_later(job, error)
            # A statement unanswered within DATABASE_COMMAND_TIMEOUT_S: not an outage (a
            # statement that always times out must run out of attempts), not a bug either.
            error = (
                "a database statement timed out after "
                f"{self._settings.command_timeout_s:g} s (DATABASE_COMMAND_TIMEOUT_S)"
            )
            log.warning(f"{kind}_statement_timeout", error=error)
            result = await self.retry_later(job, error)
        except Exception as exc:
            # A bug, not a provider problem: retried with its type and message, so an operator
            # sees it and the job is not lost.
            error = _clip(self._masked(f"unexpected {type(exc).__name__}: {exc}"))
            log.exception(f"{kind}_unexpected_error", error=error)
            result = await self.retry_later(job, error)
        # The outcome's log line (job_finished, with duration) is the runner's: one per job.
        return result

    def _masked(self, text: str) -> str:
        return redact_text(text, self._secrets)

    async def _onboard(self, job: Job, log: FilteringBoundLogger) -> JobResult:
        got = await self.fetch_bars(job, self.window(), log)
        if isinstance(got, Unfetched):
            return await self.settle(job, got)
        return await self.store(job, got.source, got.fetched, log)

    async def fetch_bars(
        self, job: Job, window: Window, log: FilteringBoundLogger
    ) -> "Fetched | Unfetched":
        """The first source of the chain that has bars for the job's symbol in `window`, or why
        none did (the refresh job reads the reasons before settling; see worker/jobs/refresh.py)."""
        deferrals: list[SourcePaused] = []
        failures: list[SourceError] = []
        for source in self.sources:
            try:
                # A paused HTTP source raises SourcePaused before any request: every request
                # (in-process retries too) first checks the pause in SourceGate.acquire.
                fetched = await self._fetch(source, job.symbol, window, log)
            except SourcePaused as exc:
                log.info("price_source_skipped", source=source.name, reason=exc.reason)
                deferrals.append(exc)
            except RateLimited as exc:
                seconds = (
                    max(exc.retry_after_s, 1.0)
                    if exc.retry_after_s is not None
                    else self._settings.rate_limit_pause_s
                )
                deferrals.append(await self._gate.pause(source.name, seconds, str(exc)))
            except SourceBlocked as exc:
                deferrals.append(
                    await self._gate.pause(source.name, self._settings.blocked_pause_s, str(exc))
                )
            except SourceUnreachable as exc:
                pause = await self._unreachable(source, scrub(exc, self._secrets), log)
                if pause is not None:
                    deferrals.append(pause)
                else:
                    failures.append(exc)
            except TransientSourceError as exc:
                log.info("price_source_failed", source=source.name, error=str(exc))
                pause = await self._count_failure(source, scrub(exc, self._secrets))
                if pause is not None:
                    deferrals.append(pause)
                else:
                    failures.append(exc)
            except SourceError as exc:
                failures.append(exc)
                log.info("price_source_failed", source=source.name, error=str(exc))
            else:
                return Fetched(source, fetched)
        return Unfetched(deferrals, failures)

    async def settle(self, job: Job, got: "Unfetched") -> JobResult:
        """No source delivered: defer (a source may serve once its pause ends), retry (a
        transient failure), or fail (every source refused for good)."""
        deferrals, failures = list(got.deferrals), got.failures
        errors = "; ".join(str(scrub(f, self._secrets)) for f in failures)
        if deferrals:
            # Some source may still serve the symbol once its pause ends: come back then.
            first = min(deferrals, key=lambda d: d.delay_s)
            if first.rate_slot:
                # Refused a request slot: defer until a slot reserved for this job, so refused
                # jobs come back spread out, one a slot, not all together after the same wait.
                ahead = await self._gate.reserve_ahead(first.source, job.symbol)
                if ahead is not None:
                    deferrals[deferrals.index(first)] = ahead
                    first = min(deferrals, key=lambda d: d.delay_s)
                self._metrics.rate_limit_deferral(first.source)
            reason = "; ".join(
                [
                    f"deferred, {d.source} paused for {d.delay_s:.0f} s: {d.reason}"
                    for d in deferrals
                ]
                + ([errors] if errors else [])
            )
            await self._queue.release(self._pool, job, delay_s=first.delay_s, reason=_clip(reason))
            return JobResult("deferred", error=_clip(reason))
        if any(isinstance(f, TransientSourceError) for f in failures):
            return await self.retry_later(job, _clip(errors))
        return await self.fail(job, _clip(errors))

    async def _unreachable(
        self, source: PriceSource, exc: SourceUnreachable, log: FilteringBoundLogger
    ) -> SourcePaused | None:
        """Every try of this job failed to connect: the provider cannot be reached from here
        (offline, DNS, a firewall). Pause the source at once for every worker (unless the circuit
        breaker is off), so queued jobs are deferred rather than each spending minutes on it,
        and say in one line what failed and what works offline."""
        pause = None
        if self._settings.source_failures_before_pause > 0:
            pause = await self._gate.pause(
                source.name, self._settings.source_failure_pause_s, exc.detail
            )
        log.warning(
            "price_source_unreachable",
            source=source.name,
            error=exc.detail,
            paused_s=round(pause.delay_s, 1) if pause is not None else None,
            hint="offline? `--source synthetic` onboards generated prices (not market data), "
            "`--source csv` reads PRICE_CSV_DIR",
        )
        return pause

    async def _count_failure(
        self, source: PriceSource, exc: TransientSourceError
    ) -> SourcePaused | None:
        """The circuit breaker: count a transient failure of an HTTP source (after its in-process
        retries), across every process; at `source_failures_before_pause` in a row, pause the
        source (the pause, for the job to be deferred). After a pause the count stays at the
        threshold until a success, so one more failure pauses the source again at once."""
        threshold = self._settings.source_failures_before_pause
        if threshold <= 0 or source.name not in self._pausable:
            return None
        count = await self._gate.record_failure(source.name)
        if count < threshold:
            return None
        return await self._gate.pause(
            source.name,
            self._settings.source_failure_pause_s,
            f"{count} consecutive transient failures, the last: {exc.detail}",
        )

    async def _fetch(
        self,
        source: PriceSource,
        symbol: str,
        window: Window,
        log: FilteringBoundLogger,
    ) -> Bars:
        """Bars from one source, retrying transient errors in-process a few times."""
        settings = self._settings

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "price_fetch_retry",
                source=source.name,
                # `attempt` (bound for the whole job) is the job's attempt; this is the try of
                # one fetch within it.
                fetch_attempt=state.attempt_number,
                wait_s=round(state.next_action.sleep, 3) if state.next_action else None,
                error=str(error),
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientSourceError),
            stop=stop_after_attempt(settings.http_retries + 1),
            wait=wait_exponential_jitter(
                multiplier=settings.http_retry_wait_s,
                max=settings.http_retry_max_wait_s,
                jitter=settings.http_retry_wait_s,
            ),
            before_sleep=before_sleep,
            reraise=True,
        )
        started = time.monotonic()
        every_try_unreachable = True
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        fetched = await source.fetch(symbol, window)
                    except SourceUnreachable:
                        raise
                    except TransientSourceError:
                        every_try_unreachable = False
                        raise
        except TransientSourceError as exc:
            tries = settings.http_retries + 1
            kind = SourceUnreachable if every_try_unreachable else TransientSourceError
            raise kind(exc.source, f"{exc.detail} ({tries} attempts)") from None
        bars = fetched.bars
        if fetched.skipped:
            self._metrics.rows_skipped(source.name, fetched.skipped)
        log.info(
            "prices_fetched",
            source=source.name,
            rows=len(bars),
            rows_skipped=sum(fetched.skipped.values()),
            first_date=bars[0].price_date.isoformat(),
            last_date=bars[-1].price_date.isoformat(),
            elapsed_s=round(time.monotonic() - started, 3),
        )
        return fetched

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
        own clock says)."""
        bars = fetched.bars
        columns = _columns(bars)
        store = self._factors.store if self._factors is not None else None
        if through is None and self._last_session is not None:
            through = self._last_session()
        step: factors.FactorStep | None = None
        async with self._pool.acquire() as conn:
            if source.name in self._pausable and self._settings.source_failures_before_pause > 0:
                # The source answered: its run of failures (if any) is over. Before the write
                # transaction, so that never waits on the source's state row.
                await self._gate.reset_failures(conn, source.name)
            async with bounded_lock_waits(conn, self._settings.lock_timeout_s):
                if store is not None:
                    await factors.lock_references(conn, job.symbol)  # first: see factors
                if replace:
                    await conn.execute(sql.DELETE_PRICES, job.symbol)
                stored = await conn.fetchrow(
                    sql.STORE_PRICES, job.symbol, *columns, source.replaces_stored
                )
                await self._queue.complete(conn, job)
                assert stored is not None  # the statement returns one summary row
                mirrored = await self._host.mirror(
                    conn, job.symbol, source.name, columns, replace=replace
                )
                await fill_description(
                    conn, job.symbol, job.created_at.astimezone(UTC).date(), fetched.asset_type
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
        return JobResult("completed", rows=len(bars), skipped=fetched.skipped or None)

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

    async def reference_ended(self, conn: Connection, job: Job) -> None:
        """A reference ETF's job failed for good: the symbols waiting only for it get their
        betas from what is there (its transaction holds the exclusive reference lock)."""
        store = self._factors.store if self._factors is not None else None
        if store is None or job.symbol not in factors.REFERENCE_ETFS:
            return
        await factors.resolve_waiting(
            conn,
            store,
            history_days=self._settings.factor_history_days,
            batch_size=self._settings.factor_batch_size,
            host=self._host,
        )

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

    async def complete_unchanged(self, job: Job) -> None:
        """Completed with nothing to store (already current, or nothing left to refresh); a
        reference ETF's job still releases the symbols waiting for it, as any ending does."""
        async with (
            self._pool.acquire() as conn,
            bounded_lock_waits(conn, self._settings.lock_timeout_s),
        ):
            await self.lock_references(conn, job)
            await self._queue.complete(conn, job)
            await self.reference_ended(conn, job)

    async def fail(self, job: Job, error: str) -> JobResult:
        """Failed at once; the queue marks a pending symbol `error` in the same statement."""
        async with (
            self._pool.acquire() as conn,
            bounded_lock_waits(conn, self._settings.lock_timeout_s),
        ):
            await self.lock_references(conn, job)
            await self._queue.fail(conn, job, error)
            await self.reference_ended(conn, job)
        return JobResult("failed", error=error)

    async def retry_later(self, job: Job, error: str) -> JobResult:
        """Retried with backoff, or failed on the last attempt (the queue then marks a pending
        symbol `error` in the same statement)."""
        async with (
            self._pool.acquire() as conn,
            bounded_lock_waits(conn, self._settings.lock_timeout_s),
        ):
            await self.lock_references(conn, job)
            status = await self._queue.retry_later(conn, job, error)
            if status == "failed":  # that was its last attempt
                await self.reference_ended(conn, job)
        return JobResult("retried" if status == "pending" else "failed", error=error)

    async def lock_references(self, conn: Connection, job: Job) -> None:
        """A reference ETF's ending transaction takes the reference lock first (before its job
        row), as its completing one does."""
        if self.computes_betas and job.symbol in factors.REFERENCE_ETFS:
            await factors.lock_references(conn, job.symbol)


@dataclass(frozen=True)
class Fetched:
    source: PriceSource
    fetched: Bars


@dataclass(frozen=True)
class Unfetched:
    deferrals: list[SourcePaused]
    failures: list[SourceError]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context, built once per process (loading the CA bundle
    takes tens of milliseconds; the context is not modified afterwards)."""
    return httpx.create_ssl_context()


def _columns(bars: list[Bar]) -> tuple[list[object], ...]:
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


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
