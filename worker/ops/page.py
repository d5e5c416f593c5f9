"""The HTML pages of the worker's endpoint, rendered from Jinja2 templates (worker/ops/templates/,
shipped as package data) with autoescaping on: every fact from the database (a provider's error
message, a symbol the host wrote) is text on the page, never markup.

The pages are views of the fact layers (worker/ops/status.py's `report_dict`, worker/ops/symbol_facts.py)
and add only presentation: ages in words ("3 s ago"), times to the minute in the server's time
zone, links from every symbol and job to its symbol's page, and the charts, drawn here as inline
SVG (no script, no external font or stylesheet: the pages work offline).
"""

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup, escape

from worker.ops import status
from worker.ops.symbol_facts import Close, SymbolFacts, facts_dict

PAGE_REFRESH_S = 10

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("worker.ops", "templates"),
    autoescape=True,  # every template, whatever its name: these pages are all HTML
    undefined=jinja2.StrictUndefined,  # a misspelt fact fails the render, not shows blank
    trim_blocks=True,
    lstrip_blocks=True,
)


def ago(seconds: float | None) -> str:
    """An age in words: "3 s ago", "4 min ago", "2 h 5 min ago", "3 d ago"; "in 5 s" ahead."""
    if seconds is None:
        return "never"
    if seconds < 0:
        return f"in {duration(-seconds)}"
    return f"{duration(seconds)} ago"


def duration(seconds: float | None) -> str:
    """A duration to a useful precision: "3 s", "4 min 2 s", "2 h 5 min", "3 d 4 h"."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min" + (f" {s % 60} s" if s % 60 and s < 600 else "")
    if s < 86400:
        return f"{s // 3600} h" + (f" {s % 3600 // 60} min" if s % 3600 // 60 else "")
    return f"{s // 86400} d" + (f" {s % 86400 // 3600} h" if s % 86400 // 3600 else "")


def when(value: str | datetime | None) -> str:
    """A time to the minute in the server's local time zone, e.g. "2024-05-02 14:03 UTC"."""
    if value is None or value == "":
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone()
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def symbol_url(symbol: str) -> str:
    # Symbols are letters, digits and . - ^ = (worker/symbols.py); quoting is for the host's own
    # rows, which the queue's spelling rule never checked.
    return "/symbols/" + quote(symbol, safe="")


_env.filters.update(ago=ago, duration=duration, when=when, symbol_url=symbol_url)


def render_page(report: dict[str, Any], history: list[status.MinuteCounts], worker_id: str) -> str:
    """The status page from `status.report_dict` (the JSON view's facts) and the history."""
    alive = sum(1 for w in report["workers"] if w["alive"])
    return _env.get_template("status.html").render(
        r=report,
        chart=Markup(chart_svg(history)),
        worker_id=worker_id,
        refresh_s=PAGE_REFRESH_S,
        alive=alive,
        dead=len(report["workers"]) - alive,
    )


def render_unavailable(reason: str, worker_id: str) -> str:
    return _env.get_template("unavailable.html").render(
        reason=reason, worker_id=worker_id, refresh_s=PAGE_REFRESH_S
    )


def render_symbol(facts: SymbolFacts, worker_id: str) -> str:
    """The page of one symbol (worker/symbol_facts.py's facts)."""
    return _env.get_template("symbol.html").render(
        s=facts_dict(facts),
        chart=Markup(price_chart_svg(facts.closes)),
        worker_id=worker_id,
    )


def render_not_found(symbol: str, reason: str, worker_id: str) -> str:
    """The page of a symbol the database knows nothing of, or a spelling it refuses."""
    return _env.get_template("not_found.html").render(
        symbol=symbol, reason=reason, worker_id=worker_id
    )


# --- charts ----------------------------------------------------------------------------------------


def chart_svg(history: list[status.MinuteCounts], width: int = 720, height: int = 180) -> str:
    """Stacked bars, one per minute (oldest left): completed green, failed red on top. A minute
    with failures also gets its failure count in red above the plot, and its red bar is at
    least 2 px tall: one failure stays visible next to hundreds of completions."""
    left, bottom, top = 40, 22, 22
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max((m.completed + m.failed for m in history), default=0)
    scale = max(peak, 1)
    slot = plot_w / max(len(history), 1)
    bars: list[str] = []
    for i, m in enumerate(history):
        x = left + i * slot + 1
        done_h = plot_h * m.completed / scale
        fail_h = max(plot_h * m.failed / scale, 2.0) if m.failed else 0.0
        y0 = top + plot_h
        label = escape(f"{m.minutes_ago} min ago: {m.completed} completed, {m.failed} failed")
        if m.completed:
            bars.append(
                f'<rect x="{x:.1f}" y="{y0 - done_h:.1f}" width="{slot - 2:.1f}" '
                f'height="{done_h:.1f}" fill="#2a9d4b"><title>{label}</title></rect>'
            )
        if m.failed:
            bars.append(
                f'<rect x="{x:.1f}" y="{y0 - done_h - fail_h:.1f}" width="{slot - 2:.1f}" '
                f'height="{fail_h:.1f}" fill="#c62828"><title>{label}</title></rect>'
                f'<text x="{x + (slot - 2) / 2:.1f}" y="{top - 8}" font-size="10" '
                f'text-anchor="middle" fill="#b00">{m.failed}<title>{label}</title></text>'
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
        f'<text x="{left - 4}" y="{top - 8}" font-size="10" text-anchor="end" fill="#b00">'
        "failed</text>"
        f'<text x="{left}" y="{height - 6}" font-size="11">-{len(history)} min</text>'
        f'<text x="{left + plot_w}" y="{height - 6}" font-size="11" text-anchor="end">now</text>'
        + "".join(bars)
        + "</svg>"
        + f"<p>completed in the last hour: {total_done}; failed: {total_failed} "
        '<span style="color:#2a9d4b">&#9632; completed</span> '
        '<span style="color:#c62828">&#9632; failed (count above the bar)</span></p>'
    )


def price_chart_svg(closes: list[Close], width: int = 720, height: int = 220) -> str:
    """The stored closes as a line, oldest left, with the first and last dates and the low and
    high close on the axes; one point per stored date."""
    if not closes:
        return '<p class="muted">no prices stored</p>'
    left, right, bottom, top = 64, 10, 22, 10
    plot_w, plot_h = width - left - right, height - bottom - top
    low = min(c.close for c in closes)
    high = max(c.close for c in closes)
    span = high - low or 1.0
    step = plot_w / max(len(closes) - 1, 1)
    points = " ".join(
        f"{left + i * step:.1f},{top + plot_h * (high - c.close) / span:.1f}"
        for i, c in enumerate(closes)
    )
    axis_y = top + plot_h
    first, last = closes[0], closes[-1]
    label = escape(
        f"{len(closes)} closes from {first.price_date} to {last.price_date},"
        f" low {low:.2f}, high {high:.2f}"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}">'
        f"<title>{label}</title>"
        f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#888"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" stroke="#888"/>'
        f'<text x="{left - 4}" y="{top + 8}" font-size="11" text-anchor="end">{high:.2f}</text>'
        f'<text x="{left - 4}" y="{axis_y}" font-size="11" text-anchor="end">{low:.2f}</text>'
        f'<text x="{left}" y="{height - 6}" font-size="11">{first.price_date}</text>'
        f'<text x="{left + plot_w}" y="{height - 6}" font-size="11" text-anchor="end">'
        f"{last.price_date}</text>"
        f'<polyline points="{points}" fill="none" stroke="#1f5fa8" stroke-width="1.5"/>'
        "</svg>"
    )
