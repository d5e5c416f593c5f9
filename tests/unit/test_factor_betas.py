"""The beta math against independent oracles: statsmodels OLS and scikit-learn's StandardScaler +
Ridge, one symbol at a time on pandas-aligned dates, to 1e-6; plus known values."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from tests.factordata import reference_returns
from worker.factors.betas import (
    BETA_CAP,
    BLAS_THREAD_VARIABLES,
    COMPUTED,
    FACTOR_INDEX,
    FACTORS,
    NO_CALCULATION_DATE,
    NO_DAY,
    REFERENCE_ETFS,
    STYLE_ETFS,
    TOO_FEW_RETURNS,
    Panel,
    compute_betas,
    ols_slopes,
    ridge_coefficients,
)

TOLERANCE = 1e-6
DAYS = 300
SPREADS = {
    "growth_value_spread": ("VUG", "VTV"),
    "momentum_spread": ("MTUM", "SPY"),
    "size_spread": ("IWM", "SPY"),
    "quality_spread": ("QUAL", "SPY"),
}


def prices_from(returns: np.ndarray, start: float = 100.0) -> np.ndarray:
    return start * np.cumprod(1.0 + returns, axis=-1)


def make_panel(symbol_prices: np.ndarray, references: np.ndarray) -> Panel:
    days = np.arange(references.shape[1], dtype=np.int64) * 2 + 10_000  # any ascending numbers
    return Panel(days=days, prices=np.atleast_2d(symbol_prices), references=references)


def oracle(panel: Panel, row: int) -> dict[str, tuple[float, float, int]]:
    """The host's method, written independently: pandas aligns dates, statsmodels and
    scikit-learn fit. {factor column: (capped beta, R^2, returns)} for the computed factors."""
    frame = pd.DataFrame(
        {"y": panel.prices[row], **dict(zip(REFERENCE_ETFS, panel.references, strict=True))},
        index=panel.days,
    )
    frame = frame.where(frame > 0)
    both = frame[["y", "SPY"]].dropna()
    if both.empty:
        return {}
    frame = frame.loc[: both.index.max()]

    def returns(columns: list[str], window: int) -> pd.DataFrame:
        aligned = frame[["y", *columns]].dropna()
        return (aligned / aligned.shift(1) - 1).iloc[1:].tail(window)

    result: dict[str, tuple[float, float, int]] = {}

    def ols(column: str, y: pd.Series, x: pd.Series, minimum: int) -> None:
        if len(y) < minimum:
            return
        fit = sm.OLS(y.to_numpy(), sm.add_constant(x.to_numpy())).fit()
        beta = float(np.clip(fit.params[1], -BETA_CAP, BETA_CAP))
        result[column] = (beta, float(fit.rsquared), len(y))

    r = returns(["SPY"], 90)
    ols("market_beta", r["y"], r["SPY"], 30)
    r = returns(["TLT"], 90)
    ols("ir_beta", r["y"], r["TLT"], 30)
    for column, (a, b) in SPREADS.items():
        r = returns([a, b], 180)
        ols(column, r["y"], r[a] - r[b], 60)
    r = returns(list(STYLE_ETFS), 90)
    if len(r) >= 30:
        scaler = StandardScaler()
        z = scaler.fit_transform(r[list(STYLE_ETFS)].to_numpy())
        model = Ridge(alpha=1.0).fit(z, r["y"].to_numpy())
        r2 = float(model.score(z, r["y"].to_numpy()))
        columns = [f.column for f in FACTORS if f.method == "ridge_regression"]
        for column, coefficient in zip(columns, model.coef_ / scaler.scale_, strict=True):
            result[column] = (float(np.clip(coefficient, -BETA_CAP, BETA_CAP)), r2, len(r))
    return result


def assert_matches_oracle(panel: Panel) -> None:
    betas = compute_betas(panel)
    for row in range(panel.prices.shape[0]):
        expected = oracle(panel, row)
        computed = {
            f.column: (
                betas.beta[row, i],
                betas.r_squared[row, i],
                int(betas.observations[row, i]),
            )
            for i, f in enumerate(FACTORS)
            if betas.status[row, i] == COMPUTED
        }
        assert computed.keys() == expected.keys(), f"row {row}"
        for column, (beta, r2, n) in expected.items():
            got_beta, got_r2, got_n = computed[column]
            assert got_n == n, (row, column)
            assert got_beta == pytest.approx(beta, abs=TOLERANCE), (row, column)
            assert got_r2 == pytest.approx(r2, abs=TOLERANCE), (row, column)


def test_every_beta_equals_statsmodels_and_scikit_learn() -> None:
    rng = np.random.default_rng(7)
    refs = reference_returns(rng, DAYS)
    loadings = rng.normal(1.0, 0.6, (40, len(REFERENCE_ETFS)))
    symbol_returns = loadings @ refs / 3 + rng.normal(0, 0.01, (40, DAYS))
    panel = make_panel(prices_from(symbol_returns), prices_from(refs))
    assert_matches_oracle(panel)
    assert compute_betas(panel).computed.all()


def test_gaps_are_dropped_not_filled_and_each_regression_keeps_its_own_dates() -> None:
    rng = np.random.default_rng(11)
    refs = prices_from(reference_returns(rng, DAYS))
    symbols = prices_from(rng.normal(0, 0.012, (30, DAYS)) + 0.5 * (refs[0] / 100 - 1) / DAYS)
    tlt = REFERENCE_ETFS.index("TLT")
    refs[tlt, rng.choice(DAYS, 25, replace=False)] = np.nan  # TLT misses 25 dates
    refs[REFERENCE_ETFS.index("MTUM"), 200:210] = np.nan  # MTUM misses ten in a row
    for row in range(0, 30, 3):  # some symbols miss their own dates, each differently
        symbols[row, rng.choice(DAYS, 5 + row, replace=False)] = np.nan
    symbols[1, -1] = 0.0  # a zero price counts as missing
    symbols[2, -5:] = np.nan  # stops early: an earlier calculation date
    panel = make_panel(symbols, refs)
    assert_matches_oracle(panel)
    betas = compute_betas(panel)
    assert betas.calculation_day[2] == panel.days[-6]
    assert betas.calculation_day[4] == panel.days[-1]
    # Removing TLT's missing dates from everything changes nothing but the dates other
    # regressions use: the IR beta is the same as on the gapped data.
    keep = ~np.isnan(refs[tlt])
    trimmed = make_panel(panel.prices[:, keep], panel.references[:, keep])
    ir = FACTOR_INDEX["ir_beta"]
    np.testing.assert_allclose(compute_betas(trimmed).beta[5:, ir], betas.beta[5:, ir], atol=1e-12)


def test_spy_has_a_market_beta_of_exactly_one() -> None:
    rng = np.random.default_rng(3)
    refs = prices_from(reference_returns(rng, DAYS))
    betas = compute_betas(make_panel(refs[0], refs))
    market = FACTOR_INDEX["market_beta"]
    assert round(float(betas.beta[0, market]), 6) == 1.0
    assert betas.r_squared[0, market] == pytest.approx(1.0, abs=1e-12)


def test_twice_spy_plus_noise_has_a_market_beta_of_about_two() -> None:
    rng = np.random.default_rng(5)
    refs = reference_returns(rng, DAYS)
    symbol = 2 * refs[0] + rng.normal(0, 0.002, DAYS)
    betas = compute_betas(make_panel(prices_from(symbol), prices_from(refs)))
    assert betas.beta[0, FACTOR_INDEX["market_beta"]] == pytest.approx(2.0, abs=0.05)


def test_a_known_mix_of_the_style_etfs_gets_the_ridge_solution() -> None:
    rng = np.random.default_rng(13)
    refs = reference_returns(rng, DAYS)
    refs[2:] = rng.normal(0.0003, 0.01, (6, DAYS))  # independent style series
    weights = np.array([0.5, -0.3, 0.8, 0.2, 1.1, -0.6])
    symbol = weights @ refs[2:] + rng.normal(0, 0.001, DAYS)
    panel = make_panel(prices_from(symbol), prices_from(refs))
    betas = compute_betas(panel)
    styles = [FACTOR_INDEX[f.column] for f in FACTORS if f.method == "ridge_regression"]
    # The ridge solution, computed independently on the last 90 returns.
    x = (panel.references[2:, 1:] / panel.references[2:, :-1] - 1).T[-90:]
    y = (panel.prices[0, 1:] / panel.prices[0, :-1] - 1)[-90:]
    scaler = StandardScaler().fit(x)
    expected = Ridge(alpha=1.0).fit(scaler.transform(x), y).coef_ / scaler.scale_
    np.testing.assert_allclose(betas.beta[0, styles], expected, atol=1e-9)
    # Ridge shrinks, a little at alpha 1 with 90 observations: close to the true mix.
    np.testing.assert_allclose(betas.beta[0, styles], weights, atol=0.05)


def test_betas_are_capped_at_five() -> None:
    rng = np.random.default_rng(17)
    refs = reference_returns(rng, DAYS)
    symbols = np.stack([9 * refs[0], -8 * refs[0], 3 * refs[0]]) + rng.normal(0, 1e-4, (3, DAYS))
    betas = compute_betas(make_panel(prices_from(symbols, 1000.0), prices_from(refs)))
    market = FACTOR_INDEX["market_beta"]
    assert list(betas.beta[:, market]) == [5.0, -5.0, pytest.approx(3.0, abs=0.01)]
    assert list(betas.capped[:, market]) == [True, True, False]


@pytest.mark.parametrize(
    ("history", "market", "spreads"),
    [(30, False, False), (31, True, False), (60, True, False), (61, True, True)],
)
def test_minimum_returns(history: int, market: bool, spreads: bool) -> None:
    """`history` prices give history - 1 returns: 30 for market/IR/styles, 60 for spreads."""
    rng = np.random.default_rng(19)
    refs = prices_from(reference_returns(rng, DAYS))
    symbol = np.full(DAYS, np.nan)
    symbol[-history:] = prices_from(rng.normal(0, 0.01, history))
    betas = compute_betas(make_panel(symbol, refs))
    for i, factor in enumerate(FACTORS):
        wanted = spreads if factor.method == "spread_regression" else market
        assert bool(betas.status[0, i] == COMPUTED) is wanted, factor.column
        assert betas.observations[0, i] == history - 1
        if not wanted:
            assert betas.status[0, i] == TOO_FEW_RETURNS
            assert np.isnan(betas.beta[0, i])


def test_twenty_days_of_history_computes_nothing() -> None:
    rng = np.random.default_rng(23)
    refs = prices_from(reference_returns(rng, DAYS))
    symbol = np.full(DAYS, np.nan)
    symbol[-20:] = prices_from(rng.normal(0, 0.01, 20))
    betas = compute_betas(make_panel(symbol, refs))
    assert (betas.status == TOO_FEW_RETURNS).all()
    assert np.isnan(betas.beta).all()
    assert betas.calculation_day[0] != NO_DAY


def test_no_date_shared_with_spy() -> None:
    rng = np.random.default_rng(29)
    refs = prices_from(reference_returns(rng, DAYS))
    refs[0, :] = np.nan
    betas = compute_betas(make_panel(refs[1], refs))
    assert (betas.status == NO_CALCULATION_DATE).all()
    assert betas.calculation_day[0] == NO_DAY


def test_unadjusted_split_would_read_as_a_crash() -> None:
    """Why the store feeds adjusted closes: the same stock with a 2:1 split in its raw closes
    gets a different market beta (the -50 % day dominates the regression)."""
    rng = np.random.default_rng(31)
    refs = reference_returns(rng, DAYS)
    adjusted = prices_from(1.2 * refs[0] + rng.normal(0, 0.003, DAYS))
    raw = adjusted.copy()
    raw[:-40] *= 2  # before the split, the raw close was twice the adjusted one
    betas = compute_betas(make_panel(np.stack([adjusted, raw]), prices_from(refs)))
    market = FACTOR_INDEX["market_beta"]
    assert betas.beta[0, market] == pytest.approx(1.2, abs=0.05)
    assert abs(betas.beta[1, market] - betas.beta[0, market]) > 0.1


def test_constant_reference_returns_have_no_slope() -> None:
    slope, r2 = ols_slopes(np.full(40, 0.01), np.ones((2, 40)))
    assert np.isnan(slope).all() and np.isnan(r2).all()


def test_ridge_matches_scikit_learn_with_a_constant_column() -> None:
    rng = np.random.default_rng(37)
    x = rng.normal(0, 0.01, (90, 6))
    x[:, 3] = 0.002  # constant: StandardScaler leaves its scale at 1, its coefficient is 0
    y = rng.normal(0, 0.01, (3, 90))
    coefficients, r2 = ridge_coefficients(x, y)
    scaler = StandardScaler().fit(x)
    for row in range(3):
        model = Ridge(alpha=1.0).fit(scaler.transform(x), y[row])
        np.testing.assert_allclose(coefficients[row], model.coef_ / scaler.scale_, atol=1e-12)
        assert r2[row] == pytest.approx(model.score(scaler.transform(x), y[row]), abs=1e-12)


def test_panel_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="ascending"):
        Panel(days=np.array([2, 1]), prices=np.ones((1, 2)), references=np.ones((8, 2)))
    with pytest.raises(ValueError, match="references"):
        Panel(days=np.array([1, 2]), prices=np.ones((1, 2)), references=np.ones((7, 2)))


def test_binary_arrays_are_read_as_postgresql_sends_them() -> None:
    """READ_PANEL's arrays: array_send's elements (an int32 length, then the value), headers
    cut off; every chunk read in one go, NULLs and cut elements refused."""
    import struct

    from worker.factors.store import DAY, PRICE, binary_elements

    def body(fmt: str, width: int, values: list) -> bytes:
        return b"".join(struct.pack(f">i{fmt}", width, v) for v in values)

    prices = [body("d", 8, [1.5, -2.25, 3.0]), body("d", 8, [4.0])]
    values, counts = binary_elements(prices, PRICE)
    assert values.tolist() == [1.5, -2.25, 3.0, 4.0] and counts.tolist() == [3, 1]
    values, counts = binary_elements([body("i", 4, [19000, 19001])], DAY)
    assert values.tolist() == [19000, 19001] and counts.tolist() == [2]
    with pytest.raises(ValueError, match="without NULLs"):
        binary_elements([prices[0] + struct.pack(">iq", -1, 0)], PRICE)
    with pytest.raises(ValueError, match="whole 12-byte elements"):
        binary_elements([prices[0][:-4], prices[1]], PRICE)


def blas_threads() -> int:
    import threadpoolctl

    return max(p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas")


@pytest.mark.parametrize("chosen", [False, True])
def test_numpys_blas_runs_one_thread_inside_compute_betas_unless_the_environment_chose(
    monkeypatch: pytest.MonkeyPatch, chosen: bool
) -> None:
    """Its idle threads spin and take CPU from the database (bench/factors.py); the process's
    other BLAS work keeps its threads."""
    import threadpoolctl

    from worker.factors import betas

    threadpoolctl.threadpool_limits(2, user_api="blas")  # what a 2-core machine starts with
    for name in BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if chosen:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    betas._blas_controller.cache_clear()
    seen: list[int] = []
    solve = betas._solve_group

    def spy(*args: object) -> None:
        seen.append(blas_threads())
        solve(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(betas, "_solve_group", spy)
    try:
        refs = prices_from(reference_returns(np.random.default_rng(3), DAYS))
        compute_betas(make_panel(refs[:2] * 1.5, refs))
        assert seen and set(seen) == ({2} if chosen else {1})
        assert blas_threads() == 2  # restored after the block
    finally:
        betas._blas_controller.cache_clear()
