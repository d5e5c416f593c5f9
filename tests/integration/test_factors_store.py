"""The factor store against real PostgreSQL: both table shapes, the read path (adjusted closes,
gaps, windows), the writes (upsert, rounding, last_factor_date) and shape detection."""

from datetime import date
from decimal import Decimal

import asyncpg
import numpy as np
import pytest
import statsmodels.api as sm

from tests.factordata import (
    business_days,
    closes,
    reference_returns,
    reference_series,
    store_prices,
    symbol_returns,
)
from worker.factors.betas import FACTOR_INDEX, FACTORS, REFERENCE_ETFS, Panel, compute_betas
from worker.factors.service import RECENT_DATES, recompute_factors
from worker.factors.store import FactorStore, ShapeError
from worker.sql import factors as sql

DAYS = business_days(260)
WIDE_SELECT = (
    f"SELECT symbol, calculation_date, {', '.join(sql.WIDE_COLUMNS)} FROM symbol_factor_exposures"
)


def seeded(k: int = 5, seed: int = 2) -> dict[str, tuple[list[date], list[float], list[float]]]:
    rng = np.random.default_rng(seed)
    refs = reference_returns(np.random.default_rng(1), len(DAYS))
    prices = closes(symbol_returns(rng, refs, k), 50.0)
    return {f"S{i}": (DAYS, prices[i].tolist(), prices[i].tolist()) for i in range(k)}


def expected(series: dict, symbols: list[str]) -> np.ndarray:
    """compute_betas on the same numbers as stored, rounded like the columns: (k, 12)."""
    refs = reference_series(DAYS)
    panel = Panel(
        np.arange(len(DAYS)),
        np.array([series[s][2] for s in symbols]),
        np.array([refs[e][2] for e in REFERENCE_ETFS]),
    )
    return np.round(compute_betas(panel).beta, 6)


async def test_wide_table_gets_one_row_per_symbol_and_date(conn: asyncpg.Connection) -> None:
    series = seeded()
    await store_prices(conn, {**reference_series(DAYS), **series})
    store = await FactorStore.detect(conn)
    assert store.shape == "wide"
    result = await recompute_factors(conn, list(series), store=store)
    assert (result.computed, result.complete, result.rows_written) == (5, 5, 5)
    assert result.reread == 0  # whole windows after the cut: one read
    assert result.last_date == DAYS[-1]
    rows = await conn.fetch(WIDE_SELECT + " ORDER BY symbol")
    assert [r["symbol"] for r in rows] == list(series)
    assert {r["calculation_date"] for r in rows} == {DAYS[-1]}
    stored = np.array([[float(r[c]) for c in sql.WIDE_COLUMNS] for r in rows])
    np.testing.assert_array_equal(stored, expected(series, list(series)))
    assert all(r[c].as_tuple().exponent == -6 for r in rows for c in sql.WIDE_COLUMNS)
    factor_dates = await conn.fetch(
        "SELECT last_factor_date FROM symbol_universe WHERE symbol = ANY($1)", list(series)
    )
    assert {r[0] for r in factor_dates} == {DAYS[-1]}
    # The chain from stored rows to stored betas, against statsmodels on the stored closes.
    spy = np.array(reference_series(DAYS)["SPY"][2])
    y = np.array(series["S0"][2])
    x_ret, y_ret = (spy[1:] / spy[:-1] - 1)[-90:], (y[1:] / y[:-1] - 1)[-90:]
    slope = sm.OLS(y_ret, sm.add_constant(x_ret)).fit().params[1]
    assert float(rows[0]["market_beta"]) == pytest.approx(np.clip(slope, -5, 5), abs=1e-6)


async def test_recompute_upserts_in_place(conn: asyncpg.Connection) -> None:
    series = seeded(2)
    await store_prices(conn, {**reference_series(DAYS), **series})
    store = await FactorStore.detect(conn)
    await recompute_factors(conn, ["S0", "S1"], store=store)
    before = await conn.fetch(WIDE_SELECT + " ORDER BY symbol")
    await conn.execute(
        "UPDATE symbol_prices_daily SET adj_close_price = adj_close_price * 1.3"
        " WHERE symbol = 'S1' AND price_date = $1",
        DAYS[-2],
    )
    await recompute_factors(conn, ["S0", "S1"], store=store)
    after = await conn.fetch(WIDE_SELECT + " ORDER BY symbol")
    assert len(after) == 2
    assert after[0] == before[0]
    assert after[1]["market_beta"] != before[1]["market_beta"]


async def test_a_split_in_the_closes_gives_the_same_betas(conn: asyncpg.Connection) -> None:
    """Returns come from adjusted closes: a 2:1 split in the raw closes is not a -50 % day."""
    series = seeded(1)
    days, _, adjusted = series["S0"]
    split = [c * 2 if i < 200 else c for i, c in enumerate(adjusted)]  # raw closes halve on day 200
    await store_prices(
        conn,
        {
            **reference_series(DAYS),
            "CONT": (days, adjusted, adjusted),
            "SPLIT": (days, split, adjusted),
            "RAW": (days, split, None),  # no adjusted close stored: the close is used
        },
    )
    await recompute_factors(conn, ["CONT", "SPLIT", "RAW"])
    rows = {r["symbol"]: r for r in await conn.fetch(WIDE_SELECT)}
    assert [rows["SPLIT"][c] for c in sql.WIDE_COLUMNS] == [
        rows["CONT"][c] for c in sql.WIDE_COLUMNS
    ]
    # Without an adjusted close the split does read as a crash (the test can tell).
    assert rows["RAW"]["market_beta"] != rows["CONT"]["market_beta"]


async def test_short_history_and_gaps(conn: asyncpg.Connection) -> None:
    series = seeded(3)
    refs = reference_series(DAYS)
    tlt_days = [d for i, d in enumerate(DAYS) if i % 7]  # TLT misses every 7th date
    tlt = [p for i, p in enumerate(refs["TLT"][2]) if i % 7]
    refs["TLT"] = (tlt_days, tlt, tlt)
    d, c, a = series["S1"]
    series["S1"] = (d[-50:], c[-50:], a[-50:])  # 49 returns: no spreads
    d, c, a = series["S2"]
    series["S2"] = (d[-20:], c[-20:], a[-20:])  # 19 returns: nothing
    await store_prices(conn, {**refs, **series})
    result = await recompute_factors(conn, list(series))
    assert (result.computed, result.complete) == (2, 1)
    assert result.skipped == {"too_few_returns": 1}
    assert result.absent == {f"{f.column}: too_few_returns": 1 for f in FACTORS[8:]}
    rows = {r["symbol"]: r for r in await conn.fetch(WIDE_SELECT)}
    assert set(rows) == {"S0", "S1"}
    assert all(rows["S1"][f.column] is None for f in FACTORS[8:])
    assert all(rows["S1"][f.column] is not None for f in FACTORS[:8])
    assert (
        await conn.fetchval("SELECT last_factor_date FROM symbol_universe WHERE symbol = 'S2'")
        is None
    )
    # TLT's missing dates are dropped, not filled: the same as computing without them.
    panel_days = np.array([(d - date(1970, 1, 1)).days for d in DAYS])
    keep = np.array([i % 7 != 0 for i in range(len(DAYS))])
    full = reference_series(DAYS)
    panel = Panel(
        panel_days[keep],
        np.array([series["S0"][2]])[:, keep],
        np.array([full[e][2] for e in REFERENCE_ETFS])[:, keep],
    )
    ir = compute_betas(panel).beta[0, 1]
    assert float(rows["S0"]["ir_beta"]) == pytest.approx(ir, abs=5e-7)


async def test_the_cut_read_gives_the_whole_reads_betas(conn: asyncpg.Connection) -> None:
    """Prices are read first from SPY's RECENT_DATES-th latest date on. Read again without the
    cut: S0 and S1, whose spread windows the cut leaves short (VUG lacks 20 of those dates), so
    they use 180 returns, not 170; and STALE, whose prices stop 210 dates before the end (none
    since the cut), so it gets the betas its history allows instead of none. The betas are
    those of a read of the whole history (test_wide_table_... shows a full series is read once).
    """
    assert len(DAYS) > RECENT_DATES
    series = seeded(2)
    d, c, a = series["S1"]
    series["STALE"] = (d[:50], c[:50], a[:50])
    refs = reference_series(DAYS)
    gaps = set(range(len(DAYS) - 40, len(DAYS) - 20))  # 20 recent dates without VUG
    vug = [
        (d, p) for i, (d, p) in enumerate(zip(DAYS, refs["VUG"][2], strict=True)) if i not in gaps
    ]
    refs["VUG"] = ([d for d, _ in vug], [p for _, p in vug], [p for _, p in vug])
    await store_prices(conn, {**refs, **series})
    names = sorted(series)
    result = await recompute_factors(conn, names)
    assert (result.computed, result.complete, result.reread) == (3, 2, 3)
    # The oracle: compute_betas on every whole series, each on the full date grid.
    grid = {day: i for i, day in enumerate(DAYS)}

    def row(days: list, prices: list) -> np.ndarray:
        out = np.full(len(DAYS), np.nan)
        out[[grid[x] for x in days]] = prices
        return out

    references = np.array([reference_series(DAYS)[e][2] for e in REFERENCE_ETFS])
    references[REFERENCE_ETFS.index("VUG"), sorted(gaps)] = np.nan
    prices = np.array([row(series[n][0], series[n][1]) for n in names])
    betas = compute_betas(Panel(np.arange(len(DAYS)), prices, references))
    spread = FACTOR_INDEX["growth_value_spread"]
    assert dict(zip(names, betas.observations[:, spread].tolist(), strict=True)) == {
        "S0": 180, "S1": 180, "STALE": 49,
    }  # fmt: skip
    rows = {r["symbol"]: r for r in await conn.fetch(WIDE_SELECT)}
    assert sorted(rows) == names
    stored = np.array(
        [
            [np.nan if rows[n][c] is None else float(rows[n][c]) for c in sql.WIDE_COLUMNS]
            for n in names
        ]
    )
    # Stored to 6 decimals: within half a unit of the last one (and NULL where not computed).
    np.testing.assert_allclose(stored, betas.beta, rtol=0, atol=5.01e-7)


async def test_as_of_and_the_history_window(conn: asyncpg.Connection) -> None:
    series = seeded(1)
    await store_prices(conn, {**reference_series(DAYS), **series})
    result = await recompute_factors(conn, ["S0"], as_of=DAYS[150])
    assert result.last_date == DAYS[150]
    # A window too short for 30 returns computes nothing.
    result = await recompute_factors(conn, ["S0"], history_days=30)
    assert result.computed == 0 and result.skipped == {"too_few_returns": 1}
    # An as-of date before SPY's first price: nothing, said plainly.
    result = await recompute_factors(conn, ["S0"], as_of=date(2020, 1, 1))
    assert result.skipped == {"spy_has_no_prices": 1}
    # last_factor_date never moves back.
    await recompute_factors(conn, ["S0"])
    await recompute_factors(conn, ["S0"], as_of=DAYS[100])
    assert (
        await conn.fetchval("SELECT last_factor_date FROM symbol_universe WHERE symbol = 'S0'")
        == DAYS[-1]
    )
    unknown = await recompute_factors(conn, ["NOPE"])
    assert unknown.skipped == {"no_prices_in_window": 1}


async def test_long_table_on_the_host_schema(host_conn: asyncpg.Connection) -> None:
    conn = host_conn
    series = seeded(2)
    d, c, a = series["S1"]
    series["S1"] = (d[-50:], c[-50:], a[-50:])  # no spreads
    await store_prices(conn, {**reference_series(DAYS), **series})
    store = await FactorStore.detect(conn)
    assert store.shape == "long" and len(store.factor_ids) == 12
    ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT name, id FROM factor_definitions")}
    # A spread stored earlier for S1 on the same date, no longer computable: removed.
    await conn.execute(
        """INSERT INTO symbol_factor_exposures
           (symbol, factor_id, calculation_date, beta_value, calculation_method)
           VALUES ('S1', $1, $2, 0.5, 'spread_regression')""",
        ids["Size Spread"],
        DAYS[-1],
    )
    # The host's own Provider Beta row is not the worker's: kept.
    await conn.execute(
        """INSERT INTO symbol_factor_exposures
           (symbol, factor_id, calculation_date, beta_value, calculation_method)
           VALUES ('S1', $1, $2, 1.1, 'provider')""",
        ids["Provider Beta (1Y)"],
        DAYS[-1],
    )
    result = await recompute_factors(conn, ["S0", "S1"], store=store)
    assert result.rows_written == 12 + 8
    rows = await conn.fetch(
        """SELECT e.*, f.name FROM symbol_factor_exposures e
           JOIN factor_definitions f ON f.id = e.factor_id ORDER BY e.symbol, f.display_order"""
    )
    by_symbol: dict[str, dict[str, asyncpg.Record]] = {}
    for r in rows:
        by_symbol.setdefault(r["symbol"], {})[r["name"]] = r
    assert set(by_symbol["S0"]) == {f.name for f in FACTORS}
    assert set(by_symbol["S1"]) == {f.name for f in FACTORS[:8]} | {"Provider Beta (1Y)"}
    want = expected(series, ["S0"])[0]
    for j, factor in enumerate(FACTORS):
        row = by_symbol["S0"][factor.name]
        assert row["beta_value"] == Decimal(str(want[j])).quantize(Decimal("0.000001"))
        assert row["calculation_method"] == factor.method
        assert row["regression_window_days"] == factor.window
        assert row["observations"] == factor.window
        assert row["regularization_alpha"] == (None if factor.alpha is None else Decimal("1.0000"))
        assert row["calculation_date"] == DAYS[-1]
        assert 0 <= row["r_squared"] <= 1
        assert row["quality_flag"] is None
    assert by_symbol["S1"]["Market Beta (90D)"]["observations"] == 49
    # Upserted on (symbol, factor_id, calculation_date): a second run adds nothing.
    await recompute_factors(conn, ["S0", "S1"], store=store)
    assert await conn.fetchval("SELECT count(*) FROM symbol_factor_exposures") == 12 + 8 + 1


async def test_capped_betas_are_flagged_in_the_long_table(host_conn: asyncpg.Connection) -> None:
    refs = reference_series(DAYS)
    spy = np.array(refs["SPY"][2])
    wild = closes(9 * (spy[1:] / spy[:-1] - 1), 100.0).tolist()
    await store_prices(host_conn, {**refs, "WILD": (DAYS[1:], wild, wild)})
    await recompute_factors(host_conn, ["WILD"])
    row = await host_conn.fetchrow(
        """SELECT beta_value, quality_flag FROM symbol_factor_exposures e
           JOIN factor_definitions f ON f.id = e.factor_id WHERE f.name = 'Market Beta (90D)'"""
    )
    assert (row["beta_value"], row["quality_flag"]) == (Decimal("5.000000"), "capped")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("ALTER TABLE symbol_factor_exposures DROP COLUMN size_spread", "no column size_spread"),
        ("ALTER TABLE symbol_factor_exposures ADD COLUMN source text NOT NULL", "fill: source"),
        (
            "ALTER TABLE symbol_factor_exposures DROP CONSTRAINT "
            "symbol_factor_exposures_symbol_calculation_date_key",
            "no unique constraint on \\(calculation_date, symbol\\)",
        ),
        ("DROP TABLE symbol_factor_exposures", "no symbol_factor_exposures table"),
    ],
)
async def test_unwritable_wide_shapes_are_refused(
    conn: asyncpg.Connection, change: str, message: str
) -> None:
    await conn.execute(change)
    with pytest.raises(ShapeError, match=message):
        await FactorStore.detect(conn)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("DELETE FROM factor_definitions WHERE name = 'Momentum Spread'", "named Momentum Spread"),
        ("ALTER TABLE symbol_factor_exposures DROP COLUMN r_squared", "no column r_squared"),
        (
            "ALTER TABLE symbol_factor_exposures DROP CONSTRAINT uq_symbol_factor_date",
            "no unique constraint on \\(calculation_date, factor_id, symbol\\)",
        ),
        (
            "ALTER TABLE symbol_factor_exposures DROP CONSTRAINT "
            "fk_symbol_factor_exposures_factor_id_factor_definitions; DROP TABLE factor_definitions",
            "no factor_definitions table",
        ),
    ],
)
async def test_unwritable_long_shapes_are_refused(
    host_conn: asyncpg.Connection, change: str, message: str
) -> None:
    await host_conn.execute(change)
    with pytest.raises(ShapeError, match=message):
        await FactorStore.detect(host_conn)
