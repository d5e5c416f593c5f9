"""Tiingo end-of-day prices: `/tiingo/daily/{ticker}/prices`.

Raw `close` and split- and dividend-adjusted `adjClose` come in one call. `date` is the trading
date labelled as midnight UTC: its date part is taken as is (converting it to New York time would
move it to the previous day). The token goes in the Authorization header.
"""

from urllib.parse import quote

from worker.prices.base import (
    RawBar,
    Reply,
    SourceError,
    Window,
    classify_status,
    eod_rows,
)
from worker.prices.http import (
    ErrorWords,
    HttpSource,
    Page,
    Request,
    error_for_status,
    error_text,
    quota_used_up,
    said,
)
from worker.prices.validate import load_json

NAME = "tiingo"
WORDS = ErrorWords(NAME, key_setting="TIINGO_API_KEY", noun="ticker", credential="token")


class TiingoSource(HttpSource):
    name = NAME

    def request(self, symbol: str, window: Window) -> Request:
        return Request(
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

    def parse(self, symbol: str, reply: Reply) -> Page:
        return Page(parse_prices(symbol, reply))


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
    return eod_rows(NAME, document)


def _check_allocation(reply: Reply) -> None:
    """Tiingo's quota messages ("run over your hourly request allocation", "... daily ...",
    "... monthly unique symbol request allocation"), sent with 429 and by some accounts with 200:
    the source pauses until the named period resets (UTC), unless Retry-After says otherwise."""
    text = reply.body[:2000].decode("utf-8", "replace").lower()
    if "allocation" not in text or reply.status not in (200, 429):
        return
    raise quota_used_up(NAME, reply, f"request allocation used up ({said(reply)})", text)


def _error(symbol: str, reply: Reply, document: object) -> SourceError:
    detail = error_text(document, "detail")
    text = said(reply, detail)
    return error_for_status(
        WORDS,
        symbol,
        reply,
        text,
        # Tiingo's own answer: 404 {"detail":"Error: Ticker 'ZZZZ' not found"}
        not_found=detail is not None and "not found" in detail.lower(),
        key_rejected=reply.status in (401, 403) or "token" in text.lower(),
    )
