"""The import path hosts already use for the error root and the outage decision; it lives in worker.core.errors."""

from worker.core.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    JobLost,
    LockWaitTimeout,
    WorkerError,
    describe,
    is_outage,
)

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailable",
    "JobLost",
    "LockWaitTimeout",
    "WorkerError",
    "describe",
    "is_outage",
]
