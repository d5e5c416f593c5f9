"""The failover drill (issue 22.1): a worker whose DATABASE_URL lists a primary and its streaming
replica with `target_session_attrs=read-write` runs jobs; the primary is stopped hard (immediate
mode, as in a crash), the replica promoted, and the same worker process, untouched, carries on
against the new primary. Every job completes exactly once in effect: re-runs are counted (a
completion the replica never received is lost with the old primary, and the job runs again),
no symbol's prices are written by two completions, none is lost.
"""

import asyncio
import signal
from collections import Counter
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from tests import replica
from tests.acceptance.conftest import serve_slowly, start_worker, worker_env
from tests.fakeprovider import FakeProvider
from worker.ops import migrate

pytestmark = pytest.mark.slow

JOBS = 60
FETCH_S = 0.25  # each provider answer takes this long, so jobs are in flight at the crash
BARS = 10  # yahoo_chart's days per symbol


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_a_worker_follows_a_promoted_replica_and_runs_every_job_once_in_effect(
    provider: FakeProvider,
) -> None:
    try:
        cluster = await asyncio.to_thread(replica.build)
    except replica.ReplicaUnavailable as exc:
        pytest.skip(f"no primary with a streaming replica here: {exc}")
    try:
        admin = await asyncpg.connect(cluster.primary.url("postgres"))
        await admin.execute("CREATE DATABASE drill")
        await admin.close()
        await migrate.upgrade(cluster.primary.url("drill"))
        await asyncio.to_thread(replica.start_replica, cluster)

        primary = await asyncpg.connect(cluster.primary.url("drill"))
        symbols = [f"F{i:03d}" for i in range(JOBS)]
        for symbol in symbols:
            serve_slowly(provider, symbol, delay_s=FETCH_S)
        await primary.execute(
            "INSERT INTO symbol_onboarding_queue (symbol) SELECT unnest($1::text[])", symbols
        )

        async def streaming() -> bool:
            state = await primary.fetchval("SELECT state FROM pg_stat_replication")
            return bool(state == "streaming")

        await eventually(streaming, 30, "the replica to stream")
        await primary.close()

        worker = await start_worker(
            worker_env(cluster.failover_url("drill"), provider.url, WORKER_CONCURRENCY="4")
        )
        try:

            def completions() -> list[str]:
                return [
                    e["symbol"]
                    for e in worker.events
                    if e.get("event") == "job_finished" and e.get("outcome") == "completed"
                ]

            async def a_third_done() -> bool:
                return len(completions()) >= JOBS // 3

            await eventually(a_third_done, 60, f"{JOBS // 3} completions")
            await asyncio.to_thread(cluster.stop_immediately, cluster.primary)
            logged_before_crash = len(worker.events)

            standby = await asyncpg.connect(cluster.replica.url("drill"))
            await asyncio.sleep(1)  # the worker meets a dead primary and a read-only replica
            replicated = await standby.fetchval(
                "SELECT count(*) FROM symbol_onboarding_queue WHERE status = 'completed'"
            )
            await standby.close()
            await asyncio.to_thread(cluster.promote, cluster.replica)

            promoted = await asyncpg.connect(cluster.replica.url("drill"))
            try:

                async def all_completed() -> bool:
                    done = await promoted.fetchval(
                        "SELECT count(*) FROM symbol_onboarding_queue WHERE status = 'completed'"
                    )
                    return bool(done == JOBS)

                await eventually(all_completed, 120, "every job to complete after promotion")
                queue = await promoted.fetch(
                    "SELECT symbol, status, attempts, xmin::text AS xmin"
                    " FROM symbol_onboarding_queue ORDER BY symbol"
                )
                writes = await promoted.fetch(
                    "SELECT symbol, count(*) AS bars, array_agg(DISTINCT xmin::text) AS xmins"
                    " FROM symbol_prices_daily GROUP BY symbol ORDER BY symbol"
                )
                universe = await promoted.fetch(
                    "SELECT status, count(*) FROM symbol_universe GROUP BY status"
                )
            finally:
                await promoted.close()
            worker.proc.send_signal(signal.SIGTERM)
            assert await worker.finish() == 0
        finally:
            await worker.kill()

        runs = Counter(e["job_id"] for e in worker.events if e.get("event") == "job_finished")
        duplicated = [w["symbol"] for w in writes if len(w["xmins"]) > 1]
        figures = {
            "jobs": JOBS,
            "completed": sum(1 for q in queue if q["status"] == "completed"),
            "completed_before_crash_replicated": replicated,
            "reruns": sum(runs.values()) - JOBS,
            "duplicated": len(duplicated),
            "lost": JOBS - len(writes),
            "attempts": sum(q["attempts"] for q in queue),
            "provider_requests": len(provider.requests),
        }
        print(f"failover drill: {figures}")

        assert [q["symbol"] for q in queue] == symbols  # one job per symbol, none added
        assert figures["completed"] == JOBS and figures["lost"] == 0, figures
        assert duplicated == [], figures
        assert all(w["bars"] == BARS for w in writes), writes
        # The completion and the prices are one transaction: the job's row and its symbol's
        # bars carry the same xmin, so no completion stands without its own prices.
        assert {w["symbol"]: w["xmins"][0] for w in writes} == {
            q["symbol"]: q["xmin"] for q in queue
        }
        assert dict(universe) == {"active": JOBS}
        assert len(runs) == JOBS and figures["reruns"] >= 0, figures
        # The worker followed the promotion by itself: jobs completed by this one process after
        # the crash, on the promoted replica, beyond what had been replicated before it.
        assert replicated < JOBS
        after_crash = worker.events[logged_before_crash:]
        assert any(
            e.get("event") == "job_finished" and e.get("outcome") == "completed"
            for e in after_crash
        )
        assert any(e.get("event") in ("database_unavailable", "listener_lost") for e in after_crash)
    finally:
        await asyncio.to_thread(cluster.stop)
