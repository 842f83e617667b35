"""One job attempt: look up the worker, decode args, run with a timeout, map the outcome.

The executor never touches the database: it returns an :class:`Outcome` that the completer
writes. Outcome precedence follows PROTOCOL.md 3.4; rows follow the table of 3.5.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pydantic
from anyio import CapacityLimiter

from river._args import Workers
from river._completer import Outcome
from river._errors import JobCancel, JobSnooze
from river._retry import RetryPolicy
from river._snooze import next_snooze_count
from river._types import AttemptError, Job, JobRow, JobState

__all__ = ["CancelReason", "Executor", "RunningJob", "cancel_requested", "current_job"]

#: Delays up to this go straight back to ``available`` (the scheduler's interval).
SCHEDULER_INTERVAL = 5.0


class CancelReason:
    """Why a running job's attempt was cancelled by the runtime."""

    STOP = "stop"  # this client (or this queue) is stopping: the job is interrupted
    REMOTE = "remote"  # job_cancel from any process reached this client


@dataclass(eq=False, slots=True)
class RunningJob:
    """A job being worked by this client."""

    row: JobRow
    started: float
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cancel_reason: str | None = None
    #: Set when the attempt should stop; sync workers poll it (see :func:`cancel_requested`).
    cancel_event: threading.Event = field(default_factory=threading.Event)
    deadline: float = math.inf

    def cancel(self, reason: str) -> None:
        """Cancel the attempt (async workers: at their next await; sync: the flag is set)."""
        if self.cancel_reason is None or reason == CancelReason.REMOTE:
            self.cancel_reason = reason
        self.cancel_event.set()
        self.scope.cancel()


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
    return running.cancel_event.is_set() or time.monotonic() >= running.deadline


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
    ) -> None:
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
        start_time = row.attempted_at or self._clock()
        error: BaseException | None = None
        timed_out = False
        job: Job[Any] | None = None
        registered = self._workers.get(row.kind)
        token = _current.set(running)
        try:
            if registered is None:
                error = _UnknownKind(row.kind)
            else:
                try:
                    args = registered.args_type.model_validate_json(row.encoded_args)
                except pydantic.ValidationError as exc:
                    error = exc
                else:
                    job = Job(row, args)
                    timeout = registered.worker.timeout(job)
                    if timeout is None or timeout == 0:
                        timeout = self._job_timeout
                    if timeout is not None and timeout > 0:
                        running.deadline = time.monotonic() + timeout
                        running.scope.deadline = anyio.current_time() + timeout
                    with running.scope:
                        try:
                            if registered.is_async:
                                await registered.worker.work(job)  # type: ignore[misc]
                            else:
                                await anyio.to_thread.run_sync(
                                    registered.worker.work, job, limiter=self._limiter
                                )
                        except Exception as exc:
                            error = exc
                    if running.scope.cancelled_caught and error is None:
                        if running.cancel_reason is None:
                            timed_out = True
                            error = TimeoutError(f"job timed out after {timeout:g}s")
                        elif running.cancel_reason == CancelReason.REMOTE:
                            error = _RemoteCancelled()
                        else:
                            error = _Interrupted()
        finally:
            _current.reset(token)
        return self._outcome(running, job, error, timed_out, start_time, registered is not None)

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
                at=start_time, attempt=row.attempt, error=_message(exc), trace=trace
            )

        def outcome(state: JobState, event: str, **fields: Any) -> Outcome:
            return Outcome(row, state, event, started=started, finished=finished, **fields)

        if error is None:
            return outcome(JobState.COMPLETED, "job_completed", finalized_at=now)
        if reason == CancelReason.REMOTE:
            return outcome(
                JobState.CANCELLED, "job_cancelled", finalized_at=now, error=failed_attempt(error)
            )
        if isinstance(error, JobSnooze):
            delay = error.seconds
            return outcome(
                JobState.AVAILABLE if delay <= SCHEDULER_INTERVAL else JobState.SCHEDULED,
                "job_snoozed",
                scheduled_at=now + timedelta(seconds=delay),
                attempt=max(row.attempt - 1, 0),
                metadata={"snoozes": next_snooze_count(row.metadata)},
            )
        if isinstance(error, JobCancel):
            return outcome(
                JobState.CANCELLED, "job_cancelled", finalized_at=now, error=failed_attempt(error)
            )
        if reason == CancelReason.STOP and not timed_out:
            return outcome(
                JobState.AVAILABLE,
                "job_interrupted",
                scheduled_at=now,
                attempt=max(row.attempt - 1, 0),
            )
        attempt_error = failed_attempt(error)
        if row.attempt >= row.max_attempts:
            return outcome(JobState.DISCARDED, "job_failed", finalized_at=now, error=attempt_error)
        retry_at = self._next_retry(row, job, now, known_kind)
        short = (retry_at - now).total_seconds() <= SCHEDULER_INTERVAL
        return outcome(
            JobState.AVAILABLE if short else JobState.RETRYABLE,
            "job_failed",
            scheduled_at=retry_at,
            error=attempt_error,
        )

    def _next_retry(
        self, row: JobRow, job: Job[Any] | None, now: datetime, known: bool
    ) -> datetime:
        if job is not None and known:
            registered = self._workers.get(row.kind)
            if registered is not None:
                custom = registered.worker.next_retry(job)
                if custom is not None and custom > now:
                    return custom
        return self._retry_policy(len(row.errors) + 1, now)


class _UnknownKind(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(
            f"job kind {kind!r} is not registered in this client's workers "
            "(register a worker for it; the job is retried by the retry policy)"
        )


class _Interrupted(Exception):
    def __init__(self) -> None:
        super().__init__("job interrupted: the client stopped")


class _RemoteCancelled(Exception):
    def __init__(self) -> None:
        super().__init__("job cancelled remotely")


def _message(exc: BaseException) -> str:
    if isinstance(exc, JobCancel):
        reason = exc.reason
        return _message(reason) if isinstance(reason, BaseException) else str(reason)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
