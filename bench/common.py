"""Shared by the benchmarks: a throwaway migrated database on the test server or the embedded one."""

import asyncio
import contextlib
import importlib
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import PgServer, start_test_server
from worker.ops import migrate


@contextlib.asynccontextmanager
async def throwaway_database(label: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """A fresh database (TEST_DATABASE_URL's server, else embedded), dropped afterwards."""
    os.environ.setdefault("TMPDIR", tempfile.gettempdir())
    server: PgServer = start_test_server()
    name = server.new_name(f"bench_{label}")
    url = await server.create_database(name)
    try:
        if migrated:
            await migrate.upgrade(url)
        yield url
    finally:
        await server.drop_database(name)
        server.stop()


def installed(module: str, baseline: str, extra: str = "bench") -> bool:
    """Whether an optional baseline's package imports; when it does not, say so on stdout (the
    script then measures the rest)."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        print(
            f"{baseline}: skipped, {module} cannot be imported ({exc}); "
            f"pip install -e '.[{extra}]' to measure it in the same run",
            flush=True,
        )
        return False
    return True


def insert_in_thread(dsn: str, symbols: list[str], go: threading.Event, ready, commits) -> None:
    """Plain-SQL INSERTs from another thread and event loop, one per `go`, stamping each commit."""
    import asyncpg

    async def main() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for symbol in symbols:
                go.wait()
                go.clear()
                await conn.execute(
                    "INSERT INTO symbol_onboarding_queue (symbol) VALUES ($1)", symbol
                )
                commits[symbol] = time.perf_counter()
                ready.set()
        finally:
            await conn.close()

    asyncio.run(main())


async def drive(
    dsn, samples, stamps, arrived, names=lambda i: f"L{uuid.uuid4().hex[:8].upper()}"
) -> list[float]:
    """Per sample: idle 10 ms, INSERT, wait for `arrived`; latency = stamps[symbol] - commit."""
    symbols = [names(i) for i in range(samples)]
    go, ready = threading.Event(), threading.Event()
    commits: dict[str, float] = {}
    thread = threading.Thread(target=insert_in_thread, args=(dsn, symbols, go, ready, commits))
    thread.start()
    latencies = []
    for symbol in symbols:
        arrived.clear()
        await asyncio.sleep(0.01)  # idle worker
        go.set()
        await asyncio.wait_for(arrived.wait(), 10)
        await asyncio.to_thread(ready.wait)
        ready.clear()
        latencies.append((stamps[symbol] - commits[symbol]) * 1000)
    thread.join()
    return latencies


def describe(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100)
    return (
        f"{name:<30} median {statistics.median(ms):7.2f} ms  p90 {q[89]:7.2f} ms"
        f"  p99 {q[98]:7.2f} ms"
    )
