"""The price-source interface: the window asked for, bars, replies, and the errors sources raise.

Every source classifies its own failures into these classes, and the onboarding job acts on the
class alone:
- `PermanentSourceError` (and its kinds): retrying cannot help; the job fails with the message.
- `TransientSourceError`: retried in-process, then by the queue's backoff.
- `RateLimited`: the whole source pauses (for every worker process); jobs are deferred.
- `SourceBlocked`: the source answered with a page meant for a browser (consent, challenge,
  outage); treated like a rate limit, with a longer pause.
`str()` of each is a message a person can act on, prefixed with the source's name. Messages
never contain an API key or a URL.
"""

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import NamedTuple, TypeVar

import structlog

from worker.core.errors import WorkerError

log = structlog.get_logger()


def ticks(value: Decimal | None) -> int | None:
    """A price in ten-thousandths (exact: validation quantized it to 4 decimals): how prices
    travel to the database, as int8 arrays."""
    return None if value is None else int(value.scaleb(4))


@dataclass(frozen=True)
class Window:
    """The trading dates asked for, both ends inclusive."""

    start: date
    end: date

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


class RawBar(NamedTuple):
    """One row as a provider sent it (Decimal, int, str or None values), before validation.

    Named tuples (not dataclasses) because a year is 252 of them per job: they build ~10x faster.
    """

    price_date: date
    open: object
    high: object
    low: object
    close: object
    adj_close: object
    volume: object


class Bar(NamedTuple):
    """One validated daily bar, ready for `symbol_prices_daily` (prices at 4 decimals)."""

    price_date: date
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    close: Decimal
    adj_close: Decimal | None
    volume: int | None


@dataclass(frozen=True)
class Bars:
    """What a source delivers: validated bars, oldest first, and the rows it skipped (invalid or
    without a close), counted by reason (`"close_price not positive"`: see validate.py)."""

    bars: list[Bar]
    skipped: dict[str, int] = field(default_factory=dict)
    # The provider's kind of instrument (Yahoo's instrumentType: EQUITY, ETF ...), if it says.
    asset_type: str | None = None


@dataclass(frozen=True)
class Reply:
    """An HTTP response as the parsers see it: pure data, so they can be tested and fuzzed."""

    status: int
    body: bytes
    content_type: str = ""
    retry_after: str | None = None
    location: str | None = None
    url_path: str = ""  # the request's URL path, without the query (which may carry a key)


class SourceError(WorkerError):
    """A source could not deliver bars for a symbol."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.source = source
        self.detail = detail


class PermanentSourceError(SourceError):
    """Retrying will not help (bad request, unsupported answer)."""


class SymbolNotFound(PermanentSourceError):
    """The source does not know the symbol."""


class NoData(PermanentSourceError):
    """The source knows nothing for the symbol in the window (no bars at all)."""


class SourceAuthError(PermanentSourceError):
    """The API key is missing, wrong, or its plan does not cover the request."""


class InvalidData(PermanentSourceError):
    """The answer arrived whole but its content is wrong (bad value, unexpected shape)."""


class TransientSourceError(SourceError):
    """Worth retrying: timeout, connection error, 5xx, a truncated or unparseable body."""


class SourceUnreachable(TransientSourceError):
    """No connection could be made (name resolution, refused, connect timeout): the provider
    cannot be reached from here (offline, DNS, a firewall)."""


class RateLimited(SourceError):
    """The source asks us to slow down; `retry_after_s` when it said how long."""

    def __init__(self, source: str, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(source, detail)
        self.retry_after_s = retry_after_s


class SourceBlocked(SourceError):
    """The source refuses automated clients for now (challenge, consent or outage page)."""


class SourcePaused(WorkerError):
    """Not a provider error: the source is paused, or the next request slot is too far away."""

    def __init__(
        self, source: str, delay_s: float, reason: str, *, rate_slot: bool = False
    ) -> None:
        super().__init__(f"{source} paused for {delay_s:.0f} s: {reason}")
        self.source = source
        self.delay_s = max(delay_s, 0.0)
        self.reason = reason
        # Not paused: only the next request slot is too far away (SourceGate.reserve_ahead).
        self.rate_slot = rate_slot


class PriceSource(ABC):
    """One provider of daily bars. `fetch` returns validated bars, oldest first, or raises."""

    name: str
    # False: the store only adds rows and never overwrites a stored one (generated data).
    replaces_stored: bool = True

    @abstractmethod
    async def fetch(self, symbol: str, window: Window) -> Bars: ...


# --- helpers shared by the HTTP parsers -------------------------------------------------------

_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_RETRY_AFTER_S = 31 * 86400.0
MAX_EPOCH_DIGITS = 11  # 10**11 s is about the year 5138: beyond it, a timestamp is garbage
T = TypeVar("T")


def excerpt(body: bytes | str, limit: int = 160) -> str:
    """A short single-line, printable excerpt of a body for an error message."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = _SPACE.sub(" ", _CONTROL.sub("", text[: limit * 4])).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def looks_like_html(reply: Reply) -> bool:
    if "html" in reply.content_type.lower():
        return True
    return reply.body.lstrip()[:1] == b"<"


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds (delta-seconds or HTTP-date), or None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def seconds_until_next(period: str, now: datetime | None = None) -> float:
    """Seconds until the next UTC hour, day or month starts (when a quota of that period resets)."""
    now = now or datetime.now(UTC)
    if period == "hour":
        nxt = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    elif period == "day":
        nxt = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    elif period == "month":
        first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return (nxt - now).total_seconds()


_QUOTA_PERIOD = re.compile(r"\b(hour|hourly|day|daily|month|monthly)\b")
_PERIOD_OF = {"hourly": "hour", "daily": "day", "monthly": "month"}


def quota_period(text: str) -> str | None:
    """The period a quota message names ("hourly", "per day", "monthly" ...): "hour", "day" or
    "month" (for seconds_until_next), or None."""
    match = _QUOTA_PERIOD.search(text.lower())
    return None if match is None else _PERIOD_OF.get(match.group(1), match.group(1))


def classify_status(source: str, reply: Reply) -> None:
    """The HTTP statuses every source treats alike: 429, 408 and 5xx, redirects, HTML pages."""
    status = reply.status
    if status == 429:
        raise RateLimited(
            source,
            f"rate limited (HTTP 429: {excerpt(reply.body) or 'no body'})",
            retry_after_s(reply.retry_after),
        )
    if status == 408 or status >= 500:
        raise TransientSourceError(
            source, f"server error (HTTP {status}: {excerpt(reply.body) or 'no body'})"
        )
    if 300 <= status < 400:
        target = _host(reply.location)
        raise SourceBlocked(
            source, f"redirected (HTTP {status}) to {target}, probably a consent or login page"
        )
    if looks_like_html(reply) and (200 <= status < 300 or status in (401, 403)):
        raise SourceBlocked(
            source,
            f"answered HTTP {status} with an HTML page instead of data "
            f"(a challenge, consent or outage page): {excerpt(reply.body, 80)!r}",
        )
    if not 100 <= status < 600:
        raise TransientSourceError(source, f"invalid HTTP status {status}")


def foreign_404(source: str, reply: Reply) -> "TransientSourceError":
    """A 404 that is not the provider's own not-found answer (a CDN, proxy or HTML page, or a
    wrong base URL path): it says nothing about the symbol, so it is transient, and logged with
    the URL path (never the query, which may carry a key) so a wrong base URL is easy to spot."""
    path = reply.url_path or "an unknown path"
    said = excerpt(reply.body, 80) or "no body"
    log.warning(
        "price_source_unexpected_404",
        source=source,
        path=path,
        content_type=reply.content_type,
        body=said,
        hint="a CDN or proxy error page, or a wrong base URL",
    )
    return TransientSourceError(
        source,
        f"HTTP 404 for {path} that is not {source}'s own not-found answer "
        f"(a CDN or proxy page, or a wrong base URL?): {said!r}",
    )


def _host(location: str | None) -> str:
    if not location:
        return "an unknown location"
    # Only the host: the rest of a URL may carry tokens.
    match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#]+)", location)
    return match.group(1).rsplit("@", 1)[-1] if match else "a relative location"


def expect(source: str, value: object, kind: type[T], what: str) -> T:
    """`value` if it is a `kind`, else InvalidData naming `what` (an unexpected response shape)."""
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise InvalidData(
        source,
        f"unexpected response shape: {what} is {type(value).__name__}, expected {kind.__name__}",
    )


def local_date(source: str, epoch_s: object, tz: tzinfo) -> date:
    """The calendar date in `tz` of a Unix time in seconds (int or integral Decimal)."""
    # Bounded before int(): int(Decimal("1E+999999")) would build a million-digit number.
    # adjusted() (the exponent of the leading digit), not abs(): abs() rounds in the decimal
    # context and overflows on an exponent like 1E+9991603373400.
    if (
        isinstance(epoch_s, Decimal)
        and epoch_s.is_finite()
        and epoch_s.adjusted() < MAX_EPOCH_DIGITS
    ):
        if epoch_s == epoch_s.to_integral_value():
            epoch_s = int(epoch_s)
    if not isinstance(epoch_s, int) or isinstance(epoch_s, bool):
        raise InvalidData(source, f"timestamp {str(epoch_s)[:40]!r} is not a whole number")
    try:
        return datetime.fromtimestamp(epoch_s, tz).date()
    except (OverflowError, OSError, ValueError):
        raise InvalidData(source, f"timestamp {epoch_s} is not a valid time") from None


_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:$|[T ])")


def iso_date(source: str, value: object, what: str) -> date:
    """`YYYY-MM-DD`, optionally followed by a time (`2023-01-03T00:00:00.000Z`): the date part."""
    match = _ISO_DATE.match(value) if isinstance(value, str) else None
    if match is not None:
        try:
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            pass
    raise InvalidData(source, f"{what} has date {str(value)[:40]!r}, expected YYYY-MM-DD")


def eod_rows(source: str, document: object, symbol: str | None = None) -> list[RawBar]:
    """A list of rows keyed `date`, `open`, `high`, `low`, `close`, `adjClose`, `volume` (Tiingo's
    and FMP's shape). With `symbol`, a row naming another symbol is InvalidData."""
    rows = []
    for i, item in enumerate(expect(source, document, list, "the response")):
        item = expect(source, item, dict, f"row {i}")
        row_symbol = item.get("symbol")
        if symbol is not None and row_symbol is not None:
            if str(row_symbol).upper() != symbol.upper():
                raise InvalidData(
                    source, f"row {i} is for {excerpt(str(row_symbol), 20)!r}, not {symbol}"
                )
        rows.append(
            RawBar(
                price_date=iso_date(source, item.get("date"), f"row {i}"),
                open=item.get("open"),
                high=item.get("high"),
                low=item.get("low"),
                close=item.get("close"),
                adj_close=item.get("adjClose"),
                volume=item.get("volume"),
            )
        )
    return rows
