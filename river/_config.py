"""Client and queue configuration (pure data, validated on construction)."""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from river._args import Workers
from river._duration import DurationError, parse_duration
from river._errors import InvalidConfigError
from river._joblog import JobLogConfig
from river._names import MAX_WORKERS_LIMIT, validate_queue_name, validate_schema
from river._ratelimit import RateLimit
from river._retry import RetryPolicy, next_retry_at
from river._schedule import Schedule
from river._validate import DEFAULT_MAX_ENCODED_SIZE, MAX_ENCODED_SIZE_LIMIT

if TYPE_CHECKING:
    from river._events import Event
    from river._maintenance import PeriodicJob
    from river._middleware import Middleware

__all__ = [
    "DEFAULT_FETCH_COOLDOWN",
    "DEFAULT_FETCH_POLL_INTERVAL",
    "DEFAULT_JOB_TIMEOUT",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_WORKERS",
    "MAX_WORKERS_LIMIT",
    "Config",
    "QueueConfig",
    "QueueSettings",
    "RateLimit",
    "default_client_id",
]

#: Attempts before a failing job is discarded.
DEFAULT_MAX_ATTEMPTS = 25
#: Seconds an attempt may run before it is cancelled and counted as an error.
DEFAULT_JOB_TIMEOUT = 60.0
#: Minimum spacing of one queue's fetches. River (Go) uses 100 ms, which adds up to 100 ms of
#: latency to a steady trickle of inserts; 2 ms keeps insert-to-start latency low while still
#: coalescing bursts of wake-ups into one fetch (docs/design.md has the measurements).
DEFAULT_FETCH_COOLDOWN = 0.002
#: How often a queue is checked for due jobs without any notification (River (Go): 1 s).
DEFAULT_FETCH_POLL_INTERVAL = 1.0
#: max_workers of a queue whose QueueConfig leaves it unset.
DEFAULT_MAX_WORKERS = 100
_MIN_DURATION = 0.001
#: Longest job timeout, retention or rescue horizon (100 years): these become intervals the
#: database subtracts from now(), and one beyond timestamptz's range made every maintenance
#: pass fail ("timestamp out of range").
MAX_HORIZON = 100 * 365.25 * 86_400.0


def _horizon(seconds: float, field_name: str) -> None:
    if seconds > MAX_HORIZON:
        raise InvalidConfigError(
            field_name, f"must be at most 100 years ({MAX_HORIZON:.0f}s), got {seconds!r}"
        )


def _seconds(value: float | timedelta, field_name: str) -> float:
    """``value`` (seconds, or a timedelta) in seconds, not range-checked."""
    try:
        return parse_duration(value, text="seconds")
    except DurationError as exc:
        if exc.problem == "bool":
            raise InvalidConfigError(
                field_name, "must be a duration in seconds, not a bool"
            ) from None
        raise InvalidConfigError(
            field_name, f"must be a duration in seconds or a timedelta, got {value!r}"
        ) from None


def _duration(value: float | timedelta | None, field_name: str) -> float | None:
    if value is None:
        return None
    seconds = _seconds(value, field_name)
    if math.isnan(seconds) or seconds < _MIN_DURATION:
        raise InvalidConfigError(field_name, f"must be at least {_MIN_DURATION}s, got {value!r}")
    return seconds


#: Seconds between two refreshes of a running queue's ``river_queue`` row by its client (its
#: ``updated_at``), which the queue cleaner reads as the queue being alive.
QUEUE_KEEPALIVE_INTERVAL = 600.0
#: Longest fetch cooldown or poll interval (a day, as for a cluster-wide override): a queue
#: with a longer one would hardly ever fetch (a typo in the unit, say).
MAX_FETCH_INTERVAL = 86_400.0


def _fetch_interval(value: float | timedelta | None, field_name: str) -> float | None:
    seconds = _duration(value, field_name)
    if seconds is not None and seconds > MAX_FETCH_INTERVAL:
        raise InvalidConfigError(
            field_name, f"must be at most a day ({MAX_FETCH_INTERVAL:.0f}s), got {value!r}"
        )
    return seconds


def _max_workers(value: int | None, field_name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidConfigError(field_name, f"must be an integer, got {value!r}")
    if not 1 <= value <= MAX_WORKERS_LIMIT:
        raise InvalidConfigError(
            field_name, f"must be between 1 and {MAX_WORKERS_LIMIT}, got {value}"
        )
    return value


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """A queue's effective settings (its QueueConfig merged with the client's defaults)."""

    max_workers: int
    fetch_cooldown: float
    fetch_poll_interval: float
    #: The floor of an autoscaled queue's concurrency (None: fixed at ``max_workers``).
    min_workers: int | None = None
    rate_limit: RateLimit | None = None

    @property
    def autoscaled(self) -> bool:
        """Whether the concurrency floats between ``min_workers`` and ``max_workers``."""
        return self.min_workers is not None and self.min_workers < self.max_workers


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Settings of one queue. Every field left ``None`` inherits the client's value
    (:class:`Config`), resolved when the queue is added and again on each update.

    - ``max_workers``: jobs of this queue run at once by this client (1 to 10,000;
      default ``Config.max_workers``, 100).
    - ``fetch_cooldown``: minimum seconds between two fetches (default
      ``Config.fetch_cooldown``, 2 ms).
    - ``fetch_poll_interval``: seconds between checks for due jobs when no notification
      arrives (default ``Config.fetch_poll_interval``, 1 s); must be at least the cooldown.
    - ``min_workers``: with a value below ``max_workers``, the queue is *autoscaled*: its
      concurrency starts there and floats between the two with the load (grows while jobs
      wait, shrinks when slots sit idle; docs/queues.md, "Autoscaling"). None (default): a
      fixed ``max_workers``.
    - ``rate_limit``: a :class:`RateLimit` on how many jobs start per period, across every
      client (default: none).
    """

    max_workers: int | None = None
    fetch_cooldown: float | timedelta | None = None
    fetch_poll_interval: float | timedelta | None = None
    min_workers: int | None = None
    rate_limit: RateLimit | None = None

    def __post_init__(self) -> None:
        _max_workers(self.max_workers, "max_workers")
        _fetch_interval(self.fetch_cooldown, "fetch_cooldown")
        _fetch_interval(self.fetch_poll_interval, "fetch_poll_interval")
        _max_workers(self.min_workers, "min_workers")
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise InvalidConfigError("rate_limit", "must be a river.RateLimit")


def default_client_id(now: datetime | None = None) -> str:
    """River (Go)'s client id format: ``<host, dots as _, <= 60 chars>_<UTC start time>``."""
    host = (socket.gethostname() or "unknown_host").replace(".", "_")[:60] or "unknown_host"
    now = now or datetime.now(UTC)
    return f"{host}_{now.strftime('%Y_%m_%dT%H_%M_%S_%f')}_{os.getpid()}"[:100]


_ID_RE = re.compile(r"\S{1,100}")


@dataclass(frozen=True, slots=True)
class Config:
    """Client configuration. All durations are seconds (float) or ``timedelta``.

    - ``queues``: queue name -> :class:`QueueConfig` worked by this client (may be empty for an
      insert-only client; queues can also be added at run time with ``client.queues``).
    - ``workers``: the :class:`river.Workers` registry. Required to work jobs. When given,
      inserting a kind with no registered worker raises (``skip_unknown_job_check`` disables it).
    - ``schema``: Postgres schema of the River tables (default: the connection's search_path).
    - ``id``: this client's id (leader election, ``attempted_by``); default host and start time.
    - ``connect_timeout``: seconds (10) the first connection of the client's pool may take;
      beyond it, or at once for a bad host, port, password or database name, the call fails
      with :class:`river.DatabaseUnavailableError` carrying the driver's reason. The sync
      client's bound is libpq's: whole seconds, at least 2.
    - ``max_attempts``: default attempts per job (25).
    - ``max_encoded_size``: largest encoded args, and metadata, of one inserted job in UTF-8
      bytes (16 MiB; at most 255 MiB, below jsonb's limit); larger ones raise
      :class:`river.ValidationError` before any SQL (docs/inserting.md).
    - ``job_timeout``: seconds an attempt may run (60); -1 disables; workers may override.
    - ``max_workers``, ``fetch_cooldown``, ``fetch_poll_interval``: defaults inherited by queues.
    - ``retry_policy``: ``(error_count, now) -> next run time``; default ``errors**4`` s +-10%.
    - ``poll_only``: no LISTEN connection at all (PgBouncer transaction pooling); work is found
      by polling every ``fetch_poll_interval`` and pause/resume by re-reading river_queue.
    - ``pooler``: ``"transaction"`` when the client's connections go through a pooler in
      transaction mode (PgBouncer ``pool_mode = transaction``): no statement is prepared on
      the server on any connection the client opens, and none keeps session state. A client
      that works jobs then needs ``poll_only=True`` too (LISTEN needs a session of its own;
      ``start()`` says so). None (default): direct connections or a session-mode pooler.
      A pool passed in instead of a URL is the caller's: give it
      ``kwargs={"prepare_threshold": None}`` yourself (docs/production.md).
      The connections a client opens itself (with ``pooler`` None) set their session
      ``TimeZone`` to ``UTC``, the one zone psycopg decodes timestamps in without a conversion
      per value: rows read through them carry ``datetime.timezone.utc`` (the same instants
      as in any other zone). A pool passed in is left as it is.
    - ``sync_worker_threads``: threads shared by all sync (``def work``) workers (default 40).
    - ``completer_batch_size`` / ``completer_flush_interval``: batching of outcome writes
      (2,000 outcomes per statement, else one write every 50 ms with what is waiting; River
      (Go) ticks every 50 ms too). A finished job shows its final state, and its event
      fires, up to ``completer_flush_interval`` (plus the writes ahead of it) after it returned;
      stopping a client writes what is waiting at once.
    - ``completer_max_backlog``: room for fetches shared by all queues (5,000): outcomes
      waiting to be written plus fetches in progress stay under it. Fetches are sized to the
      room left and queues waiting for room are served first come, first served, so thousands
      of busy queues neither pile jobs up in memory nor starve each other; a slow database
      pauses fetching instead of growing memory. Two or three completer batches are enough
      to keep the writer busy; it does not limit running jobs (``max_workers`` does). Below
      ``completer_batch_size``, a full budget waits for the completer's next tick (at most
      ``completer_max_backlog`` outcomes are written per ``completer_flush_interval``).
    - ``completer_stop_timeout``: how long a stopping client (once its jobs have ended) goes on
      retrying outcome writes that fail (60 s; a float of seconds or a timedelta). While it
      runs, a failed write is retried until it succeeds, however long the database is away;
      a stop would then never return. Past this bound, the outcomes still unwritten are
      given up: each such job is logged (ERROR, with its id, kind and queue) and stays
      ``running`` until the rescuer of a running client returns it (after
      ``rescue_stuck_jobs_after``), as if the process had been killed. None: retry for ever.
    - ``skip_unknown_job_check``: allow inserting kinds no worker of this client handles.
    - ``on_event``: called with every :class:`river.Event` (job outcomes, queue changes); see
      also ``client.subscribe``.
    - ``middleware``: :class:`river.Middleware` instances (hooks and middleware around inserts
      and attempts); the first is the outermost.
    - ``job_log``: :class:`river.JobLogConfig`, the log lines (logger ``river.job``) of
      attempts that fail (WARNING; ERROR when the job is discarded) or are cancelled (INFO),
      rate-limited per kind and queue; None logs none of them.

    Leadership and maintenance (docs/maintenance.md; a started client competes for leadership
    with every client on the database, River (Go) included, and only the leader maintains):

    - ``leader_election``: False never writes river_leader and runs no maintenance here.
    - ``leader_elect_interval`` (5 s) and ``leader_ttl`` (15 s): election rhythm and lease.
    - ``periodic_jobs``: :class:`river.PeriodicJob` list (more via ``client.periodic_jobs``).
    - ``scheduler_interval`` (5 s): promotion of due scheduled/retryable jobs; retries and
      snoozes due within one interval skip it and go straight back to ``available``.
    - ``rescue_stuck_jobs_after`` (1 h; job_timeout + 1 h when job_timeout was changed) and
      ``rescuer_interval`` (30 s).
    - ``completed_job_retention`` (24 h), ``cancelled_job_retention`` (24 h),
      ``discarded_job_retention`` (7 days), -1 keeps forever; ``job_cleaner_interval`` (30 s).
    - ``queue_idle_retention`` (24 h) and ``queue_cleaner_interval`` (1 h).
    - Retentions, ``rescue_stuck_jobs_after`` and ``job_timeout`` are at most 100 years (the
      database subtracts them from now()).
    - ``reindexer_schedule``: e.g. ``river.Cron("0 0 * * *")``; None (default) disables it.
    - ``queue_depth_interval`` (10 s): how often the leader counts the jobs not yet finalized
      per queue and state (one grouped ``count(*)``), for the ``river.queue.depth`` gauge,
      ``river worker``'s ``river_queue_depth`` and :meth:`AsyncClient.queue_depth`; None
      disables it.

    OpenTelemetry (docs/observability.md):

    - ``otel_work_span``: how an attempt's ``river.work`` span relates to the trace context
      stored in the job's metadata at insert (key ``river:otel``, written whenever a span
      context is current at insert, whatever this option says): ``"child"`` (default) makes
      it a child of the inserting span, so insert and work share one trace; ``"link"`` starts
      it in the worker's own context with a link to the inserting span (for long delays or
      fan-out, where one trace per insert would grow without end); ``"none"`` ignores the
      stored context.
    """

    queues: Mapping[str, QueueConfig] = field(default_factory=dict)
    workers: Workers | None = None
    schema: str | None = None
    id: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_encoded_size: int = DEFAULT_MAX_ENCODED_SIZE
    job_timeout: float | timedelta = DEFAULT_JOB_TIMEOUT
    max_workers: int = DEFAULT_MAX_WORKERS
    fetch_cooldown: float | timedelta = DEFAULT_FETCH_COOLDOWN
    fetch_poll_interval: float | timedelta = DEFAULT_FETCH_POLL_INTERVAL
    retry_policy: RetryPolicy = next_retry_at
    poll_only: bool = False
    pooler: Literal["transaction"] | None = None
    connect_timeout: float | timedelta = 10.0
    sync_worker_threads: int = 40
    completer_batch_size: int = 2000
    completer_flush_interval: float = 0.05
    completer_max_backlog: int = 5_000
    completer_stop_timeout: float | timedelta | None = 60.0
    skip_unknown_job_check: bool = False
    leader_election: bool = True
    leader_elect_interval: float = 5.0
    leader_ttl: float = 15.0
    periodic_jobs: Sequence[PeriodicJob] = ()
    scheduler_interval: float = 5.0
    rescue_stuck_jobs_after: float | None = None
    rescuer_interval: float = 30.0
    completed_job_retention: float = 86_400.0
    cancelled_job_retention: float = 86_400.0
    discarded_job_retention: float = 7 * 86_400.0
    job_cleaner_interval: float = 30.0
    queue_idle_retention: float = 86_400.0
    queue_cleaner_interval: float = 3600.0
    reindexer_schedule: Schedule | None = None
    queue_depth_interval: float | timedelta | None = 10.0
    otel_work_span: Literal["child", "link", "none"] = "child"
    on_event: Callable[[Event], None] | None = None
    middleware: Sequence[Middleware] = ()
    job_log: JobLogConfig | None = field(default_factory=JobLogConfig)

    def __post_init__(self) -> None:
        validate_schema(self.schema)
        if self.id is not None and not _ID_RE.fullmatch(self.id):
            raise InvalidConfigError("id", "must be 1 to 100 characters without whitespace")
        if isinstance(self.max_attempts, bool) or not 1 <= self.max_attempts <= 32767:
            raise InvalidConfigError("max_attempts", "must be an integer from 1 to 32767")
        size = self.max_encoded_size
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or not 2 <= size <= MAX_ENCODED_SIZE_LIMIT
        ):
            raise InvalidConfigError(
                "max_encoded_size", f"must be an integer from 2 to {MAX_ENCODED_SIZE_LIMIT} bytes"
            )
        seconds = _seconds(self.job_timeout, "job_timeout")
        if seconds != -1 and (math.isnan(seconds) or seconds <= 0):
            raise InvalidConfigError("job_timeout", "must be positive seconds, or -1 for none")
        _horizon(seconds, "job_timeout")
        _max_workers(self.max_workers, "max_workers")
        _fetch_interval(self.fetch_cooldown, "fetch_cooldown")
        _fetch_interval(self.fetch_poll_interval, "fetch_poll_interval")
        _duration(self.connect_timeout, "connect_timeout")
        if self.pooler not in (None, "transaction"):
            raise InvalidConfigError(
                "pooler", f'must be None or "transaction" (got {self.pooler!r})'
            )
        seen_ids: set[str] = set()
        for index, job in enumerate(self.periodic_jobs):
            if any(other is job for other in self.periodic_jobs[:index]):
                raise InvalidConfigError(
                    f"periodic_jobs[{index}]", "is listed twice (the same PeriodicJob object)"
                )
            job_id = getattr(job, "id", None)
            if job_id is not None:
                if job_id in seen_ids:
                    raise InvalidConfigError(
                        f"periodic_jobs[{index}].id", f"{job_id!r} is used by another job"
                    )
                seen_ids.add(job_id)
        if not isinstance(self.queues, Mapping):
            raise InvalidConfigError("queues", "must be a mapping of name -> QueueConfig")
        for name, qc in self.queues.items():
            validate_queue_name(name, f"queues[{name!r}]")
            if not isinstance(qc, QueueConfig):
                raise InvalidConfigError(f"queues[{name!r}]", "must be a river.QueueConfig")
            self.resolve(qc, name)
        if self.queues and self.workers is None:
            raise InvalidConfigError("workers", "is required when queues are configured")
        if self.job_log is not None and not isinstance(self.job_log, JobLogConfig):
            raise InvalidConfigError("job_log", "must be a river.JobLogConfig, or None for none")
        for name in ("sync_worker_threads", "completer_batch_size", "completer_max_backlog"):
            # An integer: a float passed the old check and failed at start (the thread
            # limiter) or at every flush (a slice of the outcomes), writing none.
            count = getattr(self, name)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InvalidConfigError(name, f"must be an integer of at least 1, got {count!r}")
        flush = self.completer_flush_interval
        if (
            isinstance(flush, bool)
            or not isinstance(flush, int | float)
            or not _MIN_DURATION <= flush < math.inf
        ):
            # 0 or less made the completer's loop spin.
            raise InvalidConfigError(
                "completer_flush_interval",
                f"must be a number of seconds, at least {_MIN_DURATION}, got {flush!r}",
            )
        _duration(self.completer_stop_timeout, "completer_stop_timeout")
        for name in (
            "leader_elect_interval",
            "scheduler_interval",
            "rescuer_interval",
            "job_cleaner_interval",
            "queue_cleaner_interval",
            "queue_idle_retention",
        ):
            _duration(getattr(self, name), name)
        idle = _seconds(self.queue_idle_retention, "queue_idle_retention")
        _horizon(idle, "queue_idle_retention")
        if idle < 2 * QUEUE_KEEPALIVE_INTERVAL:
            # Shorter, the leader's queue cleaner deleted the rows of queues being worked,
            # which unpaused them and dropped their cluster-wide settings.
            raise InvalidConfigError(
                "queue_idle_retention",
                f"must be at least {2 * QUEUE_KEEPALIVE_INTERVAL:.0f}s (twice the "
                f"{QUEUE_KEEPALIVE_INTERVAL:.0f}s at which running clients refresh their "
                f"queues' rows), got {self.queue_idle_retention!r}",
            )
        _duration(self.queue_depth_interval, "queue_depth_interval")
        if self.otel_work_span not in ("child", "link", "none"):
            raise InvalidConfigError(
                "otel_work_span", f'must be "child", "link" or "none" (got {self.otel_work_span!r})'
            )
        if self.leader_ttl <= self.leader_elect_interval:
            raise InvalidConfigError(
                "leader_ttl", "must be longer than leader_elect_interval (River uses +10 s)"
            )
        from river._elector import check_leader_timing

        problem = check_leader_timing(
            _seconds(self.leader_elect_interval, "leader_elect_interval"),
            _seconds(self.leader_ttl, "leader_ttl"),
        )
        if problem is not None:
            # Shorter, the leader held its term but never trusted it (its maintenance never
            # ran, and nobody else could lead), or lost it at one slow renewal.
            raise InvalidConfigError("leader_ttl", problem)
        for name in (
            "completed_job_retention",
            "cancelled_job_retention",
            "discarded_job_retention",
        ):
            value = getattr(self, name)
            if value != -1 and not (isinstance(value, int | float) and value >= 0):
                raise InvalidConfigError(name, "must be seconds >= 0, or -1 to keep forever")
            _horizon(value, name)
        rescue = self.rescue_after_seconds
        if self.job_timeout_seconds > 0 and rescue < self.job_timeout_seconds:
            raise InvalidConfigError(
                "rescue_stuck_jobs_after",
                "must be at least job_timeout (jobs would be rescued "
                "while they may still legitimately run)",
            )

    @property
    def rescue_after_seconds(self) -> float:
        """Effective rescue horizon (see ``rescue_stuck_jobs_after``)."""
        if self.rescue_stuck_jobs_after is not None:
            seconds = _duration(self.rescue_stuck_jobs_after, "rescue_stuck_jobs_after")
            assert seconds is not None
            _horizon(seconds, "rescue_stuck_jobs_after")
            return seconds
        timeout = self.job_timeout_seconds
        if timeout > 0 and timeout != DEFAULT_JOB_TIMEOUT:
            return timeout + 3600.0
        return 3600.0

    @property
    def completer_stop_timeout_seconds(self) -> float | None:
        """``completer_stop_timeout`` in seconds (None: retried for ever)."""
        return _duration(self.completer_stop_timeout, "completer_stop_timeout")

    @property
    def queue_depth_interval_seconds(self) -> float | None:
        """``queue_depth_interval`` in seconds (None: no queue depth sampling)."""
        return _duration(self.queue_depth_interval, "queue_depth_interval")

    @property
    def connect_timeout_seconds(self) -> float:
        """``connect_timeout`` in seconds."""
        return _seconds(self.connect_timeout, "connect_timeout")

    @property
    def job_timeout_seconds(self) -> float:
        """``job_timeout`` in seconds (-1: none)."""
        return _seconds(self.job_timeout, "job_timeout")

    @property
    def connection_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for every connection the client opens itself (pool,
        LISTEN, reindexer): none, or, behind a transaction pooler, ``prepare_threshold=None``
        (no server-side prepared statements, not even those the library asks for: PgBouncer
        before 1.21 cannot route them)."""
        return {"prepare_threshold": None} if self.pooler == "transaction" else {}

    def resolve(self, qc: QueueConfig, name: str = "queue") -> QueueSettings:
        """Merge a queue's config with this client's defaults (QueueConfig fields win)."""
        cooldown = _duration(qc.fetch_cooldown, f"queues[{name!r}].fetch_cooldown") or _duration(
            self.fetch_cooldown, "fetch_cooldown"
        )
        poll = _duration(
            qc.fetch_poll_interval, f"queues[{name!r}].fetch_poll_interval"
        ) or _duration(self.fetch_poll_interval, "fetch_poll_interval")
        assert cooldown is not None and poll is not None
        if poll < cooldown:
            raise InvalidConfigError(
                f"queues[{name!r}].fetch_poll_interval",
                f"must be at least fetch_cooldown ({cooldown}s), got {poll}s",
            )
        max_workers = qc.max_workers or self.max_workers
        if qc.min_workers is not None and qc.min_workers > max_workers:
            raise InvalidConfigError(
                f"queues[{name!r}].min_workers",
                f"must be at most max_workers ({max_workers}), got {qc.min_workers}",
            )
        return QueueSettings(
            max_workers=max_workers,
            fetch_cooldown=cooldown,
            fetch_poll_interval=poll,
            min_workers=qc.min_workers,
            rate_limit=qc.rate_limit,
        )
