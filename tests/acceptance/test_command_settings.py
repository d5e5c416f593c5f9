"""Each command checks the settings it uses, and only those, in one message style; arguments are
checked before anything starts; a refused enqueue says that nothing was written (issue 22.6)."""

import asyncio
import json
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.acceptance.conftest import ROOT, run_cli, worker_env
from worker.cli.main import COMMAND_SETTINGS

# Runs one command in a fresh interpreter and writes the Settings fields it read after its
# settings were checked: a read outside COMMAND_SETTINGS is a setting the command uses unchecked.
SPY = """
import json, sys
from dataclasses import fields
from worker.cli import main as cli
from worker.core.settings import Settings

names = {f.name for f in fields(Settings)}
read = set()
real_getattribute = object.__getattribute__
real_from_env = Settings.from_env.__func__

def spy(self, name):
    if name in names:
        read.add(name)
    return real_getattribute(self, name)

def from_env(cls, *args, **kwargs):
    settings = real_from_env(cls, *args, **kwargs)
    cls.__getattribute__ = spy  # from here on, every read is the command's own
    return settings

Settings.from_env = classmethod(from_env)
code = cli.main(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    json.dump(sorted(read), out)
sys.exit(code)
"""


async def settings_read(env: dict[str, str], tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    report = tmp_path / "read.json"
    code, out, err = await run_cli_python(env, "-c", SPY, str(report), *args)
    assert report.exists(), (args, code, out[-2000:], err[-2000:])
    return code, set(json.loads(report.read_text()))


async def run_cli_python(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.slow
async def test_each_command_reads_only_the_settings_it_checks(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    env = worker_env(database_url)
    runs = [
        ("health",),
        ("migrate",),
        ("enqueue", "AAPL", "MSFT"),
        ("enqueue", "$$$"),
        ("retry", "--failed"),
        ("retry", "00000000-0000-4000-8000-000000000001"),
        ("prices", "AAPL"),
        ("show", "AAPL"),
        ("show", "AAPL", "--json"),
        ("status",),
        ("status", "--json"),
        ("prune",),
        ("backfill", "--dry-run"),
        ("backfill",),
    ]
    checked_somewhere = set()
    for args in runs:
        allowed = COMMAND_SETTINGS[args[0]]
        assert allowed is not None, f"{args[0]} checks every setting: nothing to test"
        code, read = await settings_read(env, tmp_path, *args)
        assert code in (0, 1), args
        assert read <= allowed, f"`{' '.join(args)}` reads unchecked settings {read - allowed}"
        checked_somewhere |= read
    assert {"database_url", "log_level", "stall_timeout_s", "prune_batch_size"} <= checked_somewhere


@pytest.mark.slow
async def test_a_setting_only_run_uses_does_not_block_enqueue(
    database_url: str, conn: asyncpg.Connection
) -> None:
    env = worker_env(database_url, WORKER_CONCURRENCY="abc", WORKER_SHUTDOWN_GRACE_S="soon")
    code, out, err = await run_cli(env, "enqueue", "GOOG")
    assert code == 0 and out.endswith("\tGOOG\n"), err
    code, out, err = await run_cli(env, "status")
    assert code == 0, err
    # The command that uses it says which variable, what it expects and what it got: the
    # same words as the flag.
    code, _, err = await run_cli(env, "run", "--burst")
    assert code == 1
    assert err.strip() == "error: WORKER_CONCURRENCY: expected a whole number > 0, got 'abc'"
    code, _, err = await run_cli(env, "run", "--burst", "--concurrency", "abc")
    assert code == 2
    assert "argument --concurrency: expected a whole number > 0, got 'abc'" in err
    code, _, err = await run_cli(env, "run", "--burst", "--concurrency", "2")
    assert code == 1
    assert (
        err.strip() == "error: WORKER_SHUTDOWN_GRACE_S: expected a finite number >= 0, got 'soon'"
    )
    assert await conn.fetchval("SELECT count(*) FROM symbol_onboarding_queue") == 1


@pytest.mark.slow
async def test_a_refused_enqueue_says_nothing_was_enqueued(
    database_url: str, conn: asyncpg.Connection
) -> None:
    env = worker_env(database_url)
    code, out, err = await run_cli(env, "enqueue", "GOOG", "$$$")
    assert code == 1 and out == ""
    assert err.strip() == (
        "error: invalid symbol '$$$': expected 1-20 letters, digits or . - ^ = /, with at least"
        " one letter or digit; nothing was enqueued"
    )
    stranger = "00000000-0000-4000-8000-000000000001"
    code, _, err = await run_cli(env, "enqueue", "GOOG", "--requested-by", stranger)
    assert code == 1
    assert err.strip() == f"error: --requested-by {stranger}: no such user; nothing was enqueued"
    # All or nothing: GOOG, valid on its own, was not written either time.
    assert await conn.fetchval("SELECT count(*) FROM symbol_onboarding_queue") == 0
    assert await conn.fetchval("SELECT count(*) FROM symbol_universe WHERE symbol = 'GOOG'") == 0


async def test_an_unknown_source_is_refused_before_the_embedded_server_starts(
    tmp_path: Path,
) -> None:
    pgdata = tmp_path / "pg"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PRICE_SOURCE")}
    env.update(PYTHONPATH=str(ROOT), EMBEDDED_PGDATA=str(pgdata), LOG_FORMAT="json")
    code, _, err = await run_cli(env, "run", "--burst", "--source", "yahooo", timeout_s=30)
    assert code == 1
    assert err.strip().startswith("error: --source: expected one or more of yahoo, polygon,")
    assert err.strip().endswith("got 'yahooo' (unknown source 'yahooo')")
    code, _, err = await run_cli({**env, "PRICE_SOURCE": "nope"}, "run", timeout_s=30)
    assert code == 1 and err.strip().startswith("error: PRICE_SOURCE: expected one or more of")
    assert not pgdata.exists()  # no server was created, started or migrated
