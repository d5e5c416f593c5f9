"""The worker's HTTP endpoint (off unless `WORKER_HTTP_PORT` is set): probes, Prometheus metrics
and a read-only status page, served by aiohttp inside the worker's own event loop.

- `GET /healthz`: 200 while this process's loops are alive (Runner.liveness), else 503 + reason.
- `GET /readyz`: 200 when the database answers, is migrated to head and the worker is not
  shutting down; else 503 with a one-line reason.
- `GET /metrics`: the Prometheus exposition of `PrometheusMetrics`' registry; the queue gauges
  are read at scrape time (worker/ops/status.py's QueueDepth, cached for a couple of seconds).
- `GET /`: the status page: the same facts as `python -m worker status` (the same
  `status.report_dict`), plus jobs finished per minute over the last hour as an inline SVG drawn
  here. No script, no external font or stylesheet: it works offline. No write actions, no secret
  (no URL, no key: error messages are masked when they are stored).

Database reads go through one connection of the endpoint's own (opened on first use, replaced
after a failure, one statement at a time), so probes never wait for a pool busy with jobs.
"""

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator
from typing import Any, Protocol

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.core.db import asyncpg_dsn
from worker.core.errors import ConfigurationError
from worker.core.logs import redact_text
from worker.core.metrics import Metrics
from worker.core.settings import Settings
from worker.ops import migrate, status
from worker.ops.prometheus import PrometheusMetrics
from worker.queue.registry import package_version

log = structlog.get_logger("worker.web")

READY_TIMEOUT_S = 2.0  # a readiness answer within a probe's usual timeout (Kubernetes: 1-3 s)
PAGE_TIMEOUT_S = 5.0
PAGE_REFRESH_S = 10


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

        await self.metrics.queue.refresh(read)
        if self.metrics.queue.up:  # else the database is away: one timeout per scrape is enough
            await self.metrics.universe.refresh(read_universe)
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


# --- the page ------------------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 1.4em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 8px; }
th { background: #f3f3f3; text-align: left; } td.n { text-align: right; }
.bad { color: #b00; font-weight: bold; } .muted { color: #777; }
"""


def render_page(report: dict[str, Any], history: list[status.MinuteCounts], worker_id: str) -> str:
    """The status page from `status.report_dict` (the JSON view's facts) and the history."""
    r = report
    parts = [
        _head("symbol-onboarding worker status"),
        "<h1>symbol-onboarding worker status</h1>",
        f"<p class=muted>at {_e(r['generated_at'])}, served by worker {_e(worker_id)}; "
        f"stall timeout {_e(r['stall_timeout_s'])} s; refreshes every {PAGE_REFRESH_S} s</p>",
        "<h2>Jobs finished per minute, last hour</h2>",
        chart_svg(history),
        "<h2>Jobs by status and priority</h2>",
        _table(
            ["status", "total", "high", "normal", "low"],
            [
                [s, sum(by.values()), by["high"], by["normal"], by["low"]]
                for s, by in r["counts"].items()
            ],
        ),
        "<h2>Oldest pending job</h2>",
        _one(
            r["oldest_pending"],
            ["symbol", "job_id", "priority", "attempts", "created_at", "wait_s"],
        ),
        f"<h2>Running ({len(r['running'])})</h2>",
        _table(
            ["symbol", "job", "priority", "owner", "attempt", "running s", "heartbeat age s", ""],
            [
                [
                    j["symbol"],
                    j["job_id"],
                    j["priority"],
                    j["owner"],
                    j["attempt"],
                    j["running_s"],
                    j["heartbeat_age_s"],
                    _Mark("STALLED (past the stall timeout)") if j["stalled"] else "",
                ]
                for j in r["running"]
            ],
        ),
        f"<h2>In backoff ({r['backoff_total']})</h2>",
        _table(
            ["symbol", "job", "priority", "attempts", "next run", "in s", "last error"],
            [
                [
                    j["symbol"],
                    j["job_id"],
                    j["priority"],
                    j["attempts"],
                    j["next_run_at"],
                    j["next_run_in_s"],
                    j["last_error"],
                ]
                for j in r["backoff"]
            ],
        ),
        f"<p class=muted>and {r['backoff_total'] - len(r['backoff'])} more</p>"
        if r["backoff_total"] > len(r["backoff"])
        else "",
        f"<h2>Paused sources ({len(r['paused_sources'])})</h2>",
        _table(
            ["source", "until", "left s", "reason"],
            [
                [s["source"], s["paused_until"], s["remaining_s"], s["reason"]]
                for s in r["paused_sources"]
            ],
        ),
        f"<h2>Circuit breakers ({len(r['circuit_breakers'])})</h2>",
        _table(
            ["source", "state", "consecutive failures", "threshold"],
            [
                [
                    b["source"],
                    _Mark(b["state"]) if b["state"] in ("open", "half-open") else b["state"],
                    b["consecutive_failures"],
                    b["threshold"],
                ]
                for b in r["circuit_breakers"]
            ],
        ),
        "<h2>Workers ({} alive, {} dead)</h2>".format(
            sum(1 for w in r["workers"] if w["alive"]),
            sum(1 for w in r["workers"] if not w["alive"]),
        ),
        _table(
            [
                "worker",
                "state",
                "host",
                "pid",
                "version",
                "jobs",
                "started",
                "up s",
                "claim loop s ago",
                "heartbeat s ago",
                "endpoint",
            ],
            [
                [
                    w["worker_id"],
                    ("alive" if w["alive"] else _Mark("DEAD")) if not w["stopping"] else "stopping",
                    w["host"],
                    w["pid"],
                    w["version"],
                    f"{w['jobs_in_flight']}/{w['concurrency']}",
                    w["started_at"],
                    w["up_s"],
                    w["last_tick_age_s"],
                    w["heartbeat_age_s"],
                    w["http_url"],
                ]
                for w in r["workers"]
            ],
        ),
        "<h2>Last completed job</h2>",
        _one(
            r["last_completed"],
            ["symbol", "job_id", "priority", "attempts", "finished_at", "ago_s"],
        ),
        f"<h2>Recent failures ({len(r['recent_failures'])})</h2>",
        _table(
            ["symbol", "job", "priority", "attempts", "failed at", "s ago", "error"],
            [
                [
                    f["symbol"],
                    f["job_id"],
                    f["priority"],
                    f["attempts"],
                    f["finished_at"],
                    f["ago_s"],
                    f["error"],
                ]
                for f in r["recent_failures"]
            ],
        ),
        "<h2>Universe</h2>",
        _one(
            r["refresh"],
            [
                "through_session",
                "current",
                "behind",
                "oldest_last_price_date",
                "without_prices",
                "delisted",
                "refresh_jobs_live",
                "next_scheduled_refresh",
                "catch_up_trading_day",
            ],
        ),
        "<h2>Factor betas</h2>",
        _one(
            r["factors"],
            [
                "with_betas",
                "oldest_last_factor_date",
                "without_betas",
                "waiting_for_references",
                "unavailable",
            ],
        ),
        "</body></html>",
    ]
    return "\n".join(parts)


def render_unavailable(reason: str, worker_id: str) -> str:
    return (
        _head("symbol-onboarding worker status: unavailable")
        + "<h1>symbol-onboarding worker status</h1>"
        + f"<p class=bad>{_e(reason)}</p><p class=muted>served by worker {_e(worker_id)}</p>"
        + "</body></html>"
    )


def _head(title: str) -> str:
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{PAGE_REFRESH_S}">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
    )


class _Mark(str):
    """A cell shown as an alarm."""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p class=muted>none</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, _Mark):
        return f"<td class=bad>{_e(value)}</td>"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"<td class=n>{_e(value)}</td>"
    return f"<td>{_e(value)}</td>"


def _one(item: dict[str, Any] | None, keys: list[str]) -> str:
    if item is None:
        return "<p class=muted>none</p>"
    return _table(keys, [[item[k] for k in keys]])


def chart_svg(history: list[status.MinuteCounts], width: int = 720, height: int = 180) -> str:
    """Stacked bars, one per minute (oldest left): completed green, failed red on top."""
    left, bottom, top = 40, 22, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max((m.completed + m.failed for m in history), default=0)
    scale = max(peak, 1)
    slot = plot_w / max(len(history), 1)
    bars: list[str] = []
    for i, m in enumerate(history):
        x = left + i * slot + 1
        done_h = plot_h * m.completed / scale
        fail_h = plot_h * m.failed / scale
        y0 = top + plot_h
        label = f"{m.minutes_ago} min ago: {m.completed} completed, {m.failed} failed"
        if m.completed:
            bars.append(
                f'<rect x="{x:.1f}" y="{y0 - done_h:.1f}" width="{slot - 2:.1f}" '
                f'height="{done_h:.1f}" fill="#2a9d4b"><title>{_e(label)}</title></rect>'
            )
        if m.failed:
            bars.append(
                f'<rect x="{x:.1f}" y="{y0 - done_h - fail_h:.1f}" width="{slot - 2:.1f}" '
                f'height="{fail_h:.1f}" fill="#c62828"><title>{_e(label)}</title></rect>'
            )
    total_done = sum(m.completed for m in history)
    total_failed = sum(m.failed for m in history)
    axis_y = top + plot_h
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="jobs finished per minute">'
        f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#888"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" stroke="#888"/>'
        f'<text x="{left - 4}" y="{top + 8}" font-size="11" text-anchor="end">{peak}</text>'
        f'<text x="{left - 4}" y="{axis_y}" font-size="11" text-anchor="end">0</text>'
        f'<text x="{left}" y="{height - 6}" font-size="11">-{len(history)} min</text>'
        f'<text x="{left + plot_w}" y="{height - 6}" font-size="11" text-anchor="end">now</text>'
        + "".join(bars)
        + "</svg>"
        + f"<p>completed in the last hour: {total_done}; failed: {total_failed} "
        '<span style="color:#2a9d4b">&#9632; completed</span> '
        '<span style="color:#c62828">&#9632; failed</span></p>'
    )
