"""The job timeout of async attempts: one timer per client (river/_executor.py ``_Deadlines``).

Executor-level tests (no database: the executor never touches one): the deadlines of attempts
running side by side, added in any order, each end their own attempt and no other; an attempt
that ends in time leaves nothing behind that grows; a client restarted on another event loop
starts afresh.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import ClassVar

import anyio
import pytest

import river
from river._executor import Executor, RunningJob
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


def _executor() -> Executor:
    workers = river.Workers()
    workers.add(NapWorker())
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
    for job_id in range(1, 2001):
        outcome = await executor.execute(RunningJob(_row(job_id, 0.0, 60.0), 0.0))
        assert outcome.state is JobState.COMPLETED
        # Every entry left is stale here (no attempt runs): compaction keeps them few.
        assert len(deadlines._heap) <= 2 * 1 + 64 + 1
    # One timer, armed for the first deadline, never re-armed for later ones.
    assert deadlines._timer is not None
    assert deadlines._timer_at < asyncio.get_running_loop().time() + 60.0


def test_an_executor_used_on_another_loop_starts_afresh() -> None:
    executor = _executor()

    async def one(nap: float, timeout: float) -> str | None:
        outcome = await executor.execute(RunningJob(_row(1, nap, timeout), 0.0))
        return outcome.error.error if outcome.error is not None else None

    # The first loop closes with a timer armed on it; the second must not use that timer.
    assert asyncio.run(one(0.0, 30.0)) is None
    assert asyncio.run(one(5.0, 0.1)) == "TimeoutError: job timed out after 0.1s"
