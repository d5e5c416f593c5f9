"""The metrics recorder interface: what the worker counts, recorded through one object.

The runner, the jobs, the HTTP sources and the source gate call the recorders of a `Metrics`.
This base records nothing: a worker without `WORKER_HTTP_PORT` pays nothing for metrics. The
Prometheus adapter (worker/ops/prometheus.py) keeps the numbers. The arguments are described by
protocols, so every layer can record without importing the layers that define jobs and mirrors.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol


class JobFacts(Protocol):
    """What a recorder reads of a claimed job (worker.queue.store.Job)."""

    @property
    def priority(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime: ...


class MirrorFacts(Protocol):
    """What a recorder reads of one job's mirror into market_data_cache (worker.host.tables)."""

    @property
    def rows_written(self) -> int: ...
    @property
    def host_rows_kept(self) -> int: ...
    @property
    def host_disagrees(self) -> int: ...
    @property
    def volume_too_large(self) -> int: ...
    @property
    def out_of_range(self) -> int: ...


class Metrics:
    """The recorders; this base records nothing (the HTTP endpoint is off)."""

    def job_started(self, job: JobFacts) -> None:
        """A job was claimed and starts now."""

    def job_finished(self, job: JobFacts, outcome: str, duration_s: float) -> None:
        """A job's run ended with `outcome` (see Runner._execute) after `duration_s`."""

    def rows_written(self, source: str, rows: int) -> None:
        """Price rows inserted or changed by one job."""

    def rows_skipped(self, source: str, reasons: Mapping[str, int]) -> None:
        """Rows of one fetch that validation refused or could not use, by reason."""

    def provider_request(self, source: str, status: str) -> None:
        """One HTTP request to a price provider: its status code, or timeout / error."""

    def source_paused(self, source: str) -> None:
        """This process paused a source (rate limit, block, circuit breaker)."""

    def rate_limit_deferral(self, source: str) -> None:
        """A job was deferred for want of a request slot of `source`."""

    def database_reconnect(self, connection: str) -> None:
        """A lost database connection (claim, listen) was established again."""

    def host_prices_mirrored(self, source: str, mirrored: MirrorFacts) -> None:
        """One job's bars went into the host's market_data_cache (worker/host/tables.py)."""
