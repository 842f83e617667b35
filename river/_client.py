"""``AsyncClient``: the façade of the library's async side: inserts and admin on its
connection pool, and, with queues and workers, the job runtime (river/_runtime.py) whose
queues the queue manager (river/_queues.py, ``client.queues``) owns."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import psycopg
from psycopg_pool import AsyncConnectionPool

from river._args import JobArgs, Workers
from river._config import Config, QueueConfig, default_client_id
from river._conn_adapt import async_connection
from river._driver import (
    InsertBatch,
    insert_many_op,
    queries_for,
)
from river._errors import InvalidConfigError, RiverError
from river._events import Event, EventBus, Subscription
from river._insert import InsertDefaults, NotifyLimiter, build_batch
from river._maintenance import PeriodicJob, PeriodicJobEnqueuer
from river._middleware import apply_insert_middleware
from river._pool import pooled
from river._preflight import (
    SCHEMA_ERRORS,
    check_schema_async,
    open_pool_async,
    schema_error_async,
)
from river._queues import QueueInfo, QueueManager
from river._runtime import MaintenanceServices, Runtime, maintenance_services
from river._sansio import Op, primed, run_async, run_pooled
from river._supervisor import ClientHealth
from river._surface import AsyncSurface, InsertManyItem
from river._testsignal import TestSignals
from river._types import InsertOpts

__all__ = ["AsyncClient", "InsertManyItem", "PeriodicJobs", "QueueInfo", "QueueManager"]

logger = logging.getLogger("river.client")


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


class AsyncClient(AsyncSurface):
    """The asyncio client: insert jobs, administer jobs and queues, and work jobs.

    ``database`` is a ``postgresql://`` URL (the client then owns a connection pool, opened on
    first use and closed by :meth:`close` / ``async with``), or a
    ``psycopg_pool.AsyncConnectionPool`` the caller owns. Pool connections should be in
    autocommit mode for best performance (the client's own pool is). Without one
    (``AsyncClient()`` or ``AsyncClient(config=...)``) only the ``*_tx`` methods work, on the
    caller's connections; anything else raises RiverError saying so.

    With ``config.queues`` and ``config.workers`` the client works jobs between :meth:`start`
    and :meth:`stop`; ``async with client:`` does both. Without queues it is insert/admin-only.

    Every insert and admin method has a ``*_tx`` twin taking a ``psycopg.AsyncConnection`` to
    run inside the caller's transaction; notifications are then sent only if it commits.
    """

    def __init__(
        self,
        database: str | AsyncConnectionPool[Any] | None = None,
        config: Config | None = None,
        *,
        pool_max_size: int = 10,
    ) -> None:
        self.config = config or Config()
        self.id = self.config.id or default_client_id()
        self._pool: AsyncConnectionPool[Any] | None
        if database is None:
            self._conninfo = ""
            self._pool = None
            self._owns_pool = False
        elif isinstance(database, str):
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
        self._state: Literal["stopped", "starting", "running", "stopping"] = "stopped"
        #: The running machinery while started (river/_runtime.py), else None.
        self._runtime: Runtime | None = None
        #: Outcomes the last stop gave up writing (the database was away; river worker's exit
        #: status says so).
        self._unwritten_at_stop = 0
        self._periodic = PeriodicJobEnqueuer(
            self.config.periodic_jobs,
            self._insert_periodic,
            max_encoded_size=self.config.max_encoded_size,
            # As every insert (River (Go) fixed the same omission in v0.14.2).
            prepare=lambda items: apply_insert_middleware(self._middleware, items),
        )
        self._events = EventBus(self.config.on_event)
        #: Named test signals, kept across starts (``river.testing.signals``).
        self._signals = TestSignals()
        self.queues = QueueManager(
            self.config,
            self._queries,
            runtime=lambda: self._runtime if self._state == "running" else None,
            run_op=self._run,
            publish=self._publish_queue_event,
        )
        self.periodic_jobs = PeriodicJobs(self._periodic)

    # --- connections ---------------------------------------------------------------------

    def _require_pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            raise RiverError(
                "this AsyncClient has no database: pass a URL or pool, or use the *_tx methods"
            )
        return self._pool

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        return AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_max_size,
            open=False,
            kwargs={"autocommit": True, **self.config.connection_kwargs},
            name=f"river-{self.id}",
            configure=self._configure_connection,
        )

    async def _configure_connection(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # Our own pool's connections only: timestamps decode in UTC (session_timezone_utc).
        # Not behind a transaction pooler: some pin a client to one server connection for the
        # rest of its life after a SET, or hand the setting on to other clients.
        if self.config.pooler is None and conn.pgconn.parameter_status(b"TimeZone") != b"UTC":
            await conn.execute(self._queries.session_timezone_utc)
            if not conn.autocommit:
                await conn.commit()

    async def _open_pool(self) -> None:
        # Bounded by config.connect_timeout; a bad host, port, password or database fails at
        # once with the driver's reason (DatabaseUnavailableError, see river/_preflight.py).
        pool = self._require_pool()
        if self._owns_pool and not self._pool_opened:
            async with self._pool_lock:
                if not self._pool_opened:
                    try:
                        await open_pool_async(
                            pool, self._conninfo, self.config.connect_timeout_seconds
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
        pool = self._require_pool()
        await check_schema_async(pool, self.config.schema, timeout, self._conninfo)

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        await self._open_pool()
        async with pooled(self._require_pool()) as conn:
            yield conn

    async def _run(self, op: Op[Any]) -> Any:
        # The path of every single insert: run_pooled, not ``async with pool.connection()``.
        op = primed(op)  # validation first: no connection taken for bad input
        if not self._pool_opened:
            await self._open_pool()
        pool = self._pool
        assert pool is not None  # _open_pool raised otherwise
        return await run_pooled(pool, op, map_error=self._map_schema_error)

    async def _map_schema_error(
        self, conn: psycopg.AsyncConnection[Any], exc: Exception
    ) -> Exception | None:
        # River's tables missing or not migrated: SchemaNotReadyError, saying what to run.
        if isinstance(exc, SCHEMA_ERRORS):
            return await schema_error_async(conn, self.config.schema, exc, own=True)
        return None

    async def _run_on(self, conn: psycopg.AsyncConnection[Any], op: Op[Any]) -> Any:
        # The caller's connection: its transaction is never touched.
        if type(conn) is not psycopg.AsyncConnection:
            conn = async_connection(conn)  # refuses a Django connection, saying why
        try:
            return await run_async(conn, op)
        except SCHEMA_ERRORS as exc:  # River's tables missing or not migrated
            mapped = await schema_error_async(conn, self.config.schema, exc, own=False)
            if mapped is None:
                raise
            raise mapped from exc

    async def _run_in_tx(self, op: Op[Any]) -> Any:
        op = primed(op)  # validation first: no connection taken, no BEGIN sent for bad input
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
        """Stop the client if running, then close the pool it owns. Subscriptions end: their
        buffered events are still delivered, then iteration stops.

        A closed client may be used again: its next call (or ``async with``) opens a new pool
        of its own, which a later ``close()`` closes, as an app's lifespan run once per test
        does. (A pool the application passed in is never closed or replaced.)"""
        await self.stop()
        self._events.end_all()
        if self._owns_pool and self._pool_opened and self._pool is not None:
            async with self._pool_lock:
                pool, self._pool = self._pool, self._new_pool()  # a closed one cannot reopen
                self._pool_opened = False
            await pool.close()

    async def __aenter__(self) -> AsyncClient:
        if self._pool is not None:
            await self._open_pool()
        if self.queues.configs:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- insert ----------------------------------------------------------------------------

    def _batch(self, items: Sequence[InsertManyItem], *, many: bool) -> InsertBatch:
        return build_batch(
            apply_insert_middleware(self._middleware, _normalise_items(items), one=not many),
            self._insert_defaults,
            self._limiter,
            field_prefix="jobs" if many else "",
        )

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
        async with self.queues.lock:
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
            runtime = Runtime(
                config=self.config,
                client_id=self.id,
                conninfo=self._conninfo,
                pool=self._require_pool(),
                queries=self._queries,
                workers=self._workers,
                middleware=self._middleware,
                limiter=self._limiter,
                events=self._events,
                periodic=self._periodic,
                producers=self.queues.producers,
                run_op=self._run,
                on_override=self.queues.override_seen,
                signals=self._signals,
            )
            self._runtime = runtime
            try:
                await runtime.start(lambda: self.queues.start_all(runtime))
            except BaseException:
                self.queues.producers.clear()
                self._runtime = None
                self._state = "stopped"
                raise
            self._state = "running"
            try:
                await anyio.lowlevel.checkpoint_if_cancelled()
            except anyio.get_cancelled_exc_class():
                # The caller gave up on start(): leave the client stopped, not half-started.
                with anyio.CancelScope(shield=True):
                    await self._stop_locked(0, hard=True)
                raise
            logger.info(
                "river client %s started with %d queues", self.id, len(self.queues.producers)
            )

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
        runtime = self._runtime
        return ClientHealth.of(runtime.supervisor.health() if runtime is not None else {})

    @property
    def is_leader(self) -> bool:
        """Whether this client currently holds leadership (and runs maintenance)."""
        runtime = self._runtime
        return runtime is not None and runtime.is_leader

    def queue_depth(self) -> dict[tuple[str, str], int] | None:
        """The leader's latest count of jobs not yet finalized, by ``(queue, state)`` (states
        ``available``, ``pending``, ``retryable``, ``running``, ``scheduled``; 0 for a state
        a queue has none in), sampled every ``Config.queue_depth_interval`` (10 s).

        None unless this client is started, is the leader and has sampled at least once: only
        the leader samples, so that several clients never report the same jobs
        (docs/observability.md)."""
        runtime = self._runtime
        if runtime is None or not runtime.is_leader:
            return None
        sample = runtime.queue_depth.sample
        return dict(sample) if sample is not None else None

    def maintenance_services(self) -> MaintenanceServices:
        """The maintenance services with this client's settings (for ``run_once`` in tests and
        scripts; the leader runs them in a loop on its own)."""
        return maintenance_services(
            self.config,
            self._require_pool(),
            self._queries,
            self._workers,
            self._limiter,
            self._conninfo,
        )

    async def _insert_periodic(self, items: list[tuple[JobArgs, InsertOpts | None]]) -> None:
        # The insert middleware already ran over each job (the enqueuer's prepare step).
        batch = build_batch(items, self._insert_defaults, self._limiter, field_prefix="periodic",
                            allow_reserved_metadata=True)  # fmt: skip
        await self._run(insert_many_op(self._queries, batch))

    async def stop(self, timeout: float | None = None) -> None:
        """Soft stop: fetch nothing more and let running jobs finish; after ``timeout``
        seconds (None: wait forever) cancel the rest, which go back to ``available`` with
        their attempt restored. Every finished job's state is written before it returns;
        while the database cannot be reached, for up to ``Config.completer_stop_timeout``
        (60 s) after the jobs ended, then the jobs not written are logged and left ``running``
        for a rescuer. Idempotent and safe to call concurrently.

        ``timeout`` bounds a queue drain (``queues.remove``) or another soft stop in progress
        too: when it expires before they let this stop in, the jobs they wait for are
        cancelled (as :meth:`stop_and_cancel` does at once)."""
        self._bound_writes_if_held()
        lock = self.queues.lock
        if timeout is None or not lock.locked():
            async with lock:
                await self._stop_locked(timeout, hard=False)
            return
        deadline = anyio.current_time() + timeout
        acquired = False
        with anyio.move_on_after(timeout):
            await lock.acquire()
            acquired = True
        if not acquired:
            # The change holding the lock (a drain, a soft stop) outlasts this stop's bound:
            # interrupt the jobs it waits for, then stop with no time left.
            self.queues.cancel_running()
            await lock.acquire()
        try:
            await self._stop_locked(max(deadline - anyio.current_time(), 0.0), hard=False)
        finally:
            lock.release()

    async def stop_and_cancel(self) -> None:
        """Hard stop: cancel running jobs now (they return to ``available``, attempt restored),
        write every outcome (bounded as in :meth:`stop`), then stop.

        It also escalates a soft stop (or a queue drain) already in progress: running jobs are
        cancelled at once, without waiting for the lock that the slower operation holds."""
        self.queues.cancel_running()
        self._bound_writes_if_held()
        async with self.queues.lock:
            await self._stop_locked(0, hard=True)

    def _bound_writes_if_held(self) -> None:
        # A queue removal or drain holding the lock waits for its outcomes to be written; with
        # the database away it would wait for ever, and this stop behind it. The stop bound
        # then counts from now, not from the end of the jobs.
        runtime = self._runtime
        if runtime is not None and self.queues.lock.locked():
            runtime.completer.bound(self.config.completer_stop_timeout_seconds)

    def _give_up_writes(self) -> None:
        """Give up at once the outcome writes of a stop that cannot reach the database (each
        job logged, left ``running`` for a rescuer): ``river worker``'s third signal."""
        runtime = self._runtime
        if runtime is not None:
            runtime.give_up_writes()

    async def _stop_locked(self, timeout: float | None, hard: bool) -> None:
        runtime = self._runtime
        if self._state != "running" or runtime is None:
            return
        self._state = "stopping"
        try:
            await runtime.stop(timeout, hard)
        finally:
            self._unwritten_at_stop = runtime.completer.given_up_at_stop
            self.queues.producers.clear()
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


class PeriodicJobs:
    """``client.periodic_jobs``: add or remove periodic jobs, also while the client runs."""

    def __init__(self, enqueuer: PeriodicJobEnqueuer) -> None:
        self._enqueuer = enqueuer

    def add(self, job: PeriodicJob) -> PeriodicJob:
        """Add a periodic job; returns it (a handle for :meth:`remove`)."""
        if not isinstance(job, PeriodicJob):
            raise RiverError("add() takes a river.PeriodicJob")
        self._enqueuer.add(job)  # RiverError: added already, or its id is taken
        return job

    def remove(self, job_or_id: PeriodicJob | str) -> bool:
        """Remove a periodic job by handle or id; return whether it existed."""
        return self._enqueuer.remove(job_or_id)

    def list(self) -> list[PeriodicJob]:
        """The periodic jobs."""
        return list(self._enqueuer.jobs)
