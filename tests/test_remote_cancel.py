"""Remote cancel across processes (PROTOCOL.md 3.4, 3.6, 7.2) and job events (12).

``job_cancel`` from any client marks a running job (metadata ``cancel_attempted_at``) and sends
a ``cancel`` notification in the same transaction; the client running the job confirms by
reading the row, then cancels the attempt (async: task cancellation; sync: the flag behind
``river.cancel_requested()``); the job ends ``cancelled``. Clients that do not run the job,
and notifications that the row does not confirm, change nothing. Where no notification arrives
(poll-only), the completion write rule still turns a retry or snooze of a marked job into
``cancelled``.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from typing import ClassVar

import anyio
import pytest
from helpers import (
    DB,
    Gate,
    assert_stays,
    fast_config,
    make_workers,
    open_db,
    started_client,
    wait_for,
)

import river

pytestmark = pytest.mark.anyio


class Sleepy(river.JobArgs):
    kind: ClassVar[str] = "rc_sleepy"
    tag: str = ""


class SleepyWorker(river.Worker[Sleepy]):
    """Waits on its gate (async): cancellable at every await."""

    def __init__(self) -> None:
        self.gate = Gate()
        self.started: dict[str, float] = {}
        self.cancelled: list[str] = []

    async def work(self, job: river.Job[Sleepy]) -> None:
        self.started[job.args.tag] = time.monotonic()
        try:
            await self.gate.wait(timeout=60)
        except BaseException:
            self.cancelled.append(job.args.tag)
            raise


class Spinner(river.JobArgs):
    kind: ClassVar[str] = "rc_spinner"


class SpinnerWorker(river.Worker[Spinner]):
    """A sync worker (runs in a thread) that polls river.cancel_requested()."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.saw_cancel: list[bool] = []

    def work(self, job: river.Job[Spinner]) -> None:
        self.entered.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if river.cancel_requested():
                self.saw_cancel.append(True)
                return
            time.sleep(0.005)
        self.saw_cancel.append(False)


class Flaky(river.JobArgs):
    kind: ClassVar[str] = "rc_flaky"
    outcome: str  # "error" | "snooze" | "ok"


class FlakyWorker(river.Worker[Flaky]):
    def __init__(self) -> None:
        self.gate = Gate()
        self.entered: set[str] = set()
        self.runs = 0

    async def work(self, job: river.Job[Flaky]) -> None:
        self.entered.add(job.args.outcome)
        self.runs += 1
        await self.gate.wait()
        if job.args.outcome == "error":
            raise ValueError("boom after cancel")
        if job.args.outcome == "snooze":
            raise river.JobSnooze(60)

    def next_retry(self, job: river.Job[Flaky]) -> datetime | None:
        return datetime.now().astimezone() + timedelta(hours=1)  # a retryable (not available) retry


def cancel_payload(job_id: int, queue: str = "default") -> str:
    return json.dumps({"action": "cancel", "job_id": job_id, "queue": queue}, separators=(",", ":"))


async def notify_control(db: DB, payload: str) -> None:
    await db.execute("SELECT pg_notify('public.river_control', %(p)s)", {"p": payload})


# --- remote cancel --------------------------------------------------------------------------------


async def test_remote_cancel_from_another_client_cancels_only_the_running_attempt(
    db_url: str,
) -> None:
    worker_a, worker_c = SleepyWorker(), SleepyWorker()
    config_a = fast_config(
        make_workers(worker_a), {"qa": river.QueueConfig()}, leader_election=False
    )
    config_c = fast_config(
        make_workers(worker_c), {"qc": river.QueueConfig()}, leader_election=False
    )
    async with (
        open_db(db_url) as db,
        started_client(db_url, config_a) as a,
        started_client(db_url, config_c),
    ):
        job_a = (await a.insert(Sleepy(tag="a"), river.InsertOpts(queue="qa"))).job
        job_c = (await a.insert(Sleepy(tag="c"), river.InsertOpts(queue="qc"))).job
        await wait_for(
            lambda: "a" in worker_a.started and "c" in worker_c.started, message="both jobs running"
        )

        # Another process, with the sync client, cancels C's job.
        def cancel() -> river.JobRow:
            with river.Client(db_url) as b:
                return b.job_cancel(job_c.id)

        marked = await anyio.to_thread.run_sync(cancel)
        assert marked.state is river.JobState.RUNNING  # running: marked, the runner cancels it
        assert "cancel_attempted_at" in marked.metadata
        row = await db.wait_state(job_c.id, "cancelled", timeout=10)
        assert worker_c.cancelled == ["c"]
        assert row["finalized_at"] is not None
        assert row["attempt"] == 1
        (error,) = row["errors"]
        assert "cancelled remotely" in error["error"]
        assert error["trace"] == ""
        assert "cancel_attempted_at" in row["metadata"]

        # A received the same notification but does not run that job: nothing happens there.
        async def a_untouched() -> bool:
            return worker_a.cancelled == [] and await db.in_state(job_a.id, "running")

        await assert_stays(a_untouched, 0.2, message="client A's job goes on")
        worker_a.gate.open()
        await db.wait_state(job_a.id, "completed")


async def test_cancel_notifications_are_confirmed_against_the_row(db_url: str) -> None:
    worker = SleepyWorker()
    config = fast_config(make_workers(worker), leader_election=False)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        job = (await client.insert(Sleepy(tag="x"))).job
        probe = (await client.insert(Sleepy(tag="probe"))).job
        await wait_for(lambda: len(worker.started) == 2, message="jobs running")

        # A forged cancel for a running job whose row carries no cancel mark: a hint the row
        # does not confirm, so it is ignored. So are malformed and foreign payloads.
        for payload in (
            cancel_payload(job.id),
            f'{{"action" : "cancel", "job_id" : {job.id}, "queue" : "default"}}',
            cancel_payload(987654321),  # no such job here
            json.dumps({"action": "cancel", "job_id": str(job.id), "queue": "default"}),
            json.dumps({"action": "cancel", "queue": "default"}),
            json.dumps({"action": "cancel", "job_id": job.id + 0.5, "queue": "default"}),
            json.dumps({"action": "explode", "job_id": job.id}),
            "not json at all",
            "[]",
        ):
            await notify_control(db, payload)
        # A genuine cancel sent after them: once it has been acted on, the ones before it
        # were received too.
        await client.job_cancel(probe.id)
        await db.wait_state(probe.id, "cancelled", timeout=5)

        async def forged_ignored() -> bool:
            row = await db.job(job.id)
            return (
                worker.cancelled == ["probe"]
                and row["state"] == "running"
                and "cancel_attempted_at" not in row["metadata"]
            )

        await assert_stays(
            forged_ignored,
            0.3,  # the confirmation reads of the forged ones finish meanwhile
            message="forged cancels change nothing",
        )

        worker.gate.open()
        await db.wait_state(job.id, "completed")
        assert client.running  # the client survived every payload


async def test_remote_cancel_sets_the_flag_a_sync_worker_polls(db_url: str) -> None:
    worker = SpinnerWorker()
    config = fast_config(make_workers(worker), leader_election=False)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        job = (await client.insert(Spinner())).job
        await anyio.to_thread.run_sync(worker.entered.wait, 10)
        async with river.AsyncClient(db_url) as other:
            await other.job_cancel(job.id)
        row = await db.wait_state(job.id, "cancelled", timeout=5)
        assert worker.saw_cancel == [True]
        # The worker returned normally after seeing the flag: still recorded as cancelled.
        assert "cancelled remotely" in row["errors"][0]["error"]
        assert row["finalized_at"] is not None


async def test_cancel_marked_job_that_fails_or_snoozes_ends_cancelled_by_the_write_rule(
    db_url: str,
) -> None:
    # Poll-only: the cancel notification never reaches this client, so the attempt is not
    # interrupted; the completion write sees the cancel mark instead (PROTOCOL.md 3.6).
    worker = FlakyWorker()
    config = fast_config(make_workers(worker), poll_only=True, leader_election=False)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        sub = client.subscribe(river.EventKind.JOB_CANCELLED, river.EventKind.JOB_COMPLETED)
        with sub:
            jobs = {
                outcome: (await client.insert(Flaky(outcome=outcome))).job
                for outcome in ("error", "snooze", "ok")
            }
            await wait_for(lambda: len(worker.entered) == 3, message="jobs running")
            for job in jobs.values():
                marked = await client.job_cancel(job.id)
                assert marked.state is river.JobState.RUNNING
            before = {k: await db.job(j.id) for k, j in jobs.items()}
            worker.gate.open()

            failed = await db.wait_state(jobs["error"].id, "cancelled", "retryable")
            assert failed["state"] == "cancelled"
            assert failed["finalized_at"] is not None
            assert failed["attempt"] == 1  # left alone
            assert failed["scheduled_at"] == before["error"]["scheduled_at"]
            (error,) = failed["errors"]
            assert error["error"] == "ValueError: boom after cancel"  # still appended

            snoozed = await db.wait_state(jobs["snooze"].id, "cancelled", "scheduled")
            assert snoozed["state"] == "cancelled"
            assert snoozed["finalized_at"] is not None

            # Success wins over a cancel request (River (Go) does the same).
            await db.wait_state(jobs["ok"].id, "completed")

            events = {}
            for _ in range(3):
                event = await sub.get(timeout=5)
                assert event.job is not None
                events[event.job.id] = event
            # The event kind follows the persisted outcome.
            assert events[jobs["error"].id].kind == "job_cancelled"
            cancelled_row = events[jobs["error"].id].job
            assert cancelled_row is not None
            assert cancelled_row.state is river.JobState.CANCELLED
            assert events[jobs["snooze"].id].kind == "job_cancelled"
            assert events[jobs["ok"].id].kind == "job_completed"


async def test_a_cancelled_job_retried_by_hand_fails_as_a_retry_not_a_cancel(
    db_url: str,
) -> None:
    # job_cancel marks the job; job_retry takes the mark away, so the retried job's next
    # failure is an ordinary retry.
    worker = FlakyWorker()
    worker.gate.open()
    config = fast_config(make_workers(worker), poll_only=True, leader_election=False)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        later = datetime.now().astimezone() + timedelta(hours=1)
        job = (
            await client.insert(Flaky(outcome="error"), river.InsertOpts(scheduled_at=later))
        ).job
        assert (await client.job_cancel(job.id)).state is river.JobState.CANCELLED
        retried = await client.job_retry(job.id)
        assert retried.state is river.JobState.AVAILABLE
        assert "cancel_attempted_at" not in retried.metadata
        await wait_for(lambda: worker.runs == 1, message="the retried job ran")
        row = await db.wait_state(job.id, "retryable", "cancelled")
        assert row["state"] == "retryable"
        assert row["attempt"] == 1


# --- events ---------------------------------------------------------------------------------------


class Outcome(river.JobArgs):
    kind: ClassVar[str] = "rc_outcome"
    outcome: str


class OutcomeWorker(river.Worker[Outcome]):
    def __init__(self) -> None:
        self.hang_started = threading.Event()

    async def work(self, job: river.Job[Outcome]) -> None:
        match job.args.outcome:
            case "complete":
                await anyio.sleep(0.02)
            case "fail":
                raise RuntimeError("it failed")
            case "cancel":
                raise river.JobCancel("not wanted")
            case "snooze":
                raise river.JobSnooze(30)
            case "hang":
                self.hang_started.set()
                await anyio.sleep_forever()  # until stop_and_cancel


async def test_job_events_carry_the_persisted_row_and_statistics(db_url: str) -> None:
    worker = OutcomeWorker()
    # The failed job's retry an hour away: with the default (~1 s) it could run and fail
    # again before the stop on a busy machine, an event more than the test reads.
    config = fast_config(
        make_workers(worker),
        leader_election=False,
        retry_policy=lambda errors, now: now + timedelta(hours=1),
    )
    async with (
        open_db(db_url) as db,
        started_client(db_url, config) as client,
    ):
        with (
            client.subscribe(*sorted(river.EventKind.JOB_KINDS)) as sub,
            client.subscribe(river.EventKind.QUEUE_PAUSED) as queue_events,
        ):
            ids = {
                name: (await client.insert(Outcome(outcome=name))).job.id
                for name in ("complete", "fail", "cancel", "snooze", "hang")
            }
            events: dict[str, river.Event] = {}
            while len(events) < 4:
                event = await sub.get(timeout=10)
                assert event.job is not None
                events[event.kind] = event
            await anyio.to_thread.run_sync(worker.hang_started.wait, 10)
            await client.stop_and_cancel()
            events["job_interrupted"] = await sub.get(timeout=10)
            # Subscriptions get only their kinds.
            with pytest.raises(TimeoutError):
                await queue_events.get(timeout=0.05)

        expected = {
            "job_completed": ("complete", "completed"),
            "job_failed": ("fail", "retryable"),
            "job_cancelled": ("cancel", "cancelled"),
            "job_snoozed": ("snooze", "scheduled"),
            "job_interrupted": ("hang", "available"),
        }
        for kind, (name, state) in expected.items():
            event = events[kind]
            assert event.kind == kind
            assert event.queue == "default"
            assert event.job is not None
            assert event.job.id == ids[name]
            row = await db.job(ids[name])
            # The event's row is the row as persisted.
            assert event.job.state.value == row["state"]
            if state is not None:
                assert row["state"] == state
            assert event.job.metadata == row["metadata"]
            assert len(event.job.errors) == len(row["errors"] or [])
            assert event.stats is not None
            assert event.stats.queue_wait >= 0
            assert event.stats.run_duration >= 0
            assert event.stats.complete_duration >= 0
        assert events["job_failed"].job is not None
        assert events["job_failed"].job.errors[-1].error == "RuntimeError: it failed"
        assert events["job_completed"].stats is not None
        assert events["job_completed"].stats.run_duration >= 0.015
        assert events["job_snoozed"].job is not None
        assert events["job_snoozed"].job.metadata["snoozes"] == 1


class Quick(river.JobArgs):
    kind: ClassVar[str] = "rc_quick"
    n: int


class QuickWorker(river.Worker[Quick]):
    async def work(self, job: river.Job[Quick]) -> None:
        pass


async def test_a_slow_subscriber_drops_events_and_never_slows_the_runtime(db_url: str) -> None:
    config = fast_config(make_workers(QuickWorker()), leader_election=False)
    total = 300
    seen: list[int] = []
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        with (
            client.subscribe(river.EventKind.JOB_COMPLETED, buffer=1) as slow,  # never read
            client.subscribe(river.EventKind.JOB_COMPLETED) as fast,
        ):

            async def read_all() -> None:
                async for event in fast:
                    assert event.job is not None
                    seen.append(event.job.id)
                    if len(seen) == total:
                        return

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_all)
                # Every job completes though one subscriber never reads: it never blocks.
                await client.insert_many([Quick(n=i) for i in range(total)])
                await db.wait_count(total, "state = 'completed'", timeout=20)
            assert len(seen) == total
            assert slow.dropped == total - 1
            first = await slow.get(timeout=1)
            assert first.kind == "job_completed"


async def test_a_closed_subscription_leaves_no_unclosed_stream(db_url: str) -> None:
    import gc
    import warnings

    async with river.AsyncClient(db_url) as client:
        sub = client.subscribe()
        sub.close()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del sub
            gc.collect()
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_iterating_a_subscription_ends_when_the_client_closes(db_url: str) -> None:
    # An `async for` over a subscription used to wait for ever once the client was closed.
    client = river.AsyncClient(db_url)
    sub = client.subscribe(river.EventKind.QUEUE_PAUSED)
    ended = anyio.Event()

    async def read() -> None:
        async for _ in sub:
            pass
        ended.set()

    with anyio.fail_after(10):  # the reader must end, or the task group never exits
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await client.queue_list()  # the pool is open: close() has something to close
            await client.close()
    assert ended.is_set()
    sub.close()


async def test_get_on_an_ended_subscription_says_it_ended(db_url: str) -> None:
    # It raised anyio's EndOfStream (or ClosedResourceError) instead of a river error.
    config = fast_config(make_workers(QuickWorker()), leader_election=False)
    async with started_client(db_url, config) as client:
        ended_by_client = client.subscribe(river.EventKind.QUEUE_PAUSED)
        watch = client.subscribe(river.EventKind.QUEUE_PAUSED)
        closed = client.subscribe()
        # An event buffered before the end is still returned.
        await client.queue_pause("default")
        assert (await watch.get(timeout=5)).kind == "queue_paused"  # so it is buffered
        watch.close()
        await client.stop()
        await client.close()
        paused = await ended_by_client.get(timeout=5)
        assert (paused.kind, paused.queue) == ("queue_paused", "default")
        with anyio.fail_after(5), pytest.raises(river.RiverError, match="subscription has ended"):
            await ended_by_client.get(timeout=60)
        ended_by_client.close()
        closed.close()
        with anyio.fail_after(5), pytest.raises(river.RiverError, match="subscription has ended"):
            await closed.get(timeout=60)
