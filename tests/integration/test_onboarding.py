"""The onboarding job against real PostgreSQL: one transaction for prices, status and the job;
status rules; the upsert; fallback chains; the local sources; pauses and the rate limiter."""

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from tests.fakeprovider import FakeProvider, Reply, fixture, recorded
from tests.harness import unused_port
from tests.helpers import job_row
from tests.integration.conftest import claim, stored, symbol_row
from worker.core.errors import JobLost
from worker.core.settings import SettingsError
from worker.jobs import onboarding
from worker.jobs.onboarding import open_onboarder
from worker.jobs.write import columns_of
from worker.ops.prometheus import PrometheusMetrics
from worker.prices import ratelimit, synthetic
from worker.prices.base import SourcePaused, Window
from worker.prices.http import URL_LOGGERS, MaskSecrets
from worker.prices.ratelimit import Rate, SourceGate
from worker.prices.validate import normalize
from worker.queue.store import Queue
from worker.sql import prices as sql

MSFT = "yahoo/chart-MSFT-1d-2021-02-01_2022-01-31-dividends.json"
MSFT_PATH = "/v8/finance/chart/MSFT"
MSFT_TODAY = date(2022, 2, 1)
NOT_FOUND = recorded("yahoo/error-404-unknown-symbol.TRANSCRIBED.json", status=404)


# --- atomicity ---------------------------------------------------------------------------------


async def test_failure_after_the_price_insert_leaves_nothing_behind(
    provider, database_pool, queue, settings
) -> None:
    """Injected failure: completing the job, the statement after the price upsert, raises."""
    pool = database_pool
    await pool.execute(
        """
        CREATE FUNCTION refuse_completion() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'injected failure after the price insert'; END $$;
        CREATE TRIGGER refuse_completion BEFORE UPDATE ON symbol_onboarding_queue
            FOR EACH ROW WHEN (NEW.status = 'completed') EXECUTE FUNCTION refuse_completion();
        """
    )
    provider.route(MSFT_PATH, recorded(MSFT))
    job = await claim(pool, queue, "MSFT")
    async with open_onboarder(
        settings, queue, pool, sources="yahoo", today=lambda: MSFT_TODAY
    ) as onboarder:
        result = await onboarder.run(job)

    # An unexpected error is a bug: retried (not lost), with its type and message.
    assert result.outcome == "retried"
    assert result.error == "unexpected RaiseError: injected failure after the price insert"
    assert await stored(pool, "MSFT") == []
    assert (await symbol_row(pool, "MSFT"))["status"] == "pending"
    row = await job_row(pool, job)
    assert (row["status"], row["error_message"]) == ("pending", result.error)


async def test_a_lost_job_rolls_back_its_prices_and_propagates(
    provider, shared_pool, queue, onboarder_for
) -> None:
    provider.route(MSFT_PATH, recorded(MSFT))
    job = await claim(shared_pool, queue, "MSFT")
    # Meanwhile the job was recovered as stalled and claimed by another worker.
    await shared_pool.execute("UPDATE symbol_onboarding_queue SET locked_by = 'other-worker'")
    with pytest.raises(JobLost):
        await (await onboarder_for("yahoo", today=MSFT_TODAY)).run(job)

    assert await stored(shared_pool, "MSFT") == []
    assert (await symbol_row(shared_pool, "MSFT"))["status"] == "pending"
    assert (await job_row(shared_pool, job))["status"] == "processing"


async def test_database_connection_errors_propagate(
    provider, queue, settings, database_url
) -> None:
    pool = await asyncpg.create_pool(dsn=_dsn(database_url), min_size=1, max_size=2)
    job = await claim(pool, queue, "DEMO")
    async with open_onboarder(settings, queue, pool, sources="synthetic") as onboarder:
        await pool.close()  # the runner's business: the job is untouched, the error surfaces
        with pytest.raises(asyncpg.exceptions.InterfaceError):
            await onboarder.run(job)


def _dsn(url: str) -> str:
    from worker.core.db import asyncpg_dsn

    return asyncpg_dsn(url)


# --- symbol status rules -----------------------------------------------------------------------


async def test_an_active_symbol_is_never_downgraded_by_a_failed_refresh(
    provider, shared_pool, queue, onboarder_for
) -> None:
    await shared_pool.execute(
        "INSERT INTO symbol_universe (symbol, status, last_price_date) VALUES ('MSFT', 'active', '2022-01-28')"
    )
    await shared_pool.execute(
        "INSERT INTO symbol_prices_daily (symbol, price_date, close_price) VALUES ('MSFT', '2022-01-28', 308.26)"
    )
    provider.route(MSFT_PATH, NOT_FOUND)
    job = await claim(shared_pool, queue, "MSFT")
    result = await (await onboarder_for("yahoo", today=MSFT_TODAY)).run(job)

    assert result.outcome == "failed"
    universe = await symbol_row(shared_pool, "MSFT")
    assert (universe["status"], universe["last_price_date"]) == ("active", date(2022, 1, 28))
    assert await stored(shared_pool, "MSFT") == [
        (date(2022, 1, 28), None, None, None, Decimal("308.2600"), None, None)
    ]


@pytest.mark.parametrize(
    ("before", "after"),
    [("delisted", "delisted"), ("error", "active"), ("active", "active"), (None, "active")],
)
async def test_storing_prices_activates_a_symbol_but_never_a_delisted_one(
    provider, shared_pool, queue, onboarder_for, before, after
) -> None:
    provider.route(MSFT_PATH, recorded(MSFT))
    job = await claim(shared_pool, queue, "MSFT")
    await shared_pool.execute(
        "UPDATE symbol_universe SET status = $1 WHERE symbol = 'MSFT'", before
    )
    result = await (await onboarder_for("yahoo", today=MSFT_TODAY)).run(job)

    assert result.outcome == "completed"
    universe = await symbol_row(shared_pool, "MSFT")
    assert (universe["status"], universe["last_price_date"]) == (after, date(2022, 1, 28))


async def test_a_missing_universe_row_is_created(
    provider, shared_pool, queue, onboarder_for
) -> None:
    provider.route(MSFT_PATH, recorded(MSFT))
    provider.route("/v8/finance/chart/ZZZZ", NOT_FOUND)
    ok, bad = await claim(shared_pool, queue, "MSFT"), await claim(shared_pool, queue, "ZZZZ")
    # Someone deleted the rows the enqueue trigger made.
    await shared_pool.execute("DELETE FROM symbol_universe")
    onboarder = await onboarder_for("yahoo", today=MSFT_TODAY)

    assert (await onboarder.run(ok)).outcome == "completed"
    assert (await onboarder.run(bad)).outcome == "failed"
    ok_row, bad_row = await symbol_row(shared_pool, "MSFT"), await symbol_row(shared_pool, "ZZZZ")
    assert (ok_row["status"], ok_row["added_source"]) == ("active", "onboarding")
    assert (bad_row["status"], bad_row["added_source"]) == ("error", "onboarding")


async def test_the_last_transient_attempt_fails_the_job_and_marks_the_symbol_error(
    provider, shared_pool, onboarder_for
) -> None:
    provider.route(MSFT_PATH, Reply(502, b"bad gateway", "text/plain"))
    one_try = Queue("test-worker", max_attempts=1)
    job = await claim(shared_pool, one_try, "MSFT")
    result = await (await onboarder_for("yahoo", today=MSFT_TODAY, queue_=one_try)).run(job)

    assert result.outcome == "failed"
    assert result.error == "yahoo: server error (HTTP 502: bad gateway) (2 attempts)"
    assert (await job_row(shared_pool, job))["status"] == "failed"
    assert (await symbol_row(shared_pool, "MSFT"))["status"] == "error"


async def test_a_bad_row_is_skipped_counted_and_never_stored(
    provider, shared_pool, queue, onboarder_for
) -> None:
    body = fixture(MSFT).replace(b'"close":[239.64999389648438', b'"close":[-239.64999389648438')
    provider.route(MSFT_PATH, Reply(body=body))
    job = await claim(shared_pool, queue, "MSFT")
    metrics = PrometheusMetrics("w", "1")
    result = await (await onboarder_for("yahoo", today=MSFT_TODAY, metrics=metrics)).run(job)

    assert (result.outcome, result.rows) == ("completed", 251)
    assert result.skipped == {"close_price not positive": 1}
    assert metrics.skipped == {("yahoo", "close_price not positive"): 1}  # price_rows_skipped_total
    rows = await stored(shared_pool, "MSFT")
    assert len(rows) == 251 and rows[0][0] == date(2021, 2, 2)
    assert (await job_row(shared_pool, job))["status"] == "completed"


async def test_an_invalid_most_recent_bar_fails_permanently_naming_date_and_field(
    provider, shared_pool, queue, onboarder_for
) -> None:
    body = fixture(MSFT).replace(b'308.260009765625],"low"', b'0],"low"')
    provider.route(MSFT_PATH, Reply(body=body))
    job = await claim(shared_pool, queue, "MSFT")
    result = await (await onboarder_for("yahoo", today=MSFT_TODAY)).run(job)

    assert result.outcome == "failed"
    assert result.error == (
        "yahoo: invalid close_price for MSFT on 2022-01-28: 0 is not positive "
        "(the most recent bar; 251 older rows are valid, none stored)"
    )
    assert await stored(shared_pool, "MSFT") == []
    assert len(provider.hits(MSFT_PATH)) == 1


# --- the upsert --------------------------------------------------------------------------------


async def test_changed_values_are_updated_and_unchanged_rows_are_not_rewritten(
    provider, shared_pool, queue, onboarder_for
) -> None:
    provider.route(MSFT_PATH, recorded(MSFT))
    onboarder = await onboarder_for("yahoo", today=MSFT_TODAY)
    assert (await onboarder.run(await claim(shared_pool, queue, "MSFT"))).outcome == "completed"
    first = await stored(shared_pool, "MSFT")
    # A provider rewrote adjusted history for one day; another day is untouched.
    await shared_pool.execute(
        "UPDATE symbol_prices_daily SET adj_close_price = 1 WHERE price_date = '2021-02-01'"
    )
    before = dict(
        await shared_pool.fetch(
            "SELECT price_date, xmin::text FROM symbol_prices_daily WHERE symbol = 'MSFT'"
        )
    )
    assert (await onboarder.run(await claim(shared_pool, queue, "MSFT"))).outcome == "completed"

    assert await stored(shared_pool, "MSFT") == first
    after = dict(
        await shared_pool.fetch(
            "SELECT price_date, xmin::text FROM symbol_prices_daily WHERE symbol = 'MSFT'"
        )
    )
    changed = {day for day in after if after[day] != before[day]}
    assert changed == {date(2021, 2, 1)}


async def test_a_source_without_a_value_keeps_the_stored_one(
    provider, shared_pool, queue, onboarder_for
) -> None:
    """Tiingo stored adjusted closes; a later refresh served by Polygon (no adjusted close, and
    here a row without open/high/low/volume) must not overwrite them with NULL. Close always
    comes from the new source."""
    tiingo_path = "/tiingo/daily/AAPL/prices"
    polygon_path = "/v2/aggs/ticker/AAPL/range/1/day/2023-01-01/2023-01-10"
    provider.route(
        tiingo_path, recorded("tiingo/daily-prices-AAPL-2023-01-03_2023-01-10.SLICE.json")
    )
    document = json.loads(fixture("polygon/aggs-AAPL-1-day-2023-01-01_2023-01-10.json"))
    for key in ("o", "h", "l", "v"):
        del document["results"][0][key]
    document["results"][0]["c"] = 125.5
    provider.route(polygon_path, Reply(body=json.dumps(document).encode()))
    window = {"today": date(2023, 1, 11), "price_lookback_days": 9}
    assert (
        await (await onboarder_for("tiingo", **window)).run(await claim(shared_pool, queue, "AAPL"))
    ).outcome == "completed"
    before = await stored(shared_pool, "AAPL")
    assert (
        await (await onboarder_for("polygon", **window)).run(
            await claim(shared_pool, queue, "AAPL")
        )
    ).outcome == "completed"
    after = await stored(shared_pool, "AAPL")

    assert [r[0] for r in after] == [r[0] for r in before]
    assert [r[5] for r in after] == [r[5] for r in before]  # adjusted closes kept
    assert all(r[5] is not None for r in after)
    # The first day: close is Polygon's; open/high/low/volume, which Polygon lacked, are kept.
    assert after[0] == (*before[0][:4], Decimal("125.5000"), before[0][5], before[0][6])
    # The other days: Polygon's values where it has them (its volume differs from Tiingo's).
    assert after[1][6] == 89100633 and before[1][6] == 89113633


# --- fallback chains ---------------------------------------------------------------------------


async def test_chain_falls_back_to_the_next_source(
    provider, shared_pool, queue, onboarder_for
) -> None:
    polygon_path = "/v2/aggs/ticker/AAPL/range/1/day/2023-01-01/2023-01-10"
    provider.route("/v8/finance/chart/AAPL", Reply(429, b"Too Many Requests", "text/plain"))
    provider.route(polygon_path, recorded("polygon/aggs-AAPL-1-day-2023-01-01_2023-01-10.json"))
    job = await claim(shared_pool, queue, "AAPL")
    onboarder = await onboarder_for("yahoo,polygon", today=date(2023, 1, 11), price_lookback_days=9)
    result = await onboarder.run(job)

    assert (result.outcome, result.rows) == ("completed", 6)
    assert await shared_pool.fetchval(
        "SELECT paused_until > now() FROM price_source_state WHERE source = 'yahoo'"
    )
    # The next job skips the paused source without calling it.
    job = await claim(shared_pool, queue, "AAPL")
    assert (await onboarder.run(job)).outcome == "completed"
    assert len(provider.hits("/v8/finance/chart/AAPL")) == 1
    assert len(provider.hits(polygon_path)) == 2


async def test_chain_with_only_permanent_failures_names_each(
    provider, shared_pool, queue, onboarder_for
) -> None:
    provider.route("/v8/finance/chart/ZZZZ", NOT_FOUND)
    provider.route(
        "/tiingo/daily/ZZZZ/prices", Reply(404, b'{"detail":"Error: Ticker \'ZZZZ\' not found"}')
    )
    job = await claim(shared_pool, queue, "ZZZZ")
    result = await (await onboarder_for("database,yahoo,tiingo", today=MSFT_TODAY)).run(job)

    assert result.outcome == "failed"
    assert result.error == (
        "database: no rows for ZZZZ in market_data_cache between 2021-01-31..2022-01-31; "
        "yahoo: unknown symbol ZZZZ (HTTP 404: Not Found: No data found, symbol may be delisted); "
        "tiingo: unknown ticker ZZZZ (HTTP 404: Error: Ticker 'ZZZZ' not found)"
    )


async def test_chain_with_a_transient_failure_is_retried(
    provider, shared_pool, queue, onboarder_for
) -> None:
    provider.route("/v8/finance/chart/ZZZZ", NOT_FOUND)
    provider.route("/tiingo/daily/ZZZZ/prices", Reply(500, b"oops", "text/plain"))
    job = await claim(shared_pool, queue, "ZZZZ")
    result = await (await onboarder_for("yahoo,tiingo", today=MSFT_TODAY)).run(job)

    assert result.outcome == "retried"
    assert (await symbol_row(shared_pool, "ZZZZ"))["status"] == "pending"


# --- the local sources -------------------------------------------------------------------------


async def test_database_source_onboards_from_the_cache_without_network(
    provider, shared_pool, queue, onboarder_for
) -> None:
    await shared_pool.execute(
        """
        INSERT INTO market_data_cache (symbol, date, open, high, low, close, volume, data_source)
        VALUES ('IBM', '2023-01-03', 141.1, 141.9, 140.48, 141.55, 3338800, 'polygon'),
               ('IBM', '2023-01-04', 142.07, 143.615, 141.3675, 142.6, 3591500, 'polygon'),
               ('IBM', '2022-01-03', 1, 1, 1, 1, 1, 'polygon'),  -- outside the window
               ('IBM', '2023-01-02', 1, 1, 1, 0, 1, 'polygon')  -- the host's zero close
        """
    )
    job = await claim(shared_pool, queue, "IBM")
    result = await (
        await onboarder_for("database", today=date(2023, 1, 11), price_lookback_days=30)
    ).run(job)

    assert (result.outcome, result.rows) == ("completed", 2)
    assert result.skipped == {"close_price not positive": 1}
    assert await stored(shared_pool, "IBM") == [
        (date(2023, 1, 3), Decimal("141.1000"), Decimal("141.9000"), Decimal("140.4800"),
         Decimal("141.5500"), None, 3338800),
        (date(2023, 1, 4), Decimal("142.0700"), Decimal("143.6150"), Decimal("141.3675"),
         Decimal("142.6000"), None, 3591500),
    ]  # fmt: skip
    assert provider.requests == []


@pytest.mark.parametrize("enqueued", ["BRK.B", "BRK-B", "brk/b"])
async def test_database_source_finds_the_hosts_spelling_of_a_class_share(
    shared_pool, queue, onboarder_for, enqueued: str
) -> None:
    # The host spells it BRK-B; one date also has a BRK.B row (another loader's spelling).
    await shared_pool.execute(
        """
        INSERT INTO market_data_cache (symbol, date, open, high, low, close, volume, data_source)
        VALUES ('BRK-B', '2023-01-03', 1, 2, 1, 1.5, 10, 'yahoo'),
               ('BRK-B', '2023-01-04', 1, 2, 1, 1.6, 11, 'yahoo'),
               ('BRK.B', '2023-01-04', 1, 2, 1, 1.7, 12, 'polygon')
        """
    )
    job = await claim(shared_pool, queue, enqueued.upper())
    onboarder = await onboarder_for("database", today=date(2023, 1, 11), price_lookback_days=30)
    result = await onboarder.run(job)

    assert (result.outcome, result.rows) == ("completed", 2)
    closes = [(r[0], r[4]) for r in await stored(shared_pool, enqueued.upper())]
    # Per date the row spelled exactly as enqueued wins; else the first in spellings() order.
    expected_jan_4 = Decimal("1.6000") if enqueued == "BRK-B" else Decimal("1.7000")
    assert closes == [(date(2023, 1, 3), Decimal("1.5000")), (date(2023, 1, 4), expected_jan_4)]


async def test_database_source_reads_yahoos_short_fx_spelling_as_written(
    shared_pool, queue, onboarder_for
) -> None:
    # INR=X is Yahoo's own spelling of USD/INR; another loader stored its alias USDINR=X.
    await shared_pool.execute(
        """
        INSERT INTO market_data_cache (symbol, date, open, high, low, close, volume, data_source)
        VALUES ('INR=X', '2023-01-03', 82, 83, 81, 82.5, 0, 'yahoo'),
               ('USDINR=X', '2023-01-03', 82, 83, 81, 99.9, 0, 'other'),
               ('USDINR=X', '2023-01-04', 82, 83, 81, 82.7, 0, 'other')
        """
    )
    job = await claim(shared_pool, queue, "INR=X")
    onboarder = await onboarder_for("database", today=date(2023, 1, 11), price_lookback_days=30)
    assert (await onboarder.run(job)).outcome == "completed"

    closes = [(r[0], r[4]) for r in await stored(shared_pool, "INR=X")]
    assert closes == [
        (date(2023, 1, 3), Decimal("82.5000")),
        (date(2023, 1, 4), Decimal("82.7000")),
    ]


async def test_csv_source_reads_the_file_named_as_enqueued_first(
    shared_pool, queue, onboarder_for, tmp_path: Path
) -> None:
    header = "Date,Open,High,Low,Close,Adj Close,Volume\n"
    (tmp_path / "INR=X.csv").write_text(header + "2023-01-03,82,83,81,82.5,82.5,0\n")
    (tmp_path / "USDINR=X.csv").write_text(header + "2023-01-03,82,83,81,99.9,99.9,0\n")
    onboarder = await onboarder_for("csv", today=date(2023, 1, 11), price_csv_dir=tmp_path)
    assert (await onboarder.run(await claim(shared_pool, queue, "INR=X"))).outcome == "completed"
    assert [r[4] for r in await stored(shared_pool, "INR=X")] == [Decimal("82.5000")]
    # The alias finds its own file first, and Yahoo's short form when it has none.
    assert (await onboarder.run(await claim(shared_pool, queue, "USDINR=X"))).outcome == "completed"
    assert [r[4] for r in await stored(shared_pool, "USDINR=X")] == [Decimal("99.9000")]
    (tmp_path / "USDINR=X.csv").unlink()
    assert (await onboarder.run(await claim(shared_pool, queue, "USD/INR"))).outcome == "completed"
    assert [r[4] for r in await stored(shared_pool, "USD/INR")] == [Decimal("82.5000")]


async def test_database_then_yahoo_uses_yahoo_when_the_cache_lacks_the_symbol(
    provider, shared_pool, queue, onboarder_for
) -> None:
    provider.route(MSFT_PATH, recorded(MSFT))
    job = await claim(shared_pool, queue, "MSFT")
    result = await (await onboarder_for("database,yahoo", today=MSFT_TODAY)).run(job)
    assert (result.outcome, result.rows) == ("completed", 252)


STOOQ = "stooq/aapl_us_d-2025-02-03_2026-02-03.csv"


async def test_csv_source_reads_a_stooq_download(
    provider, shared_pool, queue, onboarder_for, tmp_path: Path
) -> None:
    (tmp_path / "AAPL.csv").write_bytes(fixture(STOOQ))
    job = await claim(shared_pool, queue, "AAPL")
    result = await (await onboarder_for("csv", today=date(2026, 2, 4), price_csv_dir=tmp_path)).run(
        job
    )

    assert (result.outcome, result.rows) == ("completed", 252)
    lines = fixture(STOOQ).decode().splitlines()[1:]
    expected = []
    for line in lines:
        day, o, h, lo, c, v = line.split(",")
        expected.append(
            (
                date.fromisoformat(day),
                *(Decimal(x).quantize(Decimal("0.0001")) for x in (o, h, lo, c)),
                None,
                int(v),
            )
        )
    assert await stored(shared_pool, "AAPL") == expected
    assert provider.requests == []


async def test_csv_source_reads_a_yahoo_download_and_reports_missing_files(
    shared_pool, queue, onboarder_for, tmp_path: Path
) -> None:
    (tmp_path / "brk_b.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2023-01-02,1,1,1,4_59.0,1,1\n"  # Python's digit grouping is not decimal notation
        "2023-01-03,459.01,463.19,456.15,459.78,459.78,3343000\n"
        "2023-01-04,null,null,null,null,null,null\n"
        "2023-01-05,461.5,462.0,455.7,458.52,458.52,2.5e6\n"
    )
    onboarder = await onboarder_for("csv", today=date(2023, 1, 11), price_csv_dir=tmp_path)
    result = await onboarder.run(await claim(shared_pool, queue, "BRK/B"))
    assert (result.outcome, result.rows) == ("completed", 2)
    assert result.skipped == {"close_price missing": 1, "close_price not a number": 1}
    assert await stored(shared_pool, "BRK/B") == [
        (date(2023, 1, 3), Decimal("459.0100"), Decimal("463.1900"), Decimal("456.1500"),
         Decimal("459.7800"), Decimal("459.7800"), 3343000),
        (date(2023, 1, 5), Decimal("461.5000"), Decimal("462.0000"), Decimal("455.7000"),
         Decimal("458.5200"), Decimal("458.5200"), 2500000),
    ]  # fmt: skip

    # Another spelling of the same class share finds the same file, and keeps its own name.
    dotted = await onboarder.run(await claim(shared_pool, queue, "BRK.B"))
    assert (dotted.outcome, dotted.rows) == ("completed", 2)
    assert await stored(shared_pool, "BRK.B") == await stored(shared_pool, "BRK/B")

    missing = await onboarder.run(await claim(shared_pool, queue, "NOPE"))
    assert missing.outcome == "failed"
    assert (
        missing.error
        == "csv: no price file for NOPE in PRICE_CSV_DIR (looked for NOPE.csv or nope.csv)"
    )


async def test_synthetic_source_stores_known_values_for_any_window(
    shared_pool, queue, onboarder_for
) -> None:
    onboarder = await onboarder_for("synthetic", today=date(2024, 6, 29))
    assert (await onboarder.run(await claim(shared_pool, queue, "DEMO"))).outcome == "completed"
    first = await stored(shared_pool, "DEMO")
    window = Window(date(2023, 6, 29), date(2024, 6, 28))
    weekdays = sum(1 for i in range(366) if (window.start + timedelta(days=i)).weekday() < 5)
    assert len(first) == weekdays
    # Known values (recorded once from the generator): a change in the generator shows here.
    by_day = {r[0]: r for r in first}
    assert [by_day[d] for d in (date(2024, 6, 21), date(2024, 6, 24), date(2024, 6, 25))] == [
        (date(2024, 6, 21), Decimal("218.9910"), Decimal("220.2020"), Decimal("217.8110"),
         Decimal("218.9166"), Decimal("218.9166"), 5527512),
        (date(2024, 6, 24), Decimal("229.6009"), Decimal("230.9165"), Decimal("224.9704"),
         Decimal("227.0938"), Decimal("227.0938"), 3222592),
        (date(2024, 6, 25), Decimal("232.1528"), Decimal("232.4267"), Decimal("229.8678"),
         Decimal("230.3424"), Decimal("230.3424"), 5067631),
    ]  # fmt: skip
    # The bar of a date depends only on the symbol and the date, not on the window.
    short = synthetic.generate("DEMO", Window(date(2024, 6, 24), date(2024, 6, 24)))
    assert [tuple(b) for b in short] == [by_day[date(2024, 6, 24)]]
    # A later onboarding over an overlapping window stores the same values for the same days.
    later = await onboarder_for("synthetic", today=date(2024, 8, 1))
    assert (await later.run(await claim(shared_pool, queue, "DEMO"))).outcome == "completed"
    again = {r[0]: r for r in await stored(shared_pool, "DEMO")}
    assert all(again[r[0]] == r for r in first)


async def test_synthetic_source_warns_once_per_process_not_once_per_symbol(
    shared_pool, queue, onboarder_for
) -> None:
    # Issue 22.6: the quick start's 10 jobs logged 10 identical warnings between its lines.
    with capture_logs() as events:
        onboarder = await onboarder_for("synthetic", today=date(2024, 6, 29))
        for symbol in ("ONE", "TWO", "THREE"):
            assert (
                await onboarder.run(await claim(shared_pool, queue, symbol))
            ).outcome == "completed"
    warnings = [e for e in events if e["event"] == "synthetic_prices_not_real"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    assert "never use them for analytics" in warnings[0]["note"]


async def test_synthetic_source_never_writes_over_real_prices(
    provider, shared_pool, queue, onboarder_for
) -> None:
    # MSFT has real prices (onboarded from Yahoo, or backfilled), then is onboarded again with
    # --source synthetic (e.g. after `retry --failed`): refused, and nothing changes.
    provider.route(MSFT_PATH, recorded(MSFT))
    assert (
        await (await onboarder_for("yahoo", today=MSFT_TODAY)).run(
            await claim(shared_pool, queue, "MSFT")
        )
    ).outcome == "completed"
    real = await stored(shared_pool, "MSFT")
    job = await claim(shared_pool, queue, "MSFT")
    result = await (await onboarder_for("synthetic", today=MSFT_TODAY)).run(job)

    assert result.outcome == "failed"
    assert result.error == (
        "synthetic: MSFT already has 252 stored prices, 252 of them not generated (the first on "
        "2021-02-01): the synthetic source is for demos and benchmarks and never writes over "
        "real prices; onboard this symbol from a real source"
    )
    assert await stored(shared_pool, "MSFT") == real
    assert (await symbol_row(shared_pool, "MSFT"))["status"] == "active"

    # One real row among generated ones is enough.
    demo = await onboarder_for("synthetic", today=date(2024, 6, 29))
    assert (await demo.run(await claim(shared_pool, queue, "DEMO"))).outcome == "completed"
    await shared_pool.execute(
        "UPDATE symbol_prices_daily SET close_price = 1 WHERE symbol = 'DEMO'"
        " AND price_date = '2024-06-24'"
    )
    refused = await demo.run(await claim(shared_pool, queue, "DEMO"))
    assert refused.outcome == "failed" and "1 of them not generated" in (refused.error or "")


async def test_a_source_that_never_replaces_keeps_rows_written_meanwhile(shared_pool) -> None:
    """The store for synthetic adds rows only: a real row that lands between its check and its
    write (another worker, the backfill) survives."""
    await shared_pool.execute(
        "INSERT INTO symbol_universe (symbol, status) VALUES ('X', 'active');"
        "INSERT INTO symbol_prices_daily (symbol, price_date, close_price)"
        " VALUES ('X', '2024-06-24', 1)"
    )
    fetched = normalize(
        "synthetic",
        "X",
        synthetic.generate("X", Window(date(2024, 6, 24), date(2024, 6, 25))),
        Window(date(2024, 6, 24), date(2024, 6, 25)),
    )
    columns = columns_of(fetched.bars)
    for replaces in (False, True):
        await shared_pool.fetchrow(sql.STORE_PRICES, "X", *columns, replaces, None, None)
        closes = dict(
            await shared_pool.fetch("SELECT price_date, close_price FROM symbol_prices_daily")
        )
        assert len(closes) == 2
        assert (closes[date(2024, 6, 24)] == 1) is not replaces


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sources", "overrides", "message"),
    [
        ("yahoo,bloomberg", {}, "--source: expected one or more of yahoo, polygon, tiingo, fmp,"),
        ("polygon", {"polygon_api_key": None}, "price source polygon needs POLYGON_API_KEY"),
        ("csv", {"price_csv_dir": None}, "price source csv needs PRICE_CSV_DIR"),
        ("yahoo", {"rate_limit_yahoo": "fast"}, "PRICE_RATE_LIMIT_YAHOO: expected a rate"),
        ("yahoo,yahoo", {}, "got 'yahoo,yahoo' (a source named twice)"),
        (
            "yahoo",
            {"yahoo_base_url": "ftp://x"},
            "YAHOO_BASE_URL: expected an http(s) URL, got 'ftp://x'",
        ),
    ],
)
async def test_configuration_errors_are_caught_at_construction(
    shared_pool, queue, settings, sources, overrides, message
) -> None:
    from dataclasses import replace

    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        async with open_onboarder(
            replace(settings, **overrides), queue, shared_pool, sources=sources
        ):
            pass


def mask_filters() -> list[logging.Filter]:
    """The MaskSecrets filters attached to the loggers that print request URLs."""
    return [
        f
        for name in URL_LOGGERS
        for f in logging.getLogger(name).filters
        if isinstance(f, MaskSecrets)
    ]


@pytest.mark.parametrize("failing_part", ["build_sources", "SourceGate", None])
async def test_open_onboarder_releases_every_part_it_built(
    shared_pool, queue, settings, monkeypatch, failing_part
) -> None:
    """Issue 11.22: if a part fails to build, the HTTP client built before it is closed and the
    log filter detached; on a normal exit too."""
    clients: list[httpx.AsyncClient] = []
    real_client = onboarding.http_client

    def recording_client(settings_: Any) -> httpx.AsyncClient:
        clients.append(real_client(settings_))
        return clients[-1]

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"{failing_part} failed")

    monkeypatch.setattr(onboarding, "http_client", recording_client)
    if failing_part is not None:
        monkeypatch.setattr(onboarding, failing_part, broken)
    before = mask_filters()
    keys = {"polygon_api_key": "pk-SECRET-polygon-0001"}
    with contextlib.ExitStack() as expect:
        if failing_part is not None:
            expect.enter_context(pytest.raises(RuntimeError, match=f"{failing_part} failed"))
        async with open_onboarder(
            replace(settings, **keys), queue, shared_pool, sources="yahoo,polygon"
        ) as onboarder:
            assert len(mask_filters()) == len(before) + 1  # attached while it runs
            assert [s.name for s in onboarder.sources] == ["yahoo", "polygon"]
    assert len(clients) == 1 and clients[0].is_closed
    assert mask_filters() == before


async def test_open_onboarder_builds_no_client_without_an_http_source(
    shared_pool, queue, settings, monkeypatch
) -> None:
    monkeypatch.setattr(onboarding, "http_client", lambda _s: pytest.fail("client built"))
    async with open_onboarder(settings, queue, shared_pool, sources="synthetic") as onboarder:
        assert [s.name for s in onboarder.sources] == ["synthetic"]


# --- pauses and the shared rate limiter ----------------------------------------------------------


async def test_rate_limiter_defers_a_job_whose_slot_is_too_far(
    provider, shared_pool, queue, onboarder_for
) -> None:
    provider.route(MSFT_PATH, recorded(MSFT))
    provider.route("/v8/finance/chart/AAPL", recorded(MSFT))
    onboarder = await onboarder_for("yahoo", today=MSFT_TODAY, rate_limit_yahoo="1/hour")
    assert (await onboarder.run(await claim(shared_pool, queue, "MSFT"))).outcome == "completed"

    job = await claim(shared_pool, queue, "AAPL")
    result = await onboarder.run(job)
    assert result.outcome == "deferred"
    assert "request rate 1/hour reached" in (result.error or "")
    row = await job_row(shared_pool, job)
    assert row["attempts"] == 0
    assert await shared_pool.fetchval(
        "SELECT run_after > now() + interval '50 minutes' FROM symbol_onboarding_queue WHERE id = $1",
        job.id,
    )
    assert provider.hits("/v8/finance/chart/AAPL") == []


async def test_jobs_refused_a_slot_are_deferred_to_distinct_slots_of_their_own(
    provider, shared_pool, queue, onboarder_for
) -> None:
    """At 60/minute a backlog refused a slot comes back spread out, one job a slot, instead of
    all together after the same wait (to fight over the few slots within the max wait again)."""
    provider.route(MSFT_PATH, recorded(MSFT))
    onboarder = await onboarder_for(
        "yahoo", today=MSFT_TODAY, rate_limit_yahoo="60/minute", rate_limit_max_wait_s=0.5
    )
    assert (await onboarder.run(await claim(shared_pool, queue, "MSFT"))).outcome == "completed"

    jobs = [await claim(shared_pool, queue, symbol) for symbol in ("AAPL", "IBM", "ORCL", "AMZN")]
    for job in jobs:
        result = await onboarder.run(job)
        assert result.outcome == "deferred"
        assert "request rate 60/minute reached; this job's own slot is reserved" in (
            result.error or ""
        )
    run_after = [
        await shared_pool.fetchval(
            "SELECT extract(epoch FROM run_after)::float8 FROM symbol_onboarding_queue "
            "WHERE id = $1",
            job.id,
        )
        for job in jobs
    ]
    gaps = [later - earlier for earlier, later in itertools.pairwise(run_after)]
    assert all(abs(gap - 1.0) < 0.3 for gap in gaps), gaps  # distinct, one interval apart
    assert [(await job_row(shared_pool, job))["attempts"] for job in jobs] == [0, 0, 0, 0]


async def test_a_job_back_for_its_reserved_slot_takes_it_and_an_unused_one_is_harmless(
    shared_pool, monkeypatch
) -> None:
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(ratelimit, "_sleep", no_sleep)
    rates = {"yahoo": Rate(60, "minute")}
    gate = SourceGate(shared_pool, rates, max_wait_s=0.5)
    other = SourceGate(shared_pool, rates, max_wait_s=0.5)  # another worker process
    await gate.acquire("yahoo", "MSFT")  # the first slot: no wait
    with pytest.raises(SourcePaused) as refused:
        await gate.acquire("yahoo", "AAPL")
    assert refused.value.rate_slot
    aapl = await gate.reserve_ahead("yahoo", "AAPL")
    ibm = await gate.reserve_ahead("yahoo", "IBM")
    assert aapl is not None and ibm is not None and aapl.delay_s < ibm.delay_s
    # Asked again before its slot (another source's pause ended first): the same slot, kept.
    again = await gate.reserve_ahead("yahoo", "AAPL")
    assert again is not None and again.delay_s <= aapl.delay_s
    state = "SELECT next_request_at FROM price_source_state WHERE source = 'yahoo'"
    next_free = await shared_pool.fetchval(state)

    # AAPL's job is back here at its slot: it takes that slot and reserves nothing more.
    now = ratelimit._clock()
    monkeypatch.setattr(ratelimit, "_clock", lambda: now + aapl.delay_s)
    await gate.acquire("yahoo", "AAPL")
    assert await shared_pool.fetchval(state) == next_free
    # IBM's job was claimed by another process: its slot goes unused, and that process's
    # request takes the next free slot (refused here, the slot being over the max wait away).
    with pytest.raises(SourcePaused) as elsewhere:
        await other.acquire("yahoo", "IBM")
    assert elsewhere.value.rate_slot and elsewhere.value.delay_s > ibm.delay_s
    assert await shared_pool.fetchval(state) == next_free


async def test_a_paused_source_defers_before_any_request(
    provider: FakeProvider, shared_pool, queue, onboarder_for
) -> None:
    await SourceGate(shared_pool, {}, max_wait_s=30.0).pause("yahoo", 300.0, "yahoo: rate limited")
    provider.route(MSFT_PATH, recorded(MSFT))
    job = await claim(shared_pool, queue, "MSFT")
    result = await (await onboarder_for("yahoo", today=MSFT_TODAY)).run(job)
    assert result.outcome == "deferred"
    assert result.error is not None and result.error.startswith("deferred, yahoo paused for 300 s")
    assert provider.requests == []


# --- the per-source circuit breaker --------------------------------------------------------------


async def _failures(pool, source: str) -> int | None:
    return await pool.fetchval(
        "SELECT consecutive_failures FROM price_source_state WHERE source = $1", source
    )


async def test_consecutive_transient_failures_pause_the_source_for_every_process(
    provider: FakeProvider, shared_pool, queue, onboarder_for
) -> None:
    """An outage: each job's in-process retries fail. Below the threshold a job is retried as
    before; at it, the source pauses and jobs are deferred without spending an attempt."""
    settings = {"source_failures_before_pause": 2, "source_failure_pause_s": 120.0}
    for symbol in ("AAA", "BBB", "CCC"):
        provider.route(f"/v8/finance/chart/{symbol}", Reply(503, b"down", "text/plain"))
    first = await claim(shared_pool, queue, "AAA")
    result = await (await onboarder_for("yahoo", today=MSFT_TODAY, **settings)).run(first)
    assert result.outcome == "retried"
    assert (await job_row(shared_pool, first))["attempts"] == 1
    assert await _failures(shared_pool, "yahoo") == 1

    # Another process (its own Onboarder) fails too: the second consecutive failure.
    second = await claim(shared_pool, queue, "BBB")
    result = await (await onboarder_for("yahoo", today=MSFT_TODAY, **settings)).run(second)
    assert result.outcome == "deferred"
    assert result.error is not None and result.error.startswith("deferred, yahoo paused for 120 s")
    assert "2 consecutive transient failures" in result.error
    row = await job_row(shared_pool, second)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert (await symbol_row(shared_pool, "BBB"))["status"] == "pending"

    # While paused, nobody calls the source.
    third = await claim(shared_pool, queue, "CCC")
    assert (
        await (await onboarder_for("yahoo", today=MSFT_TODAY, **settings)).run(third)
    ).outcome == ("deferred")
    assert provider.hits("/v8/finance/chart/CCC") == []
    assert (await job_row(shared_pool, third))["attempts"] == 0


async def test_a_success_resets_the_failure_count(
    provider: FakeProvider, shared_pool, queue, onboarder_for
) -> None:
    settings = {"source_failures_before_pause": 2}
    provider.route("/v8/finance/chart/AAA", Reply(503, b"down", "text/plain"))
    provider.route(MSFT_PATH, recorded(MSFT))
    onboarder = await onboarder_for("yahoo", today=MSFT_TODAY, **settings)
    assert (await onboarder.run(await claim(shared_pool, queue, "AAA"))).outcome == "retried"
    assert (await onboarder.run(await claim(shared_pool, queue, "MSFT"))).outcome == "completed"
    assert await _failures(shared_pool, "yahoo") == 0
    # One more failure is the first of a new run, not the second: no pause.
    await shared_pool.execute("UPDATE symbol_onboarding_queue SET run_after = now()")
    [again] = await queue.claim(shared_pool)
    assert (await onboarder.run(again)).outcome == "retried"
    assert await _failures(shared_pool, "yahoo") == 1
    assert await SourceGate(shared_pool, {}, max_wait_s=30.0).paused(["yahoo"]) == {}


# --- pauses are checked before every request -------------------------------------------------


async def test_in_process_retries_stop_when_another_process_paused_the_source(
    provider: FakeProvider, shared_pool, queue, onboarder_for
) -> None:
    """The first request fails (503) while another worker pauses the source: the retry must not
    call it again; the job is deferred without spending an attempt."""
    gate = SourceGate(shared_pool, {}, max_wait_s=30.0)

    async def pause_yahoo() -> None:
        await gate.pause("yahoo", 300.0, "yahoo: rate limited (seen by another worker)")

    provider.route(
        MSFT_PATH, Reply(503, b"down", "text/plain", on_request=pause_yahoo), recorded(MSFT)
    )
    job = await claim(shared_pool, queue, "MSFT")
    result = await (await onboarder_for("yahoo", today=MSFT_TODAY, http_retries=3)).run(job)

    assert result.outcome == "deferred"
    assert "seen by another worker" in (result.error or "")
    assert len(provider.hits(MSFT_PATH)) == 1
    assert (await job_row(shared_pool, job))["attempts"] == 0


# --- a provider that cannot be reached, and the log keys of retries (issue 11.18, 11.19) ---------


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens: every connect is refused at once."""
    return f"http://127.0.0.1:{unused_port()}"


async def test_an_unreachable_source_is_paused_with_one_clear_line(
    shared_pool, queue, onboarder_for
) -> None:
    job = await claim(shared_pool, queue, "MSFT")
    onboarder = await onboarder_for(
        "yahoo", today=MSFT_TODAY, yahoo_base_url=closed_port_url(), http_retries=2
    )
    with capture_logs() as events:
        result = await onboarder.run(job)

    # Deferred (no attempt spent): the source is paused for every worker, not the job failed.
    assert result.outcome == "deferred"
    assert (await job_row(shared_pool, job))["attempts"] == 0
    paused = await shared_pool.fetchval(
        "SELECT paused_until > now() FROM price_source_state WHERE source = 'yahoo'"
    )
    assert paused is True
    [line] = [e for e in events if e["event"] == "price_source_unreachable"]
    assert line["log_level"] == "warning" and line["source"] == "yahoo"
    assert "cannot connect to 127.0.0.1" in line["error"] and "(3 attempts)" in line["error"]
    assert line["paused_s"] == pytest.approx(120, abs=2)
    assert "--source synthetic" in line["hint"] and "--source csv" in line["hint"]
    # The next job meets the pause at once, without a connect attempt or another such line.
    second = await claim(shared_pool, queue, "AAPL")
    with capture_logs() as events:
        assert (await onboarder.run(second)).outcome == "deferred"
    assert not [
        e for e in events if e["event"] in ("price_source_unreachable", "price_fetch_retry")
    ]


async def test_a_source_that_answers_badly_is_not_called_unreachable(
    provider, shared_pool, queue, onboarder_for
) -> None:
    provider.route(MSFT_PATH, Reply(503, b"down", "text/plain"))
    job = await claim(shared_pool, queue, "MSFT")
    with capture_logs() as events:
        result = await (await onboarder_for("yahoo", today=MSFT_TODAY)).run(job)
    assert result.outcome == "retried"
    assert not [e for e in events if e["event"] == "price_source_unreachable"]


async def test_fetch_retries_log_their_try_apart_from_the_job_attempt(
    provider, shared_pool, queue, onboarder_for
) -> None:
    provider.route(MSFT_PATH, Reply(503, b"down", "text/plain"), Reply(503, b"down", "text/plain"))
    await shared_pool.execute("SELECT enqueue_symbol_onboarding('MSFT')")
    await shared_pool.execute(
        "UPDATE symbol_onboarding_queue SET attempts = 1"
    )  # its second attempt
    [job] = await queue.claim(shared_pool)
    assert job.attempts == 2
    with capture_logs() as events:
        await (await onboarder_for("yahoo", today=MSFT_TODAY, http_retries=2)).run(job)
    retries = [e for e in events if e["event"] == "price_fetch_retry"]
    assert [e["fetch_attempt"] for e in retries] == [1, 2]
    assert all(e["attempt"] == 2 for e in retries)  # the job's attempt, as on every job line


async def test_a_dripping_provider_is_stopped_at_the_job_deadline(
    provider, shared_pool, queue, onboarder_for
) -> None:
    """Issue 22.3: headers at once, then a piece of the body every 0.5 s (10 s in all): every
    read is in time and each request's own bound (2 x PRICE_HTTP_TIMEOUT_S = 10 s) is far off.
    JOB_TIMEOUT_S stops the job; the queue's backoff retries it, its attempt spent."""
    provider.route(MSFT_PATH, Reply(body=fixture(MSFT), drip_s=0.5))
    job = await claim(shared_pool, queue, "MSFT")
    onboarder = await onboarder_for("yahoo", today=MSFT_TODAY, job_timeout_s=1.0, http_retries=3)
    started = asyncio.get_running_loop().time()
    with capture_logs() as events:
        result = await onboarder.run(job)
    elapsed = asyncio.get_running_loop().time() - started

    assert result.outcome == "retried"
    assert "hit its deadline of 1 s (JOB_TIMEOUT_S)" in (result.error or "")
    row = await job_row(shared_pool, job)
    assert (row["status"], row["attempts"], row["error_message"]) == ("pending", 1, result.error)
    assert (
        await shared_pool.fetchval("SELECT run_after > now() FROM symbol_onboarding_queue") is True
    )
    assert await stored(shared_pool, "MSFT") == []
    # Ended by the deadline: one request, cut before its own bound, no in-process retry.
    assert len(provider.hits(MSFT_PATH)) == 1
    assert elapsed < 2 * 5.0
    assert [e["log_level"] for e in events if e["event"] == "onboarding_deadline_exceeded"] == [
        "warning"
    ]
