"""Each HTTP source end to end: the fake provider replays recorded responses on 127.0.0.1, the
Onboarder runs a claimed job, and the stored rows are checked value by value against the
recording (read here independently of the parsers)."""

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.fakeprovider import Reply, fixture, recorded
from tests.helpers import job_row
from tests.integration.conftest import KEYS, claim, stored, symbol_row

FOUR_DP = Decimal("0.0001")


def q4(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(FOUR_DP, ROUND_HALF_EVEN)


def vol(value: Any) -> int | None:
    return None if value is None else int(Decimal(str(value)).to_integral_value(ROUND_HALF_EVEN))


def yahoo_expected(body: bytes, first: date, last: date) -> list[tuple[Any, ...]]:
    result = json.loads(body, parse_float=Decimal)["chart"]["result"][0]
    zone = ZoneInfo(result["meta"]["exchangeTimezoneName"])
    quote = result["indicators"]["quote"][0]
    adj = result["indicators"]["adjclose"][0]["adjclose"]
    rows = []
    for i, stamp in enumerate(result["timestamp"]):
        day = datetime.fromtimestamp(stamp, UTC).astimezone(zone).date()
        if quote["close"][i] is None or not first <= day <= last:
            continue
        rows.append(
            (
                day,
                q4(quote["open"][i]),
                q4(quote["high"][i]),
                q4(quote["low"][i]),
                q4(quote["close"][i]),
                q4(adj[i]),
                vol(quote["volume"][i]),
            )
        )
    return rows


def polygon_expected(body: bytes) -> list[tuple[Any, ...]]:
    ny = ZoneInfo("America/New_York")
    return [
        (
            datetime.fromtimestamp(r["t"] / 1000, UTC).astimezone(ny).date(),
            q4(r["o"]),
            q4(r["h"]),
            q4(r["l"]),
            q4(r["c"]),
            None,
            vol(r["v"]),
        )
        for r in json.loads(body, parse_float=Decimal)["results"]
    ]


def tiingo_expected(body: bytes) -> list[tuple[Any, ...]]:
    return [
        (
            date.fromisoformat(r["date"][:10]),
            q4(r["open"]),
            q4(r["high"]),
            q4(r["low"]),
            q4(r["close"]),
            q4(r["adjClose"]),
            vol(r["volume"]),
        )
        for r in json.loads(body, parse_float=Decimal)
    ]


def fmp_expected(body: bytes) -> list[tuple[Any, ...]]:
    rows = [
        (
            date.fromisoformat(r["date"]),
            q4(r["open"]),
            q4(r["high"]),
            q4(r["low"]),
            q4(r["close"]),
            None,
            vol(r["volume"]),
        )
        for r in json.loads(body, parse_float=Decimal)
    ]
    return sorted(rows)


# --- normal responses, value by value --------------------------------------------------------

MSFT = "yahoo/chart-MSFT-1d-2021-02-01_2022-01-31-dividends.json"
MSFT_PATH = "/v8/finance/chart/MSFT"


async def test_yahoo_normal_year(provider, shared_pool, queue, onboarder_for) -> None:
    provider.route(MSFT_PATH, recorded(MSFT, content_type="application/json;charset=utf-8"))
    job = await claim(shared_pool, queue, "MSFT")
    result = await (await onboarder_for("yahoo", today=date(2022, 2, 1))).run(job)

    assert (result.outcome, result.rows, result.error) == ("completed", 252, None)
    rows = await stored(shared_pool, "MSFT")
    assert rows == yahoo_expected(fixture(MSFT), date(2021, 1, 31), date(2022, 1, 31))
    assert len(rows) == 252
    # Spot checks typed from the recording: float32 artefacts rounded half-even to 4 dp.
    assert rows[0] == (
        date(2021, 2, 1),
        Decimal("235.0600"),
        Decimal("242.5000"),
        Decimal("232.4300"),
        Decimal("239.6500"),
        Decimal("231.1865"),
        33314200,
    )
    assert rows[-1][0] == date(2022, 1, 28) and rows[-1][4] == Decimal("308.2600")
    universe = await symbol_row(shared_pool, "MSFT")
    assert (universe["status"], universe["last_price_date"]) == ("active", date(2022, 1, 28))
    assert universe["added_source"] == "onboarding"
    assert (await job_row(shared_pool, job))["status"] == "completed"
    # The request: one year plus a day of margin each side, daily, with events.
    [seen] = provider.hits(MSFT_PATH)
    assert seen.query["interval"] == ["1d"] and seen.query["events"] == ["div,splits"]
    assert int(seen.query["period1"][0]) == int(datetime(2021, 1, 30, tzinfo=UTC).timestamp())
    assert int(seen.query["period2"][0]) == int(datetime(2022, 2, 2, tzinfo=UTC).timestamp())
    assert seen.headers["user-agent"].startswith("Mozilla/5.0")


async def test_the_window_ends_yesterday_so_a_live_bar_of_today_is_not_stored(
    provider, shared_pool, queue, onboarder_for
) -> None:
    """Run on 2022-01-28 (UTC), the date of the recording's last bar: while the market is open
    that bar is live (unfinished), so it must not be stored."""
    provider.route(MSFT_PATH, recorded(MSFT))
    job = await claim(shared_pool, queue, "MSFT")
    result = await (
        await onboarder_for("yahoo", today=date(2022, 1, 28), price_lookback_days=30)
    ).run(job)

    assert result.outcome == "completed"
    rows = await stored(shared_pool, "MSFT")
    assert rows == yahoo_expected(fixture(MSFT), date(2021, 12, 28), date(2022, 1, 27))
    assert rows[-1][0] == date(2022, 1, 27)
    assert (await symbol_row(shared_pool, "MSFT"))["last_price_date"] == date(2022, 1, 27)


async def test_polygon_is_asked_for_a_window_ending_yesterday(
    provider, shared_pool, queue, onboarder_for
) -> None:
    polygon = CASES[1]
    provider.route(polygon.path, polygon.ok)  # .../2023-01-01/2023-01-10
    job = await claim(shared_pool, queue, "AAPL")
    result = await (
        await onboarder_for("polygon", today=date(2023, 1, 11), price_lookback_days=9)
    ).run(job)
    assert result.outcome == "completed"
    assert len(provider.hits(polygon.path)) == 1


async def test_yahoo_rows_outside_the_window_are_dropped(
    provider, shared_pool, queue, onboarder_for
) -> None:
    provider.route(MSFT_PATH, recorded(MSFT))
    job = await claim(shared_pool, queue, "MSFT")
    onboarder = await onboarder_for("yahoo", today=date(2021, 7, 1), price_lookback_days=30)
    result = await onboarder.run(job)

    rows = await stored(shared_pool, "MSFT")
    assert rows == yahoo_expected(fixture(MSFT), date(2021, 5, 31), date(2021, 6, 30))
    assert result.rows == len(rows) == 22
    assert (await symbol_row(shared_pool, "MSFT"))["last_price_date"] == date(2021, 6, 30)


async def test_yahoo_split_and_dividend(provider, shared_pool, queue, onboarder_for) -> None:
    name = "yahoo/chart-AAPL-1d-2020-08-31_2020-11-07-split-and-dividend.json"
    provider.route("/v8/finance/chart/AAPL", recorded(name))
    job = await claim(shared_pool, queue, "AAPL")
    result = await (await onboarder_for("yahoo", today=date(2020, 11, 8))).run(job)

    assert result.outcome == "completed"
    rows = await stored(shared_pool, "AAPL")
    assert rows == yahoo_expected(fixture(name), date(2019, 11, 8), date(2020, 11, 7))
    by_day = {r[0]: r for r in rows}
    # 4:1 split day: close is split-adjusted, adj close also dividend-adjusted.
    assert by_day[date(2020, 8, 31)][4:6] == (Decimal("129.0400"), Decimal("125.8267"))
    # Ex-dividend day (0.205 on 2020-11-06): adj close / close steps up by about 0.205/119.03
    # there, because only the days before it carry this dividend's adjustment.
    before, on = by_day[date(2020, 11, 5)], by_day[date(2020, 11, 6)]
    assert before[4:6] == (Decimal("119.0300"), Decimal("116.0660"))
    assert on[4:6] == (Decimal("118.6900"), Decimal("115.9342"))
    step = on[5] / on[4] - before[5] / before[4]
    assert Decimal("0.0015") < step < Decimal("0.0019")


async def test_yahoo_null_row_is_skipped(provider, shared_pool, queue, onboarder_for) -> None:
    # The recording with two rows nulled the way Yahoo does it: one whole row, and one row
    # where only adjclose is missing (stored with a NULL adj close).
    document = json.loads(fixture(MSFT))
    result = document["chart"]["result"][0]
    quote, adj = result["indicators"]["quote"][0], result["indicators"]["adjclose"][0]
    for key in quote:
        quote[key][10] = None
    adj["adjclose"][11] = None
    body = json.dumps(document, separators=(",", ":")).encode()
    provider.route(MSFT_PATH, Reply(body=body))
    job = await claim(shared_pool, queue, "MSFT")
    outcome = await (await onboarder_for("yahoo", today=date(2022, 2, 1))).run(job)

    rows = await stored(shared_pool, "MSFT")
    assert outcome.rows == len(rows) == 251
    assert rows == yahoo_expected(body, date(2021, 1, 31), date(2022, 1, 31))
    null_day = datetime.fromtimestamp(result["timestamp"][10], ZoneInfo("America/New_York")).date()
    assert null_day not in {r[0] for r in rows}
    assert rows[10][5] is None and rows[10][4] is not None


async def test_yahoo_non_us_exchange_uses_the_exchange_date(
    provider, shared_pool, queue, onboarder_for
) -> None:
    name = "yahoo/chart-WSU.DE-1d-2023-08-04_2023-08-09-xetra.json"
    provider.route("/v8/finance/chart/WSU.DE", recorded(name))
    job = await claim(shared_pool, queue, "WSU.DE")
    await (await onboarder_for("yahoo", today=date(2023, 8, 10))).run(job)

    rows = await stored(shared_pool, "WSU.DE")
    assert [r[0] for r in rows] == [date(2023, 8, 4), date(2023, 8, 7), date(2023, 8, 8)]
    assert rows == yahoo_expected(fixture(name), date(2022, 8, 9), date(2023, 8, 9))
    assert rows[0][4:] == (Decimal("34.4500"), Decimal("32.6325"), 1251)


async def test_yahoo_bars_stamped_the_previous_utc_day_get_the_exchange_date(
    provider, shared_pool, queue, onboarder_for
) -> None:
    """ASX opens at 10:00 Sydney time (AEDT, UTC+11): each daily bar is stamped 23:00Z on the
    previous UTC day. Taking the UTC date would shift every bar back by one day. (Hand-built
    body in the shape of the recordings; values are illustrative.)"""
    stamps = [int(datetime(2023, 1, day, 23, 0, tzinfo=UTC).timestamp()) for day in (2, 3, 4)]
    document = {
        "chart": {
            "result": [
                {
                    "meta": {
                        "currency": "AUD",
                        "symbol": "BHP.AX",
                        "exchangeName": "ASX",
                        "exchangeTimezoneName": "Australia/Sydney",
                        "gmtoffset": 39600,
                        "timezone": "AEDT",
                    },
                    "timestamp": stamps,
                    "indicators": {
                        "quote": [
                            {
                                "open": [46.5, 46.9, 47.2],
                                "high": [47.0, 47.3, 47.6],
                                "low": [46.1, 46.6, 46.9],
                                "close": [46.8, 47.1, 47.5],
                                "volume": [5000000, 6000000, 7000000],
                            }
                        ],
                        "adjclose": [{"adjclose": [44.1, 44.4, 44.8]}],
                    },
                }
            ],
            "error": None,
        }
    }
    body = json.dumps(document).encode()
    provider.route("/v8/finance/chart/BHP.AX", Reply(body=body))
    job = await claim(shared_pool, queue, "BHP.AX")
    result = await (
        await onboarder_for("yahoo", today=date(2023, 1, 6), price_lookback_days=9)
    ).run(job)

    assert result.outcome == "completed"
    rows = await stored(shared_pool, "BHP.AX")
    assert [r[0] for r in rows] == [date(2023, 1, 3), date(2023, 1, 4), date(2023, 1, 5)]
    assert rows[0][1:] == (
        Decimal("46.5000"),
        Decimal("47.0000"),
        Decimal("46.1000"),
        Decimal("46.8000"),
        Decimal("44.1000"),
        5000000,
    )
    assert rows == yahoo_expected(body, date(2022, 12, 27), date(2023, 1, 5))
    assert (await symbol_row(shared_pool, "BHP.AX"))["last_price_date"] == date(2023, 1, 5)


async def test_yahoo_pence_listing_is_stored_as_quoted(
    provider, shared_pool, queue, onboarder_for
) -> None:
    name = "yahoo/chart-OCDO.L-1d-2020-01-01_2020-01-03-GBp-pence.json"
    provider.route("/v8/finance/chart/OCDO.L", recorded(name))
    job = await claim(shared_pool, queue, "OCDO.L")
    await (await onboarder_for("yahoo", today=date(2020, 1, 4))).run(job)
    # GBp: pence, never silently divided by 100.
    assert await stored(shared_pool, "OCDO.L") == [
        (
            date(2020, 1, 2),
            Decimal("1279.5000"),
            Decimal("1286.5699"),
            Decimal("1258.0000"),
            Decimal("1259.5000"),
            Decimal("1259.5000"),
            728520,
        )
    ]


@pytest.mark.parametrize(
    ("reply", "symbol", "message"),
    [
        (
            recorded("yahoo/chart-LUCYW-1d-2024-01-01_2024-01-02-empty-no-timestamp.json"),
            "LUCYW",
            "yahoo: no daily prices for LUCYW between 2023-01-02..2024-01-02",
        ),
        (
            recorded("yahoo/error-400-range-before-first-trade.TRANSCRIBED.json", status=400),
            "LUCYW",
            "Data doesn't exist",
        ),
    ],
    ids=["200-without-timestamp", "400-data-does-not-exist"],
)
async def test_yahoo_empty_range_fails_the_job(
    provider, shared_pool, queue, onboarder_for, reply, symbol, message
) -> None:
    provider.route(f"/v8/finance/chart/{symbol}", reply)
    job = await claim(shared_pool, queue, symbol)
    result = await (await onboarder_for("yahoo", today=date(2024, 1, 3))).run(job)

    assert result.outcome == "failed" and message in (result.error or "")
    row = await job_row(shared_pool, job)
    assert (row["status"], row["error_message"]) == ("failed", result.error)
    assert (await symbol_row(shared_pool, symbol))["status"] == "error"
    assert await stored(shared_pool, symbol) == []


# --- the same failure matrix for every HTTP source ------------------------------------------


@dataclass(frozen=True)
class Case:
    source: str
    symbol: str
    path: str
    today: date
    ok: Reply
    expected: list[tuple[Any, ...]]
    unknown: Reply
    unknown_message: str
    rate_limited: Reply
    lookback_days: int = 9

    def onboarder(self, onboarder_for: Any, **overrides: Any) -> Any:
        """An awaitable of the case's Onboarder."""
        return onboarder_for(
            self.source, today=self.today, price_lookback_days=self.lookback_days, **overrides
        )


POLYGON_BODY = fixture("polygon/aggs-AAPL-1-day-2023-01-01_2023-01-10.json")
TIINGO_BODY = fixture("tiingo/daily-prices-AAPL-2023-01-03_2023-01-10.SLICE.json")
FMP_BODY = fixture("fmp/stable-historical-price-eod-full-AAPL-2023-01-01_2023-01-10.json")
CASES = [
    Case(
        "yahoo",
        "MSFT",
        MSFT_PATH,
        date(2022, 2, 1),
        recorded(MSFT),
        yahoo_expected(fixture(MSFT), date(2021, 1, 31), date(2022, 1, 31)),
        recorded("yahoo/error-404-unknown-symbol.TRANSCRIBED.json", status=404),
        "yahoo: unknown symbol MSFT (HTTP 404: Not Found: No data found, symbol may be delisted)",
        Reply(429, b"Too Many Requests", "text/plain", {"Retry-After": "120"}),
        lookback_days=365,
    ),
    Case(
        "polygon",
        "AAPL",
        "/v2/aggs/ticker/AAPL/range/1/day/2023-01-01/2023-01-10",
        date(2023, 1, 11),
        Reply(body=POLYGON_BODY),
        polygon_expected(POLYGON_BODY),
        # Polygon's answer for an unknown ticker: OK with no results.
        Reply(
            body=b'{"ticker":"AAPL","queryCount":0,"resultsCount":0,"adjusted":true,'
            b'"status":"OK","request_id":"x","count":0}'
        ),
        "polygon: no daily prices for AAPL between 2023-01-01..2023-01-10",
        Reply(
            429,
            b'{"status":"ERROR","request_id":"x","error":"You\'ve exceeded the maximum requests '
            b'per minute, please wait or upgrade your subscription to continue."}',
            headers={"Retry-After": "120"},
        ),
    ),
    Case(
        "tiingo",
        "AAPL",
        "/tiingo/daily/AAPL/prices",
        date(2023, 1, 11),
        Reply(body=TIINGO_BODY),
        tiingo_expected(TIINGO_BODY),
        Reply(404, b'{"detail":"Error: Ticker \'AAPL\' not found"}'),
        "tiingo: unknown ticker AAPL (HTTP 404: Error: Ticker 'AAPL' not found)",
        Reply(
            429,
            b'{"detail":"Error: You have run over your hourly request allocation. Please '
            b'upgrade at https://api.tiingo.com/pricing to have your limits increased."}',
            headers={"Retry-After": "120"},
        ),
    ),
    Case(
        "fmp",
        "AAPL",
        "/stable/historical-price-eod/full",
        date(2023, 1, 11),
        Reply(body=FMP_BODY, content_type="application/json; charset=utf-8"),
        fmp_expected(FMP_BODY),
        Reply(body=b"[]"),  # FMP's answer for an unknown symbol
        "fmp: no daily prices for AAPL between 2023-01-01..2023-01-10",
        Reply(
            429,
            b'{"Error Message": "Limit Reach . Please upgrade your plan or visit our '
            b'documentation for more details at https://site.financialmodelingprep.com/"}',
            headers={"Retry-After": "120"},
        ),
    ),
]
by_source = pytest.mark.parametrize("case", CASES, ids=[c.source for c in CASES])


@by_source
async def test_normal_response_is_stored_value_by_value(
    provider, shared_pool, queue, onboarder_for, case: Case
) -> None:
    provider.route(case.path, case.ok)
    job = await claim(shared_pool, queue, case.symbol)
    result = await (await case.onboarder(onboarder_for)).run(job)

    assert result.outcome == "completed"
    assert await stored(shared_pool, case.symbol) == case.expected
    assert result.rows == len(case.expected)
    universe = await symbol_row(shared_pool, case.symbol)
    assert universe["status"] == "active"
    assert universe["last_price_date"] == case.expected[-1][0]


@by_source
async def test_unknown_symbol_fails_and_marks_the_symbol_error(
    provider, shared_pool, queue, onboarder_for, case: Case
) -> None:
    provider.route(case.path, case.unknown)
    job = await claim(shared_pool, queue, case.symbol)
    result = await (await case.onboarder(onboarder_for)).run(job)

    assert result.outcome == "failed"
    assert case.unknown_message in (result.error or "")
    assert (await job_row(shared_pool, job))["error_message"] == result.error
    assert (await symbol_row(shared_pool, case.symbol))["status"] == "error"
    assert len(provider.hits(case.path)) == 1  # permanent: not retried


@by_source
async def test_rate_limit_pauses_the_source_and_defers_without_spending_an_attempt(
    provider, shared_pool, queue, onboarder_for, case: Case
) -> None:
    provider.route(case.path, case.rate_limited)
    job = await claim(shared_pool, queue, case.symbol)
    onboarder = await case.onboarder(onboarder_for)
    result = await onboarder.run(job)

    assert result.outcome == "deferred"
    assert f"{case.source} paused for 120 s" in (result.error or "")
    row = await job_row(shared_pool, job)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    pause = await shared_pool.fetchrow(
        "SELECT extract(epoch FROM paused_until - now()) AS left_s, pause_reason "
        "FROM price_source_state WHERE source = $1",
        case.source,
    )
    assert 100 < pause["left_s"] <= 120  # Retry-After honoured
    assert "rate limited" in pause["pause_reason"] or "used up" in pause["pause_reason"]
    assert (await symbol_row(shared_pool, case.symbol))["status"] == "pending"

    # Another worker process (its own Onboarder) sees the pause and does not call the source.
    await shared_pool.execute(
        "UPDATE symbol_onboarding_queue SET run_after = now() WHERE id = $1", job.id
    )
    [again] = await queue.claim(shared_pool)
    other = await case.onboarder(onboarder_for)
    assert (await other.run(again)).outcome == "deferred"
    assert len(provider.hits(case.path)) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(404, b"Not Found", "text/plain"),
        Reply(404, b"<html><body><h1>404 Not Found</h1>nginx</body></html>", "text/html"),
    ],
    ids=["plain-text", "html"],
)
@by_source
async def test_a_foreign_404_is_transient_and_logged_with_its_path(
    provider, shared_pool, queue, onboarder_for, case: Case, reply: Reply
) -> None:
    """A CDN's or proxy's 404, or a wrong base URL path, is not the provider saying "unknown
    symbol": the symbol must not become `error`."""
    from structlog.testing import capture_logs

    provider.route(case.path, reply)
    job = await claim(shared_pool, queue, case.symbol)
    with capture_logs() as events:
        result = await (await case.onboarder(onboarder_for)).run(job)

    assert result.outcome == "retried"
    assert "HTTP 404" in (result.error or "") and case.path in (result.error or "")
    assert (await symbol_row(shared_pool, case.symbol))["status"] == "pending"
    logged = [e for e in events if e["event"] == "price_source_unexpected_404"]
    assert logged and all(e["path"] == case.path for e in logged)
    assert not any(k in json.dumps(events, default=str) for k in KEYS.values())


@by_source
async def test_server_error_then_success_is_retried_in_process(
    provider, shared_pool, queue, onboarder_for, case: Case
) -> None:
    provider.route(case.path, Reply(503, b"Service Unavailable", "text/plain"), case.ok)
    job = await claim(shared_pool, queue, case.symbol)
    result = await (await case.onboarder(onboarder_for)).run(job)

    assert result.outcome == "completed"
    assert len(provider.hits(case.path)) == 2
    assert await stored(shared_pool, case.symbol) == case.expected


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(delay_s=1.0), "timed out (ReadTimeout"),
        # Each read gets bytes within the 0.1 s read timeout, but the body takes 2 s: the
        # overall limit per request (2 x PRICE_HTTP_TIMEOUT_S) ends it.
        (
            Reply(body=b"[" + b" " * 4000 + b"]", drip_s=0.1 / 1.5),
            "no complete response within 0.2 s",
        ),
        (Reply(body=b'{"chart": {"result": [{"meta": '), "malformed JSON in the response"),
        (Reply(503, b"upstream down", "text/plain"), "server error (HTTP 503: upstream down)"),
        (None, "request failed (RemoteProtocolError"),
    ],
    ids=["timeout", "dripping-body", "malformed-json", "5xx", "truncated-body"],
)
@by_source
async def test_transient_failures_go_back_to_the_queue_after_in_process_retries(
    provider, shared_pool, queue, onboarder_for, case: Case, reply: Reply | None, message: str
) -> None:
    if reply is None:  # the recording cut in the middle: Content-Length promises more
        reply = Reply(body=case.ok.body, truncate_at=len(case.ok.body) // 2)
    provider.route(case.path, reply)
    job = await claim(shared_pool, queue, case.symbol)
    # The two timing cases need a short timeout; the others keep the fixture's generous one,
    # so that on a loaded machine they fail for their own reason, never a timeout.
    timing = {"http_timeout_s": 0.1} if reply.delay_s or reply.drip_s else {}
    result = await (await case.onboarder(onboarder_for, **timing)).run(job)

    assert result.outcome == "retried"
    assert message in (result.error or "") and "(2 attempts)" in (result.error or "")
    assert len(provider.hits(case.path)) == 2  # PRICE_HTTP_RETRIES=1: two tries in-process
    row = await job_row(shared_pool, job)
    assert (row["status"], row["attempts"], row["error_message"]) == ("pending", 1, result.error)
    assert (await symbol_row(shared_pool, case.symbol))["status"] == "pending"
    assert await stored(shared_pool, case.symbol) == []


@by_source
async def test_html_page_with_status_200_blocks_the_source(
    provider, shared_pool, queue, onboarder_for, case: Case
) -> None:
    page = b"<!DOCTYPE html><html><body>Will be right back...</body></html>"
    provider.route(case.path, Reply(200, page, "text/html; charset=utf-8"))
    job = await claim(shared_pool, queue, case.symbol)
    result = await (await case.onboarder(onboarder_for, blocked_pause_s=900.0)).run(job)

    assert result.outcome == "deferred"
    assert "HTML page instead of data" in (result.error or "")
    left = await shared_pool.fetchval(
        "SELECT extract(epoch FROM paused_until - now()) FROM price_source_state WHERE source = $1",
        case.source,
    )
    assert 800 < left <= 900
    assert (await job_row(shared_pool, job))["attempts"] == 0


# --- keys: where they go, and that they never leak -------------------------------------------


async def test_keys_travel_in_headers_where_the_provider_allows(
    provider, shared_pool, queue, onboarder_for
) -> None:
    polygon, tiingo = CASES[1], CASES[2]
    provider.route(polygon.path, polygon.ok)
    provider.route(tiingo.path, tiingo.ok)
    for case in (polygon, tiingo):
        job = await claim(shared_pool, queue, "AAPL")
        await (await case.onboarder(onboarder_for)).run(job)
    [polygon_seen] = provider.hits(polygon.path)
    [tiingo_seen] = provider.hits(tiingo.path)
    assert polygon_seen.headers["authorization"] == f"Bearer {KEYS['polygon_api_key']}"
    assert tiingo_seen.headers["authorization"] == f"Token {KEYS['tiingo_api_key']}"
    for seen in (polygon_seen, tiingo_seen):
        assert not any(k in str(seen.query) for k in KEYS.values())


@pytest.mark.parametrize(
    ("source", "path", "reply", "message"),
    [
        (
            "polygon",
            CASES[1].path,
            Reply(401, b'{"status":"ERROR","request_id":"x","error":"Unknown API Key"}'),
            "polygon: API key rejected (HTTP 401: Unknown API Key); check POLYGON_API_KEY",
        ),
        (
            "tiingo",
            CASES[2].path,
            Reply(401, b'{"detail":"Invalid token."}'),
            "tiingo: token rejected (HTTP 401: Invalid token.); check TIINGO_API_KEY",
        ),
        (
            "fmp",
            CASES[3].path,
            # FMP sends some errors with HTTP 200; this one echoes the key back.
            Reply(
                200,
                b'{"Error Message": "Invalid API KEY. fk-SECRET-fmp-0003 is not valid."}',
            ),
            "fmp: API key rejected (HTTP 200: Invalid API KEY. *** is not valid.); check FMP_API_KEY",
        ),
    ],
    ids=["polygon", "tiingo", "fmp"],
)
async def test_bad_api_key_fails_with_an_actionable_message_and_no_key(
    provider, shared_pool, queue, onboarder_for, caplog, source, path, reply, message
) -> None:
    import logging

    from structlog.testing import capture_logs

    caplog.set_level(logging.INFO, logger="httpx")
    provider.route(path, reply)
    job = await claim(shared_pool, queue, "AAPL")
    with capture_logs() as events:
        result = await (
            await onboarder_for(source, today=date(2023, 1, 11), price_lookback_days=9)
        ).run(job)

    assert (result.outcome, result.error) == ("failed", message)
    logged = json.dumps(events, default=str) + caplog.text
    assert not any(key in logged for key in KEYS.values())
    if source == "fmp":  # the key must be in the query string there: httpx's URL log is masked
        assert provider.hits(path)[0].query["apikey"] == [KEYS["fmp_api_key"]]
        assert "apikey=***" in caplog.text


async def test_symbols_are_escaped_in_the_url_path(
    provider, shared_pool, queue, onboarder_for
) -> None:
    from structlog.testing import capture_logs

    provider.route("/v8/finance/chart/^GSPC", recorded(MSFT))  # the server decodes the path
    job = await claim(shared_pool, queue, "^GSPC")
    with capture_logs() as events:
        result = await (await onboarder_for("yahoo", today=date(2022, 2, 1))).run(job)
    assert result.outcome == "completed"
    assert provider.requests[0].raw_path == "/v8/finance/chart/%5EGSPC"
    # The outcome line (job_finished) is the runner's; the job logs what it stored.
    assert not [e for e in events if e["event"].startswith("job_")]
    [line] = [e for e in events if e["event"] == "prices_stored"]
    assert (line["rows"], line["symbol"]) == (252, "^GSPC")


def _null_close(case: Case) -> tuple[bytes, date]:
    """The case's recording with the close of its second row set to null, and that row's date."""
    document = json.loads(case.ok.body)
    rows = document["results"] if case.source == "polygon" else document
    key = "c" if case.source == "polygon" else "close"
    rows[1][key] = None
    day = case.expected[1][0] if case.source != "fmp" else case.expected[-2][0]  # FMP: newest first
    return json.dumps(document).encode(), day


JSON_CASES = [c for c in CASES if c.source != "yahoo"]  # yahoo: test_yahoo_null_row_is_skipped


@pytest.mark.parametrize("case", JSON_CASES, ids=[c.source for c in JSON_CASES])
async def test_a_row_without_close_is_skipped(
    provider, shared_pool, queue, onboarder_for, case: Case
) -> None:
    body, day = _null_close(case)
    provider.route(case.path, Reply(body=body))
    job = await claim(shared_pool, queue, case.symbol)
    result = await (await case.onboarder(onboarder_for)).run(job)

    assert result.outcome == "completed"
    assert await stored(shared_pool, case.symbol) == [r for r in case.expected if r[0] != day]


EMPTY = {
    "polygon": b'{"ticker":"AAPL","queryCount":0,"resultsCount":0,"adjusted":true,"status":"OK","request_id":"x","count":0}',
    "tiingo": b"[]",
    "fmp": b"[]",
}


@pytest.mark.parametrize("case", JSON_CASES, ids=[c.source for c in JSON_CASES])
async def test_an_empty_range_fails_the_job(
    provider, shared_pool, queue, onboarder_for, case: Case
) -> None:
    provider.route(case.path, Reply(body=EMPTY[case.source]))
    job = await claim(shared_pool, queue, case.symbol)
    result = await (await case.onboarder(onboarder_for)).run(job)

    assert result.outcome == "failed"
    assert result.error == f"{case.source}: no daily prices for AAPL between 2023-01-01..2023-01-10"
    assert (await symbol_row(shared_pool, "AAPL"))["status"] == "error"


async def test_tiingo_dividend_rows_value_by_value(
    provider, shared_pool, queue, onboarder_for
) -> None:
    body = fixture("tiingo/daily-prices-AAPL-2023-02-06_2023-02-14-dividend.SLICE.json")
    provider.route("/tiingo/daily/AAPL/prices", Reply(body=body))
    job = await claim(shared_pool, queue, "AAPL")
    onboarder = await onboarder_for("tiingo", today=date(2023, 2, 15), price_lookback_days=8)
    assert (await onboarder.run(job)).outcome == "completed"

    rows = await stored(shared_pool, "AAPL")
    assert rows == tiingo_expected(body)
    ex_dividend = next(r for r in rows if r[0] == date(2023, 2, 10))  # divCash 0.23
    assert ex_dividend[4:] == (Decimal("151.0100"), Decimal("150.0076"), 57450708)


# --- symbol spelling: stored as enqueued, asked in the provider's spelling ---------------------


@dataclass(frozen=True)
class Spelled:
    source: str
    symbol: str  # as the host enqueued it
    path: str  # where the provider is asked (its own spelling)
    asked: str  # the provider's spelling, as the request carries it
    body: bytes
    case: Case  # the recording's case: its window and expected rows


POLYGON_CASE, TIINGO_CASE, FMP_CASE = CASES[1], CASES[2], CASES[3]
POLYGON_RANGE = "range/1/day/2023-01-01/2023-01-10"
SPELLED = [
    Spelled("yahoo", "BRK.B", "/v8/finance/chart/BRK-B", "BRK-B", fixture(MSFT), CASES[0]),
    Spelled("yahoo", "BRK/B", "/v8/finance/chart/BRK-B", "BRK-B", fixture(MSFT), CASES[0]),
    # Yahoo's own spelling of USD/INR is asked as written, not as its alias USDINR=X.
    Spelled("yahoo", "INR=X", "/v8/finance/chart/INR=X", "INR=X", fixture(MSFT), CASES[0]),
    Spelled("yahoo", "USD/INR", "/v8/finance/chart/USDINR=X", "USDINR=X", fixture(MSFT), CASES[0]),
    Spelled(
        "polygon",
        "BRK-B",
        f"/v2/aggs/ticker/BRK.B/{POLYGON_RANGE}",
        "BRK.B",
        POLYGON_BODY,
        POLYGON_CASE,
    ),
    Spelled(
        "polygon",
        "^GSPC",
        f"/v2/aggs/ticker/I:SPX/{POLYGON_RANGE}",
        "I:SPX",
        POLYGON_BODY,
        POLYGON_CASE,
    ),
    Spelled(
        "polygon",
        "EURUSD=X",
        f"/v2/aggs/ticker/C:EURUSD/{POLYGON_RANGE}",
        "C:EURUSD",
        POLYGON_BODY,
        POLYGON_CASE,
    ),
    Spelled(
        "polygon",
        "INR=X",
        f"/v2/aggs/ticker/C:USDINR/{POLYGON_RANGE}",
        "C:USDINR",
        POLYGON_BODY,
        POLYGON_CASE,
    ),
    Spelled(
        "polygon",
        "BTC-USD",
        f"/v2/aggs/ticker/X:BTCUSD/{POLYGON_RANGE}",
        "X:BTCUSD",
        POLYGON_BODY,
        POLYGON_CASE,
    ),
    Spelled("tiingo", "BRK.B", "/tiingo/daily/BRK-B/prices", "BRK-B", TIINGO_BODY, TIINGO_CASE),
    # FMP's rows name their symbol: the AAPL recording with the symbol FMP would send.
    Spelled(
        "fmp",
        "BRK.B",
        "/stable/historical-price-eod/full",
        "BRK-B",
        FMP_BODY.replace(b'"AAPL"', b'"BRK-B"'),
        FMP_CASE,
    ),
    Spelled(
        "fmp",
        "EURUSD=X",
        "/stable/historical-price-eod/full",
        "EURUSD",
        FMP_BODY.replace(b'"AAPL"', b'"EURUSD"'),
        FMP_CASE,
    ),
    Spelled(
        "fmp",
        "INR=X",
        "/stable/historical-price-eod/full",
        "USDINR",
        FMP_BODY.replace(b'"AAPL"', b'"USDINR"'),
        FMP_CASE,
    ),
]


@pytest.mark.parametrize("spelled", SPELLED, ids=[f"{s.source}-{s.symbol}" for s in SPELLED])
async def test_the_provider_is_asked_in_its_spelling_and_rows_keep_the_hosts(
    provider, shared_pool, queue, onboarder_for, spelled: Spelled
) -> None:
    provider.route(spelled.path, Reply(body=spelled.body))
    job = await claim(shared_pool, queue, spelled.symbol)
    result = await (await spelled.case.onboarder(onboarder_for)).run(job)

    assert result.outcome == "completed", result.error
    [request] = provider.hits(spelled.path)
    if spelled.source == "fmp":
        assert request.query["symbol"] == [spelled.asked]
    else:
        assert spelled.asked in request.path
    if spelled.source == "polygon":
        assert spelled.asked in request.raw_path  # `:` and `.` are sent as they are
    assert await stored(shared_pool, spelled.symbol) == spelled.case.expected
    assert await shared_pool.fetchval("SELECT count(DISTINCT symbol) FROM symbol_prices_daily") == 1
    assert (await symbol_row(shared_pool, spelled.symbol))["status"] == "active"


async def test_tiingo_refuses_what_its_daily_endpoint_does_not_serve_without_asking(
    provider, shared_pool, queue, onboarder_for
) -> None:
    for symbol, what in (
        ("^GSPC", "an index"),
        ("EURUSD=X", "a currency pair"),
        ("INR=X", "a currency pair"),
        ("BTC-USD", "a crypto pair"),
    ):
        job = await claim(shared_pool, queue, symbol)
        result = await (await TIINGO_CASE.onboarder(onboarder_for)).run(job)
        assert result.outcome == "failed"
        assert result.error == (
            f"tiingo: {symbol} is {what}: Tiingo's end-of-day prices serve stocks, ETFs and "
            "funds only"
        )
    assert provider.requests == []
