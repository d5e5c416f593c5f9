"""PrometheusMetrics' own counters and histograms against prometheus_client's (the oracle)."""

import random
import uuid
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.ops.prometheus import DURATION_BUCKETS, PrometheusMetrics
from worker.queue.store import Job


def samples(text: str, family: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "outcome"))): s.value
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
        if not s.name.endswith("_created")
    }


def test_duration_histogram_matches_prometheus_clients() -> None:
    rng = random.Random(7)
    # Exact bounds too: a value equal to a bound counts in that bucket (le).
    values = [*DURATION_BUCKETS, *(rng.uniform(0, 400) for _ in range(500)), 0.0, 1e9]
    oracle_registry = CollectorRegistry()
    oracle = Histogram(
        "symbol_onboarding_job_duration_seconds",
        "oracle",
        ["outcome"],
        buckets=DURATION_BUCKETS,
        registry=oracle_registry,
    )
    ours = PrometheusMetrics("w", "v")
    now = datetime.now(UTC)
    job = Job(uuid.uuid4(), "A", "high", 1, None, now, now)
    for value in values:
        oracle.labels("completed").observe(value)
        ours.job_started(job)
        ours.job_finished(job, "completed", value)
    name = "symbol_onboarding_job_duration_seconds"
    expected = samples(generate_latest(oracle_registry).decode(), name)
    got = samples(generate_latest(ours.registry).decode(), name)
    assert got == expected


def test_counters_and_gauges_render_what_was_recorded() -> None:
    m = PrometheusMetrics("w-1", "1.0")
    now = datetime.now(UTC)
    first = Job(uuid.uuid4(), "A", "high", 1, None, now - timedelta(seconds=2), now)
    retry = Job(uuid.uuid4(), "B", "low", 2, None, now - timedelta(hours=1), now)
    m.job_started(first)
    m.job_started(retry)
    m.job_finished(first, "completed", 0.5)
    m.provider_request("yahoo", "200")
    m.provider_request("yahoo", "200")
    m.provider_request("yahoo", "timeout")
    m.rows_written("yahoo", 250)
    m.rows_skipped("yahoo", {"close_price not positive": 2, "close_price missing": 1})
    m.rows_skipped("yahoo", {"close_price not positive": 1})
    m.source_paused("polygon")
    m.rate_limit_deferral("polygon")
    m.database_reconnect("claim")
    text = generate_latest(m.registry).decode()
    for line in (
        'symbol_onboarding_jobs_finished_total{outcome="completed",priority="high"} 1.0',
        "symbol_onboarding_jobs_in_flight 1.0",
        'symbol_onboarding_provider_requests_total{source="yahoo",status="200"} 2.0',
        'symbol_onboarding_provider_requests_total{source="yahoo",status="timeout"} 1.0',
        'symbol_onboarding_price_rows_written_total{source="yahoo"} 250.0',
        'symbol_onboarding_price_rows_skipped_total{reason="close_price not positive",'
        'source="yahoo"} 3.0',
        'symbol_onboarding_price_rows_skipped_total{reason="close_price missing",'
        'source="yahoo"} 1.0',
        'symbol_onboarding_source_pauses_total{source="polygon"} 1.0',
        'symbol_onboarding_rate_limit_deferrals_total{source="polygon"} 1.0',
        'symbol_onboarding_database_reconnects_total{connection="claim"} 1.0',
        # Start latency: first attempts only (2 s); completion: 2 s waited + 0.5 s run.
        "symbol_onboarding_job_start_latency_seconds_count 1.0",
        "symbol_onboarding_job_start_latency_seconds_sum 2.0",
        "symbol_onboarding_job_completion_latency_seconds_sum 2.5",
        "symbol_onboarding_database_up 0.0",  # no scrape-time read yet
    ):
        assert line in text, line
