"""Validation and normalisation of provider rows: the one place that decides what gets stored.

Rules (docs/prices.md repeats them):
- Numbers are read as `Decimal` (JSON with `parse_float=Decimal`, CSV text straight to Decimal),
  never through a binary float. Text must be plain ASCII decimal notation (`-12.5`, `1.5e+08`):
  `Decimal()` alone would also take `1_000`, Arabic-Indic or full-width digits and `NaN`.
- Prices are rounded to 4 decimals with ROUND_HALF_EVEN (banker's rounding: ties go to the even
  last digit, so rounding errors do not drift one way over many values). A price must be finite,
  positive, and fit NUMERIC(12,4) (below 100,000,000) after rounding; one that rounds to 0.0000
  is refused too.
- Volume becomes an integer, rounded half-even (it arrives as `1.12117471e+08` from Polygon or
  fractional from Stooq); it must be finite, not negative, and fit BIGINT.
- `high_price` below `low_price` by more than one unit of the 4th decimal (more than rounding
  can explain, compared as sent) is refused. A close or open outside [low, high] is only flagged
  (logged): providers do publish such bars, and the close is still right.

One bad row is skipped and counted by reason (`ROW_PROBLEMS`), never stored; the rest are kept.
The fetch fails (InvalidData) only when no valid row is left, or when the most recent bar is
invalid (storing the older ones would silently leave the symbol a day or more behind). The same
rule runs in SQL for the backfill from `market_data_cache` (`row_problem_sql`, built here from the
same constants; a property test checks that both give the same reason for every row).
- A row without a close is skipped (counted as `close_price missing`): missing, not invalid.
- Rows outside the requested window are dropped; providers append live or extra bars.
- Duplicate dates in one response: the last valid row wins (Yahoo appends the live bar as a
  later duplicate of the same date).
"""

import json
import re
from collections import Counter
from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any

import structlog

from worker.core.errors import WorkerError
from worker.prices.base import (
    Bar,
    Bars,
    InvalidData,
    NoData,
    RawBar,
    TransientSourceError,
    Window,
)

log = structlog.get_logger()

PRICE_QUANTUM = Decimal("0.0001")
PRICE_LIMIT = Decimal("100000000")  # NUMERIC(12,4) holds 8 digits before the point
# Half-even rounding at 4 decimals: a price at most this rounds to 0.0000 (0.00005 is a tie that
# goes to the even 0.0000), one at least PRICE_LIMIT - this rounds up out of NUMERIC(12,4).
HALF_QUANTUM = Decimal("0.00005")
# high may sit below low by this much (rounding at the provider or here); more is refused.
HIGH_LOW_TOLERANCE = Decimal("0.0001")
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
# The order in which a row's values are checked: its first problem is the reason it is skipped.
PRICE_FIELDS = ("close", "open", "high", "low", "adj_close")

# What can be wrong with a value (the reason a row is skipped is "<column> <kind>").
MISSING = "missing"
NOT_A_NUMBER = "not a number"
NOT_FINITE = "not finite"
NOT_POSITIVE = "not positive"
ROUNDS_TO_ZERO = "rounds to 0.0000"
TOO_LARGE = "too large"
NEGATIVE = "negative"
HIGH_BELOW_LOW = "high_price below low_price"


# Sign, digits with an optional point (or a point and digits), optional exponent: ASCII only.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TEXT_SPACE = " \t\r\n"


class ValueProblem(WorkerError, ValueError):
    """A single value that cannot be stored; the caller adds the date and column. `kind` is one
    of the kinds above."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


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
        raise ValueProblem(f"{value!r} is not a number", NOT_A_NUMBER)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        text = value.strip(_TEXT_SPACE)
        if text == "" or text.lower() == "null":
            return None
        if _DECIMAL_TEXT.fullmatch(text) is None:
            raise ValueProblem(
                f"{text[:40]!r} is not a number (plain ASCII decimal notation)", NOT_A_NUMBER
            )
        try:
            return Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only Decimal syntax
            raise ValueProblem(f"{text[:40]!r} is not a number", NOT_A_NUMBER) from None
    if isinstance(value, float):
        # Parsers never produce floats (that would lose the provider's decimal digits).
        raise ValueProblem(f"{value!r} arrived as a binary float", NOT_A_NUMBER)
    raise ValueProblem(f"a {type(value).__name__} is not a number", NOT_A_NUMBER)


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
    raise _price_problem(number)


def _price_problem(number: Decimal) -> ValueProblem:
    if not number.is_finite():
        return ValueProblem(f"{number} is not a finite number", NOT_FINITE)
    if number <= _ZERO:
        return ValueProblem(f"{number} is not positive", NOT_POSITIVE)
    if number >= PRICE_LIMIT:
        return ValueProblem(
            f"{number} does not fit NUMERIC(12,4) (at most 99999999.9999)", TOO_LARGE
        )
    if number.quantize(PRICE_QUANTUM, ROUNDING, _CONTEXT) >= PRICE_LIMIT:
        return ValueProblem(
            f"{number} does not fit NUMERIC(12,4) once rounded to 4 decimals", TOO_LARGE
        )
    return ValueProblem(f"{number} rounds to 0.0000 at 4 decimals", ROUNDS_TO_ZERO)


def volume(value: object) -> int | None:
    """A volume as an integer, or None when missing. Raises ValueProblem."""
    if value.__class__ is int and 0 <= value <= BIGINT_MAX:
        return value
    number = to_decimal(value)
    if number is None:
        return None
    if not number.is_finite():
        raise ValueProblem(f"{number} is not a finite number", NOT_FINITE)
    if number < 0:
        raise ValueProblem(f"{number} is negative", NEGATIVE)
    # Compare before converting: int(Decimal('1E+999999999')) would take forever.
    if number > BIGINT_MAX:
        raise ValueProblem(f"{number} does not fit BIGINT", TOO_LARGE)
    # At most BIGINT_MAX, so rounding cannot push it over (BIGINT_MAX is a whole number).
    return int(number.to_integral_value(rounding=ROUNDING, context=_CONTEXT))


def normalize(source: str, symbol: str, rows: Iterable[RawBar], window: Window) -> Bars:
    """Validated bars inside `window`, one per date, oldest first, and the rows skipped by reason.
    Raises InvalidData when no valid row is left or the most recent bar is invalid, NoData when
    the window holds no row with a close at all."""
    kept: dict[date, Bar] = {}
    skipped: Counter[str] = Counter()
    examples: list[str] = []  # the first few skipped rows, for the log line
    newest_invalid: tuple[date, str] | None = None  # its date and what is wrong
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
                skipped[f"close_price {MISSING}"] += 1
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
            high, low = bar.high, bar.low
            if high is not None and low is not None and high < low:
                _check_high_low(row)  # rounded values disagree: compare them as sent
        except ValueProblem:
            problem = row_problem_detail(row)
            assert problem is not None, f"{row!r} failed validation, but no value does"
            reason, detail = problem
            skipped[reason] += 1
            if len(examples) < 10:
                examples.append(f"{day.isoformat()} {detail}")
            if newest_invalid is None or day >= newest_invalid[0]:
                newest_invalid = (day, detail)
            continue
        if day in kept:
            duplicates += 1
            del kept[day]  # re-insert: the last occurrence wins
        kept[day] = bar
        # low <= open, close <= high, for the values present (inline: it runs for every row)
        if (high is not None and (close > high or (bar.open is not None and bar.open > high))) or (
            low is not None and (close < low or (bar.open is not None and bar.open < low))
        ):
            inconsistent += 1
    invalid = {reason: n for reason, n in skipped.items() if not reason.endswith(MISSING)}
    if skipped:
        (log.warning if invalid else log.info)(
            "price_rows_skipped",
            source=source,
            symbol=symbol,
            rows=sum(skipped.values()),
            reasons=dict(skipped),
            examples=examples,
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
        if invalid:
            raise InvalidData(
                source,
                f"no valid daily prices for {symbol} between {window}: "
                f"{describe_skipped(skipped)}; the first: {examples[0]}",
            )
        missing = f" ({describe_skipped(skipped)})" if skipped else ""
        raise NoData(source, f"no daily prices for {symbol} between {window}{missing}")
    if newest_invalid is not None and newest_invalid[0] > max(kept):
        day, detail = newest_invalid
        raise InvalidData(
            source,
            f"invalid {detail.replace(' ', f' for {symbol} on {day.isoformat()}: ', 1)} "
            f"(the most recent bar; {len(kept)} older rows are valid, none stored)",
        )
    return Bars([kept[day] for day in sorted(kept)], dict(skipped))


def describe_skipped(skipped: dict[str, int]) -> str:
    """`{"close_price not positive": 2}` -> `2 rows skipped: close_price not positive 2`."""
    total = sum(skipped.values())
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items()))
    return f"{total} row{'s' if total != 1 else ''} skipped: {reasons}"


def _check_high_low(row: RawBar) -> None:
    """Raise ValueProblem when high is below low by more than HIGH_LOW_TOLERANCE as sent."""
    high, low = to_decimal(row.high), to_decimal(row.low)
    if high is not None and low is not None and low - high > HIGH_LOW_TOLERANCE:
        raise ValueProblem(f"high {high} is below low {low}", HIGH_BELOW_LOW)


def row_problem_detail(row: RawBar) -> tuple[str, str] | None:
    """Why a row cannot be stored, as (reason, detail), or None when it can. The reason is
    `"<column> <kind>"` (or HIGH_BELOW_LOW); the detail names the column and the value."""
    try:
        if price(row.close) is None:
            return f"close_price {MISSING}", f"close_price {MISSING}"
    except ValueProblem as exc:
        return f"close_price {exc.kind}", f"close_price {exc}"
    for name, convert in (
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
            return f"{column} {exc.kind}", f"{column} {exc}"
    try:
        _check_high_low(row)
    except ValueProblem as exc:
        return HIGH_BELOW_LOW, f"high_price {exc}"
    return None


def row_problem(row: RawBar) -> str | None:
    """The reason a row is skipped (see row_problem_detail), or None when it can be stored."""
    problem = row_problem_detail(row)
    return None if problem is None else problem[0]


def row_valid_sql(
    *, open_: str, high: str, low: str, close: str, adj_close: str, volume_: str
) -> str:
    """The same rule as `row_problem(...) is None`, as an SQL predicate over numeric column
    expressions: true when the row can be stored. Cheap (two comparisons a value): NaN compares
    above every number and the infinities beyond the bounds, so the bounds alone refuse them."""
    low_bound, high_bound = HALF_QUANTUM, PRICE_LIMIT - HALF_QUANTUM
    terms = [f"({close}) > {low_bound} AND ({close}) < {high_bound}"]
    for expr in (open_, high, low, adj_close):
        terms.append(f"(({expr}) IS NULL OR (({expr}) > {low_bound} AND ({expr}) < {high_bound}))")
    terms.append(f"(({volume_}) IS NULL OR (({volume_}) >= 0 AND ({volume_}) <= {BIGINT_MAX}))")
    terms.append(f"coalesce(({low}) - ({high}) <= {HIGH_LOW_TOLERANCE}, true)")
    return "(" + " AND ".join(terms) + ")"


def row_problem_sql(
    *, open_: str, high: str, low: str, close: str, adj_close: str, volume_: str
) -> str:
    """The same rule as `row_problem`, as an SQL expression over numeric column expressions: the
    reason text, or NULL when the row can be stored. Used where rows are copied set-based."""
    columns = {
        "open_": open_,
        "high": high,
        "low": low,
        "close": close,
        "adj_close": adj_close,
        "volume_": volume_,
    }
    # The common case first: a valid row costs the cheap predicate only.
    whens = [f"WHEN {row_valid_sql(**columns)} THEN NULL"]
    whens.append(f"WHEN ({close})::numeric IS NULL THEN 'close_price {MISSING}'")
    for name, expr in (
        ("close", close),
        ("open", open_),
        ("high", high),
        ("low", low),
        ("adj_close", adj_close),
    ):
        column = COLUMNS[name]
        value = f"({expr})::numeric"
        whens += [
            # NaN first: it compares above every number, so it would read as too large.
            f"WHEN {value} IN ('NaN', 'Infinity', '-Infinity') THEN '{column} {NOT_FINITE}'",
            f"WHEN {value} <= 0 THEN '{column} {NOT_POSITIVE}'",
            f"WHEN {value} <= {HALF_QUANTUM} THEN '{column} {ROUNDS_TO_ZERO}'",
            f"WHEN {value} >= {PRICE_LIMIT - HALF_QUANTUM} THEN '{column} {TOO_LARGE}'",
        ]
    amount = f"({volume_})::numeric"
    whens += [
        f"WHEN {amount} IN ('NaN', 'Infinity', '-Infinity') THEN 'volume {NOT_FINITE}'",
        f"WHEN {amount} < 0 THEN 'volume {NEGATIVE}'",
        f"WHEN {amount} > {BIGINT_MAX} THEN 'volume {TOO_LARGE}'",
        f"WHEN ({low})::numeric - ({high})::numeric > {HIGH_LOW_TOLERANCE} THEN '{HIGH_BELOW_LOW}'",
    ]
    return "CASE " + " ".join(whens) + " END"
