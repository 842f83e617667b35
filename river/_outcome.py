"""The outcome table as code: what one finished attempt writes (docs/job-lifecycle.md).

Pure: no I/O, no clock (``now`` is given), nothing of the runtime imported, so the whole table
is unit-tested without a database (tests/test_outcomes_table.py). The executor gathers the
facts of an attempt in an :class:`Attempt`, asks :func:`precedence` which rule applies,
computes what that rule needs from user code or the file system (the retry time from the
worker's ``next_retry`` or the retry policy, the traceback text), and :func:`classify` builds
the :class:`Outcome` the completer writes. Rows follow PROTOCOL.md 3.5, precedence 3.4.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from river._errors import JobCancel, JobSnooze
from river._snooze import next_snooze_count
from river._types import AttemptError, JobRow, JobState
from river._validate import jsonb_safe

__all__ = [
    "SCHEDULER_INTERVAL",
    "Attempt",
    "CancelReason",
    "Interrupted",
    "Outcome",
    "RemoteCancelled",
    "Rule",
    "UnknownKind",
    "classify",
    "completed",
    "message",
    "precedence",
    "records_trace",
]

#: The default scheduler interval (``Config.scheduler_interval``), in seconds: retries and
#: snoozes due within one interval go straight back to ``available`` (with a future
#: ``scheduled_at`` the fetch waits for) instead of waiting for the scheduler to promote them.
SCHEDULER_INTERVAL = 5.0


class CancelReason:
    """Why a running job's attempt was cancelled by the runtime."""

    STOP = "stop"  # this client (or this queue) is stopping: the job is interrupted
    REMOTE = "remote"  # job_cancel from any process reached this client


@dataclass(slots=True)
class Outcome:
    """What one attempt ended with, as it will be written (PROTOCOL.md 3.5)."""

    job: JobRow
    state: JobState
    #: The event kind: job_completed, job_failed, job_cancelled, job_snoozed, job_interrupted.
    event: str
    finalized_at: datetime | None = None
    scheduled_at: datetime | None = None
    #: New attempt value (snooze and interruption restore it), None keeps the row's.
    attempt: int | None = None
    error: AttemptError | None = None
    #: Staged metadata to merge (shallow) into the row, or None.
    metadata: dict[str, Any] | None = None
    #: Monotonic seconds when the attempt started and ended (for statistics).
    started: float = 0.0
    finished: float = 0.0


@dataclass(slots=True)
class Attempt:
    """The facts of one finished attempt: what :func:`classify` maps to an :class:`Outcome`."""

    row: JobRow
    #: The attempt's error once the ``work_end`` hooks had their say (None: it succeeded). A
    #: cancellation by the runtime is an error here too: a ``TimeoutError`` for the job
    #: timeout, :class:`RemoteCancelled`, :class:`Interrupted`.
    error: BaseException | None = None
    #: The job timeout ended the attempt (its error is the executor's TimeoutError, unless a
    #: hook replaced it).
    timed_out: bool = False
    #: :class:`CancelReason` of the attempt when it ended (None: not cancelled).
    cancel_reason: str | None = None
    #: Metadata the job staged (``record_output``, ``set_metadata``), merged whatever happens.
    staged: dict[str, Any] | None = None
    #: When the attempt started (``AttemptError.at``); None: ``row.attempted_at``.
    started_at: datetime | None = None
    #: Monotonic seconds when the attempt started and ended (copied to the Outcome).
    started: float = 0.0
    finished: float = 0.0


class Rule(enum.Enum):
    """The outcome precedence (docs/job-lifecycle.md), in order: the first rule that matches
    an attempt wins."""

    #: 1. an error after a remote cancel reached this client: cancelled.
    REMOTE_CANCEL = 1
    #: 2. ``JobSnooze``: snoozed (available or scheduled, the attempt given back).
    SNOOZE = 2
    #: 3. ``JobCancel``: cancelled.
    CANCEL = 3
    #: 4. cancelled because this client is stopping: interrupted (back to available).
    INTERRUPT = 4
    #: 5. an error at ``attempt >= max_attempts``: discarded.
    DISCARD = 5
    #: 6. any other error (a timeout, an unknown kind, args that do not validate): retried.
    RETRY = 6
    #: 7. no error: completed, even if a cancel arrived meanwhile.
    COMPLETE = 7


def precedence(a: Attempt) -> Rule:
    """The rule of the outcome precedence that decides attempt ``a``."""
    error = a.error
    if error is None:
        return Rule.COMPLETE
    if a.cancel_reason == CancelReason.REMOTE:
        return Rule.REMOTE_CANCEL
    if isinstance(error, JobSnooze):
        return Rule.SNOOZE
    if isinstance(error, JobCancel):
        return Rule.CANCEL
    if a.cancel_reason == CancelReason.STOP and not a.timed_out:
        return Rule.INTERRUPT
    if a.row.attempt >= a.row.max_attempts:
        return Rule.DISCARD
    return Rule.RETRY


def records_trace(rule: Rule, error: BaseException | None) -> bool:
    """Whether the outcome of ``rule`` records a traceback for ``error``: failures and remote
    cancels of a worker's exception do; ``JobCancel`` and the runtime's own conditions (an
    unknown kind, a remote cancel that interrupted the worker) carry none."""
    return (
        rule in (Rule.REMOTE_CANCEL, Rule.DISCARD, Rule.RETRY)
        and error is not None
        and not isinstance(error, JobCancel | RemoteCancelled | UnknownKind)
    )


def classify(
    a: Attempt,
    *,
    now: datetime,
    scheduler_interval: float = SCHEDULER_INTERVAL,
    retry_at: datetime | None = None,
    trace: str = "",
) -> Outcome:
    """The :class:`Outcome` of attempt ``a`` (docs/job-lifecycle.md, "What each outcome
    writes"), with ``now`` as the time of its end.

    ``retry_at`` (when :func:`precedence` says :attr:`Rule.RETRY`, required) is when the job
    runs again; it and snoozes go straight back to ``available`` when due within
    ``scheduler_interval`` seconds, else to ``retryable`` / ``scheduled``. ``trace`` is the
    recorded traceback text (see :func:`records_trace`). Error texts are sanitised for jsonb
    (river._validate.jsonb_safe).
    """
    error = a.error
    if error is None:
        return completed(a.row, now, a.staged, a.started, a.finished)
    rule = precedence(a)
    row = a.row
    if rule is Rule.REMOTE_CANCEL or rule is Rule.CANCEL:
        return _outcome(
            a,
            JobState.CANCELLED,
            "job_cancelled",
            finalized_at=now,
            error=_attempt_error(a, error, trace),
        )
    if rule is Rule.SNOOZE:
        assert isinstance(error, JobSnooze)
        delay = error.seconds
        return _outcome(
            a,
            JobState.AVAILABLE if delay <= scheduler_interval else JobState.SCHEDULED,
            "job_snoozed",
            scheduled_at=_plus_seconds(now, delay),
            attempt=max(row.attempt - 1, 0),
            metadata={"snoozes": next_snooze_count(row.metadata)},
        )
    if rule is Rule.INTERRUPT:
        return _outcome(
            a,
            JobState.AVAILABLE,
            "job_interrupted",
            scheduled_at=now,
            attempt=max(row.attempt - 1, 0),
        )
    if rule is Rule.DISCARD:
        return _outcome(
            a,
            JobState.DISCARDED,
            "job_failed",
            finalized_at=now,
            error=_attempt_error(a, error, trace),
        )
    if retry_at is None:
        raise ValueError("classify: a retried attempt needs retry_at")
    short = (retry_at - now).total_seconds() <= scheduler_interval
    return _outcome(
        a,
        JobState.AVAILABLE if short else JobState.RETRYABLE,
        "job_failed",
        scheduled_at=retry_at,
        error=_attempt_error(a, error, trace),
    )


def completed(
    row: JobRow, now: datetime, staged: dict[str, Any] | None, started: float, finished: float
) -> Outcome:
    """The outcome of an attempt without error (:attr:`Rule.COMPLETE`): ``classify``'s first
    row, callable without building an :class:`Attempt` (the executor's hot path)."""
    # Positional (cheaper): finalized_at=now, no scheduled_at, attempt or error.
    return Outcome(
        row, JobState.COMPLETED, "job_completed", now, None, None, None,
        dict(staged) if staged else None, started, finished,
    )  # fmt: skip


def _outcome(
    a: Attempt,
    state: JobState,
    event: str,
    *,
    finalized_at: datetime | None = None,
    scheduled_at: datetime | None = None,
    attempt: int | None = None,
    error: AttemptError | None = None,
    metadata: dict[str, Any] | None = None,
) -> Outcome:
    if a.staged:
        metadata = {**a.staged, **metadata} if metadata else dict(a.staged)
    return Outcome(
        a.row,
        state,
        event,
        finalized_at=finalized_at,
        scheduled_at=scheduled_at,
        attempt=attempt,
        error=error,
        metadata=metadata,
        started=a.started,
        finished=a.finished,
    )


def _attempt_error(a: Attempt, error: BaseException, trace: str) -> AttemptError:
    at = a.started_at or a.row.attempted_at
    if at is None:
        raise ValueError("classify: an attempt needs started_at or row.attempted_at")
    return AttemptError(
        at=at, attempt=a.row.attempt, error=jsonb_safe(message(error)), trace=jsonb_safe(trace)
    )


def _plus_seconds(now: datetime, seconds: float) -> datetime:
    """``now + seconds``, saturating at the largest datetime instead of overflowing."""
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:
        return datetime.max.replace(tzinfo=now.tzinfo)


# --------------------------------------------------------------------------------------------
# The runtime's own conditions, as errors
# --------------------------------------------------------------------------------------------


class UnknownKind(Exception):
    """No worker of this client handles the job's kind (retried, like any error)."""

    def __init__(self, kind: str, *, retried: bool) -> None:
        outcome = "the job will be retried" if retried else "no attempts left: it is discarded"
        super().__init__(
            f"job kind {kind!r} is not registered in this client's workers "
            f"(register a worker for it; {outcome})"
        )


class Interrupted(Exception):
    """The attempt was cancelled because this client is stopping."""

    def __init__(self) -> None:
        super().__init__("job interrupted: the client stopped")


class RemoteCancelled(Exception):
    """The attempt was cancelled by ``job_cancel`` (from any process)."""

    def __init__(self) -> None:
        super().__init__("job cancelled remotely")


def message(exc: BaseException) -> str:
    """The error text recorded for ``exc``: ``Type: text`` for an exception, the reason for
    ``JobCancel``, the bare text for the runtime's own conditions (no private class name)."""
    if isinstance(exc, JobCancel):
        reason = exc.reason
        return message(reason) if isinstance(reason, BaseException) else str(reason)
    text = str(exc)
    if isinstance(exc, UnknownKind | RemoteCancelled | Interrupted):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
