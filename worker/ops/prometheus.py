"""The Prometheus adapter of the metrics recorder (worker/core/metrics.py).

`PrometheusMetrics` keeps plain numbers, rendered at scrape time through its own
`CollectorRegistry` (never the global one), and its `QueueCollector` renders the status layer's cheap `QueueDepth` (worker/ops/status.py), read from
the database at scrape time and cached for `DEPTH_CACHE_S`, so the queue gauges and `status`
come from the same query.
"""

import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Mapping
from itertools import accumulate
from typing import Any, Generic, TypeVar

import structlog
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from worker.core.metrics import JobFacts, Metrics, MirrorFacts
from worker.ops.status import QueueDepth, UniverseFacts
from worker.queue.control import ControlFacts

log = structlog.get_logger("worker.metrics")
T = TypeVar("T")

NAMESPACE = "symbol_onboarding"
DEPTH_CACHE_S = 2.0
# The universe gauges scan symbol_universe (two aggregates): read at most this often, whatever
# the number of scrapers.
UNIVERSE_CACHE_S = 2.0
# Seconds: a job takes milliseconds (synthetic, a replay) to minutes (slow provider, retries).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Seconds from enqueue: about a millisecond when a worker is idle, up to hours behind a backlog.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400,
)  # fmt: skip


class PrometheusMetrics(Metrics):
    """Records plain numbers and renders them as Prometheus families at scrape time.

    Recording is on the job path, so it is a dict increment and a bisect, without the locks and
    label lookups of prometheus_client's Counter and Histogram (measured by
    `bench/queue_throughput.py --endpoint`): the worker records from its one event-loop thread,
    and `collect` (also on that thread, from GET /metrics) reads a consistent state."""

    def __init__(
        self,
        worker_id: str,
        version: str,
        *,
        factors_state: Callable[[], tuple[bool, str | None] | None] = lambda: None,
    ) -> None:
        """`factors_state`: whether betas are computed, and why not, once known (None before)."""
        self.factors_state = factors_state
        self.registry = CollectorRegistry(auto_describe=False)
        self.worker_id, self.version = worker_id, version
        self.queue = QueueCollector()
        self.universe = UniverseCollector()
        self.control = ControlCollector()
        self.registry.register(_Families(self))
        self.registry.register(self.queue)
        self.registry.register(self.universe)
        self.registry.register(self.control)
        ProcessCollector(registry=self.registry)
        self.in_flight = 0
        self.finished: dict[tuple[str, str], int] = {}  # (outcome, priority)
        self.duration: dict[tuple[str], _Histogram] = {}  # (outcome,)
        self.start_latency = _Histogram(LATENCY_BUCKETS)
        self.completion_latency = _Histogram(LATENCY_BUCKETS)
        self.rows: dict[tuple[str], int] = {}
        self.skipped: dict[tuple[str, str], int] = {}  # (source, reason)
        self.requests: dict[tuple[str, str], int] = {}
        self.pauses: dict[tuple[str], int] = {}
        self.deferrals: dict[tuple[str], int] = {}
        self.reconnects: dict[tuple[str], int] = {}
        self.host_rows: dict[tuple[str], int] = {}  # (source,)
        self.host_refused: dict[tuple[str], int] = {}  # (reason,)

    def job_started(self, job: JobFacts) -> None:
        self.in_flight += 1
        if job.attempts == 1:
            self.start_latency.observe(_seconds(job))

    def job_finished(self, job: JobFacts, outcome: str, duration_s: float) -> None:
        self.in_flight -= 1
        key = (outcome, job.priority)
        self.finished[key] = self.finished.get(key, 0) + 1
        histogram = self.duration.get((outcome,))
        if histogram is None:
            histogram = self.duration[(outcome,)] = _Histogram(DURATION_BUCKETS)
        histogram.observe(duration_s)
        if outcome == "completed":
            # Both ends on one clock: the claim's started_at (database) plus the run's duration.
            self.completion_latency.observe(_seconds(job) + duration_s)

    def rows_written(self, source: str, rows: int) -> None:
        _add(self.rows, (source,), rows)

    def rows_skipped(self, source: str, reasons: Mapping[str, int]) -> None:
        for reason, rows in reasons.items():
            _add(self.skipped, (source, reason), rows)

    def provider_request(self, source: str, status: str) -> None:
        _add(self.requests, (source, status))

    def source_paused(self, source: str) -> None:
        _add(self.pauses, (source,))

    def rate_limit_deferral(self, source: str) -> None:
        _add(self.deferrals, (source,))

    def database_reconnect(self, connection: str) -> None:
        _add(self.reconnects, (connection,))

    def host_prices_mirrored(self, source: str, mirrored: MirrorFacts) -> None:
        _add(self.host_rows, (source,), mirrored.rows_written)
        for reason, rows in (
            ("host_row_kept", mirrored.host_rows_kept),
            ("host_disagrees", mirrored.host_disagrees),
            ("volume_stored_null", mirrored.volume_too_large),
            ("price_out_of_range", mirrored.out_of_range),
        ):
            if rows:
                _add(self.host_refused, (reason,), rows)


def _add(series: dict[Any, int], key: Any, amount: int = 1) -> None:
    series[key] = series.get(key, 0) + amount


def _seconds(job: JobFacts) -> float:
    return max((job.started_at - job.created_at).total_seconds(), 0.0)


class _Histogram:
    """Counts per bucket (not yet cumulative) and the sum."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value (le)
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = list(accumulate(self.counts))
        bounds = [*(_go_float(b) for b in self.bounds), "+Inf"]
        return [(bound, float(count)) for bound, count in zip(bounds, cumulative, strict=True)]


def _go_float(value: float) -> str:
    """A bucket bound as Prometheus writes it: 1.0, 0.005, 2.5."""
    return repr(float(value))


class _Families(Collector):
    """Renders a PrometheusMetrics' numbers as metric families."""

    def __init__(self, m: PrometheusMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m, ns = self.m, NAMESPACE
        info = GaugeMetricFamily(
            f"{ns}_worker_info", "This worker process", labels=["worker_id", "version"]
        )
        info.add_metric([m.worker_id, m.version], 1)
        yield info
        yield _counter(
            f"{ns}_jobs_finished",
            "Jobs whose run ended, by outcome",
            ["outcome", "priority"],
            m.finished,
        )
        duration = HistogramMetricFamily(
            f"{ns}_job_duration_seconds", "Run time of a job, claim to outcome", labels=["outcome"]
        )
        for key, histogram in m.duration.items():
            duration.add_metric(list(key), histogram.buckets(), histogram.sum)
        yield duration
        for name, doc, histogram in (
            (
                "job_start_latency_seconds",
                "Enqueue to the first start of a job (first attempt), database clock",
                m.start_latency,
            ),
            (
                "job_completion_latency_seconds",
                "Enqueue to completion of a completed job",
                m.completion_latency,
            ),
        ):
            family = HistogramMetricFamily(f"{ns}_{name}", doc)
            family.add_metric([], histogram.buckets(), histogram.sum)
            yield family
        in_flight = GaugeMetricFamily(f"{ns}_jobs_in_flight", "Jobs this process is running")
        in_flight.add_metric([], m.in_flight)
        yield in_flight
        yield _counter(
            f"{ns}_price_rows_written", "Price rows inserted or changed", ["source"], m.rows
        )
        yield _counter(
            f"{ns}_price_rows_skipped",
            "Fetched price rows refused by validation (or without a usable close), by reason",
            ["source", "reason"],
            m.skipped,
        )
        yield _counter(
            f"{ns}_provider_requests",
            "HTTP requests to price providers, by status code",
            ["source", "status"],
            m.requests,
        )
        yield _counter(
            f"{ns}_source_pauses", "Source pauses recorded by this process", ["source"], m.pauses
        )
        yield _counter(
            f"{ns}_rate_limit_deferrals",
            "Jobs deferred for want of a request slot",
            ["source"],
            m.deferrals,
        )
        yield _counter(
            f"{ns}_database_reconnects",
            "Database connections re-established after a loss",
            ["connection"],
            m.reconnects,
        )
        yield _counter(
            f"{ns}_host_price_rows_written",
            "Rows inserted or changed in the host's market_data_cache",
            ["source"],
            m.host_rows,
        )
        yield _counter(
            f"{ns}_host_price_rows_refused",
            "Bars the host's market_data_cache did not take as they are, by reason "
            "(the host's own row kept, it disagrees, volume stored NULL, price out of range)",
            ["reason"],
            m.host_refused,
        )
        state = m.factors_state()
        if state is not None:
            available, reason = state
            gauge = GaugeMetricFamily(
                f"{ns}_factors_available",
                "1 when this worker computes factor betas; 0 with the reason why not",
                labels=["reason"],
            )
            off = "" if available else "FACTORS_ENABLED=off"
            gauge.add_metric([reason or off], 1 if available else 0)
            yield gauge


def _counter(name: str, doc: str, labels: list[str], series: dict[Any, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in series.items():
        family.add_metric(list(key), value)
    return family


class _ScrapeRead(Generic[T]):
    """A database read behind scrape-time gauges: done again only when the last one is older
    than `max_age_s`, whatever the number of scrapers; `value` is None while it fails."""

    def __init__(self, name: str, max_age_s: float) -> None:
        self.name, self.max_age_s = name, max_age_s
        self.value: T | None = None
        self._fetched = float("-inf")

    async def refresh(self, read: Callable[[], Awaitable[T]]) -> None:
        if time.monotonic() - self._fetched < self.max_age_s:
            return
        self._fetched = time.monotonic()
        try:
            self.value = await read()
        except Exception as exc:  # a scrape must still answer: its gauges are absent instead
            log.warning(f"metrics_{self.name}_read_failed", error=f"{type(exc).__name__}: {exc}")
            self.value = None


class QueueCollector(_ScrapeRead[QueueDepth], Collector):
    """The queue gauges, from the status layer's QueueDepth, read at most every DEPTH_CACHE_S."""

    def __init__(self) -> None:
        super().__init__("queue", DEPTH_CACHE_S)

    @property
    def up(self) -> bool:
        """The last read succeeded."""
        return self.value is not None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            f"{NAMESPACE}_database_up", "1 if the last queue read at scrape time succeeded"
        )
        up.add_metric([], 1.0 if self.up else 0.0)
        yield up
        depth = self.value
        if depth is None:
            return
        jobs = GaugeMetricFamily(
            f"{NAMESPACE}_queue_jobs",
            "Jobs in the queue table by status and priority",
            labels=["status", "priority"],
        )
        for status, by_priority in depth.counts.items():
            for priority, count in by_priority.items():
                jobs.add_metric([status, priority], count)
        yield jobs
        oldest = GaugeMetricFamily(
            f"{NAMESPACE}_queue_oldest_pending_age_seconds",
            "Age of the oldest pending job since its enqueue (0: none pending)",
        )
        oldest.add_metric([], depth.oldest_pending_age_s or 0.0)
        yield oldest


class UniverseCollector(_ScrapeRead[UniverseFacts], Collector):
    """The universe gauges (freshness, betas), from the status layer's UniverseFacts, read at
    most every UNIVERSE_CACHE_S; absent while the last read failed."""

    GAUGES = (
        ("symbols_current", "Active symbols with a price for the last completed session"),
        ("symbols_behind", "Active symbols without a price for the last completed session"),
        ("symbols_without_prices", "Active or pending symbols with no price at all"),
        ("symbols_delisted", "Delisted symbols"),
        ("refresh_jobs_live", "Refresh jobs pending or processing"),
        ("symbols_with_betas", "Active symbols with factor betas (last_factor_date set)"),
        ("symbols_without_betas", "Active symbols without factor betas"),
        ("symbols_waiting_for_references", "Symbols whose betas wait for reference ETF prices"),
    )

    def __init__(self) -> None:
        super().__init__("universe", UNIVERSE_CACHE_S)

    def collect(self) -> Iterator[Metric]:
        if self.value is None:
            return
        r, f = self.value.refresh, self.value.factors
        values = {
            "symbols_current": r.current,
            "symbols_behind": r.behind,
            "symbols_without_prices": r.without_prices,
            "symbols_delisted": r.delisted,
            "refresh_jobs_live": r.refresh_jobs_live,
            "symbols_with_betas": f.with_betas,
            "symbols_without_betas": f.without_betas,
            "symbols_waiting_for_references": f.waiting_for_references,
        }
        for name, doc in self.GAUGES:
            gauge = GaugeMetricFamily(f"{NAMESPACE}_{name}", doc)
            gauge.add_metric([], values[name])
            yield gauge


class ControlCollector(_ScrapeRead[ControlFacts], Collector):
    """The operator's pauses (worker/control.py) as gauges, read at most every DEPTH_CACHE_S:
    the queue's, and each source's (the worker's own automatic pauses included); absent while
    the last read failed."""

    def __init__(self) -> None:
        super().__init__("control", DEPTH_CACHE_S)

    def collect(self) -> Iterator[Metric]:
        if self.value is None:
            return
        queue = GaugeMetricFamily(
            f"{NAMESPACE}_queue_paused", "1 while the queue is paused (no worker claims)"
        )
        queue.add_metric([], 1.0 if self.value.queue_pause is not None else 0.0)
        yield queue
        paused = GaugeMetricFamily(
            f"{NAMESPACE}_source_paused",
            "1 while a price source is paused (by an operator or automatically)",
            labels=["source"],
        )
        remaining = GaugeMetricFamily(
            f"{NAMESPACE}_source_pause_remaining_seconds",
            "Seconds until a source's pause ends by itself (0: not paused; +Inf: until resumed)",
            labels=["source"],
        )
        for s in self.value.sources:
            paused.add_metric([s.source], 1.0 if s.paused else 0.0)
            left = float("inf") if s.paused and s.until_resumed else s.remaining_s
            remaining.add_metric([s.source], left if s.paused else 0.0)
        yield paused
        yield remaining
