"""The worker tests' app: jobs that sleep and record every execution in a side table.

``worker_exec`` (created by the tests) gets a ``start`` row when an attempt begins and a ``done``
row when it ends normally, with the queue, attempt and pid, so a test can tell that no job was
lost, run twice, or interrupted.
"""

from __future__ import annotations

import os
from typing import ClassVar

import anyio
import psycopg

import river

EXEC_TABLE = """
CREATE TABLE IF NOT EXISTS worker_exec (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    queue text NOT NULL,
    attempt int NOT NULL,
    event text NOT NULL,
    note text NOT NULL,
    pid int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


class Sleep(river.JobArgs):
    kind: ClassVar[str] = "sleep"
    seconds: float = 0.0
    note: str = ""


async def record(job: river.Job[Sleep], event: str) -> None:
    async with await psycopg.AsyncConnection.connect(
        os.environ["DATABASE_URL"], autocommit=True
    ) as conn:
        await conn.execute(
            "INSERT INTO worker_exec (job_id, queue, attempt, event, note, pid)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (job.id, job.queue, job.attempt, event, job.args.note, os.getpid()),
        )


class SleepWorker(river.Worker[Sleep]):
    async def work(self, job: river.Job[Sleep]) -> None:
        await record(job, "start")
        await anyio.sleep(job.args.seconds)
        await record(job, "done")


class Crash(river.JobArgs):
    kind: ClassVar[str] = "crash"


class CrashWorker(river.Worker[Crash]):
    def work(self, job: river.Job[Crash]) -> None:
        os._exit(3)  # a worker process dying hard (segfault, OOM kill)


workers = river.Workers()
workers.add(SleepWorker())
workers.add(CrashWorker())


def make_config() -> river.Config:
    """A factory: the app's own defaults (the config file may override them)."""
    return river.Config(
        workers=workers,
        queues={"default": river.QueueConfig(max_workers=4)},
        fetch_poll_interval=0.2,
        queue_depth_interval=0.2,
    )
