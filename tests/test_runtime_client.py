"""Both client flavours end to end: the insert family (plain, ``*_tx``, fast), transactional
enqueue under commit and rollback, commit-bound insert notifications, and the AsyncClient's
start/stop lifecycle."""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar

import anyio
import psycopg
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
from river.testing import signals

pytestmark = pytest.mark.anyio


class Token(river.JobArgs):
    kind: ClassVar[str] = "token"
    token: int


class TokenWorker(river.Worker[Token]):
    def __init__(self) -> None:
        self.executed: list[int] = []

    async def work(self, job: river.Job[Token]) -> None:
        self.executed.append(job.args.token)


class Blocker(river.JobArgs):
    kind: ClassVar[str] = "blocker"


class BlockerWorker(river.Worker[Blocker]):
    def __init__(self) -> None:
        self.gate = Gate()
        self.started: list[int] = []

    async def work(self, job: river.Job[Blocker]) -> None:
        self.started.append(job.id)
        await self.gate.wait()


async def wait_tokens(worker: TokenWorker, expected: set[int], timeout: float = 30.0) -> None:
    await wait_for(
        lambda: set(worker.executed) >= expected,
        timeout=timeout,
        interval=0.02,
        message=lambda: f"tokens to run; missing {sorted(expected - set(worker.executed))[:20]}",
    )


# --- insert family ------------------------------------------------------------------------------


async def test_async_client_insert_family_and_work(db_url: str) -> None:
    worker = TokenWorker()
    config = fast_config(make_workers(worker))
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        one = await client.insert(Token(token=1))
        assert one.unique_skipped_as_duplicate is False
        assert one.job.kind == "token"
        assert one.job.args == {"token": 1}
        many = await client.insert_many(
            [Token(token=2), (Token(token=3), river.InsertOpts(priority=2))]
        )
        assert [r.job.args["token"] for r in many] == [2, 3]
        assert many[1].job.priority == 2
        assert await client.insert_many([]) == []
        count = await client.insert_many_fast([Token(token=4), (Token(token=5), None)])
        assert count == 2
        assert await client.insert_many_fast([]) == 0

        conn = await psycopg.AsyncConnection.connect(db_url)
        async with conn:
            async with conn.transaction():
                r6 = await client.insert_tx(conn, Token(token=6))
                rs = await client.insert_many_tx(conn, [Token(token=7), Token(token=8)])
                n = await client.insert_many_fast_tx(conn, [Token(token=9)])
                assert n == 1
                assert await client.insert_many_tx(conn, []) == []
                assert await client.insert_many_fast_tx(conn, []) == 0
            assert r6.job.args == {"token": 6}
            assert [r.job.args["token"] for r in rs] == [7, 8]
        await wait_tokens(worker, set(range(1, 10)))
        await db.wait_count(9, "state = 'completed'")
        assert sorted(worker.executed) == list(range(1, 10))
        rows = await db.jobs()
        assert {r["args"]["token"] for r in rows} == set(range(1, 10))
        assert all(r["kind"] == "token" and r["queue"] == "default" for r in rows)


def _sync_inserts(db_url: str) -> None:
    with river.Client(db_url) as client:
        one = client.insert(Token(token=1))
        assert one.job.args == {"token": 1}
        assert one.job.state is river.JobState.AVAILABLE
        many = client.insert_many(
            [Token(token=2), (Token(token=3), river.InsertOpts(queue="other"))]
        )
        assert [(r.job.args["token"], r.job.queue) for r in many] == [(2, "default"), (3, "other")]
        assert client.insert_many([]) == []
        assert client.insert_many_fast([Token(token=4)]) == 1
        assert client.insert_many_fast([]) == 0
        with psycopg.connect(db_url) as conn:
            with conn.transaction():
                client.insert_tx(conn, Token(token=5))
                client.insert_many_tx(conn, [Token(token=6)])
                assert client.insert_many_fast_tx(conn, [Token(token=7)]) == 1
            # Rolled back: none of these exist.
            with conn.transaction(force_rollback=True):
                client.insert_tx(conn, Token(token=100))
                client.insert_many_tx(conn, [Token(token=101)])
                client.insert_many_fast_tx(conn, [Token(token=102)])
            assert client.insert_many_tx(conn, []) == []
            assert client.insert_many_fast_tx(conn, []) == 0


class _Rollback(Exception):
    pass


async def test_sync_client_insert_family_and_work(db_url: str) -> None:
    await anyio.to_thread.run_sync(_sync_inserts, db_url)
    worker = TokenWorker()
    config = fast_config(
        make_workers(worker), queues={"default": river.QueueConfig(), "other": river.QueueConfig()}
    )
    async with open_db(db_url) as db:
        assert await db.count() == 7
        async with started_client(db_url, config):
            await wait_tokens(worker, set(range(1, 8)))
            await db.wait_count(7, "state = 'completed'")
        assert sorted(worker.executed) == list(range(1, 8))


def test_sync_client_without_database_only_does_tx(db_url: str) -> None:
    client = river.Client()
    with pytest.raises(river.RiverError):
        client.insert(Token(token=1))
    with psycopg.connect(db_url, autocommit=True) as conn:
        res = client.insert_tx(conn, Token(token=1))
        assert res.job.id > 0
        assert conn.execute("SELECT count(*) FROM river_job").fetchone() == (1,)


def test_clients_reject_bad_database_arguments() -> None:
    with pytest.raises(river.RiverError):
        river.AsyncClient("not a url")
    with pytest.raises(river.RiverError):
        river.AsyncClient(42)  # type: ignore[arg-type]
    with pytest.raises(river.RiverError):
        river.Client("nope")
    with pytest.raises(river.RiverError):
        river.Client(3.5)  # type: ignore[arg-type]


# --- transactional enqueue: committed vs rolled back -------------------------------------------


TOTAL_INSERTS = 10_000


async def test_transactional_enqueue_executes_exactly_the_committed_set(db_url: str) -> None:
    """10,000 random inserts over many transactions, some rolled back, while a client works
    them: the executed set equals the committed set, each token exactly once."""
    seed = int(os.environ.get("RIVER_TEST_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    worker = TokenWorker()
    queues = {"default": river.QueueConfig(max_workers=50), "bulk": river.QueueConfig()}
    config = fast_config(make_workers(worker), queues=queues, completer_flush_interval=0.02)
    committed: set[int] = set()
    rolled_back: set[int] = set()
    next_token = 0
    plans: list[tuple[list[tuple[int, str]], str, bool]] = []
    while next_token < TOTAL_INSERTS:
        n = min(rng.randint(1, 150), TOTAL_INSERTS - next_token)
        items = [(next_token + i, rng.choice(["default", "bulk"])) for i in range(n)]
        next_token += n
        method = rng.choice(["insert_tx", "insert_many_tx", "insert_many_tx", "fast_tx", "mixed"])
        if method == "insert_tx":
            items = items[:20]  # keep single-row round trips bounded
        plans.append((items, method, rng.random() < 0.3))
    # Whatever was cut above is simply never inserted.
    planned = sum(len(p[0]) for p in plans)

    async def run_plans(my_plans: list[tuple[list[tuple[int, str]], str, bool]]) -> None:
        conn = await psycopg.AsyncConnection.connect(db_url)
        async with conn:
            for items, method, rollback in my_plans:
                try:
                    async with conn.transaction():
                        pairs = [(Token(token=t), river.InsertOpts(queue=q)) for t, q in items]
                        if method == "insert_tx":
                            for args, opts in pairs:
                                await client.insert_tx(conn, args, opts)
                        elif method == "insert_many_tx":
                            results = await client.insert_many_tx(conn, pairs)
                            assert [r.job.args["token"] for r in results] == [t for t, _ in items]
                        elif method == "fast_tx":
                            assert await client.insert_many_fast_tx(conn, pairs) == len(pairs)
                        else:
                            half = len(pairs) // 2
                            for args, opts in pairs[:half]:
                                await client.insert_tx(conn, args, opts)
                            await client.insert_many_tx(conn, pairs[half:])
                        if rollback:
                            raise _Rollback
                except _Rollback:
                    rolled_back.update(t for t, _ in items)
                else:
                    committed.update(t for t, _ in items)

    async with open_db(db_url) as db, started_client(db_url, config) as client:
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(run_plans, plans[i::4])
        assert len(committed) + len(rolled_back) == planned
        assert committed, f"seed {seed}: degenerate plan"
        assert rolled_back, f"seed {seed}: degenerate plan"
        await wait_for(
            lambda: len(worker.executed) >= len(committed),
            timeout=60,
            interval=0.05,
            message=lambda: f"seed {seed}: {len(worker.executed)}/{len(committed)} executed",
        )
        await db.wait_count(len(committed), "state = 'completed'", timeout=30)
        assert await db.count() == len(committed), f"seed {seed}"
        counts = Counter(worker.executed)
        dupes = [t for t, c in counts.items() if c > 1]
        assert dupes == [], f"seed {seed}: executed more than once: {dupes[:20]}"
        assert set(worker.executed) == committed, f"seed {seed}"
        assert not (set(worker.executed) & rolled_back), f"seed {seed}"
        stored = {r["t"] for r in await db.all("SELECT (args->>'token')::int AS t FROM river_job")}
        assert stored == committed, f"seed {seed}"


# --- insert notifications -----------------------------------------------------------------------


async def _listen(
    db_url: str, channel: str = "public.river_insert"
) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
    await conn.execute(f'LISTEN "{channel}"')
    return conn


async def _collect_until(
    conn: psycopg.AsyncConnection[Any], done: Callable[[list[tuple[str, str]]], bool]
) -> list[tuple[str, str]]:
    """Collect (channel, payload) until ``done(collected)``; fail after 10 s."""
    got: list[tuple[str, str]] = []
    with anyio.fail_after(10):
        async for n in conn.notifies():
            got.append((n.channel, n.payload))
            if done(got):
                break
    return got


def _has(payload: str) -> Callable[[list[tuple[str, str]]], bool]:
    return lambda got: any(p == payload for _, p in got)


async def test_insert_notification_is_commit_bound_async(db_url: str) -> None:
    listener = await _listen(db_url)
    async with listener, river.AsyncClient(db_url) as client:
        conn = await psycopg.AsyncConnection.connect(db_url)
        async with conn:
            async with conn.transaction(force_rollback=True):
                await client.insert_tx(conn, Token(token=1), river.InsertOpts(queue="rolled"))
            async with conn.transaction():
                await client.insert_tx(conn, Token(token=2), river.InsertOpts(queue="committed"))
        # Notifications arrive in commit order: had the rolled-back one been sent, it would
        # come first.
        got = await _collect_until(listener, _has('{"queue": "committed"}'))
        assert got == [("public.river_insert", '{"queue": "committed"}')]
        async with open_db(db_url) as db:
            assert [r["queue"] for r in await db.jobs()] == ["committed"]


def _sync_commit_and_rollback(db_url: str) -> None:
    client = river.Client(db_url)
    try:
        with psycopg.connect(db_url) as conn:
            with conn.transaction(force_rollback=True):
                client.insert_many_tx(conn, [(Token(token=1), river.InsertOpts(queue="rolled"))])
            with conn.transaction(force_rollback=True):
                client.insert_many_fast_tx(
                    conn, [(Token(token=1), river.InsertOpts(queue="rolled2"))]
                )
            with conn.transaction():
                client.insert_tx(conn, Token(token=2), river.InsertOpts(queue="committed"))
    finally:
        client.close()


async def test_insert_notification_is_commit_bound_sync(db_url: str) -> None:
    listener = await _listen(db_url)
    async with listener:
        await anyio.to_thread.run_sync(_sync_commit_and_rollback, db_url)
        got = await _collect_until(listener, _has('{"queue": "committed"}'))
        assert got == [("public.river_insert", '{"queue": "committed"}')]


async def test_insert_notification_per_distinct_available_queue(db_url: str) -> None:
    listener = await _listen(db_url)
    async with listener, river.AsyncClient(db_url) as client:
        future = river.InsertOpts(queue="later", scheduled_at=river_now_plus(60))
        await client.insert_many(
            [
                (Token(token=1), river.InsertOpts(queue="qa")),
                (Token(token=2), river.InsertOpts(queue="qb")),
                (Token(token=3), river.InsertOpts(queue="qa")),
                (Token(token=4), future),
                (Token(token=5), river.InsertOpts(queue="pend", pending=True)),
            ]
        )
        await client.insert(Token(token=9), river.InsertOpts(queue="end"))
        got = await _collect_until(listener, _has('{"queue": "end"}'))
        assert got == [
            ("public.river_insert", '{"queue": "qa"}'),
            ("public.river_insert", '{"queue": "qb"}'),
            ("public.river_insert", '{"queue": "end"}'),
        ]


async def test_insert_notification_limiter_and_fast_path(db_url: str) -> None:
    listener = await _listen(db_url)
    config = river.Config(fetch_cooldown=30, fetch_poll_interval=30)
    async with listener, river.AsyncClient(db_url, config) as client:
        await client.insert_many_fast([(Token(token=1), river.InsertOpts(queue="fast"))])
        # Within the cooldown: the second insert into the same queue sends nothing.
        await client.insert(Token(token=2), river.InsertOpts(queue="fast"))
        await client.insert(Token(token=3), river.InsertOpts(queue="end"))
        got = await _collect_until(listener, _has('{"queue": "end"}'))
        assert got == [
            ("public.river_insert", '{"queue": "fast"}'),
            ("public.river_insert", '{"queue": "end"}'),
        ]


def river_now_plus(seconds: float) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_committed_insert_wakes_producer_without_polling(db_url: str) -> None:
    """With a poll interval far away, only the notification can start the job quickly."""
    worker = TokenWorker()
    config = fast_config(make_workers(worker), fetch_poll_interval=30)
    async with started_client(db_url, config) as client:
        # Wait until the start-up poll has run: the next one is about 30 s away.
        await signals(client).polled.wait_for(["default"])
        # Two inserting clients: each has its own notification limiter, which counts the
        # rolled-back attempt too (PROTOCOL 7.3) and would otherwise suppress the second one.
        conn = await psycopg.AsyncConnection.connect(db_url)
        async with conn, river.AsyncClient(db_url) as a, river.AsyncClient(db_url) as b:
            async with conn.transaction(force_rollback=True):
                await a.insert_tx(conn, Token(token=1))
            async with conn.transaction():
                await b.insert_tx(conn, Token(token=2))
        await wait_for(lambda: worker.executed == [2], timeout=5, message="notified fetch")
        assert signals(client).polled.drain() == []  # no poll ran meanwhile


# --- lifecycle ------------------------------------------------------------------------------------


def _tasks() -> set[asyncio.Task[Any]]:
    return set(asyncio.all_tasks())


async def _assert_no_new_tasks(before: set[asyncio.Task[Any]]) -> None:
    def leftover() -> set[asyncio.Task[Any]]:
        return {t for t in _tasks() - before if not t.done()}

    await wait_for(
        lambda: not leftover(),
        timeout=5,
        message=lambda: f"tasks left behind: {[t.get_name() for t in leftover()]}",
    )


async def test_start_stop_idempotent_and_restartable(db_url: str) -> None:
    worker = TokenWorker()
    # No election: a maintenance term won in the background would start tasks between the two
    # starts below (its services run under the supervisor, so no name tells them apart).
    client = river.AsyncClient(db_url, fast_config(make_workers(worker), leader_election=False))
    before = _tasks()
    try:
        await client.stop()  # not started: no-op
        await client.stop_and_cancel()
        assert not client.running
        await client.start()
        tasks_running = _tasks()
        await client.start()
        assert client.running
        # The second start created nothing.
        assert _tasks() - tasks_running == set()
        await client.insert(Token(token=1))
        await wait_for(lambda: worker.executed == [1], message="first run")
        await client.stop()
        assert not client.running
        await client.stop()
        await client.stop_and_cancel()
        # Restart works jobs again.
        await client.start()
        await client.insert(Token(token=2))
        await wait_for(lambda: worker.executed == [1, 2], message="second run")
        await client.stop_and_cancel()
        assert not client.running
    finally:
        await client.close()
    await _assert_no_new_tasks(before)


async def test_concurrent_start_and_stop_from_many_tasks(db_url: str) -> None:
    worker = TokenWorker()
    client = river.AsyncClient(db_url, fast_config(make_workers(worker)))
    before = _tasks()
    try:
        for round_ in range(3):
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(client.start)
                    if i % 2:
                        tg.start_soon(client.stop)
                    if i == 3:
                        tg.start_soon(client.stop_and_cancel)
            # Whatever the interleaving, the client ends in a consistent state: a final start
            # works jobs, a final stop stops everything.
            await client.start()
            assert client.running
            await client.insert(Token(token=round_))
            await wait_for(lambda r=round_: r in worker.executed, message=f"round {round_}")
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(client.stop)
                tg.start_soon(client.stop_and_cancel)
            assert not client.running
    finally:
        await client.close()
    assert sorted(worker.executed) == [0, 1, 2]
    await _assert_no_new_tasks(before)


async def test_stop_from_a_different_task_than_start(db_url: str) -> None:
    worker = TokenWorker()
    client = river.AsyncClient(db_url, fast_config(make_workers(worker)))
    before = _tasks()
    started = anyio.Event()
    try:

        async def starter() -> None:
            await client.start()
            started.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(starter)
        # The starting task has ended; the client still runs.
        await started.wait()
        assert client.running
        await client.insert(Token(token=7))
        await wait_for(lambda: worker.executed == [7], message="job run after starter ended")

        async def stopper() -> None:
            await client.stop()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stopper)
        assert not client.running
    finally:
        await client.close()
    await _assert_no_new_tasks(before)


async def test_async_with_starts_and_stops(db_url: str) -> None:
    worker = TokenWorker()
    before = _tasks()
    async with open_db(db_url) as db:
        async with river.AsyncClient(db_url, fast_config(make_workers(worker))) as client:
            assert client.running
            await client.insert(Token(token=3))
            await wait_for(lambda: worker.executed == [3], message="job run")
        assert not client.running
        await db.wait_count(1, "state = 'completed'", timeout=1)
        # An insert-only client also works with async with (and starts nothing).
        async with river.AsyncClient(db_url) as insert_only:
            assert not insert_only.running
            await insert_only.insert(Token(token=4))
        assert await db.count() == 2
    await _assert_no_new_tasks(before)


async def test_async_with_exit_waits_for_running_jobs(db_url: str) -> None:
    worker = BlockerWorker()
    async with open_db(db_url) as db:
        exited = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                async with river.AsyncClient(db_url, fast_config(make_workers(worker))) as c:
                    await c.insert(Blocker())
                    await wait_for(lambda: worker.started, message="job start")
                exited.set()

            tg.start_soon(run)
            await wait_for(lambda: worker.started, message="job start")
            await assert_stays(
                lambda: not exited.is_set(), 0.1, message="the exit waits for the running job"
            )
            worker.gate.open()
        assert exited.is_set()
        assert await db.state(worker.started[0]) == "completed"


async def test_client_without_workers_cannot_start(db_url: str) -> None:
    client = river.AsyncClient(db_url)
    try:
        with pytest.raises(river.RiverError, match="workers"):
            await client.start()
        assert not client.running
        # Still usable for inserts afterwards.
        res = await client.insert(Token(token=1))
        assert res.job.id > 0
    finally:
        await client.close()
    with pytest.raises(river.InvalidConfigError):
        river.Config(queues={"default": river.QueueConfig()})


async def test_stop_waits_and_writes_all_outcomes(db_url: str) -> None:
    """Many quick jobs in flight at stop: every finished job is written before stop returns."""
    worker = TokenWorker()
    config = fast_config(make_workers(worker), completer_flush_interval=30)
    async with open_db(db_url) as db:
        client = river.AsyncClient(db_url, config)
        try:
            await client.start()
            await client.insert_many([Token(token=i) for i in range(200)])
            await wait_for(lambda: len(worker.executed) == 200, message="all executed")
            # Not yet written (the flush interval is long)...
            assert await db.count("state = 'completed'") == 0
            await client.stop()
        finally:
            await client.close()
        # ...so stop's drain wrote them all before returning.
        assert await db.count("state = 'completed'") == 200


async def test_two_clients_share_the_queue_without_double_work(db_url: str) -> None:
    w1, w2 = TokenWorker(), TokenWorker()
    async with open_db(db_url) as db:
        async with (
            started_client(db_url, fast_config(make_workers(w1), id="client-one")) as c1,
            started_client(db_url, fast_config(make_workers(w2), id="client-two")),
        ):
            await c1.insert_many([Token(token=i) for i in range(500)])
            await db.wait_count(500, "state = 'completed'", timeout=30)
        assert Counter(w1.executed + w2.executed) == Counter(range(500))
        by = await db.all("SELECT attempted_by FROM river_job")
        assert all(len(r["attempted_by"]) == 1 for r in by)
        assert {r["attempted_by"][0] for r in by} <= {"client-one", "client-two"}


async def test_priority_order_within_one_fetch(db_url: str) -> None:
    """Jobs start in (priority, scheduled_at, id) order."""
    order: list[int] = []

    class Recorder(river.Worker[Token]):
        async def work(self, job: river.Job[Token]) -> None:
            order.append(job.args.token)

    async with open_db(db_url) as db:
        async with river.AsyncClient(db_url) as c:
            await c.insert_many(
                [
                    (Token(token=40), river.InsertOpts(priority=4)),
                    (Token(token=10), river.InsertOpts(priority=1)),
                    (Token(token=30), river.InsertOpts(priority=3)),
                    (Token(token=11), river.InsertOpts(priority=1)),
                    (Token(token=20), river.InsertOpts(priority=2)),
                ]
            )
        config = fast_config(
            make_workers(Recorder()), queues={"default": river.QueueConfig(max_workers=1)}
        )
        async with started_client(db_url, config):
            await db.wait_count(5, "state = 'completed'")
        assert order == [10, 11, 20, 30, 40]


async def test_queue_notification_payload_is_json(db_url: str) -> None:
    """The insert payload parses as JSON with exactly one key (receivers parse it)."""
    listener = await _listen(db_url)
    async with listener, river.AsyncClient(db_url) as client:
        await client.insert(Token(token=1), river.InsertOpts(queue="a_b-c|d"))
        got = await _collect_until(listener, lambda g: bool(g))
        assert json.loads(got[0][1]) == {"queue": "a_b-c|d"}
        assert got[0][1] == '{"queue": "a_b-c|d"}'


async def test_db_helper_reads_rows(db_url: str) -> None:
    # A sanity check of the helper the other tests rely on.
    async with open_db(db_url) as db:
        assert isinstance(db, DB)
        assert await db.count() == 0
        await db.execute("INSERT INTO river_job (args, kind) VALUES ('{}', 'x1')")
        rows = await db.jobs()
        assert rows[0]["state"] == "available"
        assert rows[0]["errors"] is None
        assert rows[0]["metadata"] == {}


class Counting(river.JobArgs):
    kind: ClassVar[str] = "counting"


class CountingWorker(river.Worker[Counting]):
    def __init__(self) -> None:
        self.gate = Gate()
        self.active = 0
        self.max_active = 0
        self.done = 0

    async def work(self, job: river.Job[Counting]) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self.gate.wait()
        finally:
            self.active -= 1
            self.done += 1


async def test_max_workers_limits_running_jobs(db_url: str) -> None:
    worker = CountingWorker()
    config = fast_config(make_workers(worker), queues={"default": river.QueueConfig(max_workers=2)})
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        await client.insert_many([Counting() for _ in range(6)])
        await db.wait_count(2, "state = 'running'")

        # Several fetch opportunities later, still two.
        async def two_running() -> bool:
            return worker.active == 2 and await db.count("state = 'running'") == 2

        for _ in range(5):
            await client.insert(Counting())  # each insert notifies the producer
            await assert_stays(two_running, 0.02, message="two jobs running")
        worker.gate.open()
        await db.wait_count(11, "state = 'completed'")
    assert worker.max_active == 2
    assert worker.done == 11


async def test_cancelled_start_leaves_client_fully_stopped_or_running(db_url: str) -> None:
    """A start() whose caller is cancelled part-way never leaves a half-started client."""
    worker = TokenWorker()
    client = river.AsyncClient(db_url, fast_config(make_workers(worker)))
    before = _tasks()
    try:
        await client.insert(Token(token=0))  # opens the pool
        for delay in (0, 0.0005, 0.002, 0.005, 0.01, 0.05):
            with anyio.move_on_after(delay):
                await client.start()
            assert client._state in ("stopped", "running"), (delay, client._state)
            await client.stop()
            assert client._state == "stopped"
        await client.start()
        await wait_for(lambda: 0 in worker.executed, message="job run after the cancelled starts")
        await client.stop()
    finally:
        await client.close()
    await _assert_no_new_tasks(before)


async def test_cancelled_soft_stop_interrupts_and_stops_fully(db_url: str) -> None:
    """A soft stop whose caller gives up (a shutdown hook's deadline) escalates to a hard
    stop: the running job is interrupted (back to available) and nothing is left running."""
    worker = BlockerWorker()
    client = river.AsyncClient(db_url, fast_config(make_workers(worker)))
    before = _tasks()
    async with open_db(db_url) as db:
        try:
            await client.start()
            job = await client.insert(Blocker())
            await db.wait_state(job.job.id, "running")
            with anyio.move_on_after(0.2) as scope:
                await client.stop()
            assert scope.cancelled_caught
            assert not client.running
            row = await db.job(job.job.id)
            assert row["state"] == "available"
            assert row["attempt"] == 0
            assert row["errors"] is None
            await client.stop()  # a no-op now
            # Restartable: the job runs again (and completes once the gate opens).
            worker.gate.open()
            await client.start()
            await db.wait_state(job.job.id, "completed")
            await client.stop()
        finally:
            await client.close()
    assert worker.started == [job.job.id, job.job.id]
    await _assert_no_new_tasks(before)


async def test_jobs_tasks_come_from_the_loops_task_factory(db_url: str) -> None:
    """A loop's task factory (an APM integration, say) makes the jobs' tasks too: on Python
    3.12+ they start eagerly only when the loop has none."""
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(getattr(coro, "__qualname__", ""))
        return asyncio.Task(coro, loop=loop, **kwargs)

    worker = TokenWorker()
    loop.set_task_factory(factory)
    try:
        async with started_client(db_url, fast_config(make_workers(worker))) as client:
            await client.insert_many([Token(token=i) for i in range(5)])
            await wait_for(lambda: sorted(worker.executed) == list(range(5)))
    finally:
        loop.set_task_factory(None)
    assert made.count("Producer._work") == 5


async def test_a_closed_client_can_be_used_again(db_url: str) -> None:
    """An app's lifespan (``async with client``) runs once per test with a module-level
    client: the second ``async with`` failed with psycopg_pool's PoolClosed, and the call
    after that opened a pool of its own that nothing closed. A closed client opens a new pool
    on its next use, which its next close() closes."""
    client = river.AsyncClient(db_url)
    for _ in range(2):
        async with client:
            await client.insert(Token(token=1))
    await client.insert(Token(token=2))  # after close(): a new pool
    pool = client._pool
    assert pool is not None
    assert not pool.closed
    await client.close()
    assert pool.closed
    async with open_db(db_url) as db:
        assert await db.count() == 3


async def test_a_stop_says_when_its_jobs_have_ended(db_url: str) -> None:
    """The runtime's on_draining hook runs once a stop's jobs have all ended, before the last
    outcomes are written: river worker tells its supervisor then, which waits for them."""
    worker = TokenWorker()
    calls: list[list[int]] = []
    async with started_client(db_url, fast_config(make_workers(worker))) as client:
        runtime = client._runtime
        assert runtime is not None
        runtime.on_draining = lambda: calls.append(list(worker.executed))
        await client.insert(Token(token=7))
        await wait_for(lambda: worker.executed == [7])
        await client.stop()
    assert calls == [[7]]
