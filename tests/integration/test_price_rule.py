"""One rule for a bad price row, in Python (onboarding) and in SQL (backfill): they must agree."""

from datetime import date
from decimal import Decimal

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.prices.base import RawBar
from worker.prices.validate import row_problem, row_problem_sql, row_valid_sql

COLUMNS = {
    "open_": "$1::numeric",
    "high": "$2::numeric",
    "low": "$3::numeric",
    "close": "$4::numeric",
    "adj_close": "$5::numeric",
    "volume_": "$6::numeric",
}
ROW_PROBLEM = row_problem_sql(**COLUMNS)
ROW_VALID = row_valid_sql(**COLUMNS)
# Values around every boundary of the rule, and ordinary ones.
EDGES = [
    "0",
    "-0",
    "-1",
    "0.00004",
    "0.00005",
    "0.000051",
    "0.0001",
    "10",
    "10.0001",
    "10.00011",
    "99999999.99994",
    "99999999.99995",
    "100000000",
    "NaN",
    "Infinity",
    "-Infinity",
]
prices = st.one_of(
    st.none(),
    st.sampled_from([Decimal(v) for v in EDGES]),
    st.decimals(min_value=-10, max_value=10**9, places=5, allow_nan=False),
)
volumes = st.one_of(
    st.none(),
    st.sampled_from([Decimal(v) for v in ("-1", "0", "NaN", str(2**63 - 1), str(2**63))]),
    st.integers(min_value=-10, max_value=10**12).map(Decimal),
)


@settings(
    max_examples=250,
    deadline=None,
    # A loaded machine makes generation look slow; the examples are cheap to check.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(open_=prices, high=prices, low=prices, close=prices, adj_close=prices, volume=volumes)
async def test_python_and_sql_rules_agree(
    open_: Decimal | None,
    high: Decimal | None,
    low: Decimal | None,
    close: Decimal | None,
    adj_close: Decimal | None,
    volume: Decimal | None,
    conn: asyncpg.Connection,
) -> None:
    expected = row_problem(RawBar(date(2023, 1, 3), open_, high, low, close, adj_close, volume))
    in_sql = await conn.fetchrow(
        f"SELECT {ROW_PROBLEM} AS problem, {ROW_VALID} AS valid",
        open_,
        high,
        low,
        close,
        adj_close,
        volume,
    )
    assert in_sql["problem"] == expected
    # NULL (a missing close) filters a row out of a WHERE as false does.
    assert (in_sql["valid"] is True) is (expected is None)
