"""The worker's HTTP endpoint (off unless `WORKER_HTTP_PORT` is set): probes, Prometheus metrics
and a read-only status page, served by aiohttp inside the worker's own event loop.

- `GET /healthz`: 200 while this process's loops are alive (Runner.liveness), else 503 + reason.
- `GET /readyz`: 200 when the database answers, is migrated to head and the worker is not
  shutting down; else 503 with a one-line reason.
- `GET /metrics`: the Prometheus exposition of `PrometheusMetrics`' registry; the queue gauges
  are read at scrape time (worker/ops/status.py's QueueDepth, cached for a couple of seconds).
- `GET /`: the status page: the same facts as `python -m worker status` (the same
  `status.report_dict`), plus jobs finished per minute over the last hour as an inline SVG
  (worker/ops/page.py draws it). No script, no external font or stylesheet: it works offline. No write actions, no secret
  (no URL, no key: error messages are masked when they are stored). A GET search form leads to
- `GET /symbols/SYM`: one symbol's facts (worker/ops/symbol_facts.py): its universe row, newest
  bars, price chart, betas or why there are none, its jobs, whether it is behind; 404 for a
  symbol the database knows nothing of. `GET /symbols?symbol=SYM` (the form) redirects there.
Both pages are Jinja2 templates with autoescaping on (worker/ops/page.py, worker/ops/templates/).

Database reads go through one connection of the endpoint's own (opened on first use, replaced
after a failure, one statement at a time), so probes never wait for a pool busy with jobs.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.core.db import asyncpg_dsn
from worker.core.errors import ConfigurationError
from worker.core.logs import redact_text
from worker.core.metrics import Metrics
from worker.core.settings import Settings
from worker.core.symbols import InvalidSymbolError, normalize_symbol
from worker.ops import migrate, status, symbol_facts
from worker.ops.page import (
    chart_svg,
    render_not_found,
    render_page,
    render_symbol,
    render_unavailable,
    symbol_url,
)
from worker.ops.prometheus import PrometheusMetrics
from worker.queue import control
from worker.queue.registry import package_version

__all__ = ["EndpointError", "StatusServer", "chart_svg", "endpoint"]

log = structlog.get_logger("worker.web")

READY_TIMEOUT_S = 2.0  # a readiness answer within a probe's usual timeout (Kubernetes: 1-3 s)
PAGE_TIMEOUT_S = 5.0


class EndpointError(ConfigurationError):
    """The endpoint cannot listen where it was told to."""


@contextlib.asynccontextmanager
async def endpoint(
    settings: Settings, database_url: str, worker_id: str, view: "WorkerView"
) -> AsyncIterator[tuple[Metrics, "StatusServer | None"]]:
    """What `run` records into and serves: without WORKER_HTTP_PORT, a Metrics that records
    nothing and no server; with it, PrometheusMetrics served by a listening StatusServer. `view`:
    the worker being served, read at each request (it starts after the endpoint)."""
    if settings.http_port is None:
        yield Metrics(), None
        return
    metrics = PrometheusMetrics(worker_id, package_version(), factors_state=view.factors_state)
    server = StatusServer(settings, database_url, metrics, worker_id=worker_id, view=view)
    try:
        await server.start()
    except OSError as exc:
        await server.close()
        raise EndpointError(
            f"cannot listen on {settings.http_host}:{settings.http_port} (WORKER_HTTP_HOST,"
            f" WORKER_HTTP_PORT): {exc.strerror or exc}"
        ) from None
    try:
        yield metrics, server
    finally:
        await server.close()


class Probed(Protocol):
    """What the endpoint asks of the running worker (worker/queue/runner.py's Runner)."""

    @property
    def stopping(self) -> bool: ...

    def liveness(self) -> str | None: ...


class WorkerView(Protocol):
    """What the endpoint reads of the worker it serves, given when the endpoint is built: the
    endpoint is up while the worker still waits for its database, so both answers may be None."""

    def running(self) -> Probed | None:
        """The runner once it exists; None while the worker starts."""

    def factors_state(self) -> tuple[bool, str | None] | None:
        """Whether betas are computed, and why not; None until known."""


class NoWorker:
    """A view of no worker: the probes say "starting" (the endpoint served on its own)."""

    def running(self) -> Probed | None:
        return None

    def factors_state(self) -> tuple[bool, str | None] | None:
        return None


class StatusServer:
    def __init__(
        self,
        settings: Settings,
        database_url: str,
        metrics: PrometheusMetrics,
        *,
        worker_id: str,
        view: WorkerView | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.worker_id = worker_id
        self.view = view or NoWorker()
        self._dsn = asyncpg_dsn(database_url)
        # Read once: finding the head parses every revision file (milliseconds per probe).
        self._head = migrate.head_revision()
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    async def start(self) -> str:
        """Listen on WORKER_HTTP_HOST:WORKER_HTTP_PORT; returns the base URL."""
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/", self.status_page)
        app.router.add_get("/symbols", self.symbol_search)
        app.router.add_get("/symbols/{symbol}", self.symbol_page)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
        log.info("http_listening", url=self.url)
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._conn is not None:
            self._conn.terminate()

    # --- probes ----------------------------------------------------------------------------------

    async def healthz(self, _request: web.Request) -> web.Response:
        worker = self.view.running()
        if worker is None:
            return _text(200, "ok: starting")
        reason = worker.liveness()
        return _text(200, "ok") if reason is None else _text(503, reason)

    async def readyz(self, _request: web.Request) -> web.Response:
        worker = self.view.running()
        if worker is None:
            return _text(503, "starting: waiting for the database")
        if worker.stopping:
            return _text(503, "shutting down")
        try:
            async with self._database(READY_TIMEOUT_S) as conn:
                revision = await migrate.schema_revision(conn)
        except Exception as exc:
            return _text(503, f"database unreachable: {_describe(exc)}")
        if revision != self._head:
            return _text(503, f"database schema at {revision or 'none'}, expected {self._head}")
        unavailable = self._factors_unavailable()
        if unavailable is not None:
            # Ready all the same: prices flow; the reason is for the operator reading the probe.
            return _text(200, f"ready; betas unavailable: {unavailable}")
        return _text(200, "ready")

    def _factors_unavailable(self) -> str | None:
        state = self.view.factors_state()
        if state is None:
            return None
        available, reason = state
        return None if available else reason

    # --- metrics and the status page --------------------------------------------------------------

    async def metrics_page(self, _request: web.Request) -> web.Response:
        async def read() -> status.QueueDepth:
            async with self._database(READY_TIMEOUT_S) as conn:
                return await status.gather_depth(conn)

        async def read_universe() -> status.UniverseFacts:
            async with self._database(READY_TIMEOUT_S) as conn:
                return await status.gather_universe(conn, self.settings)

        async def read_control() -> control.ControlFacts:
            async with self._database(READY_TIMEOUT_S) as conn:
                return await control.gather(conn)

        await self.metrics.queue.refresh(read)
        if self.metrics.queue.up:  # else the database is away: one timeout per scrape is enough
            await self.metrics.universe.refresh(read_universe)
            await self.metrics.control.refresh(read_control)
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status_page(self, _request: web.Request) -> web.Response:
        try:
            async with self._database(PAGE_TIMEOUT_S) as conn:
                report = await status.gather(
                    conn, self.settings, factors_unavailable=self._factors_unavailable()
                )
                history = await status.gather_history(conn)
        except Exception as exc:
            body = render_unavailable(f"database unreachable: {_describe(exc)}", self.worker_id)
            return web.Response(status=503, text=body, content_type="text/html")
        body = render_page(status.report_dict(report), history, self.worker_id)
        return web.Response(text=body, content_type="text/html")

    async def symbol_search(self, request: web.Request) -> web.Response:
        """The search form's GET: to the symbol's page (spelled as the queue spells it)."""
        raw = request.query.get("symbol", "").strip()
        if not raw:
            raise web.HTTPFound("/")
        try:
            symbol = normalize_symbol(raw)
        except InvalidSymbolError:
            symbol = raw  # the page says why
        raise web.HTTPFound(symbol_url(symbol))

    async def symbol_page(self, request: web.Request) -> web.Response:
        raw = request.match_info["symbol"]
        try:
            symbol = normalize_symbol(raw)
        except InvalidSymbolError as exc:
            body = render_not_found(raw, str(exc), self.worker_id)
            return web.Response(status=400, text=body, content_type="text/html")
        if symbol != raw:
            raise web.HTTPFound(symbol_url(symbol))
        try:
            async with self._database(PAGE_TIMEOUT_S) as conn:
                facts = await symbol_facts.gather(
                    conn, self.settings, symbol, factors_unavailable=self._factors_unavailable()
                )
        except Exception as exc:
            body = render_unavailable(f"database unreachable: {_describe(exc)}", self.worker_id)
            return web.Response(status=503, text=body, content_type="text/html")
        if facts is None:
            reason = (
                f"{symbol} is not in symbol_universe and has no job: enqueue it with"
                f" `python -m worker enqueue {symbol}`"
            )
            body = render_not_found(symbol, reason, self.worker_id)
            return web.Response(status=404, text=body, content_type="text/html")
        return web.Response(text=render_symbol(facts, self.worker_id), content_type="text/html")

    @contextlib.asynccontextmanager
    async def _database(self, timeout_s: float) -> AsyncIterator[asyncpg.Connection]:
        """The endpoint's connection, one user at a time; dropped after any failure."""
        async with self._lock, asyncio.timeout(timeout_s):
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(
                    self._dsn,
                    statement_cache_size=self.settings.statement_cache_size,
                    command_timeout=timeout_s,
                )
            try:
                yield self._conn
            except BaseException:
                self._conn.terminate()
                self._conn = None
                raise


def _text(code: int, message: str) -> web.Response:
    return web.Response(status=code, text=message + "\n")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = redact_text(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
