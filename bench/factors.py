"""Benchmark: the factor betas of a whole universe, from stored rows to written betas, against
the host's method (one symbol at a time) run in the same script on the same database.

    python bench/factors.py                  # 8,000 symbols x 252 days, plus the eight ETFs
    python bench/factors.py --symbols 500    # a quick run

Creates a throwaway database (TEST_DATABASE_URL's server if set, else the embedded one),
migrates it (the wide symbol_factor_exposures of a fresh install), loads prices with COPY
(deterministic: seeded generators, fixed dates), then:
1. ours: what `python -m worker factors` runs (worker.factors.command), every active symbol,
   FACTOR_BATCH_SIZE per transaction: read, compute_betas, upsert, last_factor_date;
2. one batch again, timed by part (read, compute, write);
3. the host's method on a sample of symbols: per symbol, read its prices (one query), align
   them with the ETFs' with pandas, statsmodels OLS for the market, interest-rate and four
   spread betas, scikit-learn StandardScaler + Ridge(alpha=1) for the six styles, and one
   upsert of its row; the ETFs' prices are read once, before the clock starts.
Prints symbols/s for both and the ratio, and the largest difference between the two methods'
betas on the sample (they compute the same numbers).
"""

import argparse
import asyncio
import dataclasses
import io
import sys
import time
from datetime import date
from pathlib import Path

import asyncpg
import numpy as np
import pandas as pd
import statsmodels.api as sm
from common import throwaway_database
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.factordata import business_days, closes, reference_returns, symbol_returns
from worker.core.db import asyncpg_dsn
from worker.core.settings import Settings
from worker.factors.betas import FACTORS, REFERENCE_ETFS, STYLE_ETFS, compute_betas
from worker.factors.command import command
from worker.factors.service import RECENT_DATES
from worker.factors.store import FactorStore

# The bench smoke test (tests/acceptance/test_bench_scripts.py) runs it with these arguments and
# checks these lines; the defaults stay the full size.
SMOKE_ARGS = ["--symbols", "300", "--sample", "10", "--batch-size", "100", "--connections", "2"]
SMOKE_OUTPUT = [
    r"^ours \(the factors command\), 1 connection: ",
    r"^ours \(the factors command\), \d+ connections: ",
    r"^  one batch of ",
    r"^host's method, one symbol at a time: ",
    r"^ratio: ",
    r"^largest difference",
]

TARGET_RATIO = 100.0
TARGET_UNIVERSE_S = 20.0
SPREADS = {
    "growth_value_spread": ("VUG", "VTV"),
    "momentum_spread": ("MTUM", "SPY"),
    "size_spread": ("IWM", "SPY"),
    "quality_spread": ("QUAL", "SPY"),
}


async def load(conn: asyncpg.Connection, symbols: int, days: list[date]) -> list[str]:
    """Universe rows and prices for the ETFs and `symbols` symbols, with COPY."""
    rng = np.random.default_rng(42)
    refs = reference_returns(rng, len(days))
    names = [*REFERENCE_ETFS, *(f"S{i:05d}" for i in range(symbols))]
    prices = np.vstack([closes(refs), closes(symbol_returns(rng, refs, symbols), 50.0)])
    await conn.execute(
        """INSERT INTO symbol_universe (symbol, status, added_source, last_price_date)
           SELECT s, 'active', 'seed', $2 FROM unnest($1::varchar[]) AS s""",
        names,
        days[-1],
    )
    text = io.StringIO()
    iso = [d.isoformat() for d in days]
    for name, row in zip(names, prices, strict=True):
        text.writelines(f"{name},{d},{p:.4f},{p:.4f}\n" for d, p in zip(iso, row, strict=True))
    await conn.copy_to_table(
        "symbol_prices_daily",
        source=io.BytesIO(text.getvalue().encode()),
        columns=["symbol", "price_date", "close_price", "adj_close_price"],
        format="csv",
    )
    await conn.execute("ANALYZE symbol_prices_daily")
    return names


async def ours(url: str, settings: Settings) -> float:
    conns = [await asyncpg.connect(asyncpg_dsn(url)) for _ in range(settings.factor_connections)]
    try:
        store = await FactorStore.detect(conns[0])
        started = time.perf_counter()
        code = await command(conns, store, settings, None, None, False)
    finally:
        for conn in conns:
            await conn.close()
    elapsed = time.perf_counter() - started
    assert code == 0
    return elapsed


async def one_batch(conn: asyncpg.Connection, names: list[str], size: int) -> str:
    store = await FactorStore.detect(conn)
    batch = names[len(REFERENCE_ETFS) : len(REFERENCE_ETFS) + size]
    async with conn.transaction():
        t0 = time.perf_counter()
        read = await store.read_panel(
            conn, batch, as_of=None, history_days=400, recent_dates=RECENT_DATES
        )
        assert read is not None
        t1 = time.perf_counter()
        betas = compute_betas(read.panel)
        t2 = time.perf_counter()
        await store.write(conn, read.symbols, betas)
        t3 = time.perf_counter()
    return (
        f"  one batch of {len(batch):,}: read {1000 * (t1 - t0):.0f} ms, "
        f"compute {1000 * (t2 - t1):.0f} ms, write {1000 * (t3 - t2):.0f} ms"
    )


def host_betas(frame: pd.DataFrame, y: pd.Series) -> dict[str, float | None]:
    """The host's method for one symbol: {column: beta or None}."""
    data = frame.join(pd.Series(y, name="y"), how="outer")
    calc = data[["y", "SPY"]].dropna().index.max()
    data = data.loc[:calc]
    out: dict[str, float | None] = {f.column: None for f in FACTORS}

    def returns(columns: list[str], window: int) -> pd.DataFrame:
        aligned = data[["y", *columns]].dropna()
        return aligned.pct_change().iloc[1:].tail(window)

    def ols(column: str, y_ret: pd.Series, x_ret: pd.Series, minimum: int) -> None:
        if len(y_ret) >= minimum:
            fit = sm.OLS(y_ret.to_numpy(), sm.add_constant(x_ret.to_numpy())).fit()
            out[column] = float(np.clip(fit.params[1], -5, 5))

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
        styles = [f.column for f in FACTORS if f.method == "ridge_regression"]
        for column, value in zip(styles, model.coef_ / scaler.scale_, strict=True):
            out[column] = float(np.clip(value, -5, 5))
    return out


async def host_method(conn: asyncpg.Connection, sample: list[str]) -> tuple[float, float]:
    """Seconds for the sample, and the largest |host - ours| over its betas."""
    etf_rows = await conn.fetch(
        """SELECT symbol, price_date, coalesce(adj_close_price, close_price)::float8 AS p
           FROM symbol_prices_daily WHERE symbol = ANY($1::varchar[])""",
        list(REFERENCE_ETFS),
    )
    frame = (
        pd.DataFrame([dict(r) for r in etf_rows])
        .pivot(index="price_date", columns="symbol", values="p")
        .sort_index()
    )
    columns = ", ".join(f.column for f in FACTORS)
    placeholders = ", ".join(f"${i + 3}" for i in range(len(FACTORS)))
    upsert = f"""INSERT INTO symbol_factor_exposures (symbol, calculation_date, {columns})
                 VALUES ($1, $2, {placeholders})
                 ON CONFLICT (symbol, calculation_date) DO UPDATE SET market_beta = EXCLUDED.market_beta"""
    ours_by_symbol = {
        r["symbol"]: r
        for r in await conn.fetch(
            f"SELECT symbol, {columns} FROM symbol_factor_exposures WHERE symbol = ANY($1)",
            sample,
        )
    }
    worst = 0.0
    started = time.perf_counter()
    for symbol in sample:
        rows = await conn.fetch(
            """SELECT price_date, coalesce(adj_close_price, close_price)::float8 AS p
               FROM symbol_prices_daily WHERE symbol = $1 ORDER BY price_date""",
            symbol,
        )
        y = pd.Series([r["p"] for r in rows], index=[r["price_date"] for r in rows])
        betas = host_betas(frame, y)
        await conn.execute(
            upsert,
            symbol,
            y.index.max(),
            *[None if betas[f.column] is None else round(betas[f.column], 6) for f in FACTORS],
        )
        for f in FACTORS:
            mine, theirs = ours_by_symbol[symbol][f.column], betas[f.column]
            worst = max(worst, abs(float(mine) - theirs))
    return time.perf_counter() - started, worst


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=8000)
    parser.add_argument("--days", type=int, default=252)
    parser.add_argument("--sample", type=int, default=200, help="symbols for the host's method")
    parser.add_argument("--batch-size", type=int, default=Settings().factor_batch_size)
    parser.add_argument("--connections", type=int, default=Settings().factor_connections)
    args = parser.parse_args()
    from worker.core import logs

    settings = Settings(
        log_format="json",
        log_level="warning",
        factor_batch_size=args.batch_size,
        factor_connections=args.connections,
    )
    logs.configure(settings)
    days = business_days(args.days)
    async with throwaway_database("factors") as url:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            started = time.perf_counter()
            names = await load(conn, args.symbols, days)
            print(
                f"loaded {len(names):,} symbols x {len(days)} days "
                f"({len(names) * len(days):,} rows) in {time.perf_counter() - started:.1f} s"
            )
            # One connection first, then FACTOR_CONNECTIONS (what the command uses), each on
            # an empty exposures table, so both runs insert.
            single = dataclasses.replace(settings, factor_connections=1)
            for run_settings in (single, settings):
                await conn.execute(
                    "TRUNCATE symbol_factor_exposures;"
                    " UPDATE symbol_universe SET last_factor_date = NULL"
                )
                elapsed = await ours(url, run_settings)
                written = await conn.fetchval("SELECT count(*) FROM symbol_factor_exposures")
                assert written == len(names), written
                lanes = run_settings.factor_connections
                print(
                    f"ours (the factors command), {lanes} connection{'s' * (lanes > 1)}: "
                    f"{len(names):,} symbols in {elapsed:.2f} s: "
                    f"{len(names) / elapsed:,.0f} symbols/s, batches of {args.batch_size:,}"
                )
            ours_rate = len(names) / elapsed
            print(f"target: the universe in under {TARGET_UNIVERSE_S:.0f} s")
            print(await one_batch(conn, names, min(args.batch_size, args.symbols)))
            step = max(args.symbols // args.sample, 1)
            sample = names[len(REFERENCE_ETFS) :: step][: args.sample]
            host_s, worst = await host_method(conn, sample)
            host_rate = len(sample) / host_s
            print(
                f"host's method, one symbol at a time: {len(sample)} symbols in {host_s:.2f} s: "
                f"{host_rate:,.1f} symbols/s"
            )
            print(f"ratio: {ours_rate / host_rate:,.0f}x (target: at least {TARGET_RATIO:.0f}x)")
            print(f"largest difference between the two methods' betas: {worst:.2e}")
        finally:
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
