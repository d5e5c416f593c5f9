"""The status fact layer against real PostgreSQL: every fact, and its text and JSON views."""

import asyncio
import json
import uuid
from datetime import date

import asyncpg

from tests.helpers import wait_until
from tests.integration.test_runner import runner_for
from worker.core.settings import Settings
from worker.ops import status
from worker.queue import registry
from worker.queue.housekeeping import Housekeeper
from worker.queue.store import Queue, run_now

SETTINGS = Settings(stall_timeout_s=30.0, heartbeat_interval_s=5.0)


async def seed(conn: asyncpg.Connection) -> dict[str, uuid.UUID]:
    """One job of each kind an operator must see, and two workers (one dead)."""
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue (symbol, priority, created_at) VALUES
            ('OLD', 'low', now() - interval '10 minutes'),
            ('NEW', 'high', now() - interval '1 minute');
        INSERT INTO symbol_onboarding_queue
            (symbol, status, attempts, run_after, error_message) VALUES
            ('WAIT', 'pending', 2, now() + interval '5 minutes', 'yahoo: timed out (2 attempts)');
        INSERT INTO symbol_onboarding_queue
            (symbol, status, attempts, locked_by, started_at, heartbeat_at) VALUES
            ('LIVE', 'processing', 1, 'w-live', now() - interval '20 s', now() - interval '1 s'),
            ('STALL', 'processing', 1, 'w-dead', now() - interval '200 s',
             now() - interval '155 s');
        INSERT INTO symbol_onboarding_queue (symbol, status, completed_at) VALUES
            ('DONE1', 'completed', now() - interval '3 minutes'),
            ('DONE2', 'completed', now() - interval '30 s');
        INSERT INTO symbol_onboarding_queue (symbol, status, attempts, completed_at, error_message)
            VALUES ('BAD', 'failed', 5, now() - interval '2 minutes', 'unknown symbol');
        INSERT INTO price_source_state (source, paused_until, pause_reason, consecutive_failures)
            VALUES ('yahoo', now() + interval '100 s', 'HTTP 429: rate limited', 0),
                   ('polygon', now() + interval '60 s', '5 consecutive transient failures', 5),
                   ('tiingo', NULL, NULL, 5),
                   ('fmp', now() - interval '1 minute', 'old pause', 2);
        INSERT INTO symbol_universe (symbol, status, last_price_date, last_factor_date) VALUES
            ('BETA1', 'active', '2025-01-02', '2024-12-31'),
            ('BETA2', 'active', '2025-01-02', '2025-01-02'),
            ('NOBETA', 'active', '2025-01-02', NULL);
        INSERT INTO symbol_factor_waits (symbol, waiting_for) VALUES ('NOBETA', '{SPY,TLT}');
        """
    )
    await registry.announce(
        conn,
        registry.WorkerInfo("w-live", 4, "hostA", 101, "1.2.3", "http://127.0.0.1:9000/"),
        in_flight=1,
        tick_age_s=0.5,
        stopping=False,
    )
    await registry.announce(
        conn,
        registry.WorkerInfo("w-dead", 2, "hostB", 202, "1.2.3"),
        in_flight=1,
        tick_age_s=0,
        stopping=False,
    )
    await conn.execute(
        "UPDATE symbol_onboarding_workers SET heartbeat_at = now() - interval '155 s'"
        " WHERE worker_id = 'w-dead'"
    )
    rows = await conn.fetch("SELECT symbol, id FROM symbol_onboarding_queue")
    return {r["symbol"]: r["id"] for r in rows}


async def test_gather_tells_the_whole_truth(conn) -> None:
    ids = await seed(conn)
    report = await status.gather(conn, SETTINGS)

    assert report.counts == {
        "pending": {"high": 1, "normal": 1, "low": 1},
        "processing": {"high": 0, "normal": 2, "low": 0},
        "completed": {"high": 0, "normal": 2, "low": 0},
        "failed": {"high": 0, "normal": 1, "low": 0},
        "cancelled": {"high": 0, "normal": 0, "low": 0},
    }
    assert report.oldest_pending is not None
    assert report.oldest_pending.symbol == "OLD" and 590 < report.oldest_pending.wait_s < 700

    running = {r.symbol: r for r in report.running}
    assert not running["LIVE"].stalled and running["LIVE"].owner == "w-live"
    assert running["STALL"].stalled and 150 < running["STALL"].heartbeat_age_s < 200

    assert report.backoff_total == 1
    (waiting,) = report.backoff
    assert waiting.symbol == "WAIT" and waiting.last_error == "yahoo: timed out (2 attempts)"
    assert 250 < waiting.next_run_in_s <= 300 and waiting.attempts == 2

    paused = {p.source: p for p in report.paused_sources}
    assert set(paused) == {"yahoo", "polygon"}  # fmp's pause has ended
    assert paused["yahoo"].reason == "HTTP 429: rate limited"
    assert 90 < paused["yahoo"].remaining_s <= 100

    breakers = {b.source: b.state for b in report.circuit_breakers}
    assert breakers == {
        "fmp": "closed",
        "polygon": "open",
        "tiingo": "half-open",
        "yahoo": "closed",
    }

    workers = {w.worker_id: w for w in report.workers}
    assert workers["w-live"].alive and not workers["w-dead"].alive
    live = workers["w-live"]
    assert (live.host, live.pid, live.version, live.concurrency, live.jobs_in_flight) == (
        "hostA",
        101,
        "1.2.3",
        4,
        1,
    )
    assert live.http_url == "http://127.0.0.1:9000/" and 0 <= live.last_tick_age_s < 5

    assert report.last_completed is not None and report.last_completed.symbol == "DONE2"
    assert [f.symbol for f in report.recent_failures] == ["BAD"]
    assert report.recent_failures[0].error == "unknown symbol"
    assert str(ids["BAD"]) == report.recent_failures[0].job_id

    assert report.factors == status.FactorFacts(
        with_betas=2,
        oldest_last_factor_date=date(2024, 12, 31),
        without_betas=1,
        waiting_for_references=1,
    )


async def test_an_empty_queue_still_shows_every_group(conn) -> None:
    report = await status.gather(conn, SETTINGS)
    d = status.report_dict(report)
    assert d["counts"]["failed"] == {"high": 0, "normal": 0, "low": 0}
    for key in ("running", "backoff", "paused_sources", "circuit_breakers", "workers"):
        assert d[key] == []
    assert d["oldest_pending"] is None and d["last_completed"] is None
    text = status.format_text(report)
    for line in (
        "oldest pending: none",
        "running: 0",
        "in backoff: 0",
        "paused sources: 0",
        "circuit breakers: 0",
        "workers: 0 alive, 0 dead",
        "last completed: none",
        "recent failures: 0",
    ):
        assert line in text


async def test_text_and_json_carry_the_same_facts(conn) -> None:
    await seed(conn)
    report = await status.gather(conn, SETTINGS)
    d = status.report_dict(report)
    json.dumps(d)  # serialisable as is
    text = status.format_text(report)

    def leaves(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from leaves(v)
        elif isinstance(value, list):
            for v in value:
                yield from leaves(v)
        else:
            yield value

    # Every value of the JSON view appears in the text view (booleans as words, checked below).
    missing = [
        v for v in leaves(d) if not isinstance(v, bool) and v is not None and str(v) not in text
    ]
    assert missing == []
    assert "STALLED" in text and "DEAD" in text and "alive" in text
    assert "HTTP 429: rate limited" in text and "half-open" in text


async def test_history_counts_finished_jobs_per_minute(conn) -> None:
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue (symbol, status, completed_at) VALUES
            ('A', 'completed', now() - interval '10 s'),
            ('B', 'completed', now() - interval '20 s'),
            ('C', 'failed', now() - interval '150 s'),
            ('D', 'completed', now() - interval '2 hours');
        """
    )
    history = await status.gather_history(conn)
    assert len(history) == 60 and history[-1].minutes_ago == 0 and history[0].minutes_ago == 59
    assert (history[-1].completed, history[-1].failed) == (2, 0)
    assert (history[-3].completed, history[-3].failed) == (0, 1)
    assert sum(m.completed + m.failed for m in history) == 3


async def test_run_now_makes_a_job_in_backoff_runnable(conn) -> None:
    await conn.execute(
        "INSERT INTO symbol_onboarding_queue (symbol, run_after) VALUES"
        " ('WAIT', now() + interval '1 hour'), ('READY', now())"
    )
    ids = {
        r["symbol"]: r["id"]
        for r in await conn.fetch("SELECT symbol, id FROM symbol_onboarding_queue")
    }
    await conn.execute("LISTEN symbol_onboarding")
    woken = asyncio.Event()
    await conn.add_listener("symbol_onboarding", lambda *_: woken.set())
    assert await run_now(conn, ids["WAIT"])
    await asyncio.wait_for(woken.wait(), 5)  # idle workers hear of it
    assert not await run_now(conn, ids["WAIT"])  # now runnable: nothing to do
    assert not await run_now(conn, ids["READY"])
    assert await Queue("w").claim(conn, 5) != []
    assert (await status.gather(conn, SETTINGS)).backoff_total == 0


async def test_runner_registers_heartbeats_and_leaves(database_pool, database_url, conn) -> None:
    runner, _ = runner_for(database_pool, database_url)
    task = asyncio.create_task(runner.run())

    async def listed() -> bool:
        report = await status.gather(conn, runner.settings)
        return [w.worker_id for w in report.workers] == [runner.queue.worker_id]

    await wait_until(listed)
    first = await conn.fetchval("SELECT heartbeat_at FROM symbol_onboarding_workers")

    async def heartbeat_moved() -> bool:
        return await conn.fetchval("SELECT heartbeat_at FROM symbol_onboarding_workers") > first

    await wait_until(heartbeat_moved)
    (worker,) = (await status.gather(conn, runner.settings)).workers
    assert worker.alive and worker.concurrency == 2 and worker.version == registry.package_version()
    assert runner.liveness() is None
    runner.request_stop()
    await asyncio.wait_for(task, 10)
    assert await conn.fetchval("SELECT count(*) FROM symbol_onboarding_workers") == 0


async def test_liveness_fails_when_the_claim_loop_stops_going_round(
    database_pool, database_url
) -> None:
    runner, _ = runner_for(database_pool, database_url, command_timeout_s=1.0)
    assert runner.liveness() is None
    runner._last_tick -= 60  # as if the claim loop had hung for a minute
    reason = runner.liveness()
    assert reason is not None and "claim loop last went round 60 s ago" in reason
    runner.request_stop()  # a worker draining its jobs is alive
    assert runner.liveness() is None


async def test_housekeeping_forgets_long_dead_workers(database_pool, conn) -> None:
    for worker_id, silent_s in (("recent-death", 120), ("long-dead", 7200), ("alive", 0)):
        await registry.announce(
            conn,
            registry.WorkerInfo(worker_id, 1, "h", 1, "v"),
            in_flight=0,
            tick_age_s=0,
            stopping=False,
        )
        await conn.execute(
            "UPDATE symbol_onboarding_workers SET heartbeat_at = now() - make_interval(secs => $2)"
            " WHERE worker_id = $1",
            worker_id,
            float(silent_s),
        )
    settings = Settings(dead_worker_retention_s=600.0)
    result = await Housekeeper(settings, database_pool, Queue("keeper")).prune()
    assert result is not None and result.extra["dead_workers"] == 1
    left = await conn.fetch("SELECT worker_id FROM symbol_onboarding_workers ORDER BY 1")
    assert [r["worker_id"] for r in left] == ["alive", "recent-death"]
