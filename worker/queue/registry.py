"""The live-worker registry: each worker process announces itself every heartbeat interval, so
any process can list the live workers and tell a dead one (its heartbeat is older than the stall
timeout). Rows of long-dead workers are deleted by housekeeping (`forget_dead`)."""

import importlib.metadata
import os
import socket
from dataclasses import dataclass

from worker.core.db import rows_affected
from worker.core.errors import translates_database_errors
from worker.queue.store import Executor
from worker.sql import workers as sql


def package_version(missing: str = "unknown") -> str:
    """The installed package's version; `missing` when run from a checkout without installing."""
    try:
        return importlib.metadata.version("symbol-onboarding-worker")
    except importlib.metadata.PackageNotFoundError:
        return missing


@dataclass(frozen=True)
class WorkerInfo:
    """What does not change while a worker process runs."""

    worker_id: str
    concurrency: int
    host: str
    pid: int
    version: str
    http_url: str | None = None

    @classmethod
    def this_process(
        cls, worker_id: str, concurrency: int, http_url: str | None = None
    ) -> "WorkerInfo":
        return cls(
            worker_id=worker_id,
            concurrency=concurrency,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=package_version(),
            http_url=http_url,
        )


@translates_database_errors
async def announce(
    db: Executor, info: WorkerInfo, *, in_flight: int, tick_age_s: float, stopping: bool
) -> None:
    """Register this worker, or refresh its row (heartbeat, jobs in flight, claim-loop tick)."""
    await db.execute(
        sql.ANNOUNCE_WORKER,
        info.worker_id,
        info.host,
        info.pid,
        info.version,
        info.concurrency,
        in_flight,
        stopping,
        max(tick_age_s, 0.0),
        info.http_url,
    )


@translates_database_errors
async def deregister(db: Executor, worker_id: str) -> None:
    """A clean stop: remove this worker's row."""
    await db.execute(sql.DEREGISTER_WORKER, worker_id)


@translates_database_errors
async def forget_dead(db: Executor, older_than_s: float) -> int:
    """Delete the rows of workers silent for more than `older_than_s`; returns how many."""
    tag = await db.execute(sql.FORGET_DEAD_WORKERS, older_than_s)
    return rows_affected(tag)
