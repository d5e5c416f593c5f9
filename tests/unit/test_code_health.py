"""The suite's own rules: warnings fail tests, every test has a time limit, the package type-checks."""

import subprocess
import sys
import warnings
from typing import get_args

import pytest

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
