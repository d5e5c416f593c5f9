"""The per-symbol page (`GET /symbols/SYM`) and its facts (worker/symbol_facts.py) against real
PostgreSQL: a symbol in each state (active with betas, waiting for reference ETFs, too little
history, in error, unknown), both table shapes of the betas, and the status page's links and
universe error count."""

from datetime import date, timedelta

import asyncpg
import pytest

from tests.integration.test_web import FakeWorker, serve
from worker.core.settings import Settings
from worker.ops import status, symbol_facts

SCRIPT_ERROR = "HTTP 404 from provider: <script>alert('x')</script> not found"


@pytest.fixture
async def web(database_url: str):
    async for server, client in serve(database_url):
        server.worker = FakeWorker()
        yield server, client


async def add_symbol(
    conn: asyncpg.Connection, symbol: str, status_: str, bars: int, last: date | None = None
) -> None:
    last = last or date(2024, 6, 28)
    days = [last - timedelta(days=i) for i in range(bars)][::-1]
    await conn.execute(
        "INSERT INTO symbol_universe (symbol, status, sector, last_price_date)"
        " VALUES ($1, $2, 'Tech', $3)",
        symbol,
        status_,
        days[-1] if days else None,
    )
    await conn.executemany(
        "INSERT INTO symbol_prices_daily (symbol, price_date, close_price, adj_close_price,"
        " volume) VALUES ($1, $2, $3, $3, 1000)",
        [(symbol, d, 100 + i) for i, d in enumerate(days)],
    )


async def add_job(
    conn: asyncpg.Connection, symbol: str, status_: str, error: str | None = None
) -> str:
    job_id: str = await conn.fetchval(
        "INSERT INTO symbol_onboarding_queue (symbol, status, attempts, error_message,"
        " completed_at) VALUES ($1, $2, 3, $3, CASE WHEN $2::varchar IN ('completed', 'failed')"
        " THEN now() END) RETURNING id::text",
        symbol,
        status_,
        error,
    )
    return job_id


async def test_an_active_symbol_with_betas(web, conn) -> None:
    _server, client = web
    await add_symbol(conn, "AAPL", "active", 60)
    await conn.execute(
        "UPDATE symbol_universe SET last_factor_date = '2024-06-28' WHERE symbol = 'AAPL'"
    )
    await conn.execute(
        "INSERT INTO symbol_factor_exposures (symbol, calculation_date, market_beta, ir_beta)"
        " VALUES ('AAPL', '2024-06-27', 0.9, 0.1), ('AAPL', '2024-06-28', 1.1234, -0.25)"
    )
    job = await add_job(conn, "AAPL", "completed")

    facts = await symbol_facts.gather(conn, Settings(), "AAPL")
    assert facts is not None and facts.universe is not None
    assert facts.universe.bars == 60 and len(facts.closes) == 60 and len(facts.newest_bars) == 10
    assert facts.newest_bars[0].price_date == date(2024, 6, 28)  # newest first
    assert facts.betas.shape == "wide" and facts.betas.calculation_date == date(2024, 6, 28)
    values = {b.column: b.value for b in facts.betas.values}
    assert len(values) == 12 and values["market_beta"] == pytest.approx(1.1234)
    assert values["value_beta"] is None and facts.betas.absent is None
    assert facts.freshness.behind  # a 2024 price is behind today's last completed session

    reply = await client.get("/symbols/AAPL")
    assert reply.status_code == 200
    page = reply.text
    assert "<h1>AAPL: active</h1>" in page and "Tech" in page
    assert "Market Beta (90D)" in page and "1.1234" in page and "not computed" in page
    assert "calculated for 2024-06-28 (wide table)" in page
    assert "<polyline" in page and "60 closes from 2024-04-30 to 2024-06-28" in page
    assert f'id="job-{job}"' in page and "Behind" in page
    for forbidden in ("<script", "https://", "<link", 'method="post"'):
        assert forbidden not in page


async def test_a_symbol_waiting_for_reference_etfs_and_one_with_too_little_history(
    web, conn
) -> None:
    _server, client = web
    await add_symbol(conn, "WAIT", "active", 60)
    await conn.execute(
        "INSERT INTO symbol_factor_waits (symbol, waiting_for) VALUES ('WAIT', '{SPY,TLT}')"
    )
    await add_symbol(conn, "NEW", "active", 5)
    await add_symbol(conn, "OLD", "active", 60)

    page = (await client.get("/symbols/WAIT")).text
    assert "No betas: waiting for reference ETF prices: SPY, TLT" in page
    facts = await symbol_facts.gather(conn, Settings(), "NEW")
    assert facts is not None
    assert facts.betas.absent == (
        "too little history: 5 stored price(s), the betas need at least"
        f" {symbol_facts.MIN_PRICES_FOR_BETAS}"
    )
    never = await symbol_facts.gather(conn, Settings(), "OLD")
    assert never is not None and never.betas.absent is not None
    assert never.betas.absent.startswith("never computed: `python -m worker factors --symbols OLD`")
    off = await symbol_facts.gather(conn, Settings(), "OLD", factors_unavailable="FACTORS_ENABLED")
    assert off is not None and off.betas.absent == (
        "factors unavailable: FACTORS_ENABLED (prices still flow)"
    )


async def test_a_symbol_in_error_shows_its_failed_job_as_text(web, conn) -> None:
    _server, client = web
    await conn.execute("INSERT INTO symbol_universe (symbol, status) VALUES ('BAD', 'error')")
    failed = await add_job(conn, "BAD", "failed", SCRIPT_ERROR)

    page = (await client.get("/symbols/BAD")).text
    assert "<h1>BAD: error</h1>" in page and "in error: its last onboarding failed" in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "<script" not in page and f'id="job-{failed}"' in page
    assert "No betas: symbol is error" in page

    # The status page counts it in the universe and links the failure to the symbol's page.
    status_page = (await client.get("/")).text
    assert '<a href="/symbols/BAD">BAD</a>' in status_page
    assert f'href="/symbols/BAD#job-{failed}"' in status_page
    assert "<script" not in status_page and 'method="get" action="/symbols"' in status_page
    report = await status.gather(conn, Settings())
    assert report.refresh.error == 1
    assert ", 1 in error (`python -m worker show SYMBOL` says why)" in status.format_text(report)


async def test_unknown_and_misspelt_symbols_and_the_search_form(web, conn) -> None:
    _server, client = web
    reply = await client.get("/symbols/NOPE")
    assert reply.status_code == 404
    assert "NOPE is not in symbol_universe and has no job" in reply.text
    assert "python -m worker enqueue NOPE" in reply.text
    bad = await client.get("/symbols/%3Cb%3E")
    assert bad.status_code == 400 and "&lt;b&gt;" in bad.text and "<b>" not in bad.text
    found = await client.get("/symbols", params={"symbol": " aapl "}, follow_redirects=False)
    assert found.status_code == 302 and found.headers["location"] == "/symbols/AAPL"
    lower = await client.get("/symbols/aapl", follow_redirects=False)
    assert lower.status_code == 302 and lower.headers["location"] == "/symbols/AAPL"
    assert (await client.get("/symbols", follow_redirects=False)).headers["location"] == "/"
    # A symbol with jobs but no universe row (the host deleted it) still has a page.
    await add_job(conn, "GONE", "failed", "boom")
    await conn.execute("DELETE FROM symbol_universe WHERE symbol = 'GONE'")
    page = await client.get("/symbols/GONE")
    assert (
        page.status_code == 200 and "not in symbol_universe: only its jobs are known" in page.text
    )


async def test_betas_from_the_hosts_long_table(host_conn) -> None:
    conn = host_conn
    await add_symbol(conn, "LNG", "active", 40)
    ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT name, id FROM factor_definitions")}
    await conn.execute(
        "INSERT INTO symbol_factor_exposures (symbol, factor_id, calculation_date, beta_value,"
        " r_squared, observations, quality_flag, calculation_method) VALUES"
        " ('LNG', $1, '2024-06-28', 0.75, 0.5, 39, NULL, 'ols_market'),"
        " ('LNG', $2, '2024-06-28', 5, 0.1, 39, 'capped', 'ols_ir'),"
        " ('LNG', $1, '2024-06-01', 0.2, 0.5, 30, NULL, 'ols_market')",
        ids["Market Beta (90D)"],
        ids["IR Beta"],
    )
    facts = await symbol_facts.gather(conn, Settings(), "LNG")
    assert facts is not None
    b = facts.betas
    assert b.shape == "long" and b.calculation_date == date(2024, 6, 28)
    by_name = {x.factor: x for x in b.values}
    assert len(by_name) == 12 and by_name["Market Beta (90D)"].value == pytest.approx(0.75)
    assert by_name["IR Beta"].quality_flag == "capped" and by_name["IR Beta"].observations == 39
    assert by_name["Value"].value is None
    text = symbol_facts.format_text(facts)
    assert "betas of 2024-06-28 (long table):" in text and "r2 0.500, 39 obs" in text
