"""The portfolio analytics cache against real PostgreSQL."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from worker.core.db import asyncpg_dsn
from worker.host import analytics_cache as cache
from worker.host.analytics_cache import CacheDataError

HOUR = timedelta(hours=1)
KEY = "v1:" + "ab" * 32


@pytest.fixture
async def portfolios(engine: AsyncEngine) -> list[uuid.UUID]:
    """Two portfolios of one user."""
    async with engine.begin() as conn:
        user = await conn.scalar(
            text("INSERT INTO users (email) VALUES ('cache@example.com') RETURNING id")
        )
        result = await conn.execute(
            text(
                "INSERT INTO portfolios (user_id, name) VALUES (:u, 'growth'), (:u, 'income') "
                "RETURNING id"
            ),
            {"u": user},
        )
        return list(result.scalars())


@pytest.fixture
async def conn(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose work is committed, as a backend request would."""
    async with engine.connect() as connection:
        yield connection
        await connection.commit()


async def rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as c:
        result = await c.execute(
            text(
                "SELECT portfolio_id, cache_type, cache_key, cached_data, valid_until, created_at "
                "FROM portfolio_analytics_cache ORDER BY portfolio_id, cache_type, cache_key"
            )
        )
        return [dict(r._mapping) for r in result]


async def expire(engine: AsyncEngine, portfolio_id: uuid.UUID, cache_type: str) -> None:
    """Move an entry's valid_until into the past (instead of waiting out a TTL)."""
    async with engine.begin() as c:
        await c.execute(
            text(
                "UPDATE portfolio_analytics_cache SET valid_until = now() - interval '1 second' "
                "WHERE portfolio_id = :p AND cache_type = :t"
            ),
            {"p": portfolio_id, "t": cache_type},
        )


async def test_put_then_get_round_trips_json(
    conn: AsyncConnection, portfolios: list[uuid.UUID]
) -> None:
    data = {"betas": {"market": 1.12, "size": -0.3}, "symbols": ["AAPL", "MSFT"], "n": 2}

    await cache.put(conn, portfolios[0], "factor_exposures", KEY, data, HOUR)

    assert await cache.get(conn, portfolios[0], "factor_exposures", KEY) == data


async def test_decimal_and_dates_come_back_as_strings(
    conn: AsyncConnection, portfolios: list[uuid.UUID]
) -> None:
    data = {
        "var_95": Decimal("-12345.6700"),
        "weights": [Decimal("0.333333333333333333333333"), Decimal("1E+3")],
        "as_of": date(2024, 3, 1),
        "computed_at": datetime(2024, 3, 1, 21, 30, tzinfo=UTC),
        "portfolio": portfolios[0],
    }

    await cache.put(conn, portfolios[0], "stress_test", KEY, data, HOUR)
    got = await cache.get(conn, portfolios[0], "stress_test", KEY)

    assert got == {
        "var_95": "-12345.6700",
        "weights": ["0.333333333333333333333333", "1E+3"],
        "as_of": "2024-03-01",
        "computed_at": "2024-03-01T21:30:00+00:00",
        "portfolio": str(portfolios[0]),
    }
    # The documented way back is exact.
    assert Decimal(got["var_95"]) == data["var_95"]
    assert Decimal(got["weights"][0]) == data["weights"][0]
    assert date.fromisoformat(got["as_of"]) == data["as_of"]
    assert datetime.fromisoformat(got["computed_at"]) == data["computed_at"]


async def test_miss_expired_and_other_keys_give_none(
    conn: AsyncConnection, engine: AsyncEngine, portfolios: list[uuid.UUID]
) -> None:
    a, b = portfolios
    await cache.put(conn, a, "factor_exposures", KEY, [1], HOUR)
    await conn.commit()

    assert await cache.get(conn, a, "factor_exposures", "v1:other") is None
    assert await cache.get(conn, a, "stress_test", KEY) is None
    assert await cache.get(conn, b, "factor_exposures", KEY) is None
    assert await cache.get(conn, a, "factor_exposures", KEY) == [1]
    await conn.commit()

    await expire(engine, a, "factor_exposures")

    assert await cache.get(conn, a, "factor_exposures", KEY) is None


async def test_put_replaces_the_value_and_the_expiry(
    conn: AsyncConnection, engine: AsyncEngine, portfolios: list[uuid.UUID]
) -> None:
    a = portfolios[0]
    await cache.put(conn, a, "factor_exposures", KEY, {"v": 1}, timedelta(seconds=30))
    await conn.commit()
    await expire(engine, a, "factor_exposures")

    await cache.put(conn, a, "factor_exposures", KEY, {"v": 2}, timedelta(days=2))
    await conn.commit()

    stored = await rows(engine)
    assert len(stored) == 1 and stored[0]["cached_data"] == {"v": 2}
    left = stored[0]["valid_until"] - stored[0]["created_at"]
    assert timedelta(days=2) - timedelta(seconds=5) < left <= timedelta(days=2)
    assert await cache.get(conn, a, "factor_exposures", KEY) == {"v": 2}


async def test_works_in_a_session_and_never_commits(
    engine: AsyncEngine, portfolios: list[uuid.UUID]
) -> None:
    async with AsyncSession(engine) as session:
        await cache.put(session, portfolios[0], "factor_exposures", KEY, {"v": 1}, HOUR)
        assert await cache.get(session, portfolios[0], "factor_exposures", KEY) == {"v": 1}
        await session.rollback()

    assert await rows(engine) == []

    async with AsyncSession(engine) as session:
        await cache.put(session, portfolios[0], "factor_exposures", KEY, {"v": 1}, HOUR)
        await session.commit()
    async with AsyncSession(engine) as session:
        assert await cache.invalidate(session, portfolios[0]) == 1
        await session.rollback()
    assert len(await rows(engine)) == 1


async def test_concurrent_puts_of_one_key_leave_one_row_with_one_of_the_values(
    engine: AsyncEngine, portfolios: list[uuid.UUID]
) -> None:
    writers = 6
    start = asyncio.Barrier(writers)

    async def writer(n: int) -> None:
        async with engine.connect() as c:
            await c.execute(text("SELECT 1"))  # connected and in a transaction before the race
            await start.wait()
            await cache.put(c, portfolios[0], "stress_test", KEY, {"writer": n}, HOUR)
            await c.commit()

    await asyncio.gather(*(writer(n) for n in range(writers)))

    stored = await rows(engine)
    assert len(stored) == 1
    assert stored[0]["cached_data"] in [{"writer": n} for n in range(writers)]


async def test_invalidate_by_portfolio_type_both_or_all(
    conn: AsyncConnection, engine: AsyncEngine, portfolios: list[uuid.UUID]
) -> None:
    a, b = portfolios

    async def fill() -> None:
        for p in (a, b):
            for kind in ("factor_exposures", "stress_test"):
                for key in ("k1", "k2"):
                    await cache.put(conn, p, kind, key, [1], HOUR)

    async def left() -> set[tuple[uuid.UUID, str]]:
        return {(r["portfolio_id"], r["cache_type"]) for r in await rows(engine)}

    await fill()
    assert await cache.invalidate(conn, a, "stress_test") == 2
    await conn.commit()
    assert await left() == {(a, "factor_exposures"), (b, "factor_exposures"), (b, "stress_test")}

    assert await cache.invalidate(conn, portfolio_id=str(a)) == 2
    await conn.commit()
    assert await left() == {(b, "factor_exposures"), (b, "stress_test")}

    await fill()
    assert await cache.invalidate(conn, cache_type="factor_exposures") == 4
    await conn.commit()
    assert await left() == {(a, "stress_test"), (b, "stress_test")}

    assert await cache.invalidate(conn) == 4
    await conn.commit()
    assert await rows(engine) == []
    assert await cache.invalidate(conn, b) == 0


async def test_delete_expired_takes_bounded_batches_of_expired_rows_only(
    conn: AsyncConnection, engine: AsyncEngine, portfolios: list[uuid.UUID]
) -> None:
    a, b = portfolios
    for n in range(5):
        await cache.put(conn, a, "stale", f"k{n}", [n], HOUR)
    await cache.put(conn, b, "fresh", KEY, [1], HOUR)
    await conn.commit()
    await expire(engine, a, "stale")

    assert await cache.delete_expired(conn, 2) == 2
    assert await cache.delete_expired(conn, 2) == 2
    assert await cache.delete_expired(conn, 2) == 1
    assert await cache.delete_expired(conn, 2) == 0
    await conn.commit()

    assert [(r["portfolio_id"], r["cache_type"]) for r in await rows(engine)] == [(b, "fresh")]


async def test_sweep_expired_deletes_expired_rows_in_bounded_rounds(
    conn: AsyncConnection, engine: AsyncEngine, database_url: str, portfolios: list[uuid.UUID]
) -> None:
    a, b = portfolios
    for n in range(7):
        await cache.put(conn, a, "stale", f"k{n}", [n], HOUR)
    await cache.put(conn, b, "fresh", KEY, [1], HOUR)
    await conn.commit()
    await expire(engine, a, "stale")
    housekeeping = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        # Two batches of 3 per round: the round stops there, the next one takes the rest.
        assert await cache.sweep_expired(housekeeping, 3, max_batches=2) == 6
        assert len(await rows(engine)) == 2
        assert await cache.sweep_expired(housekeeping, 3, max_batches=2) == 1
        assert await cache.sweep_expired(housekeeping, 3) == 0
        await expire(engine, b, "fresh")
        assert await cache.sweep_expired(housekeeping, 1, max_batches=None) == 1
    finally:
        await housekeeping.close()

    assert await rows(engine) == []


async def test_an_unknown_portfolio_fails_on_the_foreign_key(conn: AsyncConnection) -> None:
    with pytest.raises(IntegrityError, match="portfolio_analytics_cache_portfolio_id_fkey"):
        await cache.put(conn, uuid.uuid4(), "factor_exposures", KEY, [1], HOUR)
    await conn.rollback()


async def test_bad_input_raises_and_leaves_the_transaction_usable(
    conn: AsyncConnection, engine: AsyncEngine, portfolios: list[uuid.UUID]
) -> None:
    a = portfolios[0]
    await cache.put(conn, a, "kept", KEY, [1], HOUR)

    # One of each kind of check (tests/unit has them all): nothing reaches the database, so the
    # caller's transaction goes on and commits the earlier put.
    with pytest.raises(ValueError, match="invalid ttl"):
        await cache.put(conn, a, "t", KEY, [1], timedelta(0))
    with pytest.raises(CacheDataError, match="a set"):
        await cache.put(conn, a, "t", KEY, {"s": {1}}, HOUR)
    with pytest.raises(ValueError, match="cache_type"):
        await cache.put(conn, a, "t" * 51, KEY, [1], HOUR)
    with pytest.raises(ValueError, match="portfolio_id"):
        await cache.get(conn, "not-a-uuid", "t", KEY)
    with pytest.raises(ValueError, match="batch size"):
        await cache.delete_expired(conn, 0)
    await conn.commit()

    assert [r["cache_type"] for r in await rows(engine)] == ["kept"]
