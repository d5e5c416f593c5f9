"""Symbol-onboarding worker: a PostgreSQL job queue that loads daily prices for new symbols."""

from worker.queue import enqueue_symbol, enqueue_symbols
from worker.symbols import InvalidPriorityError, InvalidSymbolError, UnknownRequesterError

__all__ = [
    "InvalidPriorityError",
    "InvalidSymbolError",
    "UnknownRequesterError",
    "enqueue_symbol",
    "enqueue_symbols",
]
