"""Validation and normalisation: Decimal parsing, rounding, bounds, volume, window, duplicates."""

from datetime import date
from decimal import Decimal

import pytest

from worker.prices.base import Bar, InvalidData, NoData, RawBar, TransientSourceError, Window
from worker.prices.validate import ValueProblem, load_json, normalize, price, volume

WINDOW = Window(date(2023, 1, 1), date(2023, 12, 31))


def raw(day: date, close: object = "10", **values: object) -> RawBar:
    fields = {"open": None, "high": None, "low": None, "adj_close": None, "volume": None}
    fields.update(values)
    return RawBar(price_date=day, close=close, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("129.0399932861328"), Decimal("129.0400")),  # float32 artefact from Yahoo
        (Decimal("1.00005"), Decimal("1.0000")),  # half-even: a tie goes to the even digit
        (Decimal("1.00015"), Decimal("1.0002")),
        (Decimal("1.000050001"), Decimal("1.0001")),  # not a tie
        ("125.07", Decimal("125.0700")),  # CSV text
        (" 7 ", Decimal("7.0000")),
        (130, Decimal("130.0000")),  # JSON integer
        (Decimal("99999999.99994"), Decimal("99999999.9999")),
        (Decimal("0.00005001"), Decimal("0.0001")),
        (None, None),
        ("", None),
        ("null", None),
    ],
)
def test_price_rounds_half_even_to_four_decimals(value: object, expected: Decimal | None) -> None:
    assert price(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (Decimal("NaN"), "is not a finite number"),
        (Decimal("Infinity"), "is not a finite number"),
        ("-Infinity", "is not a number"),  # text: plain decimal notation only
        (Decimal("0"), "is not positive"),
        ("-1.5", "is not positive"),
        (Decimal("100000000"), "does not fit NUMERIC(12,4)"),
        (Decimal("99999999.99995"), "does not fit NUMERIC(12,4) once rounded"),
        (Decimal("1E+999999999"), "does not fit NUMERIC(12,4)"),
        (Decimal("0.00004"), "rounds to 0.0000"),
        ("12,5", "is not a number"),
        (True, "is not a number"),
        (1.5, "arrived as a binary float"),
        ([1], "a list is not a number"),
    ],
)
def test_price_refuses_what_cannot_be_stored(value: object, problem: str) -> None:
    with pytest.raises(ValueProblem, match=problem.replace("(", r"\(").replace(")", r"\)")):
        price(value)


@pytest.mark.parametrize(
    "text",
    [
        "1_000",  # Python's digit grouping
        "\u0661\u0662\u0663",  # Arabic-Indic digits
        "\uff11\uff12\uff13",  # full-width digits
        "\u0967\u0968",  # Devanagari digits
        "NaN",
        "Infinity",
        "sNaN",
        "1.5.2",
        "0x10",
        "1e",
        "\u00a012",  # a no-break space is not trimmed
    ],
)
def test_text_numbers_are_plain_ascii_decimal_notation_only(text: str) -> None:
    with pytest.raises(ValueProblem, match="is not a number"):
        price(text)
    with pytest.raises(ValueProblem, match="is not a number"):
        volume(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12", "12"),
        ("+12.5", "12.5"),
        ("12.", "12"),
        (".5", "0.5"),
        ("1.5e+01", "15"),
        ("1E2", "100"),
    ],
)
def test_text_numbers_in_decimal_notation_are_read(text: str, expected: str) -> None:
    assert price(text) == Decimal(expected).quantize(Decimal("0.0001"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1.12117471e+08"), 112117471),  # Polygon's exponent form
        (Decimal("52921768.799918"), 52921769),  # Stooq's adjusted fractional volume
        (Decimal("2.5"), 2),  # half-even
        (Decimal("3.5"), 4),
        ("3343000", 3343000),
        (0, 0),
        (None, None),
        (2**63 - 1, 2**63 - 1),
    ],
)
def test_volume_becomes_an_integer(value: object, expected: int | None) -> None:
    assert volume(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (Decimal("-1"), "is negative"),
        (Decimal("NaN"), "is not a finite number"),
        (2**63, "does not fit BIGINT"),
        (Decimal("1E+999999999"), "does not fit BIGINT"),
        (Decimal("9223372036854775807.5"), "does not fit BIGINT"),
    ],
)
def test_volume_refuses_what_cannot_be_stored(value: object, problem: str) -> None:
    with pytest.raises(ValueProblem, match=problem):
        volume(value)


def test_normalize_names_the_date_and_column_of_a_bad_value() -> None:
    rows = [raw(date(2023, 3, 1)), raw(date(2023, 3, 2), high="-3")]
    with pytest.raises(InvalidData) as caught:
        normalize("yahoo", "MSFT", rows, WINDOW)
    assert str(caught.value) == (
        "yahoo: invalid high_price for MSFT on 2023-03-02: -3 is not positive "
        "(the most recent bar; 1 older rows are valid, none stored)"
    )


def test_normalize_skips_rows_without_close_drops_outside_rows_and_sorts() -> None:
    rows = [
        raw(date(2023, 3, 3), close="12"),
        raw(date(2022, 12, 30), close="-5"),  # outside the window: dropped, not validated
        raw(date(2023, 3, 1), close=None, open="1"),  # no close: skipped
        raw(date(2023, 3, 2), close="11", volume=Decimal("1e3"), adj_close="10.99999"),
        raw(date(2024, 1, 1), close="13"),  # after the window (a live bar): dropped
    ]
    result = normalize("yahoo", "X", rows, WINDOW)
    assert result.bars == [
        Bar(date(2023, 3, 2), None, None, None, Decimal("11.0000"), Decimal("11.0000"), 1000),
        Bar(date(2023, 3, 3), None, None, None, Decimal("12.0000"), None, None),
    ]
    assert result.skipped == {"close_price missing": 1}


def test_duplicate_dates_keep_the_last_row_of_the_response() -> None:
    rows = [
        raw(date(2023, 3, 2), close="11", volume=100),
        raw(date(2023, 3, 1), close="10"),
        raw(date(2023, 3, 2), close="11.5", volume=150),  # Yahoo's live bar, appended again
    ]
    bars = normalize("yahoo", "X", rows, WINDOW).bars
    assert [(b.price_date, b.close, b.volume) for b in bars] == [
        (date(2023, 3, 1), Decimal("10.0000"), None),
        (date(2023, 3, 2), Decimal("11.5000"), 150),
    ]


def test_nothing_left_is_no_data() -> None:
    with pytest.raises(
        NoData,
        match=r"no daily prices for X between 2023-01-01..2023-12-31 "
        r"\(1 row skipped: close_price missing 1\)",
    ):
        normalize("yahoo", "X", [raw(date(2023, 3, 1), close=None)], WINDOW)
    with pytest.raises(NoData):
        normalize("yahoo", "X", [], WINDOW)


def test_load_json_reads_numbers_as_decimal_and_classifies_broken_bodies() -> None:
    document = load_json("x", b'{"a": 1.10, "b": 2, "c": NaN, "d": -Infinity}')
    assert (document["a"], document["b"]) == (Decimal("1.10"), 2)
    assert document["c"].is_nan() and document["d"] == Decimal("-Infinity")
    for body in (b'{"a": ', b"\xff\xfe\x00", b"[" * 100_000, b"1" * 5000):
        with pytest.raises(TransientSourceError, match="malformed JSON"):
            load_json("x", body)


def test_inconsistent_bars_are_flagged_not_refused() -> None:
    from structlog.testing import capture_logs

    rows = [
        raw(date(2023, 3, 1), close="12", high="11", low="10"),  # close above high
        raw(date(2023, 3, 2), close="11", high="12", low="10", open="9"),  # open below low
        raw(date(2023, 3, 3), close="11", high="12", low="10", open="11.5"),
    ]
    with capture_logs() as events:
        bars = normalize("yahoo", "X", rows, WINDOW).bars
    assert len(bars) == 3
    [flag] = [e for e in events if e["event"] == "price_bars_inconsistent"]
    assert (flag["bars"], flag["log_level"]) == (2, "warning")


# --- one bad row is skipped and counted, never stored --------------------------------------------


def test_a_bad_row_is_skipped_and_counted_and_the_rest_kept() -> None:
    from structlog.testing import capture_logs

    rows = [
        raw(date(2023, 3, 1), close="10"),
        raw(date(2023, 3, 2), close="0"),  # the host's real zero close
        raw(date(2023, 3, 3), close="-1.5"),
        raw(date(2023, 3, 6), close="11", high="10", low="12"),  # high below low by 2
        raw(date(2023, 3, 7), close="11", open="100000000"),  # does not fit NUMERIC(12,4)
        raw(date(2023, 3, 8), close="11", volume="-5"),
        raw(date(2023, 3, 9), close="1_1"),  # not plain decimal notation
        raw(date(2023, 3, 10), close="12", high="12.00004", low="12.00012"),  # rounding: kept
        raw(date(2023, 3, 13), close="12"),
    ]
    with capture_logs() as events:
        result = normalize("yahoo", "X", rows, WINDOW)
    assert [b.price_date for b in result.bars] == [
        date(2023, 3, 1),
        date(2023, 3, 10),
        date(2023, 3, 13),
    ]
    assert result.skipped == {
        "close_price not positive": 2,
        "high_price below low_price": 1,
        "open_price too large": 1,
        "volume negative": 1,
        "close_price not a number": 1,
    }
    [event] = [e for e in events if e["event"] == "price_rows_skipped"]
    assert (event["rows"], event["log_level"]) == (6, "warning")
    assert event["examples"][0] == "2023-03-02 close_price 0 is not positive"


def test_an_invalid_most_recent_bar_fails_the_fetch() -> None:
    rows = [raw(date(2023, 3, 1), close="10"), raw(date(2023, 3, 2), close="0")]
    with pytest.raises(InvalidData, match="close_price for X on 2023-03-02: 0 is not positive"):
        normalize("polygon", "X", rows, WINDOW)
    # An older bad row, or a bad duplicate of a valid newest date, does not.
    rows = [
        raw(date(2023, 3, 1), close="0"),
        raw(date(2023, 3, 2), close="10"),
        raw(date(2023, 3, 2), close="-1"),
    ]
    result = normalize("polygon", "X", rows, WINDOW)
    assert [(b.price_date, b.close) for b in result.bars] == [(date(2023, 3, 2), Decimal(10))]
    assert result.skipped == {"close_price not positive": 2}


def test_no_valid_row_left_fails_the_fetch_naming_the_reasons() -> None:
    rows = [raw(date(2023, 3, 1), close="0"), raw(date(2023, 3, 2), close=None)]
    with pytest.raises(InvalidData) as caught:
        normalize("csv", "X", rows, WINDOW)
    assert str(caught.value) == (
        "csv: no valid daily prices for X between 2023-01-01..2023-12-31: 2 rows skipped: "
        "close_price missing 1, close_price not positive 1; the first: "
        "2023-03-01 close_price 0 is not positive"
    )


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"close": None}, "close_price missing"),
        ({"close": "0"}, "close_price not positive"),
        ({"close": "0.00005"}, "close_price rounds to 0.0000"),
        ({"close": "0.000051"}, None),
        ({"close": "99999999.99995"}, "close_price too large"),
        ({"close": "99999999.99994"}, None),
        ({"close": "NaN"}, "close_price not a number"),
        ({"close": Decimal("NaN")}, "close_price not finite"),
        ({"open": "-1"}, "open_price not positive"),
        ({"adj_close": Decimal("Infinity")}, "adj_close_price not finite"),
        ({"volume": 2**63}, "volume too large"),
        ({"high": "10", "low": "10.0001"}, None),  # within rounding: flagged, stored
        ({"high": "10", "low": "10.00011"}, "high_price below low_price"),
        ({"close": "0", "high": "10", "low": "12"}, "close_price not positive"),  # first wins
    ],
)
def test_row_problem_names_the_first_reason(values: dict[str, object], reason: str | None) -> None:
    from worker.prices.validate import row_problem

    fields = {"close": "10", **values}
    assert row_problem(raw(date(2023, 3, 1), **fields)) == reason  # type: ignore[arg-type]
