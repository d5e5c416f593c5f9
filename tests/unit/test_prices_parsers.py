"""The parsers on recorded and hand-built bodies: dates, shapes and the error classification."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from worker.core.settings import Settings, SettingsError
from worker.prices.base import (
    InvalidData,
    NoData,
    PermanentSourceError,
    RateLimited,
    Reply,
    SourceAuthError,
    SourceBlocked,
    SymbolNotFound,
    TransientSourceError,
    retry_after_s,
    seconds_until_next,
)
from worker.prices.csv_files import parse_csv
from worker.prices.fmp import parse_eod
from worker.prices.polygon import parse_aggs
from worker.prices.sources import check_source_config, parse_source_names
from worker.prices.tiingo import parse_prices
from worker.prices.yahoo import parse_chart

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prices"


def body(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def chart(timestamps: list[int], zone: str, closes: list[object]) -> bytes:
    return json.dumps(
        {
            "chart": {
                "result": [
                    {
                        "meta": {"currency": "INR", "exchangeTimezoneName": zone},
                        "timestamp": timestamps,
                        "indicators": {"quote": [{"close": closes}], "adjclose": [{}]},
                    }
                ],
                "error": None,
            }
        }
    ).encode()


# --- dates ------------------------------------------------------------------------------------


def test_yahoo_dates_are_exchange_local_not_utc() -> None:
    # FX is stamped at local midnight: 23:00Z is the next calendar day in London (BST).
    stamp = int(datetime(2023, 6, 1, 23, 0, tzinfo=UTC).timestamp())
    rows, *_ = parse_chart("INR=X", Reply(200, chart([stamp], "Europe/London", [82.5])))
    assert rows[0].price_date == date(2023, 6, 2)
    # XETRA bars at 07:00Z; US bars at 14:30Z: both the same calendar day locally.
    rows, *_ = parse_chart(
        "WSU.DE", Reply(200, body("yahoo/chart-WSU.DE-1d-2023-08-04_2023-08-09-xetra.json"))
    )
    assert [r.price_date for r in rows] == [date(2023, 8, 4), date(2023, 8, 7), date(2023, 8, 8)]


def test_polygon_dates_are_new_york_midnight_across_dst() -> None:
    # 05:00Z in winter and 04:00Z in summer are both 00:00 in New York.
    results = [
        {"t": 1672722000000, "c": 1, "o": 1, "h": 1, "l": 1, "v": 1},  # 2023-01-03T05:00Z
        {"t": 1688356800000, "c": 1, "o": 1, "h": 1, "l": 1, "v": 1},  # 2023-07-03T04:00Z
    ]
    document = {"status": "OK", "results": results}
    rows, next_url = parse_aggs("X", Reply(200, json.dumps(document).encode()))
    assert [r.price_date for r in rows] == [date(2023, 1, 3), date(2023, 7, 3)]
    assert next_url is None


def test_polygon_volume_keeps_its_exponent_form_exactly() -> None:
    rows, _ = parse_aggs(
        "AAPL", Reply(200, body("polygon/aggs-AAPL-1-day-2023-01-01_2023-01-10.json"))
    )
    assert rows[0].volume == Decimal("1.12117471e+08")
    assert rows[0].close == Decimal("125.07")


def test_tiingo_date_is_the_date_part_not_converted() -> None:
    rows = parse_prices(
        "AAPL",
        Reply(200, body("tiingo/daily-prices-AAPL-2023-02-06_2023-02-14-dividend.SLICE.json")),
    )
    ex_dividend = next(r for r in rows if r.price_date == date(2023, 2, 10))
    assert (ex_dividend.close, ex_dividend.adj_close) == (
        Decimal("151.01"),
        Decimal("150.0075618737"),
    )


def test_fmp_reads_the_stable_and_the_legacy_shapes() -> None:
    stable = parse_eod(
        "AAPL",
        Reply(200, body("fmp/stable-historical-price-eod-full-AAPL-2023-01-01_2023-01-10.json")),
    )
    assert [r.price_date for r in stable][:2] == [
        date(2023, 1, 10),
        date(2023, 1, 9),
    ]  # newest first
    assert all(r.adj_close is None for r in stable)
    legacy = parse_eod(
        "AAPL", Reply(200, body("fmp/v3-historical-price-full-AAPL-2023-01-01_2023-01-10.json"))
    )
    assert len(legacy) == 6 and all(r.adj_close is not None for r in legacy)
    assert parse_eod("AAPL", Reply(200, b"{}")) == []


def test_fmp_refuses_rows_for_another_symbol() -> None:
    with pytest.raises(InvalidData, match="row 0 is for 'MSFT', not AAPL"):
        parse_eod("AAPL", Reply(200, b'[{"symbol": "MSFT", "date": "2023-01-03", "close": 1}]'))


def test_csv_finds_the_header_after_junk_and_reads_compact_dates() -> None:
    data = (
        b"Warning: Division by zero in /home/stooq/www/makro/lib/download.inc\n\n"
        b"Date,Open,High,Low,Close,Volume\n20230103,1,2,0.5,1.5,52921768.799918\n"
    )
    [row] = parse_csv("X", data, "X.csv")
    assert (row.price_date, row.close, row.volume, row.adj_close) == (
        date(2023, 1, 3),
        "1.5",
        "52921768.799918",
        None,
    )


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"No data", NoData, "X.csv holds Stooq's 'No data' answer"),
        (b"Exceeded the daily hits limit", InvalidData, "quota message"),
        (b"<html><body>challenge</body></html>", InvalidData, "is an HTML page"),
        (b"a,b\n1,2\n", InvalidData, "has no header line starting with Date"),
        (b"Date,Open,Volume\n2023-01-03,1,2\n", InvalidData, "has no Close column"),
        (b"Date,Close\n2023-01-03,1,2\n", InvalidData, "X.csv line 2: 3 fields, the header has 2"),
        (b"Date,Close\n03/01/2023,1\n", InvalidData, "X.csv line 2 has date '03/01/2023'"),
        (b"Date,Close\n2023-02-30,1\n", InvalidData, "has date '2023-02-30'"),
        (b"\xff\xfeD\x00", InvalidData, "is not UTF-8 text"),
    ],
)
def test_csv_errors_name_the_file_and_line(data: bytes, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        parse_csv("X", data, "X.csv")


# --- classification -----------------------------------------------------------------------------

JSON_404 = body("yahoo/error-404-unknown-symbol.TRANSCRIBED.json")
HTML = b"<!DOCTYPE html><html>consent</html>"


@pytest.mark.parametrize(
    ("parser", "reply", "error", "message"),
    [
        (parse_chart, Reply(404, JSON_404), SymbolNotFound, "unknown symbol X"),
        (parse_chart, Reply(404, b"Timestamp data missing"), NoData, "no daily prices"),
        # A 404 that is not the provider's own JSON not-found answer (CDN, proxy, wrong base
        # URL path) says nothing about the symbol: transient, never "unknown symbol".
        (parse_chart, Reply(404, b"Not Found", "text/plain"), TransientSourceError, "HTTP 404"),
        (
            parse_chart,
            Reply(404, b"<html><body>404 Not Found</body></html>", "text/html"),
            TransientSourceError,
            "not yahoo's own not-found answer",
        ),
        (
            parse_chart,
            Reply(404, b'{"message":"no Route matched with those values"}'),
            TransientSourceError,
            "HTTP 404",
        ),
        (
            parse_aggs,
            Reply(404, b'{"status":"NOT_FOUND","request_id":"x","message":"Data not found."}'),
            SymbolNotFound,
            "unknown ticker X",
        ),
        (parse_aggs, Reply(404, b"404 page not found", "text/plain"), TransientSourceError, "404"),
        (
            parse_prices,
            Reply(404, b"<html>Not Found</html>", "text/html"),
            TransientSourceError,
            "HTTP 404",
        ),
        (parse_prices, Reply(404, b'{"detail":"Not authorized"}'), TransientSourceError, "404"),
        (
            parse_eod,
            Reply(404, b'{"Error Message": "Symbol not found"}'),
            SymbolNotFound,
            "unknown symbol X",
        ),
        (parse_eod, Reply(404, b"Not Found", "text/plain"), TransientSourceError, "HTTP 404"),
        (parse_chart, Reply(429, b"Edge: Too Many Requests"), RateLimited, "HTTP 429"),
        (parse_chart, Reply(200, b"Too Many Requests"), RateLimited, "rate limited (HTTP 200"),
        (parse_chart, Reply(503, HTML, "text/html"), TransientSourceError, "HTTP 503"),
        (parse_chart, Reply(200, HTML, "text/html"), SourceBlocked, "HTML page instead of data"),
        (
            parse_chart,
            Reply(302, b"", location="https://consent.yahoo.com/v2/x?sessionId=1"),
            SourceBlocked,
            "to consent.yahoo.com,",
        ),
        (
            parse_chart,
            Reply(
                401,
                b'{"finance":{"result":null,"error":{"code":"Unauthorized","description":"Invalid Crumb"}}}',
            ),
            SourceBlocked,
            "Yahoo refused the request (HTTP 401: Unauthorized: Invalid Crumb)",
        ),
        (
            parse_chart,
            Reply(422, b"unprocessable"),
            PermanentSourceError,
            "request refused (HTTP 422",
        ),
        (parse_chart, Reply(200, b'{"chart":{"result":null,"error":null}}'), NoData, "no result"),
        (parse_chart, Reply(200, b'{"chart":[]}'), InvalidData, "'chart' is list"),
        (
            parse_chart,
            Reply(200, chart([1], "Mars/Olympus", [1])),
            InvalidData,
            "unknown exchange time zone",
        ),
        (
            parse_chart,
            Reply(200, chart([1, 2], "UTC", [1])),
            InvalidData,
            "'close' has 1 values for 2 dates",
        ),
        (parse_chart, Reply(200, chart([10**15], "UTC", [1])), InvalidData, "is not a valid time"),
        (
            parse_chart,
            Reply(200, b'{"chart": {"result": ['),
            TransientSourceError,
            "malformed JSON",
        ),
        (
            parse_aggs,
            Reply(401, b'{"status":"ERROR","error":"Unknown API Key"}'),
            SourceAuthError,
            "check POLYGON_API_KEY",
        ),
        (
            parse_aggs,
            Reply(
                403,
                b'{"status":"NOT_AUTHORIZED","message":"Your plan doesn\'t include this data timeframe."}',
            ),
            SourceAuthError,
            "plan doesn't include",
        ),
        (
            parse_aggs,
            Reply(
                403,
                b'{"status":"NOT_AUTHORIZED","request_id":"x","message":"Attempted to request '
                b"today's data before end of day. Please upgrade your plan at "
                b'https://polygon.io/pricing"}',
            ),
            TransientSourceError,
            "today's data is not available before the end of the day (HTTP 403",
        ),
        (
            parse_aggs,
            Reply(
                200,
                b'{"status":"NOT_AUTHORIZED","message":"Attempted to request today\'s data '
                b'before end of day."}',
            ),
            TransientSourceError,
            "today's data is not available before the end of the day",
        ),
        (parse_aggs, Reply(429, b""), RateLimited, "no body"),
        (
            parse_aggs,
            Reply(400, b'{"status":"ERROR","error":"bad date"}'),
            PermanentSourceError,
            "bad date",
        ),
        (parse_aggs, Reply(200, b'{"status":"ERROR","error":"odd"}'), PermanentSourceError, "odd"),
        (
            parse_aggs,
            Reply(200, b'{"status":"OK","results":[{"t":"x"}]}'),
            InvalidData,
            "is not milliseconds",
        ),
        (
            parse_prices,
            Reply(200, b'{"detail":"Error: You have run over your hourly request allocation."}'),
            RateLimited,
            "allocation used up",
        ),
        (
            parse_prices,
            Reply(401, b'{"detail":"Invalid token."}'),
            SourceAuthError,
            "check TIINGO_API_KEY",
        ),
        (
            parse_prices,
            Reply(404, b'{"detail":"Error: Ticker \'X\' not found"}'),
            SymbolNotFound,
            "unknown ticker X",
        ),
        (
            parse_prices,
            Reply(200, b'[{"date": "yesterday", "close": 1}]'),
            InvalidData,
            "row 0 has date 'yesterday'",
        ),
        (
            parse_eod,
            Reply(200, b'{"Error Message": "Limit Reach . Please upgrade your plan"}'),
            RateLimited,
            "quota used up",
        ),
        (
            parse_eod,
            Reply(403, b'{"Error Message": "Legacy Endpoint : no longer supported"}'),
            SourceAuthError,
            "the plan does not cover",
        ),
        (
            parse_eod,
            Reply(402, b"Premium Query Parameter: not available", "text/plain"),
            SourceAuthError,
            "HTTP 402",
        ),
        (
            parse_eod,
            Reply(401, b'{"Error Message": "Invalid API KEY."}'),
            SourceAuthError,
            "check FMP_API_KEY",
        ),
        (parse_eod, Reply(200, b'{"something": 1}'), InvalidData, "without 'historical'"),
    ],
)
def test_replies_are_classified(parser, reply: Reply, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        parser("X", reply)
    assert type(caught.value) is error
    assert message in str(caught.value)


def test_rate_limits_carry_retry_after() -> None:
    with pytest.raises(RateLimited) as caught:
        parse_chart("X", Reply(429, b"Too Many Requests", retry_after="42"))
    assert caught.value.retry_after_s == 42.0
    with pytest.raises(RateLimited) as caught:
        parse_prices(
            "X", Reply(429, b'{"detail":"over your monthly unique symbol request allocation"}')
        )
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s > 0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_s("120", now) == 120.0
    assert retry_after_s("Thu, 01 Jan 2026 12:05:00 GMT", now) == 300.0
    assert retry_after_s("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_s("soon", now) is None and retry_after_s(None, now) is None
    assert retry_after_s("1e99", now) == 31 * 86400.0 and retry_after_s("nan", now) is None


def test_quota_resets() -> None:
    now = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    assert seconds_until_next("hour", now) == 1800
    assert seconds_until_next("day", now) == 1800
    assert seconds_until_next("month", now) == 1800


# --- configuration ------------------------------------------------------------------------------


def test_source_chain_names() -> None:
    assert parse_source_names(" Database, yahoo ") == ("database", "yahoo")
    for bad in ("", "yahoo,", "yahoo,,polygon"):
        with pytest.raises(SettingsError, match="empty"):
            parse_source_names(bad)


def test_check_source_config(tmp_path: Path) -> None:
    settings = Settings(price_csv_dir=tmp_path, polygon_api_key="k")
    assert check_source_config(settings, "csv,polygon,synthetic") == ("csv", "polygon", "synthetic")
    assert check_source_config(settings) == ("yahoo",)  # PRICE_SOURCE's default
    with pytest.raises(SettingsError, match="PRICE_CSV_DIR: expected a directory, got"):
        check_source_config(Settings(price_csv_dir=tmp_path / "nope"), "csv")
    with pytest.raises(
        SettingsError, match="PRICE_HTTP_RETRIES: expected a whole number >= 0, got -1"
    ):
        check_source_config(Settings(http_retries=-1), "yahoo")
    with pytest.raises(SettingsError, match="FMP_API_KEY"):
        check_source_config(Settings(), "fmp")


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("You have run over your hourly request allocation.", "hour"),
        ("You have run over your daily request allocation.", "day"),
        ("You have exceeded your monthly unique symbol request allocation", "month"),
    ],
)
def test_tiingo_quota_pauses_until_its_period_resets(monkeypatch, text: str, period: str) -> None:
    import worker.prices.http as http  # where every source's quota pause is computed

    resets = {"hour": 1111.0, "day": 2222.0, "month": 3333.0}
    monkeypatch.setattr(http, "seconds_until_next", lambda p, now=None: resets[p])
    with pytest.raises(RateLimited) as caught:
        parse_prices("X", Reply(429, json.dumps({"detail": f"Error: {text}"}).encode()))
    assert caught.value.retry_after_s == resets[period]


def test_fmp_limit_reach_without_retry_after_pauses_until_the_next_utc_day(monkeypatch) -> None:
    import worker.prices.http as http  # where every source's quota pause is computed

    monkeypatch.setattr(http, "seconds_until_next", {"day": 2222.0}.__getitem__)
    limit = b'{"Error Message": "Limit Reach . Please upgrade your plan"}'
    for status in (200, 429):
        with pytest.raises(RateLimited) as caught:
            parse_eod("X", Reply(status, limit))
        assert caught.value.retry_after_s == 2222.0
    with pytest.raises(RateLimited) as caught:  # a Retry-After, when sent, wins
        parse_eod("X", Reply(429, limit, retry_after="60"))
    assert caught.value.retry_after_s == 60.0


def test_a_timestamp_with_a_huge_exponent_is_invalid_data_not_a_crash() -> None:
    # abs() of Decimal("1E+9991603373400") overflows the decimal context (found by the fuzz test).
    reply = Reply(200, chart([0], "America/New_York", [1]).replace(b"[0]", b"[1e9991603373400]"))
    with pytest.raises(InvalidData, match="not a whole number"):
        parse_chart("X", reply)
