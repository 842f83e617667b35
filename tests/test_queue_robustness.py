"""Dynamic queues under hostile data and awkward timing (docs/queues.md), on a real Postgres:

- whatever anyone stores in ``river_queue.metadata`` (a number too large for a float, or beyond
  Python's 4,300-digit int-conversion limit, nesting deeper than Python's recursion limit, an
  integer beyond int64) never stops a client from starting, polling, reading or updating its
  queues: invalid values are logged once and ignored, valid fields still apply;
- a hard stop (``remove(mode="cancel")``, ``stop_and_cancel()``) reaches the jobs of a fetch in
  flight: they never run, and go back to ``available`` with their attempt restored;
- a pause announced while a poll is in flight is not lost until the next poll;
- ``stop(timeout=)`` bounds a queue drain in progress;
- a ``remove`` whose caller gives up still removes the queue.

Every wait has a deadline; no test depends on how fast the machine is. A fetch is held in
flight by a table lock taken in Postgres; a poll's result by holding it in the poller's op
runner until the test lets it through.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import psycopg
import pytest
from helpers import DB, open_db, wait_for
from test_queues import Tracker, Work, config_for, insert, running_client

import river
from river import QueueConfig, QueueOverride
from river._errors import InvalidConfigError
from river._ratelimit import rate_limit_from_json
from river._sansio import Op
from river.testing import signals

pytestmark = pytest.mark.anyio

#: An integer jsonb stores and Python's int() refuses (more than 4,300 digits).
HUGE = "1" + "0" * 5000
#: An integer too large for a float.
TOO_BIG_FOR_A_FLOAT = "1" + "0" * 400
#: Nesting Postgres accepts and Python's json cannot decode (recursion limit).
DEEP = "[" * 3000 + "]" * 3000


async def _store(db: DB, name: str, metadata_json: str) -> None:
    """Write ``metadata_json`` (raw JSON text, with the tokens ``<HUGE>``, ``<BIG>`` and
    ``<DEEP>`` standing for the values above) as the metadata of queue ``name``."""
    for token, value in (("<HUGE>", HUGE), ("<BIG>", TOO_BIG_FOR_A_FLOAT), ("<DEEP>", DEEP)):
        metadata_json = metadata_json.replace(token, value)
    await db.execute(
        "INSERT INTO river_queue (name, metadata, created_at, updated_at)"
        " VALUES (%(n)s, %(m)s::jsonb, now(), now())"
        " ON CONFLICT (name) DO UPDATE SET metadata = excluded.metadata",
        {"n": name, "m": metadata_json},
    )


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and text in r.getMessage()
    ]


async def _polls(client: river.AsyncClient, queue: str, count: int) -> None:
    """Wait until the poller has polled ``queue`` ``count`` more times."""
    polled = signals(client).polled
    seen = 0
    while seen < count:
        if queue in await polled.wait(10):
            seen += 1


# --- 1. bad stored values ------------------------------------------------------------------


def test_a_rate_limit_period_too_large_for_a_float_is_invalid() -> None:
    for per in (10**400, -(10**400)):
        with pytest.raises(InvalidConfigError) as err:
            rate_limit_from_json({"jobs": 5, "per": per})
        assert err.value.field == "rate_limit.per"
        assert len(str(err.value)) < 200  # the number is not logged in full


async def test_an_invalid_rate_limit_never_stops_a_client_and_valid_fields_apply(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"q": QueueConfig(max_workers=4)})
    settings = (
        '{"river_py": {"settings": {"max_workers": <N>, "rate_limit": {"jobs": 5, "per": <P>}}}}'
    )
    async with open_db(db_url) as db:
        await _store(db, "q", settings.replace("<N>", "3").replace("<P>", "<BIG>"))
        with caplog.at_level(logging.WARNING, logger="river.client"):
            async with running_client(db_url, config, tracker) as client:
                # Read at start: the client starts, with the valid field.
                info = client.queues.get("q")
                assert info.settings.max_workers == 3
                assert info.settings.rate_limit is None
                assert (await client.queue_get("q")).override == QueueOverride(max_workers=3)
                # Read by the poller of a running client: the valid field still applies.
                await _store(db, "q", settings.replace("<N>", "2").replace("<P>", "<BIG>0"))
                await wait_for(
                    lambda: client.queues.get("q").settings.max_workers == 2,
                    message="the valid max_workers applied",
                )
                await _polls(client, "q", 3)
                await insert(client, "q", Work(n=1))
                await db.wait_count(1, "state = 'completed'")
        # Logged once per stored value, whatever the number of polls.
        assert len(_warnings(caplog, "rate_limit: per must be at most one day")) == 2


async def test_numbers_beyond_pythons_limits_anywhere_in_the_metadata(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = Tracker()
    config = config_for(
        tracker,
        {
            "app": QueueConfig(max_workers=4),
            "ours": QueueConfig(max_workers=4),
            "deep": QueueConfig(),
            "later": QueueConfig(),
        },
    )
    async with open_db(db_url) as db, river.AsyncClient(db_url) as other:
        # The application's key, river-queue's own key, and nesting Python cannot decode.
        await _store(db, "app", '{"app": <HUGE>, "river_py": {"settings": {"max_workers": 3}}}')
        await _store(
            db,
            "ours",
            '{"river_py": {"settings": {"max_workers": <HUGE>, "fetch_cooldown": 0.5}}}',
        )
        await _store(db, "deep", '{"app": <DEEP>}')
        with caplog.at_level(logging.WARNING, logger="river.client"):
            async with running_client(db_url, config, tracker) as client:
                assert client.queues.get("app").settings.max_workers == 3
                ours = client.queues.get("ours").settings
                assert (ours.max_workers, ours.fetch_cooldown) == (4, 0.5)
                # Admin reads decode too: a number beyond the limit reads as infinite (as json
                # reads 1e5000); metadata that cannot be decoded at all reads as empty.
                row = await client.queue_get("app")
                assert row.metadata["app"] == math.inf
                assert row.override == QueueOverride(max_workers=3)
                assert (await client.queue_get("deep")).metadata == {}
                assert {"app", "ours", "deep"} <= {r.name for r in await client.queue_list()}

                # A running client: the poller reads such a value, applies the valid field and
                # keeps polling every queue.
                await _store(
                    db,
                    "later",
                    '{"river_py": {"settings": {"min_workers": <HUGE>, "fetch_cooldown": 0.25,'
                    ' "rate_limit": {"jobs": 5, "per": <HUGE>}}}, "app": <DEEP>}',
                )
                await wait_for(
                    lambda: client.queues.get("later").settings.fetch_cooldown == 0.25,
                    message="the valid fetch_cooldown applied",
                )
                await _polls(client, "later", 3)
                await other.queue_pause("later")
                await wait_for(lambda: client.queues.get("later").paused, message="pause seen")
                health = client.health()
                assert health.healthy
                assert health.services["poller"].restarts == 0
                await insert(client, "ours", Work(n=1))
                await db.wait_count(1, "state = 'completed'")

                # Updating such a row works; the notification leaves the metadata out.
                async with await psycopg.AsyncConnection.connect(
                    db_url, autocommit=True
                ) as listener:
                    await listener.execute('LISTEN "public.river_control"')
                    updated = await other.queue_update("app", max_workers=2)
                    assert updated.metadata["app"] == math.inf
                    with anyio.fail_after(10):
                        notice = await anext(listener.notifies())
                    assert notice.payload == '{"action":"metadata_changed","queue":"app"}'
                await wait_for(lambda: client.queues.get("app").settings.max_workers == 2)
        assert len(_warnings(caplog, "min_workers: must be an integer, got inf")) == 1
        assert _warnings(caplog, "queue deep: ignoring its metadata, which cannot be decoded")


async def test_queue_update_with_foreign_integers_beyond_int64(db_url: str) -> None:
    """Metadata the caller did not write is not held to the insert rules: the update succeeds
    and the notification carries the metadata as stored."""
    async with open_db(db_url) as db, river.AsyncClient(db_url) as client:
        await _store(db, "q", '{"pro": {"id": 18446744073709551615}}')
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
            await listener.execute('LISTEN "public.river_control"')
            row = await client.queue_update("q", max_workers=5)
            with anyio.fail_after(10):
                notice = await anext(listener.notifies())
        expected = {
            "pro": {"id": 18446744073709551615},
            "river_py": {"settings": {"max_workers": 5}},
        }
        assert row.metadata == expected
        assert json.loads(notice.payload) == {
            "action": "metadata_changed",
            "metadata": expected,
            "queue": "q",
        }
        assert " " not in notice.payload


# --- 2. a hard stop reaches the jobs of a fetch in flight ---------------------------------------


async def _fetch_waiting_for_a_lock(db: DB) -> bool:
    waiting = await db.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE '%river_job%'"
    )
    return bool(waiting)


@pytest.mark.parametrize("how", ["remove", "stop_and_cancel"])
async def test_a_hard_stop_reaches_the_jobs_of_a_fetch_in_flight(db_url: str, how: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"other": QueueConfig()})
    async with open_db(db_url) as db, running_client(db_url, config, tracker) as client:
        [job_id] = await insert(client, "q", Work(n=1, hold=True))
        async with await psycopg.AsyncConnection.connect(db_url) as locker:
            # Fetching (an UPDATE of river_job) waits for this lock; reading does not.
            await locker.execute("LOCK TABLE river_job IN SHARE MODE")
            await client.queues.add("q")
            producer = client.queues.producers["q"]
            await wait_for(
                lambda: _fetch_waiting_for_a_lock(db), message="q's fetch held by the lock"
            )
            done = anyio.Event()

            async def hard_stop() -> None:
                if how == "remove":
                    await client.queues.remove("q", mode="cancel")
                else:
                    await client.stop_and_cancel()
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(hard_stop)
                await wait_for(lambda: producer._stopping, message="the hard stop under way")
                await locker.commit()  # the fetch returns the job now
                with anyio.fail_after(10):
                    await done.wait()
        assert tracker.starts == []  # its worker never ran
        row = await db.job(job_id)
        assert (row["state"], row["attempt"]) == ("available", 0)
        assert not row["errors"]
        if how == "remove":
            # Added back, the queue works the job.
            tracker.release_all()
            await client.queues.add("q")
            row = await db.wait_state(job_id, "completed")
            assert row["attempt"] == 1


# --- 3. a hint arriving while a poll is in flight ------------------------------------------------


async def test_a_pause_announced_while_a_poll_is_in_flight_is_seen_at_once(db_url: str) -> None:
    tracker = Tracker()
    # The next regular poll is 30 s away: only the notification explains a pause seen sooner.
    config = config_for(tracker, {"q": QueueConfig(fetch_poll_interval=30)})
    async with (
        running_client(db_url, config, tracker) as client,
        river.AsyncClient(db_url) as other,
    ):
        runtime = client._runtime
        assert runtime is not None
        poller = runtime.poller
        run_op: Callable[[Op[Any]], Awaitable[Any]] = poller._run_op
        in_flight, let_through = anyio.Event(), anyio.Event()
        hold = [True]

        async def held_run_op(op: Op[Any]) -> Any:
            rows = await run_op(op)  # read before the pause commits
            if hold[0]:
                hold[0] = False
                in_flight.set()
                await let_through.wait()
            return rows

        hints: list[str] = []
        hint = poller.hint

        def recorded_hint(queue: str) -> None:
            hints.append(queue)
            hint(queue)

        poller._run_op = held_run_op  # type: ignore[method-assign]
        poller.hint = recorded_hint  # type: ignore[method-assign]
        poller.hint("q")  # a poll now
        with anyio.fail_after(10):
            await in_flight.wait()
        await other.queue_pause("q")
        await wait_for(lambda: hints.count("q") == 2, message="the pause notification")
        let_through.set()
        await wait_for(
            lambda: client.queues.get("q").paused, timeout=10, message="the pause obeyed"
        )


# --- 4. stop(timeout=) bounds a drain in progress ------------------------------------------------


async def test_stop_timeout_bounds_a_queue_drain_in_progress(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"q": QueueConfig(max_workers=1), "other": QueueConfig()})
    async with open_db(db_url) as db, running_client(db_url, config, tracker) as client:
        [held] = await insert(client, "q", Work(n=1, hold=True))
        await wait_for(lambda: tracker.running["q"] == 1, message="held job running")
        producer = client.queues.producers["q"]
        removed = anyio.Event()

        async def remove() -> None:
            await client.queues.remove("q")  # drains with no limit: the job is never released
            removed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(remove)
            await wait_for(lambda: producer._stopping, message="the drain under way")
            with anyio.fail_after(10):
                await client.stop(timeout=0.2)
                await removed.wait()
        assert not client.running
        assert tracker.interrupted == [held]
        row = await db.job(held)
        assert (row["state"], row["attempt"]) == ("available", 0)
        assert "q" not in client.queues.list()


# --- 5. a remove whose caller gives up -------------------------------------------------------


async def test_a_remove_whose_caller_gives_up_still_removes_the_queue(db_url: str) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"q": QueueConfig(max_workers=2), "other": QueueConfig()})
    async with open_db(db_url) as db, running_client(db_url, config, tracker) as client:
        [held] = await insert(client, "q", Work(n=1, hold=True))
        await wait_for(lambda: tracker.running["q"] == 1, message="held job running")
        producer = client.queues.producers["q"]
        returned = []

        async def remove() -> None:
            await client.queues.remove("q")
            returned.append(True)

        async with anyio.create_task_group() as tg:
            tg.start_soon(remove)
            await wait_for(lambda: producer._stopping, message="the drain under way")
            tg.cancel_scope.cancel()  # the caller gives up (its own timeout, say)
        assert returned == []  # the caller saw its cancellation
        # Never half removed: the queue is gone, its job interrupted and written back.
        assert "q" not in client.queues.list()
        assert "q" not in client.queues.producers
        assert tracker.interrupted == [held]
        row = await db.job(held)
        assert (row["state"], row["attempt"]) == ("available", 0)
        # Added back, it works again.
        tracker.release_all()
        await client.queues.add("q")
        await db.wait_state(held, "completed")
