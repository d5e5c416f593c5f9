"""What the worker counts, and the Prometheus registry behind it.

The runner, the onboarding job, the HTTP sources and the source gate call the recorders of a
`Metrics`. The base class records nothing: a worker without `WORKER_HTTP_PORT` pays nothing for
metrics. `PrometheusMetrics` records into its own `CollectorRegistry` (never the global one), and
its `QueueCollector` renders the status layer's cheap `QueueDepth` (worker/status.py), read from
the database at scrape time and cached for `DEPTH_CACHE_S`, so the queue gauges and `status`
come from the same query.
"""

import time
from collections.abc import Awaitable, Callable, Iterator

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.queue import Job
from worker.status import QueueDepth

log = structlog.get_logger("worker.metrics")

NAMESPACE = "symbol_onboarding"
DEPTH_CACHE_S = 2.0
# Seconds: a job takes milliseconds (synthetic, a replay) to minutes (slow provider, retries).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Seconds from enqueue: about a millisecond when a worker is idle, up to hours behind a backlog.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400,
)  # fmt: skip


class Metrics:
    """The recorders; this base records nothing (the HTTP endpoint is off)."""

    def job_started(self, job: Job) -> None:
        """A job was claimed and starts now."""

    def job_finished(self, job: Job, outcome: str, duration_s: float) -> None:
        """A job's run ended with `outcome` (see Runner._execute) after `duration_s`."""

    def rows_written(self, source: str, rows: int) -> None:
        """Price rows inserted or changed by one job."""

    def provider_request(self, source: str, status: str) -> None:
        """One HTTP request to a price provider: its status code, or timeout / error."""

    def source_paused(self, source: str) -> None:
        """This process paused a source (rate limit, block, circuit breaker)."""

    def rate_limit_deferral(self, source: str) -> None:
        """A job was deferred for want of a request slot of `source`."""

    def database_reconnect(self, connection: str) -> None:
        """A lost database connection (claim, listen) was established again."""


class PrometheusMetrics(Metrics):
    """Records into its own registry, rendered by GET /metrics."""

    def __init__(self, worker_id: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, NAMESPACE
        self.queue = QueueCollector()
        r.register(self.queue)
        ProcessCollector(registry=r)
        info = Gauge(
            f"{ns}_worker_info", "This worker process", ["worker_id", "version"], registry=r
        )
        info.labels(worker_id, version).set(1)
        self._finished = Counter(
            f"{ns}_jobs_finished", "Jobs whose run ended, by outcome", ["outcome", "priority"],
            registry=r,
        )  # fmt: skip
        self._duration = Histogram(
            f"{ns}_job_duration_seconds", "Run time of a job, claim to outcome", ["outcome"],
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self._start_latency = Histogram(
            f"{ns}_job_start_latency_seconds",
            "Enqueue to the first start of a job (first attempt), database clock",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._completion_latency = Histogram(
            f"{ns}_job_completion_latency_seconds",
            "Enqueue to completion of a completed job",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._in_flight = Gauge(f"{ns}_jobs_in_flight", "Jobs this process is running", registry=r)
        self._rows = Counter(
            f"{ns}_price_rows_written", "Price rows inserted or changed", ["source"], registry=r
        )
        self._requests = Counter(
            f"{ns}_provider_requests", "HTTP requests to price providers, by status code",
            ["source", "status"], registry=r,
        )  # fmt: skip
        self._pauses = Counter(
            f"{ns}_source_pauses", "Source pauses recorded by this process", ["source"], registry=r
        )
        self._deferrals = Counter(
            f"{ns}_rate_limit_deferrals", "Jobs deferred for want of a request slot", ["source"],
            registry=r,
        )  # fmt: skip
        self._reconnects = Counter(
            f"{ns}_database_reconnects", "Database connections re-established after a loss",
            ["connection"], registry=r,
        )  # fmt: skip

    def job_started(self, job: Job) -> None:
        self._in_flight.inc()
        if job.attempts == 1:
            self._start_latency.observe(_seconds(job))

    def job_finished(self, job: Job, outcome: str, duration_s: float) -> None:
        self._in_flight.dec()
        self._finished.labels(outcome, job.priority).inc()
        self._duration.labels(outcome).observe(duration_s)
        if outcome == "completed":
            # Both ends on one clock: the claim's started_at (database) plus the run's duration.
            self._completion_latency.observe(_seconds(job) + duration_s)

    def rows_written(self, source: str, rows: int) -> None:
        self._rows.labels(source).inc(rows)

    def provider_request(self, source: str, status: str) -> None:
        self._requests.labels(source, status).inc()

    def source_paused(self, source: str) -> None:
        self._pauses.labels(source).inc()

    def rate_limit_deferral(self, source: str) -> None:
        self._deferrals.labels(source).inc()

    def database_reconnect(self, connection: str) -> None:
        self._reconnects.labels(connection).inc()


def _seconds(job: Job) -> float:
    return max((job.started_at - job.created_at).total_seconds(), 0.0)


class QueueCollector(Collector):
    """The queue gauges, from the status layer's QueueDepth; `refresh` reads it (cached)."""

    def __init__(self) -> None:
        self.depth: QueueDepth | None = None
        self._fetched = float("-inf")
        self.up = False

    async def refresh(self, read: Callable[[], Awaitable[QueueDepth]]) -> None:
        """Read the depth again unless the last read is younger than DEPTH_CACHE_S."""
        if time.monotonic() - self._fetched < DEPTH_CACHE_S:
            return
        self._fetched = time.monotonic()
        try:
            self.depth = await read()
            self.up = True
        except Exception as exc:  # a scrape must still answer: database_up says what failed
            log.warning("metrics_queue_read_failed", error=f"{type(exc).__name__}: {exc}")
            self.depth, self.up = None, False

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            f"{NAMESPACE}_database_up", "1 if the last queue read at scrape time succeeded"
        )
        up.add_metric([], 1.0 if self.up else 0.0)
        yield up
        if self.depth is None:
            return
        jobs = GaugeMetricFamily(
            f"{NAMESPACE}_queue_jobs",
            "Jobs in the queue table by status and priority",
            labels=["status", "priority"],
        )
        for status, by_priority in self.depth.counts.items():
            for priority, count in by_priority.items():
                jobs.add_metric([status, priority], count)
        yield jobs
        oldest = GaugeMetricFamily(
            f"{NAMESPACE}_queue_oldest_pending_age_seconds",
            "Age of the oldest pending job since its enqueue (0: none pending)",
        )
        oldest.add_metric([], self.depth.oldest_pending_age_s or 0.0)
        yield oldest
