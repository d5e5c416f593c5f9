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
    InvalidData,
    RawBar,
    Reply,
    SourceError,
    Window,
    classify_status,
    eod_rows,
    excerpt,
)
from worker.prices.http import (
    ErrorWords,
    HttpSource,
    Page,
    Request,
    error_for_status,
    error_text,
    json_or_none,
    quota_used_up,
    said,
)
from worker.prices.validate import load_json

NAME = "fmp"
WORDS = ErrorWords(NAME, key_setting="FMP_API_KEY")
PLAN_ERRORS = (
    "legacy endpoint",
    "premium",
    "restricted endpoint",
    "exclusive endpoint",
    "special endpoint",
)


class FmpSource(HttpSource):
    name = NAME

    def request(self, symbol: str, window: Window) -> Request:
        return Request(
            f"{self._base_url}/stable/historical-price-eod/full",
            params={
                "symbol": symbol,
                "from": window.start.isoformat(),
                "to": window.end.isoformat(),
                "apikey": self._secrets[0],
            },
            headers={"Accept": "application/json"},
        )

    def parse(self, symbol: str, reply: Reply) -> Page:
        return Page(parse_eod(symbol, reply))


def parse_eod(symbol: str, reply: Reply) -> list[RawBar]:
    """The rows of an end-of-day response, or a classified SourceError."""
    message = _error_message(reply)
    if message is not None and "limit reach" in message.lower():
        # No Retry-After in the measured answers: the quota is daily on the free plan (unless
        # the message names another period), so pause until it resets at the next UTC period.
        raise quota_used_up(NAME, reply, f"quota used up ({message})", message, "day")
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
    return eod_rows(NAME, document, symbol)


def _error_message(reply: Reply) -> str | None:
    """The text of an `{"Error Message": ...}` body, whatever the status."""
    if b"Error Message" not in reply.body[:4096]:
        return None
    document = json_or_none(NAME, reply.body)
    if document is None:
        return excerpt(reply.body)
    return error_text(document, "Error Message", limit=200)


def _error(symbol: str, reply: Reply, message: str | None) -> SourceError:
    text = said(reply, message)
    lowered = text.lower()
    key_rejected = reply.status == 401 or "api key" in lowered
    plan_refused = reply.status in (402, 403) or any(p in lowered for p in PLAN_ERRORS)
    # FMP's own error shape is `{"Error Message": ...}`; one that names the key or the plan is
    # about the key or the plan, not the symbol.
    own_error = error_text(json_or_none(NAME, reply.body), "Error Message") is not None
    return error_for_status(
        WORDS,
        symbol,
        reply,
        text,
        not_found=reply.status == 404 and own_error and not (key_rejected or plan_refused),
        key_rejected=key_rejected,
        plan_refused=plan_refused,
    )
