"""Bulk refresh from Polygon's grouped daily bars against real PostgreSQL and a local replay: one
request per session for every symbol, shared by the jobs; per-symbol requests for the symbols it
does not cover; a day another worker is loading defers the job; a failed day falls back."""

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.fakeprovider import FakeProvider, Reply, fixture, recorded
from tests.helpers import job_row
from tests.integration.conftest import stored
from tests.integration.test_refresh import CALENDAR, aggs_path, close_of, polygon_aggs
from worker.core.settings import Settings
from worker.jobs.onboarding import Onboarder
from worker.jobs.refresh import Refresher, build_refresher
from worker.jobs.schedule import enqueue_refresh
from worker.prices.base import InvalidData
from worker.prices.base import Reply as SourceReply
from worker.prices.polygon import parse_grouped
from worker.queue.store import Job, Queue

NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2023, 1, 9, 18, 0, tzinfo=NEW_YORK)  # Monday, after the close
FRIDAY, MONDAY = date(2023, 1, 6), date(2023, 1, 9)
GROUPED = "polygon/grouped-daily-us-stocks-2023-01-09.BUILT-FROM-DOCS.json"


def grouped_path(day: date) -> str:
    return f"/v2/aggs/grouped/locale/us/market/stocks/{day.isoformat()}"


def grouped_body(day: date, closes: dict[str, str]) -> bytes:
    """A grouped daily body in Polygon's documented shape (`t`: the close, 16:00 New York)."""
    stamp = int(datetime(day.year, day.month, day.day, 16, tzinfo=NEW_YORK).timestamp()) * 1000
    results = [
        {
            "T": t,
            "o": float(c),
            "h": float(c) + 1,
            "l": float(c) - 1,
            "c": float(c),
            "v": 1e6,
            "vw": float(c),
            "n": 10,
            "t": stamp,
        }
        for t, c in closes.items()
    ]
    return json.dumps(
        {
            "adjusted": True,
            "queryCount": len(results),
            "resultsCount": len(results),
            "results": results,
            "status": "OK",
            "request_id": "built-from-the-documented-format",
        }
    ).encode()


FRIDAY_CLOSES = {"AAPL": "129.62", "MSFT": "224.93", "BRK.B": "305.1"}


async def seed_friday(pool: asyncpg.Pool, symbols: list[str]) -> None:
    for symbol in symbols:
        close = (
            Decimal(FRIDAY_CLOSES[symbol])
            if symbol in FRIDAY_CLOSES
            else close_of(FRIDAY).quantize(Decimal("0.0001"))
        )
        await pool.execute(
            "INSERT INTO symbol_universe (symbol, status, last_price_date)"
            " VALUES ($1, 'active', $2)",
            symbol,
            FRIDAY,
        )
        await pool.execute(
            "INSERT INTO symbol_prices_daily (symbol, price_date, open_price, high_price,"
            " low_price, close_price, volume)"
            " VALUES ($1, $2, $3::numeric, $3::numeric + 1, $3::numeric - 1, $3::numeric, 1000000)",
            symbol,
            FRIDAY,
            close,
        )


@pytest.fixture
async def bulk_refresher(
    shared_pool: asyncpg.Pool,
    queue: Queue,
    settings: Settings,
    onboarder_for: Callable[..., Awaitable[Onboarder]],
) -> Callable[..., Awaitable[Refresher]]:
    async def make(**overrides: Any) -> Refresher:
        # What `run` builds (REFRESH_BULK=auto, Polygon first), on the test's clock.
        tuned = {"refresh_overlap_sessions": 0, **overrides}
        onboarder = await onboarder_for("polygon", today=NOW.astimezone(UTC).date(), **tuned)
        return build_refresher(
            replace(settings, **tuned), queue, shared_pool, onboarder, CALENDAR, now=lambda: NOW
        )

    return make


async def claim_all(pool: asyncpg.Pool, queue: Queue) -> list[Job]:
    async with pool.acquire() as conn:
        await enqueue_refresh(conn, MONDAY)
    return await queue.claim(pool, 100)


def test_the_grouped_fixture_parses_to_one_bar_per_storable_ticker() -> None:
    grouped = parse_grouped(MONDAY, SourceReply(200, fixture(GROUPED), "application/json"))
    # BRK.B stands for each host spelling of the class share (the store keeps the universe's).
    assert sorted(grouped.bars) == ["AAPL", "BRK-B", "BRK.B", "BRK/B", "MSFT"]
    assert grouped.skipped == 1  # KIMpL
    aapl = grouped.bars["AAPL"]
    assert (aapl.open, aapl.high, aapl.low, aapl.close, aapl.adj_close, aapl.volume) == (
        Decimal("130.4650"),
        Decimal("133.4100"),
        Decimal("129.8900"),
        Decimal("130.1500"),
        None,
        70790813,
    )
    with pytest.raises(InvalidData, match="stamped 2023-01-09, not 2023-01-10"):
        parse_grouped(date(2023, 1, 10), SourceReply(200, fixture(GROUPED), "application/json"))


async def test_one_grouped_request_per_session_serves_every_symbol(
    provider: FakeProvider, shared_pool, queue, bulk_refresher
) -> None:
    symbols = ["AAPL", "MSFT", "BRK.B", "ZZZZ"]  # ZZZZ: not in the grouped answer
    await seed_friday(shared_pool, symbols)
    provider.route(grouped_path(FRIDAY), Reply(body=grouped_body(FRIDAY, FRIDAY_CLOSES)))
    provider.route(grouped_path(MONDAY), recorded(GROUPED))
    per_symbol = aggs_path("ZZZZ", FRIDAY, MONDAY)
    provider.route(per_symbol, Reply(body=polygon_aggs("ZZZZ", [FRIDAY, MONDAY])))
    refresher = await bulk_refresher()

    jobs = await claim_all(shared_pool, queue)
    results = [await refresher.run(job) for job in jobs]

    assert [r.outcome for r in results] == ["completed"] * 4, [r.error for r in results]
    assert sorted(r.path for r in provider.requests) == sorted(
        [grouped_path(FRIDAY), grouped_path(MONDAY), per_symbol]
    )
    aapl = await stored(shared_pool, "AAPL")
    assert aapl[-1] == (
        MONDAY,
        Decimal("130.4650"),
        Decimal("133.4100"),
        Decimal("129.8900"),
        Decimal("130.1500"),
        None,
        70790813,
    )
    for symbol in symbols:
        assert [r[0] for r in await stored(shared_pool, symbol)] == [FRIDAY, MONDAY]
    loaded = await shared_pool.fetch("SELECT price_date, tickers FROM price_bulk_days ORDER BY 1")
    # The names offered: BRK.B under its three host spellings.
    assert [(r["price_date"], r["tickers"]) for r in loaded] == [(FRIDAY, 5), (MONDAY, 5)]


async def test_a_day_another_worker_is_loading_defers_the_job(
    provider: FakeProvider, shared_pool, queue, bulk_refresher
) -> None:
    await seed_friday(shared_pool, ["AAPL"])
    await shared_pool.execute(
        "INSERT INTO price_bulk_days (source, price_date, leased_by, lease_until)"
        " VALUES ('polygon', $1, 'other-worker', now() + interval '1 minute')",
        FRIDAY,
    )
    [job] = await claim_all(shared_pool, queue)

    result = await (await bulk_refresher()).run(job)

    assert result.outcome == "deferred"
    assert provider.requests == []
    row = await job_row(shared_pool, job)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert "grouped daily bars of 2023-01-06" in row["error_message"]


async def test_an_expired_lease_is_taken_over(
    provider: FakeProvider, shared_pool, queue, bulk_refresher
) -> None:
    await seed_friday(shared_pool, ["AAPL"])
    await shared_pool.execute(
        "INSERT INTO price_bulk_days (source, price_date, leased_by, lease_until)"
        " VALUES ('polygon', $1, 'dead-worker', now() - interval '1 second')",
        FRIDAY,
    )
    provider.route(grouped_path(FRIDAY), Reply(body=grouped_body(FRIDAY, FRIDAY_CLOSES)))
    provider.route(grouped_path(MONDAY), recorded(GROUPED))
    [job] = await claim_all(shared_pool, queue)

    assert (await (await bulk_refresher()).run(job)).outcome == "completed"
    assert len(provider.hits(grouped_path(FRIDAY))) == 1


async def test_a_failed_grouped_request_falls_back_to_per_symbol_requests(
    provider: FakeProvider, shared_pool, queue, bulk_refresher
) -> None:
    await seed_friday(shared_pool, ["ZZZZ"])
    provider.route(
        grouped_path(FRIDAY),
        Reply(
            status=403,
            body=b'{"status":"NOT_AUTHORIZED",'
            b'"request_id":"x","message":"You are not entitled to this data."}',
        ),
    )
    per_symbol = aggs_path("ZZZZ", FRIDAY, MONDAY)
    provider.route(per_symbol, Reply(body=polygon_aggs("ZZZZ", [FRIDAY, MONDAY])))
    [job] = await claim_all(shared_pool, queue)

    result = await (await bulk_refresher()).run(job)

    assert result.outcome == "completed", result.error
    assert [r.path for r in provider.requests] == [grouped_path(FRIDAY), per_symbol]
    lease = await shared_pool.fetchrow("SELECT leased_by, loaded_at FROM price_bulk_days")
    assert (lease["leased_by"], lease["loaded_at"]) == (None, None)  # the next job tries again


async def test_a_host_spelling_polygon_writes_otherwise_is_served_by_grouped_daily(
    provider: FakeProvider, shared_pool, queue, bulk_refresher
) -> None:
    """The host spells the class share BRK-B; Polygon's grouped answer names it BRK.B."""
    await shared_pool.execute(
        "INSERT INTO symbol_universe (symbol, status, last_price_date)"
        " VALUES ('BRK-B', 'active', $1)",
        FRIDAY,
    )
    await shared_pool.execute(
        "INSERT INTO symbol_prices_daily (symbol, price_date, open_price, high_price,"
        " low_price, close_price, volume) VALUES ('BRK-B', $1, 306.1, 306.1, 304.1, 305.1, 1)",
        FRIDAY,
    )
    provider.route(grouped_path(FRIDAY), Reply(body=grouped_body(FRIDAY, FRIDAY_CLOSES)))
    provider.route(grouped_path(MONDAY), recorded(GROUPED))
    [job] = await claim_all(shared_pool, queue)

    result = await (await bulk_refresher()).run(job)

    assert result.outcome == "completed", result.error
    assert sorted(r.path for r in provider.requests) == [grouped_path(FRIDAY), grouped_path(MONDAY)]
    assert (await stored(shared_pool, "BRK-B"))[-1][:5] == (
        MONDAY,
        Decimal("310.6700"),
        Decimal("312.9000"),
        Decimal("308.3000"),
        Decimal("309.0400"),
    )
