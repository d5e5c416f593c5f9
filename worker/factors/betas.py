"""Factor betas: the math, as pure numpy functions over arrays (no I/O, no SQL).

The definitions are the host's (see docs/factors.md, "Factor betas"):
- a price series is the adjusted close, or the close where none is stored (the store picks it);
- for each regression, the dates on which the symbol and every ETF in that regression have a
  price, ascending, up to the calculation date; simple returns between consecutive such dates;
  then the last 90 returns (market, interest rate, styles) or 180 (spreads);
- the calculation date is the latest date on which the symbol and SPY both have prices;
- market (SPY) and interest-rate (TLT) betas: OLS slopes with intercept; styles: one joint ridge
  (alpha 1.0) on the six standardised ETF return series (population standard deviation),
  intercept fitted, coefficients divided by the standard deviations; spreads: four univariate
  OLS slopes on return differences;
- fewer than 30 returns (60 for spreads): that beta is not computed; every beta is capped to
  [-5, 5].

Symbols that have prices on exactly the same dates share every regression's date set, so they
are solved together: one matrix operation per regression for the whole group.
"""

import contextlib
import functools
import os
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
import threadpoolctl

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# A deployment that sets one of these chooses numpy's BLAS threads itself.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@functools.cache
def _blas_controller() -> threadpoolctl.ThreadpoolController | None:
    if any(os.environ.get(name) for name in BLAS_THREAD_VARIABLES):
        return None
    return threadpoolctl.ThreadpoolController()


def one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """numpy's BLAS on one thread for the block, unless the environment chose (5 us).

    With these matrices (six columns at most) more threads never pay, and OpenBLAS's threads
    spin after each call: bench/factors.py measured 0.2-0.4 s of CPU per 8,000 symbols taken from
    the database on the same machine, the universe 1.15x slower."""
    controller = _blas_controller()
    if controller is None:
        return contextlib.nullcontext()
    limited: contextlib.AbstractContextManager[object] = controller.limit(limits=1, user_api="blas")
    return limited


REFERENCE_ETFS = ("SPY", "TLT", "VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV")
STYLE_ETFS = ("VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV")
RIDGE_ALPHA = 1.0
BETA_CAP = 5.0
NO_DAY = -1  # calculation_day of a symbol that has no date in common with SPY

# Why a beta was not computed (Betas.status); 0 means computed.
COMPUTED = 0
NO_CALCULATION_DATE = 1  # the symbol and SPY have no date in common
TOO_FEW_RETURNS = 2  # fewer returns than the factor's minimum
CONSTANT_REGRESSOR = 3  # the reference returns do not vary: no slope exists
REASONS = {
    NO_CALCULATION_DATE: "no_date_shared_with_spy",
    TOO_FEW_RETURNS: "too_few_returns",
    CONSTANT_REGRESSOR: "constant_reference_returns",
}


@dataclass(frozen=True)
class Factor:
    column: str  # the wide table's column
    name: str  # factor_definitions.name in the host's long table
    method: str  # calculation_method in the long table
    window: int  # returns used (the last `window`)
    min_returns: int  # fewer: not computed
    alpha: float | None = None  # the ridge penalty, for the styles


FACTORS = (
    Factor("market_beta", "Market Beta (90D)", "ols_market", 90, 30),
    Factor("ir_beta", "IR Beta", "ols_ir", 90, 30),
    Factor("value_beta", "Value", "ridge_regression", 90, 30, RIDGE_ALPHA),
    Factor("growth_beta", "Growth", "ridge_regression", 90, 30, RIDGE_ALPHA),
    Factor("momentum_beta", "Momentum", "ridge_regression", 90, 30, RIDGE_ALPHA),
    Factor("quality_beta", "Quality", "ridge_regression", 90, 30, RIDGE_ALPHA),
    Factor("size_beta", "Size", "ridge_regression", 90, 30, RIDGE_ALPHA),
    Factor("low_vol_beta", "Low Volatility", "ridge_regression", 90, 30, RIDGE_ALPHA),
    Factor("growth_value_spread", "Growth-Value Spread", "spread_regression", 180, 60),
    Factor("momentum_spread", "Momentum Spread", "spread_regression", 180, 60),
    Factor("size_spread", "Size Spread", "spread_regression", 180, 60),
    Factor("quality_spread", "Quality Spread", "spread_regression", 180, 60),
)
FACTOR_INDEX = {f.column: i for i, f in enumerate(FACTORS)}
WINDOWS = np.array([f.window for f in FACTORS])
# The most dates of a symbol any regression can use: the longest window's returns need one more
# price. A read of that many of SPY's latest dates (plus slack for the odd date an ETF lacks)
# gives the same windows as a full read wherever every regression finds its whole window in it.
ROWS_USED = int(WINDOWS.max()) + 1


@dataclass(frozen=True)
class Regression:
    """One regression: the ETFs whose dates it needs, and the factors it yields."""

    etfs: tuple[str, ...]
    factors: tuple[str, ...]  # Factor.column, in the order of the regressors
    kind: str  # "ols" (x = the ETF's returns), "spread" (x = first minus second), "ridge"


REGRESSIONS = (
    Regression(("SPY",), ("market_beta",), "ols"),
    Regression(("TLT",), ("ir_beta",), "ols"),
    Regression(
        STYLE_ETFS,
        (
            "value_beta",
            "growth_beta",
            "momentum_beta",
            "quality_beta",
            "size_beta",
            "low_vol_beta",
        ),
        "ridge",
    ),
    Regression(("VUG", "VTV"), ("growth_value_spread",), "spread"),
    Regression(("MTUM", "SPY"), ("momentum_spread",), "spread"),
    Regression(("IWM", "SPY"), ("size_spread",), "spread"),
    Regression(("QUAL", "SPY"), ("quality_spread",), "spread"),
)


@dataclass(frozen=True)
class Panel:
    """Prices on one date grid: NaN (or a non-positive value) where a series has no price."""

    days: IntArray  # (D,) ascending day numbers (any encoding that orders like dates)
    prices: FloatArray  # (k, D) the symbols' prices
    references: FloatArray  # (len(REFERENCE_ETFS), D), in REFERENCE_ETFS order

    def __post_init__(self) -> None:
        d = self.days.shape[0]
        if self.days.ndim != 1 or np.any(np.diff(self.days) <= 0):
            raise ValueError("days must be one strictly ascending row")
        if self.prices.ndim != 2 or self.prices.shape[1] != d:
            raise ValueError(f"prices must be (symbols, {d}), got {self.prices.shape}")
        if self.references.shape != (len(REFERENCE_ETFS), d):
            raise ValueError(
                f"references must be ({len(REFERENCE_ETFS)}, {d}), got {self.references.shape}"
            )


@dataclass(frozen=True)
class Betas:
    """The twelve betas of each symbol of a Panel, in FACTORS order."""

    calculation_day: IntArray  # (k,) the day the betas are as of; NO_DAY when there is none
    beta: FloatArray  # (k, 12) capped to [-BETA_CAP, BETA_CAP]; NaN when not computed
    r_squared: FloatArray  # (k, 12) the regression's R^2 on its data; NaN when undefined
    observations: IntArray  # (k, 12) returns used (or available, when too few)
    status: npt.NDArray[np.int8]  # (k, 12) COMPUTED or the reason it was not
    capped: BoolArray  # (k, 12) the raw beta was outside the cap

    @property
    def computed(self) -> BoolArray:
        computed: BoolArray = self.status == COMPUTED
        return computed

    @property
    def full_windows(self) -> BoolArray:
        """(k,) every regression of the symbol had its whole window of returns."""
        full: BoolArray = np.all(self.observations >= WINDOWS, axis=1)
        return full

    def take(self, rows: IntArray) -> "Betas":
        """The rows `rows`, in that order."""
        return Betas(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def stacked(self, other: "Betas") -> "Betas":
        """These rows, then those of `other`."""
        return Betas(
            **{
                f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                for f in fields(self)
            }
        )


def simple_returns(prices: FloatArray) -> FloatArray:
    """Simple returns between consecutive columns: p[t] / p[t-1] - 1."""
    return prices[..., 1:] / prices[..., :-1] - 1.0


def ols_slopes(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """OLS with intercept of each row of `y` (k, n) on one regressor `x` (n,): slopes, R^2.

    A constant `x` has no slope (NaN); a constant row of `y` has slope 0 and an undefined R^2."""
    xc = x - x.mean()
    yc = y - y.mean(axis=1, keepdims=True)
    sxx = float(xc @ xc)
    if sxx <= 0:
        nothing = np.full(y.shape[0], np.nan)
        return nothing, nothing.copy()
    sxy = yc @ xc
    syy = np.einsum("ij,ij->i", yc, yc)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(syy > 0, sxy * sxy / (sxx * syy), np.nan)
    slope = sxy / sxx
    return slope, r2


def _scale(x: FloatArray) -> FloatArray:
    """Population standard deviations, 1 where a column is constant (as StandardScaler does)."""
    n = x.shape[0]
    mean, var = x.mean(axis=0), x.var(axis=0)
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    return np.where(constant, 1.0, np.sqrt(var))


def ridge_coefficients(
    x: FloatArray, y: FloatArray, alpha: float = RIDGE_ALPHA
) -> tuple[FloatArray, FloatArray]:
    """Ridge with intercept of each row of `y` (k, n) on the standardised columns of `x` (n, p),
    coefficients returned to the original scale: (k, p) coefficients and (k,) R^2.

    Minimises |y - b0 - z b|^2 + alpha |b|^2 over z = (x - mean) / std; the intercept is not
    penalised, so centring y and z removes it, and b solves (z'z + alpha I) b = z'y."""
    scale = _scale(x)
    z = (x - x.mean(axis=0)) / scale
    yc = y - y.mean(axis=1, keepdims=True)
    gram = z.T @ z + alpha * np.eye(z.shape[1])
    b = np.linalg.solve(gram, z.T @ yc.T)  # (p, k): every row of y in one solve
    residuals = yc - (z @ b).T
    sst = np.einsum("ij,ij->i", yc, yc)
    sse = np.einsum("ij,ij->i", residuals, residuals)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - sse / sst, np.nan)
    return (b / scale[:, None]).T, r2


def compute_betas(panel: Panel) -> Betas:
    """The twelve betas of every symbol in `panel`, each group of symbols with the same dates
    solved in one operation per regression."""
    k, n_factors = panel.prices.shape[0], len(FACTORS)
    out = Betas(
        calculation_day=np.full(k, NO_DAY, dtype=np.int64),
        beta=np.full((k, n_factors), np.nan),
        r_squared=np.full((k, n_factors), np.nan),
        observations=np.zeros((k, n_factors), dtype=np.int64),
        status=np.full((k, n_factors), NO_CALCULATION_DATE, dtype=np.int8),
        capped=np.zeros((k, n_factors), dtype=bool),
    )
    if k == 0:
        return out
    with np.errstate(invalid="ignore"):
        present = panel.prices > 0  # False for NaN too
        ref_present = panel.references > 0
    with one_blas_thread():
        for members in _groups(present):
            _solve_group(panel, present[members[0]], ref_present, members, out)
    raw = out.beta
    out.capped[:] = np.abs(raw) > BETA_CAP
    np.clip(raw, -BETA_CAP, BETA_CAP, out=raw)
    return out


def _groups(present: BoolArray) -> list[IntArray]:
    """Row indices grouped by identical presence rows (hashed as packed bytes: a few groups
    among thousands of rows, where np.unique(axis=0) sorts them all)."""
    groups: dict[bytes, list[int]] = {}
    for row, key in enumerate(map(bytes, np.packbits(present, axis=1))):
        groups.setdefault(key, []).append(row)
    return [np.array(rows, dtype=np.int64) for rows in groups.values()]


def _solve_group(
    panel: Panel, mask: BoolArray, ref_present: BoolArray, members: IntArray, out: Betas
) -> None:
    spy = REFERENCE_ETFS.index("SPY")
    shared = np.flatnonzero(mask & ref_present[spy])
    if shared.size == 0:
        return  # status stays NO_CALCULATION_DATE
    last = shared[-1]
    out.calculation_day[members] = panel.days[last]
    valid = mask.copy()
    valid[last + 1 :] = False
    prices = panel.prices[members]
    for regression in REGRESSIONS:
        columns = np.array([FACTOR_INDEX[c] for c in regression.factors])
        etf_rows = np.array([REFERENCE_ETFS.index(e) for e in regression.etfs])
        window = FACTORS[columns[0]].window
        minimum = FACTORS[columns[0]].min_returns
        dates = np.flatnonzero(valid & ref_present[etf_rows].all(axis=0))[-(window + 1) :]
        n = max(dates.size - 1, 0)
        cells = np.ix_(members, columns)
        out.observations[cells] = n
        if n < minimum:
            out.status[cells] = TOO_FEW_RETURNS
            continue
        y = simple_returns(prices[:, dates])
        x = simple_returns(panel.references[np.ix_(etf_rows, dates)])  # (etfs, n)
        if regression.kind == "ridge":
            coefficients, r2 = ridge_coefficients(x.T, y)
            out.beta[cells] = coefficients
            out.r_squared[cells] = r2[:, None]
            out.status[cells] = COMPUTED
            continue
        regressor = x[0] - x[1] if regression.kind == "spread" else x[0]
        slope, r2 = ols_slopes(regressor, y)
        out.beta[cells] = slope[:, None]
        out.r_squared[cells] = r2[:, None]
        out.status[cells] = CONSTANT_REGRESSOR if np.isnan(slope).all() else COMPUTED
