"""Factor betas through the CLI as a subprocess: a new symbol on an empty database ends with
betas and nobody re-enqueues it; `python -m worker factors` recomputes, reports and refuses."""

import json

import asyncpg
import numpy as np
import pytest

from tests.acceptance.conftest import run_cli, start_worker, worker_env
from tests.factordata import business_days, closes, reference_series, store_prices
from worker.core.db import asyncpg_dsn
from worker.factors.betas import FACTORS, REFERENCE_ETFS
from worker.ops import migrate

pytestmark = pytest.mark.slow


async def test_a_new_symbol_ends_with_betas_with_no_manual_step(
    database_url: str, conn: asyncpg.Connection
) -> None:
    env = worker_env(database_url, PRICE_SOURCE="synthetic", FACTORS_ENABLED="true")
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('newco')")
    worker = await start_worker(env, "--burst")
    try:
        assert await worker.finish(timeout_s=120) == 0
    finally:
        await worker.kill()
    jobs = await conn.fetch("SELECT symbol, status, priority FROM symbol_onboarding_queue")
    assert {r["symbol"]: (r["status"], r["priority"]) for r in jobs} == {
        "NEWCO": ("completed", "normal"),
        **{etf: ("completed", "high") for etf in REFERENCE_ETFS},
    }
    newco = await conn.fetchrow("SELECT * FROM symbol_universe WHERE symbol = 'NEWCO'")
    assert newco["status"] == "active" and newco["last_factor_date"] is not None
    betas = await conn.fetchrow("SELECT * FROM symbol_factor_exposures WHERE symbol = 'NEWCO'")
    assert betas["calculation_date"] == newco["last_factor_date"]
    assert betas["market_beta"] is not None and betas["quality_spread"] is not None
    assert await conn.fetchval("SELECT count(*) FROM symbol_factor_waits") == 0
    events = [e["event"] for e in worker.events if e.get("symbol") == "NEWCO"]
    assert "factors_waiting" in events and "factors_computed" not in events
    assert any(e["event"] == "factors_waiters_resolved" for e in worker.events)


async def seed(conn: asyncpg.Connection) -> list:
    days = business_days(260)
    rng = np.random.default_rng(5)
    prices = closes(rng.normal(0.0003, 0.012, (2, len(days))), 40.0)
    await store_prices(
        conn,
        {
            **reference_series(days),
            "AAA": (days, prices[0].tolist(), prices[0].tolist()),
            "SHORT": (days[-20:], prices[1][-20:].tolist(), None),
        },
    )
    await store_prices(conn, {"GONE": (days[:5], [1.0] * 5, None)}, status="delisted")
    return days


async def test_factors_command_recomputes_and_reports(
    database_url: str, conn: asyncpg.Connection
) -> None:
    days = await seed(conn)
    env = worker_env(database_url)

    code, _, err = await run_cli(env, "factors", "--dry-run")
    assert code == 0, err
    (summary,) = [json.loads(line) for line in err.splitlines() if "factors_finished" in line]
    assert summary["symbols"] == 10 and summary["computed"] == 9 and summary["dry_run"]
    assert summary["skipped"] == {"too_few_returns": 1}
    assert summary["rows_written"] == 9
    assert await conn.fetchval("SELECT count(*) FROM symbol_factor_exposures") == 0

    code, _, err = await run_cli(env, "factors")
    assert code == 0, err
    (summary,) = [json.loads(line) for line in err.splitlines() if "factors_finished" in line]
    assert summary["complete"] == 9 and summary["table_shape"] == "wide"
    assert summary["last_calculation_date"] == days[-1].isoformat()
    assert await conn.fetchval("SELECT count(*) FROM symbol_factor_exposures") == 9

    code, _, err = await run_cli(env, "factors", "--symbols", "aaa", "--as-of", str(days[200]))
    assert code == 0, err
    assert (
        await conn.fetchval("SELECT count(*) FROM symbol_factor_exposures WHERE symbol = 'AAA'")
        == 2
    )

    code, _, err = await run_cli(env, "factors", "--symbols", "AAA,GONE,NOPE")
    assert code == 1
    (refused,) = [json.loads(line) for line in err.splitlines() if "not_active" in line]
    assert refused["symbols"] == {"GONE": "delisted", "NOPE": "unknown"}

    code, _, err = await run_cli(env, "factors", "--as-of", "yesterday")
    assert code == 2 and "invalid date 'yesterday'" in err


async def test_a_failing_batch_stops_the_command_in_one_line_and_a_rerun_finishes(
    database_url: str, conn: asyncpg.Connection
) -> None:
    """One symbol per batch on two connections; the database refuses AAA's row: exit 1 with
    that error in one line (not the lanes' exception group), AAA's batch rolled back whole, and
    a rerun without the fault writes the rest."""
    await seed(conn)
    await conn.execute(
        """CREATE FUNCTION refuse_aaa() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'AAA refused by the test'; END $$;
           CREATE TRIGGER refuse_aaa BEFORE INSERT ON symbol_factor_exposures
           FOR EACH ROW WHEN (NEW.symbol = 'AAA') EXECUTE FUNCTION refuse_aaa();"""
    )
    env = worker_env(database_url, FACTOR_BATCH_SIZE="1", FACTOR_CONNECTIONS="2")
    code, _, err = await run_cli(env, "factors")
    assert code == 1, err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "AAA refused by the test" in errors[0], err
    assert (
        await conn.fetchval("SELECT last_factor_date FROM symbol_universe WHERE symbol = 'AAA'")
        is None
    )
    await conn.execute("DROP TRIGGER refuse_aaa ON symbol_factor_exposures")
    code, _, err = await run_cli(env, "factors")
    assert code == 0, err
    assert await conn.fetchval("SELECT count(*) FROM symbol_factor_exposures") == 9


async def test_an_unwritable_table_is_refused_in_one_line(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await conn.execute("ALTER TABLE symbol_factor_exposures DROP COLUMN momentum_spread")
    env = worker_env(database_url, FACTORS_ENABLED="true")
    for command in (["factors"], ["run", "--burst"]):
        code, _, err = await run_cli(env, *command)
        assert code == 1, command
        assert err.strip().count("\n") == 0 and "no column momentum_spread" in err, err
    code, _, err = await run_cli({**env, "FACTORS_ENABLED": "false"}, "run", "--burst")
    assert code == 0, err


async def test_a_host_database_gets_one_long_row_per_factor(host_database_url: str) -> None:
    """The host's long symbol_factor_exposures, after `migrate`: a new symbol's twelve betas
    arrive as rows found by factor name; the host's own rows are left alone."""
    url = host_database_url
    await migrate.upgrade(url)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('NEWCO')")
        env = worker_env(url, PRICE_SOURCE="synthetic", FACTORS_ENABLED="true")
        code, _, err = await run_cli(env, "run", "--burst", timeout_s=120)
        assert code == 0, err
        rows = await conn.fetch(
            """SELECT f.name, e.calculation_method, e.regression_window_days, e.observations,
                      e.regularization_alpha, e.calculation_date
               FROM symbol_factor_exposures e JOIN factor_definitions f ON f.id = e.factor_id
               WHERE e.symbol = 'NEWCO'"""
        )
        by_name = {r["name"]: r for r in rows}
        assert set(by_name) == {f.name for f in FACTORS}
        for factor in FACTORS:
            row = by_name[factor.name]
            assert row["calculation_method"] == factor.method
            assert row["regression_window_days"] == row["observations"] == factor.window
            assert (row["regularization_alpha"] is None) == (factor.alpha is None)
        newco = await conn.fetchrow("SELECT * FROM symbol_universe WHERE symbol = 'NEWCO'")
        assert newco["last_factor_date"] == rows[0]["calculation_date"]
        assert newco["is_active"] and newco["status"] == "active"
        host_row = await conn.fetchval(
            "SELECT beta_value FROM symbol_factor_exposures WHERE symbol = 'AAPL'"
        )
        assert str(host_row) == "1.100000"
    finally:
        await conn.close()
