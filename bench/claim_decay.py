"""Claim decay: claim + complete throughput with no finished rows and with 1,000,000 of them.

    python bench/claim_decay.py [--finished 1000000] [--pending 10000] [--max-seconds 5]
                                [--configs 1x1,4x10] [--repeat 2] [--churn 50000]

(Without an editable install, prefix `PYTHONPATH=.`.) Two fresh databases on TEST_DATABASE_URL's
server, else the embedded one, both dropped at the end: `empty`, and `full`, where `--finished`
completed/failed rows (90/10, ended over the last 30 days) are loaded with INSERT ... SELECT
(triggers on) and VACUUM ANALYZEd. A measurement tops the queue up to `--pending` runnable jobs,
VACUUM ANALYZEs, and lets W workers claim B at a time and complete each job with its own
statement (as the runner does) for `--max-seconds`. The two tables are measured alternately,
`--repeat` times, and the best of each is kept, so load from elsewhere on the machine hits both.
Autovacuum is off on both tables so it cannot fire inside a measurement; instead `--churn` jobs
then go through `full` without VACUUM, standing for the gap between two autovacuums of a 1M-row
table (by default at 50 + 20% of the rows = 200k dead tuples, i.e. ~100k jobs), and both are
measured once more, `empty` vacuumed as a small table would be. The CLAIM (custom and generic
plan) and COMPLETE are EXPLAINed (ANALYZE, BUFFERS; rolled back) at 1M rows, fresh and churned,
and each measurement says which plans the server chose for the workers' prepared statements.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
from queue_throughput import (
    BenchServer,
    bench_server,
    close_all,
    connect_all,
    drain_ours,
    enqueue_ours,
)

from worker.ops import migrate
from worker.queue.store import Queue
from worker.sql import queue as sql

# The bench smoke test (tests/acceptance/test_bench_scripts.py) runs it with these arguments and
# checks these lines; the defaults stay the full size.
SMOKE_ARGS = "--finished 2000 --pending 200 --churn 300 --max-seconds 0.3 --repeat 1"
SMOKE_OUTPUT = [
    r"^EXPLAIN \(ANALYZE, BUFFERS\) CLAIM limit 10 -- generic plan",
    r"^EXPLAIN \(ANALYZE, BUFFERS\) COMPLETE",
    r"^full +1 +1 +[\d,]+ +[\d,]+ +\d+ +[\d.]+ +\d+ +[\d.]+$",
    r"^full +4 +10 ",
]

# Finished history: few distinct symbols (re-onboarded over time), every priority, the failed rows
# with their last error; ended evenly over the last 30 days, run a minute each.
FILL_FINISHED = """
INSERT INTO symbol_onboarding_queue
    (symbol, status, priority, attempts, created_at, run_after, started_at, completed_at,
     locked_by, error_message)
SELECT 'H' || (i % 100000),
       CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END,
       (ARRAY['high', 'normal', 'normal', 'low'])[1 + i % 4],
       CASE WHEN i % 10 = 0 THEN 5 ELSE 1 END,
       t - interval '2 minutes', t - interval '2 minutes', t - interval '1 minute', t,
       'bench-history',
       CASE WHEN i % 10 = 0 THEN 'no prices for this symbol' END
FROM generate_series(1, $1::int) AS i,
     LATERAL (SELECT now() - make_interval(secs => (i::float8 / $1) * 30 * 86400)) AS x(t)
"""

SIZES = """
SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid)) AS size
FROM pg_class c
WHERE c.oid = 'symbol_onboarding_queue'::regclass
   OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'symbol_onboarding_queue'::regclass)
ORDER BY c.relname
"""


@dataclass
class Measurement:
    table: str
    workers: int
    batch: int
    finished: int  # finished rows in the table when the measurement started
    since_vacuum: int  # jobs run through the table since its last VACUUM
    jobs: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


def parse_config(text: str) -> list[tuple[int, int]]:
    """`1x1,4x10` -> [(1 worker, batch 1), (4 workers, batch 10)]."""
    return [(int(w), int(b)) for w, b in (part.split("x") for part in text.split(",") if part)]


class Table:
    """One database's queue table, measured by W workers."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.args = args
        self.rounds = 0
        self.since_vacuum = 0

    async def setup(self, server: BenchServer) -> None:
        self.dsn = server.dsn(await server.create_database(self.name))
        await migrate.upgrade(self.dsn)
        self.admin = await asyncpg.connect(self.dsn)
        await self.admin.execute(
            "ALTER TABLE symbol_onboarding_queue SET (autovacuum_enabled = false)"
        )

    async def close(self) -> None:
        await self.admin.close()

    async def load_finished(self, rows: int) -> None:
        started = time.perf_counter()
        await self.admin.execute(FILL_FINISHED, rows)
        loaded = time.perf_counter() - started
        await self.admin.execute("VACUUM ANALYZE symbol_onboarding_queue")
        print(
            f"{self.name}: loaded {rows:,} finished rows in {loaded:.1f} s "
            f"(+ VACUUM ANALYZE {time.perf_counter() - started - loaded:.1f} s)"
        )
        for row in await self.admin.fetch(SIZES):
            print(f"  {row['relname']:<40} {row['size']:>10}")

    async def top_up(self, *, vacuum: bool) -> None:
        """Bring the queue back to `--pending` runnable jobs, then (VACUUM) ANALYZE."""
        pending = await self.admin.fetchval(
            "SELECT count(*) FROM symbol_onboarding_queue WHERE status = 'pending'"
        )
        self.rounds += 1
        if missing := self.args.pending - pending:
            await enqueue_ours(self.admin, missing, prefix=f"R{self.rounds}X")
        if vacuum:
            await self.admin.execute("VACUUM ANALYZE symbol_onboarding_queue")
            self.since_vacuum = 0
        else:
            await self.admin.execute("ANALYZE symbol_onboarding_queue")

    async def measure(self, workers: int, batch: int, *, vacuum: bool = True) -> Measurement:
        await self.top_up(vacuum=vacuum)
        finished = await self.admin.fetchval(
            "SELECT count(*) FROM symbol_onboarding_queue WHERE status IN ('completed', 'failed')"
        )
        since_vacuum = self.since_vacuum
        conns = await connect_all(self.dsn, workers)
        try:
            jobs, seconds = await drain_ours(conns, batch, "each", self.args.max_seconds)
            plans = await plan_choices(conns[0])
        finally:
            await close_all(conns)
        self.since_vacuum += jobs
        result = Measurement(self.name, workers, batch, finished, since_vacuum, jobs, seconds)
        print(
            f"  {self.name:<5} workers {workers} batch {batch:>3}  finished {finished:>9,}  "
            f"since VACUUM {since_vacuum:>6,}  {jobs:>6} jobs in {seconds:5.2f} s  "
            f"{result.rate:6.0f} jobs/s  ({plans})",
            flush=True,
        )
        return result

    async def churn(self, jobs: int) -> None:
        """Run `jobs` through claim and complete with no VACUUM, fast (batch-completed)."""
        await enqueue_ours(self.admin, jobs, prefix="C")
        await self.admin.execute("ANALYZE symbol_onboarding_queue")
        conns = await connect_all(self.dsn, 4)
        try:
            started = time.perf_counter()
            done, _ = await drain_ours(conns, 100, "batch", float("inf"))
        finally:
            await close_all(conns)
        self.since_vacuum += done
        print(
            f"\n{self.name}: churn of {done:,} jobs (4 workers, batch 100, batch-completed) "
            f"in {time.perf_counter() - started:.1f} s, no VACUUM"
        )


async def run(server: BenchServer, args: argparse.Namespace) -> None:
    empty, full = Table("empty", args), Table("full", args)
    tables = (empty, full)
    for table in tables:
        await table.setup(server)
    try:
        await full.load_finished(args.finished)
        await full.top_up(vacuum=True)
        await explain_claim(full.admin, "custom plan, fresh", generic=False)
        await explain_claim(full.admin, "generic plan, fresh", generic=True)
        await explain_complete(full.admin, "fresh")

        print("\nmeasurements (tables alternate):")
        fresh = []
        for _ in range(args.repeat):
            for workers, batch in args.configs:
                for table in tables:
                    fresh.append(await table.measure(workers, batch))

        await full.churn(args.churn)
        churned = [
            await table.measure(workers, batch, vacuum=table is empty)
            for workers, batch in args.configs
            for table in tables
        ]
        await full.top_up(vacuum=False)
        await explain_claim(full.admin, f"custom plan, {full.since_vacuum:,} jobs since VACUUM")
        await explain_complete(full.admin, f"{full.since_vacuum:,} jobs since VACUUM")
    finally:
        for table in tables:
            await table.close()
    print_table(args, fresh, churned)


async def plan_choices(conn: asyncpg.Connection) -> str:
    """Which plans the server used for this worker's prepared CLAIM and COMPLETE."""
    rows = await conn.fetch(
        "SELECT statement, custom_plans, generic_plans FROM pg_prepared_statements "
        "WHERE statement = ANY($1::text[])",
        [sql.CLAIM, sql.COMPLETE],
    )
    names = {sql.CLAIM: "claim", sql.COMPLETE: "complete"}
    return ", ".join(
        f"{names[r['statement']]}: {r['custom_plans']} custom/{r['generic_plans']} generic plans"
        for r in sorted(rows, key=lambda r: names[r["statement"]])
    )


async def explain(admin: asyncpg.Connection, label: str, statement: str, *args: object) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) `statement` in a transaction that is rolled back."""
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) {label}")
    async with rolled_back(admin):
        rows = await admin.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *args)
    for row in rows:
        print("  " + row[0])


class Recorder:
    """Stands in for a connection: records the statements and arguments the queue code sends, so
    the EXPLAINs below run exactly what `Queue` runs, whatever its parameters become."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    async def execute(self, query: str, *args: object) -> str:
        self.calls.append((query, args))
        return "UPDATE 1"

    # asyncpg's own signature (the queue passes the claim's statement timeout), not a timeout
    # this stand-in implements.
    async def fetch(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[object]:
        self.calls.append((query, args))
        return []

    async def fetchval(self, query: str, *args: object) -> object:
        self.calls.append((query, args))
        return None


def literal(value: object) -> str:
    """A value as an SQL literal of unknown type (the prepared statement's parameter types apply)."""
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


async def explain_claim(admin: asyncpg.Connection, label: str, *, generic: bool = False) -> None:
    """The CLAIM of 10 jobs; generic: the plan the server may switch to from the 6th execution."""
    title = f"CLAIM limit 10 -- {label}"
    recorder = Recorder()
    await Queue("bench-explain").claim(recorder, 10)
    [(statement, args)] = recorder.calls
    if not generic:
        await explain(admin, title, statement, *args)
        return
    types = [t.name for t in (await admin.prepare(statement)).get_parameters()]
    await admin.execute(f"PREPARE bench_claim({', '.join(types)}) AS {statement}")
    try:
        await admin.execute("SET plan_cache_mode = force_generic_plan")
        await explain(admin, title, f"EXECUTE bench_claim({', '.join(map(literal, args))})")
    finally:
        await admin.execute("RESET plan_cache_mode")
        await admin.execute("DEALLOCATE bench_claim")


async def explain_complete(admin: asyncpg.Connection, label: str) -> None:
    """COMPLETE of one job claimed (with 99 others, as a batch of 100 is) in the same transaction."""
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) COMPLETE -- {label}, 100 jobs processing")
    queue = Queue("bench-explain")
    async with rolled_back(admin):
        claimed = await queue.claim(admin, 100)
        recorder = Recorder()
        await queue.complete(recorder, claimed[0])
        [(statement, args)] = recorder.calls
        rows = await admin.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *args)
    for row in rows:
        print("  " + row[0])


@contextlib.asynccontextmanager
async def rolled_back(admin: asyncpg.Connection) -> AsyncIterator[None]:
    tx = admin.transaction()
    await tx.start()
    try:
        yield
    finally:
        await tx.rollback()


def print_table(
    args: argparse.Namespace, fresh: Sequence[Measurement], churned: Sequence[Measurement]
) -> None:
    best: dict[tuple[str, int, int], Measurement] = {}
    for m in fresh:
        key = (m.table, m.workers, m.batch)
        if key not in best or m.rate > best[key].rate:
            best[key] = m
    print(
        f"\n{'table':<6} {'workers':>7} {'batch':>5} {'finished rows':>14} {'since VACUUM':>12} "
        f"{'jobs':>6} {'seconds':>8} {'jobs/s':>7} {'vs empty':>9}"
    )
    for workers, batch in args.configs:
        reference = best[("empty", workers, batch)].rate
        rows = [best[(name, workers, batch)] for name in ("empty", "full")]
        rows += [m for m in churned if (m.workers, m.batch) == (workers, batch)]
        for m in rows:
            print(
                f"{m.table:<6} {m.workers:>7} {m.batch:>5} {m.finished:>14,} {m.since_vacuum:>12,} "
                f"{m.jobs:>6} {m.seconds:>8.2f} {m.rate:>7.0f} {m.rate / reference:>9.2f}"
            )
    print(f"(fresh rows: best of {args.repeat}; vs empty: against the fresh empty table's best)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--finished", type=int, default=1_000_000, help="finished rows to load")
    parser.add_argument("--pending", type=int, default=10_000, help="runnable jobs per measurement")
    parser.add_argument("--max-seconds", type=float, default=5.0, help="length of a measurement")
    parser.add_argument("--repeat", type=int, default=2, help="alternating rounds; best is kept")
    parser.add_argument(
        "--churn",
        type=int,
        default=50_000,
        help="jobs run through the 1M-row table without VACUUM before the last measurements",
    )
    parser.add_argument(
        "--configs", type=parse_config, default=[(1, 1), (4, 10)], help="WORKERSxBATCH,..."
    )
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    async with bench_server() as server:
        print(f"server: {server.kind}, PostgreSQL {await server.version()}")
        await run(server, args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
