"""`python -m worker show SYM|JOB_ID` and `prices SYM` for a symbol in error, as subprocesses
against real PostgreSQL: why did it fail?"""

import json

import pytest

from tests.acceptance.conftest import run_cli, worker_env

pytestmark = pytest.mark.slow

ERROR = "yahoo: HTTP 404 Not Found: no data for ZZZZ <b>delisted?</b>"


async def failed_symbol(conn) -> str:
    await conn.execute("INSERT INTO symbol_universe (symbol, status) VALUES ('ZZZZ', 'error')")
    job_id: str = await conn.fetchval(
        "INSERT INTO symbol_onboarding_queue (symbol, status, attempts, completed_at,"
        " error_message) VALUES ('ZZZZ', 'failed', 5, now(), $1) RETURNING id::text",
        ERROR,
    )
    return job_id


async def test_show_and_prices_say_why_a_symbol_failed(database_url, conn) -> None:
    job_id = await failed_symbol(conn)
    env = worker_env(database_url)

    code, out, err = await run_cli(env, "show", "zzzz")
    assert code == 0, err
    assert out.startswith("ZZZZ: error, 0 daily bars stored")
    assert "BEHIND" in out and "in error: its last onboarding failed" in out
    assert "betas: none: symbol is error" in out
    assert f"  {job_id}  onboarding failed (normal, attempts 5)" in out and ERROR in out

    code, out, err = await run_cli(env, "show", job_id)
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"job {job_id}: onboarding failed")
    assert ERROR in out.splitlines()[0]

    code, out, err = await run_cli(env, "show", "ZZZZ", "--json")
    assert code == 0, err
    facts = json.loads(out)
    assert facts["universe"]["status"] == "error" and facts["freshness"]["behind"] is True
    assert facts["jobs"][0]["job_id"] == job_id and facts["jobs"][0]["error"] == ERROR
    assert facts["betas"]["values"] == [] and "closes" not in facts

    code, out, err = await run_cli(env, "prices", "ZZZZ")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "ZZZZ: error, 0 daily bars stored"
    assert lines[1].startswith(f"in error: its onboarding job {job_id} failed")
    assert "after 5 attempt(s): " + ERROR in lines[1]


async def test_show_refuses_unknown_symbols_and_jobs(database_url) -> None:
    env = worker_env(database_url)
    code, _out, err = await run_cli(env, "show", "NOPE")
    assert code == 1 and "NOPE is not in symbol_universe and has no job" in err
    code, _out, err = await run_cli(env, "show", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "no job 00000000-0000-0000-0000-000000000000" in err
    code, _out, err = await run_cli(env, "show", "<b>")
    assert code == 1 and "error:" in err
