"""What the HTTP sources share: the fetch skeleton (request -> GET -> parse -> scrub ->
normalize), one GET that returns a `Reply` or a classified error, the mapping of a refused
request to an error class, and the guard that keeps API keys out of logs and error messages.

A source module says only what differs: the request it sends, how it reads a reply, and the few
hooks of `error_for_status` where its provider answers differently."""

import asyncio
import dataclasses
import logging
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import httpx

from worker.core.logs import redact_text
from worker.core.metrics import Metrics
from worker.prices.base import (
    Bars,
    InvalidData,
    PermanentSourceError,
    PriceSource,
    RateLimited,
    RawBar,
    Reply,
    SourceAuthError,
    SourceError,
    SourceUnreachable,
    SymbolNotFound,
    TransientSourceError,
    Window,
    excerpt,
    foreign_404,
    quota_period,
    retry_after_s,
    seconds_until_next,
)
from worker.prices.ratelimit import SourceGate
from worker.prices.spelling import provider_symbol
from worker.prices.validate import load_json, normalize

E = TypeVar("E", bound=SourceError)

# One year of daily bars is about 30 KB; anything far bigger is not what we asked for.
MAX_BODY_BYTES = 16 * 1024 * 1024
# Loggers that print request URLs: httpx logs each request's URL, query included, at INFO level.
# FMP only takes its key in the query string, so these get a filter that masks the keys.
URL_LOGGERS = ("httpx",)


class Request(NamedTuple):
    """One GET a source wants sent."""

    url: str
    params: Mapping[str, str | int] | None = None
    headers: Mapping[str, str] | None = None


class Page(NamedTuple):
    """What one reply held: its rows and, for a paged answer, the request for the next page."""

    rows: list[RawBar]
    next: Request | None = None
    asset_type: str | None = None  # what the provider calls the instrument, if it says


class HttpSource(PriceSource):
    """A source behind one HTTP API (base URL from the environment, so tests can redirect it).

    Subclasses say which `request` to send and how to `parse` a reply; `fetch` does the rest."""

    # More than one only for paged APIs; a longer chain is a provider bug or a loop.
    max_pages = 1

    def __init__(
        self,
        client: httpx.AsyncClient,
        gate: SourceGate,
        base_url: str,
        *,
        secret: str | None = None,
        request_timeout_s: float | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """`request_timeout_s` bounds each whole request (httpx's timeouts are per connect and
        per read: a server dripping bytes would hold the job forever); None: no bound."""
        self._client = client
        self._metrics = metrics or Metrics()
        self._request_timeout_s = request_timeout_s
        self._gate = gate
        self._base_url = base_url.rstrip("/")
        self._secrets: tuple[str, ...] = (secret,) if secret else ()

    @abstractmethod
    def request(self, symbol: str, window: Window) -> Request:
        """The first (usually only) GET for `symbol`'s bars in `window`."""

    @abstractmethod
    def parse(self, symbol: str, reply: Reply) -> Page:
        """The rows of one reply (and the next page's request), or a classified SourceError."""

    async def fetch(self, symbol: str, window: Window) -> Bars:
        # The provider is asked in its own spelling (BRK.B on Polygon, BRK-B elsewhere); the
        # bars come back under the host's symbol, exactly as it was enqueued.
        asked = provider_symbol(self.name, symbol)
        request = self.request(asked, window)
        rows: list[RawBar] = []
        asset_type: str | None = None
        for _ in range(self.max_pages):
            reply = await self.get(
                request.url, params=request.params, headers=request.headers, symbol=symbol
            )
            try:
                page = self.parse(asked, reply)
            except SourceError as exc:
                raise self.scrub(exc) from None
            rows.extend(page.rows)
            asset_type = asset_type or page.asset_type
            if page.next is None:
                bars = normalize(self.name, symbol, rows, window)
                return dataclasses.replace(bars, asset_type=asset_type) if asset_type else bars
            request = page.next
        raise InvalidData(self.name, f"more than {self.max_pages} pages of daily bars for {symbol}")

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        symbol: str | None = None,
    ) -> Reply:
        """One GET, after taking a request slot (the one reserved ahead for `symbol`'s job, if
        any); transport failures become TransientSourceError."""
        await self._gate.acquire(self.name, symbol)
        try:
            async with asyncio.timeout(self._request_timeout_s):
                return await self._get(url, params=params, headers=headers)
        except TimeoutError:  # the overall limit (asyncio's), not httpx's per-phase timeouts
            self._metrics.provider_request(self.name, "timeout")
            raise TransientSourceError(
                self.name, f"timed out (no complete response within {self._request_timeout_s:g} s)"
            ) from None

    async def _get(
        self,
        url: str,
        *,
        params: Mapping[str, str | int] | None,
        headers: Mapping[str, str] | None,
    ) -> Reply:
        try:
            async with self._client.stream("GET", url, params=params, headers=headers) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise TransientSourceError(
                            self.name, f"response larger than {MAX_BODY_BYTES} bytes, abandoned"
                        )
                self._metrics.provider_request(self.name, str(response.status_code))
                return Reply(
                    status=response.status_code,
                    body=bytes(body),
                    content_type=response.headers.get("content-type", ""),
                    retry_after=response.headers.get("retry-after"),
                    location=response.headers.get("location"),
                    url_path=response.request.url.path,
                )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self._metrics.provider_request(self.name, "error")
            host = httpx.URL(url).host
            raise SourceUnreachable(
                self.name, f"cannot connect to {host} ({_describe(exc)})"
            ) from None
        except httpx.TimeoutException as exc:
            self._metrics.provider_request(self.name, "timeout")
            raise TransientSourceError(self.name, f"timed out ({_describe(exc)})") from None
        except httpx.HTTPError as exc:
            self._metrics.provider_request(self.name, "error")
            raise TransientSourceError(self.name, f"request failed ({_describe(exc)})") from None

    def scrub(self, exc: E) -> E:
        """The same error with any API key masked (providers may echo request details)."""
        return scrub(exc, self._secrets)


def scrub(exc: E, secrets: Iterable[str]) -> E:
    """`exc` with the secrets (and any key-like query parameter) masked, by worker.core.logs'
    redact_text: one masking rule for log lines and error messages."""
    detail = redact_text(exc.detail, [s for s in secrets if s])
    if detail != exc.detail:
        exc.detail = detail
        exc.args = (f"{exc.source}: {detail}",)
    return exc


# --- the error side of a reply -----------------------------------------------------------------


@dataclass(frozen=True)
class ErrorWords:
    """How a source words its refusals (providers differ: "ticker" or "symbol", "token" or
    "API key"), so the messages stay the ones a person knows to act on."""

    source: str
    key_setting: str = ""  # the setting to check when the key is rejected
    noun: str = "symbol"
    credential: str = "API key"
    plan: str = "the plan does not cover this request"
    plan_hint: str = ""


def error_for_status(
    words: ErrorWords,
    symbol: str,
    reply: Reply,
    said: str,
    *,
    not_found: bool = False,
    special: SourceError | None = None,
    key_rejected: bool = False,
    plan_refused: bool = False,
) -> SourceError:
    """The error for a refused request (a status `classify_status` let through, or an error body),
    in this order: the provider's own not-found answer (`not_found`); any other 404, which says
    nothing about the symbol (`foreign_404`); the source's own `special` case; a rejected key; a
    plan that does not cover the request; else a permanent refusal. `said` is the error text."""
    source, status = words.source, reply.status
    if not_found:
        return SymbolNotFound(source, f"unknown {words.noun} {symbol} (HTTP {status}: {said})")
    if status == 404:
        return foreign_404(source, reply)
    if special is not None:
        return special
    if key_rejected:
        return SourceAuthError(
            source,
            f"{words.credential} rejected (HTTP {status}: {said}); check {words.key_setting}",
        )
    if plan_refused:
        return SourceAuthError(source, f"{words.plan} (HTTP {status}: {said}){words.plan_hint}")
    return PermanentSourceError(source, f"request refused (HTTP {status}: {said})")


def json_or_none(source: str, body: bytes) -> Any:
    """The decoded JSON body, or None when it is not JSON (an error page, a truncated body)."""
    try:
        return load_json(source, body)
    except SourceError:
        return None


def error_text(document: object, *keys: str, limit: int = 160) -> str | None:
    """The provider's own error text: the first non-empty string among `keys` of a JSON object."""
    if isinstance(document, dict):
        for key in keys:
            value = document.get(key)
            if isinstance(value, str) and value:
                return excerpt(value, limit)
    return None


def said(reply: Reply, text: str | None = None) -> str:
    """What a refusal said, for its message: the provider's error text, else the body."""
    return text or excerpt(reply.body) or "no body"


def quota_used_up(
    source: str, reply: Reply, detail: str, text: str, period: str | None = None
) -> RateLimited:
    """A used-up quota: the source pauses for Retry-After, else until the quota's period (named in
    `text`, else `period`) resets at the next UTC hour, day or month; else the default pause."""
    wait = retry_after_s(reply.retry_after)
    period = quota_period(text) or period
    if wait is None and period is not None:
        wait = seconds_until_next(period)
    return RateLimited(source, detail, wait)


def _describe(exc: Exception) -> str:
    # httpx's messages name the failure, not the URL; the type says which phase failed.
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


class MaskSecrets(logging.Filter):
    """Masks the given secrets in log records (attached to URL_LOGGERS while an Onboarder runs)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a key inside another is not half-hidden.
        self._secrets = tuple(sorted((s for s in secrets if s), key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix; let logging report it
            return True
        masked = redact_text(message, self._secrets)
        if masked != message:
            record.msg, record.args = masked, None
        return True

    def attach(self) -> None:
        for name in URL_LOGGERS:
            logging.getLogger(name).addFilter(self)

    def detach(self) -> None:
        for name in URL_LOGGERS:
            logging.getLogger(name).removeFilter(self)
