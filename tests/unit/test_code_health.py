"""The suite's own rules: warnings fail tests, every test has a time limit, the package type-checks."""

import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import get_args

import pytest

from tests import typecheck
from tests.acceptance.conftest import ROOT
from worker.models.onboarding_queue import PRIORITIES, STATUSES, Priority, Status


def test_a_warning_fails_the_test_that_causes_it() -> None:
    with pytest.raises(UserWarning):
        warnings.warn("any warning is an error in this suite", UserWarning, stacklevel=1)


def test_every_test_has_a_time_limit(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.hasplugin("timeout")
    assert 0 < float(request.config.getini("timeout")) <= 300


def test_status_and_priority_types_list_the_allowed_values() -> None:
    assert (
        STATUSES
        == get_args(Status)
        == (
            "pending",
            "processing",
            "completed",
            "failed",
            "cancelled",
        )
    )
    assert PRIORITIES == get_args(Priority) == ("high", "normal", "low")


@pytest.mark.slow
def test_mypy_strict_passes() -> None:
    """mypy with pyproject.toml's configuration (strict on the whole `worker` package, its
    models and migrations included), as `make lint` runs it: a type error fails the suite."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.typecheck"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_the_import_layers_hold(tmp_path: Path) -> None:
    """import-linter's contracts (pyproject.toml) on the installed layout, as `make lint` runs
    them: an upward import or a cycle between sibling packages fails the suite."""
    typecheck.build_tree(tmp_path / "tree")
    proc = typecheck.lint_imports(tmp_path / "tree")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_an_upward_import_inside_a_function_fails_lint_naming_it(tmp_path: Path) -> None:
    """A probe module in a copy of worker/core that imports a job module inside a function: the
    layers contract sees it and names the import."""
    tree = tmp_path / "tree"
    typecheck.build_tree(tree)
    core = tree / "worker" / "core"
    core.unlink()  # a link to the repository's folder: copy it, so the probe stays in tmp_path
    shutil.copytree(ROOT / "worker" / "core", core, ignore=shutil.ignore_patterns("__pycache__"))
    (core / "probe.py").write_text(
        "def later() -> object:\n    from worker.jobs import onboarding\n\n    return onboarding\n"
    )
    proc = typecheck.lint_imports(tree)
    assert proc.returncode != 0
    assert "worker.core is not allowed to import worker.jobs" in proc.stdout
    assert "worker.core.probe -> worker.jobs.onboarding" in proc.stdout
