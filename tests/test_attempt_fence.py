"""The attempt fence: an attempt that outlived the rescuer can never touch a newer attempt.

When a job runs past ``rescue_stuck_jobs_after``, the rescuer gives up on its attempt and the
job is worked again while the first attempt may still be running (a sync worker cannot be
interrupted). Every outcome write is fenced by the attempt that produced it, so the stale
attempt's outcome is dropped, and ``job_complete_tx`` makes the side effects exactly-once.
Each test orchestrates the overlap with events (no sleeps standing in for them) and runs a
real client with leader election, rescuer and scheduler on a real Postgres.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import datetime, timedelta
from typing import Any, ClassVar

import psycopg
import pydantic
import pytest

import river
from river.testing import signals
from tests.helpers import fast_config, make_workers, open_db, started_client, wait_for

pytestmark = pytest.mark.anyio


def _quick_retry(errors: int, now: datetime) -> datetime:
    return now + timedelta(seconds=0.1)


def _overlap_config(worker: river.Worker[Any], **overrides: Any) -> river.Config:
    """A client that leads at once, rescues attempts after 0.4 s and promotes retries fast."""
    settings: dict[str, Any] = {
        "queues": {"default": river.QueueConfig(max_workers=50)},
        "sync_worker_threads": 50,
        "leader_elect_interval": 0.2,
        "job_timeout": 0.4,
        "rescue_stuck_jobs_after": 0.4,
        "rescuer_interval": 0.1,
        "scheduler_interval": 0.1,
        "retry_policy": _quick_retry,
    }
    settings.update(overrides)
    return fast_config(make_workers(worker), **settings)


async def _side_table(db_url: str) -> None:
    async with open_db(db_url) as db:
        await db.execute(
            "CREATE TABLE side_effects (job_id bigint NOT NULL, attempt int NOT NULL,"
            " PRIMARY KEY (job_id, attempt))"
        )


def _complete_with_side_effect(db_url: str, job: river.Job[Any]) -> None:
    """The side effect and the completion in one transaction (the exactly-once pattern)."""
    with psycopg.connect(db_url) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO side_effects (job_id, attempt) VALUES (%s, %s)", (job.id, job.attempt)
        )
        river.job_complete_tx(conn, job.row)


class Overrun(river.JobArgs):
    kind: ClassVar[str] = "overrun"


class OverrunWorker(river.Worker[Overrun]):
    """Attempt 1 overruns until attempt 2 has started; attempt 2 finishes only when the test
    says so (after attempt 1's outcome has reached the database)."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.second_started = threading.Event()
        self.release_second = threading.Event()
        self.first_error: BaseException | None = None
        self.attempts: list[int] = []

    def timeout(self, job: river.Job[Overrun]) -> float | None:
        # Only attempt 1 may be rescued: the test decides when attempt 2 ends.
        return None if job.attempt == 1 else -1

    def work(self, job: river.Job[Overrun]) -> None:
        self.attempts.append(job.attempt)
        if job.attempt == 1:
            assert self.second_started.wait(30), "attempt 2 never started"
            try:
                _complete_with_side_effect(self.db_url, job)
            except river.JobNotRunningError as exc:
                self.first_error = exc
                raise
        else:
            self.second_started.set()
            assert self.release_second.wait(30), "the test never released attempt 2"
            _complete_with_side_effect(self.db_url, job)


async def test_a_stale_attempts_failure_never_overwrites_the_newer_attempt(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The livelock of issue 17: attempt 1 is rescued while it runs, attempt 2 starts, attempt
    1's job_complete_tx is fenced out and it fails; that failure must not send the job back to
    the queue under attempt 2. The job completes on attempt 2 with exactly one side effect."""
    caplog.set_level(logging.DEBUG, logger="river.job")
    await _side_table(db_url)
    worker = OverrunWorker(db_url)
    async with (
        open_db(db_url) as db,
        started_client(db_url, _overlap_config(worker)) as client,
    ):
        job_id = (await client.insert(Overrun())).job.id
        await wait_for(worker.second_started.is_set, message="attempt 2 to start")
        # Attempt 1 now finishes: its completion is refused and its failure is written...
        await wait_for(lambda: worker.first_error is not None, message="attempt 1 to fail")
        await signals(client).flushed.wait_for(lambda batch: batch[1] == 1)  # attempt 1 dropped
        # ...and dropped: the row still belongs to the running attempt 2.
        row = await db.job(job_id)
        assert (row["state"], row["attempt"]) == ("running", 2)
        assert [e["error"] for e in row["errors"]] == ["Stuck job rescued by JobRescuer"]
        worker.release_second.set()
        row = await db.wait_state(job_id, "completed")
        assert await db.all("SELECT job_id, attempt FROM side_effects") == [
            {"job_id": job_id, "attempt": 2}
        ]
    assert isinstance(worker.first_error, river.JobNotRunningError)
    assert (worker.first_error.job_id, worker.first_error.attempt) == (job_id, 1)
    assert row["attempt"] == 2
    assert len(row["errors"]) == 1
    assert sorted(worker.attempts) == [1, 2]
    # Attempt 1's line says what happened: not "failed, retrying" (nothing of it is retried).
    lines = [r for r in caplog.records if r.name == "river.job"]
    assert [(r.levelno, getattr(r, "outcome", None)) for r in lines] == [
        (logging.WARNING, "superseded")
    ]
    assert "attempt 1 no longer owns the job" in lines[0].getMessage()
    assert lines[0].exc_info is None


class Chaos(river.JobArgs):
    kind: ClassVar[str] = "chaos"
    #: How long each attempt runs (by attempt number; later attempts take the last entry).
    durations: list[float]
    #: Attempts that fail on purpose (before their side effect).
    failing: list[int] = pydantic.Field(default_factory=list)


class ChaosWorker(river.Worker[Chaos]):
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.lock = threading.Lock()
        #: (job id, attempt) of every completion that committed.
        self.completed: list[tuple[int, int]] = []

    def work(self, job: river.Job[Chaos]) -> None:
        durations = job.args.durations
        threading.Event().wait(durations[min(job.attempt, len(durations)) - 1])
        if job.attempt in job.args.failing:
            raise RuntimeError(f"attempt {job.attempt} fails on purpose")
        _complete_with_side_effect(self.db_url, job)
        with self.lock:
            self.completed.append((job.id, job.attempt))


@pytest.mark.parametrize("seed", [1, 2])
async def test_overlapping_attempts_end_in_their_latest_attempts_outcome(
    db_url: str, seed: int
) -> None:
    """Many jobs whose attempts overlap through rescue (some overrun, some fail on purpose):
    each job's final row comes from its latest attempt, and the side effects that committed
    are exactly the completions, one per job."""
    rng = random.Random(seed)
    await _side_table(db_url)
    worker = ChaosWorker(db_url)
    jobs = [
        Chaos(
            durations=[rng.choice([0.0, 0.05, 0.9]) for _ in range(3)] + [0.0],
            failing=rng.sample([1, 2, 3], k=rng.randint(0, 1)),
        )
        for _ in range(40)
    ]
    async with (
        open_db(db_url) as db,
        started_client(db_url, _overlap_config(worker)) as client,
    ):
        results = await client.insert_many(
            [(args, river.InsertOpts(max_attempts=10)) for args in jobs]
        )
        ids = [r.job.id for r in results]
        await db.wait_count(len(ids), "state = 'completed'", timeout=60)
        # Every stale attempt still running finishes too (its outcome is then dropped).
        await wait_for(
            lambda: not any(p.running for p in client.queues.producers.values()),
            timeout=30,
            message="stale attempts to finish",
        )
        await client._runtime.completer.flushed()
        rows = {
            r["id"]: r
            for r in await db.all("SELECT id, state::text, attempt, errors FROM river_job")
        }
        effects = await db.all("SELECT job_id, attempt FROM side_effects ORDER BY job_id")
    assert {r["state"] for r in rows.values()} == {"completed"}
    # Exactly one committed side effect per job, from the attempt that completed it, which is
    # the row's latest attempt.
    assert sorted(worker.completed) == sorted((e["job_id"], e["attempt"]) for e in effects)
    assert sorted(e["job_id"] for e in effects) == sorted(ids)
    for effect in effects:
        row = rows[effect["job_id"]]
        assert row["attempt"] == effect["attempt"], row
        # Every earlier attempt ended once, by its failure or its rescue: one error each, in
        # order. A stale attempt's failure written over a newer one would add a second.
        assert [e["attempt"] for e in row["errors"] or []] == list(range(1, row["attempt"])), row


class Fenced(river.JobArgs):
    kind: ClassVar[str] = "fenced_resend"


def test_a_resent_write_never_lands_on_the_next_fetch_of_the_same_attempt_number(
    db_url: str,
) -> None:
    """A snooze or an interruption gives the attempt number back, so the next fetch runs the
    job at the same number. A completer write whose reply was lost after its commit is sent
    again (river/_completer.py): fenced by the number alone, the resent write matched the new
    attempt and sent the job back to available while it ran. attempted_at, which every fetch
    sets, is part of the fence."""
    from river._driver import CompletionBatch, fetch_op, queries_for, set_state_many_op
    from river._sansio import run_sync

    q = queries_for(None)
    with river.Client(db_url) as client:
        job_id = client.insert(Fenced()).job.id
    with psycopg.connect(db_url, autocommit=True) as conn:
        (first,) = run_sync(conn, fetch_op(q, "default", 1, "fence-test"))
        assert (first.id, first.attempt) == (job_id, 1)
        (now,) = conn.execute("SELECT now()").fetchone()  # type: ignore[misc]
        interrupted = CompletionBatch(
            id=[job_id],
            seen_attempt=[1],
            seen_attempted_at=[first.attempted_at],
            state=["available"],
            finalized_at=[None],
            scheduled_at=[now],
            attempt=[0],  # an interruption gives the attempt back
            error=[None],
            metadata=[None],
        )
        assert run_sync(conn, set_state_many_op(q, interrupted)) == {(job_id, 1): "available"}
        (second,) = run_sync(conn, fetch_op(q, "default", 1, "fence-test"))
        assert (second.id, second.attempt) == (job_id, 1)  # the same number again
        assert second.attempted_at != first.attempted_at
        # The first write sent again (its reply was lost): it must not apply.
        assert run_sync(conn, set_state_many_op(q, interrupted)) == {}
        row = conn.execute(
            "SELECT state::text, attempt, attempted_at FROM river_job WHERE id = %s", (job_id,)
        ).fetchone()
        assert row == ("running", 1, second.attempted_at)
        # job_complete_tx of the first attempt is fenced the same way.
        with pytest.raises(river.JobNotRunningError):
            river.job_complete_tx(conn, first)
        assert river.job_complete_tx(conn, second).state is river.JobState.COMPLETED
