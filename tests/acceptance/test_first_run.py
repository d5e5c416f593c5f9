"""A new user's first commands (issue 11.16-19): the wrong Python, the embedded server before any
`run`, the README's offline quick start exactly as written, and one-line errors from backfill."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import ROOT, run_cli, worker_env

pytestmark = pytest.mark.slow


def test_a_python_without_the_dependencies_says_which_python_to_use() -> None:
    # -S: no site-packages, as with a system Python that never had the project installed.
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "worker", "health"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("error: No module named ")
    assert ".venv/bin/python -m worker" in line and ". .venv/bin/activate" in line


def README() -> str:
    return (ROOT / "README.md").read_text()


def log_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def finished_jobs(stdout: str) -> list[dict[str, Any]]:
    return [e for e in log_events(stdout) if e["event"] == "job_finished"]


def quick_start() -> list[list[str]]:
    """The README's offline quick start, as argument lists for `python -m worker`."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Offline, end to end", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        words = shlex.split(line.split("#", 1)[0])
        if words[:2] == ["make", "run"]:
            [args] = [w.removeprefix("ARGS=") for w in words[2:] if w.startswith("ARGS=")]
            commands.append(["run", *shlex.split(args)])
        else:
            assert words[:3] == [".venv/bin/python", "-m", "worker"], line
            commands.append(words[3:])
    return commands


def test_the_readme_quick_start_runs_offline_on_a_fresh_embedded_server() -> None:
    commands = quick_start()
    assert [c[0] for c in commands] == ["run", "enqueue", "run", "prices"]
    pgdata = Path(tempfile.gettempdir()) / f"sow-first-run-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "WORKER_HTTP_PORT")}
    env.update(PYTHONPATH=str(ROOT), EMBEDDED_PGDATA=str(pgdata), LOG_FORMAT="json")
    try:
        outputs = []
        # `health` first on a server no `run` has migrated yet (issue 11.17), then the README's
        # commands as written, so the jobs its `run` line promises are the jobs counted.
        for args in [["health"], *commands]:
            proc = subprocess.run(
                [sys.executable, "-m", "worker", *args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=100,
                check=False,
            )
            assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
            outputs.append(proc.stdout)
    finally:
        shutil.rmtree(pgdata, ignore_errors=True)
    assert outputs[0].startswith("ok: database")
    assert finished_jobs(outputs[1]) == []  # nothing queued yet
    assert re.fullmatch(r"[0-9a-f-]{36}\tAAPL\n[0-9a-f-]{36}\tMSFT\n", outputs[2])
    # The README says how many jobs its `run` line runs (issue 22.6: "onboards both" ran 10).
    [promised] = re.findall(r"run --burst --source synthetic +# (\d+) jobs", README())
    jobs = finished_jobs(outputs[3])
    assert len(jobs) == int(promised) and all(j["outcome"] == "completed" for j in jobs)
    assert {"AAPL", "MSFT", "SPY"} <= {j["symbol"] for j in jobs}
    # One warning that the prices are generated, not one per job.
    assert [e["event"] for e in log_events(outputs[3])].count("synthetic_prices_not_real") == 1
    assert re.match(
        r"AAPL: active, \d{3} daily bars stored, the newest \d{4}-\d\d-\d\d\n", outputs[-1]
    )
    assert len(outputs[-1].splitlines()) == 2 + 3  # the status line, a header, three bars


async def test_backfill_errors_are_one_line_without_a_traceback(database_url: str) -> None:
    code, _, err = await run_cli(worker_env(database_url), "backfill", "--symbols", "NOPE")
    assert code == 1
    assert "Traceback" not in err
    # Log lines are written by a background writer, so they may come before or after it.
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ["error: no market_data_cache rows for NOPE (the other symbols were copied)"]
    assert not [line for line in err.splitlines() if '"level": "error"' in line]
