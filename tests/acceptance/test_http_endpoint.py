"""The worker's HTTP endpoint, with the worker as a subprocess against real PostgreSQL: probes
through start-up, a database restart and shutdown; /metrics after N jobs; the status page, in a
real headless Chromium too."""

import asyncio
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.conftest import WorkerProcess, serve_slowly, start_worker, worker_env
from tests.fakeprovider import recorded
from worker.core import embedded
from worker.core.db import asyncpg_dsn
from worker.ops import migrate

pytestmark = pytest.mark.slow

STALLED_AND_PAUSED = """
INSERT INTO symbol_onboarding_queue
    (symbol, status, attempts, locked_by, started_at, heartbeat_at) VALUES
    ('STALL', 'processing', 1, 'gone:1:abc', now() - interval '3 minutes', now() - interval '155 s');
INSERT INTO price_source_state (source, paused_until, pause_reason)
    VALUES ('polygon', now() + interval '10 minutes', 'HTTP 429 Too Many Requests');
"""


FAILED_WITH_MARKUP = """
INSERT INTO symbol_universe (symbol, status) VALUES ('EVIL', 'error');
INSERT INTO symbol_onboarding_queue (symbol, status, attempts, completed_at, error_message)
    VALUES ('EVIL', 'failed', 3, now(),
            'HTTP 404: <script>document.title = "pwned"</script><b id="bold">not found</b>');
"""


async def endpoint_url(worker: WorkerProcess) -> str:
    return (await worker.wait_for("http_listening"))["url"]


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url)


async def wait_for_answer(url: str, code: int, timeout_s: float = 30) -> httpx.Response:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        reply = await get(url)
        if reply.status_code == code:
            return reply
        assert asyncio.get_running_loop().time() < deadline, (url, reply.status_code, reply.text)
        await asyncio.sleep(0.1)


def metric_samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples, name: str, **labels: str) -> float:
    return sum(
        value
        for got, value in samples.get(name, [])
        if all(got.get(k) == v for k, v in labels.items())
    )


async def test_probes_through_startup_a_database_restart_and_shutdown(provider) -> None:
    """A throwaway embedded server of our own: the worker starts while it is down, rides out a
    restart, and shuts down with a job in flight."""
    pgdata = Path(tempfile.mkdtemp(prefix="sow-probes-", dir="/tmp"))
    server = embedded.start(pgdata, delete_on_stop=True)
    worker = None
    try:
        url = server.url("postgres")
        await migrate.upgrade(url)
        await asyncio.to_thread(server.server._stop)  # down before the worker starts
        serve_slowly(provider, "SLOW", delay_s=3)
        env = worker_env(
            url,
            provider.url,
            WORKER_HTTP_PORT="0",
            WORKER_RECONNECT_MAX_WAIT_S="0.5",
            PRICE_HTTP_TIMEOUT_S="10",
        )
        worker = await start_worker(env)
        base = await endpoint_url(worker)

        starting = await get(base + "readyz")
        assert starting.status_code == 503 and starting.text.startswith("starting")
        assert (await get(base + "healthz")).status_code == 200  # alive: connecting

        await asyncio.to_thread(server.server.ensure_postgres_running)
        assert (await wait_for_answer(base + "readyz", 200)).text.strip() == "ready"
        assert (await get(base + "healthz")).status_code == 200

        await asyncio.to_thread(server.server._stop)  # a database restart, part one
        down = await wait_for_answer(base + "readyz", 503)
        assert down.text.startswith("database unreachable") and "\n" == down.text[-1]
        assert down.text.count("\n") == 1  # one line
        assert (await get(base + "healthz")).status_code == 200  # the loops ride it out
        await asyncio.to_thread(server.server.ensure_postgres_running)
        await wait_for_answer(base + "readyz", 200)

        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('SLOW')")
        finally:
            await conn.close()
        await wait_until_processing(url, "SLOW")
        worker.proc.send_signal(signal.SIGTERM)
        stopping = await wait_for_answer(base + "readyz", 503, timeout_s=5)
        assert stopping.text.strip() == "shutting down"
        assert (await get(base + "healthz")).status_code == 200  # draining is alive
        assert await worker.finish() == 0
        with pytest.raises(httpx.ConnectError):
            await get(base + "healthz")
    finally:
        if worker is not None:
            await worker.kill()
        server.stop()


async def wait_until_processing(url: str, symbol: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for _ in range(300):
            if (
                await conn.fetchval(
                    "SELECT status FROM symbol_onboarding_queue WHERE symbol = $1", symbol
                )
                == "processing"
            ):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{symbol} never started")
    finally:
        await conn.close()


async def test_metrics_after_n_jobs_show_exactly_n_completions(
    database_url, conn, provider
) -> None:
    symbols = [f"N{i}" for i in range(7)]
    for s in symbols:
        serve_slowly(provider, s, delay_s=0)
    provider.route(
        "/v8/finance/chart/NOPE", recorded("yahoo/error-404-unknown-symbol.TRANSCRIBED.json", 404)
    )
    env = worker_env(database_url, provider.url, WORKER_HTTP_PORT="0")
    worker = await start_worker(env)
    try:
        base = await endpoint_url(worker)
        await worker.wait_for("listener_connected")
        before = metric_samples((await get(base + "metrics")).text)
        assert total(before, "symbol_onboarding_jobs_finished_total") == 0
        await conn.execute(
            "INSERT INTO symbol_onboarding_queue (symbol) SELECT unnest($1::text[])",
            [*symbols, "NOPE"],
        )
        for s in [*symbols, "NOPE"]:
            await worker.wait_for("job_finished", symbol=s)
        await asyncio.sleep(2.1)  # past the queue gauges' cache
        reply = await get(base + "metrics")
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
        m = metric_samples(reply.text)
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.finish() == 0
    finally:
        await worker.kill()
    n = len(symbols)
    assert total(m, "symbol_onboarding_jobs_finished_total", outcome="completed") == n
    assert total(m, "symbol_onboarding_jobs_finished_total", outcome="failed") == 1
    assert total(m, "symbol_onboarding_job_duration_seconds_count", outcome="completed") == n
    assert total(m, "symbol_onboarding_job_completion_latency_seconds_count") == n
    assert total(m, "symbol_onboarding_job_start_latency_seconds_count") == n + 1
    assert total(m, "symbol_onboarding_jobs_in_flight") == 0
    # The scrape-time gauges: the live statuses only (finished jobs are the counters' business).
    assert total(m, "symbol_onboarding_queue_jobs", status="pending") == 0
    assert total(m, "symbol_onboarding_queue_jobs", status="processing") == 0
    assert {labels["status"] for labels, _ in m["symbol_onboarding_queue_jobs"]} == {
        "pending",
        "processing",
    }
    assert total(m, "symbol_onboarding_database_up") == 1
    assert total(m, "symbol_onboarding_provider_requests_total", source="yahoo", status="200") == n
    assert total(m, "symbol_onboarding_provider_requests_total", source="yahoo", status="404") == 1
    stored = await conn.fetchval("SELECT count(*) FROM symbol_prices_daily")
    assert stored == n * 10
    assert total(m, "symbol_onboarding_price_rows_written_total", source="yahoo") == stored
    assert total(m, "symbol_onboarding_database_reconnects_total") == 0
    # The universe gauges (read at scrape time, like status): 7 active symbols with prices and
    # no betas (FACTORS_ENABLED is off here); NOPE failed, so it is not active.
    assert (
        total(m, "symbol_onboarding_symbols_current") + total(m, "symbol_onboarding_symbols_behind")
        == n
    )
    assert total(m, "symbol_onboarding_symbols_without_prices") == 0
    assert total(m, "symbol_onboarding_symbols_delisted") == 0
    assert total(m, "symbol_onboarding_refresh_jobs_live") == 0
    assert total(m, "symbol_onboarding_symbols_with_betas") == 0
    assert total(m, "symbol_onboarding_symbols_without_betas") == n
    assert total(m, "symbol_onboarding_symbols_waiting_for_references") == 0


@pytest.fixture
async def page_worker(database_url, conn):
    """A worker serving its status page over a queue with a stalled job and a paused source,
    and a symbol in error whose provider error holds markup."""
    await conn.execute(STALLED_AND_PAUSED)
    await conn.execute(FAILED_WITH_MARKUP)
    env = worker_env(
        database_url,
        PRICE_SOURCE="synthetic",
        WORKER_HTTP_PORT="0",
        QUEUE_STALL_TIMEOUT_S="30",
        QUEUE_HEARTBEAT_INTERVAL_S="5",
    )
    worker = await start_worker(env)
    try:
        base = await endpoint_url(worker)
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('DONE')")
        await worker.wait_for("job_finished", symbol="DONE")
        yield worker, base
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.finish() == 0
    finally:
        await worker.kill()


async def test_status_page_shows_the_facts(page_worker) -> None:
    worker, base = page_worker
    reply = await get(base)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    page = reply.text
    stall_row = next(row for row in page.split("<tr>") if ">STALL<" in row)
    assert "STALLED" in stall_row
    assert "polygon" in page and "HTTP 429 Too Many Requests" in page
    worker_id = (await worker.wait_for("worker_started"))["worker_id"]
    assert worker_id in page and "1 alive, 0 dead" in page
    assert "<svg" in page and "completed in the last hour: 1" in page
    # Works offline and writes nothing: no script, no external resource, no form but the GET
    # symbol search.
    for forbidden in ("<script", "http://cdn", "https://", "<link", 'method="post"'):
        assert forbidden not in page
    assert page.count("<form") == 1 and '<form class="search" method="get"' in page
    assert '<a href="/symbols/STALL">STALL</a>' in page  # every symbol links to its page
    # A failed onboarding counts in the universe; its error is text on both pages.
    assert 'In error (onboarding failed)</th><td class="n bad">1</td>' in page
    evil = await get(base + "symbols/EVIL")
    assert evil.status_code == 200 and "&lt;script&gt;document.title" in evil.text
    assert "<script" not in evil.text and "<script" not in page
    assert (await get(base + "symbols/NOSUCH")).status_code == 404
    assert "postgres@" not in page and "postgresql://" not in page  # no database URL


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(
    chromium() is None,
    reason="no Chromium on this machine: install Debian's chromium package (.ci/run does)",
)
async def test_a_real_browser_renders_the_status_page(page_worker, tmp_path) -> None:
    _worker, base = page_worker
    browser = chromium()
    assert browser is not None

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        profile = tempfile.mkdtemp(prefix="sow-chromium-")
        try:
            return subprocess.run(
                [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                capture_output=True,
                text=True,
                timeout=90,
            )
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    dom = await asyncio.to_thread(run, "--dump-dom", base)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    assert "symbol-onboarding worker status" in rendered
    assert "STALLED" in rendered and "HTTP 429 Too Many Requests" in rendered
    assert "completed in the last hour: 1" in rendered and "<svg" in rendered

    # The symbol page: the provider's error is text, never executed nor parsed as markup.
    symbol_dom = await asyncio.to_thread(run, "--dump-dom", base + "symbols/EVIL")
    assert symbol_dom.returncode == 0, symbol_dom.stderr[-2000:]
    shown = symbol_dom.stdout
    assert "<h1>EVIL: error</h1>" in shown and "pwned" not in shown.split("</title>")[0]
    assert "&lt;script&gt;document.title" in shown and '<b id="bold">' not in shown
    assert "No betas:" in shown and "in error: its last onboarding failed" in shown

    shot = tmp_path / "status.png"
    taken = await asyncio.to_thread(
        run, f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars", base
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
