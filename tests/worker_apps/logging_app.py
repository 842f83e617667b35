"""The logging tests' app (tests/test_logging.py): a job that fails, so that the worker logs
a line about a job. Variants of the app that configure logging themselves import this one."""

from __future__ import annotations

from typing import ClassVar

import river


class Boom(river.JobArgs):
    kind: ClassVar[str] = "log_boom"
    text: str = "kaboom"


class BoomWorker(river.Worker[Boom]):
    async def work(self, job: river.Job[Boom]) -> None:
        raise ValueError(job.args.text)


workers = river.Workers()
workers.add(BoomWorker())


def make_config() -> river.Config:
    return river.Config(
        workers=workers,
        queues={"default": river.QueueConfig(max_workers=2)},
        fetch_poll_interval=0.2,
    )
