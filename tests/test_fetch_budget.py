"""The client's fetch budget (river/_producer.py JobBudget, ``Config.completer_max_backlog``):
fetches are sized to the room left, producers waiting for room are served in arrival order,
and many busy queues neither pile jobs up in memory nor starve one another."""

from __future__ import annotations

import time
from typing import Any, cast

import anyio
import pytest
from helpers import open_db, wait_for
from test_queues import Tracker, Work, config_for, insert, running_client

from river import QueueConfig
from river._producer import JobBudget, Producer


class FakeProducer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


def producers(*names: str) -> list[Any]:
    return [FakeProducer(n) for n in names]


def test_fetches_are_sized_to_the_room_left() -> None:
    backlog = [0]
    budget = JobBudget(10, lambda: backlog[0])
    (a,) = producers("a")
    assert budget.acquire(cast(Producer, a), 4) == 4
    assert budget.room == 6
    backlog[0] = 3
    assert budget.acquire(cast(Producer, a), 100) == 3  # what is left, not what was asked
    assert budget.room == 0
    budget.release(4)
    budget.release(3)
    assert budget.room == 7  # the backlog still counts


def test_waiting_producers_are_served_first_come_first_served() -> None:
    backlog = [10]
    budget = JobBudget(10, lambda: backlog[0])
    a, b, c = producers("a", "b", "c")
    assert budget.acquire(cast(Producer, a), 5) == 0
    assert budget.acquire(cast(Producer, b), 5) == 0
    assert budget.waiting == 2
    backlog[0] = 0
    # Room again, but c arrived after a and b: it queues up instead of jumping the line.
    assert budget.acquire(cast(Producer, c), 5) == 0
    assert budget.acquire(cast(Producer, b), 5) == 0  # b keeps its place behind a
    budget.wake_next()
    assert (a.woken, b.woken, c.woken) == (1, 0, 0)
    # a takes 5 of 10 and, with room left, wakes the next in line.
    assert budget.acquire(cast(Producer, a), 5) == 5
    assert (b.woken, c.woken) == (1, 0)
    assert budget.acquire(cast(Producer, b), 5) == 5
    assert budget.room == 0
    assert c.woken == 0  # no room: nobody woken
    budget.release(5)
    assert c.woken == 1
    assert budget.acquire(cast(Producer, c), 9) == 5
    assert budget.waiting == 0


def test_a_leaving_head_passes_its_turn_on() -> None:
    budget = JobBudget(10, lambda: 10)
    a, b = producers("a", "b")
    budget.acquire(cast(Producer, a), 1)
    budget.acquire(cast(Producer, b), 1)
    budget.capacity = 20  # room appears; the head (a) then leaves (paused, stopping, full)
    budget.leave(cast(Producer, a))
    assert b.woken == 1
    assert budget.is_waiting(cast(Producer, b))
    assert not budget.is_waiting(cast(Producer, a))
    budget.leave(cast(Producer, a))  # leaving twice is harmless
    assert budget.waiting == 1


@pytest.mark.anyio
async def test_many_busy_queues_share_a_small_budget_fairly(db_url: str) -> None:
    """10 queues of 100 workers, 100 no-op jobs each, room for 20: jobs leave the database in
    small fetches, all queues are served from the start, and every job completes once."""
    tracker = Tracker()
    names = [f"b{i}" for i in range(10)]
    config = config_for(
        tracker,
        {n: QueueConfig(max_workers=100) for n in names},
        completer_max_backlog=20,
    )
    peak_running = 0
    async with running_client(db_url, config, tracker, start=False) as client:
        for name in names:
            await insert(client, name, *(Work(n=i) for i in range(100)))
        async with open_db(db_url) as db:
            await client.start()
            deadline = time.monotonic() + 60
            while len(tracker.completions) < 1000 and time.monotonic() < deadline:
                running = await db.scalar("SELECT count(*) FROM river_job WHERE state = 'running'")
                peak_running = max(peak_running, running)
                await anyio.sleep(0.002)
        await wait_for(lambda: len(tracker.completions) == 1000, timeout=30)
    assert set(tracker.completions.values()) == {1}
    # Without the budget each queue would take its 100 jobs at once (1,000 running rows).
    # With it: the fetches in progress, the outcomes waiting to be written, and the jobs of
    # the last few fetches that have not run yet.
    assert peak_running <= 100, peak_running
    # First come, first served: every queue started before any queue had finished half.
    first_start = {}
    started: dict[str, int] = {}
    half_done_at = None
    for index, start in enumerate(tracker.starts):
        first_start.setdefault(start.queue, index)
        started[start.queue] = started.get(start.queue, 0) + 1
        if half_done_at is None and started[start.queue] == 50:
            half_done_at = index
    assert half_done_at is not None
    assert max(first_start.values()) < half_done_at, (first_start, half_done_at)


@pytest.mark.anyio
async def test_a_queue_waiting_for_room_can_be_updated_paused_and_removed_at_once(
    db_url: str,
) -> None:
    """A producer in line for room holds no lock: update, pause and remove of its queue
    return at once even while the budget stays full (outcomes written only every 5 s)."""
    tracker = Tracker()
    config = config_for(
        tracker,
        {"lined": QueueConfig(max_workers=10)},
        completer_max_backlog=1,
        completer_flush_interval=5.0,
    )
    async with running_client(db_url, config, tracker) as client:
        await insert(client, "lined", *(Work(n=i) for i in range(5)))
        # One job runs and finishes; its unwritten outcome fills the budget, so the producer
        # waits in line for the completer's next write, seconds away.
        await wait_for(lambda: len(tracker.completions) >= 1, timeout=10)
        assert client._runtime is not None
        budget = client._runtime.budget
        producer = client.queues.producers["lined"]
        await wait_for(lambda: budget.is_waiting(producer), timeout=10)
        with anyio.fail_after(3.0):  # not the 5 s until the completer's next write
            await client.queues.update("lined", max_workers=3)
            await client.queues.pause("lined")
            await client.queues.resume("lined")
        with anyio.fail_after(6.0):  # its one outcome is written first (next flush)
            await client.queues.remove("lined")
        assert budget.waiting == 0
