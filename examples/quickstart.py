"""Quickstart: define a job, a worker, insert, and work it.

Run: `python examples/quickstart.py` (uses $DATABASE_URL, else the embedded Postgres).
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import psycopg

import river
from river import dev
from river.migrate import Migrator


class SendEmail(river.JobArgs):
    kind: ClassVar[str] = "send_email"
    to: str
    subject: str


sent = asyncio.Event()


class SendEmailWorker(river.Worker[SendEmail]):
    async def work(self, job: river.Job[SendEmail]) -> None:
        print(f"sending {job.args.subject!r} to {job.args.to} (attempt {job.attempt})")
        sent.set()


async def main() -> None:
    url = dev.database_url()
    with psycopg.connect(url, autocommit=True) as conn:
        Migrator(conn).migrate_up()  # idempotent: applies only what is missing

    workers = river.Workers()
    workers.add(SendEmailWorker())
    config = river.Config(queues={"default": river.QueueConfig(max_workers=10)}, workers=workers)

    async with river.AsyncClient(url, config) as client:
        result = await client.insert(SendEmail(to="ada@example.com", subject="Welcome"))
        print(f"inserted job {result.job.id} ({result.job.state})")
        await asyncio.wait_for(sent.wait(), timeout=30)
    # Leaving the block stopped the client gracefully: the outcome is written.
    print("done")


if __name__ == "__main__":
    asyncio.run(main())
