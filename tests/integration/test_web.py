"""The HTTP endpoint's answers against real PostgreSQL, with a stand-in for the running worker."""

import dataclasses
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from worker.core.settings import Settings
from worker.ops import status
from worker.ops.page import chart_svg
from worker.ops.prometheus import PrometheusMetrics
from worker.ops.web import EndpointError, NoWorker, StatusServer, endpoint


@dataclasses.dataclass
class FakeWorker:
    reason: str | None = None
    stopping: bool = False

    def liveness(self) -> str | None:
        return self.reason


@dataclasses.dataclass
class FakeView:
    """The worker the endpoint serves, as a test sets it: none yet (starting), then a fake."""

    worker: FakeWorker | None = None
    factors: Callable[[], tuple[bool, str | None]] | None = None

    def running(self) -> FakeWorker | None:
        return self.worker

    def factors_state(self) -> tuple[bool, str | None] | None:
        return self.factors() if self.factors is not None else None


async def serve(url: str) -> AsyncIterator[tuple[StatusServer, httpx.AsyncClient]]:
    settings = Settings(http_port=0)
    view = FakeView()
    metrics = PrometheusMetrics("w-1", "9.9", factors_state=view.factors_state)
    server = StatusServer(settings, url, metrics, worker_id="w-1", view=view)
    base = await server.start()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield server, client
    finally:
        await server.close()


@pytest.fixture
async def web(database_url: str):
    async for pair in serve(database_url):
        yield pair


async def test_healthz_follows_the_workers_liveness(web) -> None:
    server, client = web
    assert (await client.get("/healthz")).text == "ok: starting\n"
    server.view.worker = FakeWorker()
    assert (await client.get("/healthz")).status_code == 200
    server.view.worker = FakeWorker(reason="claim loop last went round 120 s ago (limit 102 s)")
    reply = await client.get("/healthz")
    assert reply.status_code == 503 and "claim loop last went round 120 s ago" in reply.text


async def test_readyz_says_why_not(web) -> None:
    server, client = web
    assert (await client.get("/readyz")).status_code == 503  # no worker yet: starting
    server.view.worker = FakeWorker()
    assert (await client.get("/readyz")).text == "ready\n"
    server.view.worker = FakeWorker(stopping=True)
    reply = await client.get("/readyz")
    assert reply.status_code == 503 and reply.text == "shutting down\n"


async def test_readyz_refuses_a_database_not_at_head(empty_database_url: str) -> None:
    async for server, client in serve(empty_database_url):
        server.view.worker = FakeWorker()
        reply = await client.get("/readyz")
        assert reply.status_code == 503 and reply.text.startswith("database schema at none")


async def test_readyz_and_the_page_when_the_database_is_unreachable() -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:1/postgres"
    async for server, client in serve(url):
        server.view.worker = FakeWorker()
        reply = await client.get("/readyz")
        assert reply.status_code == 503 and reply.text.startswith("database unreachable")
        page = await client.get("/")
        assert page.status_code == 503 and "database unreachable" in page.text
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "symbol_onboarding_database_up 0.0" in metrics.text
        for text in (reply.text, page.text, metrics.text):
            assert "hunter2" not in text


async def test_metrics_queue_gauges_are_the_status_layers_depth(web, conn) -> None:
    _server, client = web
    await conn.execute(
        "INSERT INTO symbol_onboarding_queue (symbol, priority) VALUES ('A', 'high'), ('B', 'low')"
    )
    text = (await client.get("/metrics")).text
    depth = await status.gather_depth(conn)
    assert set(depth.counts) == {"pending", "processing"} and depth.counts["pending"]["high"] == 1
    for st, by_priority in depth.counts.items():
        for priority, jobs in by_priority.items():
            line = f'symbol_onboarding_queue_jobs{{priority="{priority}",status="{st}"}} {jobs:.1f}'
            assert line in text
    assert 'symbol_onboarding_worker_info{version="9.9",worker_id="w-1"} 1.0' in text


async def test_endpoint_is_off_without_a_port_and_fails_clearly_on_a_taken_one(
    database_url,
) -> None:
    async with endpoint(Settings(), database_url, "w", NoWorker()) as (metrics, server):
        assert server is None and not hasattr(metrics, "registry")
    async for taken, _client in serve(database_url):
        port = int(taken.url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(EndpointError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with endpoint(Settings(http_port=port), database_url, "w", NoWorker()):
                pass


def test_chart_draws_one_bar_per_busy_minute() -> None:
    history = [status.MinuteCounts(m, 0, 0) for m in range(59, -1, -1)]
    history[-1] = status.MinuteCounts(0, 4, 1)
    history[0] = status.MinuteCounts(59, 2, 0)
    svg = chart_svg(history)
    assert svg.count('fill="#2a9d4b"') == 2
    assert svg.count('fill="#c62828"') == 1
    assert "0 min ago: 4 completed, 1 failed" in svg and ">5</text>" in svg  # the y-axis peak
    assert "completed in the last hour: 6; failed: 1" in svg


async def test_betas_unavailable_are_said_by_readyz_metrics_and_the_page(web) -> None:
    """FACTORS_ENABLED=auto without the host's factor names: still ready (prices flow), and
    every view says why there are no betas."""
    server, client = web
    server.view.worker = FakeWorker()
    reason = "factor_definitions has no factor named Market Beta (90D)"
    server.view.factors = lambda: (False, reason)
    reply = await client.get("/readyz")
    assert reply.status_code == 200 and reply.text == f"ready; betas unavailable: {reason}\n"
    metrics = (await client.get("/metrics")).text
    assert f'symbol_onboarding_factors_available{{reason="{reason}"}} 0.0' in metrics
    assert reason in (await client.get("/")).text
    server.view.factors = lambda: (True, None)
    assert (await client.get("/readyz")).text == "ready\n"
    assert (
        'symbol_onboarding_factors_available{reason=""} 1.0' in (await client.get("/metrics")).text
    )


async def test_status_text_says_why_betas_are_unavailable_and_host_disagreements(conn) -> None:
    await conn.execute("INSERT INTO symbol_universe (symbol, status) VALUES ('MSFT', 'active')")
    await conn.execute(
        "INSERT INTO host_price_disagreements (symbol, price_date, data_source, host_close,"
        " worker_close) VALUES ('MSFT', '2024-01-02', 'host_batch', 11.5, 10)"
    )
    report = await status.gather(conn, Settings(), factors_unavailable="no names")
    text = status.format_text(report)
    assert "betas unavailable: no names (prices still flow)" in text
    assert "host prices: 1 market_data_cache rows the host wrote disagree" in text
    assert status.report_dict(report)["host"]["host_price_disagreements"] == 1
