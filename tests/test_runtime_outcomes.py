"""Every completion outcome of one attempt, checked on the persisted row (PROTOCOL 3.4-3.8).

Each test starts a real AsyncClient on a fresh database, lets a worker reach one outcome and
reads the row back with plain SQL: state, attempt, errors (AttemptError keys and values),
finalized_at (set iff finalized), scheduled_at (retries, snoozes, interruptions) and metadata.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import anyio
import psycopg
import pydantic
import pytest
from helpers import (
    DB,
    Gate,
    assert_stays,
    fast_config,
    make_workers,
    open_db,
    parse_rfc3339,
    started_client,
    utcnow,
    wait_for,
)

import river
from river._completer import _to_batch
from river._driver import queries_for, set_state_many_op
from river._outcome import Outcome
from river._sansio import run_sync
from river._types import AttemptError, JobState
from river._validate import jsonb_dumps
from river.testing import signals

pytestmark = pytest.mark.anyio

ERROR_KEYS = {"at", "attempt", "error", "trace"}


def retry_in(seconds: float) -> Any:
    """A retry policy with a fixed delay (no jitter), for exact scheduled_at checks."""

    def policy(error_count: int, now: datetime) -> datetime:
        return now + timedelta(seconds=seconds)

    return policy


class Behave(river.JobArgs):
    kind: ClassVar[str] = "behave"
    mode: str = "ok"
    seconds: float = 0.0
    n: int = 0


class BehaveWorker(river.Worker[Behave]):
    """Does what its args say. Records every attempt it sees."""

    def __init__(
        self,
        *,
        timeout: float | None = None,
        next_retry: datetime | None = None,
    ) -> None:
        self.gate = Gate()
        self.seen: list[tuple[int, int]] = []  # (job id, attempt)
        self.rows: list[river.JobRow] = []
        self.exceptions: list[BaseException] = []
        self.finished: list[int] = []
        self._timeout = timeout
        self._next_retry = next_retry

    def timeout(self, job: river.Job[Behave]) -> float | None:
        return self._timeout

    def next_retry(self, job: river.Job[Behave]) -> datetime | None:
        return self._next_retry

    async def work(self, job: river.Job[Behave]) -> None:
        self.seen.append((job.id, job.attempt))
        self.rows.append(job.row)
        current = river.current_job()
        assert current is not None
        assert current.id == job.id
        mode = job.args.mode
        try:
            if mode == "ok":
                return
            if mode == "raise":
                raise RuntimeError(f"boom {job.args.n}")
            if mode == "cancel":
                raise river.JobCancel("not worth it")
            if mode == "cancel_exc":
                raise river.JobCancel(ValueError("inner reason"))
            if mode == "snooze":
                raise river.JobSnooze(job.args.seconds)
            if mode == "snooze_once":
                if "snoozes" not in job.metadata:
                    raise river.JobSnooze(job.args.seconds)
                return
            if mode == "sleep":
                await anyio.sleep(job.args.seconds)
                return
            if mode == "gate":
                await self.gate.wait()
                return
            if mode == "gate_raise":
                await self.gate.wait()
                raise RuntimeError("after gate")
            if mode == "gate_snooze":
                await self.gate.wait()
                raise river.JobSnooze(job.args.seconds)
            raise AssertionError(f"unknown mode {mode}")
        except BaseException as exc:
            self.exceptions.append(exc)
            raise
        finally:
            self.finished.append(job.id)


def client_config(worker: river.Worker[Any], **overrides: Any) -> river.Config:
    overrides.setdefault("retry_policy", retry_in(60))
    return fast_config(make_workers(worker), **overrides)


async def insert(db: DB, args: river.JobArgs, opts: river.InsertOpts | None = None) -> int:
    """Insert through an insert-only client (no worker check) and return the id."""
    async with river.AsyncClient(db.url) as c:
        res = await c.insert(args, opts)
    return res.job.id


def assert_error(
    err: dict[str, Any],
    row: dict[str, Any],
    *,
    error: str,
    trace: bool | None,
    contains: bool = False,
) -> None:
    """One AttemptError object as stored: exact key set, start time, attempt, text, trace
    (``trace`` None: not checked)."""
    assert set(err) == ERROR_KEYS, err
    assert isinstance(err["at"], str)
    # "at" is the start of the failed attempt: the row's attempted_at.
    assert parse_rfc3339(err["at"]) == row["attempted_at"]
    # Errors never restore the attempt: the failed attempt is the row's current one.
    assert err["attempt"] == row["attempt"]
    if contains:
        assert error in err["error"], err
    else:
        assert err["error"] == error, err
    if trace:
        assert err["trace"].startswith("Traceback (most recent call last):"), err["trace"]
    elif trace is not None:
        assert err["trace"] == "", err


def assert_not_finalized(row: dict[str, Any]) -> None:
    assert row["finalized_at"] is None, row


def assert_finalized_between(row: dict[str, Any], before: datetime, after: datetime) -> None:
    assert row["finalized_at"] is not None, row
    assert before <= row["finalized_at"] <= after, (before, row["finalized_at"], after)


# --- success and worker signals -----------------------------------------------------------------


async def test_success_completes_with_exact_columns(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="ok"), river.InsertOpts(metadata={"keep": 1}))
        inserted = await db.job(job_id)
        before = utcnow()
        async with started_client(db_url, client_config(worker)) as client:
            row = await db.wait_state(job_id, "completed")
            after = utcnow()
            assert client.running
        assert worker.seen == [(job_id, 1)]
        assert row["attempt"] == 1
        assert row["errors"] is None
        assert_finalized_between(row, before, after)
        assert row["attempted_at"] is not None
        assert before - timedelta(seconds=1) <= row["attempted_at"] <= after
        assert row["attempted_by"] == [client.id]
        assert row["scheduled_at"] == inserted["scheduled_at"]
        assert row["metadata"] == {"keep": 1}
        assert row["max_attempts"] == 25


async def test_job_cancel_cancels_with_empty_trace(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="cancel"))
        other = await insert(db, Behave(mode="cancel_exc"))
        before = utcnow()
        async with started_client(db_url, client_config(worker)):
            row = await db.wait_state(job_id, "cancelled")
            row2 = await db.wait_state(other, "cancelled")
            after = utcnow()
        for r in (row, row2):
            assert r["attempt"] == 1
            assert_finalized_between(r, before, after)
            assert len(r["errors"]) == 1
        assert_error(row["errors"][0], row, error="not worth it", trace=False)
        # JobCancel(exception): the wrapped exception's text.
        assert_error(row2["errors"][0], row2, error="ValueError: inner reason", trace=False)
        assert row["errors"][0]["attempt"] == 1


async def test_error_with_short_retry_goes_back_to_available(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="raise", n=7))
        before = utcnow()
        config = client_config(worker, retry_policy=retry_in(3))
        async with started_client(db_url, config):
            row = await db.wait_failed(job_id)
            # Checked before the retry is due (3 s): nothing ran twice.
            assert worker.seen == [(job_id, 1)]
            after = utcnow()
        assert row["state"] == "available"  # <= 5 s: straight back to available
        assert row["attempt"] == 1
        assert_not_finalized(row)
        assert before + timedelta(seconds=3) <= row["scheduled_at"] <= after + timedelta(seconds=3)
        assert len(row["errors"]) == 1
        err = row["errors"][0]
        assert_error(err, row, error="RuntimeError: boom 7", trace=True)
        assert err["attempt"] == 1
        assert "RuntimeError: boom 7" in err["trace"]
        assert "in work" in err["trace"]  # the worker's frame is in the traceback


async def test_error_with_long_retry_is_retryable(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="raise", n=1))
        before = utcnow()
        async with started_client(db_url, client_config(worker, retry_policy=retry_in(60))):
            row = await db.wait_attempted(job_id)
            after = utcnow()
        assert row["state"] == "retryable"
        assert row["attempt"] == 1
        assert_not_finalized(row)
        assert (
            before + timedelta(seconds=60) <= row["scheduled_at"] <= after + timedelta(seconds=60)
        )
        assert len(row["errors"]) == 1
        assert_error(row["errors"][0], row, error="RuntimeError: boom 1", trace=True)


async def test_retry_policy_gets_error_count_not_attempt(db_url: str) -> None:
    """The policy is called with (errors already recorded + 1); snoozes do not count."""
    calls: list[int] = []

    def policy(error_count: int, now: datetime) -> datetime:
        calls.append(error_count)
        return now + timedelta(seconds=60)

    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="raise"))
        # Two earlier errors and a higher attempt (as after snoozes) recorded by someone else.
        await db.execute(
            "UPDATE river_job SET attempt = 5, errors = ARRAY["
            '\'{"at":"2024-01-01T00:00:00Z","attempt":1,"error":"e1","trace":""}\','
            '\'{"at":"2024-01-01T00:00:01.123456789+02:00","attempt":2,"error":"e2",'
            '"trace":""}\']::jsonb[] WHERE id = %(id)s',
            {"id": job_id},
        )
        async with started_client(db_url, client_config(worker, retry_policy=policy)):
            row = await db.wait_state(job_id, "retryable")
        assert calls == [3]
        assert row["attempt"] == 6
        assert [e["error"] for e in row["errors"]] == ["e1", "e2", "RuntimeError: boom 0"]
        assert row["errors"][2]["attempt"] == 6


async def test_worker_next_retry_wins_over_policy(db_url: str) -> None:
    at = (utcnow() + timedelta(hours=1)).replace(microsecond=123456)
    worker = BehaveWorker(next_retry=at)
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="raise"))
        async with started_client(db_url, client_config(worker, retry_policy=retry_in(2))):
            row = await db.wait_attempted(job_id)
        assert row["state"] == "retryable"
        assert row["scheduled_at"] == at


async def test_worker_next_retry_in_the_past_falls_back_to_policy(db_url: str) -> None:
    worker = BehaveWorker(next_retry=utcnow() - timedelta(hours=1))
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="raise"))
        before = utcnow()
        async with started_client(db_url, client_config(worker, retry_policy=retry_in(120))):
            row = await db.wait_attempted(job_id)
            after = utcnow()
        assert row["state"] == "retryable"
        assert (
            before + timedelta(seconds=120) <= row["scheduled_at"] <= after + timedelta(seconds=120)
        )


async def test_error_at_max_attempts_is_discarded(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="raise", n=3), river.InsertOpts(max_attempts=1))
        # A job that has used 2 of 3 attempts already fails its last one.
        last = await insert(db, Behave(mode="raise", n=4), river.InsertOpts(max_attempts=3))
        await db.execute("UPDATE river_job SET attempt = 2 WHERE id = %(id)s", {"id": last})
        before = utcnow()
        async with started_client(db_url, client_config(worker)):
            row = await db.wait_state(job_id, "discarded")
            row2 = await db.wait_state(last, "discarded")
            after = utcnow()
        assert row["attempt"] == 1
        assert_finalized_between(row, before, after)
        assert len(row["errors"]) == 1
        assert_error(row["errors"][0], row, error="RuntimeError: boom 3", trace=True)
        assert row2["attempt"] == 3
        assert_finalized_between(row2, before, after)
        assert row2["errors"][0]["attempt"] == 3


# --- snooze -------------------------------------------------------------------------------------


async def test_short_snooze_returns_to_available_then_runs_again(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(
            db, Behave(mode="snooze_once", seconds=1.0), river.InsertOpts(metadata={"a": "b"})
        )
        before = utcnow()
        async with started_client(db_url, client_config(worker)):

            async def snoozed() -> dict[str, Any] | None:
                row = await db.job(job_id)
                return row if row["metadata"].get("snoozes") == 1 else None

            row = await wait_for(snoozed, message="the snooze to be persisted")
            after = utcnow()
            final = await db.wait_state(job_id, "completed")
        assert row["state"] == "available"  # 1 s <= 5 s: no detour through scheduled
        assert row["attempt"] == 0  # restored: a snooze uses no attempt
        assert row["errors"] is None  # and records no error
        assert_not_finalized(row)
        assert before + timedelta(seconds=1) <= row["scheduled_at"] <= after + timedelta(seconds=1)
        assert row["metadata"] == {"a": "b", "snoozes": 1}
        # The second run sees attempt 1 again, and completes.
        assert worker.seen == [(job_id, 1), (job_id, 1)]
        assert final["attempt"] == 1
        assert final["errors"] is None
        assert final["metadata"] == {"a": "b", "snoozes": 1}
        assert final["attempted_by"] is not None
        assert len(final["attempted_by"]) == 2


async def test_long_snooze_is_scheduled_and_counts(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(
            db,
            Behave(mode="snooze", seconds=30),
            river.InsertOpts(metadata={"snoozes": 4, "other": [1, 2]}),
        )
        # A snooze after earlier errors keeps them and appends nothing.
        await db.execute(
            'UPDATE river_job SET attempt = 2, errors = ARRAY[\'{"at":"2024-01-01T00:00:00Z",'
            '"attempt":1,"error":"old","trace":""}\']::jsonb[] WHERE id = %(id)s',
            {"id": job_id},
        )
        before = utcnow()
        async with started_client(db_url, client_config(worker)):
            row = await db.wait_attempted(job_id)
            after = utcnow()
        assert row["state"] == "scheduled"
        assert row["attempt"] == 2  # fetched as 3, restored to 2
        assert [e["error"] for e in row["errors"]] == ["old"]
        assert_not_finalized(row)
        assert (
            before + timedelta(seconds=30) <= row["scheduled_at"] <= after + timedelta(seconds=30)
        )
        assert row["metadata"] == {"snoozes": 5, "other": [1, 2]}
        assert worker.seen == [(job_id, 3)]


async def test_snooze_counter_reads_previous_value_leniently(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        ids = {}
        for label, prev, expected in [
            ("string", "7", 8),
            ("float", 2.9, 3),
            ("true", True, 2),
            ("junk", "x", 1),
        ]:
            ids[label] = (
                await insert(
                    db,
                    Behave(mode="snooze", seconds=60),
                    river.InsertOpts(metadata={"snoozes": prev}),
                ),
                expected,
            )
        async with started_client(db_url, client_config(worker)):
            for job_id, expected in ids.values():
                row = await db.wait_state(job_id, "scheduled")
                assert row["metadata"]["snoozes"] == expected, row["metadata"]


# --- timeouts, decoding, unknown kinds ----------------------------------------------------------


async def test_worker_timeout_is_an_ordinary_error(db_url: str) -> None:
    worker = BehaveWorker(timeout=0.2)
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="sleep", seconds=30))
        started = time.monotonic()
        async with started_client(db_url, client_config(worker)):
            row = await db.wait_attempted(job_id)
        assert time.monotonic() - started < 10
        assert row["state"] == "retryable"
        assert row["attempt"] == 1
        assert_not_finalized(row)
        assert len(row["errors"]) == 1
        assert_error(row["errors"][0], row, error="timed out", contains=True, trace=None)
        # The worker saw a cancellation, not a normal return.
        assert worker.finished == [job_id]
        assert len(worker.exceptions) == 1


async def test_client_job_timeout_applies_and_worker_minus_one_disables_it(db_url: str) -> None:
    timed = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(
            db, Behave(mode="sleep", seconds=30), river.InsertOpts(max_attempts=1)
        )
        async with started_client(db_url, client_config(timed, job_timeout=0.2)):
            row = await db.wait_state(job_id, "discarded")
        assert "timed out" in row["errors"][0]["error"]
        assert row["finalized_at"] is not None

    untimed = BehaveWorker(timeout=-1)
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="sleep", seconds=0.5))
        async with started_client(db_url, client_config(untimed, job_timeout=0.1)):
            row = await db.wait_attempted(job_id)
        assert row["state"] == "completed"
        assert row["errors"] is None


async def test_unknown_kind_is_retried_not_discarded(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await db.scalar(
            "INSERT INTO river_job (args, kind, max_attempts) VALUES ('{}', 'nobody_works_me', 3)"
            " RETURNING id"
        )
        ok_id = await insert(db, Behave(mode="ok"))
        async with started_client(db_url, client_config(worker)):
            row = await db.wait_attempted(job_id)
            await db.wait_state(ok_id, "completed")
        assert row["state"] == "retryable"
        assert row["attempt"] == 1
        assert_not_finalized(row)
        assert len(row["errors"]) == 1
        assert_error(row["errors"][0], row, error="nobody_works_me", contains=True, trace=None)


async def test_args_failing_validation_are_an_ordinary_error(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await db.scalar(
            "INSERT INTO river_job (args, kind) VALUES ('{\"n\": \"not a number\"}', 'behave')"
            " RETURNING id"
        )
        not_object = await db.scalar(
            "INSERT INTO river_job (args, kind, max_attempts) VALUES ('[1, 2]', 'behave', 1)"
            " RETURNING id"
        )
        async with started_client(db_url, client_config(worker)):
            row = await db.wait_attempted(job_id)
            row2 = await db.wait_state(not_object, "discarded")
        assert worker.seen == []  # never reached the worker
        assert row["state"] == "retryable"
        assert row["attempt"] == 1
        err = row["errors"][0]
        assert set(err) == ERROR_KEYS
        assert "validation error" in err["error"].lower()
        assert err["trace"] != ""
        assert row2["errors"][0]["attempt"] == 1


# --- sync workers -------------------------------------------------------------------------------


class SyncArgs(river.JobArgs):
    kind: ClassVar[str] = "sync_job"
    mode: str = "ok"


class SyncWorker(river.Worker[SyncArgs]):
    def __init__(self) -> None:
        self.threads: list[str] = []
        self.saw_cancel = threading.Event()

    def work(self, job: river.Job[SyncArgs]) -> None:
        self.threads.append(threading.current_thread().name)
        current = river.current_job()
        assert current is not None
        assert current.id == job.id
        if job.args.mode == "raise":
            raise ValueError("sync failure")
        if job.args.mode == "cancel":
            raise river.JobCancel("sync cancel")
        if job.args.mode == "poll_cancel":
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if river.cancel_requested():
                    self.saw_cancel.set()
                    return
                time.sleep(0.005)
            raise AssertionError("cancel never requested")


async def test_sync_worker_runs_in_a_thread(db_url: str) -> None:
    worker = SyncWorker()
    async with open_db(db_url) as db:
        ok = await insert(db, SyncArgs(mode="ok"))
        bad = await insert(db, SyncArgs(mode="raise"))
        cancel = await insert(db, SyncArgs(mode="cancel"))
        async with started_client(db_url, client_config(worker)):
            row_ok = await db.wait_state(ok, "completed")
            row_bad = await db.wait_attempted(bad)
            row_cancel = await db.wait_state(cancel, "cancelled")
        assert len(worker.threads) == 3
        assert threading.main_thread().name not in worker.threads
        assert row_ok["errors"] is None
        assert row_ok["finalized_at"] is not None
        assert row_bad["state"] == "retryable"
        err = row_bad["errors"][0]
        assert_error(err, row_bad, error="ValueError: sync failure", trace=True)
        assert "in work" in err["trace"]
        assert_error(row_cancel["errors"][0], row_cancel, error="sync cancel", trace=False)


async def test_sync_worker_polling_cancel_requested_on_timeout_is_an_error(db_url: str) -> None:
    """A sync worker that notices its timeout and returns early did not succeed."""
    worker = SyncWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, SyncArgs(mode="poll_cancel"))
        async with started_client(db_url, client_config(worker, job_timeout=0.2)):
            row = await db.wait_attempted(job_id)
        assert worker.saw_cancel.is_set()
        assert row["state"] == "retryable", row
        assert "timed out" in row["errors"][0]["error"]


async def test_sync_worker_polling_cancel_requested_on_hard_stop_is_interrupted(
    db_url: str,
) -> None:
    worker = SyncWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, SyncArgs(mode="poll_cancel"))
        client = river.AsyncClient(db_url, client_config(worker))
        try:
            await client.start()
            await db.wait_state(job_id, "running")
            # In its thread, not only fetched: one still waiting for a thread never starts.
            await wait_for(lambda: worker.threads, message="the worker started")
            await client.stop_and_cancel()
        finally:
            await client.close()
        row = await db.job(job_id)
        assert worker.saw_cancel.is_set()
        assert row["state"] == "available", row
        assert row["attempt"] == 0
        assert row["errors"] is None


async def test_sync_jobs_waiting_for_a_thread_never_start_after_a_hard_stop(
    db_url: str,
) -> None:
    """Fetched sync jobs wait for a thread of the client's limiter; a hard stop cancels them
    there. They used to start anyway as threads came free, each running to its end after the
    stop; now they end interrupted without running (back to available, attempt restored)."""
    worker = SyncWorker()
    async with open_db(db_url) as db:
        holder = await insert(db, SyncArgs(mode="poll_cancel"))
        client = river.AsyncClient(db_url, client_config(worker, sync_worker_threads=1))
        try:
            await client.start()
            await db.wait_state(holder, "running")
            await wait_for(lambda: worker.threads, message="the holder started")
            waiting = [await insert(db, SyncArgs(mode="ok")) for _ in range(2)]
            for job_id in waiting:
                await db.wait_state(job_id, "running")  # fetched: in line for the thread
            await client.stop_and_cancel()
        finally:
            await client.close()
        assert worker.saw_cancel.is_set()
        assert len(worker.threads) == 1  # only the holder ever ran
        for job_id in (holder, *waiting):
            row = await db.job(job_id)
            assert (row["state"], row["attempt"], row["errors"]) == ("available", 0, None)


async def test_a_sync_job_waiting_for_a_thread_is_cancelled_at_once(db_url: str) -> None:
    """A remote cancel of a sync job that waits for a thread (the only one busy) ends it at
    once, as for an async job: it waited for the thread to come free first."""
    worker = SyncWorker()
    async with open_db(db_url) as db:
        holder = await insert(db, SyncArgs(mode="poll_cancel"))
        config = client_config(worker, sync_worker_threads=1)
        async with started_client(db_url, config) as client:
            await db.wait_state(holder, "running")
            await wait_for(lambda: worker.threads, message="the holder started")
            waiting = await insert(db, SyncArgs(mode="ok"))
            await db.wait_state(waiting, "running")  # fetched: in line for the thread
            await client.job_cancel(waiting)
            row = await db.wait_attempted(waiting)
            assert row["state"] == "cancelled", row
            assert await db.state(holder) == "running"  # the thread is still taken
            await client.job_cancel(holder)
            await db.wait_attempted(holder)
        assert len(worker.threads) == 1  # the cancelled one never ran


async def test_sync_worker_polling_cancel_requested_on_remote_cancel_is_cancelled(
    db_url: str,
) -> None:
    worker = SyncWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, SyncArgs(mode="poll_cancel"))
        async with started_client(db_url, client_config(worker)) as client:
            await db.wait_state(job_id, "running")
            await wait_for(lambda: worker.threads, message="the worker started")
            await client.job_cancel(job_id)
            row = await db.wait_attempted(job_id)
        assert worker.saw_cancel.is_set()
        assert row["state"] == "cancelled", row
        assert row["finalized_at"] is not None
        assert "cancelled remotely" in row["errors"][0]["error"]


def test_cancel_requested_outside_a_job_is_false() -> None:
    assert river.cancel_requested() is False
    assert river.current_job() is None


# --- stop: interruption -------------------------------------------------------------------------


async def test_stop_and_cancel_interrupts_running_job(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="sleep", seconds=60))
        client = river.AsyncClient(db_url, client_config(worker))
        try:
            await client.start()
            running = await db.wait_state(job_id, "running")
            assert running["attempt"] == 1
            # In its work(), not only fetched: a job cancelled before it starts never starts.
            await wait_for(lambda: worker.seen, message="the worker started")
            before = utcnow()
            await client.stop_and_cancel()
            after = utcnow()
        finally:
            await client.close()
        row = await db.job(job_id)  # written before stop returned
        assert row["state"] == "available"
        assert row["attempt"] == 0
        assert row["errors"] is None
        assert_not_finalized(row)
        assert before <= row["scheduled_at"] <= after
        assert row["attempted_by"] == [client.id]
        assert len(worker.exceptions) == 1  # the worker was cancelled


async def test_soft_stop_with_timeout_interrupts_after_timeout(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="sleep", seconds=60))
        client = river.AsyncClient(db_url, client_config(worker))
        try:
            await client.start()
            await db.wait_state(job_id, "running")
            started = time.monotonic()
            await client.stop(timeout=0.3)
            elapsed = time.monotonic() - started
        finally:
            await client.close()
        assert 0.25 <= elapsed < 5, elapsed
        row = await db.job(job_id)
        assert row["state"] == "available"
        assert row["attempt"] == 0
        assert row["errors"] is None
        assert_not_finalized(row)


async def test_soft_stop_without_timeout_waits_for_running_job(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="gate"))
        client = river.AsyncClient(db_url, client_config(worker))
        stopped = anyio.Event()
        try:
            await client.start()
            await db.wait_state(job_id, "running")

            async def stop() -> None:
                await client.stop()
                stopped.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop)
                await wait_for(lambda: not client.running, message="stop to begin")
                # Stopping: nothing new is fetched.
                late = await insert(db, Behave(mode="ok"))

                async def stopping() -> bool:
                    return (
                        not stopped.is_set()
                        and await db.in_state(job_id, "running")
                        and await db.in_state(late, "available")
                    )

                await assert_stays(
                    stopping, 0.2, message="stop waits for the running job and fetches nothing"
                )
                worker.gate.open()
                await wait_for(stopped.is_set, message="stop to return")
            # The finished job's outcome was written before stop returned.
            row = await db.job(job_id)
            assert row["state"] == "completed"
            assert row["finalized_at"] is not None
            assert await db.state(late) == "available"
            assert worker.seen == [(job_id, 1)]
        finally:
            await client.close()


# --- remote cancel and the completion write rules ----------------------------------------------


async def test_remote_cancel_of_running_async_job(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="gate"))
        before = utcnow()
        async with started_client(db_url, client_config(worker)):
            await db.wait_state(job_id, "running")
            await wait_for(worker.gate.entered.is_set, message="worker to start")
            other = river.Client(db_url)
            try:
                cancelled = await anyio.to_thread.run_sync(other.job_cancel, job_id)
            finally:
                other.close()
            # Still running until the working client acts on the notification.
            assert cancelled.state is river.JobState.RUNNING
            assert "cancel_attempted_at" in cancelled.metadata
            row = await db.wait_attempted(job_id)
            after = utcnow()
        assert row["state"] == "cancelled"
        assert row["attempt"] == 1
        assert_finalized_between(row, before, after)
        assert "cancel_attempted_at" in row["metadata"]
        assert len(row["errors"]) == 1
        assert_error(row["errors"][0], row, error="cancelled remotely", contains=True, trace=False)
        assert len(worker.exceptions) == 1


async def test_cancel_mark_turns_long_retry_into_cancelled(db_url: str) -> None:
    """A running row marked cancel_attempted_at (notification missed) whose attempt fails with
    a long retry becomes cancelled (PROTOCOL 3.6), keeping attempt and scheduled_at."""
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="gate_raise"))
        async with started_client(db_url, client_config(worker)):
            running = await db.wait_state(job_id, "running")
            # Marked without a notification: the client cannot know.
            await db.execute(
                "UPDATE river_job SET metadata = metadata || "
                '\'{"cancel_attempted_at": "2024-01-01T00:00:00.000000001Z"}\' WHERE id = %(id)s',
                {"id": job_id},
            )
            worker.gate.open()
            row = await db.wait_attempted(job_id)
        assert row["state"] == "cancelled"
        assert row["finalized_at"] is not None
        assert row["attempt"] == 1
        assert row["scheduled_at"] == running["scheduled_at"]
        assert [e["error"] for e in row["errors"]] == ["RuntimeError: after gate"]


async def test_cancel_mark_does_not_convert_short_snooze(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="gate_snooze", seconds=4))
        async with started_client(db_url, client_config(worker)):
            await db.wait_state(job_id, "running")
            await db.execute(
                "UPDATE river_job SET metadata = metadata || "
                '\'{"cancel_attempted_at": "2024-01-01T00:00:00Z"}\' WHERE id = %(id)s',
                {"id": job_id},
            )
            worker.gate.open()
            row = await db.wait_attempted(job_id)
        assert row["state"] == "available"
        assert row["attempt"] == 0
        assert row["metadata"]["snoozes"] == 1


async def test_row_finalized_elsewhere_keeps_its_state_but_gets_metadata(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="gate_snooze", seconds=30))
        done_id = await insert(db, Behave(mode="gate"))
        async with started_client(db_url, client_config(worker)):
            await db.wait_state(job_id, "running")
            await db.wait_state(done_id, "running")
            # Recent, not a fixed old date: the leader's job cleaner deletes discarded rows
            # finalized more than a week ago, and it could run while this test does.
            finalized = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
            await db.execute(
                "UPDATE river_job SET state = 'discarded', finalized_at = %(finalized)s,"
                ' metadata = metadata || \'{"by": "admin"}\''
                " WHERE id = ANY(%(ids)s)",
                {"ids": [job_id, done_id], "finalized": finalized},
            )
            worker.gate.open()
            await wait_for(lambda: len(worker.finished) == 2, message="both jobs to finish")

            async def merged() -> bool:
                return "snoozes" in (await db.job(job_id))["metadata"]

            await wait_for(merged, message="snooze metadata merged")
        for jid in (job_id, done_id):
            row = await db.job(jid)
            assert row["state"] == "discarded"
            assert row["finalized_at"] == finalized
            assert row["attempt"] == 1
            assert row["errors"] is None
        row = await db.job(job_id)
        # Staged metadata is merged even though the row was no longer running.
        assert row["metadata"] == {"by": "admin", "snoozes": 1}


async def test_job_deleted_while_running_is_tolerated(db_url: str) -> None:
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="gate"))
        async with started_client(db_url, client_config(worker)):
            await db.wait_state(job_id, "running")
            await db.execute("DELETE FROM river_job WHERE id = %(id)s", {"id": job_id})
            worker.gate.open()
            await wait_for(lambda: worker.finished == [job_id], message="worker to finish")
            # The client keeps working.
            next_id = await insert(db, Behave(mode="ok"))
            await db.wait_state(next_id, "completed")
        assert await db.count() == 1


# --- job_complete_tx ----------------------------------------------------------------------------


class TxArgs(river.JobArgs):
    kind: ClassVar[str] = "tx_job"
    value: str
    tamper: str = ""  # "", "cancel", "rescue", "delete", "complete"
    raise_after: bool = False  # raise once the transaction has committed


class TxWorker(river.Worker[TxArgs]):
    """Writes a side-table row and completes its job in the same transaction."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.gate = Gate()
        self.results: list[river.JobRow] = []
        self.errors: list[BaseException] = []

    async def work(self, job: river.Job[TxArgs]) -> None:
        if job.args.tamper:
            await self.gate.wait()
        conn = await psycopg.AsyncConnection.connect(self.db_url)
        async with conn:
            try:
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO side_effects (job_id, value) VALUES (%s, %s)",
                        (job.id, job.args.value),
                    )
                    row = await river.job_complete_tx(conn, job, metadata={"done_by": "tx"})
                    self.results.append(row)
            except river.JobNotRunningError as exc:
                self.errors.append(exc)
                raise
        if job.args.raise_after:
            raise RuntimeError("after the job was completed")


class SyncTxWorker(river.Worker[TxArgs]):
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.results: list[river.JobRow] = []

    def work(self, job: river.Job[TxArgs]) -> None:
        with psycopg.connect(self.db_url) as conn, conn.transaction():
            conn.execute(
                "INSERT INTO side_effects (job_id, value) VALUES (%s, %s)",
                (job.id, job.args.value),
            )
            self.results.append(river.job_complete_tx(conn, job.row))


async def _side_table(db: DB) -> None:
    await db.execute("CREATE TABLE side_effects (job_id bigint PRIMARY KEY, value text)")


async def test_job_complete_tx_completes_with_the_callers_writes(db_url: str) -> None:
    worker = TxWorker(db_url)
    async with open_db(db_url) as db:
        await _side_table(db)
        job_id = await insert(db, TxArgs(value="hello"), river.InsertOpts(metadata={"x": 1}))
        async with started_client(db_url, client_config(worker)):
            row = await db.wait_state(job_id, "completed")
            await wait_for(lambda: worker.results, message="worker to finish")
        assert row["finalized_at"] is not None
        assert row["attempt"] == 1
        assert row["errors"] is None
        assert row["metadata"] == {"x": 1, "done_by": "tx"}
        assert await db.all("SELECT job_id, value FROM side_effects") == [
            {"job_id": job_id, "value": "hello"}
        ]
        returned = worker.results[0]
        assert returned.id == job_id
        assert returned.state is river.JobState.COMPLETED
        assert returned.finalized_at == row["finalized_at"]


async def test_an_error_after_job_complete_tx_is_reported_as_the_completion_it_is(
    db_url: str,
) -> None:
    # The row is completed (no retry follows): the event says job_completed, as the row does.
    worker = TxWorker(db_url)
    async with open_db(db_url) as db:
        await _side_table(db)
        async with started_client(db_url, client_config(worker)) as client:
            with client.subscribe(river.EventKind.JOB_COMPLETED, river.EventKind.JOB_FAILED) as sub:
                job_id = await insert(db, TxArgs(value="x", raise_after=True))
                event = await sub.get(timeout=10)
            row = await db.wait_state(job_id, "completed")
        assert event.kind == river.EventKind.JOB_COMPLETED
        assert event.job is not None
        assert event.job.state is river.JobState.COMPLETED
        assert row["attempt"] == 1


async def test_job_complete_tx_with_sync_connection(db_url: str) -> None:
    worker = SyncTxWorker(db_url)
    async with open_db(db_url) as db:
        await _side_table(db)
        job_id = await insert(db, TxArgs(value="sync"))
        async with started_client(db_url, client_config(worker)):
            row = await db.wait_state(job_id, "completed")
            await wait_for(lambda: worker.results, message="worker to finish")
        assert worker.results[0].state is river.JobState.COMPLETED
        assert row["errors"] is None
        assert await db.scalar("SELECT value FROM side_effects") == "sync"


@pytest.mark.parametrize(
    ("tamper", "sql", "final_state"),
    [
        (
            "cancel",
            "UPDATE river_job SET state = 'cancelled', finalized_at = now() WHERE id = %(id)s",
            "cancelled",
        ),
        # Rescued and fetched again elsewhere: still running, but at another attempt, which
        # this attempt's failure must not touch (the attempt fence).
        ("rescue", "UPDATE river_job SET attempt = attempt + 1 WHERE id = %(id)s", "running"),
        (
            "complete",
            "UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = %(id)s",
            "completed",
        ),
    ],
)
async def test_job_complete_tx_fence_rolls_back_callers_transaction(
    db_url: str, tamper: str, sql: str, final_state: str
) -> None:
    worker = TxWorker(db_url)
    async with open_db(db_url) as db:
        await _side_table(db)
        job_id = await insert(db, TxArgs(value="nope", tamper=tamper))
        async with started_client(db_url, client_config(worker)) as client:
            before = await db.wait_state(job_id, "running")
            await wait_for(worker.gate.entered.is_set, message="worker at the gate")
            await db.execute(sql, {"id": job_id})
            worker.gate.open()
            await wait_for(lambda: worker.errors, message="job_complete_tx to fail")
            if tamper == "rescue":
                # The stale outcome is dropped (written by no batch).
                await signals(client).flushed.wait_for(lambda batch: batch[1] == 1)
            row = await db.wait_state(job_id, final_state)
        err = worker.errors[0]
        assert isinstance(err, river.JobNotRunningError)
        assert err.job_id == job_id
        assert err.attempt == before["attempt"]
        assert worker.results == []
        # The caller's own write rolled back with it.
        assert await db.all("SELECT * FROM side_effects") == []
        assert "done_by" not in row["metadata"]
        if tamper == "rescue":
            # The stale attempt's failure was dropped: the newer attempt's row is untouched.
            assert row["attempt"] == before["attempt"] + 1
            assert row["errors"] is None


async def test_job_complete_tx_on_job_not_running_or_missing_raises(db_url: str) -> None:
    async with open_db(db_url) as db:
        job_id = await insert(db, TxArgs(value="v"))
        async with river.AsyncClient(db_url) as c:
            job_row = await c.job_get(job_id)
        # Not running (available): fenced out, nothing changes.
        with psycopg.connect(db_url) as conn:
            with pytest.raises(river.JobNotRunningError) as info:
                river.job_complete_tx(conn, job_row)
            assert (info.value.job_id, info.value.attempt) == (job_id, 0)
            conn.rollback()
            with pytest.raises(river.ValidationError):
                river.job_complete_tx(conn, "not a job")  # type: ignore[call-overload]
        assert await db.state(job_id) == "available"
        await db.execute("DELETE FROM river_job")
        aconn = await psycopg.AsyncConnection.connect(db_url)
        async with aconn:
            with pytest.raises(river.JobNotRunningError):
                await river.job_complete_tx(aconn, job_row)


# --- robustness: a job can never stall or crash the runtime ------------------------------------


class Fragile(river.JobArgs):
    kind: ClassVar[str] = "fragile"
    mode: str

    @pydantic.model_validator(mode="after")
    def _check(self) -> Fragile:
        if self.mode == "validator_keyerror":
            raise KeyError("missing lookup")  # not a ValueError: pydantic does not wrap it
        return self


class FragileWorker(river.Worker[Fragile]):
    def __init__(self) -> None:
        self.worked: list[str] = []

    def timeout(self, job: river.Job[Fragile]) -> float | None:
        if job.args.mode == "bad_timeout":
            raise ValueError("timeout broke")
        return None

    def next_retry(self, job: river.Job[Fragile]) -> datetime | None:
        if job.args.mode == "bad_next_retry":
            raise ValueError("next_retry broke")
        return None

    async def work(self, job: river.Job[Fragile]) -> None:
        self.worked.append(job.args.mode)
        mode = job.args.mode
        if mode == "nul":
            raise ValueError("bad \x00 byte \ud800 here")
        if mode == "output_nul":
            # Refused at the call: the worker gets the ValidationError.
            try:
                river.record_output({"k\x00": ["a\x00b"]})
            except river.ValidationError as exc:
                self.worked.append(str(exc))
            # A staged value changed after the call still reaches the completer, whose last line
            # of defence writes U+FFFD.
            output: dict[str, Any] = {}
            river.record_output(output)
            output["k\x00"] = ["a\x00b", "\udfff", "fine é 😀"]
            return
        if mode == "own_cancelled_error":
            fut = asyncio.get_running_loop().create_future()
            fut.cancel()
            await fut
        if mode == "bad_next_retry":
            raise RuntimeError("work failed")


async def _run_fragile(db_url: str, modes: list[str]) -> tuple[dict[str, dict[str, Any]], Any]:
    worker = FragileWorker()
    async with open_db(db_url) as db:
        ids = {m: await insert(db, Fragile.model_construct(mode=m)) for m in modes}
        ok_id = await insert(db, Fragile(mode="ok"))
        async with started_client(db_url, client_config(worker)) as client:
            rows = {m: await db.wait_attempted(i) for m, i in ids.items()}
            # The client is alive and its completer unblocked: a later job completes too.
            assert (await db.wait_state(ok_id, "completed"))["errors"] is None
            later = await client.insert(Fragile(mode="ok"))
            await db.wait_state(later.job.id, "completed")
            assert client.running
    return rows, worker


async def test_text_jsonb_cannot_hold_never_blocks_the_completer(db_url: str) -> None:
    """NUL and lone surrogates in an error message or in staged output would make every write
    of the batch fail (and stop() hang); they are stored as U+FFFD. (record_output refuses
    them at the call; only a staged value changed afterwards gets here.)"""
    rows, worker = await _run_fragile(db_url, ["nul", "output_nul"])
    assert 'output["k\\u0000"]: key contains a NUL character (U+0000)' in "".join(worker.worked)
    nul = rows["nul"]
    assert nul["state"] == "retryable"
    err = nul["errors"][0]
    assert err["error"] == "ValueError: bad \ufffd byte \ufffd here"
    assert "\x00" not in err["trace"]
    assert "ValueError: bad \ufffd byte \ufffd here" in err["trace"]
    out = rows["output_nul"]
    assert out["state"] == "completed"
    assert out["metadata"] == {"output": {"k\ufffd": ["a\ufffdb", "\ufffd", "fine é 😀"]}}


async def test_an_outcome_the_database_refuses_is_isolated_and_left_to_the_rescuer(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A row whose outcome the database keeps refusing (here a trigger raising for it) must
    not hold back the outcomes batched with it, nor block stop(): the batch is split down to
    that outcome, which is given up (logged); its job stays running for the rescuer."""
    worker = FragileWorker()
    async with open_db(db_url) as db:
        ids = [await insert(db, Fragile(mode="ok")) for _ in range(8)]
        poison = ids[5]
        await db.execute(
            "CREATE FUNCTION refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.id = {poison} AND NEW.state <> 'running' THEN "
            "RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"
        )
        await db.execute(
            "CREATE TRIGGER refuse_outcome BEFORE UPDATE ON river_job "
            "FOR EACH ROW EXECUTE FUNCTION refuse_outcome()"
        )
        config = client_config(worker, completer_flush_interval=0.05)
        with caplog.at_level("WARNING", logger="river.completer"), anyio.fail_after(60):
            async with started_client(db_url, config) as client:
                for job_id in ids:
                    if job_id != poison:
                        await db.wait_state(job_id, "completed", timeout=30)
                await signals(client).flushed.wait_for(lambda batch: batch[1] == 1, timeout=30)
            # stop() returned: nothing is stuck behind the refused outcome.
        row = await db.job(poison)
        assert row["state"] == "running"
        assert row["attempt"] == 1
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1
        assert f"outcome of job {poison}" in errors[0].getMessage()
        assert "refused by the test" in errors[0].getMessage()
        assert "rescuer" in errors[0].getMessage()


async def test_worker_raising_its_own_cancelled_error_is_an_ordinary_failure(db_url: str) -> None:
    rows, _ = await _run_fragile(db_url, ["own_cancelled_error"])
    row = rows["own_cancelled_error"]
    assert row["state"] == "retryable"
    assert row["attempt"] == 1
    assert row["errors"][0]["error"] == "CancelledError"
    assert "CancelledError" in row["errors"][0]["trace"]


async def test_broken_worker_hooks_fail_the_attempt_not_the_client(db_url: str) -> None:
    before = utcnow()
    rows, worker = await _run_fragile(db_url, ["bad_timeout", "bad_next_retry"])
    after = utcnow()
    bad_timeout = rows["bad_timeout"]
    assert bad_timeout["state"] == "retryable"
    assert_error(
        bad_timeout["errors"][0], bad_timeout, error="ValueError: timeout broke", trace=True
    )
    assert "bad_timeout" not in worker.worked  # work() never ran
    bad_retry = rows["bad_next_retry"]
    assert bad_retry["state"] == "retryable"
    assert_error(bad_retry["errors"][0], bad_retry, error="RuntimeError: work failed", trace=True)
    # next_retry() raised: the client's policy (60 s here) decided.
    assert (
        before + timedelta(seconds=60) <= bad_retry["scheduled_at"] <= after + timedelta(seconds=60)
    )


async def test_args_validator_raising_any_exception_is_an_ordinary_failure(db_url: str) -> None:
    rows, worker = await _run_fragile(db_url, ["validator_keyerror"])
    row = rows["validator_keyerror"]
    assert row["state"] == "retryable"
    assert "missing lookup" in row["errors"][0]["error"]
    assert worker.worked == ["ok", "ok"]


# --- short retries and snoozes come back without a poll ----------------------------------------


class Flaky(river.JobArgs):
    kind: ClassVar[str] = "flaky"
    how: str  # "error" or "snooze"


class FlakyWorker(river.Worker[Flaky]):
    def __init__(self) -> None:
        self.runs: list[tuple[int, float]] = []

    async def work(self, job: river.Job[Flaky]) -> None:
        self.runs.append((job.attempt, time.monotonic()))
        if len(self.runs) == 1:
            if job.args.how == "error":
                raise RuntimeError("first run fails")
            raise river.JobSnooze(0.3)


@pytest.mark.parametrize("how", ["error", "snooze"])
async def test_short_retry_and_snooze_rerun_without_waiting_for_a_poll(
    db_url: str, how: str
) -> None:
    """The poll is 30 s away and nothing notifies: the producer's own timer re-fetches the job
    it put back as available with a future scheduled_at."""
    worker = FlakyWorker()
    config = client_config(worker, retry_policy=retry_in(0.3), fetch_poll_interval=30)
    async with open_db(db_url) as db:
        job_id = await insert(db, Flaky(how=how))
        async with started_client(db_url, config):
            row = await db.wait_state(job_id, "completed", timeout=5)
    assert len(worker.runs) == 2
    (first_attempt, t1), (second_attempt, t2) = worker.runs
    assert t2 - t1 >= 0.29
    if how == "error":
        assert (first_attempt, second_attempt) == (1, 2)
        assert row["attempt"] == 2
        assert [e["error"] for e in row["errors"]] == ["RuntimeError: first run fails"]
    else:
        assert (first_attempt, second_attempt) == (1, 1)
        assert row["attempt"] == 1
        assert row["errors"] is None
        assert row["metadata"] == {"snoozes": 1}


class HeldFlakyWorker(river.Worker[Flaky]):
    """Fails its first run once the test says so (after it has locked the job's row)."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, float]] = []
        self.started = anyio.Event()
        self.go = anyio.Event()

    async def work(self, job: river.Job[Flaky]) -> None:
        self.runs.append((job.attempt, time.monotonic()))
        if len(self.runs) == 1:
            self.started.set()
            await self.go.wait()
            raise RuntimeError("first run fails")


async def test_a_short_retry_written_after_it_was_due_still_reruns_without_a_poll(
    db_url: str,
) -> None:
    """The outcome's write is held past the job's due time (a row lock stands for a slow
    database): the producer's re-fetch waits for the write, where a fetch at the due time
    would find the row still running and leave the job to the poll, 30 s away."""
    worker = HeldFlakyWorker()
    config = client_config(worker, retry_policy=retry_in(0.3), fetch_poll_interval=30)
    async with open_db(db_url) as db:
        job_id = await insert(db, Flaky(how="error"))
        async with (
            started_client(db_url, config),
            await psycopg.AsyncConnection.connect(db_url) as locker,
        ):
            with anyio.fail_after(20):
                await worker.started.wait()
            async with locker.transaction():
                await locker.execute("SELECT 1 FROM river_job WHERE id = %s FOR UPDATE", (job_id,))
                worker.go.set()
                await anyio.sleep(1.0)  # the retry is due 0.3 s after the failure
                assert await db.state(job_id) == "running"  # the write waits
                released = time.monotonic()
            row = await db.wait_state(job_id, "completed", timeout=15)
    assert [attempt for attempt, _ in worker.runs] == [1, 2]
    assert worker.runs[1][1] >= released
    assert row["attempt"] == 2


class CompleteThenRaise(river.JobArgs):
    kind: ClassVar[str] = "complete_then_raise"


class CompleteThenRaiseWorker(river.Worker[CompleteThenRaise]):
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    async def work(self, job: river.Job[CompleteThenRaise]) -> None:
        conn = await psycopg.AsyncConnection.connect(self.db_url)
        async with conn, conn.transaction():
            await river.job_complete_tx(conn, job)
        raise RuntimeError("failed after completing")


async def test_error_after_job_complete_tx_leaves_row_completed(db_url: str) -> None:
    """The completer only changes running rows: a job completed in the worker's own
    transaction stays completed even if work() then raises."""
    worker = CompleteThenRaiseWorker(db_url)
    async with open_db(db_url) as db:
        job_id = await insert(db, CompleteThenRaise())
        config = fast_config(make_workers(worker, BehaveWorker()), retry_policy=retry_in(60))
        async with started_client(db_url, config) as client:
            row = await db.wait_state(job_id, "completed")
            # Wait until the client has written (and so skipped) the failed outcome.
            await wait_for(
                lambda: not client.queues.producers["default"].running, message="job end"
            )
            probe = await client.insert(Behave(mode="ok"), river.InsertOpts(queue="default"))
            await db.wait_state(probe.job.id, "completed")
        final = await db.job(job_id)
    assert final["state"] == "completed"
    assert final["errors"] is None
    assert final["finalized_at"] == row["finalized_at"]


class Edge(river.JobArgs):
    kind: ClassVar[str] = "edge"
    mode: str


class EdgeWorker(river.Worker[Edge]):
    def next_retry(self, job: river.Job[Edge]) -> datetime | None:
        if job.args.mode == "naive_next_retry":
            return datetime(2099, 1, 1)  # naive: cannot be compared with an aware now
        return None

    async def work(self, job: river.Job[Edge]) -> None:
        mode = job.args.mode
        if mode == "inf_snooze":
            raise river.JobSnooze(float("inf"))
        if mode == "nan_snooze":
            raise river.JobSnooze(float("nan"))
        if mode == "huge_snooze":
            raise river.JobSnooze(1e12)  # beyond datetime's range
        if mode in ("naive_next_retry", "policy_raises", "work_end_raises"):
            raise RuntimeError(mode)


class BrokenWorkEnd(river.Middleware):
    def work_end(self, job: river.Job[Any], error: BaseException | None) -> BaseException | None:
        if isinstance(job.args, Edge) and job.args.mode == "work_end_raises":
            raise LookupError("middleware bug")
        return error


async def test_out_of_range_values_from_workers_never_crash_the_client(db_url: str) -> None:
    def policy(n: int, now: datetime) -> datetime:
        if n == 1:
            raise ZeroDivisionError("policy bug")  # falls back to the default policy
        return now + timedelta(seconds=60)

    modes = [
        "inf_snooze",
        "nan_snooze",
        "huge_snooze",
        "naive_next_retry",
        "policy_raises",
        "work_end_raises",
    ]
    config = fast_config(
        make_workers(EdgeWorker(), BehaveWorker()),
        retry_policy=policy,
        middleware=[BrokenWorkEnd()],
    )
    async with open_db(db_url) as db:
        ids = {m: await insert(db, Edge(mode=m)) for m in modes}
        async with started_client(db_url, config) as client:
            rows = {m: await db.wait_attempted(i) for m, i in ids.items()}
            later = await insert(db, Behave(mode="ok"))
            await db.wait_state(later, "completed")
            assert client.running
            assert client._runtime._root is not None
            assert not client._runtime._root.done()
    for mode in ("inf_snooze", "nan_snooze"):
        row = rows[mode]
        # An invalid snooze is the worker's error: an ordinary failure.
        assert row["errors"][0]["error"].startswith("ValidationError: JobSnooze.seconds"), row
        assert row["attempt"] == 1
    huge = rows["huge_snooze"]
    assert huge["state"] == "scheduled"
    assert huge["attempt"] == 0
    assert huge["scheduled_at"].year == 9999  # saturated, not overflowed
    for mode in ("naive_next_retry", "policy_raises"):
        row = rows[mode]
        assert row["errors"][0]["error"] == f"RuntimeError: {mode}", row
        assert row["state"] in ("retryable", "available")
        assert row["finalized_at"] is None
    broken = rows["work_end_raises"]
    assert broken["finalized_at"] is None
    assert broken["errors"][0]["error"] == "LookupError: middleware bug"
    assert broken["errors"][0]["attempt"] == 1


# --- the completer's batch write ------------------------------------------------------------------


def test_batch_write_stores_each_outcome_exactly(db_url: str) -> None:
    """The completer's statement (river/_sql/job.sql job_set_state_many) with its parameters as
    sent (text literals, binary timestamps, one NULL for a column of None throughout): a batch
    of completions only, whose scheduled_at, attempt, error and metadata columns are all NULL,
    and a batch mixing every kind of outcome, with texts that need escaping, store exactly the
    values of each outcome and leave the other columns alone."""
    odd = 'say "hi" \\ {a,b} NULL\ttab\nline é😀'
    tz = timezone(timedelta(hours=-3, minutes=-30))
    base = datetime(2031, 5, 6, 7, 8, 9, 123457, tz)
    with river.Client(db_url) as client:
        ids = [r.job.id for r in client.insert_many([Behave(mode=str(i)) for i in range(10)])]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now(),"
            " metadata = '{\"keep\": 1}' WHERE id = ANY(%s)",
            (ids,),
        )
        with river.Client(db_url) as client:
            rows = [client.job_get(i) for i in ids]
        before = {r.id: r for r in rows}

        def err(n: int) -> AttemptError:
            return AttemptError(at=base, attempt=1, error=f"{odd} {n}", trace=f"tb\n{odd}")

        at = [base + timedelta(microseconds=i) for i in range(10)]
        completions = [Outcome(r, JobState.COMPLETED, "job_completed", at[k]) for k, r in
                       enumerate(rows[:4])]  # fmt: skip
        stale = dataclasses.replace(rows[9], attempt=2)
        mixed = [
            Outcome(rows[4], JobState.COMPLETED, "job_completed", at[4], metadata={"out": odd}),
            Outcome(rows[5], JobState.RETRYABLE, "job_failed", None, at[5], None, err(5)),
            Outcome(rows[6], JobState.SCHEDULED, "job_snoozed", None, at[6], 0, None,
                    {"snoozes": 1}),
            Outcome(rows[7], JobState.DISCARDED, "job_failed", at[7], None, None, err(7)),
            Outcome(rows[8], JobState.CANCELLED, "job_cancelled", at[8], None, None, err(8),
                    {odd: [odd, None]}),
            Outcome(stale, JobState.COMPLETED, "job_completed", at[9]),
        ]  # fmt: skip
        q = queries_for(None)
        for outcomes in (completions, mixed):
            written = run_sync(conn, set_state_many_op(q, _to_batch(outcomes)))
            assert written == {
                (o.job.id, o.job.attempt): o.state.value for o in outcomes if o.job is not stale
            }
        stored = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT id, state::text, attempt, finalized_at, scheduled_at, errors,"
                " metadata FROM river_job WHERE id = ANY(%s)",
                (ids,),
            )
        }
    for o in completions + mixed:
        job = before[o.job.id]
        state, attempt, finalized_at, scheduled_at, errors, metadata = stored[job.id]
        if o.job is stale:
            assert (state, attempt, finalized_at, errors) == ("running", 1, None, None)
            assert (scheduled_at, metadata) == (job.scheduled_at, {"keep": 1})
            continue
        assert state == o.state.value
        assert attempt == (1 if o.attempt is None else o.attempt)
        assert finalized_at == o.finalized_at
        assert scheduled_at == (job.scheduled_at if o.scheduled_at is None else o.scheduled_at)
        if o.error is None:
            assert errors is None
        else:
            assert errors == [json.loads(jsonb_dumps(o.error.to_json()))]
            assert errors[0]["error"].startswith(odd)
        assert metadata == {"keep": 1, **(o.metadata or {})}


class Deaf(river.JobArgs):
    kind: ClassVar[str] = "deaf_job"


class DeafWorker(river.Worker[Deaf]):
    """A sync worker that never polls cancel_requested(): its thread cannot be interrupted."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def work(self, job: river.Job[Deaf]) -> None:
        self.started.set()
        self.release.wait(30)


async def test_a_stop_says_which_cancelled_job_it_waits_for(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # stop(timeout) cancels what still runs at the timeout, then waits for it to end (its
    # outcome must be written): a job that ignores the cancellation holds the stop, and the
    # wait is now logged, naming the job, instead of looking like a hang.
    import logging

    import river._runtime

    monkeypatch.setattr(river._runtime, "CANCEL_NOTICE", 0.2)
    caplog.set_level(logging.WARNING, logger="river.client")
    worker = DeafWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Deaf())
        async with started_client(db_url, client_config(worker)) as client:
            await wait_for(worker.started.is_set, message="the job to start")
            stopped = anyio.Event()

            async def stop() -> None:
                await client.stop(0.1)
                stopped.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop)
                await wait_for(
                    lambda: any(
                        f"job {job_id} (kind deaf_job" in r.getMessage() for r in caplog.records
                    ),
                    message="the warning",
                )
                assert not stopped.is_set()  # still waiting for the job
                worker.release.set()
        row = await db.wait_state(job_id, "completed")
    assert row["attempt"] == 1


class Blocking(river.JobArgs):
    kind: ClassVar[str] = "blocking_job"


class BlockingWorker(river.Worker[Blocking]):
    """An async worker that calls a blocking function: the mistake the loop watch reports."""

    async def work(self, job: river.Job[Blocking]) -> None:
        time.sleep(2.0)  # noqa: ASYNC251 - the mistake under test


async def test_a_blocked_event_loop_is_reported(
    db_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    import river._runtime

    monkeypatch.setattr(river._runtime, "LOOP_BLOCKED", 1.0)  # the product's (see conftest)
    caplog.set_level(logging.WARNING, logger="river.client")
    async with open_db(db_url) as db:
        job_id = await insert(db, Blocking())
        async with started_client(db_url, client_config(BlockingWorker())):
            await db.wait_state(job_id, "completed")
            await wait_for(
                lambda: [r for r in caplog.records if "event loop was blocked" in r.getMessage()],
                message="the loop watch's warning",
            )
    (line,) = [r.getMessage() for r in caplog.records if "event loop was blocked" in r.getMessage()]
    assert "sync worker" in line


async def test_a_job_whose_metadata_python_cannot_read_is_still_worked(db_url: str) -> None:
    # Written by someone else (River Pro, a person): an integer beyond Python's 4,300-digit
    # limit made the fetch that had already locked the job's batch fail, again and again.
    worker = BehaveWorker()
    async with open_db(db_url) as db:
        job_id = await insert(db, Behave(mode="ok"))
        await db.execute(
            """UPDATE river_job SET metadata = ('{"big": ' || repeat('9', 5000) || '}')::jsonb"""
            " WHERE id = %(id)s",
            {"id": job_id},
        )
        sql = "SELECT state::text AS state, attempt FROM river_job WHERE id = %(id)s"
        async with started_client(db_url, client_config(worker)):
            # Not db.wait_state: the test's own psycopg cannot decode that metadata either.
            async def completed() -> bool:
                return bool(await db.scalar(sql, {"id": job_id}) == "completed")

            await wait_for(completed, message="completed")
        row = await db.one(sql, {"id": job_id})
    assert row == {"state": "completed", "attempt": 1}
