"""OpenTelemetry: configured once at process entry, used through the API everywhere.

Library code calls :func:`tracer` and the header helpers; only :func:`setup_tracing`
touches the SDK. Trace context travels in a W3C ``traceparent`` Kafka header, so a
request produced by a client, served by a worker and answered on rec.responses is
one trace.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

from streams.settings import Settings

__all__ = [
    "KafkaHeaders",
    "consume_span",
    "context_from_headers",
    "headers_with_trace",
    "setup_tracing",
    "tracer",
]

log = logging.getLogger(__name__)

KafkaHeaders = list[tuple[str, bytes]]

_TRACER_NAME = "streamrec"


def tracer() -> trace.Tracer:
    """The project's tracer (a no-op until :func:`setup_tracing` installs a provider)."""
    return trace.get_tracer(_TRACER_NAME)


def setup_tracing(
    settings: Settings, *, service: str | None = None, exporter: Any | None = None
) -> str:
    """Install a tracer provider for this process; return a one-line description.

    ``exporter`` (e.g. an in-memory exporter in tests) wins over the settings; otherwise
    ``otlp`` exports to ``otel_endpoint`` in batches, ``console`` prints spans, ``none``
    leaves tracing off. Called once per process, at the entry point.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    name = service or settings.otel_service_name
    mode = "custom" if exporter is not None else settings.trace_exporter
    if mode == "none":
        return "off (no STREAMREC_OTEL_ENDPOINT; set it, or STREAMREC_OTEL_EXPORTER=console)"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        desc = f"in-process exporter {type(exporter).__name__}"
    elif mode == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        desc = "console exporter"
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = (settings.otel_endpoint or "http://localhost:4318").rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        desc = f"OTLP/HTTP → {endpoint}"
    trace.set_tracer_provider(provider)
    return desc


def _context_with_valid_span() -> otel_context.Context | None:
    """The current context, or — when there is no valid span (tracing off and no parent)
    — one holding a fresh non-recording root span, so every message gets a trace id."""
    if trace.get_current_span().get_span_context().is_valid:
        return None
    root = SpanContext(
        trace_id=random.getrandbits(128) or 1,
        span_id=random.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(root))


def headers_with_trace(headers: KafkaHeaders | None = None) -> KafkaHeaders:
    """Copy of ``headers`` plus a ``traceparent`` for the current trace.

    With tracing off and no incoming trace, a fresh trace id is minted, so every
    produced message carries ``traceparent`` and downstream workers can continue it.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=_context_with_valid_span())
    out = [(k, v) for k, v in (headers or []) if k not in carrier]
    out.extend((k, v.encode()) for k, v in carrier.items())
    return out


def context_from_headers(
    headers: Sequence[tuple[str, bytes | str | None]] | None,
) -> otel_context.Context:
    """The trace context carried in Kafka headers (empty context if none)."""
    carrier: dict[str, str] = {}
    for key, value in headers or []:
        if key in ("traceparent", "tracestate") and value is not None:
            carrier[key] = value.decode() if isinstance(value, bytes) else value
    return propagate.extract(carrier)


@contextmanager
def consume_span(
    name: str,
    headers: Sequence[tuple[str, bytes | str | None]] | None,
    attributes: dict[str, Any] | None = None,
) -> Iterator[Span]:
    """A CONSUMER span continuing the trace of the message's headers, made current."""
    ctx = context_from_headers(headers)
    with tracer().start_as_current_span(
        name, context=ctx, kind=SpanKind.CONSUMER, attributes=attributes or {}
    ) as span:
        yield span
