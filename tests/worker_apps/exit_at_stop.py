"""An app whose job ends its worker process with status 3 when a stop cancels it: a worker
process that stops unhealthy (as one that had to give up writing outcomes does)."""

from __future__ import annotations

import os
from typing import ClassVar

import anyio

import river


class Hold(river.JobArgs):
    kind: ClassVar[str] = "hold"


class HoldWorker(river.Worker[Hold]):
    async def work(self, job: river.Job[Hold]) -> None:
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            os._exit(3)


workers = river.Workers()
workers.add(HoldWorker())
