"""The fault-injection harness's app (bench/faults.py): jobs that sleep and append one line per
execution to a file, and a Config whose timing knobs come from the environment.

Every attempt appends ``start <job id> <attempt> <pid> <unix time>`` when it begins and
``done ...`` when its work has finished (before the outcome is written to the database), to
``$FAULTS_EXEC_LOG`` (one ``write`` of an ``O_APPEND`` file per line, so several processes can
share the file). No database round trip per job: the harness measures the queue, not this log.

Environment (all optional): ``FAULTS_CLIENT_ID`` (``Config.id``), ``FAULTS_MAX_WORKERS`` (the
``default`` queue's max_workers, 20), and the ``river.Config`` durations in seconds
``FAULTS_JOB_TIMEOUT``, ``FAULTS_RESCUE_AFTER`` (rescue_stuck_jobs_after),
``FAULTS_RESCUER_INTERVAL``, ``FAULTS_SCHEDULER_INTERVAL``, ``FAULTS_LEADER_TTL`` and
``FAULTS_LEADER_INTERVAL`` (leader_elect_interval). Unset: the library's defaults.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import anyio

import river

#: Environment variable -> river.Config field (seconds).
DURATIONS = {
    "FAULTS_JOB_TIMEOUT": "job_timeout",
    "FAULTS_RESCUE_AFTER": "rescue_stuck_jobs_after",
    "FAULTS_RESCUER_INTERVAL": "rescuer_interval",
    "FAULTS_SCHEDULER_INTERVAL": "scheduler_interval",
    "FAULTS_LEADER_TTL": "leader_ttl",
    "FAULTS_LEADER_INTERVAL": "leader_elect_interval",
}


class FaultSleep(river.JobArgs):
    kind: ClassVar[str] = "fault_sleep"
    seconds: float = 0.2


_fd: int | None = None


def _record(event: str, job: river.Job[FaultSleep]) -> None:
    global _fd
    path = os.environ.get("FAULTS_EXEC_LOG")
    if not path:
        return
    if _fd is None:
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    line = f"{event} {job.id} {job.attempt} {os.getpid()} {time.time():.6f}\n"
    os.write(_fd, line.encode())


class FaultSleepWorker(river.Worker[FaultSleep]):
    async def work(self, job: river.Job[FaultSleep]) -> None:
        _record("start", job)
        await anyio.sleep(job.args.seconds)
        _record("done", job)


workers = river.Workers()
workers.add(FaultSleepWorker())


def make_config() -> river.Config:
    """A factory: the harness's settings from the environment (see module doc)."""
    settings: dict[str, Any] = {
        field: float(os.environ[env]) for env, field in DURATIONS.items() if env in os.environ
    }
    max_workers = int(os.environ.get("FAULTS_MAX_WORKERS", "20"))
    return river.Config(
        workers=workers,
        queues={"default": river.QueueConfig(max_workers=max_workers)},
        id=os.environ.get("FAULTS_CLIENT_ID") or None,
        **settings,
    )
