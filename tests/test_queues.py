"""Dynamic queues (issue 4, docs/queues.md): ``client.queues`` add / remove / update / pause /
resume / get / list on a real Postgres, config inheritance, events and log lines, pause across
clients (notification path and poll-only), safety under concurrent calls, and the idle cost of
2,000 queues on one client.

Every wait polls a condition until a deadline. The few fixed windows below only ever check that
something does *not* happen (a paused queue fetching, a removed queue's jobs being touched).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio
import psycopg
import pytest
from helpers import DB, assert_stays, fast_config, make_workers, open_db, wait_for
from psycopg_pool import AsyncConnectionPool

import river
from river import EventKind, QueueConfig
from river.testing import signals

pytestmark = pytest.mark.anyio


# --- a worker that tracks concurrency per queue -----------------------------------------------


class Work(river.JobArgs):
    kind: ClassVar[str] = "work"
    n: int = 0
    #: Wait until the test releases this job (Tracker.release / release_all).
    hold: bool = False
    #: Or run this many seconds.
    sleep: float = 0.0


@dataclass(frozen=True)
class Start:
    at: float
    queue: str
    job_id: int
    n: int
    #: Jobs of the same queue running in this client at this job's start, itself included.
    concurrency: int


@dataclass
class Tracker(river.Worker[Work]):
    """Records every start (with per-queue concurrency), completion and interruption."""

    running: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    starts: list[Start] = field(default_factory=list)
    #: job id -> how many times its worker returned normally (a completion).
    completions: Counter[int] = field(default_factory=Counter)
    finished_at: dict[int, float] = field(default_factory=dict)
    finished_queue: dict[int, str] = field(default_factory=dict)
    interrupted: list[int] = field(default_factory=list)
    _gates: dict[int, anyio.Event] = field(default_factory=dict)
    _all_released: bool = False

    def __hash__(self) -> int:
        return id(self)

    def gate(self, n: int) -> anyio.Event:
        if n not in self._gates:
            self._gates[n] = anyio.Event()
            if self._all_released:
                self._gates[n].set()
        return self._gates[n]

    def release(self, n: int) -> None:
        self.gate(n).set()

    def release_all(self) -> None:
        self._all_released = True
        for g in self._gates.values():
            g.set()

    def started_ids(self, queue: str | None = None) -> list[int]:
        return [s.job_id for s in self.starts if queue is None or s.queue == queue]

    async def work(self, job: river.Job[Work]) -> None:
        queue = job.row.queue
        self.running[queue] += 1
        self.peak[queue] = max(self.peak[queue], self.running[queue])
        self.starts.append(Start(time.monotonic(), queue, job.id, job.args.n, self.running[queue]))
        done = False
        try:
            if job.args.hold:
                await self.gate(job.args.n).wait()
            elif job.args.sleep:
                await anyio.sleep(job.args.sleep)
            done = True
        finally:
            self.running[queue] -= 1
            if done:
                self.completions[job.id] += 1
                self.finished_at[job.id] = time.monotonic()
                self.finished_queue[job.id] = queue
            else:
                self.interrupted.append(job.id)


def config_for(
    tracker: Tracker, queues: dict[str, QueueConfig] | None = None, **kw: Any
) -> river.Config:
    kw.setdefault("leader_election", False)
    return fast_config(make_workers(tracker), queues=queues, **kw)


@asynccontextmanager
async def running_client(
    db_url: str, config: river.Config, tracker: Tracker, *, start: bool = True
) -> AsyncIterator[river.AsyncClient]:
    """A client (started unless ``start=False``) that is always stopped and closed after, with
    held jobs released first so a soft stop cannot hang. Its test signals are enabled."""
    client = river.AsyncClient(db_url, config)
    signals(client)
    try:
        if start:
            await client.start()
        yield client
    finally:
        with anyio.CancelScope(shield=True), anyio.fail_after(60):
            tracker.release_all()
            await client.stop(timeout=10)
            await client.close()


async def insert(client: river.AsyncClient, queue: str, *jobs: Work) -> list[int]:
    results = await client.insert_many([(j, river.InsertOpts(queue=queue)) for j in jobs])
    return [r.job.id for r in results]


async def queue_row(db: DB, name: str) -> dict[str, Any] | None:
    rows = await db.all(
        "SELECT name, paused_at, updated_at FROM river_queue WHERE name = %(n)s", {"n": name}
    )
    return rows[0] if rows else None


def current_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if not t.done()}


def assert_consistent(client: river.AsyncClient) -> None:
    """The client is fully started (a producer per queue) or fully stopped (none)."""
    assert client._state in ("running", "stopped"), client._state
    if client.running:
        assert set(client.queues.producers) == set(client.queues.configs)
        assert all(info.active for info in client.queues.list().values())
    else:
        assert client.queues.producers == {}
        assert not any(info.active for info in client.queues.list().values())


# --- the fetch cooldown ---------------------------------------------------------------------


def _in_cooldown(client: river.AsyncClient, queue: str) -> bool:
    return client.queues.producers[queue]._cooldown is not None


#: A queue whose loop sleeps out a long cooldown (30 s: a cluster-wide setting may make it a
#: day) once a job waits behind the one it just fetched.
SLOW = {"slow": QueueConfig(fetch_cooldown=30, fetch_poll_interval=30)}


async def _sleeping_out_the_cooldown(client: river.AsyncClient, tracker: Tracker) -> int:
    """Work one job of "slow", insert a second (its notification: a fetch after the cooldown)
    and return its id once the loop sleeps out the cooldown."""
    (first,) = await insert(client, "slow", Work(n=1))
    await wait_for(lambda: tracker.completions[first] == 1)
    (second,) = await insert(client, "slow", Work(n=2))
    await wait_for(lambda: _in_cooldown(client, "slow"), message="in the cooldown")
    return second


async def test_a_stop_cuts_the_fetch_cooldown_short(db_url: str) -> None:
    """A stop (hard ones too) came only after the cooldown's sleep."""
    tracker = Tracker()
    async with running_client(db_url, config_for(tracker, SLOW), tracker) as client:
        await _sleeping_out_the_cooldown(client, tracker)
        began = time.monotonic()
        await client.stop_and_cancel()  # shielded: a deadline scope would not end it
        assert time.monotonic() - began < 10  # not the cooldown's 30 s


async def test_an_update_cuts_the_old_fetch_cooldown_short(db_url: str) -> None:
    tracker = Tracker()
    async with running_client(db_url, config_for(tracker, SLOW), tracker) as client:
        second = await _sleeping_out_the_cooldown(client, tracker)
        await client.queues.update("slow", fetch_cooldown=0.002, fetch_poll_interval=1)
        # Fetched under the new settings, not 30 s after the first fetch.
        await wait_for(lambda: tracker.completions[second] == 1, timeout=5)


class Nap(river.JobArgs):
    kind: ClassVar[str] = "nap_once"


class NapOnce(river.Worker[Nap]):
    """Snoozes each job once for a moment (back to available with a future scheduled_at: the
    producer's own timer fetches it when due), then completes it."""

    def __init__(self) -> None:
        self.napped: set[int] = set()
        self.done: set[int] = set()

    async def work(self, job: river.Job[Nap]) -> None:
        if job.id not in self.napped:
            self.napped.add(job.id)
            raise river.JobSnooze(0.3)
        self.done.add(job.id)


async def test_jobs_due_together_are_fetched_together(db_url: str) -> None:
    """The producer's timer for re-queued jobs: wakes due at the same moment make one fetch
    (each wake made a fetch of its own, one per snoozed job)."""
    worker = NapOnce()
    slow_poll = QueueConfig(fetch_poll_interval=30)  # no poll in between
    config = fast_config(make_workers(worker), {"naps": slow_poll}, leader_election=False)
    client = river.AsyncClient(db_url, config)
    fetched = signals(client).fetched
    try:
        await client.start()
        await client.insert_many([(Nap(), river.InsertOpts(queue="naps")) for _ in range(30)])
        await wait_for(lambda: len(worker.napped) == 30, message="all snoozed")
        fetched.drain()
        await wait_for(lambda: len(worker.done) == 30, message="all done")
        fetches = 0
        while True:
            try:
                await fetched.wait(0.01)
            except TimeoutError:
                break
            fetches += 1
        # One per snoozed job (31) before; a few here. Wakes that come due while a fetch runs
        # make one more (empty) fetch after it, so how few depends on the machine's speed:
        # the 30 snoozes end over a few milliseconds here, over tens on a busy machine.
        assert 1 <= fetches <= 15, fetches
    finally:
        await client.stop()
        await client.close()


# --- add ------------------------------------------------------------------------------------


async def test_add_before_start_and_while_running(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"default": QueueConfig()})
    async with (
        open_db(db_url) as db,
        running_client(db_url, config, tracker, start=False) as client,
    ):
        info = await client.queues.add("early", QueueConfig(max_workers=3))
        assert (info.name, info.active, info.running_jobs, info.paused) == (
            "early",
            False,
            0,
            False,
        )
        assert info.settings.max_workers == 3
        assert sorted(client.queues.list()) == ["default", "early"]
        assert client.queues.get("early").config == QueueConfig(max_workers=3)
        # Nothing runs and nothing is written before start.
        assert await queue_row(db, "early") is None
        early_ids = await insert(client, "early", *(Work(n=i) for i in range(5)))

        await client.start()
        assert client.queues.get("early").active
        assert await queue_row(db, "early") is not None
        await db.wait_count(5, "state = 'completed' AND queue = 'early'")

        # Added while running: the row is upserted and the producer runs when add returns.
        info = await client.queues.add("late")
        assert info.active
        assert info.settings.max_workers == 100
        row = await queue_row(db, "late")
        assert row is not None
        assert row["paused_at"] is None
        assert "late" in client.queues.producers
        late_ids = await insert(client, "late", *(Work(n=i) for i in range(5)))
        await db.wait_count(5, "state = 'completed' AND queue = 'late'")
        assert set(tracker.completions) == set(early_ids) | set(late_ids)
        assert all(c == 1 for c in tracker.completions.values())
        assert_consistent(client)


async def test_add_existing_queue_raises_and_changes_nothing(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"default": QueueConfig(max_workers=2)})
    async with running_client(db_url, config, tracker, start=False) as client:
        await client.queues.add("dyn", QueueConfig(max_workers=4))
        for name in ("default", "dyn"):
            with pytest.raises(river.QueueAlreadyAddedError) as err:
                await client.queues.add(name, QueueConfig(max_workers=9))
            assert name in str(err.value)
        await client.start()
        producers = dict(client.queues.producers)
        for name in ("default", "dyn"):
            with pytest.raises(river.QueueAlreadyAddedError):
                await client.queues.add(name, QueueConfig(max_workers=9))
        assert client.queues.producers == producers  # same producer objects, nothing restarted
        assert client.queues.get("default").settings.max_workers == 2
        assert client.queues.get("dyn").settings.max_workers == 4
        assert client.queues.get("dyn").config == QueueConfig(max_workers=4)


@pytest.mark.parametrize(
    "name",
    ["", "Upper", "a__b", "_a", "a_", "-a", "a-", "a b", "a.b", "é", "x" * 65, 7, None],
)
async def test_add_invalid_name_is_rejected_before_anything(db_url: str, name: Any) -> None:
    tracker = Tracker()
    async with (
        open_db(db_url) as db,
        running_client(db_url, config_for(tracker), tracker) as client,
    ):
        before = client.queues.list()
        with pytest.raises(river.ValidationError) as err:
            await client.queues.add(name)
        assert err.value.field == "queue"
        assert client.queues.list() == before
        assert await db.scalar("SELECT count(*) FROM river_queue WHERE name <> 'default'") == 0


async def test_add_accepts_every_valid_name_shape(db_url: str) -> None:
    tracker = Tracker()
    names = ["x" * 64, "a", "0", "a_b-c|d", "q1|2-3_4"]
    async with (
        open_db(db_url) as db,
        running_client(db_url, config_for(tracker), tracker) as client,
    ):
        for name in names:
            await client.queues.add(name, QueueConfig(max_workers=1))
            await insert(client, name, Work(n=1))
        await db.wait_count(len(names), "state = 'completed'")


@pytest.mark.parametrize(
    ("make", "field_name"),
    [
        (lambda: QueueConfig(max_workers=0), "max_workers"),
        (lambda: QueueConfig(max_workers=10_001), "max_workers"),
        (lambda: QueueConfig(max_workers=-3), "max_workers"),
        (lambda: QueueConfig(max_workers=True), "max_workers"),
        (lambda: QueueConfig(max_workers=2.5), "max_workers"),  # type: ignore[arg-type]
        (lambda: QueueConfig(fetch_cooldown=0), "fetch_cooldown"),
        (lambda: QueueConfig(fetch_cooldown=math.nan), "fetch_cooldown"),
        (lambda: QueueConfig(fetch_poll_interval=-1), "fetch_poll_interval"),
        (lambda: QueueConfig(fetch_poll_interval=0.0001), "fetch_poll_interval"),
    ],
)
def test_queue_config_validation_names_the_field(
    make: Callable[[], QueueConfig], field_name: str
) -> None:
    with pytest.raises(river.InvalidConfigError) as err:
        make()
    assert err.value.field == field_name


async def test_add_invalid_config_changes_nothing(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, fetch_cooldown=0.01, fetch_poll_interval=0.05)
    async with open_db(db_url) as db, running_client(db_url, config, tracker) as client:
        before = client.queues.list()
        # Valid alone, invalid once merged with the client's cooldown (poll < cooldown).
        with pytest.raises(river.InvalidConfigError) as err:
            await client.queues.add("q", QueueConfig(fetch_poll_interval=0.005))
        assert "fetch_poll_interval" in err.value.field
        assert "q" in err.value.field
        with pytest.raises(river.InvalidConfigError) as err:
            await client.queues.add("q", QueueConfig(fetch_cooldown=1.0))
        assert "fetch_poll_interval" in err.value.field
        with pytest.raises(river.InvalidConfigError) as err:
            await client.queues.add("q", {"max_workers": 3})  # type: ignore[arg-type]
        assert err.value.field == "config"
        assert client.queues.list() == before
        assert "q" not in client.queues.producers
        assert await queue_row(db, "q") is None
        # Boundaries are accepted.
        info = await client.queues.add("q", QueueConfig(max_workers=10_000, fetch_cooldown=0.001))
        assert info.settings.max_workers == 10_000
        assert info.settings.fetch_cooldown == 0.001


# --- remove ---------------------------------------------------------------------------------


async def test_remove_drain_waits_for_slow_job(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"slow": QueueConfig(max_workers=1), "other": QueueConfig()})
    async with open_db(db_url) as db, running_client(db_url, config, tracker) as client:
        [held] = await insert(client, "slow", Work(n=1, hold=True))
        # Queued behind it (max_workers=1): never fetched.
        queued = await insert(client, "slow", *(Work(n=i) for i in range(10, 13)))
        await wait_for(lambda: tracker.running["slow"] == 1, message="slow job running")

        returned_at: list[float] = []

        async def remove() -> None:
            await client.queues.remove("slow", mode="drain")
            returned_at.append(time.monotonic())

        async with anyio.create_task_group() as tg:
            tg.start_soon(remove)
            await wait_for(
                lambda: client.queues.producers["slow"]._stopping, message="fetching stopped"
            )
            # More work for the queue while it drains: never fetched.
            queued += await insert(client, "slow", Work(n=20))
            # Another queue still works, and the remove is still waiting for the held job.
            await insert(client, "other", Work(n=99))
            await db.wait_count(1, "queue = 'other' AND state = 'completed'")
            assert not returned_at
            assert tracker.running["slow"] == 1
            tracker.release(1)
        assert tracker.completions[held] == 1
        assert tracker.finished_at[held] <= returned_at[0]
        assert tracker.interrupted == []
        # The outcome is persisted by the time remove returns.
        assert (await db.job(held))["state"] == "completed"
        assert "slow" not in client.queues.list()
        assert "slow" not in client.queues.producers
        # Jobs still queued stay untouched, also after several poll ticks (sentinel on another
        # queue inserted afterwards has completed).
        await insert(client, "other", Work(n=98))
        await db.wait_count(2, "queue = 'other' AND state = 'completed'")
        await assert_stays(
            lambda: set(tracker.started_ids("slow")) == {held},
            0.3,  # 6 poll intervals: a leaked producer would have fetched
            message="no job of the removed queue starts",
        )
        for job_id in queued:
            row = await db.job(job_id)
            assert (row["state"], row["attempt"], row["attempted_at"], row["attempted_by"]) == (
                "available",
                0,
                None,
                None,
            )
        assert set(tracker.started_ids("slow")) == {held}


async def test_remove_drain_timeout_cancels_and_restores_attempt(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"slow": QueueConfig(max_workers=2)})
    async with open_db(db_url) as db, running_client(db_url, config, tracker) as client:
        ids = await insert(client, "slow", Work(n=1, hold=True), Work(n=2, hold=True))
        await wait_for(lambda: tracker.running["slow"] == 2, message="both held jobs running")
        rows = [await db.job(i) for i in ids]
        assert all(r["state"] == "running" and r["attempt"] == 1 for r in rows)
        t0 = time.monotonic()
        await client.queues.remove("slow", mode="drain", timeout=0.4)
        elapsed = time.monotonic() - t0
        assert 0.35 <= elapsed < 10, elapsed
        assert sorted(tracker.interrupted) == sorted(ids)
        assert not tracker.completions
        for job_id in ids:
            row = await db.job(job_id)
            assert row["state"] == "available"
            assert row["attempt"] == 0  # the interrupted attempt does not count
            assert not row["errors"]
            assert row["finalized_at"] is None
        assert "slow" not in client.queues.list()


async def test_remove_cancel_returns_running_job_at_once(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"q": QueueConfig(max_workers=1)})
    async with (
        open_db(db_url) as db,
        running_client(db_url, config, tracker, start=False) as client,
    ):
        # A job that already used an attempt: after the interruption it is back to attempt 1.
        [job_id] = await insert(client, "q", Work(n=1, hold=True))
        await db.execute("UPDATE river_job SET attempt = 1 WHERE id = %(id)s", {"id": job_id})
        await client.start()
        await wait_for(lambda: tracker.running["q"] == 1, message="held job running")
        assert (await db.job(job_id))["attempt"] == 2
        queued = await insert(client, "q", Work(n=2))
        t0 = time.monotonic()
        await client.queues.remove("q", mode="cancel")
        assert time.monotonic() - t0 < 5
        assert tracker.interrupted == [job_id]
        row = await db.job(job_id)
        assert (row["state"], row["attempt"]) == ("available", 1)
        row = await db.job(queued[0])
        assert (row["state"], row["attempt"], row["attempted_at"]) == ("available", 0, None)
        # Adding the queue back works the interrupted job (and the queued one) to completion.
        tracker.release_all()
        await client.queues.add("q")
        await db.wait_count(2, "state = 'completed'")
        assert (await db.job(job_id))["attempt"] == 2


async def test_remove_before_start_and_of_missing_queues(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"default": QueueConfig(), "gone": QueueConfig()})
    async with (
        open_db(db_url) as db,
        running_client(db_url, config, tracker, start=False) as client,
    ):
        with pytest.raises(river.RiverError, match="mode"):
            await client.queues.remove("gone", mode="later")  # type: ignore[arg-type]
        await client.queues.remove("gone")
        for call in (
            lambda: client.queues.remove("gone"),
            lambda: client.queues.remove("nope", mode="cancel"),
            lambda: client.queues.update("nope", max_workers=2),
            lambda: client.queues.pause("nope"),
            lambda: client.queues.resume("nope"),
        ):
            with pytest.raises(river.QueueNotFoundError):
                await call()
        with pytest.raises(river.QueueNotFoundError):
            client.queues.get("gone")
        await client.start()
        assert sorted(client.queues.producers) == ["default"]
        assert await queue_row(db, "gone") is None
        for call in (
            lambda: client.queues.remove("gone"),
            lambda: client.queues.update("gone", max_workers=2),
            lambda: client.queues.pause("gone"),
        ):
            with pytest.raises(river.QueueNotFoundError):
                await call()
        assert_consistent(client)


# --- update ---------------------------------------------------------------------------------


async def test_update_grow_adds_slots_at_once_without_interrupting(db_url: str) -> None:
    tracker = Tracker()
    # The poll is 30 s away: only the update itself can trigger the fetch of the new slots.
    config = config_for(tracker, {"g": QueueConfig(max_workers=2, fetch_poll_interval=30)})
    async with running_client(db_url, config, tracker) as client:
        await insert(client, "g", *(Work(n=i, hold=True) for i in range(8)))
        await wait_for(lambda: tracker.running["g"] == 2, message="2 running")
        first = set(tracker.started_ids("g"))
        t0 = time.monotonic()
        info = await client.queues.update("g", max_workers=5)
        assert info.settings.max_workers == 5
        assert info.config.fetch_poll_interval == 30
        await wait_for(lambda: tracker.running["g"] == 5, timeout=10, message="5 running")
        grow_latency = time.monotonic() - t0
        assert grow_latency < 10, grow_latency  # the poll is 30 s away
        assert first <= set(tracker.started_ids("g"))
        assert tracker.interrupted == []
        assert len(tracker.starts) == 5
        assert tracker.peak["g"] == 5
        tracker.release_all()
        await wait_for(lambda: len(tracker.completions) == 8, message="all 8 complete")
        assert tracker.peak["g"] == 5


async def test_update_shrink_while_busy_never_exceeds_either_limit(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"s": QueueConfig(max_workers=4)})
    async with open_db(db_url) as db, running_client(db_url, config, tracker) as client:
        await insert(client, "s", *(Work(n=i, hold=True) for i in range(12)))
        await wait_for(lambda: tracker.running["s"] == 4, message="4 running")
        before = list(tracker.starts)
        t_update = time.monotonic()
        info = await client.queues.update("s", max_workers=2)
        assert info.settings.max_workers == 2
        assert client.queues.producers["s"].settings.max_workers == 2
        # Nothing is interrupted: the 4 running jobs go on.
        assert tracker.running["s"] == 4
        assert tracker.interrupted == []
        # Release the jobs one by one, in start order. After r releases the queue runs
        # min(max(4 - r, 2), 12 - r) jobs: the surplus drains first, then it refills to 2.
        for released in range(1, 13):
            first_running = next(s.n for s in tracker.starts if s.job_id not in tracker.completions)
            tracker.release(first_running)
            expected = min(max(4 - released, 2), 12 - released)
            await wait_for(
                lambda r=released, e=expected: (
                    len(tracker.completions) == r and tracker.running["s"] == e
                ),
                message=lambda: (
                    f"completions={len(tracker.completions)} running={tracker.running['s']}"
                ),
            )
        assert tracker.interrupted == []
        assert all(s.concurrency <= 4 for s in before)
        after = [s for s in tracker.starts if s.at > t_update]
        assert len(after) == 8
        assert max(s.concurrency for s in after) <= 2, [s.concurrency for s in after]
        assert tracker.peak["s"] == 4
        await db.wait_count(12, "state = 'completed'")


async def test_update_none_resets_to_client_default(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(
        tracker,
        {"static": QueueConfig()},
        max_workers=7,
        fetch_cooldown=0.01,
        fetch_poll_interval=0.2,
    )
    async with running_client(db_url, config, tracker, start=False) as client:
        # Static queue: everything inherited from the client's Config.
        s = client.queues.get("static").settings
        assert (s.max_workers, s.fetch_cooldown, s.fetch_poll_interval) == (7, 0.01, 0.2)
        info = await client.queues.add("q", QueueConfig(max_workers=3, fetch_poll_interval=0.5))
        s = info.settings
        assert (s.max_workers, s.fetch_cooldown, s.fetch_poll_interval) == (3, 0.01, 0.5)
        # Before start, update changes the config the producer will start with.
        info = await client.queues.update("q", max_workers=2)
        assert info.settings.max_workers == 2
        assert info.settings.fetch_poll_interval == 0.5
        await client.start()
        assert client.queues.producers["q"].settings.max_workers == 2
        await insert(client, "q", *(Work(n=i, hold=True) for i in range(10)))
        await wait_for(lambda: tracker.running["q"] == 2, message="2 running")

        # Only the fields given change; None resets to the client default (7).
        info = await client.queues.update("q", max_workers=None)
        assert info.config == QueueConfig(max_workers=None, fetch_poll_interval=0.5)
        s = info.settings
        assert (s.max_workers, s.fetch_cooldown, s.fetch_poll_interval) == (7, 0.01, 0.5)
        assert client.queues.producers["q"].settings == s
        await wait_for(lambda: tracker.running["q"] == 7, message="7 running (client default)")
        info = await client.queues.update("q", fetch_poll_interval=None, fetch_cooldown=0.02)
        s = info.settings
        assert (s.max_workers, s.fetch_cooldown, s.fetch_poll_interval) == (7, 0.02, 0.2)
        info = await client.queues.update("q", fetch_cooldown=None)
        assert info.settings.fetch_cooldown == 0.01
        assert info.config == QueueConfig()
        # Library defaults when neither QueueConfig nor Config sets a field.
        plain = river.Config(workers=make_workers(Tracker())).resolve(QueueConfig())
        assert (plain.max_workers, plain.fetch_poll_interval) == (100, 1.0)
        assert tracker.interrupted == []


async def test_update_invalid_changes_nothing(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"q": QueueConfig(max_workers=3)}, fetch_cooldown=0.01)
    async with running_client(db_url, config, tracker) as client:
        producer = client.queues.producers["q"]
        before_info = client.queues.get("q")
        for kwargs, field_name in [
            ({"max_workers": 0}, "max_workers"),
            ({"max_workers": 10_001}, "max_workers"),
            ({"max_workers": "4"}, "max_workers"),
            ({"fetch_cooldown": 0}, "fetch_cooldown"),
            ({"fetch_poll_interval": -1.0}, "fetch_poll_interval"),
            ({"fetch_poll_interval": 0.005}, "fetch_poll_interval"),  # < client cooldown
            ({"max_workers": 5, "fetch_poll_interval": 0.005}, "fetch_poll_interval"),
        ]:
            with pytest.raises(river.InvalidConfigError) as err:
                await client.queues.update("q", **kwargs)
            assert field_name in err.value.field, (kwargs, err.value.field)
            assert client.queues.get("q") == before_info
            assert client.queues.producers["q"] is producer
            assert producer.settings == before_info.settings
        info = await client.queues.update("q", max_workers=10_000)
        assert info.settings.max_workers == 10_000


async def test_an_update_whose_caller_gives_up_still_reaches_the_producer(db_url: str) -> None:
    """The caller cancelled while the producer waits for a fetch in flight (here: its fetch
    lock held): the new config was recorded and the producer stayed on the old settings."""
    tracker = Tracker()
    config = config_for(tracker, {"q": QueueConfig(max_workers=3)})
    async with running_client(db_url, config, tracker) as client:
        producer = client.queues.producers["q"]
        await producer._fetch_lock.acquire()  # a fetch in flight, for 0.5 s

        async def fetch_ends() -> None:
            await anyio.sleep(0.5)
            producer._fetch_lock.release()

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch_ends)
            with anyio.move_on_after(0.2):
                await client.queues.update("q", max_workers=5)
        await wait_for(lambda: producer.settings.max_workers == 5, message="applied")
        info = client.queues.get("q")
        assert info.config.max_workers == info.settings.max_workers == 5


async def test_other_queues_keep_working_during_update_and_remove(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"a": QueueConfig(max_workers=3), "b": QueueConfig(max_workers=2)})
    async with running_client(db_url, config, tracker) as client:
        await insert(client, "a", *(Work(n=i, hold=True) for i in range(6)))
        await wait_for(lambda: tracker.running["a"] == 3, message="a busy")
        stop_flow = anyio.Event()

        async def steady_flow_on_b() -> None:
            i = 1000
            while not stop_flow.is_set():
                await insert(client, "b", Work(n=i, sleep=0.002))
                i += 1
                await anyio.sleep(0.01)

        def b_done_between(t0: float, t1: float) -> list[float]:
            return sorted(
                t
                for j, t in tracker.finished_at.items()
                if tracker.finished_queue[j] == "b" and t0 <= t <= t1
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(steady_flow_on_b)
            await wait_for(lambda: len(b_done_between(0, math.inf)) >= 5, message="b flowing")

            # Many updates of a while b flows (at least 30, and until b has completed five
            # jobs meanwhile: on a busy machine 30 updates can all come within one of b's).
            t0 = time.monotonic()
            k = 0
            while k < 30 or len(b_done_between(t0, math.inf)) < 5:
                await client.queues.update("a", max_workers=1 + k % 5)
                await anyio.sleep(0.01)
                k += 1
                assert time.monotonic() - t0 < 30, "b completed under five jobs in 30 s of updates"

            # Remove a (drain): it waits for a's held jobs, released once b has completed ten
            # jobs since the remove began.
            released: list[float] = []

            async def release_once_b_flowed(since: float) -> None:
                await wait_for(
                    lambda: len(b_done_between(since, math.inf)) >= 10,
                    message="b completes jobs while a drains",
                )
                released.append(time.monotonic())
                tracker.release_all()

            t0 = time.monotonic()
            tg.start_soon(release_once_b_flowed, t0)
            await client.queues.remove("a", mode="drain")
            t1 = time.monotonic()
            assert released, "remove returned before a's held jobs were released"
            done = b_done_between(t0, t1)
            assert len(done) >= 10, f"b completed only {len(done)} jobs while a drained"
            gaps = [y - x for x, y in zip([t0, *done], [*done, t1], strict=True)]
            # Not blocked by the drain (b's ten jobs release it); no long stall either. The
            # bound leaves room for a busy machine's commits.
            assert max(gaps) < 2.0, f"b stalled for {max(gaps):.3f}s while a was removed"
            stop_flow.set()
        assert tracker.interrupted == []


# --- pause / resume -------------------------------------------------------------------------


async def test_pause_and_resume_through_queue_manager(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"a": QueueConfig(), "b": QueueConfig()})
    async with (
        open_db(db_url) as db,
        running_client(db_url, config, tracker, start=False) as client,
    ):
        # Before start: persisted at once; the producer starts paused.
        await client.queues.pause("a")
        row = await queue_row(db, "a")
        assert row is not None
        assert row["paused_at"] is not None
        await client.start()
        assert client.queues.get("a").paused is True
        ids = await insert(client, "a", *(Work(n=i) for i in range(3)))
        await insert(client, "b", Work(n=100))
        await db.wait_count(1, "queue = 'b' AND state = 'completed'")
        await assert_stays(
            lambda: tracker.started_ids("a") == [],
            0.3,  # several poll ticks
            message="a paused queue fetches nothing",
        )

        await client.queues.resume("a")
        assert (await queue_row(db, "a") or {})["paused_at"] is None
        assert client.queues.get("a").paused is False
        await db.wait_count(3, "queue = 'a' AND state = 'completed'", timeout=5)

        # While running: pause keeps running jobs going and fetches nothing more.
        [held] = await insert(client, "a", Work(n=10, hold=True))
        await wait_for(lambda: tracker.running["a"] == 1, message="held job running")
        await client.queues.pause("a")
        assert client.queues.get("a").paused
        row = await queue_row(db, "a")
        assert row is not None
        assert row["paused_at"] is not None
        late = await insert(client, "a", Work(n=11))
        tracker.release(10)
        await wait_for(lambda: tracker.completions[held] == 1, message="held job completes")
        await insert(client, "b", Work(n=101))
        await db.wait_count(2, "queue = 'b' AND state = 'completed'")
        await assert_stays(
            lambda: db.in_state(late[0], "available"),
            0.3,  # several poll ticks
            message="a paused queue fetches nothing",
        )
        # Pausing twice is harmless; resume wakes the producer at once.
        await client.queues.pause("a")
        await client.queues.resume("a")
        await db.wait_count(1, f"id = {late[0]} AND state = 'completed'", timeout=10)
        assert set(tracker.completions) >= set(ids)


# --- events and log lines --------------------------------------------------------------------


QUEUE_KINDS = (
    EventKind.QUEUE_ADDED,
    EventKind.QUEUE_UPDATED,
    EventKind.QUEUE_PAUSED,
    EventKind.QUEUE_RESUMED,
    EventKind.QUEUE_REMOVED,
)


async def test_queue_events_and_log_lines(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="river")
    tracker = Tracker()
    callback: list[river.Event] = []
    config = config_for(tracker, {"default": QueueConfig()}, on_event=callback.append)
    async with running_client(db_url, config, tracker) as client:
        with client.subscribe(*QUEUE_KINDS) as sub:
            caplog.clear()
            await client.queues.add("ev", QueueConfig(max_workers=2))
            await client.queues.update("ev", max_workers=5)
            await client.queues.pause("ev")
            await client.queues.resume("ev")
            await client.queues.remove("ev", mode="cancel")
            got = [await sub.get(timeout=5) for _ in range(5)]
            # The pause/resume notifications coming back to this client raise no duplicates:
            # nothing more arrives within their round trip.
            with pytest.raises(TimeoutError):
                await sub.get(timeout=0.35)
            assert sub.dropped == 0
        queue_events = [e for e in callback if e.kind in QUEUE_KINDS]
        for events in (got, queue_events):
            assert [(e.kind, e.queue) for e in events] == [(k, "ev") for k in QUEUE_KINDS]
            updated = events[1]
            assert updated.details == {
                "max_workers": 5,
                "fetch_cooldown": config.fetch_cooldown,
                "fetch_poll_interval": config.fetch_poll_interval,
            }
            assert events[4].details == {"mode": "cancel"}
            assert all(e.job is None for e in events)
        lines = [
            r.getMessage()
            for r in caplog.records
            if r.name == "river.client"
            and r.levelno == logging.INFO
            and "queue ev" in r.getMessage()
        ]
        assert len(lines) == 5, lines
        for line, word in zip(
            lines, ["added", "updated", "paused", "resumed", "removed"], strict=True
        ):
            assert line.startswith(f"queue ev {word}"), line
        assert "max_workers=2" in lines[0]
        assert "max_workers=5" in lines[1]
        # A failed change logs nothing and raises no event.
        caplog.clear()
        n = len(callback)
        with pytest.raises(river.QueueNotFoundError):
            await client.queues.update("ev", max_workers=3)
        assert len(callback) == n
        assert not [r for r in caplog.records if r.name == "river.client"]


# --- pause from another client -----------------------------------------------------------------


@dataclass
class PauseObservation:
    at: float = 0.0
    fetch_in_flight: bool = False
    fetched: int = 0
    resumed_at: float = 0.0


async def _pause_from_other_client(db_url: str, *, poll_only: bool, poll_interval: float) -> float:
    """Client one works queue ``a`` under a steady flow of inserts; client two pauses ``a``.
    Returns the latency until client one observed the pause (its queue_paused event)."""
    tracker = Tracker()
    obs = PauseObservation()
    holder: list[river.AsyncClient] = []

    def on_event(event: river.Event) -> None:
        if event.queue != "a":
            return
        if event.kind == EventKind.QUEUE_PAUSED and not obs.at:
            producer = holder[0].queues.producers["a"]
            obs.at = time.monotonic()
            obs.fetch_in_flight = producer._fetch_lock.locked()
            obs.fetched = producer.fetched
        elif event.kind == EventKind.QUEUE_RESUMED and not obs.resumed_at:
            obs.resumed_at = time.monotonic()

    config = config_for(
        tracker,
        {"a": QueueConfig(max_workers=2), "b": QueueConfig()},
        fetch_poll_interval=poll_interval,
        poll_only=poll_only,
        on_event=on_event,
    )
    async with (
        open_db(db_url) as db,
        running_client(db_url, config, tracker) as one,
        river.AsyncClient(db_url) as two,
    ):
        holder.append(one)
        stop_flow = anyio.Event()
        after_pause: list[int] = []

        async def flow() -> None:
            i = 0
            while not stop_flow.is_set():
                observed = bool(obs.at)
                [job_id] = await insert(two, "a", Work(n=i, sleep=0.005))
                if observed:
                    after_pause.append(job_id)
                i += 1
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as tg:
            tg.start_soon(flow)
            await wait_for(lambda: len(tracker.completions) >= 10, message="a flowing")
            t0 = time.monotonic()
            await two.queue_pause("a")
            await wait_for(lambda: obs.at, timeout=30, message="client one observes the pause")
            latency = obs.at - t0
            assert one.queues.get("a").paused
            # Nothing new is fetched for a while (b, unpaused, completes a sentinel meanwhile).
            await insert(two, "b", Work(n=-1))
            await db.wait_count(1, "queue = 'b' AND state = 'completed'", timeout=10)
            await wait_for(lambda: len(after_pause) >= 5, message="inserts after the pause")
            await assert_stays(
                lambda: not set(tracker.started_ids("a")) & set(after_pause),
                3 * min(poll_interval, 0.25) + 0.2,  # three poll ticks
                message="no job inserted after the pause starts",
            )
            stop_flow.set()
        producer = one.queues.producers["a"]
        # At most the fetch in flight when the pause was observed may still have started jobs.
        allowed = 2 if obs.fetch_in_flight else 0
        assert producer.fetched - obs.fetched <= allowed
        started = set(tracker.started_ids("a"))
        assert not started & set(after_pause), "a job inserted after the pause started"
        assert [await db.state(j) for j in after_pause] == ["available"] * len(after_pause)

        # Resume from the other client: client one picks the queue up again and drains it.
        t1 = time.monotonic()
        await two.queue_resume("a")
        await wait_for(lambda: obs.resumed_at, timeout=30, message="client one observes the resume")
        assert obs.resumed_at - t1 < latency + 5
        await db.wait_count(0, "queue = 'a' AND state <> 'completed'", timeout=30)
        assert not one.queues.get("a").paused
        assert all(c == 1 for c in tracker.completions.values())
    return latency


async def test_pause_from_second_client_reaches_first_through_notification(db_url: str) -> None:
    # The poll is 30 s away, so only the river_control notification can explain a fast pause.
    latency = await _pause_from_other_client(db_url, poll_only=False, poll_interval=30.0)
    print(f"\npause latency through notification: {latency * 1000:.1f} ms")
    assert latency < 10.0, latency  # room for a busy machine; the poll is 30 s away


async def test_pause_from_second_client_reaches_poll_only_client_within_a_tick(db_url: str) -> None:
    latency = await _pause_from_other_client(db_url, poll_only=True, poll_interval=0.25)
    print(f"\npause latency in poll-only mode (poll interval 0.25 s): {latency * 1000:.1f} ms")
    # One tick is 0.25-0.275 s; the bound is generous for a loaded CI machine (without the
    # poll's check of the queue's row the pause would never be seen).
    assert latency < 0.25 * 1.1 + 5.0, latency


# --- safety under concurrency ------------------------------------------------------------------


async def test_concurrent_adds_removes_updates_with_start_and_stop(db_url: str) -> None:
    tracker = Tracker()
    callback: list[river.Event] = []
    config = config_for(tracker, {"default": QueueConfig()}, on_event=callback.append)
    names = [f"c{i}" for i in range(25)]
    before = current_tasks()
    async with open_db(db_url) as db:
        client = river.AsyncClient(db_url, config)
        try:
            await client.start()
            for round_ in range(3):
                outcomes: list[tuple[str, str, bool]] = []

                async def call(
                    kind: str, name: str, outcomes: list[tuple[str, str, bool]] = outcomes
                ) -> None:
                    try:
                        if kind == "add":
                            await client.queues.add(name, QueueConfig(max_workers=2))
                        elif kind == "remove":
                            await client.queues.remove(
                                name, mode="cancel" if int(name[1:]) % 2 else "drain"
                            )
                        elif kind == "update":
                            await client.queues.update(name, max_workers=3)
                        elif kind == "pause":
                            await client.queues.pause(name)
                        else:
                            await client.queues.resume(name)
                        outcomes.append((kind, name, True))
                    except river.QueueAlreadyAddedError:
                        assert kind == "add"
                        outcomes.append((kind, name, False))
                    except river.QueueNotFoundError:
                        assert kind != "add"
                        outcomes.append((kind, name, False))

                present_before = set(client.queues.configs)
                async with anyio.create_task_group() as tg:
                    for i in range(50):
                        tg.start_soon(call, "add" if i % 2 == 0 else "remove", names[(i * 7) % 25])
                        if i % 10 == 3:
                            tg.start_soon(call, "update", names[i % 25])
                            tg.start_soon(call, "pause", names[(i + 1) % 25])
                            tg.start_soon(call, "resume", names[(i + 1) % 25])
                        if i == 10 + round_:
                            tg.start_soon(client.stop)
                        if i == 20:
                            tg.start_soon(client.start)
                        if i == 35 and round_ == 1:
                            tg.start_soon(client.stop_and_cancel)
                assert_consistent(client)
                # Per name, successful adds and removes alternate: the end state follows.
                for name in names:
                    adds = sum(1 for k, n, ok in outcomes if n == name and k == "add" and ok)
                    removes = sum(1 for k, n, ok in outcomes if n == name and k == "remove" and ok)
                    had = name in present_before
                    assert adds - removes == (name in client.queues.configs) - had, name
                await client.start()
                assert_consistent(client)
                # Every queue present works its jobs (resume any left paused first).
                for name in client.queues.configs:
                    await client.queues.resume(name)
                present = sorted(client.queues.configs)
                await client.insert_many(
                    [(Work(n=round_), river.InsertOpts(queue=q)) for q in present]
                )
                await db.wait_count(
                    0, f"state <> 'completed' AND queue IN ({','.join(repr(q) for q in present)})"
                )
            added = sum(1 for e in callback if e.kind == EventKind.QUEUE_ADDED)
            removed = sum(1 for e in callback if e.kind == EventKind.QUEUE_REMOVED)
            assert added - removed == len(client.queues.configs) - 1
            await client.stop()
            assert_consistent(client)
        finally:
            tracker.release_all()
            await client.close()
    assert all(c == 1 for c in tracker.completions.values())

    def leftover() -> set[asyncio.Task[Any]]:
        return current_tasks() - before

    await wait_for(lambda: not leftover(), timeout=5, message=lambda: f"tasks left: {leftover()}")


async def test_changes_wait_for_a_stop_in_progress(db_url: str) -> None:
    """A stop holds the lock until every producer is done: a change issued meanwhile waits and
    then applies to the stopped client (and the client is never half-stopped)."""
    tracker = Tracker()
    config = config_for(tracker, {"a": QueueConfig()})
    async with running_client(db_url, config, tracker) as client:
        await insert(client, "a", Work(n=1, hold=True))
        await wait_for(lambda: tracker.running["a"] == 1, message="held")
        order: list[str] = []

        async def stop() -> None:
            await client.stop()
            order.append("stopped")

        async def add() -> None:
            info = await client.queues.add("b")
            order.append("added")
            assert not info.active

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop)
            await wait_for(lambda: client._state == "stopping", message="stopping")
            tg.start_soon(add)
            await assert_stays(
                lambda: order == [] and client._state == "stopping",
                0.1,
                message="the add waits for the stop in progress",
            )
            tracker.release_all()
        assert order == ["stopped", "added"]
        assert_consistent(client)
        await client.start()
        assert sorted(client.queues.producers) == ["a", "b"]


# --- idle cost of 2,000 queues --------------------------------------------------------------------


class _CountingCursor(psycopg.AsyncCursor[Any]):
    count = 0

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        _CountingCursor.count += 1
        return await super().execute(query, params, **kwargs)


async def _counting(conn: psycopg.AsyncConnection[Any]) -> None:
    conn.cursor_factory = _CountingCursor


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@pytest.mark.slow  # ~10 s: 2,000 queues, then a 5 s measurement window
async def test_idle_cost_of_2000_queues_is_flat(db_url: str) -> None:
    """2,000 idle queues on one client: the fallback poll is one query per tick for all of
    them, not one per queue (which would be ~2,000 queries/s at a 1 s poll interval)."""
    n_queues = 2000
    tracker = Tracker()
    config = river.Config(
        workers=make_workers(tracker),
        queues={"default": QueueConfig()},
        fetch_poll_interval=1.0,
    )
    pool = AsyncConnectionPool(
        db_url,
        min_size=1,
        max_size=10,
        open=False,
        kwargs={"autocommit": True},
        configure=_counting,
    )
    client = river.AsyncClient(pool, config)
    async with pool, open_db(db_url) as db:
        try:
            await client.start()
            # Memory: tracemalloc over the first 200 adds (tracing slows adding down), RSS
            # over all 2,000.
            rss0 = _rss_kib()
            tracemalloc.start()
            snap0 = tracemalloc.take_snapshot()
            for i in range(200):
                await client.queues.add(f"idle{i}")
            snap1 = tracemalloc.take_snapshot()
            tracemalloc.stop()
            traced = sum(d.size_diff for d in snap1.compare_to(snap0, "filename")) / 200
            t0 = time.monotonic()
            for i in range(200, n_queues):
                await client.queues.add(f"idle{i}")
            add_time = (time.monotonic() - t0) / (n_queues - 200)
            rss = (_rss_kib() - rss0) * 1024 / n_queues
            assert len(client.queues.producers) == n_queues + 1

            # Flush the per-backend statistics of the burst of adds: closing the pool's
            # connections makes their backends report before exiting.
            await pool.drain()

            async def xact_commit() -> int:
                return int(
                    await db.scalar(
                        "SELECT xact_commit FROM pg_stat_database"
                        " WHERE datname = current_database()"
                    )
                )

            # Measure from the end of a poll tick that began after the drain.
            default = client.queues.producers["default"]
            ticks = default.polled
            await wait_for(
                lambda: default.polled >= ticks + 2,
                timeout=5,
                message="a poll tick after the drain",
            )
            c0 = await xact_commit()
            q0 = _CountingCursor.count
            t0 = time.monotonic()
            await anyio.sleep(5)  # the measurement window (a rate, not a wait for an event)
            c1 = await xact_commit()
            q1 = _CountingCursor.count
            elapsed = time.monotonic() - t0
            server_rate = (c1 - c0 - 1) / elapsed  # minus this measurement's own query
            client_rate = (q1 - q0) / elapsed
            print(
                f"\n{n_queues} idle queues: {server_rate:.1f} transactions/s (pg_stat_database), "
                f"{client_rate:.1f} queries/s from the client's pool; "
                f"memory per queue: {traced / 1024:.1f} KiB traced, {rss / 1024:.1f} KiB RSS; "
                f"add: {add_time * 1000:.2f} ms/queue"
            )
            assert client_rate < 10, client_rate
            assert server_rate < 50, server_rate
            t0 = time.monotonic()
            for i in range(n_queues):
                await client.queues.remove(f"idle{i}")
            print(f"remove: {(time.monotonic() - t0) / n_queues * 1000:.2f} ms/queue")
            assert sorted(client.queues.producers) == ["default"]
        finally:
            await client.stop()


async def test_poll_only_new_and_updated_poll_intervals_apply_at_once(db_url: str) -> None:
    """Without notifications only the poll finds new jobs: a queue added with (or updated to) a
    short poll interval is polled at that interval at once, even when every other queue of the
    client polls every 30 s."""
    tracker = Tracker()
    config = config_for(tracker, {"slow": QueueConfig()}, poll_only=True, fetch_poll_interval=30)
    async with open_db(db_url) as db, running_client(db_url, config, tracker) as client:
        s = signals(client)
        await s.polled.wait_for(lambda names: "slow" in names)  # start-up poll done

        await client.queues.add("fast", QueueConfig(fetch_poll_interval=0.05))
        # A new producer does not fetch on its own: the poller checks it at once. Insert after
        # that first check, so only the short interval can find the job in time.
        await s.polled.wait_for(lambda names: "fast" in names)
        await insert(client, "fast", Work(n=1))
        await db.wait_count(1, "queue = 'fast' AND state = 'completed'", timeout=3)

        await client.queues.add("later", QueueConfig(max_workers=2))
        await s.polled.wait_for(lambda names: "later" in names)
        s.fetched.drain()
        await client.queues.update("later", fetch_poll_interval=0.05)
        # The restarted producer's own fetch is over (it found nothing): only the poll is left.
        await s.fetched.wait_for(("later", 0))
        await insert(client, "later", Work(n=2))
        await db.wait_count(1, "queue = 'later' AND state = 'completed'", timeout=3)


async def test_pause_all_queues_from_another_client(db_url: str) -> None:
    tracker = Tracker()
    events: list[river.Event] = []
    config = config_for(tracker, {"a": QueueConfig(), "b": QueueConfig()}, on_event=events.append)
    async with (
        open_db(db_url) as db,
        running_client(db_url, config, tracker) as one,
        river.AsyncClient(db_url) as two,
    ):
        await two.queue_pause("*")
        await wait_for(
            lambda: {e.queue for e in events if e.kind == EventKind.QUEUE_PAUSED} == {"a", "b"},
            message="both queues paused",
        )
        assert all(info.paused for info in one.queues.list().values())
        await insert(two, "a", Work(n=1))
        await insert(two, "b", Work(n=2))
        await assert_stays(lambda: tracker.starts == [], 0.3, message="paused queues start nothing")
        await two.queue_resume("*")
        await db.wait_count(2, "state = 'completed'", timeout=5)
        assert {e.queue for e in events if e.kind == EventKind.QUEUE_RESUMED} == {"a", "b"}


async def test_a_poll_in_flight_never_reverts_a_local_pause(db_url: str) -> None:
    """A poll that read river_queue just before this client paused (or resumed) a queue must
    not undo the change when its result arrives: no spurious resume, no fetch while paused.
    Poll-only with a 2 ms poll keeps a poll in flight almost all the time."""
    tracker = Tracker()
    events: list[tuple[str, str]] = []
    config = config_for(
        tracker,
        {"a": QueueConfig()},
        poll_only=True,
        fetch_cooldown=0.001,
        fetch_poll_interval=0.002,
        on_event=lambda e: events.append((e.kind, e.queue)),
    )
    async with running_client(db_url, config, tracker) as client:
        producer = client.queues.producers["a"]
        for i in range(60):
            await client.queues.pause("a")
            await assert_stays(
                lambda: producer.paused, 0.01, interval=0.002, message=f"pause {i} kept"
            )
            await client.queues.resume("a")
            await assert_stays(
                lambda: not producer.paused, 0.01, interval=0.002, message=f"resume {i} kept"
            )
        assert events == [(EventKind.QUEUE_PAUSED, "a"), (EventKind.QUEUE_RESUMED, "a")] * 60


# --- docs -------------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "queues.md"


def test_docs_worked_example_runs_and_prints_what_the_docs_say(db_url: str, tmp_path: Path) -> None:
    text = DOCS.read_text()
    after = text.split("<!-- worked-example -->", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    expected = after.split("```text\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "worked_example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == expected
