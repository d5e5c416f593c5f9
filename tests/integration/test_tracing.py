"""OpenTelemetry traces (worker/core/tracing.py): with the SDK, each job is a span with child
spans for the fetch, the write and the factor step, checked with the SDK's in-memory exporter;
without OTEL_* variables nothing of OpenTelemetry is imported."""

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from worker.core.db import asyncpg_dsn
from worker.core.settings import Settings
from worker.core.tracing import JOB_SPAN
from worker.factors.store import FactorStore
from worker.factors.switch import FactorSwitch
from worker.jobs.onboarding import open_onboarder
from worker.queue.runner import Runner
from worker.queue.store import Queue

ROOT = Path(__file__).resolve().parents[2]

sdk = pytest.importorskip(
    "opentelemetry.sdk.trace", reason="the otel extra (opentelemetry-sdk) is not installed"
)


@pytest.fixture(scope="module")
def exporter():  # type: ignore[no-untyped-def]
    """The process's tracer provider, with an in-memory exporter (set once: OpenTelemetry's
    global provider cannot be replaced)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return memory


async def test_a_job_is_a_span_with_fetch_write_and_factor_children(
    exporter, database_pool: asyncpg.Pool, database_url: str
) -> None:
    exporter.clear()
    settings = Settings(concurrency=1, poll_interval_s=0.2, price_source="synthetic")
    queue = Queue("tracing")
    store = await FactorStore.detect(database_pool)
    await database_pool.execute("SELECT enqueue_symbol_onboarding('TRACE')")
    async with open_onboarder(
        settings, queue, database_pool, factor_store=FactorSwitch.on(store)
    ) as onboarder:
        runner = Runner(
            settings,
            database_pool,
            queue,
            onboarder,
            claim_dsn=asyncpg_dsn(database_url),
            burst=True,
        )
        await runner.run()
    spans = exporter.get_finished_spans()
    # TRACE's job, and the eight reference ETFs' its factor step enqueued (burst runs them too).
    jobs = {s.attributes["symbol"]: s for s in spans if s.name == JOB_SPAN}
    assert len(jobs) == 9
    job = jobs["TRACE"]
    assert job.attributes["symbol"] == "TRACE"
    assert job.attributes["kind"] == "onboarding"
    assert job.attributes["attempt"] == 1
    assert job.attributes["outcome"] == "completed"
    assert job.attributes["source"] == "synthetic"
    assert job.attributes["rows"] > 200
    children = {s.name: s for s in spans if s.parent and s.parent.span_id == job.context.span_id}
    assert set(children) == {
        "symbol_onboarding.fetch",
        "symbol_onboarding.write",
    }
    assert children["symbol_onboarding.fetch"].attributes["source"] == "synthetic"
    write = children["symbol_onboarding.write"]
    assert write.attributes["rows"] == job.attributes["rows"]
    [factor] = [
        s
        for s in spans
        if s.name == "symbol_onboarding.factors"
        and s.parent is not None
        and s.parent.span_id == write.context.span_id
    ]
    assert factor.attributes["symbol"] == "TRACE"
    assert {s.context.trace_id for s in (*children.values(), factor)} == {job.context.trace_id}
    assert all(s.attributes["outcome"] == "completed" for s in jobs.values())


def test_without_otel_variables_nothing_of_opentelemetry_is_imported() -> None:
    """The worker's modules, a configure() with no OTEL_* variable and a span: no import."""
    code = (
        "import sys\n"
        "from worker.core import tracing\n"
        "import worker.jobs.onboarding, worker.jobs.refresh, worker.queue.runner\n"
        "assert not tracing.configure({})\n"
        "with tracing.span('x', {'a': 1}) as s: assert s is None\n"
        "found = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not found, found\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_configure_installs_a_provider_only_when_asked() -> None:
    from worker.core import tracing

    assert not tracing.configure({"OTEL_SERVICE_NAME": "x"})  # a name alone asks for nothing
    assert not tracing.configure({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.configure({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"})
