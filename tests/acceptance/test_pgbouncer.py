"""Through a real PgBouncer in transaction pooling mode (issue 11, items 8-11).

The worker (poll-only, and with a direct LISTEN_DATABASE_URL), every CLI command and the enqueue
helpers, with the settings the README gives for a pooler.
"""

import asyncio
import json
import signal
import uuid
from datetime import date, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.acceptance.conftest import run_cli, start_worker, worker_env
from tests.factordata import business_days, reference_series, store_prices
from tests.pgbouncer import PgBouncer
from worker import enqueue_symbol, enqueue_symbols
from worker.core.db import pooler_connect_args, sqlalchemy_url

pytestmark = pytest.mark.slow


def pooled_env(database_url: str, bouncer: PgBouncer, **extra: str) -> dict[str, str]:
    """The worker's environment with DATABASE_URL through PgBouncer, as the README says."""
    settings = {"DATABASE_STATEMENT_CACHE_SIZE": "0", "PRICE_SOURCE": "synthetic"}
    return worker_env(bouncer.url(database_url), **{**settings, **extra})


async def wait_completed(conn: asyncpg.Connection, count: int, timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM symbol_onboarding_queue GROUP BY 1"
        )
        counts = {r["status"]: r["n"] for r in rows}
        if counts.get("completed", 0) == count:
            return
        assert asyncio.get_running_loop().time() < deadline, counts
        await asyncio.sleep(0.05)


async def test_poll_only_worker_through_pgbouncer(database_url, conn, pgbouncer) -> None:
    symbols = [f"P{i}" for i in range(30)]
    env = pooled_env(
        database_url,
        pgbouncer,
        WORKER_LISTEN="false",
        WORKER_POLL_INTERVAL_S="0.2",
        WORKER_CONCURRENCY="3",
    )
    worker = await start_worker(env)
    try:
        started = await worker.wait_for("worker_started")
        assert started["listen"] is False
        for i in range(0, len(symbols), 5):  # arriving over time
            await conn.execute(
                "INSERT INTO symbol_onboarding_queue (symbol) SELECT unnest($1::text[])",
                symbols[i : i + 5],
            )
            await asyncio.sleep(0.1)
        await wait_completed(conn, len(symbols))
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.finish() == 0
    finally:
        await worker.kill()
    problems = [e for e in worker.events if e.get("level") in ("error", "critical")]
    assert problems == []
    finished = [e["symbol"] for e in worker.events if e.get("event") == "job_finished"]
    assert sorted(finished) == sorted(symbols)  # each once
    assert await conn.fetchval("SELECT count(DISTINCT symbol) FROM symbol_prices_daily") == 30
    assert not any(e.get("event") == "listener_connected" for e in worker.events)


async def test_worker_through_pgbouncer_listens_on_a_direct_url(
    database_url, conn, pgbouncer
) -> None:
    """DATABASE_URL through the pooler, LISTEN_DATABASE_URL direct: NOTIFY still wakes it."""
    env = pooled_env(
        database_url,
        pgbouncer,
        LISTEN_DATABASE_URL=database_url,
        WORKER_POLL_INTERVAL_S="30",  # a wake-up within seconds can only come from NOTIFY
    )
    worker = await start_worker(env)
    try:
        await worker.wait_for("listener_connected")
        await asyncio.sleep(0.3)  # idle: waiting on NOTIFY
        engine = create_async_engine(
            sqlalchemy_url(pgbouncer.url(database_url)), connect_args=pooler_connect_args()
        )
        try:
            async with engine.begin() as db:
                await enqueue_symbol(db, "WAKE")
        finally:
            await engine.dispose()
        finished = await worker.wait_for("job_finished", symbol="WAKE", timeout_s=10)
        assert finished["outcome"] == "completed"
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.finish() == 0
    finally:
        await worker.kill()


async def test_every_command_through_pgbouncer(database_url, conn, pgbouncer) -> None:
    env = pooled_env(database_url, pgbouncer)
    code, out, err = await run_cli(env, "health")
    assert (code, out.startswith("ok")) == (0, True), err
    code, out, err = await run_cli(env, "migrate")
    assert code == 0 and out.startswith("ok"), err

    code, out, err = await run_cli(env, "enqueue", "aapl", "msft", "--priority", "high")
    assert code == 0, err
    ids = dict(reversed(line.split("\t")) for line in out.strip().splitlines())
    assert sorted(ids) == ["AAPL", "MSFT"]

    await conn.execute(
        "UPDATE symbol_onboarding_queue SET status = 'failed', error_message = 'boom',"
        " completed_at = now() - interval '40 days'"
    )
    code, out, err = await run_cli(env, "status")
    assert code == 0 and "boom" in out, err
    code, out, err = await run_cli(env, "status", "--json")
    assert code == 0, err
    assert json.loads(out)["counts"]["failed"]["high"] == 2

    code, out, err = await run_cli(env, "retry", ids["AAPL"])
    assert code == 0, err
    code, out, err = await run_cli(env, "retry", "--failed")
    assert code == 0 and "retried 1" in out, err
    await conn.execute(
        "UPDATE symbol_onboarding_queue SET run_after = now() + interval '1 hour'"
        " WHERE symbol = 'AAPL'"
    )
    code, out, err = await run_cli(env, "retry", ids["AAPL"], "--now")
    assert code == 0, err

    code, out, err = await run_cli(env, "run", "--burst")
    assert code == 0, err
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM symbol_onboarding_queue WHERE status = 'completed'"
        )
        == 2
    )

    await conn.execute(
        "UPDATE symbol_onboarding_queue SET completed_at = now() - interval '40 days'"
    )
    code, out, err = await run_cli(env, "prune")
    assert code == 0 and "pruned 2 completed" in out, err

    # The factors command on FACTOR_CONNECTIONS (2) connections through the pooler, one symbol
    # per batch: the symbol on the ETFs' dates gets its betas.
    days = business_days(200)
    pooled = [p * 1.01 for p in reference_series(days)["SPY"][2]]
    await store_prices(conn, {**reference_series(days), "POOLED": (days, pooled, pooled)})
    code, out, err = await run_cli(
        {**env, "FACTOR_CONNECTIONS": "2", "FACTOR_BATCH_SIZE": "1"}, "factors"
    )
    assert code == 0, err
    beta = await conn.fetchval(
        "SELECT market_beta FROM symbol_factor_exposures WHERE symbol = 'POOLED'"
    )
    assert float(beta) == pytest.approx(1.0, abs=1e-3)  # SPY's returns, to 4-decimal prices

    start = date(2024, 1, 2)
    await conn.copy_records_to_table(
        "market_data_cache",
        records=[("CACHED", start + timedelta(days=d), 10 + d, 1000, "polygon") for d in range(20)],
        columns=["symbol", "date", "close", "volume", "data_source"],
    )
    stored = await conn.fetchval("SELECT count(*) FROM symbol_prices_daily")
    code, out, err = await run_cli(env, "backfill", "--dry-run")
    assert code == 0, err
    assert await conn.fetchval("SELECT count(*) FROM symbol_prices_daily") == stored
    code, out, err = await run_cli(env, "backfill", "--batch-size", "5")
    assert code == 0, err
    assert (
        await conn.fetchval("SELECT count(*) FROM symbol_prices_daily WHERE symbol = 'CACHED'")
        == 20
    )


async def test_without_the_pooler_setting_commands_fail_at_once_naming_it(
    database_url, pgbouncer
) -> None:
    """Issue 11.9: PgBouncer refuses the worker's startup parameters: one line, exit 1, no
    endless retry, and it names DATABASE_STATEMENT_CACHE_SIZE."""
    env = worker_env(pgbouncer.url(database_url), PRICE_SOURCE="synthetic")
    for command in (["run"], ["health"]):
        code, _, err = await run_cli(env, *command, timeout_s=30)
        assert code == 1, err
        assert err.strip().count("\n") == 0, err
        assert "DATABASE_STATEMENT_CACHE_SIZE=0" in err, err


async def test_enqueue_helpers_through_pgbouncer(database_url, conn, pgbouncer) -> None:
    """Issue 11.10: three backends x 60 transactions through PgBouncer with the engine settings
    the README gives (worker.core.db.pooler_connect_args): every enqueue succeeds."""
    url = sqlalchemy_url(pgbouncer.url(database_url))
    engines = [
        create_async_engine(url, connect_args=pooler_connect_args(), pool_size=3) for _ in range(3)
    ]

    async def backend(number: int, engine) -> list[uuid.UUID]:
        ids = []
        for i in range(60):
            async with engine.begin() as db:
                if i % 2:
                    ids.append(await enqueue_symbol(db, f"B{number}X{i}", priority="high"))
                else:
                    ids.extend(await enqueue_symbols(db, [f"B{number}Y{i}"]))
        return ids

    try:
        results = await asyncio.gather(*(backend(n, e) for n, e in enumerate(engines)))
    finally:
        for engine in engines:
            await engine.dispose()
    ids = [job_id for result in results for job_id in result]
    assert len(set(ids)) == 180
    assert await conn.fetchval("SELECT count(*) FROM symbol_onboarding_queue") == 180


async def test_the_backend_engine_needs_the_pooler_settings(database_url, pgbouncer) -> None:
    """Why the README's settings matter: with SQLAlchemy's defaults, a prepared statement cached
    on one server connection is used on another (or two clients' names meet on one), and
    enqueues fail."""
    url = sqlalchemy_url(pgbouncer.url(database_url))
    engines = [create_async_engine(url, pool_size=3) for _ in range(3)]
    failures = 0

    async def backend(number: int, engine) -> None:
        nonlocal failures
        for i in range(30):
            try:
                async with engine.begin() as db:
                    await enqueue_symbol(db, f"D{number}X{i}")
            except Exception:
                failures += 1

    try:
        await asyncio.gather(*(backend(n, e) for n, e in enumerate(engines)))
    finally:
        for engine in engines:
            await engine.dispose()
    assert failures > 0
