"""Load-driven queues (issue 19, docs/queues.md): autoscaled concurrency between min_workers
and max_workers, and rate limits that hold across every client (a token bucket in the queue's
river_queue row, taken in the fetch statement). The decision rules are unit-tested on a fake
clock; the rest runs real clients (and, for the cluster-wide limit, two processes) on a real
Postgres. Rate limits are asserted as upper bounds over windows of the database's own clock
(attempted_at), which a slow machine cannot break."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import anyio
import psycopg
import pytest
from helpers import assert_stays, open_db, started_client, wait_for
from test_queues import Tracker, Work, config_for, insert, running_client

import river
from river import QueueConfig, RateLimit
from river._autoscale import SHRINK_AFTER, ScaleState, decide
from river.testing import signals

pytestmark = pytest.mark.anyio

TESTS_DIR = Path(__file__).resolve().parent


# --- pure rules -------------------------------------------------------------------------------


def test_rate_limit_values() -> None:
    limit = RateLimit(jobs=50, per=timedelta(seconds=1))
    assert (limit.rate, limit.capacity, str(limit)) == (50.0, 13, "50/1s")
    assert RateLimit(jobs=1, per=3600).capacity == 1
    assert RateLimit(jobs=10, per=1, burst=10).capacity == 10
    for kwargs, field in [
        ({"jobs": 0}, "rate_limit.jobs"),
        ({"jobs": 2.5}, "rate_limit.jobs"),
        ({"jobs": True}, "rate_limit.jobs"),
        ({"jobs": 5, "per": 0}, "rate_limit.per"),
        ({"jobs": 5, "per": 90_000}, "rate_limit.per"),
        ({"jobs": 5, "per": "soon"}, "rate_limit.per"),
        ({"jobs": 5, "burst": 0}, "rate_limit.burst"),
    ]:
        with pytest.raises(river.InvalidConfigError) as info:
            RateLimit(**kwargs)
        assert info.value.field == field, kwargs


def test_queue_config_autoscale_rules() -> None:
    config = river.Config(max_workers=20)
    settings = config.resolve(QueueConfig(min_workers=2), "q")
    assert settings.autoscaled
    assert (settings.min_workers, settings.max_workers) == (2, 20)
    assert not config.resolve(QueueConfig(min_workers=20), "q").autoscaled
    with pytest.raises(river.InvalidConfigError) as info:
        config.resolve(QueueConfig(min_workers=30), "q")
    assert info.value.field == "queues['q'].min_workers"
    with pytest.raises(river.InvalidConfigError):
        QueueConfig(min_workers=0)
    with pytest.raises(river.InvalidConfigError):
        QueueConfig(rate_limit=50)  # type: ignore[arg-type]


def _run(
    ticks: int,
    *,
    target: int,
    running: Any,
    backlogged: Any,
    brake: bool = False,
    state: ScaleState | None = None,
    start: float = 0.0,
) -> tuple[list[int], ScaleState]:
    state = state or ScaleState()
    targets = []
    for i in range(ticks):
        now = start + i * 0.25
        target = decide(
            target=target,
            min_workers=1,
            max_workers=50,
            running=running(target) if callable(running) else running,
            backlogged=backlogged(i) if callable(backlogged) else backlogged,
            brake=brake,
            now=now,
            state=state,
        )
        targets.append(target)
    return targets, state


def test_a_burst_grows_fast_and_an_idle_queue_shrinks_slowly() -> None:
    targets, state = _run(8, target=1, running=lambda t: t, backlogged=True)
    assert targets[:6] == [2, 4, 8, 16, 32, 50]  # 1.5 s to the maximum
    assert targets[-1] == 50
    # The backlog is gone and nothing runs: nothing before SHRINK_AFTER, then halvings.
    idle, state = _run(
        int(40 / 0.25), target=50, running=0, backlogged=False, state=state, start=2.0
    )
    first_shrink = next(i for i, t in enumerate(idle) if t < 50) * 0.25
    assert first_shrink >= SHRINK_AFTER
    down_to_5 = next(i for i, t in enumerate(idle) if t <= 5) * 0.25
    assert down_to_5 < 30
    assert idle[-1] == 1
    assert state.reversals == 1  # up, then down: one change of direction


def test_steady_load_settles_without_flapping() -> None:
    # Work needing ~20 slots, arriving steadily: fetches fill the slots while there are at
    # most 20, and leave some free above.
    state = ScaleState()
    target = 1
    history = []
    for i in range(400):
        target = decide(
            target=target,
            min_workers=1,
            max_workers=50,
            running=min(target, 20),
            backlogged=target <= 20,
            brake=False,
            now=i * 0.25,
            state=state,
        )
        history.append(target)
    assert history[-1] == 32  # enough slots for the load, with room to spare
    assert len(set(history[20:])) == 1  # then no change at all over 95 s
    assert state.reversals == 0


@pytest.mark.parametrize("load", [1, 2, 4, 8, 16, 30, 50])
def test_every_steady_load_settles(load: int) -> None:
    """A load needing exactly half the target once made it flip between the two for ever
    (16 <-> 32): a shrink keeps room above what runs, so the queue settles after at most one
    overshoot."""
    state = ScaleState()
    target = 1
    history = []
    for i in range(800):  # 200 s
        target = decide(
            target=target,
            min_workers=1,
            max_workers=50,
            running=min(target, load),
            backlogged=target <= load,
            brake=False,
            now=i * 0.25,
            state=state,
        )
        history.append(target)
    assert state.reversals <= 1
    assert len(set(history[-400:])) == 1  # no change in the last 100 s
    assert load < history[-1] or history[-1] == 50


def test_the_brake_holds_growth() -> None:
    targets, _ = _run(10, target=4, running=lambda t: t, backlogged=True, brake=True)
    assert set(targets) == {4}


# --- rate limits --------------------------------------------------------------------------------


async def _starts(db_url: str, queue: str) -> list[float]:
    async with open_db(db_url) as db:
        rows = await db.all(
            "SELECT extract(epoch FROM attempted_at)::float8 AS t FROM river_job"
            " WHERE queue = %(q)s AND attempted_at IS NOT NULL ORDER BY attempted_at",
            {"q": queue},
        )
    return [r["t"] for r in rows]


def _max_in_window(times: list[float], window: float) -> int:
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


async def test_a_rate_limited_queue_starts_no_more_than_its_limit(db_url: str) -> None:
    tracker = Tracker()
    limit = RateLimit(jobs=20, per=1)  # capacity 5
    config = config_for(tracker, {"limited": QueueConfig(max_workers=50, rate_limit=limit)})
    async with running_client(db_url, config, tracker) as client, open_db(db_url) as db:
        # 80 jobs: at 20/s the last starts ~3.75 s after the first five, time enough to see
        # the others wait even on a busy machine.
        await insert(client, "limited", *(Work(n=i) for i in range(80)))
        # Over the limit, jobs wait as they were: available, no attempt used.
        await wait_for(lambda: len(tracker.starts) >= 5)
        waiting = await db.count("queue = 'limited' AND state = 'available' AND attempt = 0")
        assert waiting > 0
        await db.wait_count(80, "queue = 'limited' AND state = 'completed'", timeout=30)
    times = await _starts(db_url, "limited")
    assert len(times) == 80
    # Any window of 1 s holds at most the bucket's capacity plus a second's worth.
    assert _max_in_window(times, 1.0) <= limit.capacity + 20 + 1
    assert all(r == 1 for r in await _attempts(db_url, "limited"))


async def _attempts(db_url: str, queue: str) -> list[int]:
    async with open_db(db_url) as db:
        rows = await db.all("SELECT attempt FROM river_job WHERE queue = %(q)s", {"q": queue})
    return [r["attempt"] for r in rows]


_SECOND_PROCESS = textwrap.dedent(
    """
    import asyncio, os, sys
    import river
    from river import QueueConfig, RateLimit

    class Work(river.JobArgs):
        kind = "work"
        n: int = 0
        hold: bool = False
        sleep: float = 0.0

    class W(river.Worker[Work]):
        async def work(self, job):
            return None

    async def main():
        workers = river.Workers()
        workers.add(W())
        config = river.Config(
            workers=workers,
            queues={"shared": QueueConfig(max_workers=50, rate_limit=RateLimit(jobs=20, per=1))},
            leader_election=False,
            fetch_cooldown=0.005,
            fetch_poll_interval=0.05,
        )
        async with river.AsyncClient(os.environ["DATABASE_URL"], config):
            print("started", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    """
)
_SECOND_PROCESS = _SECOND_PROCESS.replace('kind = "work"', 'kind: "ClassVar[str]" = "work"')


async def test_two_processes_share_one_rate_limit(db_url: str) -> None:
    """The limit holds for the cluster: a second process on the same queue does not double
    the rate, and both work jobs."""
    tracker = Tracker()
    limit = RateLimit(jobs=20, per=1)
    config = config_for(tracker, {"shared": QueueConfig(max_workers=50, rate_limit=limit)})
    env = {**os.environ, "DATABASE_URL": db_url}
    code = "from typing import ClassVar\n" + _SECOND_PROCESS
    async with await anyio.open_process(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=TESTS_DIR,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        seen = b""
        with anyio.fail_after(30):
            while b"\n" not in seen:
                seen += await proc.stdout.receive()
        assert seen.strip() == b"started"
        try:
            async with running_client(db_url, config, tracker) as client, open_db(db_url) as db:
                await insert(client, "shared", *(Work(n=i) for i in range(80)))
                await db.wait_count(80, "queue = 'shared' AND state = 'completed'", timeout=30)
                by_client = await db.all(
                    "SELECT attempted_by[1] AS who, count(*) AS n FROM river_job"
                    " WHERE queue = 'shared' GROUP BY 1"
                )
        finally:
            await proc.stdin.aclose()  # the second process stops on end of input
            with anyio.fail_after(30):
                await proc.wait()
    assert len(by_client) == 2, by_client  # both processes worked some
    times = await _starts(db_url, "shared")
    assert _max_in_window(times, 1.0) <= limit.capacity + 20 + 1
    assert _max_in_window(times, 2.0) <= limit.capacity + 40 + 1


async def test_rate_limit_set_and_cleared_cluster_wide(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"q": QueueConfig(max_workers=20)})
    async with running_client(db_url, config, tracker) as client:
        await client.queue_update("q", rate_limit=RateLimit(jobs=5, per=1))
        await wait_for(lambda: client.queues.get("q").settings.rate_limit is not None)
        assert client.queues.get("q").settings.rate_limit == RateLimit(jobs=5, per=1.0)
        assert (await client.queue_get("q")).override.rate_limit == RateLimit(jobs=5, per=1.0)
        await client.queue_update("q", clear="rate_limit")
        await wait_for(lambda: client.queues.get("q").settings.rate_limit is None)


# --- autoscaling ---------------------------------------------------------------------------------


class Slow(river.JobArgs):
    kind: ClassVar[str] = "autoscale_slow"
    seconds: float = 0.2


class SlowWorker(river.Worker[Slow]):
    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def work(self, job: river.Job[Slow]) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await anyio.sleep(job.args.seconds)
        finally:
            self.running -= 1


async def test_an_autoscaled_queue_grows_under_a_burst_and_shrinks_when_idle(
    db_url: str,
) -> None:
    worker = SlowWorker()
    workers = river.Workers()
    workers.add(worker)
    config = river.Config(
        workers=workers,
        queues={"burst": QueueConfig(min_workers=1, max_workers=8)},
        leader_election=False,
        fetch_cooldown=0.005,
        fetch_poll_interval=0.05,
    )
    async with started_client(db_url, config) as client, open_db(db_url) as db:
        s = signals(client)
        assert client.queues.get("burst").target_workers == 1
        await client.insert_many([(Slow(), river.InsertOpts(queue="burst")) for _ in range(60)])
        await s.scaled.wait_for(lambda change: change[2] == 8)
        await wait_for(lambda: worker.running == 8, timeout=10)
        assert worker.peak <= 8
        await db.wait_count(60, "state = 'completed'", timeout=30)
        assert client.queues.get("burst").target_workers == 8
        # Idle: the target halves after a quiet spell (no sooner than SHRINK_AFTER).
        queue, old, new = await s.scaled.wait_for(lambda c: c[2] < c[1], timeout=SHRINK_AFTER * 3)
        assert (queue, old, new) == ("burst", 8, 4)
        assert worker.peak == 8


async def test_autoscale_settings_cluster_wide_and_visible(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"q": QueueConfig(max_workers=10)})
    async with running_client(db_url, config, tracker) as client:
        info = client.queues.get("q")
        assert (info.target_workers, info.settings.autoscaled) == (10, False)
        await client.queue_update("q", min_workers=2)
        await wait_for(lambda: client.queues.get("q").settings.autoscaled)
        assert client.queues.get("q").target_workers == 10  # within 2..10: kept until idle
        await client.queue_update("q", clear="min_workers")
        await wait_for(lambda: not client.queues.get("q").settings.autoscaled)


async def test_a_new_rate_limit_ends_the_wait_of_the_old_one(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(
        tracker, {"q": QueueConfig(max_workers=10, rate_limit=RateLimit(jobs=1, per=3600))}
    )
    async with running_client(db_url, config, tracker) as client:
        await insert(client, "q", *(Work(n=i) for i in range(3)))
        await wait_for(lambda: len(tracker.starts) == 1)
        # The producer now holds its fetches for an hour; a new limit must not wait for it.
        await client.queues.update("q", rate_limit=RateLimit(jobs=100, per=1))
        await wait_for(lambda: len(tracker.starts) == 3, timeout=10)


@pytest.mark.parametrize(
    "bucket",
    [
        {"tokens": "lots", "at": True},
        {"tokens": -1e300, "at": 0},
        {"tokens": 1e300, "at": "yesterday"},
        {"tokens": 0, "at": 1e12},  # the clock stepped back: no freeze until year 33658
        [1, 2],
    ],
)
async def test_hostile_bucket_values_neither_break_nor_freeze_a_queue(
    db_url: str, bucket: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = Tracker()
    limit = RateLimit(jobs=20, per=1)
    config = config_for(tracker, {"q": QueueConfig(max_workers=10, rate_limit=limit)})
    async with open_db(db_url) as db:
        await db.execute(
            "INSERT INTO river_queue (name, metadata, created_at, updated_at)"
            " VALUES ('q', jsonb_build_object('river_py', jsonb_build_object('bucket',"
            " %(b)s::jsonb)), now(), now())",
            {"b": json.dumps(bucket)},
        )
        async with running_client(db_url, config, tracker) as client:
            await insert(client, "q", *(Work(n=i) for i in range(10)))
            await db.wait_count(10, "state = 'completed'", timeout=15)
    assert not [r for r in caplog.records if "fetch failed" in r.getMessage()]


async def test_a_locked_queue_row_delays_rate_limited_fetches_without_errors(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An application transaction holding the queue's row (queue_pause_tx, a hand edit) makes
    the rate-limited fetch take nothing (SKIP LOCKED) instead of blocking a pool connection
    until the statement deadline."""
    tracker = Tracker()
    config = config_for(
        tracker, {"q": QueueConfig(max_workers=10, rate_limit=RateLimit(jobs=50, per=1))}
    )
    async with running_client(db_url, config, tracker) as client:
        async with await psycopg.AsyncConnection.connect(db_url) as holder:
            await holder.execute("SELECT 1 FROM river_queue WHERE name = 'q' FOR UPDATE")
            await insert(client, "q", *(Work(n=i) for i in range(5)))
            await assert_stays(lambda: tracker.starts == [], 0.5, message="nothing started")
            await holder.rollback()
        await wait_for(lambda: len(tracker.starts) == 5, timeout=10)
    assert not [r for r in caplog.records if "fetch failed" in r.getMessage()]
