"""The project as a host installs it: a wheel built from the repo, installed (not editable) into a
clean virtualenv, runs from outside the checkout.

Building and installing stay offline and fast: the wheel is built with the test environment's own
setuptools (no build isolation), pip installs only that wheel (`--no-deps --no-index`), and the
new virtualenv borrows the test environment's installed dependencies through a path file. A path
file adds the folder to sys.path without running the `.pth` files in it, so the checkout's
editable install stays invisible there: `worker` can only come from the wheel.
"""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import asyncpg
import pytest

from worker.core.db import asyncpg_dsn

ROOT = Path(__file__).resolve().parents[2]
COPY_IGNORE = (
    ".git",
    ".venv",
    ".data",
    ".hypothesis",
    ".mypy-tree",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
)
pytestmark = pytest.mark.slow


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=180, **kwargs)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # A copy of the checkout: setuptools builds in the source folder (build/, *.egg-info), and a
    # stale build/ there could carry deleted modules into the wheel.
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    built_by = _run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--no-index", "--wheel-dir", str(out), str(source)),
        ],
        cwd=out,
    )
    (out / "build.log").write_text(built_by.stdout + built_by.stderr)
    (built,) = out.glob("symbol_onboarding_worker-*.whl")
    return built


def test_the_build_warns_about_nothing_and_keeps_the_mit_license(wheel: Path) -> None:
    # Issue 22.6: the table form of `project.license` printed a deprecation warning per build step.
    log = (wheel.parent / "build.log").read_text()
    assert "project.license" not in log and "deprecated" not in log, log
    (metadata,) = [
        n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA")
    ]
    headers = zipfile.ZipFile(wheel).read(metadata).decode().split("\n\n")[0].splitlines()
    assert "License-Expression: MIT" in headers


@pytest.fixture(scope="module")
def venv_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    ).stdout.strip()
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()}
    Path(purelib, "test-deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"),
            *("--no-deps", "--no-index", str(wheel)),
        ]
    )
    return python


def test_wheel_holds_one_package_with_its_migrations(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"worker"}
    for shipped in (
        "worker/migrations/env.py",
        "worker/migrations/script.py.mako",
        "worker/migrations/versions/0001_baseline.py",
        "worker/models/__init__.py",
        "worker/sql/queue.py",
    ):
        assert shipped in names


async def test_installed_wheel_migrates_checks_health_and_runs(
    venv_python: Path, empty_database_url: str, tmp_path: Path
) -> None:
    # Blocking subprocess calls are fine here: nothing else runs on this test's event loop.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": empty_database_url,
        "LOG_FORMAT": "json",
        "PRICE_SOURCE": "synthetic",
        "WORKER_POLL_INTERVAL_S": "0.2",
    }

    def worker(*args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(venv_python), "-m", "worker", *args], cwd=tmp_path, env=env)

    where = _run(
        [str(venv_python), "-c", "import worker, sys; print(worker.__file__)"],
        cwd=tmp_path,
        env=env,
    ).stdout.strip()
    assert where.startswith(str(venv_python.parent.parent)), where
    for generic in ("models", "migrations"):
        probe = subprocess.run(  # noqa: ASYNC221
            [str(venv_python), "-c", f"import {generic}"], cwd=tmp_path, env=env, timeout=60
        )
        assert probe.returncode != 0, f"a top-level `{generic}` package is importable"

    assert "schema at" in worker("migrate").stdout
    assert "reachable" in worker("health").stdout
    enqueue = (
        "import asyncio, os\n"
        "from sqlalchemy.ext.asyncio import create_async_engine\n"
        "from worker import enqueue_symbol\n"
        "async def main():\n"
        "    url = os.environ['DATABASE_URL'].replace('postgresql://', 'postgresql+asyncpg://', 1)\n"
        "    engine = create_async_engine(url)\n"
        "    async with engine.begin() as db:\n"
        "        print(await enqueue_symbol(db, 'pkg.a'))\n"
        "    await engine.dispose()\n"
        "asyncio.run(main())\n"
    )
    _run([str(venv_python), "-c", enqueue], cwd=tmp_path, env=env)
    worker("run", "--burst")

    conn = await asyncpg.connect(asyncpg_dsn(empty_database_url))
    try:
        job = await conn.fetchrow("SELECT symbol, status FROM symbol_onboarding_queue")
        prices = await conn.fetchval("SELECT count(*) FROM symbol_prices_daily")
    finally:
        await conn.close()
    assert tuple(job) == ("PKG.A", "completed") and prices > 0
