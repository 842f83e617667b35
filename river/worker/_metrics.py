"""Job metrics of one worker process in the Prometheus text format: outcomes and durations
counted from the client's job events, and the leader's queue depth sample.

Label cardinality stays bounded: kinds are defined in code (the workers registered), queues in
the configuration, outcomes and states are fixed sets; no job id ever becomes a label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from river._events import Event
from river._telemetry import DURATION_BUCKETS
from river.worker._health import metric_line

__all__ = ["DURATION_BUCKETS", "JobMetrics", "queue_depth_lines"]


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


class _Histogram:
    """Counts per bucket (not cumulative; summed when rendered), sum and count."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * len(DURATION_BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                return


class JobMetrics:
    """``river_jobs_total{kind,queue,outcome}`` and ``river_job_duration_seconds{kind,queue}``
    from job events (:meth:`observe`)."""

    def __init__(self) -> None:
        #: (kind, queue, outcome) -> jobs; outcome is the event kind without ``job_``.
        self.outcomes: Counter[tuple[str, str, str]] = Counter()
        #: (kind, queue) -> durations of the attempts (run time, from the event statistics).
        self.durations: dict[tuple[str, str], _Histogram] = {}

    def observe(self, event: Event) -> None:
        """Count one job event (queue events are ignored)."""
        if event.job is None:
            return
        kind = event.job.kind
        self.outcomes[(kind, event.queue, event.kind.removeprefix("job_"))] += 1
        if event.stats is not None:
            histogram = self.durations.get((kind, event.queue))
            if histogram is None:
                histogram = self.durations[(kind, event.queue)] = _Histogram()
            histogram.observe(max(event.stats.run_duration, 0.0))

    def lines(self) -> list[str]:
        """The two families, HELP and TYPE lines included."""
        lines: list[str] = []
        _family(
            lines,
            "river_jobs_total",
            "counter",
            "Jobs finished by this process, by kind, queue and outcome.",
        )
        for (kind, queue, outcome), count in sorted(self.outcomes.items()):
            labels = {"kind": kind, "queue": queue, "outcome": outcome}
            lines.append(metric_line("river_jobs_total", count, labels))
        _family(
            lines,
            "river_job_duration_seconds",
            "histogram",
            "Run time of the attempts this process finished, by kind and queue.",
        )
        for (kind, queue), histogram in sorted(self.durations.items()):
            cumulative = 0
            for bound, count in zip(DURATION_BUCKETS, histogram.buckets, strict=True):
                cumulative += count
                labels = {"kind": kind, "queue": queue, "le": f"{bound:g}"}
                lines.append(metric_line("river_job_duration_seconds_bucket", cumulative, labels))
            labels = {"kind": kind, "queue": queue, "le": "+Inf"}
            lines.append(metric_line("river_job_duration_seconds_bucket", histogram.count, labels))
            labels = {"kind": kind, "queue": queue}
            lines.append(metric_line("river_job_duration_seconds_sum", histogram.total, labels))
            lines.append(metric_line("river_job_duration_seconds_count", histogram.count, labels))
        return lines


def queue_depth_lines(sample: Mapping[tuple[str, str], int] | None) -> list[str]:
    """``river_queue_depth{queue,state}`` from the leader's sample (no samples, only the HELP
    and TYPE lines, on a process that is not the leader)."""
    lines: list[str] = []
    _family(
        lines,
        "river_queue_depth",
        "gauge",
        "Jobs not yet finalized by queue and state (reported by the leader only).",
    )
    for (queue, state), count in sorted((sample or {}).items()):
        lines.append(metric_line("river_queue_depth", count, {"queue": queue, "state": state}))
    return lines
