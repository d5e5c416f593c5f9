"""Financial Modeling Prep, the `/stable/` end-of-day endpoint:
`/stable/historical-price-eod/full?symbol=&from=&to=`.

A flat JSON array, newest first, without an adjusted close (that is a separate, paid-per-call
endpoint), so `adj_close_price` stays NULL unless a row carries `adjClose` (the legacy v3 shape,
`{"symbol":..,"historical":[..]}`, is read too). Errors come as `{"Error Message": ...}`,
sometimes with HTTP 200. FMP takes its key only in the query string: URLs are never logged by
this code, httpx's own URL log is masked (see worker/prices/http.py), and error messages are
scrubbed of the key.
"""

from worker.prices.base import (
    Bar,
    InvalidData,
    PermanentSourceError,
    RateLimited,
    RawBar,
    Reply,
    SourceAuthError,
    SourceError,
    SymbolNotFound,
    Window,
    classify_status,
    excerpt,
    expect,
    foreign_404,
    iso_date,
    quota_period,
    retry_after_s,
    seconds_until_next,
)
from worker.prices.http import HttpSource
from worker.prices.validate import load_json, normalize

NAME = "fmp"
PLAN_ERRORS = (
    "legacy endpoint",
    "premium",
    "restricted endpoint",
    "exclusive endpoint",
    "special endpoint",
)


class FmpSource(HttpSource):
    name = NAME

    async def fetch(self, symbol: str, window: Window) -> list[Bar]:
        reply = await self.get(
            f"{self._base_url}/stable/historical-price-eod/full",
            params={
                "symbol": symbol,
                "from": window.start.isoformat(),
                "to": window.end.isoformat(),
                "apikey": self._secrets[0],
            },
            headers={"Accept": "application/json"},
        )
        try:
            rows = parse_eod(symbol, reply)
        except SourceError as exc:
            raise self.scrub(exc) from None
        return normalize(NAME, symbol, rows, window)


def parse_eod(symbol: str, reply: Reply) -> list[RawBar]:
    """The rows of an end-of-day response, or a classified SourceError."""
    message = _error_message(reply)
    if message is not None and "limit reach" in message.lower():
        # No Retry-After in the measured answers: the quota is daily on the free plan (unless
        # the message names another period), so pause until it resets at the next UTC period.
        wait = retry_after_s(reply.retry_after)
        if wait is None:
            wait = seconds_until_next(quota_period(message) or "day")
        raise RateLimited(NAME, f"quota used up ({message})", wait)
    classify_status(NAME, reply)
    if message is not None or reply.status != 200:
        raise _error(symbol, reply, message)
    document = load_json(NAME, reply.body)
    if isinstance(document, dict):
        if not document:
            return []  # the legacy endpoint's answer for an unknown symbol
        document = document.get("historical", document)
        if isinstance(document, dict):
            raise InvalidData(NAME, "unexpected response shape: an object without 'historical'")
    rows = []
    for i, item in enumerate(expect(NAME, document, list, "the response")):
        item = expect(NAME, item, dict, f"row {i}")
        row_symbol = item.get("symbol")
        if row_symbol is not None and str(row_symbol).upper() != symbol.upper():
            raise InvalidData(
                NAME, f"row {i} is for {excerpt(str(row_symbol), 20)!r}, not {symbol}"
            )
        rows.append(
            RawBar(
                price_date=iso_date(NAME, item.get("date"), f"row {i}"),
                open=item.get("open"),
                high=item.get("high"),
                low=item.get("low"),
                close=item.get("close"),
                adj_close=item.get("adjClose"),
                volume=item.get("volume"),
            )
        )
    return rows


def _error_message(reply: Reply) -> str | None:
    """The text of an `{"Error Message": ...}` body, whatever the status."""
    if b"Error Message" not in reply.body[:4096]:
        return None
    try:
        document = load_json(NAME, reply.body)
    except SourceError:
        return excerpt(reply.body)
    if isinstance(document, dict) and isinstance(document.get("Error Message"), str):
        return excerpt(document["Error Message"], 200)
    return None


def _is_fmp_error(reply: Reply) -> bool:
    """FMP's own JSON error shape: `{"Error Message": "..."}`."""
    try:
        document = load_json(NAME, reply.body)
    except SourceError:
        return False
    return isinstance(document, dict) and isinstance(document.get("Error Message"), str)


def _error(symbol: str, reply: Reply, message: str | None) -> SourceError:
    said = message or excerpt(reply.body) or "no body"
    lowered = said.lower()
    if reply.status == 401 or "api key" in lowered:
        return SourceAuthError(
            NAME, f"API key rejected (HTTP {reply.status}: {said}); check FMP_API_KEY"
        )
    if reply.status in (402, 403) or any(p in lowered for p in PLAN_ERRORS):
        return SourceAuthError(
            NAME, f"the plan does not cover this request (HTTP {reply.status}: {said})"
        )
    if reply.status == 404:
        if _is_fmp_error(reply):
            return SymbolNotFound(NAME, f"unknown symbol {symbol} (HTTP 404: {said})")
        return foreign_404(NAME, reply)
    return PermanentSourceError(NAME, f"request refused (HTTP {reply.status}: {said})")
