"""Polygon.io (Massive) aggregates v2: `/v2/aggs/ticker/{T}/range/1/day/{from}/{to}`.

`adjusted=true` adjusts for splits only; there is no dividend-adjusted close, so
`adj_close_price` stays NULL. Bars are stamped at 00:00 America/New_York in Unix milliseconds;
volume arrives as a JSON float, often in exponent form (`1.12117471e+08`). The API key goes in
the Authorization header, never in the URL.
"""

from urllib.parse import quote
from zoneinfo import ZoneInfo

from worker.prices.base import (
    Bar,
    InvalidData,
    PermanentSourceError,
    RawBar,
    Reply,
    SourceAuthError,
    SourceError,
    SymbolNotFound,
    TransientSourceError,
    Window,
    classify_status,
    excerpt,
    expect,
    foreign_404,
    local_date,
)
from worker.prices.http import HttpSource
from worker.prices.validate import load_json, normalize

NAME = "polygon"
NEW_YORK = ZoneInfo("America/New_York")
# One year of daily bars is one page; a chain longer than this is a provider bug or a loop.
MAX_PAGES = 20


class PolygonSource(HttpSource):
    name = NAME

    async def fetch(self, symbol: str, window: Window) -> list[Bar]:
        url = (
            f"{self._base_url}/v2/aggs/ticker/{quote(symbol, safe='')}/range/1/day/"
            f"{window.start.isoformat()}/{window.end.isoformat()}"
        )
        params: dict[str, str | int] | None = {"adjusted": "true", "sort": "asc", "limit": 50000}
        headers = {"Authorization": f"Bearer {self._secrets[0]}", "Accept": "application/json"}
        rows: list[RawBar] = []
        for _ in range(MAX_PAGES):
            reply = await self.get(url, params=params, headers=headers)
            try:
                page, next_url = parse_aggs(symbol, reply)
            except SourceError as exc:
                raise self.scrub(exc) from None
            rows.extend(page)
            if next_url is None:
                return normalize(NAME, symbol, rows, window)
            # The key travels in a header: never send it to a host other than the configured one.
            if not next_url.startswith(f"{self._base_url}/"):
                raise InvalidData(NAME, "next_url points outside the configured POLYGON_BASE_URL")
            url, params = next_url, None
        raise InvalidData(NAME, f"more than {MAX_PAGES} pages of daily bars for {symbol}")


def parse_aggs(symbol: str, reply: Reply) -> tuple[list[RawBar], str | None]:
    """The bars of one aggregates page and its `next_url`, or a classified SourceError."""
    classify_status(NAME, reply)
    if reply.status != 200:
        raise _error(symbol, reply)
    document = expect(NAME, load_json(NAME, reply.body), dict, "the response")
    status = document.get("status")
    if status not in ("OK", "DELAYED"):
        said = excerpt(str(document.get("error") or document.get("message") or status))
        if status == "NOT_AUTHORIZED":
            if _too_early(said):
                raise _today_not_ready(reply.status, said)
            raise SourceAuthError(NAME, f"not entitled to this data ({said})")
        raise PermanentSourceError(NAME, f"request refused (status {said})")
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
    said = _message(reply)
    if reply.status == 401:
        return SourceAuthError(NAME, f"API key rejected (HTTP 401: {said}); check POLYGON_API_KEY")
    if reply.status == 403 and _too_early(said):
        return _today_not_ready(403, said)
    if reply.status == 403:
        return SourceAuthError(
            NAME, f"not entitled to this data (HTTP 403: {said}); the plan may not cover it"
        )
    if reply.status == 404:
        if _is_polygon_error(reply):
            return SymbolNotFound(NAME, f"unknown ticker {symbol} (HTTP 404: {said})")
        return foreign_404(NAME, reply)
    return PermanentSourceError(NAME, f"request refused (HTTP {reply.status}: {said})")


def _is_polygon_error(reply: Reply) -> bool:
    """Polygon's own JSON error shape: `{"status": "...", "request_id": .., "message"|"error"}`."""
    try:
        document = load_json(NAME, reply.body)
    except SourceError:
        return False
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


def _today_not_ready(status: int, said: str) -> TransientSourceError:
    return TransientSourceError(
        NAME, f"today's data is not available before the end of the day (HTTP {status}: {said})"
    )


def _message(reply: Reply) -> str:
    """Polygon's error text: `error` (401, 429) or `message` (403), else the body itself."""
    try:
        document = load_json(NAME, reply.body)
    except SourceError:
        document = None
    if isinstance(document, dict):
        for key in ("error", "message", "status"):
            if isinstance(document.get(key), str) and document[key]:
                return excerpt(document[key])
    return excerpt(reply.body) or "no body"
