"""Validation and normalisation of provider rows: the one place that decides what gets stored.

Rules (the README repeats them):
- Numbers are read as `Decimal` (JSON with `parse_float=Decimal`, CSV text straight to Decimal),
  never through a binary float. Text must be plain ASCII decimal notation (`-12.5`, `1.5e+08`):
  `Decimal()` alone would also take `1_000`, Arabic-Indic or full-width digits and `NaN`.
- Prices are rounded to 4 decimals with ROUND_HALF_EVEN (banker's rounding: ties go to the even
  last digit, so rounding errors do not drift one way over many values). A price must be finite,
  positive, and fit NUMERIC(12,4) (below 100,000,000) after rounding; one that rounds to 0.0000
  is refused too. Any violation fails the whole fetch, naming the date and column.
- Volume becomes an integer, rounded half-even (it arrives as `1.12117471e+08` from Polygon or
  fractional from Stooq); it must be finite, not negative, and fit BIGINT.
- A row without a close is skipped (logged); open, high, low, adj close and volume may be null.
- Rows outside the requested window are dropped; providers append live or extra bars.
- Duplicate dates in one response: the row that comes last in the response wins (Yahoo appends
  the live bar as a later duplicate of the same date).
"""

import json
import re
from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any

import structlog

from worker.prices.base import Bar, InvalidData, NoData, RawBar, TransientSourceError, Window

log = structlog.get_logger()

PRICE_QUANTUM = Decimal("0.0001")
PRICE_LIMIT = Decimal("100000000")  # NUMERIC(12,4) holds 8 digits before the point
BIGINT_MAX = 2**63 - 1
_ZERO = Decimal(0)
ROUNDING = ROUND_HALF_EVEN
# Wide enough for any value below the limits; immutable after creation.
_CONTEXT = Context(prec=40, rounding=ROUNDING)

COLUMNS = {
    "open": "open_price",
    "high": "high_price",
    "low": "low_price",
    "close": "close_price",
    "adj_close": "adj_close_price",
}


# Sign, digits with an optional point (or a point and digits), optional exponent: ASCII only.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TEXT_SPACE = " \t\r\n"


class ValueProblem(ValueError):
    """A single value that cannot be stored; the caller adds the date and column."""


def load_json(source: str, body: bytes) -> Any:
    """Decode a JSON body with every non-integer number as Decimal; a broken body is transient
    (a truncated or garbled transfer is the common cause)."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=Decimal)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, UnicodeDecodeError and over-long integers.
        raise TransientSourceError(
            source, f"malformed JSON in the response ({type(exc).__name__}: {str(exc)[:120]})"
        ) from None


def to_decimal(value: object) -> Decimal | None:
    """A provider value as Decimal; None, "" and "null" are missing. Raises ValueProblem."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueProblem(f"{value!r} is not a number")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        text = value.strip(_TEXT_SPACE)
        if text == "" or text.lower() == "null":
            return None
        if _DECIMAL_TEXT.fullmatch(text) is None:
            raise ValueProblem(f"{text[:40]!r} is not a number (plain ASCII decimal notation)")
        try:
            return Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only Decimal syntax
            raise ValueProblem(f"{text[:40]!r} is not a number") from None
    if isinstance(value, float):
        # Parsers never produce floats (that would lose the provider's decimal digits).
        raise ValueProblem(f"{value!r} arrived as a binary float")
    raise ValueProblem(f"a {type(value).__name__} is not a number")


def price(value: object) -> Decimal | None:
    """A price rounded to 4 decimals, or None when missing. Raises ValueProblem."""
    # Decimal first: it is what the JSON sources deliver, once per field of every row.
    number = value if value.__class__ is Decimal else to_decimal(value)
    if number is None:
        return None
    # The common case in one test: finite, positive, and fitting before and after rounding.
    if number.is_finite() and _ZERO < number < PRICE_LIMIT:
        rounded = number.quantize(PRICE_QUANTUM, ROUNDING, _CONTEXT)
        if _ZERO < rounded < PRICE_LIMIT:
            return rounded
    raise ValueProblem(_price_problem(number))


def _price_problem(number: Decimal) -> str:
    if not number.is_finite():
        return f"{number} is not a finite number"
    if number <= _ZERO:
        return f"{number} is not positive"
    if number >= PRICE_LIMIT:
        return f"{number} does not fit NUMERIC(12,4) (at most 99999999.9999)"
    if number.quantize(PRICE_QUANTUM, ROUNDING, _CONTEXT) >= PRICE_LIMIT:
        return f"{number} does not fit NUMERIC(12,4) once rounded to 4 decimals"
    return f"{number} rounds to 0.0000 at 4 decimals"


def volume(value: object) -> int | None:
    """A volume as an integer, or None when missing. Raises ValueProblem."""
    if value.__class__ is int and 0 <= value <= BIGINT_MAX:
        return value
    number = to_decimal(value)
    if number is None:
        return None
    if not number.is_finite():
        raise ValueProblem(f"{number} is not a finite number")
    if number < 0:
        raise ValueProblem(f"{number} is negative")
    # Compare before converting: int(Decimal('1E+999999999')) would take forever.
    if number > BIGINT_MAX:
        raise ValueProblem(f"{number} does not fit BIGINT")
    # At most BIGINT_MAX, so rounding cannot push it over (BIGINT_MAX is a whole number).
    return int(number.to_integral_value(rounding=ROUNDING, context=_CONTEXT))


def normalize(source: str, symbol: str, rows: Iterable[RawBar], window: Window) -> list[Bar]:
    """Validated bars inside `window`, one per date, oldest first. Raises InvalidData naming the
    date and column of the first bad value, or NoData when nothing is left."""
    kept: dict[date, Bar] = {}
    without_close: list[date] = []
    outside = duplicates = inconsistent = 0
    first, last = window.start, window.end
    for row in rows:
        day = row.price_date
        if not first <= day <= last:
            outside += 1
            continue
        try:
            close = price(row.close)
            if close is None:
                without_close.append(day)
                continue
            bar = Bar(
                day,
                price(row.open),
                price(row.high),
                price(row.low),
                close,
                price(row.adj_close),
                volume(row.volume),
            )
        except ValueProblem:
            raise _invalid(source, symbol, row) from None
        if day in kept:
            duplicates += 1
            del kept[day]  # re-insert: the last occurrence wins
        kept[day] = bar
        # low <= open, close <= high, for the values present (inline: it runs for every row)
        high, low = bar.high, bar.low
        if (high is not None and (close > high or (bar.open is not None and bar.open > high))) or (
            low is not None and (close < low or (bar.open is not None and bar.open < low))
        ):
            inconsistent += 1
    if without_close:
        log.info(
            "price_rows_without_close_skipped",
            source=source,
            symbol=symbol,
            rows=len(without_close),
            dates=[d.isoformat() for d in without_close[:10]],
        )
    if outside or duplicates:
        log.info(
            "price_rows_dropped",
            source=source,
            symbol=symbol,
            outside_window=outside,
            duplicate_dates=duplicates,
            window=str(window),
        )
    if inconsistent:
        # Flagged, not refused: providers do publish such bars, and the close is still right.
        log.warning(
            "price_bars_inconsistent",
            source=source,
            symbol=symbol,
            bars=inconsistent,
            rule="low <= open, close <= high",
        )
    if not kept:
        skipped = f" ({len(without_close)} rows had no close)" if without_close else ""
        raise NoData(source, f"no daily prices for {symbol} between {window}{skipped}")
    return [kept[day] for day in sorted(kept)]


def _invalid(source: str, symbol: str, row: RawBar) -> InvalidData:
    """The error for a row that failed validation, naming the first bad column (slow path)."""
    for name, convert in (
        ("close", price),
        ("open", price),
        ("high", price),
        ("low", price),
        ("adj_close", price),
        ("volume", volume),
    ):
        try:
            convert(getattr(row, name))
        except ValueProblem as exc:
            column = COLUMNS.get(name, name)
            return InvalidData(
                source, f"invalid {column} for {symbol} on {row.price_date.isoformat()}: {exc}"
            )
    raise AssertionError(f"{row!r} failed validation, but no column does")
