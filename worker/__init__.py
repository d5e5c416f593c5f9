"""Symbol-onboarding worker: a PostgreSQL job queue that loads daily prices for new symbols."""

from worker.queue import enqueue_symbol, enqueue_symbols

__all__ = ["enqueue_symbol", "enqueue_symbols"]
