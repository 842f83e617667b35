"""OpenTelemetry instrumentation through opentelemetry-api only.

Spans: one ``river.insert`` (kind PRODUCER) per insert batch, one ``river.work`` (kind CONSUMER)
per attempt, with the job kind, queue, attempt, id and outcome as attributes. Metrics: counter
``river.jobs`` (attributes ``river.kind``, ``river.queue``, ``river.status``) and histogram
``river.job.duration`` in seconds with the same attributes; counter ``river.job.outcomes.stale``
(attribute ``river.queue``): outcomes not applied because a newer attempt of the same job owned
the row (the attempt fence) or the job was deleted while it ran; observable gauge
``river.queue.depth`` (attributes ``river.queue``, ``river.state``): jobs not yet finalized,
sampled by the leader only (river/_maintenance.py QueueDepthSampler). No job ids on metrics
(cardinality).

Trace context travels from insert to work in the job's metadata, under
:data:`TRACE_CONTEXT_KEY`: the W3C ``traceparent`` (and ``tracestate``) of the span current
when the insert statement runs (``river.insert`` when tracing is on). The ``river.work`` span
of each attempt is then a child of that context, or linked to it (``Config.otel_work_span``).

The global providers are looked up at every use, never remembered from import time, so that an
application may install its SDK before or after importing river. Without an SDK the API's
providers are proxies that record nothing; that check reads the API's globals (no environment
lookup), and the instrumentation is then skipped entirely, so an application that does not use
OpenTelemetry pays (almost) nothing on the hot path (docs/observability.md).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal, Protocol

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, MeterProvider, Observation
from opentelemetry.trace import Link, Span, SpanKind, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from river._version import __version__

__all__ = [
    "DURATION_BUCKETS",
    "TELEMETRY",
    "TRACE_CONTEXT_KEY",
    "QueueDepthSource",
    "Telemetry",
    "WorkSpanMode",
]

#: Metadata key of the trace context stored at insert: ``{"traceparent": ..., "tracestate":
#: ...}`` (the W3C Trace Context header names and values; ``tracestate`` only when not empty).
#: A ``river:`` key: user code cannot set those (River (Go) and this library refuse them), and
#: River (Go) uses no such key (PROTOCOL.md section 12).
TRACE_CONTEXT_KEY: Final = "river:otel"

#: How the ``river.work`` span relates to the trace context stored at insert.
WorkSpanMode = Literal["child", "link", "none"]

#: Provider classes that record nothing: the API's proxies (the default until an SDK is
#: installed) and its explicit no-op providers.
_INERT_TRACER_PROVIDERS: tuple[type, ...] = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
_METRICS_INTERNAL = getattr(metrics, "_internal", None)
_INERT_METER_PROVIDERS: tuple[type, ...] = (
    metrics.NoOpMeterProvider,
    *(
        (proxy,)
        if isinstance(proxy := getattr(_METRICS_INTERNAL, "_ProxyMeterProvider", None), type)
        else ()
    ),
)
# While no provider is set, the API's get_*_provider() look the provider env vars up in
# os.environ on every call, which costs more than the rest of this module per attempt. The
# API's globals tell "nothing set" for free; the env vars are read once, at import (they
# belong to the process's environment, set before it starts).
_TRACER_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_METER_ENV = "OTEL_PYTHON_METER_PROVIDER" in os.environ
_MISSING: Any = object()
_W3C = TraceContextTextMapPropagator()


def _tracer_provider() -> TracerProvider | None:
    """The global tracer provider, or None when it records nothing."""
    provider = getattr(trace, "_TRACER_PROVIDER", _MISSING)
    if provider is None:
        if not _TRACER_ENV:
            return None
        provider = trace.get_tracer_provider()
    elif provider is _MISSING:  # an API without the global: ask it (slower, still right)
        provider = trace.get_tracer_provider()
    if isinstance(provider, _INERT_TRACER_PROVIDERS):
        return None
    return provider  # type: ignore[no-any-return]


def _meter_provider() -> MeterProvider | None:
    """The global meter provider, or None when it records nothing."""
    provider = getattr(_METRICS_INTERNAL, "_METER_PROVIDER", _MISSING)
    if provider is None:
        if not _METER_ENV:
            return None
        provider = metrics.get_meter_provider()
    elif provider is _MISSING:
        provider = metrics.get_meter_provider()
    if isinstance(provider, _INERT_METER_PROVIDERS):
        return None
    return provider  # type: ignore[no-any-return]


#: Upper bounds (seconds) of the job duration histograms (``river.job.duration``, ``river
#: worker``'s ``river_job_duration_seconds``): from a few
#: milliseconds (no-op jobs) to an hour (the default rescue horizon); +Inf is implied.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)


class InsertBatch(Protocol):
    """What the insert span needs of river/_driver.py's InsertBatch (named structurally: the
    driver sits above this module)."""

    #: The jobs' queues and encoded metadata (JSON objects), one element per job.
    queue: list[str]
    metadata: list[str]

    def __len__(self) -> int: ...


class QueueDepthSource(Protocol):
    """Something holding the latest queue depth sample (the leader's sampler)."""

    @property
    def sample(self) -> Mapping[tuple[str, str], int] | None:
        """Jobs per (queue, state), or None when there is nothing to report."""


class Telemetry:
    """Lazily bound tracer and instruments (rebound when the global providers change)."""

    def __init__(self) -> None:
        self._tracer_provider: object = None
        self._tracer: Tracer | None = None
        self._meter_provider: object = None
        self._jobs: Counter | None = None
        self._duration: Histogram | None = None
        self._stale: Counter | None = None
        #: Replaced, never mutated: the metric reader's thread iterates over it.
        self._depth_sources: tuple[QueueDepthSource, ...] = ()

    def tracer(self) -> Tracer | None:
        """The tracer, or None when no SDK provider is installed."""
        provider = _tracer_provider()
        if provider is None:
            return None
        if provider is not self._tracer_provider:
            self._tracer = provider.get_tracer("river", __version__)
            self._tracer_provider = provider
        return self._tracer

    def _instruments(self) -> tuple[Counter, Histogram] | None:
        provider = _meter_provider()
        if provider is None:
            return None
        if provider is not self._meter_provider:
            meter = provider.get_meter("river", __version__)
            self._jobs = meter.create_counter(
                "river.jobs", unit="{job}", description="Job attempts by outcome"
            )
            self._duration = meter.create_histogram(
                "river.job.duration",
                unit="s",
                description="Duration of job attempts",
                # The SDK's default bounds are for milliseconds: every attempt under 5 s fell
                # in its first bucket.
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
            self._stale = meter.create_counter(
                "river.job.outcomes.stale",
                unit="{outcome}",
                description="Outcomes not applied: a newer attempt owned the row, or the job "
                "was deleted",
            )
            meter.create_observable_gauge(
                "river.queue.depth",
                callbacks=[self._observe_queue_depth],
                unit="{job}",
                description="Jobs not yet finalized, by queue and state (sampled by the leader)",
            )
            self._meter_provider = provider
        assert self._jobs is not None and self._duration is not None
        return self._jobs, self._duration

    def bind_metrics(self) -> bool:
        """Create the instruments on the current meter provider if not done yet (the queue
        depth gauge must exist before any attempt is recorded); whether there is one."""
        return self._instruments() is not None

    def record_attempt(self, kind: str, queue: str, status: str, seconds: float) -> None:
        """Count one attempt and record its duration (no-op without an SDK)."""
        instruments = self._instruments()
        if instruments is None:
            return
        attributes = {"river.kind": kind, "river.queue": queue, "river.status": status}
        instruments[0].add(1, attributes)
        instruments[1].record(seconds, attributes)

    def record_stale_outcome(self, queue: str) -> None:
        """Count one outcome that was not applied (no-op without an SDK)."""
        if self._instruments() is None or self._stale is None:
            return
        self._stale.add(1, {"river.queue": queue})

    # --- queue depth ----------------------------------------------------------------------

    def add_queue_depth_source(self, source: QueueDepthSource) -> None:
        """Report ``source``'s samples through the ``river.queue.depth`` gauge."""
        if source not in self._depth_sources:
            self._depth_sources = (*self._depth_sources, source)

    def remove_queue_depth_source(self, source: QueueDepthSource) -> None:
        """Stop reporting ``source`` (leadership lost, client stopped)."""
        self._depth_sources = tuple(s for s in self._depth_sources if s is not source)

    def _observe_queue_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        # Called by the SDK's reader, possibly from its own thread: sources and samples are
        # replaced whole, never changed in place. Several leaders in one process (clients of
        # different databases or schemas) add up.
        totals: dict[tuple[str, str], int] = {}
        for source in self._depth_sources:
            sample = source.sample
            if sample:
                for key, count in sample.items():
                    totals[key] = totals.get(key, 0) + count
        return [
            Observation(count, {"river.queue": queue, "river.state": state})
            for (queue, state), count in sorted(totals.items())
        ]

    # --- trace context --------------------------------------------------------------------

    def insert_span(self, batch: InsertBatch) -> contextlib.AbstractContextManager[Span | None]:
        """A PRODUCER span around one insert batch (none without an SDK), whose context (or,
        without an SDK, any valid span context that is current) is stored in each job's
        metadata under :data:`TRACE_CONTEXT_KEY`. Nothing is stored when no span context is
        current."""
        tracer = self.tracer()
        if tracer is None:
            # Every insert passes here: no generator-based context manager without an SDK.
            _store_trace_context(batch)
            return _NO_SPAN
        return self._insert_span(tracer, batch)

    @staticmethod
    @contextlib.contextmanager
    def _insert_span(tracer: Tracer, batch: InsertBatch) -> Iterator[Span | None]:
        queues = sorted(dict.fromkeys(batch.queue))
        attributes: dict[str, Any] = {
            # OpenTelemetry's messaging conventions, then river's own.
            "messaging.system": "river",
            "messaging.operation.type": "send",
            "messaging.operation.name": "insert",
            "messaging.batch.message_count": len(batch),
            "river.queues": queues,
        }
        if len(queues) == 1:
            attributes["messaging.destination.name"] = queues[0]
        with tracer.start_as_current_span(
            "river.insert", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            _store_trace_context(batch)
            yield span

    @staticmethod
    def work_span_origin(
        metadata: Mapping[str, Any], mode: WorkSpanMode
    ) -> tuple[Context, Sequence[Link] | None]:
        """The parent context and links of a job's ``river.work`` span: the context stored at
        insert as the parent (``"child"``) or as a link (``"link"``, in a new trace). An empty
        context (a new trace, no link) with ``"none"``, or when the job has no valid stored
        context (inserted without a span, by River (Go), or the value is not what this library
        writes). Never the context current in the worker: the job's task inherits that of the
        client's ``start()``, and every attempt became a child of whatever span was current
        then (one endless trace under the application's start-up)."""
        root = Context()
        if mode == "none":
            return root, None
        carrier = metadata.get(TRACE_CONTEXT_KEY)
        if not isinstance(carrier, dict):
            return root, None
        headers = {k: v for k, v in carrier.items() if isinstance(v, str)}
        if "traceparent" not in headers:
            return root, None
        context = _W3C.extract(headers, context=root)
        span_context = trace.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            return root, None
        if mode == "link":
            return root, (Link(span_context),)
        return context, None


#: What ``insert_span`` returns without an SDK (stateless, so one serves every insert).
_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


def _store_trace_context(batch: InsertBatch) -> None:
    """Add the current span context to every job of ``batch`` (see :data:`TRACE_CONTEXT_KEY`).

    Metadata arrives encoded: the usual empty object is replaced whole, other objects get the
    member appended (or are left alone if they already have the key: an explicit value
    wins)."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)  # writes nothing when no valid span context is current
    if "traceparent" not in carrier:
        return
    whole = json.dumps({TRACE_CONTEXT_KEY: carrier}, separators=(",", ":"))
    member = whole[1:-1]
    quoted_key = json.dumps(TRACE_CONTEXT_KEY)
    metadata = batch.metadata
    for i, text in enumerate(metadata):
        if text == "{}":
            metadata[i] = whole
        elif quoted_key not in text:
            body = text.strip()[1:-1]
            metadata[i] = "{" + body + "," + member + "}" if body.strip() else whole
        else:  # maybe the key, maybe a value that reads like it: decode to know
            decoded = json.loads(text)
            if TRACE_CONTEXT_KEY not in decoded:
                decoded[TRACE_CONTEXT_KEY] = carrier
                metadata[i] = json.dumps(decoded, separators=(",", ":"))


TELEMETRY = Telemetry()
