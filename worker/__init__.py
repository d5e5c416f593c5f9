"""Symbol-onboarding worker: a PostgreSQL job queue that loads daily prices for new symbols."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.core.errors import DatabaseUnavailable
    from worker.core.symbols import InvalidPriorityError, InvalidSymbolError, UnknownRequesterError
    from worker.queue.store import enqueue_symbol, enqueue_symbols

__all__ = [
    "DatabaseUnavailable",
    "InvalidPriorityError",
    "InvalidSymbolError",
    "UnknownRequesterError",
    "enqueue_symbol",
    "enqueue_symbols",
]

_HOMES = {
    "DatabaseUnavailable": "worker.core.errors",
    "enqueue_symbol": "worker.queue.store",
    "enqueue_symbols": "worker.queue.store",
    "InvalidPriorityError": "worker.core.symbols",
    "InvalidSymbolError": "worker.core.symbols",
    "UnknownRequesterError": "worker.core.symbols",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: `python -m worker` under a Python that lacks
    # the dependencies then reaches worker/__main__.py, which says how to run it instead.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
