"""Every benchmark script in bench/ runs, at a small size, against the test server.

The figures in docs/benchmarks.md come from these scripts; this keeps them from rotting. It asserts
that each one exits 0 and prints its result lines, never anything about speed.

The convention for a bench script (a new one is picked up without editing this test):
- A script is a `bench/*.py` file with an `if __name__ == "__main__":` block; the others
  (`common.py`) are libraries.
- It defines literal module-level values, which this test reads with `ast` (it never imports
  the script):

      SMOKE_ARGS = "--jobs 300 ..."         # arguments that make it small (a list, or a string
                                            # split like a shell would): a few hundred jobs or
                                            # rows, a second or less per measurement, one round
      SMOKE_OUTPUT = [r"^ours +each", ...]  # regexes; each must match a line of its stdout

  Its argument defaults stay the full size used for the figures in docs/benchmarks.md. A script
  that cannot run small defines `SMOKE_SKIP = "why"` instead, and the test reports it as skipped
  with that reason.
- It uses the server in `TEST_DATABASE_URL` (here: the test session's own server, whatever its
  kind), in throwaway databases it drops; it exits non-zero on any failure.
- An optional baseline that is not installed (`.[bench]`: procrastinate, pgqueuer) is reported
  on stdout and left out (`bench.common.installed`); the rest is still measured.
- Nothing in it depends on the date or the time of day it runs: fix any date it needs, or derive
  it from the window the code under test computes.
"""

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import ROOT
from tests.harness import PgServer

pytestmark = pytest.mark.slow

BENCH = ROOT / "bench"
MARKERS = ("SMOKE_ARGS", "SMOKE_OUTPUT", "SMOKE_SKIP")
TIMEOUT_S = 100  # under the per-test timeout (pyproject.toml), so the script's output is shown


def is_script(tree: ast.Module) -> bool:
    """Whether the module has an `if __name__ == "__main__":` block."""
    return any(
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        for node in tree.body
    )


def markers(tree: ast.Module) -> dict[str, Any]:
    """The script's SMOKE_* module-level literals."""
    found: dict[str, Any] = {}
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign) and node.value is not None
            else []
        )
        for target in targets:
            if isinstance(target, ast.Name) and target.id in MARKERS:
                found[target.id] = ast.literal_eval(node.value)  # type: ignore[arg-type]
    return found


def scripts() -> list[Path]:
    return sorted(
        path for path in BENCH.glob("*.py") if is_script(ast.parse(path.read_text(), str(path)))
    )


def run_python(pg_server: PgServer, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python *argv` from the checkout against the test server, output captured."""
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env=bench_env(pg_server),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def bench_env(pg_server: PgServer) -> dict[str, str]:
    """The test session's server for the script, whatever its kind; never DATABASE_URL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_DATABASE_URL": pg_server.admin_url}
    env.pop("DATABASE_URL", None)
    return env


def test_discovery_finds_the_scripts() -> None:
    names = {path.name for path in scripts()}
    # The scripts behind the docs' benchmark figures, and never the shared library.
    assert {"claim_decay.py", "onboarding_throughput.py", "queue_throughput.py"} <= names
    assert "common.py" not in names


@pytest.mark.parametrize("script", scripts(), ids=lambda path: path.name)
def test_bench_script_runs_small(script: Path, pg_server: PgServer) -> None:
    found = markers(ast.parse(script.read_text(), str(script)))
    if "SMOKE_SKIP" in found:
        pytest.skip(f"{script.name} cannot run small: {found['SMOKE_SKIP']}")
    missing = [name for name in ("SMOKE_ARGS", "SMOKE_OUTPUT") if name not in found]
    assert not missing, (
        f"{script.name} defines no {' or '.join(missing)}: see this test's docstring "
        "for the convention (or SMOKE_SKIP = 'why' if it cannot run small)"
    )
    args, expected = found["SMOKE_ARGS"], found["SMOKE_OUTPUT"]
    args = shlex.split(args) if isinstance(args, str) else args
    assert isinstance(args, list) and all(isinstance(a, str) for a in args), args
    assert isinstance(expected, list) and expected, expected
    proc = run_python(pg_server, str(script), *args)
    tail = f"\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"{script.name} {' '.join(args)} exited {proc.returncode}{tail}"
    for pattern in expected:
        assert re.search(pattern, proc.stdout, re.MULTILINE), f"no line matches {pattern!r}{tail}"


def test_a_missing_baseline_is_reported_and_the_rest_measured(pg_server: PgServer) -> None:
    """queue_throughput.py with pgqueuer and procrastinate not importable (None in sys.modules
    makes an import fail as if the package were absent)."""
    script = BENCH / "queue_throughput.py"
    code = (
        "import runpy, sys\n"
        "sys.modules['pgqueuer'] = sys.modules['procrastinate'] = None\n"
        f"sys.argv = [{str(script)!r}, '--jobs', '100', '--max-seconds', '0.2', "
        "'--workers', '1', '--batches', '1']\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    proc = run_python(pg_server, "-c", code)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for baseline in ("pgqueuer", "procrastinate"):
        assert re.search(rf"^{baseline}: skipped, {baseline} cannot be imported", proc.stdout, re.M)
    assert re.search(r"^ours +each +1 +1 +\d+ ", proc.stdout, re.M), proc.stdout
    assert re.search(r"^bare asyncpg +batch +1 +1 +\d+ ", proc.stdout, re.M), proc.stdout
    assert not re.search(r"^(pgqueuer|procrastinate) +own ", proc.stdout, re.M), proc.stdout


def test_queue_throughput_endpoint_mode_runs_small(pg_server: PgServer) -> None:
    """`--endpoint` (the HTTP endpoint's cost on the runner) is a mode of its own: run it too."""
    proc = run_python(pg_server, str(BENCH / "queue_throughput.py"), "--endpoint", "--jobs", "200")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for expected in (
        # a pass: both rates and their ratio, both CPU costs and theirs, requests served
        r"^ +1 +\d+ +\d+ +\d\.\d{3} +\d+ +\d+ +\d\.\d{3} +[1-9]\d*$",
        r"^with/without WORKER_HTTP_PORT: median of pass ratios \d\.\d{3}",
        r"^worker CPU per job with/without: median of pass ratios \d\.\d{3}",
        r"^recording one job's metrics \(started \+ finished\): [\d.]+ us",
    ):
        assert re.search(expected, proc.stdout, re.MULTILINE), (expected, proc.stdout)
