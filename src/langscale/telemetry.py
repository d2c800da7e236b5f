"""OpenTelemetry tracing for both services, configured by the standard ``OTEL_*`` variables.

Tracing is on when an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``OTEL_TRACES_EXPORTER=console`` (spans printed
on standard output, for trying it out), unless ``OTEL_SDK_DISABLED`` is true or
``OTEL_TRACES_EXPORTER`` is ``none``. Off, nothing is installed: the API's no-op tracer
answers every call, and W3C context propagation injects nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    Decision,
    Sampler,
    SamplingResult,
    _get_from_env_or_default,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

logger = logging.getLogger(__name__)

# Instrumentation scope of langscale's own spans.
TRACER_NAME = "langscale"


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def tracing_configured() -> bool:
    """Whether the environment asks for traces to be exported."""
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return False
    exporter = _env("OTEL_TRACES_EXPORTER").lower()
    if exporter == "none":
        return False
    if exporter == "console":
        return True
    return bool(_env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def tracing_active(provider: trace.TracerProvider | None = None) -> bool:
    """Whether spans are recorded: an SDK tracer provider is installed (or given)."""
    return isinstance(provider or trace.get_tracer_provider(), TracerProvider)


class DropRootClientSpans(Sampler):
    """Client calls outside any request or run (the worker's queue polling, lease
    renewals, heartbeats: Redis commands) would each make a trace of one span: drop such
    roots. Everything else goes to the sampler ``OTEL_TRACES_SAMPLER`` names."""

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"DropRootClientSpans{{{self._delegate.get_description()}}}"


def _exporter() -> SpanExporter:
    if _env("OTEL_TRACES_EXPORTER").lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = (
        _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).lower()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol != "http/protobuf":
        logger.warning("OTLP protocol %r is not supported here: using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter()


def create_provider(service_name: str, processor: SpanProcessor | None = None) -> TracerProvider:
    """A tracer provider with langscale's resource and sampler, exporting to ``processor``
    (by default a batch processor with the OTLP exporter the environment names)."""
    # OTEL_SERVICE_NAME, when set, names the service; else the component's default name.
    attributes = {} if _env("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(
        resource=Resource.create(attributes),
        sampler=DropRootClientSpans(_get_from_env_or_default()),
    )
    provider.add_span_processor(processor or BatchSpanProcessor(_exporter()))
    return provider


def instrument_clients(provider: trace.TracerProvider) -> None:
    """Spans for the Redis and httpx calls made inside requests and runs."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    if not RedisInstrumentor().is_instrumented_by_opentelemetry:
        RedisInstrumentor().instrument(tracer_provider=provider)
    if not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry:
        HTTPXClientInstrumentor().instrument(tracer_provider=provider)


def setup_tracing(service_name: str) -> TracerProvider | None:
    """Install tracing for a service process when the environment asks for it.

    Returns the provider, or None when tracing is off (nothing installed, no cost)."""
    if not tracing_configured():
        return None
    provider = create_provider(service_name)
    trace.set_tracer_provider(provider)
    instrument_clients(provider)
    how = "to the console" if _env("OTEL_TRACES_EXPORTER").lower() == "console" else "over OTLP"
    logger.info("tracing on: exporting spans %s", how, extra={"service": service_name})
    return provider


# The messaging system the producer (gateway) and consumer (worker) spans name.
MESSAGING_SYSTEM = "langscale"


def messaging_attributes(
    operation: str, pipeline: str, run_id: str | None = None, batch: int = 1
) -> dict[str, str | int]:
    """Attributes of the ``send <pipeline>`` PRODUCER and ``process <pipeline>`` CONSUMER
    spans (OpenTelemetry messaging conventions): the destination is the pipeline's queue."""
    attributes: dict[str, str | int] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": pipeline,
        "langscale.pipeline": pipeline,
    }
    if run_id is not None:
        attributes["messaging.message.id"] = run_id
        attributes["langscale.run.id"] = run_id
    if batch > 1:
        attributes["messaging.batch.message_count"] = batch
    return attributes


def get_tracer(provider: trace.TracerProvider | None = None) -> trace.Tracer:
    """langscale's tracer from ``provider``, else from the global provider (no-op if off)."""
    return trace.get_tracer(TRACER_NAME, tracer_provider=provider)


def format_span_context(context: trace.SpanContext) -> str:
    """A span context as a W3C traceparent value, for storing (e.g. the run hash)."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parse_span_context(value: str | bytes | None) -> trace.SpanContext | None:
    """The span context of a stored traceparent value; None if absent or malformed."""
    if not value:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    parts = text.split("-")
    try:
        if len(parts) != 4:
            return None
        context = trace.SpanContext(
            trace_id=int(parts[1], 16),
            span_id=int(parts[2], 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(int(parts[3], 16)),
        )
    except ValueError:
        return None
    return context if context.is_valid else None
