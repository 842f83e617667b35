"""The outcome table of docs/job-lifecycle.md, row by row, and its precedence list, without a
database.

The first half drives :func:`river._outcome.classify` (pure: the attempt's facts and ``now`` in,
the :class:`Outcome` to write out). The second half drives :meth:`Executor.execute` on rows built
in memory, for what happens before classification: resolving the worker and its args (unknown
kind, invalid args, a failing ``timeout()``), the timeout, a stop or remote cancel before and
during the attempt, sync workers that saw ``cancel_requested()``, the hooks, and the client's
scheduler interval. tests/test_runtime_outcomes.py checks the same rows on persisted rows.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import anyio
import pydantic
import pytest

import river
from river._executor import CancelReason, Executor, RunningJob
from river._outcome import (
    SCHEDULER_INTERVAL,
    Attempt,
    Interrupted,
    Outcome,
    RemoteCancelled,
    Rule,
    UnknownKind,
    classify,
    message,
    precedence,
    records_trace,
)
from river._types import AttemptError, JobRow, JobState

NOW = datetime(2025, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
STARTED = NOW - timedelta(seconds=2)


def row(*, attempt: int = 1, max_attempts: int = 3, **fields: Any) -> JobRow:
    values: dict[str, Any] = {
        "id": 7,
        "kind": "behave",
        "queue": "default",
        "state": JobState.RUNNING,
        "encoded_args": "{}",
        "attempt": attempt,
        "max_attempts": max_attempts,
        "priority": 1,
        "created_at": STARTED - timedelta(minutes=1),
        "scheduled_at": STARTED - timedelta(minutes=1),
        "attempted_at": STARTED,
        **fields,
    }
    return JobRow(**values)


def boom() -> ValueError:
    """A ValueError with a traceback, as a worker would raise it."""
    try:
        raise ValueError("boom")
    except ValueError as exc:
        return exc


def invalid_args() -> pydantic.ValidationError:
    class Args(pydantic.BaseModel):
        n: int

    try:
        Args.model_validate_json('{"n": "x"}')
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# classify: one case per row of "What each outcome writes", plus the precedence list
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    """An attempt and the outcome it must produce (fields left None must be None)."""

    name: str
    attempt: Attempt
    state: JobState
    event: str
    finalized_at: datetime | None = None
    scheduled_at: datetime | None = None
    new_attempt: int | None = None
    error: str | None = None  # the recorded AttemptError.error, None: no error recorded
    metadata: dict[str, Any] | None = None
    retry_at: datetime | None = None
    scheduler_interval: float = SCHEDULER_INTERVAL
    rule: Rule | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def a(
    error: BaseException | None = None,
    *,
    reason: str | None = None,
    timed_out: bool = False,
    staged: dict[str, Any] | None = None,
    **row_fields: Any,
) -> Attempt:
    return Attempt(
        row(**row_fields),
        error,
        timed_out,
        reason,
        staged,
        None,
        started=1.0,
        finished=3.5,
    )


SOON = NOW + timedelta(seconds=SCHEDULER_INTERVAL)  # due within the interval: available
LATER = NOW + timedelta(seconds=SCHEDULER_INTERVAL, microseconds=1)  # just past it
REMOTE, STOP = CancelReason.REMOTE, CancelReason.STOP
TIMEOUT = TimeoutError("job timed out after 1s")

CASES = [
    # `work` returns: completed, staged values merged.
    Case("completed", a(), JobState.COMPLETED, "job_completed", finalized_at=NOW),
    Case(
        "completed with staged metadata",
        a(staged={"output": [1, 2]}),
        JobState.COMPLETED,
        "job_completed",
        finalized_at=NOW,
        metadata={"output": [1, 2]},
    ),
    # Rule 7: no error wins even when a cancel arrived meanwhile.
    Case(
        "completed despite a remote cancel",
        a(reason=REMOTE),
        JobState.COMPLETED,
        "job_completed",
        finalized_at=NOW,
    ),
    Case(
        "completed despite a stop",
        a(reason=STOP),
        JobState.COMPLETED,
        "job_completed",
        finalized_at=NOW,
    ),
    # raises JobCancel: cancelled, error +1, finalized.
    Case(
        "JobCancel",
        a(river.JobCancel("no longer needed")),
        JobState.CANCELLED,
        "job_cancelled",
        finalized_at=NOW,
        error="no longer needed",
        rule=Rule.CANCEL,
    ),
    Case(
        "JobCancel with an exception as reason",
        a(river.JobCancel(KeyError("gone"))),
        JobState.CANCELLED,
        "job_cancelled",
        finalized_at=NOW,
        error="KeyError: 'gone'",
        rule=Rule.CANCEL,
    ),
    Case(
        "JobCancel at max attempts is still cancelled",
        a(river.JobCancel("stop"), attempt=3, max_attempts=3),
        JobState.CANCELLED,
        "job_cancelled",
        finalized_at=NOW,
        error="stop",
        rule=Rule.CANCEL,
    ),
    # raises, attempts left, retry within the scheduler interval: available.
    Case(
        "error, short retry",
        a(boom()),
        JobState.AVAILABLE,
        "job_failed",
        scheduled_at=SOON,
        error="ValueError: boom",
        retry_at=SOON,
        rule=Rule.RETRY,
    ),
    # raises, attempts left, retry later: retryable.
    Case(
        "error, long retry",
        a(boom()),
        JobState.RETRYABLE,
        "job_failed",
        scheduled_at=LATER,
        error="ValueError: boom",
        retry_at=LATER,
        rule=Rule.RETRY,
    ),
    Case(
        "error, retry time in the past",
        a(boom()),
        JobState.AVAILABLE,
        "job_failed",
        scheduled_at=NOW - timedelta(seconds=1),
        error="ValueError: boom",
        retry_at=NOW - timedelta(seconds=1),
    ),
    Case(
        "error keeps staged metadata",
        a(boom(), staged={"output": "partial"}),
        JobState.RETRYABLE,
        "job_failed",
        scheduled_at=LATER,
        error="ValueError: boom",
        metadata={"output": "partial"},
        retry_at=LATER,
    ),
    # raises at attempt >= max_attempts: discarded.
    Case(
        "error at max attempts",
        a(boom(), attempt=3, max_attempts=3),
        JobState.DISCARDED,
        "job_failed",
        finalized_at=NOW,
        error="ValueError: boom",
        rule=Rule.DISCARD,
    ),
    Case(
        "error past max attempts (max lowered meanwhile)",
        a(boom(), attempt=5, max_attempts=3),
        JobState.DISCARDED,
        "job_failed",
        finalized_at=NOW,
        error="ValueError: boom",
        rule=Rule.DISCARD,
    ),
    # JobSnooze(d): attempt given back, snoozes + 1; available up to the interval.
    Case(
        "short snooze",
        a(river.JobSnooze(SCHEDULER_INTERVAL), attempt=2),
        JobState.AVAILABLE,
        "job_snoozed",
        scheduled_at=SOON,
        new_attempt=1,
        metadata={"snoozes": 1},
        rule=Rule.SNOOZE,
    ),
    Case(
        "zero snooze",
        a(river.JobSnooze(0)),
        JobState.AVAILABLE,
        "job_snoozed",
        scheduled_at=NOW,
        new_attempt=0,
        metadata={"snoozes": 1},
    ),
    Case(
        "long snooze",
        a(river.JobSnooze(SCHEDULER_INTERVAL + 0.001), attempt=2),
        JobState.SCHEDULED,
        "job_snoozed",
        scheduled_at=NOW + timedelta(seconds=SCHEDULER_INTERVAL + 0.001),
        new_attempt=1,
        metadata={"snoozes": 1},
        rule=Rule.SNOOZE,
    ),
    Case(
        "snooze counts on from the previous value, staged metadata kept",
        a(river.JobSnooze(60), metadata={"snoozes": 4}, staged={"snoozes": 0, "k": "v"}),
        JobState.SCHEDULED,
        "job_snoozed",
        scheduled_at=NOW + timedelta(seconds=60),
        new_attempt=0,
        metadata={"snoozes": 5, "k": "v"},
    ),
    Case(
        "snooze at max attempts is still a snooze",
        a(river.JobSnooze(1), attempt=3, max_attempts=3),
        JobState.AVAILABLE,
        "job_snoozed",
        scheduled_at=NOW + timedelta(seconds=1),
        new_attempt=2,
        metadata={"snoozes": 1},
    ),
    Case(
        "snooze past datetime's range saturates",
        a(river.JobSnooze(1e12)),
        JobState.SCHEDULED,
        "job_snoozed",
        scheduled_at=datetime.max.replace(tzinfo=UTC),
        new_attempt=0,
        metadata={"snoozes": 1},
    ),
    # Interrupted by this client's stop: available now, attempt given back, no error.
    Case(
        "interrupted",
        a(Interrupted(), reason=STOP, attempt=2),
        JobState.AVAILABLE,
        "job_interrupted",
        scheduled_at=NOW,
        new_attempt=1,
        rule=Rule.INTERRUPT,
    ),
    Case(
        "interrupted at max attempts (rule 4 before rule 5)",
        a(Interrupted(), reason=STOP, attempt=3, max_attempts=3),
        JobState.AVAILABLE,
        "job_interrupted",
        scheduled_at=NOW,
        new_attempt=2,
        rule=Rule.INTERRUPT,
    ),
    Case(
        "an error raised while stopping is an interruption",
        a(boom(), reason=STOP),
        JobState.AVAILABLE,
        "job_interrupted",
        scheduled_at=NOW,
        new_attempt=0,
        rule=Rule.INTERRUPT,
    ),
    # The job timeout: an ordinary error (rule 6), even while the client stops.
    Case(
        "timeout",
        a(TIMEOUT, timed_out=True),
        JobState.RETRYABLE,
        "job_failed",
        scheduled_at=LATER,
        error="TimeoutError: job timed out after 1s",
        retry_at=LATER,
        rule=Rule.RETRY,
    ),
    Case(
        "timeout while stopping is not an interruption",
        a(TIMEOUT, timed_out=True, reason=STOP),
        JobState.AVAILABLE,
        "job_failed",
        scheduled_at=SOON,
        error="TimeoutError: job timed out after 1s",
        retry_at=SOON,
        rule=Rule.RETRY,
    ),
    Case(
        "timeout at max attempts",
        a(TIMEOUT, timed_out=True, attempt=3, max_attempts=3),
        JobState.DISCARDED,
        "job_failed",
        finalized_at=NOW,
        error="TimeoutError: job timed out after 1s",
        rule=Rule.DISCARD,
    ),
    # Remote cancel (rule 1): cancelled, whatever the attempt ended with.
    Case(
        "remote cancel",
        a(RemoteCancelled(), reason=REMOTE),
        JobState.CANCELLED,
        "job_cancelled",
        finalized_at=NOW,
        error="job cancelled remotely",
        rule=Rule.REMOTE_CANCEL,
    ),
    Case(
        "error after a remote cancel",
        a(boom(), reason=REMOTE),
        JobState.CANCELLED,
        "job_cancelled",
        finalized_at=NOW,
        error="ValueError: boom",
        rule=Rule.REMOTE_CANCEL,
    ),
    Case(
        "snooze after a remote cancel (rule 1 before rule 2)",
        a(river.JobSnooze(1), reason=REMOTE),
        JobState.CANCELLED,
        "job_cancelled",
        finalized_at=NOW,
        error="JobSnooze: snoozed for 1s",
        rule=Rule.REMOTE_CANCEL,
    ),
    Case(
        "remote cancel at max attempts",
        a(boom(), reason=REMOTE, attempt=3, max_attempts=3),
        JobState.CANCELLED,
        "job_cancelled",
        finalized_at=NOW,
        error="ValueError: boom",
    ),
    # Rules 2 and 3 before rule 4: a snooze or JobCancel while stopping stays what it is.
    Case(
        "snooze while stopping",
        a(river.JobSnooze(1), reason=STOP),
        JobState.AVAILABLE,
        "job_snoozed",
        scheduled_at=NOW + timedelta(seconds=1),
        new_attempt=0,
        metadata={"snoozes": 1},
        rule=Rule.SNOOZE,
    ),
    Case(
        "JobCancel while stopping",
        a(river.JobCancel("bye"), reason=STOP),
        JobState.CANCELLED,
        "job_cancelled",
        finalized_at=NOW,
        error="bye",
        rule=Rule.CANCEL,
    ),
    # Unknown kind and invalid args: ordinary errors (rule 6), discarded at max attempts.
    Case(
        "unknown kind",
        a(UnknownKind("behave", retried=True)),
        JobState.RETRYABLE,
        "job_failed",
        scheduled_at=LATER,
        error=(
            "job kind 'behave' is not registered in this client's workers (register a worker "
            "for it; the job will be retried)"
        ),
        retry_at=LATER,
        rule=Rule.RETRY,
    ),
    Case(
        "unknown kind at max attempts",
        a(UnknownKind("behave", retried=False), attempt=3, max_attempts=3),
        JobState.DISCARDED,
        "job_failed",
        finalized_at=NOW,
        error=(
            "job kind 'behave' is not registered in this client's workers (register a worker "
            "for it; no attempts left: it is discarded)"
        ),
        rule=Rule.DISCARD,
    ),
    Case(
        "invalid args",
        a(invalid_args()),
        JobState.AVAILABLE,
        "job_failed",
        scheduled_at=SOON,
        error=str(message(invalid_args())),
        retry_at=SOON,
        rule=Rule.RETRY,
    ),
    # Text jsonb cannot hold becomes U+FFFD.
    Case(
        "NUL and lone surrogate in the error text",
        a(ValueError("a\x00b\ud800c")),
        JobState.RETRYABLE,
        "job_failed",
        scheduled_at=LATER,
        error="ValueError: a\ufffdb\ufffdc",
        retry_at=LATER,
    ),
    # The client's scheduler interval decides available vs retryable/scheduled.
    Case(
        "retry in 3 s with a 1 s scheduler interval",
        a(boom()),
        JobState.RETRYABLE,
        "job_failed",
        scheduled_at=NOW + timedelta(seconds=3),
        error="ValueError: boom",
        retry_at=NOW + timedelta(seconds=3),
        scheduler_interval=1.0,
    ),
    Case(
        "retry in 30 s with a 60 s scheduler interval",
        a(boom()),
        JobState.AVAILABLE,
        "job_failed",
        scheduled_at=NOW + timedelta(seconds=30),
        error="ValueError: boom",
        retry_at=NOW + timedelta(seconds=30),
        scheduler_interval=60.0,
    ),
    Case(
        "snooze 3 s with a 1 s scheduler interval",
        a(river.JobSnooze(3)),
        JobState.SCHEDULED,
        "job_snoozed",
        scheduled_at=NOW + timedelta(seconds=3),
        new_attempt=0,
        metadata={"snoozes": 1},
        scheduler_interval=1.0,
    ),
    Case(
        "snooze 30 s with a 60 s scheduler interval",
        a(river.JobSnooze(30)),
        JobState.AVAILABLE,
        "job_snoozed",
        scheduled_at=NOW + timedelta(seconds=30),
        new_attempt=0,
        metadata={"snoozes": 1},
        scheduler_interval=60.0,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_outcome_table(case: Case) -> None:
    trace = "TRACE" if records_trace(precedence(case.attempt), case.attempt.error) else ""
    outcome = classify(
        case.attempt,
        now=NOW,
        scheduler_interval=case.scheduler_interval,
        retry_at=case.retry_at,
        trace=trace,
    )
    assert isinstance(outcome, Outcome)
    assert outcome.job is case.attempt.row
    assert (outcome.state, outcome.event) == (case.state, case.event)
    assert outcome.finalized_at == case.finalized_at
    assert outcome.scheduled_at == case.scheduled_at
    assert outcome.attempt == case.new_attempt
    assert outcome.metadata == case.metadata
    assert (outcome.started, outcome.finished) == (1.0, 3.5)
    if case.error is None:
        assert outcome.error is None
    else:
        assert outcome.error == AttemptError(
            at=STARTED, attempt=case.attempt.row.attempt, error=case.error, trace=trace
        )
    # finalized_at is set exactly for the finalized states.
    finalized = case.state in (JobState.COMPLETED, JobState.CANCELLED, JobState.DISCARDED)
    assert (outcome.finalized_at is not None) == finalized
    if case.rule is not None:
        assert precedence(case.attempt) is case.rule


def test_every_rule_and_state_is_covered() -> None:
    rules = {precedence(c.attempt) for c in CASES}
    assert rules == set(Rule)
    assert {c.state for c in CASES} == {
        JobState.AVAILABLE,
        JobState.SCHEDULED,
        JobState.RETRYABLE,
        JobState.COMPLETED,
        JobState.CANCELLED,
        JobState.DISCARDED,
    }


def test_rules_are_listed_in_precedence_order() -> None:
    # The order of docs/job-lifecycle.md's "Outcome precedence".
    assert [r.name for r in sorted(Rule, key=lambda r: r.value)] == [
        "REMOTE_CANCEL",
        "SNOOZE",
        "CANCEL",
        "INTERRUPT",
        "DISCARD",
        "RETRY",
        "COMPLETE",
    ]


@pytest.mark.parametrize(
    ("error", "reason", "timed_out", "last", "rule"),
    [
        # Each line pits a rule against the ones below it: the higher one wins.
        (river.JobSnooze(1), REMOTE, False, True, Rule.REMOTE_CANCEL),
        (river.JobCancel(), REMOTE, False, True, Rule.REMOTE_CANCEL),
        (TIMEOUT, REMOTE, True, True, Rule.REMOTE_CANCEL),
        (river.JobSnooze(1), STOP, True, True, Rule.SNOOZE),
        (river.JobCancel(), STOP, True, True, Rule.CANCEL),
        (boom(), STOP, False, True, Rule.INTERRUPT),
        (TIMEOUT, STOP, True, True, Rule.DISCARD),
        (boom(), None, False, True, Rule.DISCARD),
        (TIMEOUT, STOP, True, False, Rule.RETRY),
        (boom(), None, False, False, Rule.RETRY),
        (None, REMOTE, True, True, Rule.COMPLETE),
    ],
)
def test_precedence(
    error: BaseException | None, reason: str | None, timed_out: bool, last: bool, rule: Rule
) -> None:
    attempt = a(error, reason=reason, timed_out=timed_out, attempt=3 if last else 1)
    assert precedence(attempt) is rule


@pytest.mark.parametrize(
    ("error", "reason", "expected"),
    [
        (boom(), None, True),
        (TIMEOUT, None, True),
        (boom(), REMOTE, True),
        (RemoteCancelled(), REMOTE, False),
        (river.JobCancel("x"), None, False),
        (river.JobCancel("x"), REMOTE, False),
        (UnknownKind("k", retried=True), None, False),
        (river.JobSnooze(1), None, False),
        (Interrupted(), STOP, False),
        (None, None, False),
    ],
)
def test_records_trace(error: BaseException | None, reason: str | None, expected: bool) -> None:
    assert records_trace(precedence(a(error, reason=reason)), error) is expected


def test_retry_needs_a_retry_time() -> None:
    with pytest.raises(ValueError, match="retry_at"):
        classify(a(boom()), now=NOW)


def test_error_time_is_started_at_else_attempted_at() -> None:
    attempt = a(river.JobCancel("x"))
    assert classify(attempt, now=NOW).error == AttemptError(STARTED, 1, "x", "")
    attempt.started_at = NOW - timedelta(hours=1)
    assert classify(attempt, now=NOW).error == AttemptError(NOW - timedelta(hours=1), 1, "x")


def test_staged_metadata_is_copied() -> None:
    staged = {"k": 1}
    outcome = classify(a(staged=staged), now=NOW)
    assert outcome.metadata == staged
    assert outcome.metadata is not staged


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (ValueError("x"), "ValueError: x"),
        (ValueError(), "ValueError"),
        (river.JobCancel(), "job cancelled by worker"),
        (river.JobCancel(river.JobCancel("inner")), "inner"),
        (RemoteCancelled(), "job cancelled remotely"),
        (Interrupted(), "job interrupted: the client stopped"),
    ],
)
def test_message(error: BaseException, text: str) -> None:
    assert message(error) == text


# --------------------------------------------------------------------------------------------
# Executor.execute without a database: resolve and invoke feeding the table
# --------------------------------------------------------------------------------------------


class Behave(river.JobArgs):
    kind: ClassVar[str] = "behave"
    mode: str = "ok"
    seconds: float = 0.0


class AsyncWorker(river.Worker[Behave]):
    def __init__(self, *, timeout: float | None = None) -> None:
        self.started = asyncio.Event()
        self.ran = 0
        self._timeout = timeout

    def timeout(self, job: river.Job[Behave]) -> float | None:
        if job.args.mode == "bad_timeout":
            raise RuntimeError("timeout() broke")
        return self._timeout

    async def work(self, job: river.Job[Behave]) -> None:
        self.ran += 1
        self.started.set()
        mode = job.args.mode
        if mode == "raise":
            raise ValueError("boom")
        if mode == "sleep":
            await asyncio.sleep(job.args.seconds)
        if mode == "snooze":
            raise river.JobSnooze(job.args.seconds)
        if mode == "output":
            river.record_output({"done": True})


class SyncWorker(river.Worker[Behave]):
    """Polls cancel_requested() until it is asked to stop, then returns normally."""

    def __init__(self, *, timeout: float | None = None) -> None:
        self.started = threading.Event()
        self.saw_cancel = False
        self._timeout = timeout

    def timeout(self, job: river.Job[Behave]) -> float | None:
        return self._timeout

    def work(self, job: river.Job[Behave]) -> None:
        self.started.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if river.cancel_requested():
                self.saw_cancel = True
                return
            time.sleep(0.001)
        raise AssertionError("never asked to stop")


class Recorder(river.Middleware):
    def __init__(self, *, forgive: bool = False, break_end: bool = False) -> None:
        self.calls: list[str] = []
        self.forgive = forgive
        self.break_end = break_end

    def work_begin(self, job: river.Job[Any]) -> None:
        self.calls.append("begin")

    async def work(self, job: river.Job[Any], call_next: Any) -> None:
        self.calls.append("work")
        await call_next()

    def work_end(self, job: river.Job[Any], error: BaseException | None) -> BaseException | None:
        self.calls.append(f"end:{type(error).__name__}")
        if self.break_end:
            raise RuntimeError("work_end broke")
        return None if self.forgive else error


def executor(
    worker: river.Worker[Any] | None,
    *,
    middleware: list[river.Middleware] | None = None,
    retry_in: float = 60.0,
    job_timeout: float = 60.0,
    **kwargs: Any,
) -> Executor:
    workers = river.Workers()
    if worker is not None:
        workers.add(worker)
    return Executor(
        workers,
        job_timeout=job_timeout,
        retry_policy=lambda count, now: now + timedelta(seconds=retry_in),
        thread_limiter=anyio.CapacityLimiter(2),
        middleware=middleware or (),
        **kwargs,
    )


def running(args: str = '{"mode": "ok"}', **fields: Any) -> RunningJob:
    return RunningJob(row(encoded_args=args, **fields), time.monotonic())


@pytest.mark.anyio
async def test_async_success_is_completed_with_staged_output() -> None:
    outcome = await executor(AsyncWorker()).execute(running('{"mode": "output"}'))
    assert outcome.state is JobState.COMPLETED
    assert outcome.metadata == {"output": {"done": True}}
    assert outcome.finished >= outcome.started


@pytest.mark.anyio
async def test_worker_error_is_retried_with_its_traceback() -> None:
    outcome = await executor(AsyncWorker()).execute(running('{"mode": "raise"}'))
    assert (outcome.state, outcome.event) == (JobState.RETRYABLE, "job_failed")
    assert outcome.error is not None
    assert outcome.error.error == "ValueError: boom"
    assert "in work" in outcome.error.trace
    assert "ValueError: boom" in outcome.error.trace


@pytest.mark.anyio
async def test_unknown_kind_skips_hooks_and_is_retried_without_trace() -> None:
    hooks = Recorder()
    outcome = await executor(None, middleware=[hooks]).execute(running())
    assert outcome.state is JobState.RETRYABLE
    assert outcome.error is not None
    assert outcome.error.trace == ""
    assert "not registered" in outcome.error.error
    assert hooks.calls == []


@pytest.mark.anyio
async def test_invalid_args_skip_hooks_and_are_retried() -> None:
    worker, hooks = AsyncWorker(), Recorder()
    outcome = await executor(worker, middleware=[hooks]).execute(running('{"mode": 3}'))
    assert outcome.state is JobState.RETRYABLE
    assert outcome.error is not None
    assert outcome.error.error.startswith("ValidationError: ")
    assert (worker.ran, hooks.calls) == (0, [])


@pytest.mark.anyio
async def test_failing_timeout_method_fails_the_attempt_and_runs_work_end() -> None:
    worker, hooks = AsyncWorker(), Recorder()
    outcome = await executor(worker, middleware=[hooks]).execute(running('{"mode": "bad_timeout"}'))
    assert outcome.error is not None
    assert outcome.error.error == "RuntimeError: timeout() broke"
    assert worker.ran == 0
    assert hooks.calls == ["end:RuntimeError"]


@pytest.mark.anyio
async def test_async_timeout_is_an_error() -> None:
    worker = AsyncWorker(timeout=0.01)
    outcome = await executor(worker).execute(running('{"mode": "sleep", "seconds": 10}'))
    assert outcome.state is JobState.RETRYABLE
    assert outcome.error is not None
    assert outcome.error.error == "TimeoutError: job timed out after 0.01s"


@pytest.mark.anyio
async def test_client_job_timeout_applies_when_the_worker_sets_none() -> None:
    outcome = await executor(AsyncWorker(), job_timeout=0.01).execute(
        running('{"mode": "sleep", "seconds": 10}')
    )
    assert outcome.error is not None
    assert "timed out after 0.01s" in outcome.error.error


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reason", "state", "event"),
    [
        (CancelReason.STOP, JobState.AVAILABLE, "job_interrupted"),
        (CancelReason.REMOTE, JobState.CANCELLED, "job_cancelled"),
    ],
)
async def test_cancelled_before_start_never_runs(reason: str, state: JobState, event: str) -> None:
    worker = AsyncWorker()
    job = running()
    job.cancel(reason)
    outcome = await executor(worker).execute(job)
    assert (outcome.state, outcome.event, worker.ran) == (state, event, 0)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reason", "state", "event", "error"),
    [
        (CancelReason.STOP, JobState.AVAILABLE, "job_interrupted", None),
        (CancelReason.REMOTE, JobState.CANCELLED, "job_cancelled", "job cancelled remotely"),
    ],
)
async def test_async_attempt_cancelled_while_running(
    reason: str, state: JobState, event: str, error: str | None
) -> None:
    worker = AsyncWorker()
    job = running('{"mode": "sleep", "seconds": 10}')
    task = asyncio.get_running_loop().create_task(executor(worker).execute(job))
    await asyncio.wait_for(worker.started.wait(), 5)
    job.cancel(reason)
    outcome = await asyncio.wait_for(task, 5)
    assert (outcome.state, outcome.event) == (state, event)
    assert (outcome.error.error if outcome.error else None) == error
    if error is not None:
        assert outcome.error is not None
        assert outcome.error.trace == ""


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reason", "state", "error"),
    [
        (None, JobState.RETRYABLE, "TimeoutError: job timed out after 0.05s"),
        (CancelReason.STOP, JobState.AVAILABLE, None),
        (CancelReason.REMOTE, JobState.CANCELLED, "job cancelled remotely"),
    ],
)
async def test_sync_worker_that_saw_cancel_requested_stopped_early(
    reason: str | None, state: JobState, error: str | None
) -> None:
    # cancel_observed: a thread cannot be interrupted; a sync worker that returned after
    # cancel_requested() said True stopped early, exactly like a cancelled async worker.
    worker = SyncWorker(timeout=0.05 if reason is None else 30)
    job = running()
    task = asyncio.get_running_loop().create_task(executor(worker).execute(job))
    if reason is not None:
        await anyio.to_thread.run_sync(worker.started.wait, 5)
        job.cancel(reason)
    outcome = await asyncio.wait_for(task, 10)
    assert worker.saw_cancel
    assert job.cancel_observed
    assert outcome.state is state
    assert (outcome.error.error if outcome.error else None) == error


@pytest.mark.anyio
async def test_middleware_wraps_sync_and_async_workers_through_one_dispatch() -> None:
    for worker in (AsyncWorker(), SyncWorker(timeout=0.01)):
        hooks = Recorder(forgive=True)
        outcome = await executor(worker, middleware=[hooks]).execute(running())
        # The sync worker timed out; the work_end hook forgave it (None: completed).
        assert outcome.state is JobState.COMPLETED
        assert hooks.calls[:2] == ["begin", "work"]
        assert hooks.calls[2] in ("end:NoneType", "end:TimeoutError")


@pytest.mark.anyio
async def test_a_broken_hook_fails_the_attempt_not_the_executor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = Recorder(break_end=True)
    outcome = await executor(AsyncWorker(), middleware=[hooks]).execute(running())
    assert outcome.state is JobState.RETRYABLE
    assert outcome.error is not None
    assert outcome.error.error == "RuntimeError: work_end broke"
    assert "evaluating the attempt failed" in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("scheduler_interval", "retry_in", "state"),
    [
        (None, SCHEDULER_INTERVAL, JobState.AVAILABLE),  # the default: 5 s
        (None, SCHEDULER_INTERVAL + 1, JobState.RETRYABLE),
        (1.0, 3.0, JobState.RETRYABLE),
        (60.0, 30.0, JobState.AVAILABLE),
    ],
)
async def test_executor_follows_the_scheduler_interval_for_retries(
    scheduler_interval: float | None, retry_in: float, state: JobState
) -> None:
    kwargs = {} if scheduler_interval is None else {"scheduler_interval": scheduler_interval}
    ex = executor(AsyncWorker(), retry_in=retry_in, clock=lambda: NOW, **kwargs)
    outcome = await ex.execute(running('{"mode": "raise"}'))
    assert outcome.state is state
    assert outcome.scheduled_at == NOW + timedelta(seconds=retry_in)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("scheduler_interval", "snooze", "state"),
    [
        (None, SCHEDULER_INTERVAL, JobState.AVAILABLE),
        (None, SCHEDULER_INTERVAL + 1, JobState.SCHEDULED),
        (1.0, 3.0, JobState.SCHEDULED),
        (60.0, 30.0, JobState.AVAILABLE),
    ],
)
async def test_executor_follows_the_scheduler_interval_for_snoozes(
    scheduler_interval: float | None, snooze: float, state: JobState
) -> None:
    kwargs = {} if scheduler_interval is None else {"scheduler_interval": scheduler_interval}
    ex = executor(AsyncWorker(), clock=lambda: NOW, **kwargs)
    outcome = await ex.execute(running(f'{{"mode": "snooze", "seconds": {snooze}}}'))
    assert (outcome.state, outcome.event) == (state, "job_snoozed")
    assert outcome.scheduled_at == NOW + timedelta(seconds=snooze)
