"""One symbol's facts: ONE layer gathers them; the symbol page (`GET /symbols/SYM`),
`python -m worker show SYM|JOB_ID` (text and `--json`) are views of it.

`gather` reads every fact in one read-only REPEATABLE READ transaction (one moment, database
time): the universe row, the newest bars and the stored closes (the chart), the twelve betas at
their newest calculation date in whichever table shape the database has (worker/factors/
store.py, FactorStore.detect), why betas are absent if they are, the symbol's jobs (latest
first) and whether it is behind the last completed session of REFRESH_CALENDAR.
"""

import uuid
from dataclasses import dataclass, fields, is_dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from worker.core.settings import Settings
from worker.core.symbols import normalize_symbol
from worker.core.trading_calendar import shared_calendar
from worker.factors.betas import FACTORS
from worker.factors.store import FactorStore, ShapeError
from worker.sql import prices as prices_sql
from worker.sql import status as status_sql
from worker.sql import symbol as sql

NEWEST_BARS = 10
JOBS_LIMIT = 50
# The fewest stored prices any beta needs: the shortest regressions' minimum returns, plus one
# price (a return is between two prices).
MIN_PRICES_FOR_BETAS = min(f.min_returns for f in FACTORS) + 1


@dataclass(frozen=True)
class Universe:
    symbol: str
    status: str | None
    asset_type: str | None
    sector: str | None
    industry: str | None
    is_active: bool | None
    added_source: str | None
    first_seen_date: date | None
    last_seen_date: date | None
    last_price_date: date | None
    last_factor_date: date | None
    created_at: datetime | None
    updated_at: datetime | None
    bars: int
    first_price_date: date | None


@dataclass(frozen=True)
class Bar:
    price_date: date
    open_price: float | None
    high_price: float | None
    low_price: float | None
    close_price: float
    adj_close_price: float | None
    volume: int | None


@dataclass(frozen=True)
class Close:
    price_date: date
    close: float


@dataclass(frozen=True)
class Beta:
    factor: str  # factor_definitions.name (the long table's), e.g. "Market Beta (90D)"
    column: str  # the wide table's column, e.g. market_beta
    value: float | None  # None: not computed at this calculation date
    r_squared: float | None = None  # the long table keeps these; the wide one does not
    observations: int | None = None
    quality_flag: str | None = None


@dataclass(frozen=True)
class Betas:
    shape: str | None  # wide, long; None: the table cannot be read (see `absent`)
    calculation_date: date | None  # None: no betas stored for the symbol
    values: list[Beta]  # the twelve, in FACTORS order (empty when none are stored)
    absent: str | None  # why there are none (None: there are)
    waiting_for: list[str] | None  # reference ETFs the next betas wait for (None: not waiting)


@dataclass(frozen=True)
class Job:
    job_id: str
    kind: str
    status: str
    priority: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    run_after: datetime | None
    owner: str | None
    error: str | None


@dataclass(frozen=True)
class Freshness:
    calendar: str
    through_session: date  # the last completed session
    behind: bool  # an active (or pending) symbol without a price for it
    reason: str  # in words


@dataclass(frozen=True)
class SymbolFacts:
    generated_at: datetime
    symbol: str
    universe: Universe | None  # None: not in symbol_universe (it may still have jobs)
    freshness: Freshness
    newest_bars: list[Bar]
    closes: list[Close]  # every stored close, oldest first
    betas: Betas
    jobs_total: int
    jobs: list[Job]  # the newest JOBS_LIMIT, latest first


async def gather(
    conn: asyncpg.Connection,
    settings: Settings,
    symbol: str,
    *,
    factors_unavailable: str | None = None,
) -> SymbolFacts | None:
    """Every fact about `symbol` (already normalised), as of one moment; None when the
    database knows nothing of it (no universe row, no job). `factors_unavailable`: why the
    worker writes no betas at all (its FactorSwitch's reason), if so."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        now = await conn.fetchval(status_sql.NOW)
        row = await conn.fetchrow(sql.UNIVERSE_ROW, symbol)
        jobs = await conn.fetch(sql.JOBS, symbol, JOBS_LIMIT)
        if row is None and not jobs:
            return None
        universe = None if row is None else _row(Universe, row)
        bars = await conn.fetch(prices_sql.LATEST_PRICES, symbol, NEWEST_BARS)
        closes = await conn.fetch(sql.CLOSES, symbol)
        betas = await _betas(conn, symbol, universe, factors_unavailable)
    through = shared_calendar(settings.refresh_calendar).last_completed_session(now)
    return SymbolFacts(
        generated_at=now,
        symbol=symbol,
        universe=universe,
        freshness=_freshness(settings.refresh_calendar, through, universe),
        newest_bars=[_bar(b) for b in bars],
        closes=[Close(c["price_date"], c["close"]) for c in closes],
        betas=betas,
        jobs_total=jobs[0]["total"] if jobs else 0,
        jobs=[_row(Job, j) for j in jobs],
    )


async def resolve(conn: asyncpg.Connection, target: str) -> tuple[str, str | None]:
    """What `show TARGET` is about: (symbol, None) for a symbol, (its symbol, job id) for a job
    id. InvalidSymbolError for a spelling the queue refuses, LookupError for an unknown job."""
    try:
        job_id = uuid.UUID(target)
    except ValueError:
        return normalize_symbol(target), None
    symbol: str | None = await conn.fetchval(sql.JOB_SYMBOL, job_id)
    if symbol is None:
        raise LookupError(f"no job {job_id} in symbol_onboarding_queue (pruned, or never queued)")
    return symbol, str(job_id)


def _freshness(calendar: str, through: date, u: Universe | None) -> Freshness:
    def fresh(behind: bool, reason: str) -> Freshness:
        return Freshness(calendar, through, behind, reason)

    if u is None:
        return fresh(False, "not in symbol_universe: only its jobs are known")
    status = u.status or "active"
    if status == "delisted":
        return fresh(False, "delisted: no longer refreshed")
    if status == "error":
        return fresh(True, "in error: its last onboarding failed (see its jobs)")
    if u.last_price_date is None:
        return fresh(status in ("active", "pending"), "no price stored yet")
    if u.last_price_date >= through:
        return fresh(False, f"current: has the {through} session")
    return fresh(
        status == "active",
        f"behind: newest price {u.last_price_date}, the last completed session is {through}",
    )


async def _betas(
    conn: asyncpg.Connection,
    symbol: str,
    universe: Universe | None,
    factors_unavailable: str | None,
) -> Betas:
    waiting = await conn.fetchval(sql.WAITING_FOR, symbol)
    waiting_for = None if waiting is None else list(waiting)
    try:
        store = await FactorStore.detect(conn)
    except ShapeError as exc:
        return Betas(None, None, [], f"betas unavailable: {exc}", waiting_for)
    values: list[Beta] = []
    day: date | None = None
    if store.shape == "wide":
        columns = ", ".join(f"{f.column}::float8 AS {f.column}" for f in FACTORS)
        row = await conn.fetchrow(sql.WIDE_BETAS.format(columns=columns), symbol)
        if row is not None:
            day = row["calculation_date"]
            values = [Beta(f.name, f.column, row[f.column]) for f in FACTORS]
    else:
        rows = {r["name"]: r for r in await conn.fetch(sql.LONG_BETAS, symbol)}
        if rows:
            day = next(iter(rows.values()))["calculation_date"]
            values = [
                Beta(f.name, f.column, None)
                if (r := rows.get(f.name)) is None
                else Beta(
                    f.name,
                    f.column,
                    r["beta"],
                    r["r_squared"],
                    r["observations"],
                    r["quality_flag"],
                )
                for f in FACTORS
            ]
    absent = None if values else _why_no_betas(universe, waiting_for, factors_unavailable)
    return Betas(store.shape, day, values, absent, waiting_for)


def _why_no_betas(
    u: Universe | None, waiting_for: list[str] | None, factors_unavailable: str | None
) -> str:
    symbol = "SYMBOL" if u is None else u.symbol
    if factors_unavailable:
        return f"factors unavailable: {factors_unavailable} (prices still flow)"
    if waiting_for:
        return (
            "waiting for reference ETF prices: "
            f"{', '.join(waiting_for)} (computed when their jobs end)"
        )
    if u is None:
        return "not in symbol_universe"
    if (u.status or "active") != "active":
        return f"symbol is {u.status}: betas are computed once its prices are stored"
    if u.bars < MIN_PRICES_FOR_BETAS:
        return (
            f"too little history: {u.bars} stored price(s), the betas need at least"
            f" {MIN_PRICES_FOR_BETAS}"
        )
    return f"never computed: `python -m worker factors --symbols {symbol}` computes them"


def _bar(row: asyncpg.Record) -> Bar:
    def num(value: Any) -> float | None:
        return None if value is None else float(value)

    return Bar(
        row["price_date"],
        num(row["open_price"]),
        num(row["high_price"]),
        num(row["low_price"]),
        float(row["close_price"]),
        num(row["adj_close_price"]),
        row["volume"],
    )


def _row(cls: type[Any], row: asyncpg.Record) -> Any:
    columns = set(row.keys())
    return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in columns})


# --- views: JSON and text --------------------------------------------------------------------------


def facts_dict(facts: SymbolFacts, *, closes: bool = False) -> dict[str, Any]:
    """The JSON view: every field (the closes only when asked: a long history is long), dates
    and times as ISO 8601."""
    plain: dict[str, Any] = _plain(facts)
    if not closes:
        plain.pop("closes")
    return plain


def _plain(value: Any) -> Any:
    """JSON-ready values: dataclasses as dicts, dates as ISO 8601; numbers as stored (prices
    and betas keep their digits, unlike the status view's seconds)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    return value


def format_text(facts: SymbolFacts, *, job_id: str | None = None) -> str:
    """The terminal view of `show`: the same facts as the page. `job_id`: the job asked for
    (`show JOB_ID`), shown first."""
    d = facts_dict(facts)
    lines: list[str] = []
    if job_id is not None:
        job = next((j for j in d["jobs"] if j["job_id"] == job_id), None)
        if job is not None:
            lines += [f"job {job_id}: {_job_line(job)}", ""]
    u = d["universe"]
    if u is None:
        lines.append(f"{d['symbol']}: not in symbol_universe")
    else:
        lines.append(
            f"{u['symbol']}: {u['status']}, {u['bars']} daily bars stored"
            + (f" ({u['first_price_date']} to {u['last_price_date']})" if u["bars"] else "")
        )
        lines.append(
            f"  asset type {u['asset_type'] or '-'}, sector {u['sector'] or '-'}, industry"
            f" {u['industry'] or '-'}, added by {u['added_source'] or '-'},"
            f" updated {u['updated_at']}"
        )
    f = d["freshness"]
    lines.append(
        f"{'BEHIND' if f['behind'] else 'not behind'} ({f['calendar']} through session"
        f" {f['through_session']}): {f['reason']}"
    )
    b = d["betas"]
    if b["values"]:
        lines.append(f"betas of {b['calculation_date']} ({b['shape']} table):")
        for beta in b["values"]:
            value = "not computed" if beta["value"] is None else f"{beta['value']:.4f}"
            extra = (
                f"  r2 {beta['r_squared']:.3f}, {beta['observations']} obs"
                if beta["r_squared"] is not None
                else ""
            )
            lines.append(f"  {beta['factor']:<22} {value:>12}{extra}")
        if b["waiting_for"]:
            lines.append(
                f"  next betas wait for reference ETF prices: {', '.join(b['waiting_for'])}"
            )
    else:
        lines.append(f"betas: none: {b['absent']}")
    if d["newest_bars"]:
        lines.append("newest bars:")
        lines.append(
            f"  {'date':<10} {'open':>12} {'high':>12} {'low':>12} {'close':>12}"
            f" {'adj close':>12} {'volume':>14}"
        )
        for bar in d["newest_bars"]:
            cells = [bar[c] for c in ("open_price", "high_price", "low_price", "close_price")]
            cells.append(bar["adj_close_price"])
            lines.append(
                f"  {bar['price_date']:<10} "
                + " ".join(f"{'' if v is None else v:>12}" for v in cells)
                + f" {'' if bar['volume'] is None else bar['volume']:>14}"
            )
    else:
        lines.append("newest bars: none stored")
    lines.append(f"jobs: {d['jobs_total']} (latest first)")
    for j in d["jobs"]:
        lines.append(f"  {j['job_id']}  {_job_line(j)}")
    return "\n".join(lines)


def _job_line(j: dict[str, Any]) -> str:
    when = j["completed_at"] or j["started_at"] or j["created_at"]
    return f"{j['kind']} {j['status']} ({j['priority']}, attempts {j['attempts']}) {when}" + (
        f"  error: {j['error']}" if j["error"] else ""
    )
