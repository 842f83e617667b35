"""An app for `river worker`: jobs, workers, and a factory returning the client's Config.

Run the workers (from the repository root; DATABASE_URL must point at a migrated database):

    river worker examples.worker_app:make_config --config examples/river.toml

then `kill -HUP <pid>` after editing river.toml to reload it, and SIGTERM (or Ctrl-C) to stop.
Run as a script, this file only checks river.toml against the app and prints what a worker
would run.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import ClassVar

import river


class SendEmail(river.JobArgs):
    kind: ClassVar[str] = "send_email"
    to: str
    subject: str = ""


class SendEmailWorker(river.Worker[SendEmail]):
    async def work(self, job: river.Job[SendEmail]) -> None:
        await asyncio.sleep(0.1)  # talk to the mail server here


class Cleanup(river.JobArgs):
    """Scheduled from river.toml ([[periodic_jobs]]), with its args given there."""

    kind: ClassVar[str] = "cleanup"
    older_than_days: int = 30


class CleanupWorker(river.Worker[Cleanup]):
    def work(self, job: river.Job[Cleanup]) -> None:  # sync: runs in a thread
        pass


workers = river.Workers()
workers.add(SendEmailWorker())
workers.add(CleanupWorker())


def make_config() -> river.Config:
    """The app's defaults; river.toml and the command line override them."""
    return river.Config(workers=workers, job_timeout=120)


def main() -> None:
    from river.worker import build_plan, load_file

    path = Path(__file__).with_name("river.toml")
    # Validating needs a URL to name; the worker itself reads $DATABASE_URL when it starts.
    url = {} if os.environ.get("DATABASE_URL") else {"database": {"url": "postgresql:///app"}}
    plan = build_plan(load_file(path, url), make_config(), path=path)
    print(f"kinds: {', '.join(workers.kinds())}")
    for name, spec in plan.queues.items():
        print(f"queue {name}: max_workers={spec.config.max_workers} paused={spec.paused}")
    for job_id, spec in plan.periodic.items():
        print(f"periodic job {job_id}: {spec.job.schedule}")
    print(f"shutdown timeout: {plan.shutdown_timeout:g}s, health: {plan.health_addr}")
    print("run: river worker examples.worker_app:make_config --config examples/river.toml")


if __name__ == "__main__":
    main()
