"""Polygon.io (Massive) aggregates v2: `/v2/aggs/ticker/{T}/range/1/day/{from}/{to}`.

`adjusted=true` adjusts for splits only; there is no dividend-adjusted close, so
`adj_close_price` stays NULL. Bars are stamped at 00:00 America/New_York in Unix milliseconds;
volume arrives as a JSON float, often in exponent form (`1.12117471e+08`). The API key goes in
the Authorization header, never in the URL.
"""

from dataclasses import dataclass
from datetime import date
from urllib.parse import quote
from zoneinfo import ZoneInfo

from worker.core.symbols import InvalidSymbolError, normalize_symbol
from worker.prices.base import (
    Bar,
    InvalidData,
    PermanentSourceError,
    RawBar,
    Reply,
    SourceAuthError,
    SourceError,
    TransientSourceError,
    Window,
    classify_status,
    excerpt,
    expect,
    local_date,
)
from worker.prices.http import (
    ErrorWords,
    HttpSource,
    Page,
    Request,
    error_for_status,
    error_text,
    json_or_none,
    said,
)
from worker.prices.spelling import host_spellings
from worker.prices.validate import load_json, normalize

NAME = "polygon"
NEW_YORK = ZoneInfo("America/New_York")
WORDS = ErrorWords(
    NAME,
    key_setting="POLYGON_API_KEY",
    noun="ticker",
    plan="not entitled to this data",
    plan_hint="; the plan may not cover it",
)


class PolygonSource(HttpSource):
    name = NAME

    # One year of daily bars is one page; a chain longer than this is a provider bug or a loop.
    max_pages = 20

    def request(self, symbol: str, window: Window) -> Request:
        return Request(
            # `:` unescaped: Polygon's own spelling of indices and pairs (I:SPX, C:EURUSD).
            f"{self._base_url}/v2/aggs/ticker/{quote(symbol, safe=':')}/range/1/day/"
            f"{window.start.isoformat()}/{window.end.isoformat()}",
            params={"adjusted": "true", "sort": "asc", "limit": 50000},
            headers=self._headers(),
        )

    def parse(self, symbol: str, reply: Reply) -> Page:
        rows, next_url = parse_aggs(symbol, reply)
        if next_url is None:
            return Page(rows)
        # The key travels in a header: never send it to a host other than the configured one.
        if not next_url.startswith(f"{self._base_url}/"):
            raise InvalidData(NAME, "next_url points outside the configured POLYGON_BASE_URL")
        return Page(rows, Request(next_url, headers=self._headers()))

    async def fetch_grouped(self, day: date) -> "GroupedDay":
        """Every US ticker's bar of session `day` in one request (one slot of the rate limit):
        the bulk refresh (worker/jobs/bulk.py). Grouped daily is split-adjusted like the aggregates."""
        reply = await self.get(
            f"{self._base_url}/v2/aggs/grouped/locale/us/market/stocks/{day.isoformat()}",
            params={"adjusted": "true", "include_otc": "false"},
            headers=self._headers(),
        )
        try:
            return parse_grouped(day, reply)
        except SourceError as exc:
            raise self.scrub(exc) from None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._secrets[0]}", "Accept": "application/json"}


def parse_aggs(symbol: str, reply: Reply) -> tuple[list[RawBar], str | None]:
    """The bars of one aggregates page and its `next_url`, or a classified SourceError."""
    classify_status(NAME, reply)
    if reply.status != 200:
        raise _error(symbol, reply)
    document = expect(NAME, load_json(NAME, reply.body), dict, "the response")
    status = document.get("status")
    if status not in ("OK", "DELAYED"):
        text = error_text(document, "error", "message") or excerpt(str(status))
        if status == "NOT_AUTHORIZED":
            if _too_early(text):
                raise _today_not_ready(reply.status, text)
            raise SourceAuthError(NAME, f"{WORDS.plan} ({text})")
        raise PermanentSourceError(NAME, f"request refused (status {text})")
    results = document.get("results")
    rows: list[RawBar] = []
    for i, item in enumerate(expect(NAME, results, list, "'results'") if results else []):
        item = expect(NAME, item, dict, f"results[{i}]")
        stamp_ms = item.get("t")
        if not isinstance(stamp_ms, int) or isinstance(stamp_ms, bool):
            raise InvalidData(NAME, f"results[{i}].t {str(stamp_ms)[:40]!r} is not milliseconds")
        rows.append(
            RawBar(
                price_date=local_date(NAME, stamp_ms // 1000, NEW_YORK),
                open=item.get("o"),
                high=item.get("h"),
                low=item.get("l"),
                close=item.get("c"),
                adj_close=None,
                volume=item.get("v"),
            )
        )
    next_url = document.get("next_url")
    if next_url is not None and not isinstance(next_url, str):
        raise InvalidData(NAME, "unexpected response shape: 'next_url' is not a string")
    return rows, next_url or None


def _error(symbol: str, reply: Reply) -> SourceError:
    document = json_or_none(NAME, reply.body)
    # Polygon's error text is `error` (401, 429) or `message` (403).
    text = said(reply, error_text(document, "error", "message", "status"))
    too_early = reply.status == 403 and _too_early(text)
    return error_for_status(
        WORDS,
        symbol,
        reply,
        text,
        not_found=reply.status == 404 and _is_polygon_error(document),
        special=_today_not_ready(403, text) if too_early else None,
        key_rejected=reply.status == 401,
        plan_refused=reply.status == 403,
    )


def _is_polygon_error(document: object) -> bool:
    """Polygon's own JSON error shape: `{"status": "...", "request_id": .., "message"|"error"}`."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("status"), str)
        and any(key in document for key in ("request_id", "message", "error"))
    )


def _too_early(message: str) -> bool:
    """The free plan's 403 for a window that includes today: "Attempted to request today's data
    before end of day". Not a plan problem: the same request works after the close."""
    lowered = message.lower()
    return "today's data" in lowered or "before end of day" in lowered


def _today_not_ready(status: int, text: str) -> TransientSourceError:
    return TransientSourceError(
        NAME, f"today's data is not available before the end of the day (HTTP {status}: {text})"
    )


# --- grouped daily: /v2/aggs/grouped/locale/us/market/stocks/{date} -----------------------------
# The aggregates' fields plus the ticker in `T`; `t` is the session's close in Unix milliseconds
# (16:00 New York), so a bar's date is `t`'s date in New York, which must be the requested day. A
# day without trading answers `resultsCount: 0`.


@dataclass(frozen=True)
class GroupedDay:
    day: date
    bars: dict[str, Bar]  # by host spelling of each ticker that validation passed
    skipped: int  # tickers left out: a spelling we cannot store, or an invalid bar


def parse_grouped(day: date, reply: Reply) -> GroupedDay:
    """The day's bars by ticker, or a classified SourceError."""
    classify_status(NAME, reply)
    if reply.status != 200:
        document = json_or_none(NAME, reply.body)
        text = said(reply, error_text(document, "error", "message", "status"))
        if reply.status == 401:
            raise SourceAuthError(
                NAME, f"API key rejected (HTTP 401: {text}); check POLYGON_API_KEY"
            )
        if reply.status == 403:
            raise SourceAuthError(NAME, f"not entitled to grouped daily bars (HTTP 403: {text})")
        raise PermanentSourceError(
            NAME, f"grouped daily request refused (HTTP {reply.status}: {text})"
        )
    document = expect(NAME, load_json(NAME, reply.body), dict, "the response")
    status = document.get("status")
    if status not in ("OK", "DELAYED"):
        text = error_text(document, "error", "message") or excerpt(str(status))
        raise PermanentSourceError(NAME, f"grouped daily request refused (status {text})")
    results = document.get("results") or []
    window = Window(day, day)
    bars: dict[str, Bar] = {}
    skipped = 0
    for i, item in enumerate(expect(NAME, results, list, "'results'")):
        item = expect(NAME, item, dict, f"results[{i}]")
        ticker = item.get("T")
        stamp_ms = item.get("t")
        if not isinstance(stamp_ms, int) or isinstance(stamp_ms, bool):
            raise InvalidData(NAME, f"results[{i}].t {str(stamp_ms)[:40]!r} is not milliseconds")
        stamped = local_date(NAME, stamp_ms // 1000, NEW_YORK)
        if stamped != day:
            raise InvalidData(
                NAME, f"results[{i}] is stamped {stamped.isoformat()}, not {day.isoformat()}"
            )
        # Polygon's spelling (BRK.B, I:SPX) back to the host spellings it may stand for (BRK.B,
        # BRK-B, BRK/B; ^SPX): the store keeps those in symbol_universe.
        names = (
            [s for s in host_spellings(NAME, ticker) if _storable(s)]
            if isinstance(ticker, str)
            else []
        )
        if not names:
            skipped += 1  # e.g. "KIMpL": a spelling our symbols cannot have
            continue
        raw = RawBar(
            day, item.get("o"), item.get("h"), item.get("l"), item.get("c"), None, item.get("v")
        )
        try:
            valid = normalize(NAME, names[0], [raw], window).bars
        except SourceError:
            valid = []
        if len(valid) != 1:
            skipped += 1  # one bad bar must not cost the whole market's day
            continue
        for name in names:
            bars[name] = valid[0]
    return GroupedDay(day, bars, skipped)


def _storable(ticker: str) -> bool:
    try:
        return normalize_symbol(ticker) == ticker
    except InvalidSymbolError:
        return False
