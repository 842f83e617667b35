"""Microbenchmark of ``Executor.execute`` without a database: N no-op async jobs.

Measures the per-attempt cost of the executor alone (worker lookup, args decode, timeout,
invocation, outcome mapping), the part of a job's hot path that runs in Python for every
attempt. Usage::

    .venv/bin/python bench/executor_micro.py [--jobs 100000] [--runs 5] [--middleware]
        [--tasks] [--compare OLD_EXECUTOR.py]

Each job is awaited in turn (``--tasks``: one asyncio task per job, as the producer runs them,
which adds the cost of the task). Times are CPU seconds of this process (steadier than wall time
on a shared machine), with the garbage collector off during a run; the best and the median run
are printed. ``--compare`` loads another version of river/_executor.py (e.g.
``git show HEAD:river/_executor.py > /tmp/old.py``) and alternates runs of both.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import statistics
import sys
import time
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, ClassVar

import anyio

import river
import river._executor
from river._retry import next_retry_at
from river._types import JobRow, JobState


class NoopArgs(river.JobArgs):
    kind: ClassVar[str] = "noop"
    n: int = 0


class NoopWorker(river.Worker[NoopArgs]):
    async def work(self, job: river.Job[NoopArgs]) -> None:
        return None


class PassThrough(river.Middleware):
    async def work(self, job: river.Job[Any], call_next: Any) -> None:
        await call_next()


def _rows(n: int) -> list[JobRow]:
    now = datetime.now(UTC)
    return [
        JobRow(
            id=i + 1,
            kind="noop",
            queue="default",
            state=JobState.RUNNING,
            encoded_args=f'{{"n":{i}}}',
            attempt=1,
            max_attempts=25,
            priority=1,
            created_at=now,
            scheduled_at=now,
            attempted_at=now,
        )
        for i in range(n)
    ]


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("river._executor_compared", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def _run(module: ModuleType, executor: Any, rows: list[JobRow], tasks: bool) -> float:
    running_job = module.RunningJob
    started = time.process_time()
    if tasks:
        loop = asyncio.get_running_loop()
        pending = [loop.create_task(executor.execute(running_job(r, 0.0))) for r in rows]
        outcomes = await asyncio.gather(*pending)
    else:
        outcomes = [await executor.execute(running_job(r, 0.0)) for r in rows]
    elapsed = time.process_time() - started
    assert all(o.state is JobState.COMPLETED for o in outcomes)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--middleware", action="store_true", help="one pass-through middleware")
    parser.add_argument("--tasks", action="store_true", help="one asyncio task per job")
    parser.add_argument("--compare", metavar="PATH", help="another river/_executor.py to compare")
    opts = parser.parse_args()
    modules = {"current": river._executor}
    if opts.compare:
        modules = {"compared": _load(opts.compare), **modules}
    workers = river.Workers()
    workers.add(NoopWorker())
    executors = {
        name: module.Executor(
            workers,
            job_timeout=60.0,
            retry_policy=next_retry_at,
            thread_limiter=anyio.CapacityLimiter(1),
            middleware=[PassThrough()] if opts.middleware else (),
        )
        for name, module in modules.items()
    }
    rows = _rows(opts.jobs)
    per_job: dict[str, list[float]] = {name: [] for name in modules}
    gc.disable()
    try:
        for i in range(opts.runs):
            order = list(modules) if i % 2 == 0 else list(reversed(modules))
            for name in order:
                elapsed = asyncio.run(_run(modules[name], executors[name], rows, opts.tasks))
                per_job[name].append(elapsed / opts.jobs * 1e6)
                gc.collect()
    finally:
        gc.enable()
    for name, values in per_job.items():
        print(
            f"{name}: {opts.jobs:,} jobs x {opts.runs} runs: best {min(values):.2f} us/job, "
            f"median {statistics.median(values):.2f} us/job (CPU)"
        )


if __name__ == "__main__":
    main()
