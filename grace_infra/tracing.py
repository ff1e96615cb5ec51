"""OpenTelemetry traces from the API through the queue to the worker, off unless configured
(``GRACE_TRACING=otlp``, exported over OTLP/HTTP as the standard ``OTEL_EXPORTER_OTLP_*`` variables
say). A submission's request span is the parent of every unit a worker runs for that job: the job
row keeps the W3C ``traceparent`` of the request that created it (the queue carries only unit ids,
and a unit sent again by the reconciler must still find its trace), and the worker continues it.

The provider is this module's, not OpenTelemetry's process-global one (which can be set only once
per process), so a test can install an in-memory exporter and take it away again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()


def install(provider: TracerProvider | None) -> None:
    """Trace to ``provider`` from now on (None: stop tracing)."""
    global _provider
    _provider = provider


def provider() -> TracerProvider | None:
    return _provider


def configure(mode: str) -> None:
    """``mode`` ``otlp``: export spans over OTLP/HTTP, unless a provider is installed already;
    ``off``: nothing (the provider stays as it is)."""
    if mode != "otlp" or _provider is not None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    made = TracerProvider(resource=Resource.create({"service.name": "grace-service"}))
    made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(made)


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``, to store with work that another process continues;
    None when not tracing."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def continued(parent: str | None, name: str, **attributes: Any) -> Iterator[None]:
    """A span named ``name`` for work whose trace began elsewhere (``parent``: a stored
    ``traceparent``; None starts a new trace). Nothing when not tracing."""
    if _provider is None:
        yield
        return
    context = _propagator.extract({"traceparent": parent}) if parent else None
    tracer = _provider.get_tracer("grace")
    with tracer.start_as_current_span(
        name, context=context, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield
