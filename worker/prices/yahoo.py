"""Yahoo Finance chart API (`/v8/finance/chart/{symbol}`): no key, split- and dividend-adjusted
`adjclose` next to a split-adjusted `close`.

Dates are the trading date in the exchange's own time zone (`meta.exchangeTimezoneName`), never
the UTC date and never `meta.gmtoffset` (the offset at request time, not at the bar's time).
"""

from datetime import UTC, datetime, time, timedelta
from typing import NamedTuple
from urllib.parse import quote
from zoneinfo import ZoneInfo

import structlog

from worker.prices.base import (
    InvalidData,
    NoData,
    RateLimited,
    RawBar,
    Reply,
    SourceBlocked,
    SourceError,
    Window,
    classify_status,
    excerpt,
    expect,
    foreign_404,
    local_date,
    looks_like_html,
)
from worker.prices.http import ErrorWords, HttpSource, Page, Request, error_for_status, said
from worker.prices.validate import load_json

log = structlog.get_logger()

NAME = "yahoo"
# Yahoo refuses obvious non-browser clients; a browser-like User-Agent is the documented minimum.
HEADERS = {
    "User-Agent": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    ),
    "Accept": "application/json",
}
MINOR_UNIT_CURRENCIES = ("GBp", "GBX", "ZAc", "ILA")
WORDS = ErrorWords(NAME)


class YahooSource(HttpSource):
    name = NAME

    def request(self, symbol: str, window: Window) -> Request:
        # A day of margin on both sides (exchanges far from UTC stamp bars on the previous or
        # next UTC day); the exact window is applied by the trading date afterwards.
        period1 = datetime.combine(window.start - timedelta(days=1), time(), UTC)
        period2 = datetime.combine(window.end + timedelta(days=2), time(), UTC)
        return Request(
            f"{self._base_url}/v8/finance/chart/{quote(symbol, safe='')}",
            params={
                "period1": int(period1.timestamp()),
                "period2": int(period2.timestamp()),
                "interval": "1d",
                "events": "div,splits",
            },
            headers=HEADERS,
        )

    def parse(self, symbol: str, reply: Reply) -> Page:
        rows, currency, asset_type = parse_chart(symbol, reply)
        if currency in MINOR_UNIT_CURRENCIES:
            log.warning("price_currency_minor_unit", source=NAME, symbol=symbol, currency=currency)
        return Page(rows, asset_type=asset_type)


class Chart(NamedTuple):
    """What a chart response says: its rows, `meta.currency` and `meta.instrumentType`."""

    rows: list[RawBar]
    currency: str | None
    asset_type: str | None = None


def parse_chart(symbol: str, reply: Reply) -> Chart:
    """The rows of a chart response and its meta, or a classified SourceError."""
    if reply.status != 429 and not looks_like_html(reply) and reply.body.lstrip()[:1] != b"{":
        text = excerpt(reply.body)
        # Yahoo's rate limit answer is plain text, sometimes with a 200 or a 5xx status.
        if "too many requests" in text.lower():
            raise RateLimited(NAME, f"rate limited (HTTP {reply.status}: {text})", None)
    classify_status(NAME, reply)
    if reply.status != 200 and reply.body.lstrip()[:1] != b"{":
        text = reply.body.decode("utf-8", "replace").lower()
        if reply.status == 404 and "timestamp data missing" in text:
            raise NoData(NAME, f"no daily prices for {symbol} in the requested range (HTTP 404)")
        raise _error(symbol, reply, None)
    document = load_json(NAME, reply.body)
    envelope = (
        document.get("chart", document.get("finance")) if isinstance(document, dict) else None
    )
    if reply.status == 404 and not isinstance(envelope, dict):
        raise foreign_404(NAME, reply)  # JSON, but not Yahoo's envelope (a gateway's 404)
    document = expect(NAME, document, dict, "the response")
    envelope = expect(NAME, envelope, dict, "'chart'")
    error = envelope.get("error")
    if error is not None or reply.status != 200:
        raise _error(symbol, reply, error)
    results = envelope.get("result")
    if results is None or results == []:
        raise NoData(NAME, f"Yahoo returned no result for {symbol}")
    result = expect(NAME, expect(NAME, results, list, "'chart.result'")[0], dict, "result[0]")
    meta = expect(NAME, result.get("meta", {}), dict, "'meta'")
    currency = meta.get("currency") if isinstance(meta.get("currency"), str) else None
    kind = meta.get("instrumentType")
    # EQUITY, ETF, INDEX, CURRENCY, CRYPTOCURRENCY ...; the host's asset_type is VARCHAR(20).
    asset_type = kind.strip()[:20] if isinstance(kind, str) and kind.strip() else None
    timestamps = result.get("timestamp")
    if timestamps is None:
        # A valid symbol with no bars in the range: no timestamp key at all.
        return Chart([], currency, asset_type)
    timestamps = expect(NAME, timestamps, list, "'timestamp'")
    indicators = expect(NAME, result.get("indicators", {}), dict, "'indicators'")
    quote_block = _first(indicators.get("quote"), "'indicators.quote'")
    adj_block = _first(indicators.get("adjclose"), "'indicators.adjclose'")
    series = {
        name: _series(block, key, len(timestamps))
        for name, block, key in (
            ("open", quote_block, "open"),
            ("high", quote_block, "high"),
            ("low", quote_block, "low"),
            ("close", quote_block, "close"),
            ("adj_close", adj_block, "adjclose"),
            ("volume", quote_block, "volume"),
        )
    }
    if not timestamps:
        return Chart([], currency, asset_type)
    zone = _zone(meta.get("exchangeTimezoneName"))
    rows = [
        RawBar(
            price_date=local_date(NAME, stamp, zone),
            open=series["open"][i],
            high=series["high"][i],
            low=series["low"][i],
            close=series["close"][i],
            adj_close=series["adj_close"][i],
            volume=series["volume"][i],
        )
        for i, stamp in enumerate(timestamps)
    ]
    return Chart(rows, currency, asset_type)


def _error(symbol: str, reply: Reply, error: object) -> SourceError:
    """Yahoo's own error is an object inside the `chart` (or `finance`) envelope."""
    code = description = ""
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        description = str(error.get("description") or "")
    text = said(reply, excerpt(f"{code}: {description}") if code or description else None)
    special: SourceError | None = None
    if reply.status == 400 and "doesn't exist" in description.lower():
        special = NoData(NAME, f"no daily prices for {symbol} in the requested range ({text})")
    elif reply.status in (401, 403) or code == "Unauthorized":
        # Cookie/crumb or IP-level refusal: it affects every symbol, so the source pauses.
        special = SourceBlocked(NAME, f"Yahoo refused the request (HTTP {reply.status}: {text})")
    # Yahoo's own not-found answer: {"chart":{"error":{"code":"Not Found",..}}}
    return error_for_status(
        WORDS, symbol, reply, text, not_found=code == "Not Found", special=special
    )


def _first(blocks: object, what: str) -> dict[str, object]:
    """The first element of a list of objects (`quote`, `adjclose`); {} when absent or empty."""
    if blocks is None:
        return {}
    blocks = expect(NAME, blocks, list, what)
    return expect(NAME, blocks[0], dict, f"{what}[0]") if blocks else {}


def _series(block: dict[str, object], key: str, length: int) -> list[object]:
    values = block.get(key)
    if values is None:
        return [None] * length
    values = expect(NAME, values, list, f"'{key}'")
    if len(values) != length:
        raise InvalidData(
            NAME, f"unexpected response shape: '{key}' has {len(values)} values for {length} dates"
        )
    return values


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise InvalidData(NAME, "the response has no meta.exchangeTimezoneName to date the bars")
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise InvalidData(NAME, f"unknown exchange time zone {name[:60]!r}") from None
