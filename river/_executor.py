"""One job attempt: look up the worker, decode args, run with a timeout, map the outcome.

The executor never touches the database: it returns an :class:`Outcome` that the completer
writes. Outcome precedence follows PROTOCOL.md 3.4; rows follow the table of 3.5.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import math
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from anyio import CapacityLimiter
from opentelemetry.trace import SpanKind, StatusCode

from river._args import Workers
from river._completer import Outcome
from river._errors import JobCancel, JobSnooze, ValidationError
from river._joblog import Cause, JobLogConfig, JobLogger
from river._middleware import Middleware
from river._retry import RetryPolicy, next_retry_at
from river._snooze import next_snooze_count
from river._telemetry import TELEMETRY
from river._types import AttemptError, Job, JobRow, JobState
from river._validate import check_json_value

logger = logging.getLogger("river.executor")

__all__ = [
    "CancelReason",
    "Executor",
    "RunningJob",
    "cancel_requested",
    "current_job",
    "record_output",
    "set_metadata",
]

#: Delays up to this go straight back to ``available`` (the scheduler's interval).
SCHEDULER_INTERVAL = 5.0


class CancelReason:
    """Why a running job's attempt was cancelled by the runtime."""

    STOP = "stop"  # this client (or this queue) is stopping: the job is interrupted
    REMOTE = "remote"  # job_cancel from any process reached this client


@dataclass(eq=False, slots=True)
class RunningJob:
    """A job being worked by this client.

    Async attempts run in their own asyncio task, cancelled with ``Task.cancel`` (stop, remote
    cancel) or by an ``asyncio.timeout_at`` (the job timeout). Sync attempts run in a thread,
    which cannot be interrupted: cancelling one only raises the flag that
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

    def cancel(self, reason: str) -> None:
        """Cancel the attempt (async workers: at their next await; sync: the flag is set)."""
        if self.cancel_reason is None or reason == CancelReason.REMOTE:
            self.cancel_reason = reason
        self.cancel_flag = True
        task = self.interruptible
        if task is not None and not self.task_cancelled:
            self.task_cancelled = True
            task.cancel()


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


#: Largest encoded output River accepts (metadata key "output").
MAX_OUTPUT_BYTES = 32 * 1024 * 1024


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
    infinities, integers outside int64) raise :class:`river.ValidationError` here, naming
    their path (e.g. ``output.rows[2]``)."""
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


class Executor:
    """Runs attempts for one client (shared by all its producers)."""

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
    ) -> None:
        self._middleware = tuple(middleware)
        #: Log lines of attempts that did not complete (None: none, e.g. the testing kit).
        self.job_log = JobLogger(job_log) if job_log is not None else None
        self._workers = workers
        self._job_timeout = job_timeout
        self._retry_policy = retry_policy
        self._limiter = thread_limiter
        self._clock = clock

    def now(self) -> datetime:
        """The executor's clock (UTC)."""
        return self._clock()

    async def execute(self, running: RunningJob) -> Outcome:
        """Work one attempt and return its outcome (never raises, except on cancellation of
        the caller's own scope)."""
        row = running.row
        tracer = TELEMETRY.tracer()
        if tracer is None:
            outcome = await self._execute_safe(running)
        else:
            with tracer.start_as_current_span(
                "river.work",
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "river",
                    "river.kind": row.kind,
                    "river.queue": row.queue,
                    "river.job.id": row.id,
                    "river.attempt": row.attempt,
                },
            ) as span:
                outcome = await self._execute_safe(running)
                span.set_attribute("river.outcome", outcome.event)
                if outcome.error is not None:
                    span.set_status(StatusCode.ERROR, outcome.error.error)
        TELEMETRY.record_attempt(
            row.kind, row.queue, outcome.event[4:], outcome.finished - outcome.started
        )
        return outcome

    async def _execute_safe(self, running: RunningJob) -> Outcome:
        try:
            return await self._execute(running)
        except Exception as exc:
            # A bug in a hook, a middleware or here must never lose the job (it would stay
            # "running" until rescued) nor crash the producer, and with it the client.
            logger.exception("job %d: evaluating the attempt failed", running.row.id)
            start = running.row.attempted_at or self._clock()
            return self._outcome(running, None, exc, False, start, False)

    async def _execute(self, running: RunningJob) -> Outcome:
        row = running.row
        start_time = row.attempted_at or self._clock()
        error: BaseException | None = None
        timed_out = False
        job: Job[Any] | None = None
        registered = self._workers.get(row.kind)
        token = _current.set(running)
        try:
            if registered is None:
                error = _UnknownKind(row.kind, retried=row.attempt < row.max_attempts)
            else:
                try:
                    args = registered.args_type.model_validate_json(row.encoded_args)
                except Exception as exc:  # pydantic's errors, or anything a validator raised
                    error = exc
                else:
                    job = Job(row, args)
                    timeout: float | None = None
                    cancelled = False
                    expiry: asyncio.Timeout | None = None
                    try:
                        # Inside the try: a timeout() that raises fails the attempt like any
                        # worker error instead of escaping into the producer.
                        timeout = registered.worker.timeout(job)
                        if timeout is None or timeout == 0:
                            timeout = self._job_timeout
                        if timeout is not None and timeout > 0:
                            running.deadline = time.monotonic() + timeout
                        if self._middleware:
                            for mw in self._middleware:
                                mw.work_begin(job)
                        if running.cancel_reason is not None:
                            cancelled = True  # stopped or cancelled before it could start
                        elif registered.is_async:
                            loop = asyncio.get_running_loop()
                            expiry = asyncio.timeout_at(
                                loop.time() + timeout if timeout and timeout > 0 else None
                            )
                            running.interruptible = asyncio.current_task()
                            try:
                                async with expiry:
                                    if self._middleware:
                                        await self._chain(registered, job)()
                                    else:
                                        await registered.worker.work(job)  # type: ignore[misc]
                            finally:
                                running.interruptible = None
                        elif self._middleware:
                            await self._chain(registered, job)()
                        else:
                            await anyio.to_thread.run_sync(
                                registered.worker.work, job, limiter=self._limiter
                            )
                    except TimeoutError as exc:
                        if expiry is not None and expiry.expired():
                            cancelled = True  # the job timeout fired (mapped below)
                        else:
                            error = exc
                    except Exception as exc:
                        error = exc
                    except asyncio.CancelledError as exc:
                        task = asyncio.current_task()
                        if running.task_cancelled and task is not None and task.cancelling():
                            task.uncancel()  # our own cancellation of this attempt
                            cancelled = True
                        elif task is not None and task.cancelling():
                            raise  # a real cancellation from outside: not ours to absorb
                        else:
                            # A CancelledError the worker raised on its own (e.g. it awaited a
                            # future someone cancelled) is an ordinary failure.
                            error = exc
                    # A sync worker cannot be interrupted: one that saw cancel_requested() and
                    # returned stopped early, exactly like a cancelled async worker.
                    cancelled = cancelled or running.cancel_observed
                    if cancelled and error is None:
                        if running.cancel_reason is None:
                            timed_out = True
                            error = TimeoutError(f"job timed out after {timeout or 0:g}s")
                        elif running.cancel_reason == CancelReason.REMOTE:
                            error = _RemoteCancelled()
                        else:
                            error = _Interrupted()
                    for mw in self._middleware:
                        error = mw.work_end(job, error)
        finally:
            _current.reset(token)
        return self._outcome(running, job, error, timed_out, start_time, registered is not None)

    def _chain(self, registered: Any, job: Job[Any]) -> Callable[[], Awaitable[None]]:
        async def call_worker() -> None:
            if registered.is_async:
                await registered.worker.work(job)
            else:
                await anyio.to_thread.run_sync(registered.worker.work, job, limiter=self._limiter)

        call: Callable[[], Awaitable[None]] = call_worker
        for mw in reversed(self._middleware):  # the first entry ends up outermost
            call = functools.partial(mw.work, job, call)
        return call

    def _outcome(
        self,
        running: RunningJob,
        job: Job[Any] | None,
        error: BaseException | None,
        timed_out: bool,
        start_time: datetime,
        known_kind: bool,
    ) -> Outcome:
        row = running.row
        now = self._clock()
        started = running.started
        finished = time.monotonic()
        reason = running.cancel_reason

        def failed_attempt(exc: BaseException) -> AttemptError:
            trace = ""
            if not isinstance(exc, JobCancel | _RemoteCancelled | _UnknownKind):
                trace = "".join(traceback.format_exception(exc))
            return AttemptError(
                at=start_time,
                attempt=row.attempt,
                error=_jsonb_text(_message(exc)),
                trace=_jsonb_text(trace),
            )

        def outcome(state: JobState, event: str, **fields: Any) -> Outcome:
            if running.staged:
                fields["metadata"] = {**running.staged, **(fields.get("metadata") or {})}
            return Outcome(row, state, event, started=started, finished=finished, **fields)

        if error is None:
            return outcome(JobState.COMPLETED, "job_completed", finalized_at=now)
        log = self.job_log
        if reason == CancelReason.REMOTE:
            if log is not None:
                detail = None if isinstance(error, _RemoteCancelled) else _message(error)
                log.cancelled(row, error, detail, remote=True)
            return outcome(
                JobState.CANCELLED, "job_cancelled", finalized_at=now, error=failed_attempt(error)
            )
        if isinstance(error, JobSnooze):
            delay = error.seconds
            if log is not None:
                log.snoozed(row, delay)
            return outcome(
                JobState.AVAILABLE if delay <= SCHEDULER_INTERVAL else JobState.SCHEDULED,
                "job_snoozed",
                scheduled_at=_plus_seconds(now, delay),
                attempt=max(row.attempt - 1, 0),
                metadata={"snoozes": next_snooze_count(row.metadata)},
            )
        if isinstance(error, JobCancel):
            if log is not None:
                log.cancelled(row, error, _message(error), remote=False)
            return outcome(
                JobState.CANCELLED, "job_cancelled", finalized_at=now, error=failed_attempt(error)
            )
        if reason == CancelReason.STOP and not timed_out:
            if log is not None:
                log.interrupted(row)
            return outcome(
                JobState.AVAILABLE,
                "job_interrupted",
                scheduled_at=now,
                attempt=max(row.attempt - 1, 0),
            )
        attempt_error = failed_attempt(error)
        retry_at: datetime | None = None
        if row.attempt >= row.max_attempts:
            result = outcome(
                JobState.DISCARDED, "job_failed", finalized_at=now, error=attempt_error
            )
        else:
            retry_at = self._next_retry(row, job, now, known_kind)
            short = (retry_at - now).total_seconds() <= SCHEDULER_INTERVAL
            result = outcome(
                JobState.AVAILABLE if short else JobState.RETRYABLE,
                "job_failed",
                scheduled_at=retry_at,
                error=attempt_error,
            )
        if log is not None:
            cause: Cause = "worker"
            if isinstance(error, _UnknownKind):
                cause = "unknown_kind"
            elif job is None:
                cause = "invalid_args" if known_kind else "internal"
            elif timed_out:
                cause = "timeout"
            log.failed(row, error, attempt_error.error, cause, retry_at=retry_at, now=now)
        return result

    def _next_retry(
        self, row: JobRow, job: Job[Any] | None, now: datetime, known: bool
    ) -> datetime:
        if job is not None and known:
            registered = self._workers.get(row.kind)
            if registered is not None:
                try:
                    custom = registered.worker.next_retry(job)
                    if custom is not None and custom > now:  # naive datetimes raise here
                        return custom
                except Exception:
                    logger.exception(
                        "job %d: %s.next_retry failed; using the retry policy",
                        row.id,
                        type(registered.worker).__qualname__,
                    )
        try:
            retry_at = self._retry_policy(len(row.errors) + 1, now)
            if not isinstance(retry_at, datetime) or retry_at.tzinfo is None:
                raise TypeError(f"must return a timezone-aware datetime, got {retry_at!r}")
            return retry_at
        except Exception:
            logger.exception("job %d: the retry policy failed; using the default", row.id)
            return next_retry_at(len(row.errors) + 1, now)


def _plus_seconds(now: datetime, seconds: float) -> datetime:
    """``now + seconds``, saturating at the largest datetime instead of overflowing."""
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:
        return datetime.max.replace(tzinfo=now.tzinfo)


class _UnknownKind(Exception):
    def __init__(self, kind: str, *, retried: bool) -> None:
        outcome = "the job will be retried" if retried else "no attempts left: it is discarded"
        super().__init__(
            f"job kind {kind!r} is not registered in this client's workers "
            f"(register a worker for it; {outcome})"
        )


class _Interrupted(Exception):
    def __init__(self) -> None:
        super().__init__("job interrupted: the client stopped")


class _RemoteCancelled(Exception):
    def __init__(self) -> None:
        super().__init__("job cancelled remotely")


# Postgres text and jsonb cannot hold NUL, and jsonb rejects lone surrogate escapes: one such
# character in an error message would make the completer's write fail forever (and with it
# every outcome batched alongside). They become U+FFFD, as Go writes invalid text.
_JSONB_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def _jsonb_text(text: str) -> str:
    return _JSONB_UNSAFE.sub("\ufffd", text)


def _message(exc: BaseException) -> str:
    if isinstance(exc, JobCancel):
        reason = exc.reason
        return _message(reason) if isinstance(reason, BaseException) else str(reason)
    text = str(exc)
    if isinstance(exc, _UnknownKind | _RemoteCancelled | _Interrupted):
        return text  # the runtime's own conditions: no (private) class name
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
