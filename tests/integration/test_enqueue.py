"""Enqueue three ways (helper, SQL function, plain INSERT), one behaviour."""

import asyncio
import uuid

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from tests.harness import unused_port
from worker import DatabaseUnavailable, enqueue_symbol, enqueue_symbols
from worker.core.symbols import (
    InvalidPriorityError,
    InvalidSymbolError,
    UnknownRequesterError,
    normalize_symbol,
)

VALID = ["AAPL", "BRK.B", "^GSPC", "EURUSD=X", "BTC-USD", "A/B", "X" * 20, "1"]
INVALID = [
    *["", "   ", "X" * 21, "BAD SYM", "AAPL;", "ÄPFEL", "a\tb", "$TSLA", "BRK_B", "🍎"],
    # Non-ASCII letters that a locale-aware upper() turns into ASCII ones.
    *["\u0131BM", "\u017fPY", "\u212aO", "\ufb00", "\uff49bm"],
    # Punctuation alone names nothing.
    *["..", "/", "^", "-", "=", "^.-=/"],
]


async def counts(conn: asyncpg.Connection) -> tuple[int, int]:
    return (
        await conn.fetchval("SELECT count(*) FROM symbol_onboarding_queue"),
        await conn.fetchval("SELECT count(*) FROM symbol_universe"),
    )


async def live_job(conn: asyncpg.Connection, symbol: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "SELECT * FROM symbol_onboarding_queue WHERE symbol = $1 AND status = 'pending'", symbol
    )


# --- the Python helper -------------------------------------------------------------------------


async def test_helper_normalises_and_registers_the_symbol(engine: AsyncEngine, conn) -> None:
    async with engine.begin() as db:
        job_id = await enqueue_symbol(db, "  brk.b ", priority="high")
    job = await live_job(conn, "BRK.B")
    assert job["id"] == job_id and job["priority"] == "high" and job["attempts"] == 0
    universe = await conn.fetchrow("SELECT * FROM symbol_universe WHERE symbol = 'BRK.B'")
    assert (universe["status"], universe["added_source"]) == ("pending", "onboarding")


async def test_an_unreachable_database_raises_database_unavailable() -> None:
    """The helpers' callers catch the project's error, not SQLAlchemy's or asyncpg's (which
    stays reachable as its cause)."""
    engine = create_async_engine(
        f"postgresql+asyncpg://postgres@127.0.0.1:{unused_port()}/postgres"
    )
    try:
        for call in (
            lambda db: enqueue_symbol(db, "AAPL"),
            lambda db: enqueue_symbols(db, ["AAPL", "MSFT"]),
        ):
            async with AsyncSession(engine) as session:
                with pytest.raises(DatabaseUnavailable, match=r"ConnectionRefused") as caught:
                    await call(session)
                assert caught.value.__cause__ is not None
    finally:
        await engine.dispose()


async def test_helper_runs_in_the_callers_transaction(engine: AsyncEngine, conn) -> None:
    async with engine.connect() as db:
        await enqueue_symbol(db, "MSFT")
        await db.rollback()
    assert await counts(conn) == (0, 0)


async def test_existing_universe_row_is_never_overwritten(engine: AsyncEngine, conn) -> None:
    await conn.execute(
        "INSERT INTO symbol_universe (symbol, status, added_source, sector)"
        " VALUES ('SPY', 'active', 'seed', 'ETF')"
    )
    async with engine.begin() as db:
        await enqueue_symbol(db, "spy")
    row = await conn.fetchrow("SELECT status, added_source, sector FROM symbol_universe")
    assert tuple(row) == ("active", "seed", "ETF")


async def test_duplicate_returns_the_live_job_and_only_raises_priority(
    engine: AsyncEngine, conn
) -> None:
    async with engine.begin() as db:
        first = await enqueue_symbol(db, "AAPL", priority="low")
        assert await enqueue_symbol(db, "aapl", priority="normal") == first
    assert (await live_job(conn, "AAPL"))["priority"] == "normal"
    async with engine.begin() as db:
        assert await enqueue_symbol(db, "AAPL", priority="low") == first
    assert (await live_job(conn, "AAPL"))["priority"] == "normal"
    async with engine.begin() as db:
        assert await enqueue_symbol(db, "AAPL", priority="high") == first
    assert (await live_job(conn, "AAPL"))["priority"] == "high"
    assert await counts(conn) == (1, 1)


async def test_duplicate_of_a_processing_job_returns_it(engine: AsyncEngine, conn) -> None:
    async with engine.begin() as db:
        job_id = await enqueue_symbol(db, "AAPL")
    await conn.execute("UPDATE symbol_onboarding_queue SET status = 'processing'")
    async with engine.begin() as db:
        assert await enqueue_symbol(db, "AAPL") == job_id


async def test_a_finished_symbol_gets_a_new_job(engine: AsyncEngine, conn) -> None:
    async with engine.begin() as db:
        first = await enqueue_symbol(db, "AAPL")
    await conn.execute("UPDATE symbol_onboarding_queue SET status = 'completed'")
    async with engine.begin() as db:
        assert await enqueue_symbol(db, "AAPL") != first
    assert await counts(conn) == (2, 1)


async def test_requested_by_must_be_a_user(engine: AsyncEngine, conn) -> None:
    user = await conn.fetchval("INSERT INTO users (email) VALUES ('a@b.c') RETURNING id")
    async with engine.begin() as db:
        job_id = await enqueue_symbol(db, "AAPL", requested_by=user)
    assert (
        await conn.fetchval(
            "SELECT requested_by FROM symbol_onboarding_queue WHERE id = $1", job_id
        )
        == user
    )
    stranger = uuid.uuid4()
    with pytest.raises(UnknownRequesterError, match=f"requested_by {stranger}: no such user"):
        async with engine.begin() as db:
            await enqueue_symbol(db, "MSFT", requested_by=stranger)
    with pytest.raises(UnknownRequesterError, match="no such user"):
        async with engine.begin() as db:
            await enqueue_symbols(db, ["MSFT", "IBM"], requested_by=str(stranger))
    with pytest.raises(UnknownRequesterError, match="invalid requested_by 'nobody'"):
        async with engine.begin() as db:
            await enqueue_symbol(db, "MSFT", requested_by="nobody")  # type: ignore[arg-type]
    assert await counts(conn) == (1, 1)


async def test_unknown_requester_leaves_the_callers_transaction_usable(
    engine: AsyncEngine, conn
) -> None:
    async with engine.begin() as db:
        await db.execute(text("INSERT INTO users (email) VALUES ('mine@b.c')"))
        for call in (
            enqueue_symbol(db, "MSFT", requested_by=uuid.uuid4()),
            enqueue_symbols(db, ["IBM", "ORCL"], requested_by=uuid.uuid4()),
        ):
            with pytest.raises(UnknownRequesterError):
                await call
        # The same transaction goes on: the caller's own write and a good enqueue commit.
        await enqueue_symbol(db, "AAPL")
    assert await counts(conn) == (1, 1)
    assert await conn.fetchval("SELECT count(*) FROM users WHERE email = 'mine@b.c'") == 1


async def test_a_plain_string_is_not_a_list_of_symbols(engine: AsyncEngine, conn) -> None:
    for value in ("IBM", b"IBM"):
        with pytest.raises(TypeError, match="expected a list of symbols"):
            async with engine.begin() as db:
                await enqueue_symbols(db, value)  # type: ignore[arg-type]
    assert await counts(conn) == (0, 0)


async def test_batch_is_one_round_trip_in_input_order(engine: AsyncEngine, conn) -> None:
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    async with engine.begin() as db:
        ids = await enqueue_symbols(db, ["msft", "AAPL", "brk.b", "MSFT"], priority="high")
    assert len([s for s in statements if "enqueue_symbol_onboarding" in s]) == 1
    assert len(ids) == 4 and ids[0] == ids[3] and len(set(ids)) == 3
    rows = await conn.fetch("SELECT id, symbol FROM symbol_onboarding_queue")
    by_id = {r["id"]: r["symbol"] for r in rows}
    assert [by_id[i] for i in ids] == ["MSFT", "AAPL", "BRK.B", "MSFT"]


async def test_empty_batch_writes_nothing(engine: AsyncEngine, conn) -> None:
    async with engine.begin() as db:
        assert await enqueue_symbols(db, []) == []
    assert await counts(conn) == (0, 0)


# --- bad input, through all three paths --------------------------------------------------------


@pytest.mark.parametrize("bad", INVALID)
async def test_invalid_symbol_is_rejected_everywhere(bad: str, engine: AsyncEngine, conn) -> None:
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('KEEP')")
    before = await counts(conn)

    with pytest.raises(InvalidSymbolError, match="invalid symbol"):
        async with engine.begin() as db:
            await enqueue_symbol(db, bad)
    with pytest.raises(InvalidSymbolError, match="invalid symbol"):
        async with engine.begin() as db:
            await enqueue_symbols(db, ["GOOD", bad])
    with pytest.raises(asyncpg.InvalidParameterValueError, match="invalid symbol") as err:
        await conn.fetchval("SELECT enqueue_symbol_onboarding($1)", bad)
    assert f"invalid symbol '{bad}'" in str(err.value)
    # A plain INSERT of more than 20 characters is refused by VARCHAR(20) before our trigger.
    refused = "value too long" if len(bad) > 20 else "invalid symbol"
    with pytest.raises(asyncpg.PostgresError, match=refused):
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ($1)", bad)

    assert await counts(conn) == before


async def test_null_symbol_is_rejected_everywhere(engine: AsyncEngine, conn) -> None:
    with pytest.raises(InvalidSymbolError):
        async with engine.begin() as db:
            await enqueue_symbol(db, None)  # type: ignore[arg-type]
    with pytest.raises(asyncpg.InvalidParameterValueError, match="invalid symbol NULL"):
        await conn.fetchval("SELECT enqueue_symbol_onboarding(NULL)")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="invalid symbol NULL"):
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES (NULL)")
    assert await counts(conn) == (0, 0)


@pytest.mark.parametrize("bad", ["urgent", "HIGH", "", None])
async def test_invalid_priority_is_rejected_everywhere(bad, engine: AsyncEngine, conn) -> None:
    with pytest.raises(InvalidPriorityError, match="invalid priority"):
        async with engine.begin() as db:
            await enqueue_symbol(db, "AAPL", priority=bad)
    with pytest.raises(InvalidPriorityError, match="invalid priority"):
        async with engine.begin() as db:
            await enqueue_symbols(db, ["AAPL"], priority=bad)
    with pytest.raises(asyncpg.InvalidParameterValueError, match="invalid priority"):
        await conn.fetchval("SELECT enqueue_symbol_onboarding('AAPL', $1)", bad)
    with pytest.raises(asyncpg.InvalidParameterValueError, match="invalid priority"):
        await conn.execute(
            "INSERT INTO symbol_onboarding_queue (symbol, priority) VALUES ('AAPL', $1)", bad
        )
    assert await counts(conn) == (0, 0)


async def test_status_accepts_only_the_specs_values(conn) -> None:
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('AAPL')")
    for bad in ("done", "PENDING"):
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE symbol_onboarding_queue SET status = $1", bad)
    with pytest.raises(asyncpg.NotNullViolationError):
        await conn.execute("UPDATE symbol_onboarding_queue SET status = NULL")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="invalid priority"):
        await conn.execute("UPDATE symbol_onboarding_queue SET priority = 'urgent'")


# --- the SQL function and plain INSERT ---------------------------------------------------------


async def test_sql_function_matches_the_helper(conn) -> None:
    first = await conn.fetchval("SELECT enqueue_symbol_onboarding(' eurusd=x ', 'low')")
    assert await conn.fetchval("SELECT enqueue_symbol_onboarding('EURUSD=X', 'high')") == first
    job = await live_job(conn, "EURUSD=X")
    assert job["id"] == first and job["priority"] == "high"
    assert (
        await conn.fetchval("SELECT status FROM symbol_universe WHERE symbol = 'EURUSD=X'")
        == "pending"
    )


async def test_plain_insert_normalises_defaults_and_rejects_a_duplicate(conn) -> None:
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES (' btc-usd')")
    job = await live_job(conn, "BTC-USD")
    assert (job["status"], job["priority"], job["attempts"]) == ("pending", "normal", 0)
    with pytest.raises(asyncpg.UniqueViolationError, match="idx_queue_pending_symbol"):
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('BTC-USD')")
    assert await counts(conn) == (1, 1)


async def test_every_enqueue_path_notifies_listeners(
    engine: AsyncEngine, conn, database_url
) -> None:
    from worker.core.db import asyncpg_dsn

    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("symbol_onboarding", lambda *args: received.put_nowait(args[2]))
    try:
        await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('A')")
        await asyncio.wait_for(received.get(), 5)
        await conn.fetchval("SELECT enqueue_symbol_onboarding('B')")
        await asyncio.wait_for(received.get(), 5)
        async with engine.begin() as db:
            await enqueue_symbols(db, ["C", "D", "E"])
        await asyncio.wait_for(received.get(), 5)
    finally:
        await listener.close()


# --- one rule: the Python check agrees with the trigger ----------------------------------------

ALPHABET = st.sampled_from(
    [
        *"AZaz09.-^=/ _\t\n$ßÄ,;'\"",
        *["\u00a0", "\x0b", "\u3000"],  # Unicode spaces, and a vertical tab
        # Non-ASCII letters whose upper() or casefold is ASCII in some locale or in Python:
        # dotless i, long s, Kelvin sign, dotted I, the ff ligature, full-width i.
        *["\u0131", "\u017f", "\u212a", "\u0130", "\ufb00", "\uff49", "\u00e9"],
    ]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.text(ALPHABET, max_size=24))
async def test_python_and_sql_rules_agree(raw: str, conn) -> None:
    try:
        expected: str | None = normalize_symbol(raw)
    except InvalidSymbolError:
        expected = None
    try:
        stored = await conn.fetchval("SELECT symbol_onboarding_check_symbol($1)", raw)
    except asyncpg.InvalidParameterValueError:
        stored = None
    assert stored == expected
