"""The job timeout of async attempts: one timer per client (river/_executor.py ``_Deadlines``).

Executor-level tests (no database: the executor never touches one): the deadlines of attempts
running side by side, added in any order, each end their own attempt and no other; an attempt
that ends in time leaves nothing behind that grows; a client restarted on another event loop
starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

import anyio
import pytest

import river
from river._executor import Executor, RunningJob, _current, _Deadlines
from river._retry import next_retry_at
from river._types import JobRow, JobState

pytestmark = pytest.mark.anyio


class NapArgs(river.JobArgs):
    kind: ClassVar[str] = "deadline_nap"
    nap: float
    timeout: float


class NapWorker(river.Worker[NapArgs]):
    def timeout(self, job: river.Job[NapArgs]) -> float | None:
        return job.args.timeout

    async def work(self, job: river.Job[NapArgs]) -> None:
        await asyncio.sleep(job.args.nap)


def _executor(worker: river.Worker[Any] | None = None) -> Executor:
    workers = river.Workers()
    workers.add(worker if worker is not None else NapWorker())
    return Executor(
        workers,
        job_timeout=60.0,
        retry_policy=next_retry_at,
        thread_limiter=anyio.CapacityLimiter(1),
    )


def _row(job_id: int, nap: float, timeout: float) -> JobRow:
    now = datetime.now(UTC)
    return JobRow(
        id=job_id,
        kind="deadline_nap",
        queue="default",
        state=JobState.RUNNING,
        encoded_args=NapArgs(nap=nap, timeout=timeout).model_dump_json(),
        attempt=1,
        max_attempts=25,
        priority=1,
        created_at=now,
        scheduled_at=now,
        attempted_at=now,
    )


async def test_side_by_side_deadlines_end_their_own_attempts_in_any_order() -> None:
    executor = _executor()
    # (nap, timeout): the later-added attempts have the earlier deadlines, so the one timer is
    # re-armed for each; -1 means no timeout at all.
    plan = {1: (30.0, 0.6), 2: (30.0, 0.2), 3: (30.0, 0.4), 4: (0.3, 1.0), 5: (0.5, -1.0)}
    ended: dict[int, float] = {}
    outcomes = {}
    start = asyncio.get_running_loop().time()

    async def attempt(job_id: int) -> None:
        nap, timeout = plan[job_id]
        outcome = await executor.execute(RunningJob(_row(job_id, nap, timeout), 0.0))
        ended[job_id] = asyncio.get_running_loop().time() - start
        outcomes[job_id] = outcome

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for job_id in plan:
                tg.start_soon(attempt, job_id)

    for job_id in (1, 2, 3):
        outcome = outcomes[job_id]
        assert outcome.error is not None, job_id
        assert outcome.error.error == f"TimeoutError: job timed out after {plan[job_id][1]:g}s"
        assert ended[job_id] >= plan[job_id][1]
    assert ended[2] < ended[3] < ended[1]
    # Ended by their work, not by anyone's deadline.
    assert outcomes[4].state is JobState.COMPLETED
    assert outcomes[5].state is JobState.COMPLETED


async def test_attempts_that_end_in_time_leave_a_bounded_heap() -> None:
    executor = _executor()
    deadlines = executor._deadlines
    # One attempt stays in its worker throughout (the heap is emptied when none is), while
    # 2,000 others come and go: compaction keeps the stale entries few.
    blocker = asyncio.ensure_future(executor.execute(RunningJob(_row(0, 30.0, 60.0), 0.0)))
    await asyncio.sleep(0)
    for job_id in range(1, 2001):
        outcome = await executor.execute(RunningJob(_row(job_id, 0.0, 60.0), 0.0))
        assert outcome.state is JobState.COMPLETED
        assert len(deadlines._heap) <= 2 * 2 + 64 + 1
    # One timer, armed for the first deadline, never re-armed for later ones.
    assert deadlines._timer is not None
    assert deadlines._timer_at < asyncio.get_running_loop().time() + 60.0
    blocker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await blocker


def test_an_executor_used_on_another_loop_starts_afresh() -> None:
    executor = _executor()

    async def one(nap: float, timeout: float) -> str | None:
        outcome = await executor.execute(RunningJob(_row(1, nap, timeout), 0.0))
        return outcome.error.error if outcome.error is not None else None

    # The first loop closes with a timer armed on it; the second must not use that timer.
    assert asyncio.run(one(0.0, 30.0)) is None
    assert asyncio.run(one(5.0, 0.1)) == "TimeoutError: job timed out after 0.1s"


class SwallowArgs(river.JobArgs):
    kind: ClassVar[str] = "deadline_swallow"
    mode: str


class SwallowWorker(river.Worker[SwallowArgs]):
    def timeout(self, job: river.Job[SwallowArgs]) -> float | None:
        return 0.05

    async def work(self, job: river.Job[SwallowArgs]) -> None:
        if job.args.mode == "swallow":
            # Catches the runtime's cancellation at its deadline and returns.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)
        elif job.args.mode == "own_cancelled_error":
            raise asyncio.CancelledError  # its own doing: an ordinary failure
        elif job.args.mode == "outside_too":
            # Our deadline and a cancellation from outside land together.
            running = _current.get()
            assert running is not None
            task = asyncio.current_task()
            assert task is not None
            asyncio.get_running_loop().call_soon(lambda: (running.expire(), task.cancel()))
            await asyncio.sleep(10)


def _swallow_row(mode: str) -> JobRow:
    row = _row(1, 0.0, 0.0)
    row.kind = "deadline_swallow"
    row.encoded_args = SwallowArgs(mode=mode).model_dump_json()
    return row


async def test_a_worker_that_swallows_its_deadline_leaves_its_task_uncancelled() -> None:
    """As asyncio.timeout did: the cancellation request is withdrawn when the worker returns
    without letting it through, so the caller's task (the testing kit runs attempts in it) is
    not left cancelling, and a later attempt's own CancelledError stays an ordinary failure."""
    executor = _executor(SwallowWorker())
    task = asyncio.current_task()
    assert task is not None
    outcome = await executor.execute(RunningJob(_swallow_row("swallow"), 0.0))
    assert outcome.state is JobState.COMPLETED  # it returned: as before, it completed
    assert task.cancelling() == 0
    outcome = await executor.execute(RunningJob(_swallow_row("own_cancelled_error"), 0.0))
    assert outcome.error is not None
    assert outcome.error.error.startswith("CancelledError")
    assert task.cancelling() == 0


async def test_a_cancellation_from_outside_that_comes_with_the_deadline_propagates() -> None:
    executor = _executor(SwallowWorker())
    with pytest.raises(asyncio.CancelledError):
        await executor.execute(RunningJob(_swallow_row("outside_too"), 0.0))
    task = asyncio.current_task()
    assert task is not None
    assert task.uncancel() == 0  # the outside request was the one left


@pytest.mark.parametrize("skew", [3600.0, -3600.0])
def test_deadlines_follow_the_loops_clock(skew: float) -> None:
    """The timer runs on loop.time(), whatever its relation to time.monotonic(): a loop clock
    ahead made the timer spin, one behind made timeouts never fire."""

    class SkewedLoop(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return super().time() + skew

    executor = _executor()
    fired = 0
    original = _Deadlines._fire

    def counting_fire(self: _Deadlines) -> None:
        nonlocal fired
        fired += 1
        original(self)

    async def attempt() -> str | None:
        outcome = await executor.execute(RunningJob(_row(1, 5.0, 0.2), 0.0))
        return outcome.error.error if outcome.error is not None else None

    loop = SkewedLoop()
    try:
        _Deadlines._fire = counting_fire  # type: ignore[method-assign]
        started = time.monotonic()
        assert loop.run_until_complete(attempt()) == "TimeoutError: job timed out after 0.2s"
        assert time.monotonic() - started < 3.0
    finally:
        _Deadlines._fire = original  # type: ignore[method-assign]
        loop.close()
    assert fired <= 2


async def test_an_idle_executor_keeps_no_finished_attempt() -> None:
    executor = _executor()
    for job_id in range(1, 11):
        await executor.execute(RunningJob(_row(job_id, 0.0, 60.0), 0.0))
    assert executor._deadlines._heap == []
