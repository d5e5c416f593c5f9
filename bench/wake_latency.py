"""Latency from a committed plain-SQL INSERT to the job starting on an idle worker.

Baseline in the same run: a bare asyncpg LISTEN loop (INSERT commit -> notification callback),
the floor any LISTEN-based worker can reach. The inserter runs in its own thread and event loop
with its own connection; times come from time.perf_counter (CLOCK_MONOTONIC, one clock for both).

    python bench/wake_latency.py [--samples 200]
"""

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

import asyncpg
from common import describe, drive, throwaway_database

from worker.core.db import asyncpg_dsn
from worker.core.settings import Settings
from worker.queue.runner import Runner
from worker.queue.store import Job, Queue

# The bench smoke test (tests/acceptance/test_bench_scripts.py) runs it with these arguments and
# checks these lines; the defaults stay the full size.
SMOKE_ARGS = ["--samples", "20"]
SMOKE_OUTPUT = [
    r"^bare asyncpg LISTEN +median",
    r"^worker \(LISTEN\+claim\+start\) +median",
    r"^worker's own share",
]


@dataclass(frozen=True)
class Done:
    outcome: str = "completed"
    rows: int | None = None
    error: str | None = None


class StampingHandler:
    """Records when each job starts, then completes it."""

    def __init__(self, queue: Queue, pool: asyncpg.Pool) -> None:
        self.queue, self.pool = queue, pool
        self.started: dict[str, float] = {}
        self.arrived = asyncio.Event()

    async def run(self, job: Job) -> Done:
        self.started[job.symbol] = time.perf_counter()
        self.arrived.set()
        await self.queue.complete(self.pool, job)
        return Done()


async def measure_runner(url: str, samples: int) -> list[float]:
    dsn = asyncpg_dsn(url)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=3)
    queue = Queue("bench")
    handler = StampingHandler(queue, pool)
    settings = Settings(concurrency=1, poll_interval_s=30.0)
    runner = Runner(settings, pool, queue, handler, claim_dsn=dsn, listen_dsn=dsn)
    task = asyncio.create_task(runner.run())
    await runner.listening.wait()
    latencies = await drive(dsn, samples, handler.started, handler.arrived)
    runner.request_stop()
    await task
    await pool.close()
    return latencies


async def measure_bare_listen(url: str, samples: int) -> list[float]:
    dsn = asyncpg_dsn(url)
    listener = await asyncpg.connect(dsn)
    stamps: dict[str, float] = {}
    arrived = asyncio.Event()
    counter = iter(range(10**9))

    def on_notify(*_: object) -> None:
        stamps[f"N{next(counter)}"] = time.perf_counter()
        arrived.set()

    await listener.add_listener("symbol_onboarding", on_notify)
    latencies = await drive(dsn, samples, stamps, arrived, names=lambda i: f"N{i}")
    await listener.execute("DELETE FROM symbol_onboarding_queue")  # not jobs for the next run
    await listener.close()
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    async with throwaway_database("wake") as url:
        bare = await measure_bare_listen(url, args.samples)
        ours = await measure_runner(url, args.samples)
    print(f"INSERT commit -> start, {args.samples} samples each, idle worker, same server")
    print(describe("bare asyncpg LISTEN", bare))
    print(describe("worker (LISTEN+claim+start)", ours))
    # The bare LISTEN median can be below zero: the NOTIFY may arrive before the inserting
    # client has read its own commit reply. The difference is the worker's own cost.
    extra = statistics.median(ours) - statistics.median(bare)
    print(f"worker's own share (difference of medians): {extra:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
