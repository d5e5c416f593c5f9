"""The public API: `worker.__all__`, `worker.__version__` and the module paths hosts import."""

import importlib
import tomllib
from pathlib import Path

import worker

ROOT = Path(__file__).resolve().parents[2]


def test_every_name_in_all_resolves() -> None:
    for name in worker.__all__:
        assert getattr(worker, name) is not None, name


def test_the_version_is_the_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "worker.__version__"}
    assert worker.__version__.count(".") == 2


def test_the_old_host_paths_re_export_the_new_homes() -> None:
    for old, new in [
        ("worker.errors", "worker.core.errors"),
        ("worker.db", "worker.core.db"),
        ("worker.schema", "worker.core.schema"),
        ("worker.analytics_cache", "worker.host.analytics_cache"),
        ("worker.backfill", "worker.host.backfill"),
    ]:
        shim, home = importlib.import_module(old), importlib.import_module(new)
        assert shim.__all__, old
        for name in shim.__all__:
            assert getattr(shim, name) is getattr(home, name), f"{old}.{name}"


def test_the_documented_imports_work() -> None:
    from worker.core.schema import include_host_object
    from worker.models import Base

    assert Base.metadata.tables and callable(include_host_object)
    assert worker.enqueue_symbol is importlib.import_module("worker.queue.store").enqueue_symbol
