"""``AsyncClient``: inserts, admin, and (with queues and workers) the job runtime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
import psycopg
from anyio.abc import TaskGroup, TaskStatus
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from river import _admin
from river._admin import JobListParams, JobListResult
from river._args import JobArgs, Workers
from river._completer import Completer, Outcome
from river._config import Config, QueueConfig, default_client_id
from river._driver import (
    AttemptKey,
    InsertBatch,
    Queries,
    QueueRow,
    copy_op,
    fetch_op,
    insert_many_op,
    notify_op,
    queries_for,
)
from river._elector import Elector, request_resign_payload
from river._errors import (
    InvalidConfigError,
    QueueAlreadyAddedError,
    QueueNotFoundError,
    RiverError,
)
from river._events import Event, EventBus, EventKind, JobStatistics, Subscription, job_event_kind
from river._executor import CancelReason, Executor
from river._insert import InsertDefaults, NotifyLimiter, build_batch, validate_queue_name
from river._maintenance import (
    JobCleaner,
    PeriodicJob,
    PeriodicJobEnqueuer,
    QueueCleaner,
    Reindexer,
    Rescuer,
    Scheduler,
)
from river._middleware import apply_insert_middleware
from river._notifier import (
    InsertNotice,
    LeadershipNotice,
    Notice,
    Notifier,
    QueueStateNotice,
)
from river._preflight import (
    SCHEMA_ERRORS,
    check_schema_async,
    open_pool_async,
    schema_error_async,
)
from river._producer import JobBudget, Producer, QueueSettings
from river._sansio import Op, run_async
from river._supervisor import ClientHealth, Supervisor
from river._telemetry import TELEMETRY
from river._types import InsertOpts, InsertResult, JobRow, JobState

__all__ = ["AsyncClient", "InsertManyItem", "PeriodicJobs", "QueueInfo", "QueueManager"]

logger = logging.getLogger("river.client")

#: An item of ``insert_many``: args alone, or (args, InsertOpts).
InsertManyItem = JobArgs | tuple[JobArgs, InsertOpts | None]

_KEEPALIVE_INTERVAL = 600.0


def _normalise_items(items: Sequence[InsertManyItem]) -> list[tuple[JobArgs, InsertOpts | None]]:
    out: list[tuple[JobArgs, InsertOpts | None]] = []
    for item in items:
        if isinstance(item, tuple):
            if len(item) != 2:
                raise RiverError("insert_many items must be args or (args, opts) pairs")
            out.append((item[0], item[1]))
        else:
            out.append((item, None))
    return out


class _Runtime:
    """What producers need from their client (kept small on purpose)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        executor: Executor,
        completer: Completer,
        client_id: str,
        supervisor: Supervisor,
    ) -> None:
        self.pool = pool
        self.queries = queries
        self.executor = executor
        self.completer = completer
        self.client_id = client_id
        self.supervisor = supervisor
        self.budget = JobBudget(completer.max_backlog, lambda: completer.backlog)

    async def fetch(self, queue: str, limit: int) -> list[JobRow]:
        async with self.pool.connection() as conn:
            return await run_async(conn, fetch_op(self.queries, queue, limit, self.client_id))


class AsyncClient:
    """The asyncio client: insert jobs, administer jobs and queues, and work jobs.

    ``database`` is a ``postgresql://`` URL (the client then owns a connection pool, opened on
    first use and closed by :meth:`close` / ``async with``), or a
    ``psycopg_pool.AsyncConnectionPool`` the caller owns. Pool connections should be in
    autocommit mode for best performance (the client's own pool is).

    With ``config.queues`` and ``config.workers`` the client works jobs between :meth:`start`
    and :meth:`stop`; ``async with client:`` does both. Without queues it is insert/admin-only.

    Every insert and admin method has a ``*_tx`` twin taking a ``psycopg.AsyncConnection`` to
    run inside the caller's transaction; notifications are then sent only if it commits.
    """

    def __init__(
        self,
        database: str | AsyncConnectionPool[Any],
        config: Config | None = None,
        *,
        pool_max_size: int = 10,
    ) -> None:
        self.config = config or Config()
        self.id = self.config.id or default_client_id()
        if isinstance(database, str):
            if not database.startswith(("postgres://", "postgresql://")) and "=" not in database:
                raise RiverError(
                    "database must be a postgresql:// URL, a libpq conninfo string, or an "
                    "AsyncConnectionPool"
                )
            self._conninfo = database
            self._pool_max_size = pool_max_size
            self._pool = self._new_pool()
            self._owns_pool = True
        elif isinstance(database, AsyncConnectionPool):
            # A pool with a dynamic conninfo (a callable) gives no URL for the LISTEN
            # connection; such clients must run with poll_only=True.
            self._conninfo = database.conninfo if isinstance(database.conninfo, str) else ""
            self._pool = database
            self._owns_pool = False
        else:
            raise RiverError(f"database must be a URL or an AsyncConnectionPool, not {database!r}")
        self._pool_opened = False
        self._pool_lock = anyio.Lock()
        self._queries = queries_for(self.config.schema)
        self._middleware = tuple(self.config.middleware)
        workers = self.config.workers
        self._workers = workers if workers is not None else Workers()
        self._insert_defaults = InsertDefaults(
            max_attempts=self.config.max_attempts,
            max_encoded_size=self.config.max_encoded_size,
            known_kinds=(
                frozenset(self._workers.kinds())
                if workers is not None and not self.config.skip_unknown_job_check
                else None
            ),
        )
        self._limiter = NotifyLimiter(self.config.resolve(QueueConfig()).fetch_cooldown)
        # Lock-guarded map of producers (see QueueManager); start/stop take the same lock.
        self._lock = anyio.Lock()
        self._queue_configs: dict[str, QueueConfig] = dict(self.config.queues)
        self._producers: dict[str, Producer] = {}
        self._state: Literal["stopped", "starting", "running", "stopping"] = "stopped"
        self._root: asyncio.Task[None] | None = None
        self._tg: TaskGroup | None = None
        self._runtime: _Runtime | None = None
        self._notifier: Notifier | None = None
        self._services_scope: anyio.CancelScope | None = None
        self._services_tg: TaskGroup | None = None
        self._poll_now = anyio.Event()
        self._poller_exit = False
        self._poller_done = anyio.Event()
        self._next_poll: dict[str, float] = {}
        # Next poll tick per distinct poll interval (see _schedule_poll).
        self._poll_ticks: dict[float, float] = {}
        # Monotonic time of the last local change of each producer's paused state: a poll
        # that started before it may have read river_queue before that change was written.
        self._paused_changed: dict[str, float] = {}
        self._elector: Elector | None = None
        self._maintenance_scope: anyio.CancelScope | None = None
        # Bumped at every leadership change: a maintenance term that starts late (after the
        # leadership it was started for is gone) sees it and does not run.
        self._maintenance_term = 0
        self._supervisor = Supervisor()
        self._periodic = PeriodicJobEnqueuer(
            self.config.periodic_jobs,
            self._insert_periodic,
            max_encoded_size=self.config.max_encoded_size,
        )
        self._events = EventBus(self.config.on_event)
        self.queues = QueueManager(self)
        self.periodic_jobs = PeriodicJobs(self._periodic)

    # --- connections ---------------------------------------------------------------------

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        return AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_max_size,
            open=False,
            kwargs={"autocommit": True, **self.config.connection_kwargs},
            name=f"river-{self.id}",
        )

    async def _open_pool(self) -> None:
        # Bounded by config.connect_timeout; a bad host, port, password or database fails at
        # once with the driver's reason (DatabaseUnavailableError, see river/_preflight.py).
        if self._owns_pool and not self._pool_opened:
            async with self._pool_lock:
                if not self._pool_opened:
                    try:
                        await open_pool_async(
                            self._pool, self._conninfo, self.config.connect_timeout_seconds
                        )
                    except BaseException:
                        self._pool = self._new_pool()  # a closed pool cannot be reopened
                        raise
                    self._pool_opened = True

    async def _preflight(self) -> None:
        """Before any service starts: open the pool, then check that River's schema is
        migrated (DatabaseUnavailableError, SchemaNotReadyError)."""
        await self._open_pool()
        timeout = self.config.connect_timeout_seconds
        await check_schema_async(self._pool, self.config.schema, timeout, self._conninfo)

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        await self._open_pool()
        async with self._pool.connection() as conn:
            yield conn

    async def _run(self, op: Op[Any]) -> Any:
        # What ``async with pool.connection()`` does, in half the time (this is the path of every
        # single insert): commit what a non-autocommit pool's connection left open, roll back
        # on error, and always give the connection back.
        if not self._pool_opened:
            await self._open_pool()
        pool = self._pool
        conn = await pool.getconn()
        try:
            result = await run_async(conn, op, own=True)
            if conn.pgconn.transaction_status != TransactionStatus.IDLE:
                await conn.commit()
            return result
        except BaseException as exc:
            if conn.pgconn.transaction_status != TransactionStatus.IDLE and not conn.closed:
                with contextlib.suppress(Exception):
                    await conn.rollback()
            if isinstance(exc, SCHEMA_ERRORS):  # River's tables missing or not migrated
                mapped = await schema_error_async(conn, self.config.schema, exc, own=True)
                if mapped is not None:
                    raise mapped from exc
            raise
        finally:
            await pool.putconn(conn)

    async def _run_tx(self, op: Op[Any]) -> Any:
        async with self._conn() as conn:
            try:
                async with conn.transaction():
                    return await run_async(conn, op)
            except SCHEMA_ERRORS as exc:
                mapped = await schema_error_async(conn, self.config.schema, exc, own=True)
                if mapped is None:
                    raise
                raise mapped from exc

    async def close(self) -> None:
        """Stop the client if running, then close the pool it owns."""
        await self.stop()
        if self._owns_pool and self._pool_opened:
            await self._pool.close()
            self._pool_opened = False

    async def __aenter__(self) -> AsyncClient:
        await self._open_pool()
        if self._queue_configs:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- insert ----------------------------------------------------------------------------

    def _batch(self, items: Sequence[InsertManyItem], *, many: bool) -> InsertBatch:
        return build_batch(
            apply_insert_middleware(self._middleware, _normalise_items(items)),
            self._insert_defaults,
            self._limiter,
            field_prefix="jobs" if many else "",
        )

    async def insert(self, args: JobArgs, opts: InsertOpts | None = None) -> InsertResult:
        """Insert one job (in its own transaction, with its notification). A duplicate of a
        unique job returns the existing row with ``unique_skipped_as_duplicate=True``."""
        batch = self._batch([(args, opts)], many=False)
        with TELEMETRY.insert_span(1, dict.fromkeys(batch.queue)):
            results: list[InsertResult] = await self._run(insert_many_op(self._queries, batch))
        return results[0]

    async def insert_tx(
        self, conn: psycopg.AsyncConnection[Any], args: JobArgs, opts: InsertOpts | None = None
    ) -> InsertResult:
        """Insert one job in the caller's transaction (notification sent only on commit)."""
        batch = self._batch([(args, opts)], many=False)
        results = await run_async(conn, insert_many_op(self._queries, batch))
        return results[0]

    async def insert_many(self, items: Sequence[InsertManyItem]) -> list[InsertResult]:
        """Insert many jobs in one statement; results in input order. Items are args or
        ``(args, InsertOpts)`` pairs. Two jobs with the same unique key in one batch raise
        DuplicateUniqueKeyInBatchError before anything is sent."""
        if not items:
            return []
        batch = self._batch(items, many=True)
        with TELEMETRY.insert_span(len(batch), dict.fromkeys(batch.queue)):
            results: list[InsertResult] = await self._run(insert_many_op(self._queries, batch))
        return results

    async def insert_many_tx(
        self, conn: psycopg.AsyncConnection[Any], items: Sequence[InsertManyItem]
    ) -> list[InsertResult]:
        """:meth:`insert_many` in the caller's transaction."""
        if not items:
            return []
        batch = self._batch(items, many=True)
        return await run_async(conn, insert_many_op(self._queries, batch))

    async def insert_many_fast(self, items: Sequence[InsertManyItem]) -> int:
        """Insert many jobs with COPY (the fastest path) and return how many were inserted.

        No rows come back, and there is no conflict handling: a live duplicate of a unique
        job aborts the whole batch with a database error (nothing is inserted)."""
        if not items:
            return 0
        batch = self._batch(items, many=True)
        with TELEMETRY.insert_span(len(batch), dict.fromkeys(batch.queue)):
            count: int = await self._run_tx(copy_op(self._queries, batch, datetime.now(UTC)))
        return count

    async def insert_many_fast_tx(
        self, conn: psycopg.AsyncConnection[Any], items: Sequence[InsertManyItem]
    ) -> int:
        """:meth:`insert_many_fast` in the caller's transaction."""
        if not items:
            return 0
        batch = self._batch(items, many=True)
        return await run_async(conn, copy_op(self._queries, batch, datetime.now(UTC)))

    # --- admin -----------------------------------------------------------------------------

    async def job_get(self, job_id: int) -> JobRow:
        """The job with this id (JobNotFoundError when there is none)."""
        row: JobRow = await self._run(_admin.job_get_op(self._queries, job_id))
        return row

    async def job_get_tx(self, conn: psycopg.AsyncConnection[Any], job_id: int) -> JobRow:
        """:meth:`job_get` on the caller's connection."""
        return await run_async(conn, _admin.job_get_op(self._queries, job_id))

    async def job_list(self, params: JobListParams | None = None) -> JobListResult:
        """A page of jobs (see :class:`river.JobListParams`)."""
        result: JobListResult = await self._run(
            _admin.job_list_op(self._queries, params or JobListParams())
        )
        return result

    async def job_list_tx(
        self, conn: psycopg.AsyncConnection[Any], params: JobListParams | None = None
    ) -> JobListResult:
        """:meth:`job_list` on the caller's connection."""
        return await run_async(conn, _admin.job_list_op(self._queries, params or JobListParams()))

    async def job_cancel(self, job_id: int) -> JobRow:
        """Cancel a job. Not running: cancelled now. Running: marked, and the client working it
        cancels the attempt (it ends ``cancelled``). Finalized: returned unchanged."""
        row: JobRow = await self._run(_admin.job_cancel_op(self._queries, job_id, _now()))
        return row

    async def job_cancel_tx(self, conn: psycopg.AsyncConnection[Any], job_id: int) -> JobRow:
        """:meth:`job_cancel` in the caller's transaction."""
        return await run_async(conn, _admin.job_cancel_op(self._queries, job_id, _now()))

    async def job_retry(self, job_id: int) -> JobRow:
        """Make a job available now (not when it is running or already due); a job that used
        all its attempts gets one more."""
        row: JobRow = await self._run(_admin.job_retry_op(self._queries, job_id))
        return row

    async def job_retry_tx(self, conn: psycopg.AsyncConnection[Any], job_id: int) -> JobRow:
        """:meth:`job_retry` in the caller's transaction."""
        return await run_async(conn, _admin.job_retry_op(self._queries, job_id))

    async def job_delete(self, job_id: int) -> JobRow:
        """Delete a job and return it; refuses a running job (JobRunningError)."""
        row: JobRow = await self._run(_admin.job_delete_op(self._queries, job_id))
        return row

    async def job_delete_tx(self, conn: psycopg.AsyncConnection[Any], job_id: int) -> JobRow:
        """:meth:`job_delete` in the caller's transaction."""
        return await run_async(conn, _admin.job_delete_op(self._queries, job_id))

    async def job_delete_many(self, **filters: Any) -> list[JobRow]:
        """Delete up to ``limit`` (default 100) non-running jobs matching ``ids``, ``kinds``,
        ``queues``, ``states``, ``priorities`` (at least one, or ``all=True``)."""
        rows: list[JobRow] = await self._run(_admin.job_delete_many_op(self._queries, **filters))
        return rows

    async def job_update(self, job_id: int, *, output: Any) -> JobRow:
        """Set the job's recorded output (metadata ``output``; at most 32 MB encoded)."""
        row: JobRow = await self._run(_admin.job_update_op(self._queries, job_id, output=output))
        return row

    async def queue_get(self, name: str) -> QueueRow:
        """The river_queue row of a queue (QueueNotFoundError when absent)."""
        row: QueueRow = await self._run(_admin.queue_get_op(self._queries, name))
        return row

    async def queue_list(self, limit: int = 100) -> list[QueueRow]:
        """Queues known to the database, ordered by name."""
        rows: list[QueueRow] = await self._run(_admin.queue_list_op(self._queries, limit))
        return rows

    async def queue_pause(self, name: str) -> None:
        """Pause a queue (``"*"``: all) for every client on the database, Go ones included."""
        await self._run(_admin.queue_pause_op(self._queries, name, pause=True))

    async def queue_pause_tx(self, conn: psycopg.AsyncConnection[Any], name: str) -> None:
        """:meth:`queue_pause` in the caller's transaction."""
        await run_async(conn, _admin.queue_pause_op(self._queries, name, pause=True))

    async def queue_resume(self, name: str) -> None:
        """Resume a paused queue (``"*"``: all)."""
        await self._run(_admin.queue_pause_op(self._queries, name, pause=False))

    async def queue_resume_tx(self, conn: psycopg.AsyncConnection[Any], name: str) -> None:
        """:meth:`queue_resume` in the caller's transaction."""
        await run_async(conn, _admin.queue_pause_op(self._queries, name, pause=False))

    async def queue_update(self, name: str, *, metadata: Mapping[str, Any]) -> QueueRow:
        """Replace a queue's metadata (broadcast as ``metadata_changed``)."""
        row: QueueRow = await self._run(_admin.queue_update_op(self._queries, name, metadata))
        return row

    # --- runtime ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the client is started (working jobs)."""
        return self._state == "running"

    async def start(self) -> None:
        """Start working jobs. Returns once every producer runs. Idempotent; safe to call
        concurrently with other start/stop calls and queue changes (they serialise).

        Before anything starts, the database is checked: DatabaseUnavailableError (with the
        driver's reason) when it cannot be reached within ``config.connect_timeout``, and
        SchemaNotReadyError when River's migrations are not all applied."""
        async with self._lock:
            if self._state == "running":
                return
            if self.config.workers is None:
                raise RiverError("a client needs Config(workers=...) to work jobs")
            if self.config.pooler == "transaction" and not self.config.poll_only:
                raise InvalidConfigError(
                    "poll_only",
                    'must be True with pooler="transaction": LISTEN needs a server session '
                    "of its own, which a transaction pooler lends to other clients between "
                    "statements, so notifications would be lost (docs/production.md)",
                )
            await self._preflight()
            self._state = "starting"
            started = anyio.Event()
            failure: list[BaseException] = []
            # The root task owns the client's task group, so start() and stop() may be called
            # from different tasks (e.g. web framework start-up and shutdown hooks).
            self._root = asyncio.get_running_loop().create_task(
                self._root_main(started, failure), name=f"river client {self.id}"
            )
            # Shielded: a start cancelled half-way would leave the root task running with
            # the state stuck at "starting", out of reach of stop(). Start-up is bounded by
            # its own timeouts; a cancellation that arrived meanwhile is honoured below.
            with anyio.CancelScope(shield=True):
                await started.wait()
            if failure:
                self._state = "stopped"
                with anyio.CancelScope(shield=True):
                    await self._root
                raise failure[0]
            self._state = "running"
            try:
                await anyio.lowlevel.checkpoint_if_cancelled()
            except anyio.get_cancelled_exc_class():
                # The caller gave up on start(): leave the client stopped, not half-started.
                with anyio.CancelScope(shield=True):
                    await self._stop_locked(0, hard=True)
                raise
            logger.info("river client %s started with %d queues", self.id, len(self._producers))

    async def _root_main(self, started: anyio.Event, failure: list[BaseException]) -> None:
        config = self.config
        completer = Completer(
            self._pool,
            self._queries,
            batch_size=config.completer_batch_size,
            flush_interval=config.completer_flush_interval,
            max_backlog=config.completer_max_backlog,
            on_persisted=self._publish_outcomes,
            want_rows=lambda: self._events.wants_job_rows,
        )
        executor = Executor(
            self._workers,
            job_timeout=config.job_timeout_seconds,
            retry_policy=config.retry_policy,
            thread_limiter=anyio.CapacityLimiter(config.sync_worker_threads),
            middleware=self._middleware,
            job_log=config.job_log,
        )
        self._supervisor.reset()
        self._runtime = _Runtime(
            self._pool, self._queries, executor, completer, self.id, self._supervisor
        )
        completer.on_written = self._runtime.budget.wake_next
        try:
            # Two levels: producers and the completer live in the outer group; the services
            # (notifier, poller, keep-alive) in an inner one that stop() cancels once every
            # producer is done, after which the completer drains and the outer group ends.
            async with anyio.create_task_group() as tg:
                self._tg = tg
                supervise = self._supervisor.run
                await tg.start(supervise, "completer", completer.run)
                async with anyio.create_task_group() as services:
                    self._services_tg = services
                    self._services_scope = services.cancel_scope
                    try:
                        await self._start_services(services)
                        paused = await self._upsert_queues(list(self._queue_configs))
                        for name, qc in self._queue_configs.items():
                            await self._start_producer(name, qc, name in paused)
                    except BaseException as exc:
                        failure.append(exc)
                        services.cancel_scope.cancel()
                        for producer in self._producers.values():
                            producer.stop_fetching()
                    started.set()
                    if not failure:
                        await anyio.sleep_forever()
                completer.stop()
        finally:
            if executor.job_log is not None:
                executor.job_log.flush()  # summaries of failures still held back
            self._tg = None
            self._services_tg = None
            self._services_scope = None
            started.set()

    async def _start_services(self, tg: TaskGroup) -> None:
        if not self.config.poll_only:
            if not self._conninfo:
                raise RiverError(
                    "the pool's conninfo is a callable, so the client cannot open its LISTEN "
                    "connection: use a pool with a conninfo string, or Config(poll_only=True)"
                )
            self._notifier = Notifier(
                self._conninfo,
                self.config.schema,
                self._dispatch,
                on_reconnect=self._wake_all,
                connect_kwargs={"connect_timeout": 10, **self.config.connection_kwargs},
                send_probe=self._send_probe,
            )
            await tg.start(self._supervisor.run, "notifier", self._notifier.run)
        await tg.start(self._supervisor.run, "poller", self._poll_loop)
        await tg.start(self._supervisor.run, "keepalive", self._keepalive_loop)
        if self.config.leader_election:
            assert self._runtime is not None
            self._elector = Elector(
                self._pool,
                self._queries,
                self.id,
                on_change=self._leadership_changed,
                elect_interval=self.config.leader_elect_interval,
                ttl=self.config.leader_ttl,
            )
            await tg.start(self._supervisor.run, "elector", self._elector.run)

    def health(self) -> ClientHealth:
        """The health of this client's background services (notifier, poller, keep-alive,
        elector, completer, each queue's fetch loop, and the maintenance services while
        leading), by name, e.g. ``"notifier"``, ``"producer:default"``,
        ``"maintenance:rescuer"``.

        A service that crashes is restarted with capped exponential backoff (0.5 s doubling
        up to 10 s) and its ``restarts`` counted; one that crashes five times in a row without
        a stable minute in between is ``failed`` and makes the client unhealthy
        (``healthy`` False, its name in ``failed``) until it runs a minute without crashing.
        ``river worker`` exits when its client stays unhealthy (docs/reliability.md). Before
        start and after stop the client is healthy with no services."""
        return ClientHealth.of(self._supervisor.health())

    @property
    def is_leader(self) -> bool:
        """Whether this client currently holds leadership (and runs maintenance)."""
        return self._elector is not None and self._elector.is_leader

    def _leadership_changed(self, leader: bool) -> None:
        self._maintenance_term += 1
        if self._maintenance_scope is not None:
            self._maintenance_scope.cancel()  # the previous term, if one still runs
        if leader and self._services_tg is not None:
            self._services_tg.start_soon(
                self._maintenance_main, self._maintenance_term, name="river maintenance"
            )

    def maintenance_services(
        self,
    ) -> tuple[Scheduler, Rescuer, JobCleaner, QueueCleaner, Reindexer | None]:
        """The maintenance services with this client's settings (for ``run_once`` in tests and
        scripts; the leader runs them in a loop on its own)."""
        c = self.config
        reindexer = (
            Reindexer(
                self._conninfo,
                self._queries,
                c.reindexer_schedule,
                connect_kwargs=c.connection_kwargs,
            )
            if c.reindexer_schedule is not None and self._conninfo
            else None
        )
        return (
            Scheduler(
                self._pool, self._queries, interval=c.scheduler_interval, limiter=self._limiter
            ),
            Rescuer(
                self._pool,
                self._queries,
                self._workers,
                rescue_after=c.rescue_after_seconds,
                job_timeout=c.job_timeout_seconds,
                retry_policy=c.retry_policy,
                interval=c.rescuer_interval,
            ),
            JobCleaner(
                self._pool,
                self._queries,
                completed_retention=c.completed_job_retention,
                cancelled_retention=c.cancelled_job_retention,
                discarded_retention=c.discarded_job_retention,
                interval=c.job_cleaner_interval,
            ),
            QueueCleaner(
                self._pool,
                self._queries,
                idle=c.queue_idle_retention,
                interval=c.queue_cleaner_interval,
            ),
            reindexer,
        )

    async def _maintenance_main(self, term: int) -> None:
        if term != self._maintenance_term:
            return  # leadership changed again before this term began
        supervise = self._supervisor.run
        with anyio.CancelScope() as scope:
            self._maintenance_scope = scope
            try:
                async with anyio.create_task_group() as mtg:
                    for service in self.maintenance_services():
                        if service is not None:
                            name = f"maintenance:{type(service).__name__.lower()}"
                            await mtg.start(supervise, name, service.run)
                    await mtg.start(supervise, "maintenance:periodic", self._periodic.run)
            finally:
                # Only this term's scope: when leadership is lost and won again quickly, the
                # next term may have set its own while this one was still unwinding, and
                # clearing it would leave that term out of reach of the next loss.
                if self._maintenance_scope is scope:
                    self._maintenance_scope = None

    async def _insert_periodic(self, items: list[tuple[JobArgs, InsertOpts | None]]) -> None:
        batch = build_batch(items, self._insert_defaults, self._limiter, field_prefix="periodic",
                            allow_reserved_metadata=True)  # fmt: skip
        await self._run(insert_many_op(self._queries, batch))

    async def request_resign(self) -> None:
        """Ask the current leader (any client on the database) to resign; it then competes
        again with the others. Useful before maintenance of a leader's host."""
        await self._run(notify_op(self._queries, "river_leadership", [request_resign_payload()]))

    async def _upsert_queues(self, names: list[str]) -> set[str]:
        if not names:
            return set()
        async with self._conn() as conn:
            cur = await conn.execute(self._queries.queue_upsert_many, {"names": names})
            rows = await cur.fetchall()
        return {r[0] for r in rows if r[3] is not None}

    async def _start_producer(self, name: str, qc: QueueConfig, paused: bool) -> Producer:
        assert self._tg is not None and self._runtime is not None
        producer = Producer(self._runtime, name, self.config.resolve(qc, name), paused)
        self._producers[name] = producer
        self._paused_changed[name] = time.monotonic()
        # Its first poll is due now: the poller's next query (one for every queue started
        # meanwhile) wakes it if it has due jobs. A fetch per producer instead would cost one
        # query per queue at start (2,000 queues: 2,000 queries contending for the pool).
        # The poller then keeps it on the shared tick of its interval.
        self._next_poll[name] = time.monotonic()
        self._poll_now.set()
        await self._tg.start(producer.run)
        return producer

    async def stop(self, timeout: float | None = None) -> None:
        """Soft stop: fetch nothing more and let running jobs finish; after ``timeout``
        seconds (None: wait forever) cancel the rest, which go back to ``available`` with
        their attempt restored. Every finished job's state is written before it returns.
        Idempotent and safe to call concurrently."""
        async with self._lock:
            await self._stop_locked(timeout, hard=False)

    async def stop_and_cancel(self) -> None:
        """Hard stop: cancel running jobs now (they return to ``available``, attempt restored),
        write every outcome, then stop.

        It also escalates a soft stop (or a queue drain) already in progress: running jobs are
        cancelled at once, without waiting for the lock that the slower operation holds."""
        for producer in list(self._producers.values()):
            producer.cancel_jobs()
        async with self._lock:
            await self._stop_locked(0, hard=True)

    async def _stop_locked(self, timeout: float | None, hard: bool) -> None:
        if self._state != "running" or self._root is None:
            return
        self._state = "stopping"
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
            # re-raises. Otherwise the state would stay "stopping" with every task alive and
            # no later stop() able to end them.
            with anyio.CancelScope(shield=True):
                for p in producers:
                    p.cancel_jobs()
                for p in producers:
                    await p.wait_done()
                # Let the poller finish a query in flight and leave on its own: cancelling a
                # query mid-way costs its pool connection (and a warning from psycopg).
                self._poller_exit = True
                self._poll_now.set()
                with anyio.move_on_after(5):
                    await self._poller_done.wait()
                if self._services_scope is not None:
                    self._services_scope.cancel()
                try:
                    await self._root
                finally:
                    self._root = None
                    self._producers.clear()
                    self._notifier = None
                    self._elector = None
                    self._runtime = None
                    self._state = "stopped"
        logger.info("river client %s stopped", self.id)

    def subscribe(self, *kinds: str, buffer: int = 1000) -> Subscription:
        """Subscribe to events (all kinds when none given; see :class:`river.EventKind`).

        Returns a :class:`river.Subscription`: iterate it with ``async for``; close it (or use
        ``with``) when done. Its buffer holds ``buffer`` events; when full, new events are
        dropped for this subscriber (counted in ``dropped``) rather than slowing the runtime.
        """
        return self._events.subscribe(kinds, buffer)

    def _publish_queue_event(self, kind: str, queue: str, **details: Any) -> None:
        self._events.publish(Event(kind, queue, details=details or None))

    def _publish_outcomes(
        self, outcomes: list[Outcome], persisted: dict[AttemptKey, JobRow | str]
    ) -> None:
        if not self._events.wants_job_rows:
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
            self._events.publish(Event(job_event_kind(o.event, state), row.queue, row, stats))

    async def _send_probe(self, topic: str) -> None:
        # The notifier's start-up check (see Notifier._check_delivery): sent from the pool, as
        # every insert notification is.
        await self._run(notify_op(self._queries, topic, [""]))

    def _wake_all(self) -> None:
        for p in self._producers.values():
            p.wake()

    def _dispatch(self, notice: Notice) -> None:
        # The notifier checked the payload's shape (parse_notice): the fields are typed.
        if isinstance(notice, LeadershipNotice):
            if self._elector is not None:
                self._elector.leadership_notification(notice)
        elif isinstance(notice, InsertNotice):
            producer = self._producers.get(notice.queue)
            if producer is not None:
                producer.wake(notified=True)
        elif isinstance(notice, QueueStateNotice):
            # A hint: re-read river_queue for the queue(s) now rather than trusting it.
            targets = list(self._producers) if notice.queue == "*" else [notice.queue]
            for name in targets:
                if name in self._next_poll:
                    self._next_poll[name] = 0.0
            self._poll_now.set()
        elif self._services_tg is not None:  # a CancelNotice
            for producer in self._producers.values():
                if producer.runs_job(notice.job_id):
                    self._services_tg.start_soon(self._confirm_cancel, producer, notice.job_id)

    async def _confirm_cancel(self, producer: Producer, job_id: int) -> None:
        """Act on a cancel notification only after reading the row (notifications are hints)."""
        try:
            row: JobRow = await self._run(_admin.job_get_op(self._queries, job_id))
        except (psycopg.Error, OSError, RiverError) as exc:
            logger.warning("could not confirm cancel of job %d: %s", job_id, exc)
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

    async def _poll_loop(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """One query per tick for all of this client's queues: which have due jobs, and which
        are paused. Wakes only producers with due jobs (flat idle cost in the queue count)."""
        self._poller_exit = False
        self._poller_done = anyio.Event()
        task_status.started()
        try:
            await self._poll_until_stopped()
        finally:
            self._poller_done.set()

    async def _poll_until_stopped(self) -> None:
        # Looking for due jobs is skipped for producers that will fetch anyway (see
        # Producer.wants_poll): under load the index ranges of busy queues are full of entries
        # of rows just fetched or completed, and probing 2,000 of them took seconds of server
        # time per tick, holding back the xmin horizon, which kept those entries alive.
        text = self._queries.sql(
            "SELECT q.name, rq.paused_at IS NOT NULL, CASE WHEN q.probe THEN EXISTS ("
            " SELECT 1 FROM /* schema */river_job AS j"
            " WHERE j.state = 'available' AND j.queue = q.name AND j.scheduled_at <= now())"
            " ELSE false END"
            " FROM unnest(%(names)s::text[], %(probe)s::boolean[]) AS q(name, probe)"
            " LEFT JOIN /* schema */river_queue AS rq ON rq.name = q.name"
        )
        while not self._poller_exit:
            now = time.monotonic()
            due = [n for n, t in self._next_poll.items() if t <= now and n in self._producers]
            if due:
                poll_started = now
                try:
                    probe = [self._producers[n].wants_poll for n in due]
                    async with self._conn() as conn:
                        cur = await conn.execute(text, {"names": due, "probe": probe}, prepare=True)
                        rows = await cur.fetchall()
                except (psycopg.Error, OSError) as exc:
                    logger.warning("poll failed: %s", exc)
                    rows = []
                    retry_at = time.monotonic() + 1.0
                    for n in due:  # back off instead of retrying in a tight loop
                        self._next_poll[n] = max(self._next_poll.get(n, 0.0), retry_at)
                now = time.monotonic()
                for name, paused, has_jobs in rows:
                    producer = self._producers.get(name)
                    if producer is None:
                        continue
                    producer.polled += 1
                    self._schedule_poll(name, producer.settings.fetch_poll_interval, now)
                    stale = self._paused_changed.get(name, -math.inf) >= poll_started
                    if paused != producer.paused and not stale:
                        producer.set_paused(paused)
                        logger.info("queue %s %s", name, "paused" if paused else "resumed")
                        self._publish_queue_event(
                            EventKind.QUEUE_PAUSED if paused else EventKind.QUEUE_RESUMED, name
                        )
                    if has_jobs and not producer.paused:
                        producer.wake()
            upcoming = [t for n, t in self._next_poll.items() if n in self._producers]
            sleep_for = max(0.0, min(upcoming) - time.monotonic()) if upcoming else 1.0
            with anyio.move_on_after(sleep_for):
                await self._poll_now.wait()
            if self._poll_now.is_set() and not self._poller_exit:
                # Woken early (queues started, a pause/resume hint): let wake-ups arriving
                # together (e.g. 2,000 queues starting) share one query.
                await anyio.sleep(0.01)
            self._poll_now = anyio.Event()

    def _schedule_poll(self, name: str, interval: float, now: float) -> None:
        """Schedule the next poll of ``name`` on the shared tick of its poll interval: one tick
        per distinct interval (with 0-10 % jitter, drawn per tick), so queues never drift
        apart and the poll stays one query per tick however many queues there are."""
        tick = self._poll_ticks.get(interval)
        if tick is None or not now < tick <= now + interval * 1.1:
            tick = now + interval * (1 + random.uniform(0, 0.1))
            self._poll_ticks[interval] = tick
        self._next_poll[name] = tick

    async def _keepalive_loop(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await anyio.sleep(_KEEPALIVE_INTERVAL)
            try:
                await self._upsert_queues(list(self._producers))
            except (psycopg.Error, OSError) as exc:
                logger.warning("queue keep-alive failed: %s", exc)


def _now() -> datetime:
    return datetime.now(UTC)


class PeriodicJobs:
    """``client.periodic_jobs``: add or remove periodic jobs, also while the client runs."""

    def __init__(self, enqueuer: PeriodicJobEnqueuer) -> None:
        self._enqueuer = enqueuer

    def add(self, job: PeriodicJob) -> PeriodicJob:
        """Add a periodic job; returns it (a handle for :meth:`remove`)."""
        if not isinstance(job, PeriodicJob):
            raise RiverError("add() takes a river.PeriodicJob")
        if job.id is not None and any(j.id == job.id for j in self._enqueuer.jobs):
            raise RiverError(f"a periodic job with id {job.id!r} already exists")
        self._enqueuer.add(job)
        return job

    def remove(self, job_or_id: PeriodicJob | str) -> bool:
        """Remove a periodic job by handle or id; return whether it existed."""
        return self._enqueuer.remove(job_or_id)

    def list(self) -> list[PeriodicJob]:
        """The periodic jobs."""
        return list(self._enqueuer.jobs)


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue of this client: its config as given, the effective settings, and live state."""

    name: str
    config: QueueConfig
    settings: QueueSettings
    paused: bool
    running_jobs: int
    #: Whether its producer runs (the client is started).
    active: bool


class QueueManager:
    """The client's queues, changeable while it runs: ``client.queues`` (docs/queues.md).

    Every change takes the client's lock, which :meth:`AsyncClient.start` and
    :meth:`AsyncClient.stop` also take: changes never interleave with each other or with a
    start/stop, and the client is always fully started or fully stopped. A change touches only
    the producer concerned; other queues never pause. Each change is logged at INFO (one line)
    and published as an event (queue_added, queue_removed, queue_updated, queue_paused,
    queue_resumed).
    """

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def _info(self, name: str) -> QueueInfo:
        c = self._client
        config = c._queue_configs[name]
        producer = c._producers.get(name)
        return QueueInfo(
            name=name,
            config=config,
            settings=producer.settings if producer else c.config.resolve(config, name),
            paused=producer.paused if producer else False,
            running_jobs=len(producer.running) if producer else 0,
            active=producer is not None,
        )

    def list(self) -> dict[str, QueueInfo]:
        """Every queue of this client, by name."""
        return {name: self._info(name) for name in sorted(self._client._queue_configs)}

    def get(self, name: str) -> QueueInfo:
        """One queue (QueueNotFoundError when the client has no such queue)."""
        if name not in self._client._queue_configs:
            raise QueueNotFoundError(name)
        return self._info(name)

    async def add(self, name: str, config: QueueConfig | None = None) -> QueueInfo:
        """Add a queue. Validated first (nothing changes on an error); its producer starts now
        when the client runs, else with the client. Raises QueueAlreadyAddedError."""
        validate_queue_name(name)
        config = config if config is not None else QueueConfig()
        if not isinstance(config, QueueConfig):
            raise InvalidConfigError("config", "must be a river.QueueConfig")
        c = self._client
        settings = c.config.resolve(config, name)
        async with c._lock:
            if name in c._queue_configs:
                raise QueueAlreadyAddedError(name)
            if c._state == "running":
                paused = await c._upsert_queues([name])
                c._queue_configs[name] = config
                await c._start_producer(name, config, name in paused)
            else:
                c._queue_configs[name] = config
        logger.info(
            "queue %s added (max_workers=%d, fetch_cooldown=%gs, fetch_poll_interval=%gs)",
            name,
            settings.max_workers,
            settings.fetch_cooldown,
            settings.fetch_poll_interval,
        )
        c._publish_queue_event(EventKind.QUEUE_ADDED, name)
        return (
            self._info(name)
            if name in c._queue_configs
            else QueueInfo(name, config, settings, False, 0, False)
        )

    async def remove(
        self,
        name: str,
        *,
        mode: Literal["drain", "cancel"] = "drain",
        timeout: float | None = None,
    ) -> None:
        """Remove a queue. Its producer stops fetching at once; ``mode="drain"`` waits for its
        running jobs (up to ``timeout`` seconds, None: no limit, after which they are
        cancelled), ``mode="cancel"`` cancels them now. Cancelled jobs go back to
        ``available`` with their attempt restored; every outcome is written before it
        returns. Jobs still queued in the database stay there. Raises QueueNotFoundError."""
        if mode not in ("drain", "cancel"):
            raise RiverError(f"mode must be 'drain' or 'cancel', not {mode!r}")
        c = self._client
        async with c._lock:
            if name not in c._queue_configs:
                raise QueueNotFoundError(name)
            producer = c._producers.get(name)
            if producer is not None:
                producer.stop_fetching()
                if mode == "cancel":
                    producer.cancel_jobs()
                with anyio.move_on_after(math.inf if timeout is None else timeout):
                    await producer.wait_done()
                producer.cancel_jobs()
                await producer.wait_done()
                del c._producers[name]
                # Like stop: the outcomes of its jobs are written before remove returns (only
                # those: other queues' outcomes written later do not hold it up).
                assert c._runtime is not None
                await c._runtime.completer.flushed(producer.last_outcome)
            c._next_poll.pop(name, None)
            c._paused_changed.pop(name, None)
            del c._queue_configs[name]
        logger.info("queue %s removed (%s)", name, mode)
        c._publish_queue_event(EventKind.QUEUE_REMOVED, name, mode=mode)

    async def update(
        self,
        name: str,
        *,
        max_workers: int | None = _UNSET,
        fetch_cooldown: float | timedelta | None = _UNSET,
        fetch_poll_interval: float | timedelta | None = _UNSET,
    ) -> QueueInfo:
        """Change a queue's settings live. Only the fields given change; ``None`` resets a field
        to the client's default (inheritance is resolved again). The queue's fetch loop is
        stopped between two fetches, modified and restarted; running jobs are never
        interrupted: growing adds slots at once, shrinking lets surplus jobs finish and fetches
        nothing until below the new limit. Other queues are not touched. Raises
        QueueNotFoundError, or InvalidConfigError (nothing changes)."""
        c = self._client
        async with c._lock:
            if name not in c._queue_configs:
                raise QueueNotFoundError(name)
            old = c._queue_configs[name]
            new = QueueConfig(
                max_workers=old.max_workers if max_workers is _UNSET else max_workers,
                fetch_cooldown=old.fetch_cooldown if fetch_cooldown is _UNSET else fetch_cooldown,
                fetch_poll_interval=(
                    old.fetch_poll_interval
                    if fetch_poll_interval is _UNSET
                    else fetch_poll_interval
                ),
            )
            settings = c.config.resolve(new, name)
            c._queue_configs[name] = new
            producer = c._producers.get(name)
            if producer is not None:
                await producer.update_settings(settings)
                # The restarted producer fetches at once; the next poll follows the new interval.
                c._schedule_poll(name, settings.fetch_poll_interval, time.monotonic())
                c._poll_now.set()
        logger.info(
            "queue %s updated (max_workers=%d, fetch_cooldown=%gs, fetch_poll_interval=%gs)",
            name,
            settings.max_workers,
            settings.fetch_cooldown,
            settings.fetch_poll_interval,
        )
        c._publish_queue_event(
            EventKind.QUEUE_UPDATED,
            name,
            max_workers=settings.max_workers,
            fetch_cooldown=settings.fetch_cooldown,
            fetch_poll_interval=settings.fetch_poll_interval,
        )
        return self._info(name)

    async def pause(self, name: str) -> None:
        """Pause a queue of this client for every client on the database: persisted in
        river_queue and broadcast on river_control (River (Go) clients obey too). This
        client's producer stops fetching at once; running jobs go on."""
        await self._set_paused(name, True)

    async def resume(self, name: str) -> None:
        """Resume a paused queue everywhere; this client's producer fetches at once."""
        await self._set_paused(name, False)

    async def _set_paused(self, name: str, paused: bool) -> None:
        c = self._client
        async with c._lock:
            if name not in c._queue_configs:
                raise QueueNotFoundError(name)
            await c._upsert_queues([name])
            await c._run(_admin.queue_pause_op(c._queries, name, pause=paused))
            producer = c._producers.get(name)
            changed = producer is not None and producer.paused != paused
            if producer is not None:
                producer.set_paused(paused)
                c._paused_changed[name] = time.monotonic()
        if changed or producer is None:
            logger.info("queue %s %s", name, "paused" if paused else "resumed")
            c._publish_queue_event(
                EventKind.QUEUE_PAUSED if paused else EventKind.QUEUE_RESUMED, name
            )
