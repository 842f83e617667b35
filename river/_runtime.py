"""The runtime of a started client: its root task group, services, producers and shutdown.

One :class:`Runtime` per start of an :class:`~river.AsyncClient`. It owns:

- the executor (one attempt of one job), the completer (batched outcome writes) and the fetch
  budget shared by the producers;
- the root task, which owns two task groups: the outer one holds the producers and the
  completer, the inner one the services (notifier, poller, keep-alive, elector and, while
  leading, maintenance), every one of them under the supervisor (river/_supervisor.py);
- notification dispatch, leadership changes and the maintenance terms that follow them;
- shutdown: soft (stop fetching, let jobs finish) and hard (cancel them), after which every
  outcome is written.

The queue manager (river/_queues.py) owns the ``{name: producer}`` map and its lock and asks
the runtime to start or retire one producer; the client is a façade over both.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import anyio
import psycopg
from anyio.abc import TaskGroup, TaskStatus
from psycopg_pool import AsyncConnectionPool

from river import _admin
from river._args import Workers
from river._autoscale import Autoscaler
from river._completer import Completer, Outcome
from river._config import QUEUE_KEEPALIVE_INTERVAL, Config, QueueSettings, RateLimit
from river._driver import (
    AttemptKey,
    Queries,
    fetch_limited_op,
    fetch_op,
    notify_op,
    upsert_queues_op,
)
from river._elector import Elector
from river._errors import RiverError, describe
from river._events import Event, EventBus, EventKind, JobStatistics, job_event_kind
from river._executor import CancelReason, Executor
from river._insert import NotifyLimiter
from river._logfmt import job_fields
from river._maintenance import (
    JobCleaner,
    PeriodicJobEnqueuer,
    QueueCleaner,
    QueueDepthSampler,
    Reindexer,
    Rescuer,
    Scheduler,
    cut_guards,
    guard_owner,
    leadership_trusted,
    reset_guards,
)
from river._middleware import Middleware
from river._notifier import (
    InsertNotice,
    LeadershipNotice,
    Notice,
    Notifier,
    QueueMetadataNotice,
    QueueStateNotice,
)
from river._poller import POLL_ONLY_REFRESH, Poller
from river._pool import pooled
from river._producer import JobBudget, Producer
from river._sansio import Op, run_async, run_pooled
from river._supervisor import Supervisor
from river._testsignal import TestSignals
from river._types import JobRow, JobState

__all__ = ["MaintenanceServices", "Runtime", "maintenance_services"]

logger = logging.getLogger("river.client")

#: How often a running client touches its queues' river_queue rows (the queue cleaner deletes
#: queues idle for ``queue_idle_retention``, 24 h by default).
KEEPALIVE_INTERVAL = QUEUE_KEEPALIVE_INTERVAL

#: Seconds a fetch, a poll or one try of an outcome batch write may take, connection checkout
#: included. A connection whose link died silently (half-open TCP, a frozen network path) would
#: otherwise hold its caller for as long as the kernel keeps the socket; on expiry psycopg
#: closes it and the next try takes a fresh one. These statements take milliseconds (a batch of
#: 2,000 outcomes well under a second) when the database answers.
STATEMENT_DEADLINE = 15.0

#: The loop watch's tick, and how late a tick must come to be reported (Runtime._watch_loop).
LOOP_WATCH_TICK = 0.5
LOOP_BLOCKED = 1.0

#: Seconds after which a stop logs the cancelled jobs that still run (Runtime._wait_cancelled).
CANCEL_NOTICE = 5.0

#: How long a stopping client waits for a maintenance statement in flight (a pass of the
#: leader's cleaner, rescuer, scheduler...) before cancelling it: enough for a statement that
#: runs, short next to the 30 s such a statement may otherwise take when it waits for a lock
#: or a database that no longer answers (and the outcome writes' stop bound only starts after).
MAINTENANCE_STOP_GRACE = 2.0

MaintenanceServices = tuple[Scheduler, Rescuer, JobCleaner, QueueCleaner, Reindexer | None]


def maintenance_services(
    config: Config,
    pool: AsyncConnectionPool[Any],
    queries: Queries,
    workers: Workers,
    limiter: NotifyLimiter,
    conninfo: str,
) -> MaintenanceServices:
    """The maintenance services with a client's settings (the leader runs them in a loop;
    ``AsyncClient.maintenance_services()`` gives them to tests and scripts for ``run_once``)."""
    c = config
    reindexer = (
        Reindexer(conninfo, queries, c.reindexer_schedule, connect_kwargs=c.connection_kwargs)
        if c.reindexer_schedule is not None and conninfo
        else None
    )
    return (
        Scheduler(pool, queries, interval=c.scheduler_interval, limiter=limiter),
        Rescuer(
            pool,
            queries,
            workers,
            rescue_after=c.rescue_after_seconds,
            job_timeout=c.job_timeout_seconds,
            retry_policy=c.retry_policy,
            interval=c.rescuer_interval,
        ),
        JobCleaner(
            pool,
            queries,
            completed_retention=c.completed_job_retention,
            cancelled_retention=c.cancelled_job_retention,
            discarded_retention=c.discarded_job_retention,
            interval=c.job_cleaner_interval,
        ),
        QueueCleaner(pool, queries, idle=c.queue_idle_retention, interval=c.queue_cleaner_interval),
        reindexer,
    )


class Runtime:
    """See module doc. Producers use :attr:`executor`, :attr:`completer`, :attr:`budget`,
    :attr:`supervisor` and :meth:`fetch`."""

    def __init__(
        self,
        *,
        config: Config,
        client_id: str,
        conninfo: str,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        workers: Workers,
        middleware: tuple[Middleware, ...],
        limiter: NotifyLimiter,
        events: EventBus,
        periodic: PeriodicJobEnqueuer,
        producers: Mapping[str, Producer],
        run_op: Callable[[Op[Any]], Awaitable[Any]],
        on_override: Callable[[str, Any], None] = lambda name, stored: None,
        signals: TestSignals | None = None,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self._conninfo = conninfo
        self.pool = pool
        self.queries = queries
        self._workers = workers
        self._limiter = limiter
        self._events = events
        self._periodic = periodic
        self._producers = producers
        self._run_op = run_op
        #: Named test signals (river/_testsignal.py): no-ops unless a test enabled them.
        self.signals = signals if signals is not None else TestSignals()
        self.supervisor = Supervisor()
        #: Called once a stop's jobs have all ended, as the completer starts writing their
        #: last outcomes (``river worker`` tells its supervisor, which then waits for them).
        self.on_draining: Callable[[], None] | None = None
        self.completer = Completer(
            pool,
            queries,
            batch_size=config.completer_batch_size,
            flush_interval=config.completer_flush_interval,
            max_backlog=config.completer_max_backlog,
            write_timeout=STATEMENT_DEADLINE,
            on_persisted=self._publish_outcomes,
            want_rows=lambda: events.wants_job_rows,
        )
        threads = anyio.CapacityLimiter(config.sync_worker_threads)
        self.executor = Executor(
            workers,
            job_timeout=config.job_timeout_seconds,
            retry_policy=config.retry_policy,
            thread_limiter=threads,
            middleware=middleware,
            job_log=config.job_log,
            scheduler_interval=config.scheduler_interval,
            otel_work_span=config.otel_work_span,
        )
        # Written by the completer, which reports each write (see _publish_outcomes).
        self.executor.deferred_logs = {}
        depth_interval = config.queue_depth_interval_seconds  # the leader samples queue depth
        self.queue_depth = QueueDepthSampler(pool, queries, interval=depth_interval or 10.0)
        self.budget = JobBudget(self.completer.max_backlog, lambda: self.completer.backlog)
        self.autoscaler = Autoscaler(
            saturated=lambda: threads.borrowed_tokens >= threads.total_tokens,
            on_change=self._target_changed,
        )
        self.completer.on_written = self.budget.wake_next
        self.poller = Poller(
            queries,
            producers,
            self._run_with_deadline,
            self._paused_by_poll,
            on_override=on_override,
            polled=self.signals.polled,
            refresh_interval=POLL_ONLY_REFRESH if config.poll_only else None,
        )
        self.notifier: Notifier | None = None
        self.elector: Elector | None = None
        self._root: asyncio.Task[None] | None = None
        self._tg: TaskGroup | None = None
        self._services_tg: TaskGroup | None = None
        self._maintenance_scope: anyio.CancelScope | None = None
        # Bumped at every leadership change: a maintenance term that starts late (after the
        # leadership it was started for is gone) sees it and does not run.
        self._maintenance_term = 0

    async def fetch(self, queue: str, limit: int) -> list[JobRow]:
        """Lock and return up to ``limit`` due jobs of ``queue`` (their attempt begins).
        TimeoutError after ``STATEMENT_DEADLINE`` seconds (a dead link: see there)."""
        # asyncio's timeout, not anyio's: ~4 instead of ~10 µs per fetch, which counts when
        # each fetch brings a handful of jobs.
        async with asyncio.timeout(STATEMENT_DEADLINE):
            rows = await run_pooled(self.pool, fetch_op(self.queries, queue, limit, self.client_id))
        self.signals.fetched.emit((queue, len(rows)))
        return rows

    async def fetch_limited(
        self, queue: str, limit: int, rate_limit: RateLimit
    ) -> tuple[list[JobRow], float | None]:
        """:meth:`fetch` through the queue's token bucket (river/_sql/job.sql
        ``job_fetch_limited``): the jobs, and the tokens the bucket held before (None: its row
        was locked by another transaction; nothing was taken)."""
        op = partial(
            fetch_limited_op,
            self.queries,
            queue,
            limit,
            self.client_id,
            rate_limit.rate,
            rate_limit.capacity,
        )
        with anyio.fail_after(STATEMENT_DEADLINE):
            async with pooled(self.pool) as conn:
                rows, tokens, present = await run_async(conn, op())
                if not present:
                    # The queue's river_queue row is gone (deleted by hand): the bucket lives
                    # there, so recreate it and fetch again.
                    await run_async(conn, upsert_queues_op(self.queries, [queue]))
                    rows, tokens, present = await run_async(conn, op())
        self.signals.fetched.emit((queue, len(rows)))
        return rows, tokens

    def autoscale(self, producer: Producer, on: bool) -> None:
        """``producer``'s concurrency floats (``on``) or is fixed again."""
        self.autoscaler.track(producer, on)

    def _target_changed(self, producer: Producer, old: int, new: int) -> None:
        logger.debug(
            "queue %s: concurrency %d -> %d (autoscaled between %s and %d)",
            producer.queue,
            old,
            new,
            producer.settings.min_workers,
            producer.settings.max_workers,
            extra={"queue": producer.queue},
        )
        self.signals.scaled.emit((producer.queue, old, new))

    async def _run_with_deadline(self, op: Op[Any]) -> Any:
        with anyio.fail_after(STATEMENT_DEADLINE):
            return await self._run_op(op)

    @property
    def is_leader(self) -> bool:
        """Whether this client holds leadership now."""
        return self.elector is not None and self.elector.is_leader

    # --- start ----------------------------------------------------------------------------

    async def start(self, start_producers: Callable[[], Awaitable[None]]) -> None:
        """Start the completer, the services, then the producers (``start_producers`` calls
        :meth:`start_producer` for each queue). Returns once all run; raises what prevented
        the start, with everything already started stopped again."""
        started = anyio.Event()
        failure: list[BaseException] = []
        # The root task owns the task groups, so start() and stop() may be called from
        # different tasks (e.g. web framework start-up and shutdown hooks).
        self._root = asyncio.get_running_loop().create_task(
            self._root_main(started, failure, start_producers),
            name=f"river client {self.client_id}",
        )
        # Shielded: a start cancelled half-way would leave the root task running, out of reach
        # of stop(). Start-up is bounded by its own timeouts; the caller honours a
        # cancellation that arrived meanwhile.
        with anyio.CancelScope(shield=True):
            await started.wait()
        if failure:
            with anyio.CancelScope(shield=True):
                await self._root
            raise failure[0]

    async def _root_main(
        self,
        started: anyio.Event,
        failure: list[BaseException],
        start_producers: Callable[[], Awaitable[None]],
    ) -> None:
        supervise = self.supervisor.run
        # Maintenance statements of this run are this runtime's (cut_guards at stop).
        reset_guards(self)
        guard_owner.set(self)
        try:
            # Two levels: producers and the completer live in the outer group; the services
            # in an inner one that stop() cancels once every producer is done, after which the
            # completer drains and the outer group ends.
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(supervise, "completer", self.completer.run)
                async with anyio.create_task_group() as services:
                    self._services_tg = services
                    try:
                        await self._start_services(services)
                        await start_producers()
                    except BaseException as exc:
                        failure.append(exc)
                        services.cancel_scope.cancel()
                        for producer in self._producers.values():
                            producer.stop_fetching()
                    started.set()
                    if not failure:
                        await anyio.sleep_forever()
                if self.on_draining is not None:
                    try:
                        self.on_draining()
                    except Exception:  # a bug of the hook's: the outcomes still go out
                        logger.exception("the on_draining hook failed")
                self.completer.stop(self.config.completer_stop_timeout_seconds)
        finally:
            if self.executor.job_log is not None:
                self.executor.job_log.flush()  # summaries of failures still held back
            self._tg = None
            self._services_tg = None
            started.set()

    async def _start_services(self, tg: TaskGroup) -> None:
        supervise = self.supervisor.run
        config = self.config
        if not config.poll_only:
            if not self._conninfo:
                raise RiverError(
                    "the pool's conninfo is a callable, so the client cannot open its LISTEN "
                    "connection: use a pool with a conninfo string, or Config(poll_only=True)"
                )
            self.notifier = Notifier(
                self._conninfo,
                config.schema,
                self._dispatch,
                on_reconnect=self._resync,
                connect_kwargs={"connect_timeout": 10, **config.connection_kwargs},
                send_probe=self._send_probe,
            )
            await tg.start(supervise, "notifier", self.notifier.run)
        await tg.start(supervise, "poller", self.poller.run)
        await tg.start(supervise, "autoscaler", self.autoscaler.run)
        await tg.start(supervise, "keepalive", self._keepalive)
        await tg.start(supervise, "loop watch", self._watch_loop)
        if config.leader_election:
            self.elector = Elector(
                self.pool,
                self.queries,
                self.client_id,
                on_change=self.leadership_changed,
                elect_interval=config.leader_elect_interval,
                ttl=config.leader_ttl,
            )
            await tg.start(supervise, "elector", self.elector.run)

    # --- producers (the queue manager calls these under its lock) ------------------------

    async def start_producer(
        self, name: str, settings: QueueSettings, paused: bool, stored_override: Any = None
    ) -> Producer:
        """Start the producer of one queue; the caller adds it to the queue map.
        ``stored_override``: the override its settings took in (the poller reports changes
        from it on)."""
        assert self._tg is not None
        producer = Producer(self, name, settings, paused)
        self.autoscale(producer, settings.autoscaled)
        # Its first poll is due now: the poller's next query (one for every queue started
        # meanwhile) wakes it if it has due jobs. A fetch per producer instead would cost one
        # query per queue at start (2,000 queues: 2,000 queries contending for the pool).
        self.poller.add(name, stored_override)
        await self._tg.start(producer.run)
        return producer

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the services' task group (cancelled at stop); an exception is
        logged, never raised into the group. Nothing runs when the client is not started."""
        if self._services_tg is None:
            return

        async def guarded() -> None:
            try:
                await fn(*args)
            except Exception:
                logger.exception("%s failed", getattr(fn, "__qualname__", fn))

        self._services_tg.start_soon(guarded)

    async def retire_producer(self, producer: Producer) -> None:
        """After a producer of a removed queue is done: forget its queue and wait until its
        jobs' outcomes are written (only those: later outcomes do not hold it up)."""
        self.poller.forget(producer.queue)
        self.autoscale(producer, False)
        await self.completer.flushed(producer.last_outcome)

    # --- stop -----------------------------------------------------------------------------

    async def stop(self, timeout: float | None, hard: bool) -> None:
        """Soft stop (``hard`` False: let running jobs finish, up to ``timeout`` seconds) or
        hard stop; then stop everything, with every outcome written, before returning or
        re-raising (also when the caller is cancelled meanwhile)."""
        producers = list(self._producers.values())
        try:
            for p in producers:
                p.stop_fetching()
            if hard:
                for p in producers:
                    p.cancel_jobs()
            with anyio.move_on_after(timeout if timeout is not None else float("inf")):
                for p in producers:
                    await p.wait_done()
        finally:
            # Reached on time-out and also when the caller cancels a soft stop (e.g. a
            # shutdown hook's own deadline): what is still running is interrupted, and the
            # client is fully stopped, with every outcome written, before this returns or
            # re-raises. Otherwise every task would stay alive with no later stop() able to
            # end them.
            with anyio.CancelScope(shield=True):
                for p in producers:
                    p.cancel_jobs()
                await self._wait_cancelled(producers)
                await self.poller.stop()
                cut_guards(self, MAINTENANCE_STOP_GRACE)
                if self._services_tg is not None:
                    self._services_tg.cancel_scope.cancel()
                if self._root is not None:
                    await self._root

    async def _wait_cancelled(self, producers: list[Producer]) -> None:
        """Wait for the cancelled jobs to end. Not bounded: a sync worker's thread cannot be
        interrupted, and an async worker may swallow its cancellation; the stop waits for
        them (their outcomes must be written). Each one still running after
        :data:`CANCEL_NOTICE` seconds is logged, so that the wait is explained."""
        with anyio.move_on_after(CANCEL_NOTICE):
            for p in producers:
                await p.wait_done()
            return
        for p in producers:
            for running in list(p.running.values()):
                row = running.row
                logger.warning(
                    "job %d (kind %s, queue %s) still runs %gs after it was cancelled: the stop "
                    "waits for it to return (a sync worker should poll "
                    "river.cancel_requested(); an async one must not swallow CancelledError)",
                    row.id,
                    row.kind,
                    row.queue,
                    CANCEL_NOTICE,
                    extra=job_fields(row),
                )
        for p in producers:
            await p.wait_done()

    def give_up_writes(self) -> None:
        """Give up the outcome writes of a stop now (:meth:`Completer.give_up_now`), and stop
        waiting for maintenance statements in flight: the stop of a client that cannot reach
        its database ends within about a second (``river worker``'s third signal)."""
        cut_guards(self, 0)
        self.completer.give_up_now()

    # --- notifications ----------------------------------------------------------------------

    async def _send_probe(self, topic: str) -> None:
        # The notifier's start-up check (see Notifier._check_delivery): sent from the pool, as
        # every insert notification is.
        await self._run_op(notify_op(self.queries, topic, [""]))

    def _resync(self) -> None:
        # Notifications were missed (the LISTEN connection was away): re-read every queue's
        # row (pause, cluster-wide settings) and due jobs in one poll, which wakes the
        # producers with due jobs. Waking them all at once instead let a queue paused meanwhile
        # fetch (its pause not known until its next poll).
        self.poller.hint("*")

    def _dispatch(self, notice: Notice) -> None:
        # The notifier checked the payload's shape (parse_notice): the fields are typed.
        if isinstance(notice, LeadershipNotice):
            if self.elector is not None:
                self.elector.leadership_notification(notice)
        elif isinstance(notice, InsertNotice):
            producer = self._producers.get(notice.queue)
            if producer is not None:
                producer.wake(notified=True)
        elif isinstance(notice, QueueStateNotice | QueueMetadataNotice):
            self.poller.hint(notice.queue)
        elif self._services_tg is not None:  # a CancelNotice
            for producer in self._producers.values():
                if producer.runs_job(notice.job_id):
                    self._services_tg.start_soon(self._confirm_cancel, producer, notice.job_id)

    async def _confirm_cancel(self, producer: Producer, job_id: int) -> None:
        """Act on a cancel notification only after reading the row (notifications are hints)."""
        try:
            row: JobRow = await self._run_op(_admin.job_get_op(self.queries, job_id))
        except (psycopg.Error, OSError, RiverError) as exc:
            logger.warning("could not confirm cancel of job %d: %s", job_id, describe(exc))
            return
        # Only the attempt the row is at: a stale attempt still running here is not the one
        # the cancel was for (its outcome will not apply anyway).
        running = producer.running.get((job_id, row.attempt))
        if (
            running is not None
            and row.state is JobState.RUNNING
            and "cancel_attempted_at" in row.metadata
        ):
            running.cancel(CancelReason.REMOTE)

    def _paused_by_poll(self, name: str, paused: bool) -> None:
        logger.info("queue %s %s", name, "paused" if paused else "resumed", extra={"queue": name})
        self._events.publish(
            Event(EventKind.QUEUE_PAUSED if paused else EventKind.QUEUE_RESUMED, name)
        )

    # --- outcomes -----------------------------------------------------------------------------

    def _publish_outcomes(
        self, outcomes: list[Outcome], persisted: dict[AttemptKey, JobRow | str]
    ) -> None:
        self.signals.flushed.emit((len(persisted), len(outcomes) - len(persisted)))
        deferred = self.executor.deferred_logs
        if deferred:
            # Lines held back until the write told whether the worker's job_complete_tx had
            # committed before it raised (see Executor._log_after_tx).
            for o in outcomes:
                key = (o.job.id, o.job.attempt)
                line = deferred.pop(key, None)
                if line is not None:
                    value = persisted.get(key)
                    line(value.state.value if isinstance(value, JobRow) else value)
        events = self._events
        if not events.wants_job_rows:
            return
        now = time.monotonic()
        for o in outcomes:
            value = persisted.get((o.job.id, o.job.attempt))
            if value is None:
                continue  # deleted while it ran, or a stale attempt (not applied)
            row = value if isinstance(value, JobRow) else o.job
            state = row.state.value if isinstance(value, JobRow) else value
            attempted = o.job.attempted_at
            stats = JobStatistics(
                queue_wait=(attempted - o.job.scheduled_at).total_seconds() if attempted else 0.0,
                run_duration=o.finished - o.started,
                complete_duration=now - o.finished,
            )
            events.publish(Event(job_event_kind(o.event, state), row.queue, row, stats))

    # --- leadership and maintenance ---------------------------------------------------------

    def leadership_changed(self, leader: bool) -> None:
        """The elector's callback: start a maintenance term on gaining leadership, cancel the
        current one on losing it."""
        self.signals.leadership.emit(leader)
        self._maintenance_term += 1
        if self._maintenance_scope is not None:
            self._maintenance_scope.cancel()  # the previous term, if one still runs
        if leader and self._services_tg is not None:
            self._services_tg.start_soon(
                self._maintenance_main, self._maintenance_term, name="river maintenance"
            )

    async def _maintenance_main(self, term: int) -> None:
        if term != self._maintenance_term:
            return  # leadership changed again before this term began
        if self.elector is not None:
            # Every statement of the term's services checks the term is still trusted.
            leadership_trusted.set(self.elector.trusted)
        supervise = self.supervisor.run
        services = maintenance_services(
            self.config, self.pool, self.queries, self._workers, self._limiter, self._conninfo
        )
        with anyio.CancelScope() as scope:
            self._maintenance_scope = scope
            began = False
            try:
                async with anyio.create_task_group() as mtg:
                    for service in services:
                        if service is not None:
                            name = f"maintenance:{type(service).__name__.lower()}"
                            await mtg.start(supervise, name, service.run)
                    await mtg.start(supervise, "maintenance:periodic", self._periodic_service())
                    if self.config.queue_depth_interval is not None:
                        await mtg.start(supervise, "maintenance:queue_depth", self.queue_depth.run)
                    began = True
                    self.signals.maintenance.emit(True)
            finally:
                # Only this term's scope: when leadership is lost and won again quickly, the
                # next term may have set its own while this one was still unwinding, and
                # clearing it would leave that term out of reach of the next loss.
                if self._maintenance_scope is scope:
                    self._maintenance_scope = None
                if began:
                    self.signals.maintenance.emit(False)

    def _periodic_service(self) -> Callable[..., Awaitable[None]]:
        """The periodic enqueuer of one maintenance term: its run-on-start jobs are inserted
        when the term begins, not again when the supervisor restarts it after a crash."""
        first = True

        async def run(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            nonlocal first
            on_start, first = first, False
            await self._periodic.run(task_status=task_status, on_start=on_start)

        return run

    # --- keep-alive -----------------------------------------------------------------------------

    async def _watch_loop(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Say when the event loop was blocked (a tick came :data:`LOOP_BLOCKED` seconds or
        more late): an async worker calling blocking code (``time.sleep``, a sync driver)
        holds every job, fetch and lease renewal of the client meanwhile, and nothing else
        would tell. At most one line a minute, with how many blocks it covers."""
        task_status.started()
        last_warning = -math.inf
        blocks = 0
        longest = 0.0
        while True:
            before = time.monotonic()
            await anyio.sleep(LOOP_WATCH_TICK)
            now = time.monotonic()
            late = now - before - LOOP_WATCH_TICK
            if late < LOOP_BLOCKED:
                continue
            blocks += 1
            longest = max(longest, late)
            if now - last_warning >= 60.0:
                logger.warning(
                    "the event loop was blocked for %.1fs (%d time(s) since the last such "
                    "line): code on the loop, such as an async worker calling blocking "
                    "functions, held every job, fetch and leadership renewal of this client; "
                    "run blocking work in a sync worker (def work) instead",
                    longest,
                    blocks,
                )
                last_warning, blocks, longest = now, 0, 0.0

    async def _keepalive(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await anyio.sleep(KEEPALIVE_INTERVAL)
            try:
                await self._run_op(upsert_queues_op(self.queries, list(self._producers)))
            except (psycopg.Error, OSError) as exc:
                logger.warning("queue keep-alive failed: %s", describe(exc))
