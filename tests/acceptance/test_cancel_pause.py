"""Cancel, pause and resume with real worker processes, the CLI as a subprocess, the local fake
provider, and the status command, page and /metrics (docs/operations/cancel-and-pause.md)."""

import asyncio
import json
import signal

import asyncpg
import pytest

from tests.acceptance.conftest import (
    WorkerProcess,
    run_cli,
    serve_slowly,
    start_worker,
    worker_env,
)
from tests.acceptance.test_http_endpoint import endpoint_url, get, metric_samples, total

pytestmark = pytest.mark.slow


async def wait_until(conn: asyncpg.Connection, query: str, *args, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await conn.fetchval(query, *args):
        if asyncio.get_running_loop().time() >= deadline:
            rows = await conn.fetch(
                "SELECT symbol, status, attempts, run_after, error_message"
                " FROM symbol_onboarding_queue"
            )
            raise AssertionError(f"timed out: {query} {args}: {[dict(r) for r in rows]}")
        await asyncio.sleep(0.1)


async def job_statuses(conn: asyncpg.Connection) -> dict[str, tuple[str, int]]:
    rows = await conn.fetch("SELECT symbol, status, attempts FROM symbol_onboarding_queue")
    return {r["symbol"]: (r["status"], r["attempts"]) for r in rows}


async def status_json(env: dict[str, str]) -> dict:
    code, out, err = await run_cli(env, "status", "--json")
    assert code == 0, err
    return json.loads(out)


async def stop(*workers: WorkerProcess) -> None:
    for w in workers:
        w.proc.send_signal(signal.SIGTERM)
    for w in workers:
        assert await w.finish() == 0


async def test_cancel_of_a_pending_job(database_url, conn) -> None:
    env = worker_env(database_url)
    code, out, _ = await run_cli(env, "enqueue", "AAPL", "MSFT")
    assert code == 0
    ids = dict(line.split("\t")[::-1] for line in out.splitlines())
    code, out, err = await run_cli(env, "cancel", ids["AAPL"], "--by", "alice")
    assert code == 0, err
    assert out == f"{ids['AAPL']}\t-\tcancelled\n"
    code, out, _ = await run_cli(env, "cancel", "--symbol", "msft", "aapl", "--by", "alice")
    assert code == 1  # AAPL has no live job any more: said, and the exit status says so
    assert f"{ids['MSFT']}\tMSFT\tcancelled" in out and "AAPL\tno pending or running job" in out
    code, out, _ = await run_cli(env, "cancel", ids["AAPL"])
    assert code == 0 and "already cancelled" in out
    code, out, _ = await run_cli(env, "cancel", "00000000-0000-0000-0000-000000000001")
    assert code == 1 and "not found" in out
    assert await job_statuses(conn) == {"AAPL": ("cancelled", 0), "MSFT": ("cancelled", 0)}
    report = await status_json(env)
    assert sum(report["counts"]["cancelled"].values()) == 2
    assert {c["cancelled_by"] for c in report["control"]["recent_cancelled"]} == {"alice"}
    _, text, _ = await run_cli(env, "status")
    assert "recent cancellations: 2" in text and "by alice" in text
    # A worker finds nothing to run.
    worker = await start_worker(env, "--burst")
    assert await worker.finish() == 0
    assert await conn.fetchval("SELECT count(*) FROM symbol_prices_daily") == 0


async def test_cancel_of_a_running_job_rolls_it_back(database_url, conn, provider) -> None:
    serve_slowly(provider, "SLOW", delay_s=60)  # the fetch is held open
    env = worker_env(database_url, provider.url, WORKER_HTTP_PORT="0")
    worker = await start_worker(env)
    try:
        base = await endpoint_url(worker)
        await worker.wait_for("listener_connected")
        code, out, _ = await run_cli(env, "enqueue", "SLOW")
        job_id = out.split("\t")[0]
        await wait_until(
            conn,
            "SELECT status = 'processing' FROM symbol_onboarding_queue WHERE id = $1::uuid",
            job_id,
        )
        await wait_until(conn, "SELECT $1 > 0", len(provider.hits("/v8/finance/chart/SLOW")))
        code, out, err = await run_cli(env, "cancel", "--symbol", "SLOW", "--by", "alice")
        assert code == 0, err
        assert out == f"{job_id}\tSLOW\tcancelled\n"
        finished = await worker.wait_for("job_finished", symbol="SLOW")
        assert finished["outcome"] == "cancelled"
        noticed = await worker.wait_for("job_cancel_requested")
        assert noticed["noticed_by"] == "notify"
        page = (await get(base)).text
        await asyncio.sleep(2.1)  # past the scrape-time caches
        m = metric_samples((await get(base + "metrics")).text)
        await stop(worker)
    finally:
        await worker.kill()
    row = await conn.fetchrow("SELECT * FROM symbol_onboarding_queue WHERE id = $1::uuid", job_id)
    assert row["status"] == "cancelled" and row["attempts"] == 0  # no attempt spent
    assert row["error_message"] == "cancelled by alice while running"
    assert await conn.fetchval("SELECT count(*) FROM symbol_prices_daily") == 0
    assert await conn.fetchval("SELECT status FROM symbol_universe WHERE symbol = 'SLOW'") == (
        "error"
    )
    assert "Recently cancelled (1)" in page and "cancelled by alice while running" in page
    assert total(m, "symbol_onboarding_jobs_finished_total", outcome="cancelled") == 1


async def test_cancel_noticed_by_the_heartbeat_without_notify(database_url, conn, provider) -> None:
    """A cancel whose NOTIFY the worker missed: the next heartbeat finds it."""
    serve_slowly(provider, "SLOW", delay_s=60)
    env = worker_env(database_url, provider.url)
    worker = await start_worker(env)
    try:
        await worker.wait_for("listener_connected")
        job_id = await conn.fetchval("SELECT enqueue_symbol_onboarding('SLOW')")
        await wait_until(
            conn, "SELECT status = 'processing' FROM symbol_onboarding_queue WHERE id = $1", job_id
        )
        # As cancel_symbol_onboarding does, minus its pg_notify.
        await conn.execute(
            "UPDATE symbol_onboarding_queue SET cancel_requested_at = now(),"
            " cancel_requested_by = 'sql' WHERE id = $1",
            job_id,
        )
        noticed = await worker.wait_for("job_cancel_requested", timeout_s=10)
        assert noticed["noticed_by"] == "heartbeat"
        assert (await worker.wait_for("job_finished", symbol="SLOW"))["outcome"] == "cancelled"
        await stop(worker)
    finally:
        await worker.kill()
    assert await job_statuses(conn) == {"SLOW": ("cancelled", 0)}


async def test_cancel_of_a_job_that_completed_first(database_url, conn, provider) -> None:
    serve_slowly(provider, "FAST", delay_s=0)
    env = worker_env(database_url, provider.url)
    worker = await start_worker(env)
    try:
        await worker.wait_for("listener_connected")
        _, out, _ = await run_cli(env, "enqueue", "FAST")
        job_id = out.split("\t")[0]
        assert (await worker.wait_for("job_finished", symbol="FAST"))["outcome"] == "completed"
        code, out, _ = await run_cli(env, "cancel", job_id, "--by", "alice")
        await stop(worker)
    finally:
        await worker.kill()
    assert code == 0 and out == f"{job_id}\t-\talready completed\n"
    assert await job_statuses(conn) == {"FAST": ("completed", 1)}
    assert await conn.fetchval("SELECT count(*) FROM symbol_prices_daily") == 10


async def test_pause_and_resume_of_a_source_across_two_workers(
    database_url, conn, provider
) -> None:
    symbols = ["AA", "BB", "CC", "DD"]
    for s in symbols:
        serve_slowly(provider, s, delay_s=0)
    env = worker_env(database_url, provider.url, WORKER_HTTP_PORT="0")
    code, out, err = await run_cli(
        env, "pause", "yahoo", "--reason", "provider maintenance", "--by", "alice"
    )
    assert code == 0, err
    assert out == "yahoo paused until resumed by alice\n"
    workers = [await start_worker(env), await start_worker(env)]
    try:
        base = await endpoint_url(workers[0])
        for w in workers:
            await w.wait_for("listener_connected")
        await run_cli(env, "enqueue", *symbols)
        # Both workers claim and defer (no attempt spent, no request sent).
        await wait_until(
            conn,
            "SELECT count(*) = 4 FROM symbol_onboarding_queue"
            " WHERE status = 'pending' AND run_after > now() + interval '1 hour' AND attempts = 0",
        )
        deferring = {
            e["worker_id"] for w in workers for e in w.events if e.get("event") == "worker_started"
        }
        assert len(deferring) == 2
        assert all(any(e.get("outcome") == "deferred" for e in w.events) for w in workers) or (
            sum(e.get("outcome") == "deferred" for w in workers for e in w.events) >= 4
        )
        assert provider.hits("/v8/finance/chart/AA") == []
        report = await status_json(env)
        (paused,) = report["paused_sources"]
        assert paused["paused_by"] == "alice" and paused["until_resumed"]
        assert paused["reason"] == "provider maintenance"
        _, text, _ = await run_cli(env, "status")
        assert "yahoo      until resumed by alice: provider maintenance" in text
        page = (await get(base)).text
        assert "until resumed" in page and "alice" in page
        m = metric_samples((await get(base + "metrics")).text)
        assert total(m, "symbol_onboarding_source_paused", source="yahoo") == 1
        assert total(m, "symbol_onboarding_source_pause_remaining_seconds", source="yahoo") == (
            float("inf")
        )
        code, out, _ = await run_cli(env, "resume", "yahoo")
        assert code == 0 and out == "yahoo resumed; 4 deferred job(s) runnable now\n"
        await wait_until(
            conn, "SELECT count(*) = 4 FROM symbol_onboarding_queue WHERE status = 'completed'"
        )
        await asyncio.sleep(2.1)
        m = metric_samples((await get(base + "metrics")).text)
        assert total(m, "symbol_onboarding_source_paused", source="yahoo") == 0
        await stop(*workers)
    finally:
        for w in workers:
            await w.kill()
    assert {s: st for s, (st, _) in (await job_statuses(conn)).items()} == dict.fromkeys(
        symbols, "completed"
    )
    code, out, _ = await run_cli(env, "pause", "nosuch")
    assert code == 1


async def test_pause_and_resume_of_the_queue_across_two_workers(
    database_url, conn, provider
) -> None:
    symbols = ["AA", "BB", "CC"]
    for s in symbols:
        serve_slowly(provider, s, delay_s=0)
    env = worker_env(database_url, provider.url, WORKER_HTTP_PORT="0")
    workers = [await start_worker(env), await start_worker(env)]
    try:
        base = await endpoint_url(workers[0])
        for w in workers:
            await w.wait_for("listener_connected")
        code, out, err = await run_cli(env, "pause", "--queue", "--reason", "upgrade")
        assert code == 0, err
        assert out.startswith("queue paused until resumed by ")
        code, _, _ = await run_cli(env, "enqueue", *symbols)
        assert code == 0  # enqueueing goes on
        await asyncio.sleep(2.5)  # more than two poll intervals and the NOTIFY of the enqueue
        assert await job_statuses(conn) == {s: ("pending", 0) for s in symbols}
        report = await status_json(env)
        assert report["control"]["queue_pause"]["reason"] == "upgrade"
        _, text, _ = await run_cli(env, "status")
        assert "queue symbol_onboarding: PAUSED until resumed by " in text
        page = (await get(base)).text
        assert "Queue PAUSED until resumed" in page
        m = metric_samples((await get(base + "metrics")).text)
        assert total(m, "symbol_onboarding_queue_paused") == 1
        code, out, _ = await run_cli(env, "resume", "--queue")
        assert code == 0 and out == "queue resumed: workers claim again\n"
        await wait_until(
            conn, "SELECT count(*) = 3 FROM symbol_onboarding_queue WHERE status = 'completed'"
        )
        await asyncio.sleep(2.1)
        m = metric_samples((await get(base + "metrics")).text)
        assert total(m, "symbol_onboarding_queue_paused") == 0
        await stop(*workers)
    finally:
        for w in workers:
            await w.kill()
    owners = {
        e["worker_id"] for w in workers for e in w.events if e.get("event") == "worker_started"
    }
    assert len(owners) == 2


async def test_timed_pauses_end_by_themselves(database_url, conn, provider) -> None:
    for s in ("QQ", "SS"):
        serve_slowly(provider, s, delay_s=0)
    env = worker_env(database_url, provider.url)
    worker = await start_worker(env)
    try:
        await worker.wait_for("listener_connected")
        assert (await run_cli(env, "pause", "--queue", "--for", "10s"))[0] == 0
        await conn.execute("SELECT enqueue_symbol_onboarding('QQ')")
        await asyncio.sleep(1.5)  # past a poll interval and the enqueue's NOTIFY
        paused_left = await conn.fetchval(
            "SELECT extract(epoch FROM paused_until - now()) FROM symbol_onboarding_queue_pauses"
        )
        assert paused_left > 0 and await job_statuses(conn) == {"QQ": ("pending", 0)}
        await worker.wait_for("job_finished", symbol="QQ", timeout_s=30)  # no resume
        # A timed source pause: the job waits behind it, then runs without a resume.
        assert (await run_cli(env, "pause", "yahoo", "--for", "10s"))[0] == 0
        await conn.execute("SELECT enqueue_symbol_onboarding('SS')")
        deferred = await worker.wait_for("job_finished", symbol="SS")
        assert deferred["outcome"] == "deferred"
        assert provider.hits("/v8/finance/chart/SS") == []
        await worker.wait_for("job_finished", timeout_s=30, symbol="SS", outcome="completed")
        await stop(worker)
    finally:
        await worker.kill()
    assert {s: st for s, (st, _) in (await job_statuses(conn)).items()} == {
        "QQ": "completed",
        "SS": "completed",
    }
