"""OpenTelemetry traces, with the optional extra `otel` (`pip install 'symbol-onboarding-worker[otel]'`).

Each job is a span (`symbol_onboarding.job`: symbol, kind, attempt, job id, then outcome, source
and rows) with child spans for the fetch, the write and the factor step. Turned on by the standard
OpenTelemetry variables: `OTEL_TRACES_EXPORTER` (`otlp`, `console`; `none` turns it off) or an
`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; the exporter, the service
name (`OTEL_SERVICE_NAME`, default `symbol-onboarding-worker`) and the resource attributes are read
by the SDK itself. Without those variables, or without the extra, nothing is imported and every
span below is a no-op `nullcontext`: the job path pays one dictionary lookup.

The spans are OpenTelemetry's current span (a contextvar), so the child spans nest under their
job across awaits without being passed around.
"""

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import structlog

log = structlog.get_logger("worker.tracing")

SERVICE_NAME = "symbol-onboarding-worker"
TRACER_NAME = "worker"
JOB_SPAN = "symbol_onboarding.job"
FETCH_SPAN = "symbol_onboarding.fetch"
WRITE_SPAN = "symbol_onboarding.write"
FACTORS_SPAN = "symbol_onboarding.factors"
ENABLING = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)

Attributes = Mapping[str, str | int | float | bool | None]


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Install a tracer provider from the OTEL_* variables; False (and nothing imported) when
    none asks for traces. A missing extra is said once, not an error: the worker runs untraced."""
    env = os.environ if environ is None else environ
    wanted = [name for name in ENABLING if env.get(name)]
    if not wanted or env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as exc:
        log.warning(
            "tracing_unavailable",
            reason=f"the otel extra is not installed ({exc})",
            variables=wanted,
            hint="pip install 'symbol-onboarding-worker[otel]'",
        )
        return False
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter_name == "console":
        exporter: Any = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            log.warning("tracing_unavailable", reason=f"no OTLP exporter ({exc})")
            return False
        exporter = OTLPSpanExporter()
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing_on", exporter=exporter_name)
    return True


def _trace() -> Any:
    """OpenTelemetry's trace module when something in this process imported it (configure, or
    a host application that traces), else None: nothing is imported here."""
    return sys.modules.get("opentelemetry.trace")


@contextlib.contextmanager
def span(name: str, attributes: Attributes | None = None) -> Iterator[Any]:
    """A span named `name`, the current one's child; a no-op (yields None) without OTel."""
    trace = _trace()
    if trace is None:
        yield None
        return
    tracer = trace.get_tracer(TRACER_NAME)
    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    with tracer.start_as_current_span(name, attributes=clean) as current:
        yield current


def annotate(current: Any, attributes: Attributes) -> None:
    """Set attributes on a span `span` yielded (None: tracing is off)."""
    if current is None:
        return
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key, value)
