"""Tiingo end-of-day prices: `/tiingo/daily/{ticker}/prices`.

Raw `close` and split- and dividend-adjusted `adjClose` come in one call. `date` is the trading
date labelled as midnight UTC: its date part is taken as is (converting it to New York time would
move it to the previous day). The token goes in the Authorization header.
"""

from urllib.parse import quote

from worker.prices.base import (
    Bar,
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

NAME = "tiingo"


class TiingoSource(HttpSource):
    name = NAME

    async def fetch(self, symbol: str, window: Window) -> list[Bar]:
        reply = await self.get(
            f"{self._base_url}/tiingo/daily/{quote(symbol, safe='')}/prices",
            params={
                "startDate": window.start.isoformat(),
                "endDate": window.end.isoformat(),
                "resampleFreq": "daily",
            },
            headers={
                "Authorization": f"Token {self._secrets[0]}",
                "Accept": "application/json",
            },
        )
        try:
            rows = parse_prices(symbol, reply)
        except SourceError as exc:
            raise self.scrub(exc) from None
        return normalize(NAME, symbol, rows, window)


def parse_prices(symbol: str, reply: Reply) -> list[RawBar]:
    """The rows of a prices response, or a classified SourceError."""
    _check_allocation(reply)
    classify_status(NAME, reply)
    try:
        document = load_json(NAME, reply.body)
    except SourceError:
        if reply.status == 200:
            raise
        document = None
    if isinstance(document, dict) or reply.status != 200:
        raise _error(symbol, reply, document)
    rows = []
    for i, item in enumerate(expect(NAME, document, list, "the response")):
        item = expect(NAME, item, dict, f"row {i}")
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


def _check_allocation(reply: Reply) -> None:
    """Tiingo's quota messages ("run over your hourly request allocation", "... daily ...",
    "... monthly unique symbol request allocation"), sent with 429 and by some accounts with 200:
    the source pauses until the named period resets (UTC), unless Retry-After says otherwise."""
    text = reply.body[:2000].decode("utf-8", "replace").lower()
    if "allocation" not in text or reply.status not in (200, 429):
        return
    period = quota_period(text)
    wait = retry_after_s(reply.retry_after)
    if wait is None and period is not None:
        wait = seconds_until_next(period)
    raise RateLimited(NAME, f"request allocation used up ({excerpt(reply.body)})", wait)


def _error(symbol: str, reply: Reply, document: object) -> SourceError:
    detail = document.get("detail") if isinstance(document, dict) else None
    said = excerpt(detail if isinstance(detail, str) else reply.body) or "no body"
    if isinstance(detail, str) and "not found" in detail.lower():
        # Tiingo's own answer: 404 {"detail":"Error: Ticker 'ZZZZ' not found"}
        return SymbolNotFound(NAME, f"unknown ticker {symbol} (HTTP {reply.status}: {said})")
    if reply.status == 404:
        return foreign_404(NAME, reply)
    if reply.status in (401, 403) or "token" in said.lower():
        return SourceAuthError(
            NAME, f"token rejected (HTTP {reply.status}: {said}); check TIINGO_API_KEY"
        )
    return PermanentSourceError(NAME, f"request refused (HTTP {reply.status}: {said})")
