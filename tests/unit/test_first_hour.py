"""What a new user met in the first hour (issue 22.6): the Makefile and the README's promises."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
URL_LINE = "status page, /healthz, /readyz, /metrics: http://"


def make_run_dry(*args: str) -> str:
    """The commands `make run ...` would execute (`make -n` executes nothing)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("no `make` on this machine: the Makefile cannot be read without it")
    return subprocess.run(
        [make, "--no-print-directory", "-n", "run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


@pytest.mark.parametrize("args", ["--burst", "--burst --source synthetic", "--source x --burst"])
def test_make_run_burst_prints_no_status_page_url(args: str) -> None:
    # --burst exits once the queue is empty: the URL would point at a process already gone.
    out = make_run_dry(f"ARGS={args}")
    assert URL_LINE not in out
    assert f"-m worker run {args}" in out


def test_make_run_prints_the_status_page_url() -> None:
    assert URL_LINE in make_run_dry()
    assert URL_LINE + "${WORKER_HTTP_HOST:-127.0.0.1}:9000/" in make_run_dry(
        "WORKER_HTTP_PORT=9000"
    )
