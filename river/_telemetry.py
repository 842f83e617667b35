"""OpenTelemetry instrumentation through opentelemetry-api only.

Spans: one ``river.insert`` (kind PRODUCER) per insert batch, one ``river.work`` (kind CONSUMER)
per attempt, with the job kind, queue, attempt, id and outcome as attributes. Metrics: counter
``river.jobs`` (attributes ``river.kind``, ``river.queue``, ``river.status``) and histogram
``river.job.duration`` in seconds with the same attributes; counter ``river.job.outcomes.stale``
(attribute ``river.queue``): outcomes not applied because a newer attempt of the same job owned
the row (the attempt fence) or the job was deleted while it ran. No job ids on metrics
(cardinality).

Without an SDK the API's providers are proxies that record nothing. Checking for that costs a
type check per attempt, and the instrumentation is then skipped entirely, so an application
that does not use OpenTelemetry pays (almost) nothing on the hot path (docs/observability.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.trace import Span, SpanKind, Tracer

from river._version import __version__

__all__ = ["Telemetry"]

_ProxyTracerProvider = type(trace.get_tracer_provider())
_ProxyMeterProvider = type(metrics.get_meter_provider())
# While no provider is set, the API's get_*_provider() look the provider env vars up in
# os.environ on every call, which cost more than the rest of this module per attempt. The
# API's own globals tell "nothing set" for free; the env vars are read once, at import.
_TRACER_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_METER_ENV = "OTEL_PYTHON_METER_PROVIDER" in os.environ


def _no_tracer_provider() -> bool:
    return getattr(trace, "_TRACER_PROVIDER", object()) is None and not _TRACER_ENV


def _no_meter_provider() -> bool:
    internal = getattr(metrics, "_internal", None)
    return getattr(internal, "_METER_PROVIDER", object()) is None and not _METER_ENV


class Telemetry:
    """Lazily bound tracer and instruments (rebound when the global providers change)."""

    def __init__(self) -> None:
        self._tracer_provider: object = None
        self._tracer: Tracer | None = None
        self._meter_provider: object = None
        self._jobs: Counter | None = None
        self._duration: Histogram | None = None
        self._stale: Counter | None = None

    def tracer(self) -> Tracer | None:
        """The tracer, or None when no SDK provider is installed."""
        if _no_tracer_provider():
            return None
        provider = trace.get_tracer_provider()
        if isinstance(provider, _ProxyTracerProvider):
            return None
        if provider is not self._tracer_provider:
            self._tracer_provider = provider
            self._tracer = trace.get_tracer("river", __version__)
        return self._tracer

    def _instruments(self) -> tuple[Counter, Histogram] | None:
        if _no_meter_provider():
            return None
        provider = metrics.get_meter_provider()
        if isinstance(provider, _ProxyMeterProvider):
            return None
        if provider is not self._meter_provider:
            meter = metrics.get_meter("river", __version__)
            self._jobs = meter.create_counter(
                "river.jobs", unit="{job}", description="Job attempts by outcome"
            )
            self._duration = meter.create_histogram(
                "river.job.duration", unit="s", description="Duration of job attempts"
            )
            self._stale = meter.create_counter(
                "river.job.outcomes.stale",
                unit="{outcome}",
                description="Outcomes not applied: a newer attempt owned the row, or the job "
                "was deleted",
            )
            self._meter_provider = provider
        assert self._jobs is not None and self._duration is not None
        return self._jobs, self._duration

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

    @contextlib.contextmanager
    def insert_span(self, count: int, queues: Mapping[str, Any]) -> Iterator[Span | None]:
        """A PRODUCER span around one insert batch (nothing without an SDK)."""
        tracer = self.tracer()
        if tracer is None:
            yield None
            return
        with tracer.start_as_current_span(
            "river.insert",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "river",
                "messaging.batch.message_count": count,
                "river.queues": sorted(queues),
            },
        ) as span:
            yield span


TELEMETRY = Telemetry()
