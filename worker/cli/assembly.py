"""The worker assembled in one place (`python -m worker run`).

`WorkerAssembly` builds every part with constructor arguments, in order: the pool (waiting out an
outage), the queue, the factor switch and the host's tables, the job handlers, the housekeeping
and the runner. The HTTP endpoint, started before it (it answers "starting" while the database
is waited for), reads the assembly as its `WorkerView`: the runner once it exists, the factor
switch once detected.
"""

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import structlog

from worker.cli.common import check_schema, connect_errors
from worker.core.db import asyncpg_dsn, create_pool_waiting
from worker.core.errors import DatabaseUnavailable
from worker.core.metrics import Metrics
from worker.core.settings import Settings
from worker.core.trading_calendar import shared_calendar
from worker.factors.switch import FactorSwitch
from worker.host.tables import HostTables
from worker.jobs import schedule
from worker.jobs.maintenance import housekeeper_for
from worker.jobs.onboarding import open_onboarder
from worker.jobs.refresh import JobsByKind, build_refresher
from worker.queue.runner import Runner
from worker.queue.store import Queue, new_worker_id

log = structlog.get_logger("worker.cli")


class WorkerAssembly:
    """One running worker's parts, built in `run` and read by its HTTP endpoint."""

    def __init__(self, settings: Settings, url: str, *, burst: bool, source: str | None) -> None:
        self._settings = settings
        self._url = url
        self._burst = burst
        self._source = source
        self.worker_id = new_worker_id(settings.worker_name)
        self._runner: Runner | None = None
        self._switch: FactorSwitch | None = None

    # --- what the endpoint reads (web.WorkerView) ----------------------------------------------

    def running(self) -> Runner | None:
        return self._runner

    def factors_state(self) -> tuple[bool, str | None] | None:
        switch = self._switch
        return None if switch is None else (switch.available, switch.unavailable)

    # --- the run -----------------------------------------------------------------------------------

    async def run(self, metrics: Metrics, http_url: str | None) -> int:
        settings = self._settings
        stop_requests: list[Callable[[], None]] = []

        def on_signal() -> None:
            for stop in list(stop_requests):
                stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)

        startup = asyncio.Event()
        stop_requests.append(startup.set)  # a signal during start-up ends the start-up
        pool = await _wait_for(self._connect(), startup)
        if pool is None:
            return 0
        try:
            await check_schema(pool)
            queue = Queue(
                self.worker_id,
                max_attempts=settings.max_attempts,
                retry_base_s=settings.retry_base_s,
                retry_max_s=settings.retry_max_s,
            )
            calendar = shared_calendar(settings.refresh_calendar)  # the status page's too
            times = schedule.ScheduleTimes.from_settings(settings, calendar)
            # --burst drains the queue and exits: the daily schedule is the long-running worker's.
            daily = (
                []
                if self._burst or times is None
                else [schedule.DailySchedule(pool, times, queue.worker_id)]
            )
            switch = self._switch = await FactorSwitch.detect(pool, settings.factors_mode)
            host = await HostTables.detect(pool, settings)
            log.info(
                "host_tables",
                price_mirror=host.mirror_prices,
                cache_invalidation=host.invalidate_cache,
                factors=switch.available,
            )

            def last_session() -> date:
                return calendar.last_completed_session(datetime.now(UTC))

            async with open_onboarder(
                settings,
                queue,
                pool,
                sources=self._source,
                metrics=metrics,
                factor_store=switch,
                host=host,
                last_session=last_session,
            ) as onboarder:
                refresher = build_refresher(settings, queue, pool, onboarder, calendar)
                runner = self._runner = Runner(
                    settings,
                    pool,
                    queue,
                    JobsByKind(onboarder, refresher),
                    claim_dsn=asyncpg_dsn(self._url),
                    listen_dsn=self._listen_dsn(),
                    burst=self._burst,
                    housekeeping=housekeeper_for(
                        settings, pool, queue, factors=switch, host=host, periodic=daily
                    ),
                    metrics=metrics,
                    http_url=http_url,
                )
                stop_requests[:] = [runner.request_stop]
                if startup.is_set():
                    return 0
                await runner.run()
        finally:
            await pool.close()
        return 0

    async def _connect(self) -> asyncpg.Pool:
        """A pool of concurrency + 1 connections (claims, completions, heartbeats,
        housekeeping), waiting out an outage: for ever, or in burst mode (cron, CI) for
        WORKER_BURST_MAX_OUTAGE_S, then a one-line error (exit 1)."""
        settings = self._settings
        with connect_errors(self._url, waited=f" for {settings.burst_max_outage_s:g} s"):
            return await create_pool_waiting(
                self._url,
                settings,
                max_outage_s=settings.burst_max_outage_s if self._burst else None,
                min_size=1,
                max_size=settings.concurrency + 1,
            )

    def _listen_dsn(self) -> str | None:
        if not self._settings.listen_enabled:
            return None
        return asyncpg_dsn(self._settings.listen_database_url or self._url)


async def _wait_for(coro: Awaitable[Any], cancelled: asyncio.Event) -> Any:
    """Await `coro` unless `cancelled` is set first (then None)."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.create_task(cancelled.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, DatabaseUnavailable):
        await task
    return None
