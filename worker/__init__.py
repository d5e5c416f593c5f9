"""Symbol-onboarding worker: a PostgreSQL job queue that loads daily prices for new symbols.

The public API is what `__all__` lists, importable from `worker` itself, plus the modules a host
imports by path: `worker.models` (the mapped classes and `Base`), `worker.schema` (the Alembic
filters), `worker.analytics_cache`, `worker.db`, `worker.errors` and `worker.backfill`. Every
other module (the subpackages core, queue, prices, factors, jobs, host, ops, cli) is internal:
its names may move between releases.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.core.db import create_engine, pooler_connect_args, sqlalchemy_url
    from worker.core.errors import ConfigurationError, DatabaseUnavailable, WorkerError
    from worker.core.schema import include_host_object, include_object
    from worker.core.symbols import InvalidPriorityError, InvalidSymbolError, UnknownRequesterError
    from worker.factors.service import lock_references, recompute_factors
    from worker.prices.spelling import host_spellings
    from worker.queue.outcome import Outcome
    from worker.queue.store import enqueue_symbol, enqueue_symbols

# The one home of the version: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailable",
    "InvalidPriorityError",
    "InvalidSymbolError",
    "Outcome",
    "UnknownRequesterError",
    "WorkerError",
    "__version__",
    "create_engine",
    "enqueue_symbol",
    "enqueue_symbols",
    "host_spellings",
    "include_host_object",
    "include_object",
    "lock_references",
    "pooler_connect_args",
    "recompute_factors",
    "sqlalchemy_url",
]

_HOMES = {
    "ConfigurationError": "worker.core.errors",
    "DatabaseUnavailable": "worker.core.errors",
    "WorkerError": "worker.core.errors",
    "create_engine": "worker.core.db",
    "pooler_connect_args": "worker.core.db",
    "sqlalchemy_url": "worker.core.db",
    "include_host_object": "worker.core.schema",
    "include_object": "worker.core.schema",
    "InvalidPriorityError": "worker.core.symbols",
    "InvalidSymbolError": "worker.core.symbols",
    "UnknownRequesterError": "worker.core.symbols",
    "lock_references": "worker.factors.service",
    "recompute_factors": "worker.factors.service",
    "host_spellings": "worker.prices.spelling",
    "Outcome": "worker.queue.outcome",
    "enqueue_symbol": "worker.queue.store",
    "enqueue_symbols": "worker.queue.store",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: `python -m worker` under a Python that lacks
    # the dependencies then reaches worker/__main__.py, which says how to run it instead.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
