"""The onboarding job for one claimed symbol: fetch about a year of daily bars, validate them,
and store them, mark the symbol active and complete the job in one transaction.

`Onboarder.run` fetches through the source chain (worker/prices/chain.py), writes through the
price writer (worker/jobs/write.py) and ends through the queue transitions (worker/jobs/ends.py);
its outcome is classified as for every job kind (worker/queue/outcome.py):
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

import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import httpx
import structlog
from structlog.typing import FilteringBoundLogger

from worker.core.logs import redact_text
from worker.core.metrics import Metrics
from worker.core.settings import Settings
from worker.factors.store import FactorStore
from worker.factors.switch import FactorSwitch
from worker.host.tables import NO_HOST, HostTables
from worker.jobs.ends import JobEnds
from worker.jobs.write import PriceWriter
from worker.prices.base import PriceSource, Window
from worker.prices.chain import SourceChain, Unfetched
from worker.prices.http import MaskSecrets
from worker.prices.ratelimit import SourceGate
from worker.prices.sources import (
    HTTP_SOURCES,
    build_sources,
    check_source_config,
    source_rates,
    source_secrets,
)
from worker.queue.outcome import JobResult, classify
from worker.queue.store import Job, Queue

logger = structlog.get_logger()


@contextlib.asynccontextmanager
async def open_onboarder(
    settings: Settings,
    queue: Queue,
    pool: asyncpg.Pool,
    *,
    sources: str | None = None,
    today: Callable[[], date] | None = None,
    metrics: Metrics | None = None,
    factor_store: "FactorStore | FactorSwitch | None" = None,
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
        parts = JobParts.build(
            settings,
            queue,
            pool,
            SourceChain(settings, chain, gate, secrets=secrets, metrics=metrics),
            metrics=metrics,
            factor_store=factor_store,
            host=host,
            last_session=last_session,
        )
        yield Onboarder(settings, parts, today=today, last_session=last_session)


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The client every HTTP source of one Onboarder shares (a connection pool)."""
    timeout = settings.http_timeout_s
    return httpx.AsyncClient(
        verify=tls_context(),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=False,  # a redirect is a consent or login page: classified
    )


@dataclass(frozen=True)
class JobParts:
    """The pieces every job kind composes: fetch (the source chain), write (the price writer)
    and end (the queue transitions); built once per worker and shared by its jobs."""

    chain: SourceChain
    writer: PriceWriter
    ends: JobEnds

    @classmethod
    def build(
        cls,
        settings: Settings,
        queue: Queue,
        pool: asyncpg.Pool,
        chain: SourceChain,
        *,
        metrics: Metrics,
        factor_store: "FactorStore | FactorSwitch | None" = None,
        host: HostTables = NO_HOST,
        last_session: Callable[[], date] | None = None,
    ) -> "JobParts":
        """`factor_store` (detected at start-up) turns on the betas."""
        switch = (
            FactorSwitch.on(factor_store) if isinstance(factor_store, FactorStore) else factor_store
        )
        writer = PriceWriter(
            settings,
            queue,
            pool,
            chain,
            factors_switch=switch,
            host=host,
            metrics=metrics,
            last_session=last_session,
        )
        ends = JobEnds(settings, queue, pool, factors_switch=switch, host=host)
        return cls(chain, writer, ends)

    def masked(self, text: str) -> str:
        """`text` with the chain's API keys masked."""
        return redact_text(text, self.chain.secrets)


class Onboarder:
    """Runs onboarding jobs; safe to share between concurrent jobs of one process.

    It holds no resource of its own: `open_onboarder` builds its parts, and releases them."""

    def __init__(
        self,
        settings: Settings,
        parts: JobParts,
        *,
        today: Callable[[], date] | None = None,
        last_session: Callable[[], date] | None = None,
    ) -> None:
        """`today`: the UTC date clock; `last_session`: the calendar's last completed session."""
        self._settings = settings
        self.parts = parts
        self._today = today or (lambda: datetime.now(UTC).date())
        self._last_session = last_session

    @property
    def sources(self) -> list[PriceSource]:
        """The chain's sources, in order."""
        return self.parts.chain.sources

    @property
    def computes_betas(self) -> bool:
        """Betas are written by this worker's jobs now (FACTORS_ENABLED and the table shape)."""
        return self.parts.ends.computes_betas

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
        return await classify(
            job,
            self._onboard(job, log),
            kind="onboarding",
            settings=self._settings,
            retry_later=self.parts.ends.retry_later,
            log=log,
            mask=self.parts.masked,
        )

    async def _onboard(self, job: Job, log: FilteringBoundLogger) -> JobResult:
        parts = self.parts
        got = await parts.chain.fetch(job.symbol, self.window(), log)
        if isinstance(got, Unfetched):
            return await parts.ends.settle(job, got, parts.chain)
        return await parts.writer.store(job, got.source, got.fetched, log)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context, built once per process (loading the CA bundle
    takes tens of milliseconds; the context is not modified afterwards)."""
    return httpx.create_ssl_context()
