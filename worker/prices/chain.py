"""The source chain: the first source that has bars for a symbol, with fallback across sources,
in-process retries of transient errors (tenacity) and the circuit breaker shared by every worker.

What a job does when no source delivered (defer, retry, fail) is decided by the pure functions
of worker/prices/decide.py; the chain only fetches and keeps the sources' shared state (pauses,
failure counts) in the rate gate.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass

from structlog.typing import FilteringBoundLogger
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from worker.core import tracing
from worker.core.db import Connection
from worker.core.metrics import Metrics
from worker.core.settings import Settings
from worker.prices.base import (
    Bars,
    PriceSource,
    RateLimited,
    SourceBlocked,
    SourceError,
    SourcePaused,
    SourceUnreachable,
    TransientSourceError,
    Window,
)
from worker.prices.http import scrub
from worker.prices.ratelimit import SourceGate
from worker.prices.sources import HTTP_SOURCES


@dataclass(frozen=True)
class Fetched:
    source: PriceSource
    fetched: Bars


@dataclass(frozen=True)
class Unfetched:
    deferrals: list[SourcePaused]
    failures: list[SourceError]


class SourceChain:
    """The sources of one worker, in order, behind one rate gate; safe to share between jobs."""

    def __init__(
        self,
        settings: Settings,
        sources: Sequence[PriceSource],
        gate: SourceGate,
        *,
        secrets: Sequence[str] = (),
        metrics: Metrics | None = None,
    ) -> None:
        """`secrets`: the values to mask in error messages (longest first)."""
        self._settings = settings
        self.sources = list(sources)
        self.gate = gate
        self.secrets = list(secrets)
        self._metrics = metrics or Metrics()
        # Only the HTTP sources are ever paused (rate limits, blocks, the circuit breaker) and
        # counted by the circuit breaker; their pause is checked before each request.
        self._pausable = [s.name for s in self.sources if s.name in HTTP_SOURCES]

    async def fetch(
        self, symbol: str, window: Window, log: FilteringBoundLogger
    ) -> Fetched | Unfetched:
        """The first source of the chain that has bars for `symbol` in `window`, or why none did
        (the refresh job reads the reasons before settling; see worker/jobs/refresh.py); the
        job's `fetch` span (worker/core/tracing.py)."""
        with tracing.span(tracing.FETCH_SPAN, {"window": str(window)}) as span:
            got = await self._first(symbol, window, log)
            if isinstance(got, Fetched):
                tracing.annotate(span, {"source": got.source.name, "rows": len(got.fetched.bars)})
            else:
                tracing.annotate(
                    span, {"deferred": bool(got.deferrals), "failed": len(got.failures)}
                )
            return got

    async def _first(
        self, symbol: str, window: Window, log: FilteringBoundLogger
    ) -> Fetched | Unfetched:
        deferrals: list[SourcePaused] = []
        failures: list[SourceError] = []
        settings = self._settings
        for source in self.sources:
            try:
                # A paused HTTP source raises SourcePaused before any request: every request
                # (in-process retries too) first checks the pause in SourceGate.acquire.
                fetched = await self._fetch(source, symbol, window, log)
            except SourcePaused as exc:
                log.info("price_source_skipped", source=source.name, reason=exc.reason)
                deferrals.append(exc)
            except RateLimited as exc:
                seconds = (
                    max(exc.retry_after_s, 1.0)
                    if exc.retry_after_s is not None
                    else settings.rate_limit_pause_s
                )
                deferrals.append(await self.gate.pause(source.name, seconds, str(exc)))
            except SourceBlocked as exc:
                deferrals.append(
                    await self.gate.pause(source.name, settings.blocked_pause_s, str(exc))
                )
            except SourceUnreachable as exc:
                pause = await self._unreachable(source, scrub(exc, self.secrets), log)
                if pause is not None:
                    deferrals.append(pause)
                else:
                    failures.append(exc)
            except TransientSourceError as exc:
                log.info("price_source_failed", source=source.name, error=str(exc))
                pause = await self._count_failure(source, scrub(exc, self.secrets))
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

    async def answered(self, conn: Connection, source: PriceSource) -> None:
        """The source delivered: its run of failures (if any) is over (the circuit breaker)."""
        if source.name in self._pausable and self._settings.source_failures_before_pause > 0:
            await self.gate.reset_failures(conn, source.name)

    async def slot_for(self, symbol: str, deferrals: Sequence[SourcePaused]) -> list[SourcePaused]:
        """The deferrals with the soonest one replaced by a request slot reserved for `symbol`
        when it was refused a slot, so refused jobs come back spread out, one a slot, not all
        together after the same wait."""
        deferrals = list(deferrals)
        first = min(deferrals, key=lambda d: d.delay_s)
        if first.rate_slot:
            ahead = await self.gate.reserve_ahead(first.source, symbol)
            if ahead is not None:
                deferrals[deferrals.index(first)] = ahead
            self._metrics.rate_limit_deferral(min(deferrals, key=lambda d: d.delay_s).source)
        return deferrals

    async def _unreachable(
        self, source: PriceSource, exc: SourceUnreachable, log: FilteringBoundLogger
    ) -> SourcePaused | None:
        """Every try of this job failed to connect: the provider cannot be reached from here
        (offline, DNS, a firewall). Pause the source at once for every worker (unless the circuit
        breaker is off), so queued jobs are deferred rather than each spending minutes on it,
        and say in one line what failed and what works offline."""
        pause = None
        if self._settings.source_failures_before_pause > 0:
            pause = await self.gate.pause(
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
        count = await self.gate.record_failure(source.name)
        if count < threshold:
            return None
        return await self.gate.pause(
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
