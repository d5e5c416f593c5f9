"""The worker CLI when its output or its database goes away (issue 11, items 1 and 5)."""

import asyncio
import fcntl
import os
import signal
import sys
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.acceptance.conftest import ROOT, worker_env
from tests.tcpproxy import TcpProxy

pytestmark = pytest.mark.slow


async def spawn(env: dict[str, str], *args: str, stdout: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        *args,
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_until(fd: int, text: str, timeout_s: float = 20) -> str:
    """Read the non-blocking pipe `fd` until `text` appears."""
    seen = b""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while text.encode() not in seen:
        assert asyncio.get_running_loop().time() < deadline, seen.decode()[-2000:]
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            await asyncio.sleep(0.02)
            continue
        assert chunk, f"pipe closed before {text!r}: {seen.decode()[-2000:]}"
        seen += chunk
    return seen.decode()


async def finish(proc: asyncio.subprocess.Process, timeout_s: float) -> tuple[int, str]:
    """The exit code and stderr; the process is killed (and the test fails) on a timeout."""
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"the worker did not exit within {timeout_s} s") from None
    return proc.returncode or 0, err.decode()


async def wait_completed(conn: asyncpg.Connection, count: int, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        done = await conn.fetchval(
            "SELECT count(*) FROM symbol_onboarding_queue WHERE status = 'completed'"
        )
        if done == count:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{done} of {count} completed"
        await asyncio.sleep(0.05)


async def test_sigterm_stops_the_worker_after_its_stdout_closed(database_url, conn) -> None:
    """`make run | tee log`, tee dies: the worker keeps working, and SIGTERM still stops it."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    env = worker_env(database_url, PRICE_SOURCE="synthetic")
    proc = await spawn(env, "run", stdout=write_end)
    os.close(write_end)
    try:
        await read_until(read_end, "listener_connected")
    finally:
        os.close(read_end)  # the reader is gone: every later write gets EPIPE
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('AFTER')")
    await wait_completed(conn, 1)
    proc.send_signal(signal.SIGTERM)
    code, err = await finish(proc, 15)
    assert code == 0, err


async def test_a_full_stdout_does_not_wedge_the_worker(database_url, conn) -> None:
    """Nobody reads the worker's stdout: it must go on onboarding and still stop on SIGTERM."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)  # full after a dozen lines
    env = worker_env(database_url, PRICE_SOURCE="synthetic", WORKER_CONCURRENCY="4")
    proc = await spawn(env, "run", stdout=write_end)
    os.close(write_end)
    try:
        await conn.execute(
            "INSERT INTO symbol_onboarding_queue (symbol)"
            " SELECT 'F' || i FROM generate_series(1, 40) i"
        )
        await wait_completed(conn, 40)
        proc.send_signal(signal.SIGTERM)
        code, err = await finish(proc, 15)
        assert code == 0, err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(read_end)


async def test_burst_gives_up_on_an_unreachable_database() -> None:
    """A cron job must end: exit 1 with one line once WORKER_BURST_MAX_OUTAGE_S has passed."""
    env = worker_env(
        "postgresql://postgres@127.0.0.1:1/postgres",
        WORKER_BURST_MAX_OUTAGE_S="2",
        WORKER_RECONNECT_MAX_WAIT_S="0.5",
    )
    proc = await spawn(env, "run", "--burst", stdout=asyncio.subprocess.DEVNULL)
    code, err = await finish(proc, 30)
    assert code == 1
    assert err.strip().count("\n") == 0 and "unreachable" in err, err


async def test_burst_gives_up_when_the_database_goes_away_mid_run(database_url, conn) -> None:
    """The outage starts while the burst runs (the pool is up): the claim loop gives up too."""
    if not urlsplit(database_url).hostname:
        pytest.skip("the test server listens on a unix socket only: no TCP proxy in front of it")
    proxy = TcpProxy(database_url)
    await proxy.start()
    env = worker_env(
        proxy.url(database_url),
        PRICE_SOURCE="synthetic",
        WORKER_BURST_MAX_OUTAGE_S="2",
        WORKER_RECONNECT_MAX_WAIT_S="0.5",
        WORKER_POLL_INTERVAL_S="0.2",
        WORKER_LISTEN="false",
    )
    # A runnable job locked by another transaction: burst mode keeps polling for it.
    await conn.execute("INSERT INTO symbol_onboarding_queue (symbol) VALUES ('LOCKED')")
    holder = conn.transaction()
    await holder.start()
    await conn.execute("SELECT 1 FROM symbol_onboarding_queue FOR UPDATE")
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    proc = await spawn(env, "run", "--burst", stdout=write_end)
    os.close(write_end)
    try:
        await read_until(read_end, "worker_started")
        await asyncio.sleep(0.5)
        assert proc.returncode is None
        await proxy.cut()
        code, err = await finish(proc, 30)
    finally:
        os.close(read_end)
        await holder.rollback()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 1, err
    # The last line is ours (asyncpg's pool may log its reconnect attempts before it).
    assert err.strip().splitlines()[-1].startswith("error: database unavailable"), err
    assert "WORKER_BURST_MAX_OUTAGE_S" in err.strip().splitlines()[-1], err


async def test_burst_sweeps_a_stalled_job_before_calling_the_queue_empty(
    database_url, conn
) -> None:
    """A dead worker's job sits in processing: `run --burst` recovers and runs it first."""
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue
            (symbol, status, attempts, locked_by, started_at, heartbeat_at)
        VALUES ('STALLED', 'processing', 1, 'dead-worker', now() - interval '1 hour',
                now() - interval '1 hour')
        """
    )
    env = worker_env(database_url, PRICE_SOURCE="synthetic")
    proc = await spawn(env, "run", "--burst", stdout=asyncio.subprocess.DEVNULL)
    code, err = await finish(proc, 30)
    assert code == 0, err
    row = await conn.fetchrow("SELECT status, attempts FROM symbol_onboarding_queue")
    assert tuple(row) == ("completed", 2)
