"""Queue-core throughput: claim + complete of a no-op job, ours against pgqueuer and procrastinate.

    python bench/queue_throughput.py [--jobs 20000] [--max-seconds 5] [--workers 1,4]
        [--batches 1,10,100] [--modes each,batch,each-async] [--repeat 1] [--skip-baselines]

    python bench/queue_throughput.py --endpoint [--jobs 3000] [--repeat 8] [--concurrency 4]

(`make bench` runs it; without an editable install, prefix `PYTHONPATH=.`.)

`--endpoint` measures instead what the worker's HTTP endpoint costs: the real Runner (claim loop,
concurrency, heartbeats, registry) drains `--jobs` no-op jobs in burst mode, alternately without
`WORKER_HTTP_PORT` (no endpoint, nothing recorded) and with it (Prometheus metrics recorded for
every job, the server listening, and a scraper fetching /metrics, /healthz and /readyz every
second and the status page every 5 s, far more often than Prometheus or Kubernetes would). It
prints jobs/s of both per pass and the ratio with/without: the median of the passes' ratios and
the ratio of the best passes.

Every system gets its own fresh database on one server: TEST_DATABASE_URL's if set, else the
embedded one in /tmp/sow-bench-pg. Each run enqueues `--jobs` no-op jobs, then W asyncio workers,
each on its own connection, claim and complete until the queue is empty or `--max-seconds` has
passed (the cap keeps the slow configurations short; jobs/s is what got done over the time it took,
including the drain of the last in-flight jobs). Systems take turns within each configuration so
that load from elsewhere on the machine hits them alike; with `--repeat` the best pass is kept.
The databases are dropped at the end. pgqueuer runs W QueueManagers in drain mode with
`batch_size` = batch (which also sizes its buffer of finished jobs); procrastinate runs one burst
worker (wait=False) with concurrency W, which fetches one job at a time; the floor is a bare
asyncpg SKIP LOCKED loop on a two-index table, batch-completed.

Ours runs three ways: `each` completes every job with its own statement, as the runner does;
`batch` completes a claimed batch with one statement (Queue.complete_many), the like-for-like
comparison with pgqueuer, whose batch size also sizes the buffer that logs finished jobs;
`each-async` is `each` on sessions with synchronous_commit off (a commit does not wait for its
WAL flush: a server crash may forget the last few hundred milliseconds of claims and completions,
which stall recovery then runs again; jobs are at-least-once already).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from common import installed

from worker.core import embedded, logs
from worker.core.db import asyncpg_dsn, with_database
from worker.core.settings import Settings
from worker.ops import migrate, web
from worker.ops.prometheus import PrometheusMetrics
from worker.queue.runner import Runner
from worker.queue.store import Job, Queue, new_worker_id

# The bench smoke test (tests/acceptance/test_bench_scripts.py) runs it with these arguments and
# checks these lines; the defaults stay the full size.
SMOKE_ARGS = ["--jobs", "300", "--max-seconds", "0.5", "--workers", "1,2", "--batches", "1,10"]
SMOKE_OUTPUT = [r"^ours +each +1 +1 +\d+ ", r"^ours +batch +2 +10 +\d+ ", r"^bare asyncpg +batch "]

EMBEDDED_PGDATA = Path("/tmp/sow-bench-pg")
DB_PREFIX = "sow_bench"
ENQUEUE_CHUNK = 5_000

# The floor: the least a SKIP LOCKED queue can do (no triggers, two indexes, bigint ids).
BARE_SCHEMA = """
CREATE TABLE bare_jobs (
    id bigserial PRIMARY KEY,
    status text NOT NULL DEFAULT 'pending',
    locked_by text
);
CREATE INDEX bare_jobs_pending ON bare_jobs (id) WHERE status = 'pending';
"""
BARE_CLAIM = """
WITH next AS (
    SELECT id FROM bare_jobs WHERE status = 'pending' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
)
UPDATE bare_jobs AS b SET status = 'processing', locked_by = $2
FROM next WHERE b.id = next.id
RETURNING b.id
"""
BARE_COMPLETE = "UPDATE bare_jobs SET status = 'done' WHERE id = ANY($1::bigint[])"


@dataclass
class Result:
    system: str
    mode: str  # how jobs are completed: each, batch (one statement per claim), or the system's own
    workers: int
    batch: int
    jobs: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


@dataclass
class BenchServer:
    """A server we may create and drop databases on; every name we create is remembered."""

    admin_url: str
    kind: str
    created: list[str] = field(default_factory=list)

    def dsn(self, database: str) -> str:
        return asyncpg_dsn(with_database(self.admin_url, database))

    async def create_database(self, label: str) -> str:
        name = f"{DB_PREFIX}_{os.getpid()}_{label}"
        conn = await asyncpg.connect(asyncpg_dsn(self.admin_url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        return name

    async def drop_databases(self) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(self.admin_url))
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.created.clear()

    async def version(self) -> str:
        conn = await asyncpg.connect(asyncpg_dsn(self.admin_url))
        try:
            return await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def bench_server() -> AsyncIterator[BenchServer]:
    """TEST_DATABASE_URL's server, else the embedded one; our databases are dropped on exit."""
    url = os.environ.get("TEST_DATABASE_URL")
    stop: Callable[[], None] = lambda: None  # noqa: E731
    if url:
        server = BenchServer(admin_url=asyncpg_dsn(url), kind="TEST_DATABASE_URL")
    else:
        pg = embedded.start(EMBEDDED_PGDATA)
        server = BenchServer(admin_url=asyncpg_dsn(pg.url("postgres")), kind="embedded")
        stop = pg.stop
    try:
        yield server
    finally:
        try:
            await server.drop_databases()
        finally:
            stop()


async def connect_all(dsn: str, count: int) -> list[asyncpg.Connection]:
    return [await asyncpg.connect(dsn) for _ in range(count)]


async def close_all(conns: Sequence[asyncpg.Connection]) -> None:
    for conn in conns:
        await conn.close()


# --- ours -------------------------------------------------------------------------------------


async def enqueue_ours(conn: asyncpg.Connection, jobs: int, prefix: str = "S") -> None:
    """`jobs` pending jobs with distinct valid symbols, in one statement (triggers included)."""
    await conn.execute(
        "INSERT INTO symbol_onboarding_queue (symbol) "
        "SELECT $1 || i FROM generate_series(1, $2::int) AS i",
        prefix,
        jobs,
    )


async def drain_ours(
    conns: Sequence[asyncpg.Connection], batch: int, mode: str, max_seconds: float
) -> tuple[int, float]:
    """W workers claim + complete until the queue is empty or time is up: (jobs, seconds)."""

    async def work(conn: asyncpg.Connection, queue: Queue, deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            jobs = await queue.claim(conn, batch)
            if not jobs:
                break
            if mode == "batch":
                await queue.complete_many(conn, jobs)
            else:
                for job in jobs:  # the no-op job runs here
                    await queue.complete(conn, job)
            done += len(jobs)
        return done

    queues = [Queue(new_worker_id(f"bench-{i}")) for i in range(len(conns))]
    start = time.perf_counter()
    counts = await asyncio.gather(
        *(work(c, q, start + max_seconds) for c, q in zip(conns, queues, strict=True))
    )
    return sum(counts), time.perf_counter() - start


class Ours:
    """Our queue store (worker/queue/store.py) on a database migrated to head."""

    name = "ours"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    async def setup(self, server: BenchServer) -> None:
        self.dsn = server.dsn(await server.create_database("ours"))
        await migrate.upgrade(self.dsn)
        self.admin = await asyncpg.connect(self.dsn)

    def modes(self, batch: int) -> list[str]:
        return [m for m in self.args.modes if batch > 1 or m != "batch"]  # same at batch 1

    async def run(self, workers: int, batch: int, mode: str) -> Result:
        await self.admin.execute("TRUNCATE symbol_onboarding_queue")
        await enqueue_ours(self.admin, self.args.jobs)
        await self.admin.execute("VACUUM ANALYZE symbol_onboarding_queue")
        conns = await connect_all(self.dsn, workers)
        try:
            if mode == "each-async":
                for conn in conns:
                    await conn.execute("SET synchronous_commit = off")
            done, seconds = await drain_ours(conns, batch, mode, self.args.max_seconds)
        finally:
            await close_all(conns)
        completed = await self.admin.fetchval(
            "SELECT count(*) FROM symbol_onboarding_queue WHERE status = 'completed'"
        )
        assert completed == done, (completed, done)
        return Result(self.name, mode, workers, batch, done, seconds)

    async def close(self) -> None:
        await self.admin.close()


class Bare:
    """The floor: a minimal table and a bare asyncpg SKIP LOCKED loop, batch-completed."""

    name = "bare asyncpg"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    async def setup(self, server: BenchServer) -> None:
        self.dsn = server.dsn(await server.create_database("bare"))
        self.admin = await asyncpg.connect(self.dsn)
        await self.admin.execute(BARE_SCHEMA)

    def modes(self, batch: int) -> list[str]:
        return ["batch"] if batch in (1, max(self.args.batches)) else []

    async def run(self, workers: int, batch: int, mode: str) -> Result:
        async def work(conn: asyncpg.Connection, name: str, deadline: float) -> int:
            done = 0
            while time.perf_counter() < deadline:
                ids = [r["id"] for r in await conn.fetch(BARE_CLAIM, batch, name)]
                if not ids:
                    break
                await conn.execute(BARE_COMPLETE, ids)
                done += len(ids)
            return done

        await self.admin.execute("TRUNCATE bare_jobs")
        await self.admin.execute(
            "INSERT INTO bare_jobs (status) SELECT 'pending' FROM generate_series(1, $1::int)",
            self.args.jobs,
        )
        await self.admin.execute("VACUUM ANALYZE bare_jobs")
        conns = await connect_all(self.dsn, workers)
        try:
            start = time.perf_counter()
            deadline = start + self.args.max_seconds
            counts = await asyncio.gather(
                *(work(c, f"bare-{i}", deadline) for i, c in enumerate(conns))
            )
            seconds = time.perf_counter() - start
        finally:
            await close_all(conns)
        return Result(self.name, mode, workers, batch, sum(counts), seconds)

    async def close(self) -> None:
        await self.admin.close()


class Pgqueuer:
    """pgqueuer's QueueManager, one per worker on its own connection, in drain mode."""

    name = module = "pgqueuer"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    async def setup(self, server: BenchServer) -> None:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        self.dsn = server.dsn(await server.create_database("pgqueuer"))
        self.admin = await asyncpg.connect(self.dsn)
        self.queries = Queries(AsyncpgDriver(self.admin))
        await self.queries.install()  # what `pgq install` runs

    def modes(self, batch: int) -> list[str]:
        return ["own"]

    async def run(self, workers: int, batch: int, mode: str) -> Result:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.models import Job as PgqJob
        from pgqueuer.qm import QueueManager
        from pgqueuer.queries import Queries
        from pgqueuer.types import QueueExecutionMode

        await self.admin.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
        for start in range(0, self.args.jobs, ENQUEUE_CHUNK):
            size = min(ENQUEUE_CHUNK, self.args.jobs - start)
            await self.queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        await self.admin.execute("VACUUM ANALYZE pgqueuer")

        conns = await connect_all(self.dsn, workers)
        qms = [QueueManager(Queries(AsyncpgDriver(c))) for c in conns]
        for qm in qms:

            @qm.entrypoint("noop")
            async def noop(job: PgqJob) -> None:
                return None

        def stop() -> None:
            for qm in qms:
                qm.shutdown.set()

        try:
            started = time.perf_counter()
            # drain: a manager stops once nothing is queued and its jobs are logged. The short
            # dequeue_timeout is only the idle wait, which comes once the queue is empty.
            runs = [
                asyncio.create_task(
                    qm.run(
                        batch_size=batch,
                        mode=QueueExecutionMode.drain,
                        dequeue_timeout=timedelta(seconds=0.05),
                    )
                )
                for qm in qms
            ]
            await stop_after(runs, self.args.max_seconds, stop)
            seconds = time.perf_counter() - started
        finally:
            await close_all(conns)
        left = await self.admin.fetchval("SELECT count(*) FROM pgqueuer")
        return Result(self.name, mode, workers, batch, self.args.jobs - left, seconds)

    async def close(self) -> None:
        await self.admin.close()


class Procrastinate:
    """procrastinate's worker in burst mode (wait=False), concurrency = workers, one job a fetch."""

    name = module = "procrastinate"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    async def setup(self, server: BenchServer) -> None:

        # It warns that the App lives in __main__, which is harmless here.
        logging.getLogger("procrastinate").setLevel(logging.ERROR)
        self.dsn = server.dsn(await server.create_database("procrastinate"))
        self.admin = await asyncpg.connect(self.dsn)
        async with self.app(1).open_async() as app:
            await app.schema_manager.apply_schema_async()

    def app(self, workers: int):  # -> procrastinate.App
        import procrastinate

        app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=self.dsn, min_size=workers + 2, max_size=workers + 2
            )
        )

        @app.task(name="noop")
        async def noop() -> None:
            return None

        return app

    def modes(self, batch: int) -> list[str]:
        return ["own"] if batch == 1 else []

    async def run(self, workers: int, batch: int, mode: str) -> Result:
        await self.admin.execute("TRUNCATE procrastinate_jobs CASCADE")
        async with self.app(workers).open_async() as app:
            noop = app.tasks["noop"]
            for start in range(0, self.args.jobs, ENQUEUE_CHUNK):
                size = min(ENQUEUE_CHUNK, self.args.jobs - start)
                await noop.batch_defer_async(*({} for _ in range(size)))
            await self.admin.execute("VACUUM ANALYZE procrastinate_jobs")

            started = time.perf_counter()
            run = asyncio.create_task(
                app.run_worker_async(concurrency=workers, wait=False, install_signal_handlers=False)
            )
            # Cancelling run_worker_async is procrastinate's graceful stop.
            await stop_after([run], self.args.max_seconds, run.cancel)
            seconds = time.perf_counter() - started
        done = await self.admin.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        )
        return Result(self.name, mode, workers, batch, done, seconds)

    async def close(self) -> None:
        await self.admin.close()


async def stop_after(
    tasks: list[asyncio.Task], max_seconds: float, stop: Callable[[], object]
) -> None:
    """Wait for `tasks`; past `max_seconds`, ask them to stop gracefully and wait for that."""
    _, pending = await asyncio.wait(tasks, timeout=max_seconds)
    if pending:
        stop()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- the HTTP endpoint's cost (--endpoint) -------------------------------------------------------


@dataclass
class NoopHandler:
    """Completes each job at once: what remains is the runner's and the endpoint's own cost."""

    queue: Queue
    pool: asyncpg.Pool

    async def run(self, job: Job) -> NoopResult:
        await self.queue.complete(self.pool, job)
        return NoopResult()


@dataclass(frozen=True)
class NoopResult:
    outcome: str = "completed"
    rows: int | None = None
    error: str | None = None


# A scraper in a process of its own, as Prometheus and the kubelet are: what it costs the worker is
# serving the requests, not making them. It prints how many it made when its stdin closes.
SCRAPER = """
import asyncio, sys, httpx

async def main(base, interval_s):
    fetched, tick = 0, 0
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), done.set)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while not done.is_set():
            for path in ["/metrics", "/healthz", "/readyz"] + (["/"] if tick % 5 == 0 else []):
                (await client.get(path)).raise_for_status()
                fetched += 1
            tick += 1
            try:
                await asyncio.wait_for(done.wait(), interval_s)
            except TimeoutError:
                pass
    print(fetched)

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


async def start_scraper(base: str, interval_s: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRAPER,
        base,
        str(interval_s),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def stop_scraper(scraper: asyncio.subprocess.Process) -> int:
    out, _ = await scraper.communicate(b"")  # closing stdin ends it
    if scraper.returncode != 0:
        raise RuntimeError(f"the scraper failed (exit {scraper.returncode})")
    return int(out.decode().strip() or 0)


@dataclass(frozen=True)
class RunnerRun:
    rate: float  # jobs/s, wall clock
    cpu_us: float  # this process's CPU time per job: the endpoint's own work shows here
    served: int  # requests the scraper made


class BenchView:
    """The runner the endpoint serves, once built (the worker's assembly does this in cli)."""

    runner: Runner | None = None

    def running(self) -> Runner | None:
        return self.runner

    def factors_state(self) -> None:
        return None


async def run_runner(dsn: str, args: argparse.Namespace, http: bool) -> RunnerRun:
    """Drain `--jobs` no-op jobs with the real Runner in burst mode."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("TRUNCATE symbol_onboarding_queue")
        await admin.execute("TRUNCATE symbol_onboarding_workers")
        await enqueue_ours(admin, args.jobs)
        await admin.execute("VACUUM ANALYZE symbol_onboarding_queue")
    finally:
        await admin.close()
    settings = Settings(
        concurrency=args.concurrency,
        http_port=0 if http else None,
        log_level="warning",
        poll_interval_s=0.05,
    )
    worker_id = new_worker_id("bench")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=settings.concurrency + 1)
    try:
        view = BenchView()
        async with web.endpoint(settings, dsn, worker_id, view) as (metrics, server):
            queue = Queue(worker_id)
            runner = Runner(
                settings,
                pool,
                queue,
                NoopHandler(queue, pool),
                claim_dsn=dsn,
                burst=True,
                metrics=metrics,
            )
            scraper = None
            if server is not None:
                view.runner = runner
                assert server.url is not None
                scraper = await start_scraper(server.url, args.scrape_interval)
                await asyncio.sleep(0.5)  # its interpreter is up before the clock starts
            started, cpu = time.perf_counter(), time.process_time()
            await runner.run()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            served = await stop_scraper(scraper) if scraper is not None else 0
    finally:
        await pool.close()
    return RunnerRun(args.jobs / seconds, cpu / args.jobs * 1e6, served)


async def endpoint_cost(args: argparse.Namespace) -> None:
    logs.configure(Settings(log_level="warning"))
    async with bench_server() as server:
        dsn = server.dsn(await server.create_database("endpoint"))
        await migrate.upgrade(dsn)
        print(
            f"server: {server.kind}, PostgreSQL {await server.version()}; {os.cpu_count()} CPUs; "
            f"the Runner in burst mode, concurrency {args.concurrency}, {args.jobs} no-op jobs "
            f"per run, {args.repeat} passes (order alternates)"
        )
        print(
            f"{'pass':>4} {'without jobs/s':>15} {'with jobs/s':>12} {'ratio':>7} "
            f"{'without cpu us/job':>19} {'with cpu us/job':>16} {'ratio':>7} {'requests':>9}"
        )
        runs: dict[bool, list[RunnerRun]] = {False: [], True: []}
        for i in range(args.repeat):
            order = [False, True] if i % 2 == 0 else [True, False]
            this: dict[bool, RunnerRun] = {}
            for http in order:
                this[http] = await run_runner(dsn, args, http)
                runs[http].append(this[http])
            off, on = this[False], this[True]
            print(
                f"{i + 1:>4} {off.rate:>15.0f} {on.rate:>12.0f} {on.rate / off.rate:>7.3f} "
                f"{off.cpu_us:>19.0f} {on.cpu_us:>16.0f} {on.cpu_us / off.cpu_us:>7.3f} "
                f"{on.served:>9}",
                flush=True,
            )
        pairs = list(zip(runs[True], runs[False], strict=True))
        ratios = sorted(on.rate / off.rate for on, off in pairs)
        cpu_ratios = sorted(on.cpu_us / off.cpu_us for on, off in pairs)
        with_http = [r.rate for r in runs[True]]
        without = [r.rate for r in runs[False]]
        print(
            f"with/without WORKER_HTTP_PORT: median of pass ratios {statistics.median(ratios):.3f}"
            f" (range {ratios[0]:.3f}-{ratios[-1]:.3f}); best {max(with_http):.0f} vs"
            f" {max(without):.0f} jobs/s: {max(with_http) / max(without):.3f}"
        )
        print(
            f"worker CPU per job with/without: median of pass ratios "
            f"{statistics.median(cpu_ratios):.3f} (range {cpu_ratios[0]:.3f}-{cpu_ratios[-1]:.3f})"
        )
        # The part of the cost paid per job, measured alone (no database, no scheduler noise).
        per_job_s = recording_cost_s()
        rate = statistics.median(with_http)
        print(
            f"recording one job's metrics (started + finished): {per_job_s * 1e6:.1f} us, "
            f"{per_job_s * rate:.2%} of one core at the median {rate:.0f} jobs/s"
        )


def recording_cost_s(jobs: int = 20_000) -> float:
    """CPU seconds PrometheusMetrics spends recording one job (start and finish)."""
    metrics = PrometheusMetrics("bench", "bench")
    now = datetime.now(UTC)
    job = Job(uuid.uuid4(), "BENCH", "normal", 1, None, now, now + timedelta(milliseconds=5))
    started = time.process_time()
    for _ in range(jobs):
        metrics.job_started(job)
        metrics.job_finished(job, "completed", 0.002)
    return (time.process_time() - started) / jobs


# --- report -----------------------------------------------------------------------------------

HEADER = (
    f"{'system':<14} {'complete':>10} {'workers':>7} {'batch':>5} {'jobs':>7} {'seconds':>8} "
    f"{'jobs/s':>8}"
)


def line(result: Result, reference: float | None = None) -> str:
    text = (
        f"{result.system:<14} {result.mode:>10} {result.workers:>7} {result.batch:>5} "
        f"{result.jobs:>7} {result.seconds:>8.2f} {result.rate:>8.0f}"
    )
    return text + (f" {result.rate / reference:>12.2f}" if reference else "")


def best_of(results: Sequence[Result]) -> list[Result]:
    """The fastest of the repeats of each (system, mode, workers, batch), in first-run order."""
    best: dict[tuple[str, str, int, int], Result] = {}
    for r in results:
        key = (r.system, r.mode, r.workers, r.batch)
        if key not in best or r.rate > best[key].rate:
            best[key] = r
    return sorted(best.values(), key=lambda r: (r.system != "ours", r.system, r.workers, r.batch))


def print_table(results: Sequence[Result], repeats: int) -> None:
    summary = best_of(results)
    pgqueuer = [r for r in summary if r.system == "pgqueuer"]
    best = max(pgqueuer, key=lambda r: r.rate) if pgqueuer else None
    print(f"\n{'best of ' + str(repeats) if repeats > 1 else 'summary'}", end="")
    if best:
        print(
            f"; pgqueuer's best on this run: {best.rate:.0f} jobs/s "
            f"(workers {best.workers}, batch {best.batch})",
            end="",
        )
    print()
    print(HEADER + (f" {'vs pgq best':>12}" if best else ""))
    for result in summary:
        print(line(result, best.rate if best else None))


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs enqueued per run")
    parser.add_argument(
        "--max-seconds", type=float, default=5.0, help="stop a run after this long (default 5)"
    )
    parser.add_argument("--workers", type=int_list, default=[1, 4], help="e.g. 1,4")
    parser.add_argument("--batches", type=int_list, default=[1, 10, 100], help="e.g. 1,10,100")
    parser.add_argument(
        "--modes",
        type=lambda text: [m for m in text.split(",") if m],
        default=["each", "batch", "each-async"],
        help="how ours completes jobs: each,batch,each-async",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="passes over every configuration; best one is kept"
    )
    parser.add_argument(
        "--endpoint",
        action="store_true",
        help="measure the HTTP endpoint's cost on the runner's throughput instead",
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="--endpoint: the runner's WORKER_CONCURRENCY"
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=1.0,
        help="--endpoint: seconds between scrapes of /metrics, /healthz, /readyz (the page: 5x)",
    )
    parser.add_argument(
        "--skip-baselines",
        action="store_true",
        help="ours only (no pgqueuer, procrastinate, floor)",
    )
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    if args.endpoint:
        await endpoint_cost(args)
        return
    started = time.perf_counter()
    systems: list[Ours | Pgqueuer | Procrastinate | Bare] = [Ours(args)]
    async with bench_server() as server:
        print(
            f"server: {server.kind}, PostgreSQL {await server.version()}; "
            f"pgqueuer {version('pgqueuer')}, procrastinate {version('procrastinate')}, "
            f"asyncpg {version('asyncpg')}, psycopg {version('psycopg')}; "
            f"{os.cpu_count()} CPUs; {args.jobs} jobs per run, cap {args.max_seconds:g} s"
        )
        if not args.skip_baselines:
            # An optional baseline that is not installed is reported and left out.
            systems += [
                cls(args) for cls in (Pgqueuer, Procrastinate) if installed(cls.module, cls.name)
            ]
            systems.append(Bare(args))
        for system in systems:
            await system.setup(server)
        results: list[Result] = []
        try:
            print(HEADER, flush=True)
            # Systems interleave within each configuration, so load from elsewhere on the machine
            # hits them alike.
            for _ in range(args.repeat):
                for workers in args.workers:
                    for batch in args.batches:
                        for system in systems:
                            for mode in system.modes(batch):
                                results.append(await system.run(workers, batch, mode))
                                print(line(results[-1]), flush=True)
        finally:
            for system in systems:
                await system.close()
        print_table(results, args.repeat)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
