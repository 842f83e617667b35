"""One job attempt, in three steps: resolve, invoke, classify.

1. **resolve**: look up the worker of the job's kind, decode its args, compute its timeout. A
   failure here (an unknown kind, args that do not validate) skips the hooks and the worker.
2. **invoke**: the ``work_begin`` hooks, then the worker through the middleware chain, under
   the attempt's deadline; a cancellation by the runtime (the job timeout, this client
   stopping, a remote cancel) comes back as an error; then the ``work_end`` hooks. One
   sync/async dispatch (:meth:`Executor._dispatch`) is the innermost call, with or without
   middleware.
3. **classify**: the attempt's facts mapped to an :class:`Outcome` by the outcome table and its
   precedence (river/_outcome.py, pure and tested without a database). Only what a rule needs
   from user code or the file system is computed here first: the retry time (the worker's
   ``next_retry``, the retry policy) and the traceback text.

The executor never touches the database: the completer writes the outcome it returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import inspect
import json
import logging
import math
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio import CapacityLimiter
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from river._args import Workers
from river._errors import JobNotRunningError, JobSnooze, ValidationError
from river._joblog import Cause, JobLogConfig, JobLogger
from river._logfmt import job_fields
from river._middleware import Middleware
from river._outcome import (
    SCHEDULER_INTERVAL,
    Attempt,
    CancelReason,
    Interrupted,
    Outcome,
    RemoteCancelled,
    Rule,
    UnknownKind,
    classify,
    completed,
    message,
    precedence,
    records_trace,
)
from river._retry import RetryPolicy, next_retry_at
from river._telemetry import TELEMETRY, WorkSpanMode
from river._types import Job, JobRow
from river._validate import MAX_OUTPUT_BYTES, check_json_value

if TYPE_CHECKING:
    from river._args import _Registered

logger = logging.getLogger("river.executor")

__all__ = [
    "SCHEDULER_INTERVAL",
    "CancelReason",
    "Executor",
    "RunningJob",
    "attempt_timeout",
    "cancel_requested",
    "current_job",
    "record_output",
    "retry_time",
    "set_metadata",
]


@dataclass(eq=False, slots=True)
class RunningJob:
    """A job being worked by this client.

    Async attempts run in their own asyncio task, cancelled with ``Task.cancel`` (stop, remote
    cancel, and the job timeout through the client's :class:`_Deadlines`). Sync attempts run in
    a thread, which cannot be interrupted: cancelling one only raises the flag that
    :func:`cancel_requested` reads.
    """

    row: JobRow
    started: float
    cancel_reason: str | None = None
    #: Read by :func:`cancel_requested` (a plain bool: set from the loop, read from threads).
    cancel_flag: bool = False
    #: Monotonic deadline of the attempt (math.inf: no timeout).
    deadline: float = math.inf
    #: Metadata staged by the job (record_output, set_metadata), merged at completion.
    staged: dict[str, Any] | None = None
    #: Set when :func:`cancel_requested` answered True to this attempt's worker: a worker that
    #: then returns normally stopped early, so its attempt counts as cancelled, not completed.
    cancel_observed: bool = False
    #: The task of an async attempt while its worker may be interrupted (None otherwise).
    interruptible: asyncio.Task[Any] | None = None
    #: Whether this RunningJob cancelled that task (so the CancelledError is ours to absorb).
    task_cancelled: bool = False
    #: The attempt's own task, when its producer has it (None: not yet known, e.g. while an
    #: eager task runs its first step, or when the caller awaits :meth:`Executor.execute`).
    task: asyncio.Task[Any] | None = None
    #: Set when this attempt's ``job_complete_tx`` completed the row in the worker's own
    #: transaction: an error the worker raises afterwards may follow a commit (the job stays
    #: completed) or have rolled it back, which only the outcome's write tells.
    completed_in_tx: bool = False

    def cancel(self, reason: str) -> None:
        """Cancel the attempt (async workers: at their next await; sync: the flag is set)."""
        if self.cancel_reason is None or reason == CancelReason.REMOTE:
            self.cancel_reason = reason
        self.cancel_flag = True
        self._interrupt()

    def expire(self) -> None:
        """The attempt's deadline passed: interrupt its async worker. With no cancel reason
        set, the attempt ends as timed out (see :func:`_cancellation`)."""
        self._interrupt()

    def _interrupt(self) -> None:
        task = self.interruptible
        if task is not None and not self.task_cancelled:
            self.task_cancelled = True
            task.cancel()


class _Deadlines:
    """The job timeouts of one client's async attempts, on one event loop timer.

    An ``asyncio.timeout`` per attempt cost a ``Timeout``, a ``TimerHandle`` and a reschedule
    for every job, a tenth of a no-op job's client CPU. Here an attempt costs one heap entry;
    the timer is re-armed only when a new deadline is earlier than the one it waits for (with
    one job timeout for every kind, never after the first). Deadlines are on the event loop's
    clock (``loop.time()``, which its timers follow), not ``time.monotonic()``.

    An attempt that ends leaves its entry behind (removing it would mean a search): the timer
    pops stale entries as their deadlines pass, the heap is compacted whenever stale entries
    outnumber live ones (so it stays within about twice the attempts in flight), and it is
    emptied whenever no attempt is left in its worker, so a finished attempt (its row, its
    staged output) is never kept by an idle client.
    """

    __slots__ = ("_heap", "_live", "_loop", "_seq", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._reset(None)

    def _reset(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._heap: list[tuple[float, int, RunningJob]] = []
        #: Attempts added and not done (their entries may have been popped already).
        self._live = 0
        self._seq = 0
        self._loop = loop
        self._timer = None
        self._timer_at = math.inf

    def add(self, running: RunningJob, timeout: float) -> None:
        """Interrupt ``running`` (:meth:`RunningJob.expire`) ``timeout`` seconds from now
        unless it has left its worker by then (:meth:`done`)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a client restarted on another loop
            self._reset(loop)
        when = loop.time() + timeout
        self._seq += 1
        self._live += 1
        heap = self._heap
        heapq.heappush(heap, (when, self._seq, running))
        if when < self._timer_at:
            self._arm(when)
        elif len(heap) > 2 * self._live + 64:
            heap[:] = [entry for entry in heap if entry[2].interruptible is not None]
            heapq.heapify(heap)

    def done(self) -> None:
        """An attempt given to :meth:`add` has left its worker."""
        self._live -= 1
        if self._live <= 0:
            # Nothing runs: no entry is live, none needs keeping. The timer stays armed (it
            # finds nothing due): cancelling and re-arming it whenever attempts do not overlap
            # (every no-op job) would cost what a timer per attempt did.
            self._live = 0
            self._heap.clear()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer = self._loop.call_at(when, self._fire)
        self._timer_at = when

    def _fire(self) -> None:
        assert self._loop is not None
        # Due: up to the time the timer was armed for, even when the loop ran it a little
        # early (within its clock resolution), else it would be re-armed for the same entry.
        due = max(self._loop.time(), self._timer_at)
        self._timer, self._timer_at = None, math.inf
        heap = self._heap
        while heap and heap[0][0] <= due:
            running = heapq.heappop(heap)[2]
            if running.interruptible is not None:
                running.expire()
        if heap:
            self._arm(heap[0][0])


#: Worker classes whose hidden async work() was already reported (see Executor._in_thread).
_HIDDEN_ASYNC_WARNED: set[str] = set()

_current: contextvars.ContextVar[RunningJob | None] = contextvars.ContextVar(
    "river_current_job", default=None
)


def current_job() -> JobRow | None:
    """The row of the job the calling code is working (inside ``work``), else None."""
    running = _current.get()
    return running.row if running is not None else None


def cancel_requested() -> bool:
    """Inside ``work``: whether this attempt should stop (timeout, stop, remote cancel).

    Async workers are cancelled at their next ``await`` and rarely need this; sync workers run
    in threads, which cannot be interrupted, and should poll it in long loops and return early.
    Outside a job it returns False.
    """
    running = _current.get()
    if running is None:
        return False
    requested = running.cancel_flag or time.monotonic() >= running.deadline
    if requested:
        running.cancel_observed = True
    return requested


def _work_unless_cancelled(work: Callable[[Job[Any]], Any], job: Job[Any]) -> Any:
    """A sync worker's start, in its thread: not when its attempt was cancelled while it
    waited for the thread (a hard stop, a remote cancel). Such jobs used to start anyway once
    a thread came free, each running to its end after the stop; now the attempt ends at once,
    as one that saw :func:`cancel_requested` and returned."""
    running = _current.get()
    if running is not None and running.cancel_flag:
        running.cancel_observed = True
        return None
    return work(job)


def note_completed_in_tx(row: JobRow) -> None:
    """``job_complete_tx`` completed ``row`` in its caller's transaction: when that is the
    attempt being worked here, remember it (see :attr:`RunningJob.completed_in_tx`)."""
    running = _current.get()
    if running is not None and running.row.id == row.id and running.row.attempt == row.attempt:
        running.completed_in_tx = True


def _running_or_raise(what: str) -> RunningJob:
    running = _current.get()
    if running is None:
        raise RuntimeError(f"{what} can only be called while working a job (inside work())")
    return running


def record_output(value: Any) -> None:
    """Inside ``work``: record ``value`` (JSON-encodable, at most 32 MB encoded) as the job's
    output, stored in metadata ``output`` when the attempt's outcome is written (whatever the
    outcome). Calling it again replaces the value.

    Values Postgres or River (Go) cannot store (NUL characters, lone surrogates, NaN or
    infinities, integers outside [-2**63, 2**64 - 1]) raise :class:`river.ValidationError`
    here, naming their path (e.g. ``output["rows"][2]``)."""
    running = _running_or_raise("record_output")
    check_json_value(value, "output")
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError("output", f"must be JSON-encodable: {exc}") from None
    if len(encoded.encode()) > MAX_OUTPUT_BYTES:
        raise ValidationError("output", "encoded size must be at most 32 MB")
    running.staged = {**(running.staged or {}), "output": value}


def set_metadata(key: str, value: Any) -> None:
    """Inside ``work``: stage ``metadata[key] = value`` (shallow merge at completion, kept even
    if the job failed). Keys starting with ``river:`` are reserved. The value is refused
    (:class:`river.ValidationError`) as :func:`record_output`'s is, and when its encoding is
    over 32 MB."""
    running = _running_or_raise("set_metadata")
    if not isinstance(key, str) or not key or key.startswith("river:"):
        raise ValidationError("key", "must be a non-empty string not starting with 'river:'")
    check_json_value({key: value}, "metadata")
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(key, f"must be JSON-encodable: {exc}") from None
    if len(encoded) > MAX_OUTPUT_BYTES:  # ASCII: json.dumps escapes the rest
        raise ValidationError(f"metadata[{json.dumps(key)}]", "encoded size must be at most 32 MB")
    running.staged = {**(running.staged or {}), key: value}


def attempt_timeout(custom: float | None, job_timeout: float) -> float:
    """Seconds an attempt may run: the worker's ``timeout()`` (``custom``), or the client's
    ``job_timeout`` when it is None or 0; 0.0 for none (a negative value, -1 say, or NaN)."""
    timeout = job_timeout if custom is None or custom == 0 else custom
    return timeout if timeout > 0 else 0.0


def retry_time(
    row: JobRow,
    registered: _Registered | None,
    job: Job[Any] | None,
    now: datetime,
    policy: RetryPolicy,
) -> datetime:
    """When a failed attempt of ``row`` is retried: the worker's ``next_retry()`` (``job``
    decoded), else ``policy``, else the default policy when either fails (logged: the job is
    retried all the same)."""
    if registered is not None and job is not None:
        try:
            custom = registered.worker.next_retry(job)
            if custom is not None and custom > now:  # naive datetimes raise here
                return custom
        except Exception:
            logger.exception(
                "job %d: %s.next_retry failed; using the retry policy",
                row.id,
                type(registered.worker).__qualname__,
                extra=job_fields(row),
            )
    try:
        retry_at = policy(len(row.errors) + 1, now)
        if not isinstance(retry_at, datetime) or retry_at.tzinfo is None:
            raise TypeError(f"must return a timezone-aware datetime, got {retry_at!r}")
        return retry_at
    except Exception:
        logger.exception(
            "job %d: the retry policy failed; using the default", row.id, extra=job_fields(row)
        )
        return next_retry_at(len(row.errors) + 1, now)


class Executor:
    """Runs attempts for one client (shared by all its producers).

    ``scheduler_interval`` is the client's ``Config.scheduler_interval``: retries and snoozes
    due within it go straight back to ``available`` instead of waiting for the scheduler.
    """

    def __init__(
        self,
        workers: Workers,
        *,
        job_timeout: float,
        retry_policy: RetryPolicy,
        thread_limiter: CapacityLimiter,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        middleware: Sequence[Middleware] = (),
        job_log: JobLogConfig | None = None,
        scheduler_interval: float = SCHEDULER_INTERVAL,
        otel_work_span: WorkSpanMode = "child",
    ) -> None:
        self._middleware = tuple(middleware)
        #: Config.otel_work_span: the river.work span's relation to the insert's trace context.
        self._otel_work_span: WorkSpanMode = otel_work_span
        #: Log lines of attempts that did not complete (None: none, e.g. the testing kit).
        self.job_log = JobLogger(job_log) if job_log is not None else None
        #: Log lines held back until the outcome's write tells what happened (an error raised
        #: after the attempt's job_complete_tx), by attempt; called with the state the row was
        #: left in, or None when the write did not apply. None: never held back (no completer
        #: reports the writes, e.g. the testing kit); the runtime sets it.
        self.deferred_logs: dict[tuple[int, int], Callable[[str | None], None]] | None = None
        self._workers = workers
        self._job_timeout = job_timeout
        self._retry_policy = retry_policy
        self._limiter = thread_limiter
        # The threads of run_sync once a token of _limiter is held (taken on the loop, where
        # waiting for it can be cancelled): no second limit.
        self._no_limit = anyio.CapacityLimiter(math.inf)
        self._clock = clock
        self._scheduler_interval = scheduler_interval
        self._deadlines = _Deadlines()

    def now(self) -> datetime:
        """The executor's clock (UTC)."""
        return self._clock()

    def execute(self, running: RunningJob) -> Awaitable[Outcome]:
        """Work one attempt; the awaitable returns its outcome (it never raises, except on
        cancellation of the caller's own scope). A plain function returning the coroutine:
        without a tracer, the attempt adds no coroutine frame of its own."""
        tracer = TELEMETRY.tracer()
        if tracer is None:
            return self._execute(running)
        return self._execute_traced(running, tracer)

    async def _execute_traced(self, running: RunningJob, tracer: Tracer) -> Outcome:
        """:meth:`_execute` inside the attempt's ``river.work`` span."""
        row = running.row
        parent, links = TELEMETRY.work_span_origin(row.metadata, self._otel_work_span)
        with tracer.start_as_current_span(
            "river.work",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                # OpenTelemetry's messaging conventions, then river's own.
                "messaging.system": "river",
                "messaging.operation.type": "process",
                "messaging.operation.name": "work",
                "messaging.destination.name": row.queue,
                "messaging.message.id": str(row.id),
                "river.kind": row.kind,
                "river.queue": row.queue,
                "river.job.id": row.id,
                "river.attempt": row.attempt,
            },
        ) as span:
            outcome = await self._execute(running)
            span.set_attribute("river.outcome", outcome.event)
            if outcome.error is not None:
                span.set_status(StatusCode.ERROR, outcome.error.error)
        return outcome

    async def _execute(self, running: RunningJob) -> Outcome:
        """resolve -> invoke (with the hooks) -> classify, then the attempt's metrics. Never
        raises an exception."""
        row = running.row
        started_at = row.attempted_at or self._clock()
        try:
            token = _current.set(running)
            try:
                registered, job, timeout, error = self._resolve(row)
                timed_out = False
                if registered is not None and job is not None:
                    if error is None:
                        error, timed_out = await self._invoke(running, registered, job, timeout)
                    for mw in self._middleware:
                        error = mw.work_end(job, error)
            finally:
                _current.reset(token)
            outcome = self._classify(running, error, timed_out, started_at, registered, job)
        except Exception as exc:
            # A bug in a hook, a middleware or here must never lose the job (it would stay
            # "running" until rescued) nor crash the producer, and with it the client. (One
            # coroutine, not a wrapper around another: this runs for every job.)
            logger.exception("job %d: evaluating the attempt failed", row.id, extra=job_fields(row))
            outcome = self._classify(running, exc, False, started_at, None, None, internal=True)
        TELEMETRY.record_attempt(
            row.kind, row.queue, outcome.event[4:], outcome.finished - outcome.started
        )
        return outcome

    # ----------------------------------------------------------------------------------------
    # 1. resolve
    # ----------------------------------------------------------------------------------------

    def _resolve(
        self, row: JobRow
    ) -> tuple[_Registered | None, Job[Any] | None, float, BaseException | None]:
        """The worker of ``row``, its decoded job and its timeout in seconds (0: none), or the
        error that stops the attempt before the worker runs. With no job (an unknown kind,
        args that do not decode), the hooks do not run either."""
        registered = self._workers.get(row.kind)
        if registered is None:
            return None, None, 0.0, UnknownKind(row.kind, retried=row.attempt < row.max_attempts)
        try:
            job = Job(row, registered.args_type.model_validate_json(row.encoded_args))
        except Exception as exc:  # pydantic's errors, or anything a validator raised
            return registered, None, 0.0, exc
        try:
            return (
                registered,
                job,
                attempt_timeout(registered.worker.timeout(job), self._job_timeout),
                None,
            )
        except (Exception, asyncio.CancelledError) as exc:
            # A timeout() that raises fails the attempt like any worker error (its job is
            # decoded: the work_end hooks see it). A sync method cannot be cancelled by the
            # runtime, so a CancelledError from it is its own doing, an ordinary error too.
            return registered, job, 0.0, exc

    # ----------------------------------------------------------------------------------------
    # 2. invoke
    # ----------------------------------------------------------------------------------------

    async def _invoke(
        self, running: RunningJob, registered: _Registered, job: Job[Any], timeout: float
    ) -> tuple[BaseException | None, bool]:
        """Run the ``work_begin`` hooks, then the worker through the middleware chain. Returns
        the attempt's error (None: success) and whether the job timeout ended it; a
        cancellation by the runtime comes back as an error (see :func:`_cancellation`).

        Async workers can be interrupted: by their deadline (:class:`_Deadlines`) and by
        :meth:`RunningJob.cancel`; sync workers run in a thread, which cannot be: the deadline
        and cancellations only reach them through :func:`cancel_requested`."""
        if timeout > 0:
            running.deadline = time.monotonic() + timeout
        error: BaseException | None = None
        cancelled = False
        try:
            if self._middleware:
                for mw in self._middleware:
                    mw.work_begin(job)
            if running.cancel_reason is not None:
                cancelled = True  # stopped or cancelled before it could start
            elif registered.is_async:
                running.interruptible = running.task or asyncio.current_task()
                deadlines = self._deadlines
                if timeout > 0:
                    deadlines.add(running, timeout)
                try:
                    if self._middleware:
                        await self._chain(registered, job)
                    else:
                        await self._dispatch(registered, job)
                finally:
                    running.interruptible = None
                    if timeout > 0:
                        deadlines.done()
            elif self._middleware:
                await self._chain(registered, job)
            else:
                await self._dispatch(registered, job)
        except Exception as exc:
            error = exc
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if running.task_cancelled and task is not None and task.cancelling():
                # Our own cancellation of this attempt (a stop, a remote cancel, its deadline),
                # absorbed; one from outside that came with it still propagates.
                running.task_cancelled = False
                if task.uncancel() > 0:
                    raise
                cancelled = True
            elif task is not None and task.cancelling():
                raise  # a real cancellation from outside: not ours to absorb
            else:
                # A CancelledError the worker raised on its own (e.g. it awaited a future
                # someone cancelled) is an ordinary failure.
                error = exc
        if running.task_cancelled:
            # We cancelled the task and the worker (or a middleware) swallowed the
            # CancelledError: withdraw that request, as asyncio.timeout does on exit, or the
            # task would count as cancelling for the rest of its life.
            running.task_cancelled = False
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()
        # A sync worker cannot be interrupted: one that saw cancel_requested() and returned
        # stopped early, exactly like a cancelled async worker.
        if error is None:
            if cancelled or running.cancel_observed:
                return _cancellation(running.cancel_reason, timeout)
            return _SUCCEEDED
        return error, False

    def _chain(self, registered: _Registered, job: Job[Any]) -> Awaitable[None]:
        """The worker inside the middleware chain (the first entry outermost), started."""
        call: Callable[[], Awaitable[None]] = functools.partial(self._dispatch, registered, job)
        for mw in reversed(self._middleware):
            call = functools.partial(mw.work, job, call)
        return call()

    def _dispatch(self, registered: _Registered, job: Job[Any]) -> Awaitable[Any]:
        """The one sync/async dispatch: an async worker's coroutine, or a sync worker run in a
        thread of the client's limiter. A plain function returning the awaitable, so that the
        hot path (an async worker without middleware) adds no coroutine frame."""
        if registered.is_async:
            return cast(Awaitable[None], registered.worker.work(job))
        return self._in_thread(registered, job)

    async def _in_thread(self, registered: _Registered, job: Job[Any]) -> None:
        # Waiting for a thread (every one busy) can be interrupted, as an async attempt can: a
        # hard stop or a remote cancel ends the attempt at once, not when a thread comes free.
        # Once the thread runs, it cannot be (see _work_unless_cancelled for a cancel that
        # lands in between).
        limiter = self._limiter
        running = _current.get()
        if running is not None and running.interruptible is None:
            running.interruptible = running.task or asyncio.current_task()
            try:
                await limiter.acquire()
            finally:
                running.interruptible = None
        else:
            await limiter.acquire()
        try:
            result = await anyio.to_thread.run_sync(
                _work_unless_cancelled, registered.worker.work, job, limiter=self._no_limit
            )
        finally:
            limiter.release()
        if inspect.isawaitable(result):
            # An async work() behind a wrapper that hides it (no functools.wraps): the job
            # would have been marked completed without running. Awaited here, and said once.
            kind = type(registered.worker).__qualname__
            if kind not in _HIDDEN_ASYNC_WARNED:
                _HIDDEN_ASYNC_WARNED.add(kind)
                logger.warning(
                    "%s.work returned an awaitable from a thread: it is async behind a wrapper "
                    "that hides it (use functools.wraps, or make the wrapper async); awaited "
                    "on the event loop",
                    kind,
                )
            await result

    # ----------------------------------------------------------------------------------------
    # 3. classify
    # ----------------------------------------------------------------------------------------

    def _classify(
        self,
        running: RunningJob,
        error: BaseException | None,
        timed_out: bool,
        started_at: datetime,
        registered: _Registered | None,
        job: Job[Any] | None,
        *,
        internal: bool = False,
    ) -> Outcome:
        """The outcome of the attempt (river._outcome.classify), with what its rule needs
        from user code first, and its log line."""
        if error is None:  # the hot path: classify's first row, without building an Attempt
            finished = time.monotonic()
            return completed(running.row, self._clock(), running.staged, running.started, finished)
        attempt = Attempt(
            row=running.row,
            error=error,
            timed_out=timed_out,
            cancel_reason=running.cancel_reason,
            staged=running.staged,
            started_at=started_at,
            started=running.started,
            finished=time.monotonic(),
        )
        now = self._clock()
        rule = precedence(attempt)
        retry_at = (
            self._next_retry(running.row, registered, job, now) if rule is Rule.RETRY else None
        )
        trace = "".join(traceback.format_exception(error)) if records_trace(rule, error) else ""
        outcome = classify(
            attempt,
            now=now,
            scheduler_interval=self._scheduler_interval,
            retry_at=retry_at,
            trace=trace,
        )
        if self.job_log is not None:
            cause: Cause
            if internal:
                cause = "internal"  # the executor failed, not the attempt
            elif registered is None:
                cause = "unknown_kind"
            elif job is None:
                cause = "invalid_args"
            else:
                cause = "timeout" if timed_out else "worker"
            deferred = self.deferred_logs
            if (
                running.completed_in_tx
                and deferred is not None
                and rule in (Rule.RETRY, Rule.DISCARD)
            ):
                deferred[running.row.id, running.row.attempt] = functools.partial(
                    self._log_after_tx, self.job_log, attempt, rule, outcome, cause, now
                )
            else:
                self._log(self.job_log, attempt, rule, outcome, cause, now)
        return outcome

    @classmethod
    def _log_after_tx(
        cls,
        log: JobLogger,
        a: Attempt,
        rule: Rule,
        outcome: Outcome,
        cause: Cause,
        now: datetime,
        state: str | None,
    ) -> None:
        """The line of a failure raised after this attempt's job_complete_tx, once its write
        ran: the row was completed (the worker's transaction had committed), or the failure
        applied (it had rolled back) or did not apply at all (a newer attempt owns the row)."""
        if state == "completed":
            assert a.error is not None
            log.raised_after_completion(a.row, a.error, message(a.error))
        else:
            cls._log(log, a, rule, outcome, cause, now)

    def _next_retry(
        self, row: JobRow, registered: _Registered | None, job: Job[Any] | None, now: datetime
    ) -> datetime:
        return retry_time(row, registered, job, now, self._retry_policy)

    @staticmethod
    def _log(
        log: JobLogger, a: Attempt, rule: Rule, outcome: Outcome, cause: Cause, now: datetime
    ) -> None:
        row, error = a.row, a.error
        assert error is not None
        if rule is Rule.REMOTE_CANCEL:
            detail = None if isinstance(error, RemoteCancelled) else message(error)
            log.cancelled(row, error, detail, remote=True)
        elif rule is Rule.SNOOZE:
            log.snoozed(row, cast(JobSnooze, error).seconds)
        elif rule is Rule.CANCEL:
            log.cancelled(row, error, message(error), remote=False)
        elif rule is Rule.INTERRUPT:
            log.interrupted(row)
        elif (
            isinstance(error, JobNotRunningError)
            and error.job_id == row.id
            and error.attempt == row.attempt
        ):
            # This very attempt was fenced out by job_complete_tx: the outcome will be stale.
            log.superseded(row, error)
        else:
            assert outcome.error is not None
            retry_at = outcome.scheduled_at if rule is Rule.RETRY else None
            log.failed(row, error, outcome.error.error, cause, retry_at=retry_at, now=now)


#: What :meth:`Executor._invoke` returns for an attempt that succeeded (one tuple for all).
_SUCCEEDED: tuple[None, bool] = (None, False)


def _cancellation(reason: str | None, timeout: float) -> tuple[BaseException, bool]:
    """The error of an attempt the runtime cancelled, and whether it is the job timeout."""
    if reason is None:
        return TimeoutError(f"job timed out after {timeout:g}s"), True
    if reason == CancelReason.REMOTE:
        return RemoteCancelled(), False
    return Interrupted(), False
