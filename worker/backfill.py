"""The import path hosts already use for the legacy-table backfill; it lives in worker.host.backfill."""

from worker.host.backfill import (
    DEFAULT_BATCH_SIZE,
    BackfillError,
    BackfillProgress,
    BackfillSummary,
    backfill,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "BackfillError",
    "BackfillProgress",
    "BackfillSummary",
    "backfill",
]
