"""The status page served at `GET /`: the facts of `python -m worker status` as HTML (every value
escaped), with an SVG chart of the last hour's finished jobs."""

import html
from typing import Any

from worker.ops import status

PAGE_REFRESH_S = 10

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
