"""A worker cut off from the database knows it (issue 22.4).

A TCP proxy of the test's own stands between one worker and PostgreSQL and stops forwarding
without closing anything (a silent network cut: no RST, no FIN). The cut-off worker notices in
seconds (claims and heartbeats are bounded by QUEUE_HEARTBEAT_INTERVAL_S), gives its running
jobs up once they have gone unconfirmed for QUEUE_STALL_TIMEOUT_S (`jobs_abandoned_unreachable`,
once) and fetches nothing more for them, while a healthy worker sweeps and completes them; when
the proxy forwards again, the cut-off worker claims again. Every job completes exactly once.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit

import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.fakeprovider import FakeProvider, Reply, fixture
from tests.integration.test_onboarding import MSFT, MSFT_TODAY
from tests.tcpproxy import TcpProxy
from worker.core.db import asyncpg_dsn, connect_options
from worker.core.errors import DatabaseUnavailable
from worker.core.settings import Settings
from worker.jobs.onboarding import open_onboarder
from worker.queue.housekeeping import Housekeeper
from worker.queue.runner import Runner
from worker.queue.store import Queue

pytestmark = pytest.mark.slow

FIRST = ["CUT1", "CUT2", "CUT3"]  # claimed by the worker that is then cut off
AFTER = ["BACK1", "BACK2", "BACK3"]  # enqueued once it can reach the database again


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, url: str, name: str, *, listen: bool
) -> AsyncIterator[Runner]:
    """A worker (pool, onboarder, housekeeping, runner) on `url` until the block ends."""
    queue = Queue(name, max_attempts=settings.max_attempts, retry_base_s=settings.retry_base_s)
    async with (
        asyncpg.create_pool(
            asyncpg_dsn(url), min_size=1, max_size=6, **connect_options(settings)
        ) as pool,
        open_onboarder(settings, queue, pool, today=lambda: MSFT_TODAY) as onboarder,
    ):
        runner = Runner(
            settings,
            pool,
            queue,
            onboarder,
            claim_dsn=asyncpg_dsn(url),
            listen_dsn=asyncpg_dsn(url) if listen else None,
            housekeeping=Housekeeper(settings, pool, queue),
        )
        task = asyncio.create_task(runner.run())
        try:
            yield runner
        finally:
            runner.request_stop()
            runner.request_stop()  # abort: a cut-off worker's hand-backs cannot succeed
            await asyncio.wait_for(task, 30)


async def until(predicate, timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def chart(symbol: str) -> str:
    return f"/v8/finance/chart/{symbol}"


async def test_a_cut_off_worker_abandons_its_jobs_and_claims_again_when_healed(
    database_url, conn
) -> None:
    if not urlsplit(database_url).hostname:
        pytest.skip("the test server listens on a unix socket only: no TCP proxy in front of it")
    # Every price write records its transaction per symbol: two completions would show as two.
    await conn.execute(
        """
        CREATE TABLE price_writes (symbol text, xid xid8);
        CREATE FUNCTION note_price_write() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO price_writes SELECT DISTINCT symbol, pg_current_xact_id() FROM written;
            RETURN NULL;
        END $$;
        CREATE TRIGGER note_price_write AFTER INSERT ON symbol_prices_daily
        REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION note_price_write();
        """
    )
    body = fixture(MSFT)
    cut_provider, healthy_provider = FakeProvider(), FakeProvider()
    for symbol in FIRST:
        # The cut-off worker's provider fails transiently: its jobs keep retrying in-process,
        # so a job that was not stopped would keep asking it.
        cut_provider.route(chart(symbol), Reply(503, b"busy", "text/plain"))
        healthy_provider.route(chart(symbol), Reply(body=body))
    for symbol in AFTER:
        cut_provider.route(chart(symbol), Reply(body=body))
    await cut_provider.start()
    await healthy_provider.start()
    proxy = TcpProxy(database_url)
    await proxy.start()
    base = Settings(
        price_source="yahoo",
        rate_limit_yahoo="off",
        source_failures_before_pause=0,
        http_timeout_s=5.0,
        http_retries=1000,  # retried in-process for as long as the job runs
        http_retry_wait_s=0.2,
        http_retry_max_wait_s=0.2,
        concurrency=3,
        poll_interval_s=0.1,
        heartbeat_interval_s=0.3,
        stall_timeout_s=1.5,
        command_timeout_s=60.0,  # what used to hold a cut-off worker's statements
        lock_timeout_s=5.0,
        reconnect_max_wait_s=0.5,
        retry_base_s=0.2,
        shutdown_grace_s=0.0,
        max_attempts=5,
        factors_enabled=False,
    )
    cut_settings = replace(base, yahoo_base_url=cut_provider.url)
    healthy_settings = replace(base, yahoo_base_url=healthy_provider.url)

    async def completed(symbols: list[str]) -> bool:
        done = await conn.fetchval(
            "SELECT count(*) FROM symbol_onboarding_queue"
            " WHERE symbol = ANY($1) AND status = 'completed'",
            symbols,
        )
        return bool(done == len(symbols))

    try:
        with capture_logs() as events:
            async with running_worker(
                cut_settings, proxy.url(database_url), "cut", listen=True
            ) as cut:
                for symbol in FIRST:
                    await conn.execute("SELECT enqueue_symbol_onboarding($1)", symbol)
                await until(
                    lambda: _true(all(cut_provider.hits(chart(s)) for s in FIRST)),
                    10,
                    "the first jobs fetching",
                )
                proxy.pause()

                def abandoned() -> list[dict[str, object]]:
                    return [e for e in events if e["event"] == "jobs_abandoned_unreachable"]

                await until(lambda: _true(bool(abandoned())), 10, "jobs_abandoned_unreachable")
                asked = {s: len(cut_provider.hits(chart(s))) for s in FIRST}
                async with running_worker(healthy_settings, database_url, "healthy", listen=False):
                    await until(lambda: completed(FIRST), 20, "the healthy worker's sweep")
                    await asyncio.sleep(1.0)  # the cut-off worker stays quiet meanwhile
                    # Still cut off: nothing more asked for the jobs it gave up.
                    assert {s: len(cut_provider.hits(chart(s))) for s in FIRST} == asked
                proxy.resume()
                for symbol in AFTER:
                    await conn.execute("SELECT enqueue_symbol_onboarding($1)", symbol)
                await until(lambda: completed(AFTER), 20, "the healed worker's claims")
                cut_id = cut.queue.worker_id
    finally:
        await proxy.cut()
        await cut_provider.stop()
        await healthy_provider.stop()

    [line] = abandoned()
    assert line["log_level"] == "warning" and line["jobs"] == len(FIRST)
    # Healed, it asked nothing more for the jobs it had given up.
    assert {s: len(cut_provider.hits(chart(s))) for s in FIRST} == asked
    rows = {
        r["symbol"]: r
        for r in await conn.fetch(
            "SELECT symbol, status, attempts, locked_by FROM symbol_onboarding_queue"
        )
    }
    assert set(rows) == set(FIRST + AFTER)  # none lost
    assert {r["status"] for r in rows.values()} == {"completed"}
    assert {s: rows[s]["attempts"] for s in FIRST} == dict.fromkeys(FIRST, 2)  # cut, then swept
    assert {rows[s]["locked_by"] for s in FIRST} == {"healthy"}
    assert {rows[s]["locked_by"] for s in AFTER} == {cut_id}  # it claims again once healed
    # None duplicated: each symbol's prices written by one transaction, one completion logged.
    writes = await conn.fetch(
        "SELECT symbol, count(DISTINCT xid) AS n FROM price_writes GROUP BY 1"
    )
    assert {r["symbol"]: r["n"] for r in writes} == dict.fromkeys(FIRST + AFTER, 1)
    finished = [
        e["symbol"] for e in events if e["event"] == "job_finished" and e["outcome"] == "completed"
    ]
    assert sorted(finished) == sorted(FIRST + AFTER)
    assert sorted(
        e["symbol"] for e in events if e["event"] == "job_finished" and e["outcome"] == "abandoned"
    ) == sorted(FIRST)


async def _true(value: bool) -> bool:
    return value


class CompletesButLosesTheAnswer:
    """A handler whose completion commits, then whose connection drops before the answer."""

    def __init__(self, queue: Queue, pool: asyncpg.Pool) -> None:
        self.queue, self.pool = queue, pool

    async def run(self, job):  # type: ignore[no-untyped-def]
        await self.queue.complete(self.pool, job)
        raise DatabaseUnavailable("ConnectionDoesNotExistError: connection was closed")


async def test_a_completion_whose_answer_was_lost_is_logged_completed(
    database_pool, database_url, conn
) -> None:
    """The hand-back finds the row completed by this very claim: the log's last word on the
    job is `completed` (acknowledged=false), not `interrupted`."""
    await conn.execute("SELECT enqueue_symbol_onboarding('ACKED')")
    queue = Queue("unacknowledged")
    settings = Settings(poll_interval_s=0.1, heartbeat_interval_s=0.2, stall_timeout_s=1.0)
    runner = Runner(
        settings,
        database_pool,
        queue,
        CompletesButLosesTheAnswer(queue, database_pool),
        claim_dsn=asyncpg_dsn(database_url),
        burst=True,
    )
    with capture_logs() as events:
        await asyncio.wait_for(runner.run(), 10)
    [line] = [e for e in events if e["event"] == "job_finished"]
    assert (line["outcome"], line["acknowledged"], line["log_level"]) == (
        "completed",
        False,
        "info",
    )
    row = await conn.fetchrow("SELECT status, attempts FROM symbol_onboarding_queue")
    assert tuple(row) == ("completed", 1)
