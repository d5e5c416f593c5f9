"""Latency from a plain-SQL INSERT to `completed` for one symbol, served by the local Yahoo replay.

The whole path: NOTIFY wake-up, claim, HTTP GET to a 127.0.0.1 server replaying the recorded MSFT
year (252 bars), parse, validate, upsert of prices + symbol status + job completion in one
transaction. The clock ends the window on 2022-01-31 so the recording is inside the lookback.
Baseline in the same run: the same INSERT -> job start with a no-op job (the queue's share).
Then the same onboarding with the factor betas on (the reference ETFs already stored over the
recording's dates, so each job computes its twelve betas in its transaction) next to it with
them off, in alternating rounds so that drift on a shared machine hits both alike. Last, on an
adopted host schema (tests/fixtures/deployed/host-schema.sql, upgraded to head), the same
onboarding with the host price mirror on (each job also upserts its bars into the host's
market_data_cache and invalidates cached analytics) next to it off, alternating likewise.

    python bench/onboarding_latency.py [--samples 100]
"""

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg
from common import describe, drive, throwaway_database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import hostdb
from tests.factordata import business_days, reference_series, store_prices
from tests.fakeprovider import FakeProvider, recorded
from worker.core.db import asyncpg_dsn
from worker.core.settings import Settings
from worker.factors.store import FactorStore
from worker.host.tables import NO_HOST, HostTables
from worker.jobs.onboarding import open_onboarder
from worker.ops import migrate
from worker.queue.runner import Runner
from worker.queue.store import Job, Queue

# The bench smoke test (tests/acceptance/test_bench_scripts.py) runs it with these arguments and
# checks these lines; the defaults stay the full size.
SMOKE_ARGS = ["--samples", "20"]
SMOKE_OUTPUT = [
    r"^no-op job: INSERT -> start +median",
    r"^onboarding: INSERT -> completed +median",
    r"^onboarding with betas: INSERT -> completed +median",
    r"^outcomes: \{'completed': 20\}",
    r"^betas: median \+",
    r"^host price mirror: median [+-]",
]

RECORDING = "yahoo/chart-MSFT-1d-2021-02-01_2022-01-31-dividends.json"
# The reference ETFs' weekdays over the recording's year (to Friday 2022-01-28, its last bar).
REFERENCE_DAYS = business_days(260, date(2021, 2, 1))


@dataclass(frozen=True)
class Done:
    outcome: str = "completed"
    rows: int | None = None
    error: str | None = None


class Stamp:
    """Wraps a handler: stamps the moment its job ended (committed) or, for no-op, started."""

    def __init__(self, inner, queue: Queue | None = None, pool=None) -> None:
        self.inner, self.queue, self.pool = inner, queue, pool
        self.stamps: dict[str, float] = {}
        self.arrived = asyncio.Event()
        self.outcomes: list[str] = []

    async def run(self, job: Job):
        if self.inner is None:  # no-op baseline: the queue's share of the latency
            self.stamps[job.symbol] = time.perf_counter()
            await self.queue.complete(self.pool, job)
            result = Done()
        else:
            result = await self.inner.run(job)
            self.stamps[job.symbol] = time.perf_counter()
        self.outcomes.append(result.outcome)
        self.arrived.set()
        return result


async def measure(
    url: str,
    provider: FakeProvider | None,
    samples: int,
    names,
    *,
    betas: bool = False,
    host: HostTables = NO_HOST,
) -> tuple[list[float], list[str]]:
    dsn = asyncpg_dsn(url)
    settings = Settings(
        concurrency=1,
        poll_interval_s=30.0,
        price_source="yahoo",
        yahoo_base_url=provider.url if provider else "http://127.0.0.1:9",
        rate_limit_yahoo="off",
        log_level="warning",
    )
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    queue = Queue("bench")
    async with contextlib.AsyncExitStack() as resources:
        if provider is None:
            handler = Stamp(None, queue, pool)
        else:
            store = await FactorStore.detect(pool) if betas else None
            onboarder = await resources.enter_async_context(
                open_onboarder(
                    settings,
                    queue,
                    pool,
                    today=lambda: date(2022, 1, 31),
                    factor_store=store,
                    host=host,
                )
            )
            handler = Stamp(onboarder)
        runner = Runner(settings, pool, queue, handler, claim_dsn=dsn, listen_dsn=dsn)
        task = asyncio.create_task(runner.run())
        await runner.listening.wait()
        latencies = await drive(dsn, samples, handler.stamps, handler.arrived, names=names)
        runner.request_stop()
        await task
    await pool.close()
    return latencies, handler.outcomes


async def alternate(
    url: str,
    provider: FakeProvider,
    rounds: int,
    per_round: int,
    off_prefix: str,
    on_prefix: str,
    *,
    betas: bool = False,
    host: HostTables = NO_HOST,
) -> tuple[list[float], list[float]]:
    """The onboarding without and with one feature (`betas`, `host`), in alternating rounds so
    that drift on a shared machine hits both alike; symbols named by the prefixes."""
    off: list[float] = []
    on: list[float] = []
    for r in range(rounds):
        first = r * per_round
        latencies, done = await measure(
            url, provider, per_round, lambda i, f=first: f"{off_prefix}{f + i}"
        )
        off += latencies
        latencies, done = await measure(
            url,
            provider,
            per_round,
            lambda i, f=first: f"{on_prefix}{f + i}",
            betas=betas,
            host=host,
        )
        on += latencies
        assert done == ["completed"] * per_round, done
    return off, on


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    from worker.core import logs

    logs.configure(Settings(log_format="json", log_level="warning"))
    provider = FakeProvider()
    await provider.start()
    rounds = 2
    per_round = args.samples // rounds
    for i in range(args.samples):
        for prefix in ("Y", "F", "B", "H", "M"):
            provider.route(f"/v8/finance/chart/{prefix}{i}", recorded(RECORDING))
    full: list[float] = []
    outcomes: list[str] = []
    try:
        async with throwaway_database("onboard_latency") as url:
            noop, _ = await measure(url, None, args.samples, lambda i: f"N{i}")
            latencies, done = await measure(url, provider, args.samples, lambda i: f"Y{i}")
            full += latencies
            outcomes += done
            conn = await asyncpg.connect(asyncpg_dsn(url))
            try:
                await store_prices(conn, reference_series(REFERENCE_DAYS))
                off, on = await alternate(url, provider, rounds, per_round, "F", "B", betas=True)
                rows = await conn.fetchval("SELECT count(*) FROM symbol_prices_daily")
                with_betas = await conn.fetchval(
                    "SELECT count(*) FROM symbol_factor_exposures WHERE symbol LIKE 'B%'"
                )
            finally:
                await conn.close()
        async with throwaway_database("onboard_latency_host", migrated=False) as url:
            await hostdb.load_schema(url)
            await migrate.upgrade(url)
            conn = await asyncpg.connect(asyncpg_dsn(url))
            try:
                host = await HostTables.detect(conn, Settings())
                assert host.mirror_prices, "the host's market_data_cache was not detected"
            finally:
                await conn.close()
            mirror_off, mirror_on = await alternate(
                url, provider, rounds, per_round, "H", "M", host=host
            )
            conn = await asyncpg.connect(asyncpg_dsn(url))
            try:
                mirrored = await conn.fetchval(
                    "SELECT count(DISTINCT symbol) FROM market_data_cache WHERE symbol LIKE 'M%'"
                )
                leaked = await conn.fetchval(
                    "SELECT count(*) FROM market_data_cache WHERE symbol LIKE 'H%'"
                )
            finally:
                await conn.close()
    finally:
        await provider.stop()
    print(f"plain-SQL INSERT -> job, {args.samples} samples each, idle worker, concurrency 1")
    print(describe("no-op job: INSERT -> start", noop))
    print(describe("onboarding: INSERT -> completed", full))
    print(f"outcomes: {dict((o, outcomes.count(o)) for o in set(outcomes))}; rows stored: {rows}")
    print(f"onboarding median is {statistics.median(full) / 50:.1%} of the 50 ms target")
    print(f"betas on/off, reference ETFs stored, {rounds} alternating rounds of {per_round} each:")
    print(describe("onboarding, betas off", off))
    print(describe("onboarding with betas: INSERT -> completed", on))
    added = statistics.median(on) / statistics.median(off) - 1
    print(
        f"betas: median +{added:.1%} (target: at most +50%); {with_betas} of {len(on)} "
        "symbols got their betas"
    )
    print(f"on an adopted host schema, {rounds} alternating rounds of {per_round} each:")
    print(describe("onboarding, host price mirror off", mirror_off))
    print(describe("onboarding, host price mirror on", mirror_on))
    added = statistics.median(mirror_on) / statistics.median(mirror_off) - 1
    print(
        f"host price mirror: median {added:+.1%} (target: at most +20%); {mirrored} of "
        f"{len(mirror_on)} symbols mirrored, {leaked} rows written with the mirror off"
    )


if __name__ == "__main__":
    asyncio.run(main())
