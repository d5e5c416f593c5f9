"""URLs that name several hosts (a primary and its replicas), in both libpq spellings, for every
command and the Python helpers, against a real server (issue 22.1). The failover drill itself,
with a real streaming replica promoted under a running worker, is tests/acceptance/test_failover.py.
"""

from urllib.parse import quote

import asyncpg
import pytest

from tests.acceptance.conftest import run_cli, worker_env
from tests.harness import unused_port
from worker import enqueue_symbol
from worker.core.db import asyncpg_dsn, create_engine, parse_hosts
from worker.host.backfill import backfill
from worker.ops import migrate

SPELLINGS = ("netloc", "query")


def several_hosts(url: str, spelling: str, tail: str = "") -> str:
    """`url`'s server second, after a host that refuses connections, in one of the spellings:
    `h1:p1,h2:p2` after the @, or `?host=h1,h2&port=p1,p2`. `tail` adds query parameters."""
    parsed = parse_hosts(url)
    [(host, port)] = parsed.hosts
    dead = ("127.0.0.1", unused_port())
    if host.startswith("/"):  # a unix socket (the embedded server): a directory with none
        dead = ("/nonexistent-socket-dir", port)
    extra = "".join(f"&{k}={quote(v, safe='')}" for k, v in parsed.query) + tail
    if spelling == "netloc":
        hosts = ",".join(f"{quote(h, safe='')}:{p}" for h, p in (dead, (host, port)))
        return f"postgresql://{parsed.auth}{hosts}{parsed.path}?{extra.lstrip('&')}"
    return (
        f"postgresql://{parsed.auth}{parsed.path}?host={dead[0]},{host}&port={dead[1]},{port}"
        + extra
    )


CACHE_ROWS = """
    INSERT INTO market_data_cache (symbol, date, open, high, low, close, volume, data_source)
    VALUES ('IBM', '2024-01-02', 160, 162, 159, 161.5, 100, 'yahoo'),
           ('IBM', '2024-01-03', 161, 163, 160, 162.5, 110, 'yahoo')
"""


async def prices_of(conn: asyncpg.Connection, symbol: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM symbol_prices_daily WHERE symbol = $1", symbol
    )
    return count


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_every_command_takes_a_url_with_several_hosts(
    empty_database_url: str, spelling: str
) -> None:
    url = several_hosts(empty_database_url, spelling, "&target_session_attrs=read-write")
    env = worker_env(url)
    outputs = {}
    for command in ("migrate", "health", "enqueue aapl msft", "status"):
        code, outputs[command], err = await run_cli(env, *command.split())
        assert code == 0, (command, err)
    assert outputs["migrate"].startswith("ok: database ")
    assert sorted(line.split("\t")[1] for line in outputs["enqueue aapl msft"].splitlines()) == [
        "AAPL",
        "MSFT",
    ]

    conn = await asyncpg.connect(asyncpg_dsn(empty_database_url))
    try:
        assert await conn.fetchval(
            "SELECT array_agg(symbol ORDER BY symbol) FROM symbol_onboarding_queue"
        ) == ["AAPL", "MSFT"]
        await conn.execute(CACHE_ROWS)
        code, _, err = await run_cli(env, "backfill", "--symbols", "IBM")
        assert code == 0, err
        assert await prices_of(conn, "IBM") == 2
        code, _, err = await run_cli(env, "migrate", "--downgrade", "base")
        assert code == 0, err
        assert await conn.fetchval("SELECT to_regclass('symbol_onboarding_queue')") is None
    finally:
        await conn.close()


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_the_python_helpers_take_a_url_with_several_hosts(
    empty_database_url: str, spelling: str
) -> None:
    url = several_hosts(empty_database_url, spelling, "&target_session_attrs=read-write")
    await migrate.upgrade(url)
    assert await migrate.current_revision(url) == migrate.head_revision()

    engine = create_engine(url)  # what a host application builds its enqueue session on
    try:
        async with engine.begin() as db:
            job_id = await enqueue_symbol(db, "brk.b")
    finally:
        await engine.dispose()

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        assert (
            await conn.fetchval("SELECT symbol FROM symbol_onboarding_queue WHERE id = $1", job_id)
            == "BRK.B"
        )
        await conn.execute(CACHE_ROWS)
        summary = await backfill(url, symbols=["IBM"])
        assert summary.rows_inserted == 2
        assert await prices_of(conn, "IBM") == 2
    finally:
        await conn.close()
    await migrate.downgrade(url)
    assert await migrate.current_revision(url) is None
