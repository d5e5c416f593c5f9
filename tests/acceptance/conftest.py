"""Acceptance helpers: the worker CLI as a subprocess, its JSON log lines, a slow Yahoo replay."""

import asyncio
import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fakeprovider import FakeProvider, Reply

ROOT = Path(__file__).resolve().parents[2]


def yahoo_chart(symbol: str, days: int = 10) -> bytes:
    """A Yahoo v8 chart body for the last `days` weekdays (recent, so inside the lookback)."""
    today = datetime.now(UTC).replace(hour=14, minute=30, second=0, microsecond=0)
    stamps = [
        int((today - timedelta(days=d)).timestamp())
        for d in range(days * 2, 0, -1)
        if (today - timedelta(days=d)).weekday() < 5
    ][-days:]
    closes = [100 + i * 0.5 for i in range(len(stamps))]
    result = {
        "meta": {"currency": "USD", "symbol": symbol, "exchangeTimezoneName": "America/New_York"},
        "timestamp": stamps,
        "indicators": {
            "quote": [
                {
                    "open": closes,
                    "high": [c + 1 for c in closes],
                    "low": [c - 1 for c in closes],
                    "close": closes,
                    "volume": [1_000_000 + i for i in range(len(stamps))],
                }
            ],
            "adjclose": [{"adjclose": closes}],
        },
    }
    return json.dumps({"chart": {"result": [result], "error": None}}).encode()


def serve_slowly(provider: FakeProvider, symbol: str, delay_s: float, days: int = 10) -> None:
    provider.route(
        f"/v8/finance/chart/{symbol}", Reply(body=yahoo_chart(symbol, days), delay_s=delay_s)
    )


class WorkerProcess:
    """`python -m worker ...` with its stdout parsed as JSON log lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            self.events.append(json.loads(line))  # every line must be JSON

    async def wait_for(self, event: str, timeout_s: float = 20, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for e in self.events:
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items()):
                    return e
            if self.proc.returncode is not None and self._reader.done():
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {event} {fields} in:\n" + "\n".join(self.lines[-30:]))

    async def finish(self, timeout_s: float = 30) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        await asyncio.wait_for(self._reader, 5)
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)


def worker_env(database_url: str, provider_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "LOG_FORMAT": "json",
        "PRICE_SOURCE": "yahoo",
        "WORKER_CONCURRENCY": "2",
        "WORKER_POLL_INTERVAL_S": "1",
        "QUEUE_HEARTBEAT_INTERVAL_S": "0.3",
        "QUEUE_STALL_TIMEOUT_S": "2",
        "WORKER_SHUTDOWN_GRACE_S": "10",
        "PRICE_HTTP_RETRIES": "1",
        "PRICE_RATE_LIMIT_YAHOO": "off",
        # The daily refresh would add jobs at the first housekeeping round whenever a session
        # has closed; tests of the schedule turn it on.
        "REFRESH_SCHEDULE_TIME": "off",
        # Betas would add the eight reference ETFs' jobs to every flow tested here; the factor
        # flow has its own tests (test_factors_cli.py), which turn them on.
        "FACTORS_ENABLED": "false",
    }
    if provider_url:
        env["YAHOO_BASE_URL"] = provider_url
    env.update(extra)
    return env


async def start_worker(env: dict[str, str], *args: str) -> WorkerProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "run",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    return WorkerProcess(proc)


async def run_cli(env: dict[str, str], *args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode or 0, out.decode(), err.decode()
