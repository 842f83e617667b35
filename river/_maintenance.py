"""Maintenance services, run only by the elected leader (PROTOCOL.md section 9).

Each service has ``run_once()`` (one pass, returning what it did; tests call it directly) and
``run()`` (the loop the client starts on gaining leadership and cancels on losing it). After a
pass that filled its batch, a service runs again after a short random pause instead of waiting
its full interval. Services start staggered by 0-1 s so they do not all hit the database at
once after an election.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import random
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import psycopg
import pydantic
from anyio.abc import TaskStatus
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from river._args import JobArgs, Workers, validate_kind
from river._driver import Queries, job_from_row, notify_op
from river._errors import RiverError, ValidationError, describe
from river._executor import attempt_timeout, retry_time
from river._insert import NotifyLimiter, insert_payload
from river._logfmt import job_fields
from river._pool import owned, pooled
from river._retry import RetryPolicy
from river._sansio import Op, Query, run_async, single
from river._schedule import NEVER, Schedule
from river._telemetry import TELEMETRY
from river._types import AttemptError, InsertOpts, Job, JobRow
from river._validate import DEFAULT_MAX_ENCODED_SIZE, encode_job_args, encode_json_value

__all__ = [
    "DEFAULT_REINDEX_INDEXES",
    "JobCleaner",
    "PeriodicJob",
    "PeriodicJobEnqueuer",
    "QueueCleaner",
    "QueueDepthSampler",
    "Reindexer",
    "Rescuer",
    "Scheduler",
]

logger = logging.getLogger("river.maintenance")

RESCUE_ERROR = "Stuck job rescued by JobRescuer"
DEFAULT_REINDEX_INDEXES = (
    "river_job_args_index",
    "river_job_kind",
    "river_job_metadata_index",
    "river_job_pkey",
    "river_job_prioritized_fetching_index",
    "river_job_state_and_finalized_at_index",
    "river_job_unique_idx",
)


#: The client runtime whose maintenance runs in this context: its root task sets it, and the
#: tasks started from there inherit it. Guards are grouped by it (by the pool outside a
#: runtime), so that a client's stop cuts only its own statements, even when two clients share
#: a pool the application passed in.
guard_owner: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "river_guard_owner", default=None
)


#: Whether this client's leadership can still be trusted (the elector's ``trusted``): set by
#: the runtime for each maintenance term, and checked before every maintenance statement and
#: periodic insert. None outside a term (a service run on its own, in tests).
leadership_trusted: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "river_leadership_trusted", default=None
)


class LeadershipNotTrustedError(RiverError):
    """A maintenance statement was about to run while this client's leadership term could no
    longer be trusted (the process or its event loop stalled past it; another client may lead
    by now). Nothing was sent; the elector settles the leadership."""


def check_leadership() -> None:
    """Raise :class:`LeadershipNotTrustedError` when the current maintenance term's leadership
    is no longer trusted (see :data:`leadership_trusted`)."""
    trusted = leadership_trusted.get()
    if trusted is not None and not trusted():
        raise LeadershipNotTrustedError(
            "this client's leadership term ran out before the statement could start (the "
            "process or its event loop stalled?): nothing sent, leadership is re-checked"
        )


class _GuardGroup:
    """The guards of one owner in flight, and the deadline a stop set for them and for any
    guard entered after it."""

    __slots__ = ("active", "cut_at")

    def __init__(self) -> None:
        self.active: set[anyio.CancelScope] = set()
        self.cut_at = math.inf


_guard_groups: weakref.WeakKeyDictionary[object, _GuardGroup] = weakref.WeakKeyDictionary()


def _guard_group(owner: object) -> _GuardGroup:
    group = _guard_groups.get(owner)
    if group is None:
        group = _guard_groups[owner] = _GuardGroup()
    return group


@contextlib.contextmanager
def _statement_guard(
    pool: AsyncConnectionPool[Any], seconds: float = 30.0
) -> Iterator[anyio.CancelScope]:
    """Let a statement in flight finish (up to ``seconds``) when leadership or the client
    stops: cancelling a query half-way costs its pool connection, because anyio's cancellation
    also interrupts psycopg's attempt to cancel the query on the server. Passes are made of
    short statements, so the loop around them still stops promptly. A stopping client shortens
    the wait (:func:`cut_guards`), for the statement in flight and for any a pass starts after:
    a statement stuck behind a lock or a dead link would otherwise hold the stop for the whole
    ``seconds``, and a pass of many statements (a cleaner's backlog) for all of them."""
    check_leadership()
    group = _guard_group(guard_owner.get() or pool)
    with anyio.CancelScope(shield=True), anyio.fail_after(seconds) as scope:
        scope.deadline = min(scope.deadline, group.cut_at)
        group.active.add(scope)
        try:
            yield scope
        finally:
            group.active.discard(scope)


def cut_guards(owner: object, seconds: float) -> None:
    """Give the maintenance statements of ``owner`` (a runtime, see :data:`guard_owner`) at
    most ``seconds`` more, those in flight and those started later (they then fail with
    TimeoutError): a client that stops does not wait up to 30 s per statement for a lock or
    for a database that no longer answers."""
    group = _guard_group(owner)
    group.cut_at = min(group.cut_at, anyio.current_time() + seconds)
    for scope in list(group.active):
        scope.deadline = min(scope.deadline, group.cut_at)


def reset_guards(owner: object) -> None:
    """A new run of ``owner``: no cut applies any more."""
    _guard_groups.pop(owner, None)


async def _loop(
    name: str,
    interval: float,
    once: Callable[[], Awaitable[bool]],
    task_status: TaskStatus[None],
    stagger: bool = True,
) -> None:
    """Run ``once`` every ``interval`` s; again soon when it reports a full batch."""
    task_status.started()
    if stagger:
        await anyio.sleep(random.uniform(0, 1.0))
    while True:
        try:
            full = await once()
        except LeadershipNotTrustedError as exc:
            logger.info("%s: pass skipped: %s", name, exc)
            full = False
        except (psycopg.Error, OSError, TimeoutError) as exc:
            logger.warning("%s: pass failed: %s", name, describe(exc))
            full = False
        await anyio.sleep(random.uniform(0.05, 1.0) if full else interval)


@dataclass(frozen=True, slots=True)
class SchedulerResult:
    """One scheduler pass: rows made available, rows discarded for a unique conflict."""

    promoted: int
    discarded: int
    queues: tuple[str, ...]


class Scheduler:
    """Makes due ``scheduled`` and ``retryable`` jobs ``available`` (every ``interval``,
    default 5 s, up to ``limit`` rows per pass, default 10,000), discarding those whose unique
    key is already held, and notifies the queues of jobs that are due now."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        *,
        interval: float = 5.0,
        limit: int = 10_000,
        limiter: NotifyLimiter | None = None,
    ) -> None:
        self._pool = pool
        self._q = queries
        self.interval = interval
        self.limit = limit
        self._limiter = limiter

    async def run_once(self) -> SchedulerResult:
        """One pass, in one transaction."""
        with _statement_guard(self._pool):
            return await self._promote()

    async def _promote(self) -> SchedulerResult:
        async with pooled(self._pool) as conn, conn.transaction():
            return await run_async(conn, self._promote_op())

    def _promote_op(self) -> Op[SchedulerResult]:
        rows = yield Query(self._q.scheduler_promote, {"limit": self.limit})
        queues = [(q, due, n) for q, due, n in rows if q is not None]
        discarded = sum(n for q, _, n in rows if q is None)
        payloads = [
            insert_payload(queue)
            for queue, due_now, _ in queues
            if due_now and (self._limiter is None or self._limiter.allow(queue))
        ]
        if payloads:
            yield from notify_op(self._q, "river_insert", payloads)
        promoted = sum(n for _, _, n in queues)
        return SchedulerResult(promoted, discarded, tuple(q for q, _, _ in queues))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Loop until cancelled."""

        async def once() -> bool:
            result = await self.run_once()
            return result.promoted + result.discarded >= self.limit

        await _loop("scheduler", self.interval, once, task_status)


@dataclass(frozen=True, slots=True)
class RescuerResult:
    """One rescuer pass: rows changed per new state, and rows left alone."""

    rescued: dict[str, int]
    skipped: int


class Rescuer:
    """Returns jobs stuck in ``running`` (attempt started more than ``rescue_after`` seconds
    ago, default 1 h, by the database clock) to the queue: ``retryable`` at the next retry
    time while attempts remain, else ``discarded``; ``cancelled`` when a cancel was requested.
    Each gets an error ``Stuck job rescued by JobRescuer`` and metadata
    ``river:rescue_count`` + 1. Jobs whose worker timeout is disabled (-1) or has not elapsed
    are left alone (a ``timeout()`` that raises counts as the client's ``job_timeout``, logged
    once per attempt). The retry time is the worker's ``next_retry()``, else the retry
    policy, as after any failed attempt. Kinds without a worker here are retried by the
    retry policy (River (Go) discards them). The write is guarded: only rows still running
    with the attempt seen at selection, and still past the horizon, change."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        workers: Workers,
        *,
        rescue_after: float = 3600.0,
        job_timeout: float = 60.0,
        retry_policy: RetryPolicy,
        interval: float = 30.0,
        limit: int = 10_000,
    ) -> None:
        self._pool = pool
        self._q = queries
        self._workers = workers
        self.rescue_after = rescue_after
        self.job_timeout = job_timeout
        self._retry_policy = retry_policy
        self.interval = interval
        self.limit = limit
        self._warned: set[tuple[int, int]] = set()

    def _decide(self, row: JobRow, db_now: datetime) -> tuple[str, datetime | None] | None:
        if "cancel_attempted_at" in row.metadata:
            return "cancelled", None
        registered = self._workers.get(row.kind)
        job: Job[Any] | None = None
        timeout = attempt_timeout(None, self.job_timeout)
        if registered is not None:
            # The worker's code runs here as in the executor, and fails the same way: one job
            # whose timeout() raised ended every pass (and, over restarts, the leader), so no
            # stuck job was rescued any more. It falls back to the client's job timeout.
            try:
                job = Job(row, registered.args_type.model_validate_json(row.encoded_args))
                # A timedelta, a str...: a TypeError here, handled as a failing timeout().
                timeout = attempt_timeout(registered.worker.timeout(job), self.job_timeout)
            except pydantic.ValidationError:
                pass  # args the worker cannot read: its executor discards them anyway
            except Exception as exc:
                step = (
                    f"{type(registered.worker).__qualname__}.timeout()"
                    if job is not None
                    else f"decoding its args ({registered.args_type.__qualname__})"
                )
                self._warn_once(row, step, exc)
        if timeout == 0:
            return None  # no timeout (-1, NaN): it may still be running
        attempted_at = row.attempted_at or db_now
        if (db_now - attempted_at).total_seconds() < timeout:
            return None
        if row.attempt < row.max_attempts:
            return "retryable", retry_time(row, registered, job, db_now, self._retry_policy)
        return "discarded", None

    def _warn_once(self, row: JobRow, what: str, exc: Exception) -> None:
        """Log a failing call of a worker's once per attempt of a stuck job (passes come every
        ``interval`` until its timeout has elapsed)."""
        key = (row.id, row.attempt)
        if key in self._warned:
            return
        if len(self._warned) >= 10_000:
            self._warned.clear()
        self._warned.add(key)
        logger.warning(
            "rescuer: job %d: %s failed (%s); using the client's job timeout",
            row.id,
            what,
            describe(exc),
            extra=job_fields(row),
        )

    async def run_once(self) -> RescuerResult:
        """One pass over every stuck job (in pages of ``limit``)."""
        rescued: dict[str, int] = {}
        skipped = 0
        after_id = 0
        while True:
            with _statement_guard(self._pool):
                rows, now_row = await self._select(after_id)
            if not rows:
                break
            db_now: datetime = now_row[0] if now_row else datetime.now(UTC)
            jobs = [job_from_row(r) for r in rows]
            after_id = jobs[-1].id
            params = self._decisions(jobs, db_now)
            skipped += len(jobs) - len(params["id"])
            if params["id"]:
                with _statement_guard(self._pool):
                    for state in await self._update(params):
                        rescued[state] = rescued.get(state, 0) + 1
            if len(rows) < self.limit:
                break
        return RescuerResult(rescued, skipped)

    async def _select(self, after_id: int) -> tuple[list[Any], Any]:
        async with pooled(self._pool) as conn:
            return await run_async(conn, self._select_op(after_id))

    def _select_op(self, after_id: int) -> Op[tuple[list[Any], Any]]:
        """A page of stuck jobs after ``after_id``, and the database clock's (now,) row."""
        rows = yield Query(
            self._q.rescuer_select,
            {"after": self.rescue_after, "after_id": after_id, "limit": self.limit},
        )
        now_row = yield Query(self._q.rescuer_now, fetch="one")
        return rows, now_row

    def _decisions(self, jobs: list[JobRow], db_now: datetime) -> dict[str, list[Any]]:
        params: dict[str, list[Any]] = {
            k: [] for k in ("id", "attempt", "attempted_at", "state", "scheduled_at", "error")
        }
        for job in jobs:
            decision = self._decide(job, db_now)
            if decision is None:
                continue
            state, scheduled_at = decision
            error = AttemptError(
                at=job.attempted_at or db_now, attempt=job.attempt, error=RESCUE_ERROR
            )
            params["id"].append(job.id)
            params["attempt"].append(job.attempt)
            params["attempted_at"].append(job.attempted_at)
            params["state"].append(state)
            params["scheduled_at"].append(scheduled_at)
            params["error"].append(json.dumps(error.to_json()))
        return params

    async def _update(self, params: dict[str, list[Any]]) -> list[str]:
        update = Query(self._q.rescuer_update, {**params, "after": self.rescue_after})
        async with pooled(self._pool) as conn:
            rows = await run_async(conn, single(update))
        return [state for _, state in rows]

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Loop until cancelled."""

        async def once() -> bool:
            await self.run_once()
            return False

        await _loop("rescuer", self.interval, once, task_status)


def _retention(value: float) -> float | None:
    return None if value < 0 else value


class JobCleaner:
    """Deletes finalized jobs past their retention: ``completed`` after ``completed_retention``
    (default 24 h), ``cancelled`` after ``cancelled_retention`` (24 h), ``discarded`` after
    ``discarded_retention`` (7 days). -1 keeps that state forever. Runs every ``interval``
    (30 s), deleting ``limit`` rows per statement (10,000) until none is left."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        *,
        completed_retention: float = 86_400.0,
        cancelled_retention: float = 86_400.0,
        discarded_retention: float = 7 * 86_400.0,
        interval: float = 30.0,
        limit: int = 10_000,
        timeout: float = 30.0,
    ) -> None:
        self._pool = pool
        self._q = queries
        self.completed_retention = completed_retention
        self.cancelled_retention = cancelled_retention
        self.discarded_retention = discarded_retention
        self.interval = interval
        self.limit = limit
        self.timeout = timeout

    async def run_once(self) -> int:
        """Delete every expired row (batch by batch); return how many were deleted."""
        total: int = 0
        params = {
            "completed": _retention(self.completed_retention),
            "cancelled": _retention(self.cancelled_retention),
            "discarded": _retention(self.discarded_retention),
            "limit": self.limit,
        }
        delete = Query(self._q.cleaner_delete, params, fetch="rowcount")
        while True:
            with _statement_guard(self._pool, self.timeout):
                async with pooled(self._pool) as conn:
                    deleted: int = await run_async(conn, single(delete))
            total += deleted
            if deleted < self.limit:
                return total

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Loop until cancelled."""

        async def once() -> bool:
            await self.run_once()
            return False

        await _loop("job cleaner", self.interval, once, task_status)


class QueueCleaner:
    """Deletes ``river_queue`` rows not refreshed for ``idle`` seconds (default 24 h; live
    producers refresh theirs every 10 minutes), every ``interval`` (1 h)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        *,
        idle: float = 86_400.0,
        interval: float = 3600.0,
        limit: int = 10_000,
    ) -> None:
        self._pool = pool
        self._q = queries
        self.idle = idle
        self.interval = interval
        self.limit = limit

    async def run_once(self) -> int:
        """Delete idle queue rows; return how many."""
        with _statement_guard(self._pool):
            return await self._delete()

    async def _delete(self) -> int:
        params = {"idle": self.idle, "limit": self.limit}
        delete = Query(self._q.queue_cleaner_delete, params, fetch="rowcount")
        async with pooled(self._pool) as conn:
            count: int = await run_async(conn, single(delete))
        return count

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Loop until cancelled."""

        async def once() -> bool:
            return await self.run_once() >= self.limit

        await _loop("queue cleaner", self.interval, once, task_status)


#: The states a queue depth sample counts: every state before an outcome (PROTOCOL.md 3).
QUEUE_DEPTH_STATES = ("available", "pending", "retryable", "running", "scheduled")


class QueueDepthSampler:
    """Counts the jobs not yet finalized per queue and state, every ``interval`` (10 s), with
    one grouped ``count(*)`` (river/_sql/maintenance.sql ``queue_depth``).

    Only the leader runs it, so only the leader reports queue depth (several clients would
    otherwise report the same jobs). While it runs, :attr:`sample` holds the latest count,
    with 0 for each of :data:`QUEUE_DEPTH_STATES` a queue has no job in (queues are those
    with such jobs, and those of ``river_queue``); the ``river.queue.depth`` gauge reads it.
    When it stops (leadership lost, client stopped) the sample is dropped: a former leader
    reports nothing."""

    def __init__(
        self, pool: AsyncConnectionPool[Any], queries: Queries, *, interval: float = 10.0
    ) -> None:
        self._pool = pool
        self._q = queries
        self.interval = interval
        #: Jobs per (queue, state) at the last pass; None before the first one and once
        #: stopped. Replaced whole at each pass (read from other threads).
        self.sample: dict[tuple[str, str], int] | None = None
        #: Loops running: a new leadership term may start before the last one has unwound.
        self._running = 0

    async def run_once(self) -> dict[tuple[str, str], int]:
        """Count, store the result in :attr:`sample` and return it."""
        with _statement_guard(self._pool):
            async with pooled(self._pool) as conn:
                rows = await run_async(conn, single(Query(self._q.queue_depth)))
        sample: dict[tuple[str, str], int] = {}
        for queue, state, count in rows:
            for known in QUEUE_DEPTH_STATES:
                sample.setdefault((queue, known), 0)
            if state is not None:
                sample[(queue, state)] = int(count)
        self.sample = sample
        TELEMETRY.bind_metrics()  # the gauge exists once an SDK is installed, even if late
        return sample

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Loop until cancelled; report through the ``river.queue.depth`` gauge meanwhile."""

        async def once() -> bool:
            await self.run_once()
            return False

        self._running += 1
        TELEMETRY.add_queue_depth_source(self)
        try:
            await _loop("queue depth", self.interval, once, task_status)
        finally:
            self._running -= 1
            if not self._running:
                TELEMETRY.remove_queue_depth_source(self)
                self.sample = None


#: Seconds the reindexer waits beyond its timeout for the server to end a REINDEX itself.
_REINDEX_MARGIN = 5.0


class Reindexer:
    """Rebuilds River's indexes with ``REINDEX INDEX CONCURRENTLY`` on a schedule (opt-in:
    ``Config(reindexer_schedule=river.Cron("0 0 * * *"))``), each bounded by ``timeout``
    (60 s). An index with leftovers of an interrupted rebuild (``<index>_ccnew``/``_ccold``,
    optionally numbered) is skipped; a rebuild interrupted here drops its own leftovers."""

    def __init__(
        self,
        conninfo: str,
        queries: Queries,
        schedule: Schedule,
        *,
        indexes: Sequence[str] = DEFAULT_REINDEX_INDEXES,
        timeout: float = 60.0,
        connect_kwargs: dict[str, Any] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._conninfo = conninfo
        self._q = queries
        self.schedule = schedule
        #: The wall clock the schedule is read against (injectable for tests).
        self._clock = clock
        self.indexes = tuple(indexes)
        self.timeout = timeout
        self._connect_kwargs = connect_kwargs or {}

    def _qualified(self, name: str) -> sql.Composable:
        if self._q.schema:
            return sql.Identifier(self._q.schema, name)
        return sql.Identifier(name)

    def _artifacts_op(self, index: str) -> Op[list[str]]:
        """Names of the leftovers of an interrupted rebuild of ``index``."""
        rows = yield Query(self._q.reindex_artifacts, {"schema": self._q.schema, "index": index})
        return [name for (name,) in rows]

    def _ddl_op(self, fragment: str, index: str) -> Op[None]:
        """Run ``fragment`` (reindex_index or reindex_drop_leftover) on ``index``."""
        yield Query(self._q.compose(fragment, index=self._qualified(index)), fetch="none")

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        # REINDEX CONCURRENTLY cannot run in a transaction block: a dedicated autocommit
        # connection, whatever the pool's settings.
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, **self._connect_kwargs
        )
        timeout_ms = str(max(1, round(self.timeout * 1000)))
        try:
            await run_async(
                conn,
                single(Query(self._q.reindex_session, {"timeout_ms": timeout_ms}, fetch="none")),
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.close()
            raise
        return conn

    async def run_once(self) -> dict[str, str]:
        """Reindex every configured index; return index -> "reindexed" | "skipped" |
        "failed: <reason>". A failure is logged (WARNING) and its leftovers dropped; the pass
        goes on with the next index. Cancelled (a stop, leadership lost) mid-rebuild, it drops
        that rebuild's leftovers before the cancellation goes on."""
        results: dict[str, str] = {}
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            for index in self.indexes:
                check_leadership()
                if conn is None or conn.closed:
                    # A rebuild given up on can leave its connection closed (psycopg closes it
                    # when its own cancel request is cut short): the next index gets another.
                    conn = await self._connect()
                if await run_async(conn, self._artifacts_op(index)):
                    logger.warning("reindexer: skipping %s: leftovers of a rebuild exist", index)
                    results[index] = "skipped"
                    continue
                pid = conn.info.backend_pid
                try:
                    # The server's statement_timeout ends it (see _connect); this bound is for
                    # a server that stopped answering.
                    with anyio.fail_after(self.timeout + _REINDEX_MARGIN):
                        await run_async(conn, self._ddl_op("reindex_index", index))
                    results[index] = "reindexed"
                except (TimeoutError, psycopg.Error) as exc:
                    reason = (
                        f"timed out after {self.timeout:g} s"
                        if isinstance(exc, TimeoutError | psycopg.errors.QueryCanceled)
                        else describe(exc)
                    )
                    results[index] = f"failed: {reason}"
                    logger.warning("reindexer: rebuilding %s failed: %s", index, reason)
                    await self._drop_leftovers(conn, pid, index)
                except BaseException:
                    await self._drop_leftovers(conn, pid, index)
                    raise
        finally:
            if conn is not None:
                with anyio.CancelScope(shield=True):
                    await conn.close()
        return results

    async def _drop_leftovers(
        self, conn: psycopg.AsyncConnection[Any], pid: int, index: str
    ) -> None:
        """After a rebuild of ``index`` given up on (on ``conn``, server process ``pid``):
        stop it if the server still runs it, then drop what it left (PROTOCOL.md 9.7), on a
        connection of its own, shielded from the cancellation that may have brought us here
        and bounded by the reindexer's timeout."""
        owner = guard_owner.get()
        group = _guard_group(owner) if owner is not None else None
        with anyio.CancelScope(shield=True) as scope:
            # Bounded like a maintenance statement: a stopping client cuts it short
            # (cut_guards), leaving what a drop could not reach to the next run's warning.
            now = anyio.current_time()
            scope.deadline = now + self.timeout
            if group is not None:
                # At least a second, to stop the statement on the server.
                scope.deadline = max(min(scope.deadline, group.cut_at), now + 1.0)
                group.active.add(scope)
            try:
                if not conn.closed:
                    await conn.close()  # its session ends; the statement may still run
                fresh = await self._connect()
                async with owned(fresh):
                    await run_async(
                        fresh,
                        single(Query(self._q.reindex_cancel_backend, {"pid": pid}, fetch="none")),
                    )
                    for name in await run_async(fresh, self._artifacts_op(index)):
                        await run_async(fresh, self._ddl_op("reindex_drop_leftover", name))
            except (psycopg.Error, OSError) as exc:
                logger.warning(
                    "reindexer: could not drop the leftovers of rebuilding %s (the next run "
                    "skips it until they are dropped): %s",
                    index,
                    describe(exc),
                )
            finally:
                if group is not None:
                    group.active.discard(scope)
        if scope.cancelled_caught:
            logger.warning(
                "reindexer: the leftovers of rebuilding %s could not be dropped in time (the "
                "client stopping, or a drop waiting on older transactions); the next run skips "
                "it until they are dropped",
                index,
            )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sleep until each scheduled time, then reindex; until cancelled."""
        task_status.started()
        while True:
            now = self._clock()
            target = self.schedule.next(now)
            if target >= NEVER:
                return
            await anyio.sleep((target - now).total_seconds())
            try:
                await self.run_once()
            except LeadershipNotTrustedError as exc:
                logger.info("reindexer: pass skipped: %s", exc)
            except (psycopg.Error, OSError) as exc:
                logger.warning("reindexer: pass failed: %s", describe(exc))


#: What a periodic job's constructor returns: args, (args, opts), or None to skip this run.
PeriodicResult = JobArgs | tuple[JobArgs, InsertOpts | None] | None


@dataclass(eq=False)
class PeriodicJob:
    """A job inserted on a schedule by the leader.

    - ``schedule``: ``river.PeriodicInterval(seconds)``, ``river.Cron("*/5 * * * *")`` or any
      object with ``next(after) -> datetime``.
    - ``construct()``: returns the job args, or ``(args, InsertOpts)``, or None to skip a run.
    - ``run_on_start``: also insert as soon as this client becomes leader (or, added while it
      leads, as soon as it is added).
    - ``id``: optional stable name (at most 127 characters, job-kind rules, as River (Go)),
      stored in metadata ``river:periodic_job_id`` and usable with
      ``client.periodic_jobs.remove(id)``.

    ``run_on_start`` and ``id`` are keyword-only; invalid values raise ValidationError.

    Jobs go through the normal insert path (validation, unique options, notification) with
    metadata ``"periodic": true``. Use unique options when duplicates across a leader change
    would matter.
    """

    schedule: Schedule
    construct: Callable[[], PeriodicResult]
    _: KW_ONLY
    run_on_start: bool = False
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule):
            raise ValidationError(
                "PeriodicJob.schedule", "must have a next(after) method (e.g. river.Cron)"
            )
        if not callable(self.construct):
            raise ValidationError("PeriodicJob.construct", "must be callable")
        if self.id is not None:
            # River (Go) applies the job-kind rules to periodic job ids.
            validate_kind(self.id, "PeriodicJob.id")


class PeriodicJobEnqueuer:
    """Inserts periodic jobs when due (leader only). See :class:`PeriodicJob`."""

    def __init__(
        self,
        jobs: Sequence[PeriodicJob],
        insert: Callable[[list[tuple[JobArgs, InsertOpts | None]]], Awaitable[object]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_encoded_size: int = DEFAULT_MAX_ENCODED_SIZE,
        prepare: Callable[
            [list[tuple[JobArgs, InsertOpts | None]]], list[tuple[JobArgs, InsertOpts | None]]
        ]
        | None = None,
    ) -> None:
        self.jobs: list[PeriodicJob] = []
        #: Each job's next run, by the job's identity: kept here, not on the job, which the
        #: application may share between clients (one Config for several), each scheduling
        #: it on its own.
        self._next: dict[int, datetime] = {}
        for job in jobs:
            self._check_new(job)
            self.jobs.append(job)
        self._insert = insert
        #: Run once over each constructed job before it is inserted (the client's insert
        #: middleware): a job it refuses (raises) is logged and skipped, the others go on.
        self._prepare = prepare
        self._clock = clock
        self._max_encoded_size = max_encoded_size
        self._changed = anyio.Event()
        self._running = False
        #: run_on_start jobs added while running: inserted at the next pass (as River (Go)).
        self._start_pending: list[PeriodicJob] = []

    def _check_new(self, job: PeriodicJob) -> None:
        """Refuse a job already here (the same object twice was scheduled twice over: every
        other run skipped, the rest inserted twice), or a second job with the same id."""
        if any(j is job for j in self.jobs):
            raise RiverError("this river.PeriodicJob was already added")
        if job.id is not None and any(j.id == job.id for j in self.jobs):
            raise RiverError(f"a periodic job with id {job.id!r} already exists")

    def _next_run(self, job: PeriodicJob) -> datetime:
        return self._next.get(id(job), NEVER)

    def add(self, job: PeriodicJob) -> None:
        """Add a periodic job (scheduled from now when the enqueuer runs; a run-on-start job
        added while it runs is inserted at once). RiverError for a job already added, or an
        id already used."""
        self._check_new(job)
        if self._running:
            self._next[id(job)] = job.schedule.next(self._clock())
            if job.run_on_start:
                self._start_pending.append(job)
        self.jobs.append(job)
        self._changed.set()

    def remove(self, job_or_id: PeriodicJob | str) -> bool:
        """Remove a periodic job by object or id; return whether one was removed."""
        kept = [j for j in self.jobs if j is not job_or_id and (j.id is None or j.id != job_or_id)]
        removed = [j for j in self.jobs if not any(j is k for k in kept)]
        for job in removed:
            self._next.pop(id(job), None)
        self.jobs = kept
        self._changed.set()
        return bool(removed)

    def _items(
        self, due: list[PeriodicJob]
    ) -> list[tuple[PeriodicJob, tuple[JobArgs, InsertOpts | None]]]:
        items: list[tuple[PeriodicJob, tuple[JobArgs, InsertOpts | None]]] = []
        for job in due:
            try:
                made = job.construct()
            except Exception:
                logger.exception("periodic job %s: constructor failed", job.id or job.schedule)
                continue
            if made is None:
                continue
            args, opts = made if isinstance(made, tuple) else (made, None)
            # The job's own metadata as an insert resolves it (the options', else those of
            # its args class), under the enqueuer's keys: the args class's was dropped.
            own = opts.metadata if opts is not None else None
            if own is None and isinstance(args, JobArgs):
                defaults = args.insert_opts()
                own = defaults.metadata if defaults is not None else None
            metadata: dict[str, Any] = dict(own or {})
            metadata["periodic"] = True
            if job.id is not None:
                metadata["river:periodic_job_id"] = job.id
            try:
                # Checked as constructed, so that one job's bad values (a NUL, NaN, an integer
                # outside int64...) skip that job only, not the whole batch of this pass.
                if isinstance(args, JobArgs):
                    encode_job_args(args, self._max_encoded_size)
                encode_json_value(metadata, self._max_encoded_size, "metadata")
            except ValidationError as exc:
                logger.error(
                    "periodic job %s: constructed job not inserted: %s",
                    job.id or job.schedule,
                    exc,
                )
                continue
            base = opts or InsertOpts()
            items.append(
                (
                    job,
                    (
                        args,
                        InsertOpts(
                            queue=base.queue,
                            priority=base.priority,
                            scheduled_at=base.scheduled_at,
                            max_attempts=base.max_attempts,
                            tags=base.tags,
                            metadata=metadata,
                            pending=base.pending,
                            unique_opts=base.unique_opts,
                        ),
                    ),
                )
            )
        return self._prepared(items) if self._prepare is not None else items

    def _prepared(
        self, items: list[tuple[PeriodicJob, tuple[JobArgs, InsertOpts | None]]]
    ) -> list[tuple[PeriodicJob, tuple[JobArgs, InsertOpts | None]]]:
        """Each job through :attr:`_prepare` once, on its own: one a middleware refuses is
        skipped (logged), and the insert that follows (or its one-by-one retry) never runs the
        middleware again."""
        assert self._prepare is not None
        out: list[tuple[PeriodicJob, tuple[JobArgs, InsertOpts | None]]] = []
        for job, item in items:
            try:
                prepared = self._prepare([item])
            except Exception as exc:
                logger.error(
                    "periodic job %s: constructed job not inserted: an insert middleware "
                    "refused it: %s",
                    job.id or job.schedule,
                    describe(exc),
                )
                continue
            out.extend((job, each) for each in prepared)
        return out

    async def run_once(self, *, on_start: bool = False) -> int:
        """Insert every job due now, or with ``on_start`` the run-on-start jobs (and schedule
        every job from now); return how many were inserted."""
        now = self._clock()
        if on_start:
            self._start_pending.clear()
            due = [j for j in self.jobs if j.run_on_start]
            for job in self.jobs:
                self._next[id(job)] = job.schedule.next(now)
        else:
            horizon = now + timedelta(milliseconds=100)
            due = [j for j in self.jobs if self._next_run(j) <= horizon]
            for job in due:
                # The next run follows the previous target, skipping runs missed meanwhile.
                upcoming = job.schedule.next(self._next_run(job))
                while upcoming <= now:
                    upcoming = job.schedule.next(upcoming)
                self._next[id(job)] = upcoming
            pending, self._start_pending = self._start_pending, []
            due += [j for j in pending if any(j is k for k in self.jobs) and j not in due]
        items = self._items(due)
        if not items:
            return 0
        check_leadership()
        try:
            await self._insert([item for _, item in items])
        except LeadershipNotTrustedError:
            raise
        except RiverError:
            # One job's options or kind refused (a bad queue name, a kind no worker handles):
            # insert the others one by one, so that it alone is skipped.
            return await self._insert_each(items)
        return len(items)

    async def _insert_each(
        self, items: list[tuple[PeriodicJob, tuple[JobArgs, InsertOpts | None]]]
    ) -> int:
        inserted = 0
        for job, item in items:
            check_leadership()
            try:
                await self._insert([item])
            except LeadershipNotTrustedError:
                raise
            except RiverError as exc:
                logger.error(
                    "periodic job %s: constructed job not inserted: %s", job.id or job.schedule, exc
                )
            else:
                inserted += 1
        return inserted

    async def run(
        self,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
        on_start: bool = True,
    ) -> None:
        """Insert run-on-start jobs (unless ``on_start`` is False: a restart within the same
        leadership term, after a crash, must not insert them again), then sleep until each
        next run; until cancelled."""
        self._running = True
        try:
            task_status.started()
            if on_start:
                await self._safe_once(on_start=True)
            while True:
                # Until the earliest next run itself (PROTOCOL.md 9.6), and again if woken a
                # little early: woken 100 ms before it (as here once), its job was inserted
                # before its time, worked early, and with a by_period unique key counted in
                # the period before, where it took the key of that period's run.
                upcoming = min((self._next_run(j) for j in self.jobs), default=NEVER)
                delay = (upcoming - self._clock()).total_seconds()
                while delay > 0:
                    with anyio.move_on_after(delay if upcoming < NEVER else 3600.0):
                        await self._changed.wait()
                    if self._changed.is_set():
                        break
                    upcoming = min((self._next_run(j) for j in self.jobs), default=NEVER)
                    delay = (upcoming - self._clock()).total_seconds()
                self._changed = anyio.Event()
                await self._safe_once()
        finally:
            self._running = False

    async def _safe_once(self, *, on_start: bool = False) -> None:
        try:
            await self.run_once(on_start=on_start)
        except LeadershipNotTrustedError as exc:
            logger.info("periodic job enqueuer: pass skipped: %s", exc)
        except (psycopg.Error, OSError) as exc:
            logger.warning("periodic job enqueuer: insert failed: %s", exc)
