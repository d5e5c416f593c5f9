"""The worker CLI as a subprocess against real PostgreSQL: signals, kill -9, restarts, logs."""

import asyncio
import json
import signal
import tempfile
from pathlib import Path

import asyncpg
import pytest

from tests.acceptance.conftest import run_cli, serve_slowly, start_worker, worker_env
from tests.helpers import statuses_and_attempts
from worker.core import embedded
from worker.core.db import asyncpg_dsn
from worker.ops import migrate

pytestmark = pytest.mark.slow


async def wait_for_status(conn, symbols: set[str], status: str, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        current = await statuses_and_attempts(conn)
        if all(current.get(s, ("?",))[0] == status for s in symbols):
            return
        assert asyncio.get_running_loop().time() < deadline, current
        await asyncio.sleep(0.05)


async def test_plain_insert_is_onboarded_and_sigterm_exits_0(database_url, conn, provider) -> None:
    serve_slowly(provider, "AAPL", delay_s=0)
    worker = await start_worker(worker_env(database_url, provider.url))
    try:
        await worker.wait_for("listener_connected")
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('aapl')")
        finished = await worker.wait_for("job_finished", symbol="AAPL")
        assert finished["outcome"] == "completed" and finished["rows"] == 10
        assert {"job_id", "attempt", "duration_ms"} <= finished.keys()
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.finish() == 0
    finally:
        await worker.kill()
    assert await statuses_and_attempts(conn) == {"AAPL": ("completed", 1)}
    universe = await conn.fetchrow("SELECT status, last_price_date FROM symbol_universe")
    assert universe["status"] == "active" and universe["last_price_date"] is not None
    assert await conn.fetchval("SELECT count(*) FROM symbol_prices_daily") == 10


async def test_sigterm_mid_job_lets_it_finish(database_url, conn, provider) -> None:
    serve_slowly(provider, "SLOW", delay_s=1.5)
    worker = await start_worker(worker_env(database_url, provider.url))
    try:
        await worker.wait_for("listener_connected")
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('SLOW')")
        await wait_for_status(conn, {"SLOW"}, "processing")
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.finish() == 0
    finally:
        await worker.kill()
    assert await statuses_and_attempts(conn) == {"SLOW": ("completed", 1)}


async def test_second_signal_aborts_and_hands_the_job_back(database_url, conn, provider) -> None:
    serve_slowly(provider, "STUCK", delay_s=30)
    env = worker_env(database_url, provider.url, PRICE_HTTP_TIMEOUT_S="60")
    worker = await start_worker(env)
    try:
        await worker.wait_for("listener_connected")
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('STUCK')")
        await wait_for_status(conn, {"STUCK"}, "processing")
        worker.proc.send_signal(signal.SIGTERM)
        waiting = await worker.wait_for("shutdown_waiting")
        # The first signal's line tells the user what a second one does (issue 22.6).
        assert waiting["hint"] == (
            "a second SIGTERM or Ctrl-C hands the jobs back now, without waiting"
        )
        worker.proc.send_signal(signal.SIGINT)
        assert await worker.finish(timeout_s=10) == 0
    finally:
        await worker.kill()
    row = await conn.fetchrow("SELECT status, attempts, locked_by FROM symbol_onboarding_queue")
    assert tuple(row) == ("pending", 0, None)  # handed back at once, no attempt spent


async def test_several_workers_complete_every_job_exactly_once(database_url, conn) -> None:
    symbols = [f"M{i}" for i in range(60)]
    env = worker_env(database_url, PRICE_SOURCE="synthetic", WORKER_CONCURRENCY="3")
    workers = [await start_worker(env) for _ in range(3)]
    try:
        for w in workers:
            await w.wait_for("listener_connected")
        for i in range(0, 60, 6):  # arriving over time, by plain INSERTs
            await conn.execute(
                "INSERT INTO symbol_onboarding_queue (symbol) SELECT unnest($1::text[])",
                symbols[i : i + 6],
            )
            await asyncio.sleep(0.05)
        await wait_for_status(conn, set(symbols), "completed", timeout_s=60)
        for w in workers:
            w.proc.send_signal(signal.SIGTERM)
        assert [await w.finish() for w in workers] == [0, 0, 0]
    finally:
        for w in workers:
            await w.kill()
    assert set((await statuses_and_attempts(conn)).values()) == {("completed", 1)}
    done = [e["symbol"] for w in workers for e in w.events if e.get("event") == "job_finished"]
    assert sorted(done) == sorted(symbols)  # each ran once, in exactly one process
    assert sum(1 for w in workers if any(e.get("event") == "job_finished" for e in w.events)) > 1
    per_symbol = await conn.fetch("SELECT count(*) AS n FROM symbol_prices_daily GROUP BY symbol")
    assert len(per_symbol) == 60 and len({r["n"] for r in per_symbol}) == 1


async def test_sigkilled_worker_job_is_recovered_by_another(database_url, conn, provider) -> None:
    serve_slowly(provider, "KILLED", delay_s=30)
    env = worker_env(database_url, provider.url, PRICE_HTTP_TIMEOUT_S="60")
    victim = await start_worker(env)
    try:
        await victim.wait_for("listener_connected")
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('KILLED')")
        await wait_for_status(conn, {"KILLED"}, "processing")
        victim.proc.send_signal(signal.SIGKILL)
        await victim.finish()
    finally:
        await victim.kill()
    serve_slowly(provider, "KILLED", delay_s=0)  # the provider answers the second attempt
    rescuer = await start_worker(env)
    try:
        started = asyncio.get_running_loop().time()
        recovered = await rescuer.wait_for("job_recovered", symbol="KILLED", timeout_s=20)
        await rescuer.wait_for("job_finished", symbol="KILLED", outcome="completed")
        # Bound: stall timeout (2 s) plus one recovery interval (stall/3) plus start-up.
        assert asyncio.get_running_loop().time() - started < 10
        assert recovered["attempt"] == 1
        rescuer.proc.send_signal(signal.SIGTERM)
        assert await rescuer.finish() == 0
    finally:
        await rescuer.kill()
    assert await statuses_and_attempts(conn) == {"KILLED": ("completed", 2)}


async def test_workers_ride_out_a_database_restart(provider) -> None:
    """A throwaway embedded server of our own, restarted while two workers run jobs."""
    pgdata = Path(tempfile.mkdtemp(prefix="sow-restart-", dir="/tmp"))
    server = embedded.start(pgdata, delete_on_stop=True)
    try:
        url = server.url("postgres")
        await migrate.upgrade(url)
        symbols = [f"R{i}" for i in range(12)]
        for s in symbols:
            serve_slowly(provider, s, delay_s=0.4)
        env = worker_env(url, provider.url, WORKER_CONCURRENCY="2")
        workers = [await start_worker(env) for _ in range(2)]
        try:
            for w in workers:
                await w.wait_for("listener_connected")
            conn = await asyncpg.connect(asyncpg_dsn(url))
            await conn.execute(
                "INSERT INTO symbol_onboarding_queue (symbol) SELECT unnest($1::text[])", symbols
            )
            await conn.close()
            await workers[0].wait_for("job_finished")
            await asyncio.to_thread(server.server._stop)  # pg_ctl stop: every connection drops
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.server.ensure_postgres_running)
            conn = await asyncpg.connect(asyncpg_dsn(url))
            try:
                await wait_for_status(conn, set(symbols), "completed", timeout_s=60)
                prices = await conn.fetchval("SELECT count(*) FROM symbol_prices_daily")
                queue_rows = await conn.fetchval("SELECT count(*) FROM symbol_onboarding_queue")
            finally:
                await conn.close()
            for w in workers:
                w.proc.send_signal(signal.SIGTERM)
            assert [await w.finish() for w in workers] == [0, 0]
        finally:
            for w in workers:
                await w.kill()
        assert queue_rows == 12 and prices == 12 * 10  # nothing lost, nothing duplicated
        for w in workers:
            assert any(e.get("event") == "listener_lost" for e in w.events), "restart unnoticed"
        completions = [
            e["symbol"]
            for w in workers
            for e in w.events
            if e.get("event") == "job_finished" and e.get("outcome") == "completed"
        ]
        # No job ran to completion twice. (One may lack its line: a commit that succeeded just
        # as the server went away looks "interrupted" to the worker; its row says completed.)
        assert len(completions) == len(set(completions)) and set(completions) <= set(symbols)
    finally:
        server.stop()


async def test_logs_are_json_and_hold_no_secret(database_url, conn, provider) -> None:
    password, key = "hunter2-db-password", "pk_live_SECRET_9f8e7d"
    secret_url = database_url.replace("postgres:@", f"postgres:{password}@").replace(
        "postgres@", f"postgres:{password}@"
    )
    assert password in secret_url
    serve_slowly(provider, "AAPL", delay_s=0)
    env = worker_env(
        secret_url,
        provider.url,
        POLYGON_API_KEY=key,
        POLYGON_BASE_URL=provider.url,
        PRICE_SOURCE="yahoo,polygon",
    )
    worker = await start_worker(env)
    try:
        await worker.wait_for("listener_connected")
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('AAPL'), ('NOPE')")
        await worker.wait_for("job_finished", symbol="NOPE")
        await worker.wait_for("job_finished", symbol="AAPL")
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.finish() == 0
    finally:
        await worker.kill()
    # A database that cannot be reached: the URL (with its password) is in what gets logged.
    unreachable = f"postgresql://postgres:{password}@127.0.0.1:1/postgres"
    waiting = await start_worker(
        worker_env(unreachable, DATABASE_COMMAND_TIMEOUT_S="5", DATABASE_LOCK_TIMEOUT_S="2")
    )
    try:
        await waiting.wait_for("database_unavailable")
        waiting.proc.send_signal(signal.SIGTERM)
        assert await waiting.finish() == 0
    finally:
        await waiting.kill()
    lines = worker.lines + waiting.lines
    output = "\n".join(lines)
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert "postgres:***@127.0.0.1:1" in output
    assert password not in output and key not in output


async def test_fatal_configuration_exits_1_with_one_line(database_url, empty_database_url) -> None:
    env = worker_env(database_url)
    code, _, err = await run_cli({**env, "DATABASE_URL": "mysql://x@y/z"}, "run")
    assert code == 1 and err.strip().count("\n") == 0 and "unsupported database URL" in err
    code, _, err = await run_cli({**env, "DATABASE_URL": empty_database_url}, "run")
    assert code == 1 and "run `python -m worker migrate`" in err
    code, _, err = await run_cli({**env, "DATABASE_URL": empty_database_url}, "health")
    assert code == 1 and "python -m worker migrate" in err
    code, _, err = await run_cli({**env, "PRICE_SOURCE": "nosuchsource"}, "run")
    assert code == 1 and "nosuchsource" in err and err.strip().count("\n") == 0
    code, _, err = await run_cli({**env, "WORKER_CONCURRENCY": "zero"}, "run")
    assert code == 1 and "WORKER_CONCURRENCY" in err


async def test_operator_commands(database_url, conn) -> None:
    env = worker_env(database_url)
    code, out, _ = await run_cli(env, "health")
    assert code == 0 and out.startswith("ok")

    code, out, _ = await run_cli(env, "enqueue", "aapl", "brk.b", "--priority", "high")
    ids = [line.split("\t") for line in out.strip().splitlines()]
    assert code == 0 and [s for _, s in ids] == ["AAPL", "BRK.B"]
    code, _, err = await run_cli(env, "enqueue", "bad symbol")
    assert code == 1 and "invalid symbol 'bad symbol'" in err
    stranger = "00000000-0000-4000-8000-000000000001"
    code, _, err = await run_cli(env, "enqueue", "msft", "--requested-by", stranger)
    assert code == 1
    assert err.strip() == f"error: --requested-by {stranger}: no such user; nothing was enqueued"
    assert await conn.fetchval("SELECT count(*) FROM symbol_onboarding_queue") == 2

    await conn.execute(
        "UPDATE symbol_onboarding_queue SET status = 'failed', error_message = 'boom',"
        " completed_at = now() - interval '40 days' WHERE symbol = 'AAPL'"
    )
    code, out, _ = await run_cli(env, "status", "--json")
    report = json.loads(out)
    assert code == 0 and report["counts"]["failed"] == {"high": 1, "normal": 0, "low": 0}
    assert report["recent_failures"][0]["error"] == "boom"
    code, out, _ = await run_cli(env, "status")
    assert code == 0 and "recent failures: 1" in out

    code, out, _ = await run_cli(env, "retry", ids[0][0], "--now", "--failed")
    assert code == 2
    code, out, _ = await run_cli(env, "retry", ids[0][0])
    assert (
        code == 0
        and await conn.fetchval("SELECT status FROM symbol_onboarding_queue WHERE symbol = 'AAPL'")
        == "pending"
    )
    code, _, err = await run_cli(env, "retry", ids[0][0])
    assert code == 1 and "not failed" in err

    await conn.execute(
        "UPDATE symbol_onboarding_queue SET status = 'failed', completed_at = now() - interval '40 days'"
    )
    code, out, _ = await run_cli(env, "prune")
    assert code == 0 and "pruned 0 completed and 2 failed" in out
    assert await conn.fetchval("SELECT count(*) FROM symbol_onboarding_queue") == 0


async def test_status_shows_stalled_jobs_paused_sources_and_retry_now(database_url, conn) -> None:
    env = worker_env(database_url, QUEUE_STALL_TIMEOUT_S="30", QUEUE_HEARTBEAT_INTERVAL_S="5")
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue
            (symbol, status, attempts, locked_by, started_at, heartbeat_at) VALUES
            ('STALL', 'processing', 1, 'gone:1:abc', now() - interval '3 minutes',
             now() - interval '155 s');
        INSERT INTO symbol_onboarding_queue (symbol, attempts, run_after, error_message)
            VALUES ('WAIT', 1, now() + interval '1 hour', 'yahoo: HTTP 503 (4 attempts)');
        INSERT INTO price_source_state (source, paused_until, pause_reason)
            VALUES ('yahoo', now() + interval '10 minutes', 'HTTP 429 Too Many Requests');
        """
    )
    code, out, _ = await run_cli(env, "status", "--json")
    report = json.loads(out)
    assert code == 0
    (stalled,) = report["running"]
    assert stalled["symbol"] == "STALL" and stalled["stalled"] is True
    assert stalled["heartbeat_age_s"] >= 155
    (paused,) = report["paused_sources"]
    assert paused["source"] == "yahoo" and paused["reason"] == "HTTP 429 Too Many Requests"
    (waiting,) = report["backoff"]
    assert waiting["last_error"] == "yahoo: HTTP 503 (4 attempts)"
    assert report["workers"] == [] and report["last_completed"] is None

    code, text, _ = await run_cli(env, "status")
    assert code == 0
    stall_line = next(line for line in text.splitlines() if "STALL " in line)
    assert "STALLED" in stall_line
    assert "HTTP 429 Too Many Requests" in text and "yahoo: HTTP 503 (4 attempts)" in text

    code, _, err = await run_cli(env, "retry", waiting["job_id"])
    assert code == 1 and "--now" in err
    code, out, _ = await run_cli(env, "retry", waiting["job_id"], "--now")
    assert code == 0 and "runs now" in out
    assert await conn.fetchval(
        "SELECT run_after <= now() FROM symbol_onboarding_queue WHERE symbol = 'WAIT'"
    )
    code, out, _ = await run_cli(env, "retry", waiting["job_id"], "--now")
    assert code == 0 and "already runnable" in out
