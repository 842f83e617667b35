"""Cluster-wide queue settings (issue 13, docs/queues.md): ``queue_update`` with a setting
stores an override in ``river_queue.metadata`` that every river-queue client working the queue
applies, live, without restarting jobs in flight; clearing it returns each client to its own
settings. Pure rules first, then storage, then running clients on a real Postgres."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

import anyio
import psycopg
import pytest
from helpers import open_db, wait_for
from psycopg.types.json import Jsonb
from test_queues import Tracker, Work, config_for, insert, running_client

import river
from river import QueueConfig, QueueOverride
from river._config import QueueSettings
from river._queue_override import (
    from_metadata,
    from_settings,
    settings_patch,
    validate_patch,
)
from river._queues import apply_override

pytestmark = pytest.mark.anyio


# --- pure rules -------------------------------------------------------------------------------


def test_validate_patch_rules() -> None:
    assert validate_patch({"max_workers": 5, "fetch_cooldown": 1}) == {
        "max_workers": 5,
        "fetch_cooldown": 1.0,
    }
    assert validate_patch({"max_workers": None}) == {"max_workers": None}
    for patch, field in [
        ({"max_workers": 0}, "max_workers"),
        ({"max_workers": 10_001}, "max_workers"),
        ({"max_workers": True}, "max_workers"),
        ({"max_workers": 2.5}, "max_workers"),
        ({"fetch_cooldown": -1}, "fetch_cooldown"),
        ({"fetch_cooldown": float("nan")}, "fetch_cooldown"),
        ({"fetch_poll_interval": 86_401}, "fetch_poll_interval"),
        ({"fetch_poll_interval": "1s"}, "fetch_poll_interval"),
        ({"fetch_cooldown": 2, "fetch_poll_interval": 1}, "fetch_poll_interval"),
        ({"priority": 1}, "priority"),
    ]:
        with pytest.raises(ValueError, match=f"^{field}: "):
            validate_patch(patch)


def test_settings_patch_from_keywords() -> None:
    assert settings_patch(3, timedelta(milliseconds=250), None, ()) == {
        "max_workers": 3,
        "fetch_cooldown": 0.25,
    }
    assert settings_patch(None, None, None, "max_workers") == {"max_workers": None}
    assert settings_patch(None, None, None, ["fetch_cooldown", "fetch_poll_interval"]) == {
        "fetch_cooldown": None,
        "fetch_poll_interval": None,
    }
    with pytest.raises(ValueError, match="given and cleared"):
        settings_patch(3, None, None, ["max_workers"])
    with pytest.raises(ValueError, match=r"^clear: 'speed'"):
        settings_patch(None, None, None, ["speed"])


def test_stored_override_is_untrusted() -> None:
    assert from_metadata(None) == (QueueOverride(), [])
    assert from_metadata({"team": "a"}) == (QueueOverride(), [])
    assert from_metadata({"river_py": 5})[1] == ["river_py: not an object"]
    override, problems = from_settings(
        {"max_workers": "lots", "fetch_cooldown": 0.5, "fetch_poll_interval": -3, "x": 1}
    )
    assert override == QueueOverride(fetch_cooldown=0.5)
    assert [p.split(":")[0] for p in problems] == ["max_workers", "fetch_poll_interval"]
    assert not QueueOverride()
    assert QueueOverride(max_workers=2).as_dict() == {"max_workers": 2}


def test_apply_override_precedence() -> None:
    own = QueueSettings(max_workers=100, fetch_cooldown=0.01, fetch_poll_interval=1.0)
    assert apply_override(own, QueueOverride()) is own
    assert apply_override(own, QueueOverride(max_workers=7)) == QueueSettings(7, 0.01, 1.0)
    # An override cooldown above the client's own poll interval raises the interval with it.
    assert apply_override(own, QueueOverride(fetch_cooldown=5.0)) == QueueSettings(100, 5.0, 5.0)


# --- storage ----------------------------------------------------------------------------------


async def _metadata(db_url: str, name: str) -> Any:
    async with open_db(db_url) as db:
        rows = await db.all("SELECT metadata FROM river_queue WHERE name = %(n)s", {"n": name})
        return rows[0]["metadata"]


async def test_queue_update_stores_merges_and_clears(db_url: str) -> None:
    async with river.AsyncClient(db_url) as client, open_db(db_url) as db:
        await db.execute(
            "INSERT INTO river_queue (name, metadata, created_at, updated_at)"
            " VALUES ('mail', '{\"team\": \"growth\"}', now(), now())"
        )
        row = await client.queue_update("mail", max_workers=5, fetch_cooldown=0.2)
        assert row.override == QueueOverride(max_workers=5, fetch_cooldown=0.2)
        assert row.metadata == {
            "team": "growth",
            "river_py": {"settings": {"max_workers": 5, "fetch_cooldown": 0.2}},
        }
        # A second change merges into the override.
        row = await client.queue_update("mail", fetch_poll_interval=timedelta(seconds=3))
        assert row.override == QueueOverride(5, 0.2, 3.0)
        # Replacing the application's metadata keeps the override.
        row = await client.queue_update("mail", metadata={"team": "core"})
        assert row.metadata["team"] == "core"
        assert row.override == QueueOverride(5, 0.2, 3.0)
        # Clearing fields, then all of them, removes river-queue's key entirely.
        row = await client.queue_update("mail", clear="max_workers")
        assert row.override == QueueOverride(None, 0.2, 3.0)
        row = await client.queue_update("mail", clear=["fetch_cooldown", "fetch_poll_interval"])
        assert not row.override
        assert await _metadata(db_url, "mail") == {"team": "core"}
        assert (await client.queue_get("mail")).override == QueueOverride()


async def test_queue_update_validates_before_sql(db_url: str) -> None:
    async with river.AsyncClient(db_url) as client, open_db(db_url) as db:
        await db.execute(
            "INSERT INTO river_queue (name, metadata, created_at, updated_at)"
            " VALUES ('q', '{}', now(), now())"
        )
        cases: list[tuple[dict[str, Any], str]] = [
            ({"max_workers": 0}, "max_workers"),
            ({"fetch_cooldown": "fast"}, "fetch_cooldown"),
            ({"fetch_cooldown": 2, "fetch_poll_interval": 1}, "fetch_poll_interval"),
            ({"clear": ["nope"]}, "clear"),
            ({"metadata": {"river_py": {}}}, "metadata['river_py']"),
            ({"metadata": [1]}, "metadata"),
            ({}, "queue_update"),
        ]
        for kwargs, field in cases:
            with pytest.raises(river.ValidationError) as info:
                await client.queue_update("q", **kwargs)
            assert info.value.field == field, kwargs
        with pytest.raises(river.ValidationError) as info:
            await client.queue_update("bad name!", max_workers=1)
        assert info.value.field == "queue"
        assert await _metadata(db_url, "q") == {}
        with pytest.raises(river.QueueNotFoundError):
            await client.queue_update("absent", max_workers=1)


async def test_queue_update_tx_and_sync_client(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO river_queue (name, metadata, created_at, updated_at)"
            " VALUES ('s', '{}', now(), now())"
        )
    client = river.Client(db_url)
    try:
        with psycopg.connect(db_url) as conn:
            client.queue_update_tx(conn, "s", max_workers=9)
            conn.rollback()
        assert not client.queue_get("s").override
        with psycopg.connect(db_url) as conn:
            client.queue_update_tx(conn, "s", max_workers=9)
        assert client.queue_get("s").override == QueueOverride(max_workers=9)
    finally:
        client.close()


# --- running clients --------------------------------------------------------------------------


async def test_two_clients_apply_one_update_and_a_later_client_too(db_url: str) -> None:
    """One update, both running clients apply it (one listening, one poll-only), jobs in
    flight run on; a client started later starts with it; clearing returns each client to
    its own settings."""
    tracker_a, tracker_b, tracker_c = Tracker(), Tracker(), Tracker()
    queues = {"shared": QueueConfig(max_workers=10)}
    config_a = config_for(tracker_a, queues)
    config_b = config_for(tracker_b, {"shared": QueueConfig(max_workers=20)}, poll_only=True)
    async with (
        running_client(db_url, config_a, tracker_a) as a,
        running_client(db_url, config_b, tracker_b) as b,
    ):
        held = await insert(a, "shared", *(Work(n=i, hold=True) for i in range(4)))
        await wait_for(lambda: len(tracker_a.starts) + len(tracker_b.starts) == 4)

        await a.queue_update("shared", max_workers=2, fetch_poll_interval=0.1)

        def applied(client: river.AsyncClient) -> bool:
            info = client.queues.get("shared")
            return info.settings.max_workers == 2 and info.override.max_workers == 2

        await wait_for(lambda: applied(a) and applied(b), timeout=10)
        assert a.queues.get("shared").settings.fetch_poll_interval == 0.1
        assert a.queues.get("shared").config == QueueConfig(max_workers=10)
        # Shrinking interrupted nothing: the held jobs are still running, on attempt 1.
        assert tracker_a.interrupted == []
        assert tracker_b.interrupted == []

        # A client started now applies the override from its first fetch.
        async with running_client(
            db_url, config_for(tracker_c, {"shared": QueueConfig(max_workers=50)}), tracker_c
        ) as c:
            assert c.queues.get("shared").settings.max_workers == 2

        tracker_a.release_all()
        tracker_b.release_all()
        async with open_db(db_url) as db:
            await db.wait_count(4, "state = 'completed' AND attempt = 1")
        assert sorted(tracker_a.completions.keys() | tracker_b.completions.keys()) == held

        await b.queue_update("shared", clear=["max_workers", "fetch_poll_interval"])
        await wait_for(
            lambda: (
                a.queues.get("shared").settings.max_workers == 10
                and b.queues.get("shared").settings.max_workers == 20
                and not a.queues.get("shared").override
                and not b.queues.get("shared").override
            ),
            timeout=10,
        )


async def test_override_limits_concurrency_and_wins_over_local_update(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"q": QueueConfig(max_workers=8)})
    async with running_client(db_url, config, tracker) as client:
        await client.queue_update("q", max_workers=2)
        await wait_for(lambda: client.queues.get("q").settings.max_workers == 2)
        with caplog.at_level(logging.INFO, logger="river.client"):
            # A local update changes the client's own value; the override still wins.
            info = await client.queues.update("q", max_workers=6)
        assert info.config.max_workers == 6
        assert info.settings.max_workers == 2
        assert any("cluster-wide override" in r.getMessage() for r in caplog.records)
        await insert(client, "q", *(Work(n=i, sleep=0.05) for i in range(12)))
        async with open_db(db_url) as db:
            await db.wait_count(12, "state = 'completed'")
        assert tracker.peak["q"] == 2

        await client.queue_update("q", clear="max_workers")
        await wait_for(lambda: client.queues.get("q").settings.max_workers == 6)


async def test_invalid_stored_override_is_logged_and_ignored(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = Tracker()
    config = config_for(tracker, {"q": QueueConfig(max_workers=4)})
    async with running_client(db_url, config, tracker) as client, open_db(db_url) as db:
        with caplog.at_level(logging.WARNING, logger="river.client"):
            await db.execute(
                "UPDATE river_queue SET metadata = %(m)s WHERE name = 'q'",
                {
                    "m": Jsonb(
                        {"river_py": {"settings": {"max_workers": "many", "fetch_cooldown": 1}}}
                    )
                },
            )
            await wait_for(lambda: client.queues.get("q").override.fetch_cooldown == 1.0)
            # The override is recorded at once; the producer takes it in a task of its own.
            await wait_for(lambda: client.queues.get("q").settings.fetch_cooldown == 1.0)
        info = client.queues.get("q")
        assert info.settings.max_workers == 4
        assert info.settings.fetch_cooldown == 1.0
        warnings = [r for r in caplog.records if "invalid cluster-wide setting" in r.getMessage()]
        assert len(warnings) == 1
        assert "max_workers" in warnings[0].getMessage()
        assert getattr(warnings[0], "queue", None) == "q"


async def test_large_metadata_is_stored_and_announced_without_it(db_url: str) -> None:
    """NOTIFY payloads are capped at 8000 bytes: a larger metadata is still stored, and the
    metadata_changed notification names the queue only."""
    async with river.AsyncClient(db_url) as client, open_db(db_url) as db:
        await db.execute(
            "INSERT INTO river_queue (name, metadata, created_at, updated_at)"
            " VALUES ('big', '{}', now(), now())"
        )
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
            await listener.execute('LISTEN "public.river_control"')
            row = await client.queue_update("big", metadata={"blob": "x" * 10_000}, max_workers=4)
            assert len(row.metadata["blob"]) == 10_000
            with anyio.fail_after(5):
                notice = await anext(listener.notifies())
        assert notice.payload == '{"action":"metadata_changed","queue":"big"}'


async def test_hostile_stored_values_never_stop_a_client(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone who can write the row must not be able to stop the workers: a 400-digit number,
    a string, a metadata that is not an object are logged and ignored (or read as empty)."""
    tracker = Tracker()
    config = config_for(tracker, {"q": QueueConfig(max_workers=4)}, poll_only=True)
    async with open_db(db_url) as db:
        await db.execute(
            "INSERT INTO river_queue (name, metadata, created_at, updated_at) VALUES ('q',"
            ' (\'{"river_py": {"settings": {"fetch_cooldown": 1\' || repeat(\'0\', 400)'
            " || ', \"max_workers\": 3}}}')::jsonb, now(), now())"
        )
        with caplog.at_level(logging.WARNING, logger="river.client"):
            async with running_client(db_url, config, tracker) as client:
                info = client.queues.get("q")
                assert info.override == QueueOverride(max_workers=3)
                assert info.settings.max_workers == 3
                await insert(client, "q", Work(n=1))
                await db.wait_count(1, "state = 'completed'")
        assert any("fetch_cooldown" in r.getMessage() for r in caplog.records)
        # Not an object at all: the update reads it as empty and writes an object.
        await db.execute("UPDATE river_queue SET metadata = 'null'::jsonb WHERE name = 'q'")
        async with river.AsyncClient(db_url) as admin:
            row = await admin.queue_update("q", max_workers=2)
            assert row.metadata == {"river_py": {"settings": {"max_workers": 2}}}
            await db.execute("UPDATE river_queue SET metadata = '[1]'::jsonb WHERE name = 'q'")
            row = await admin.queue_update("q", metadata={"a": 1})
            assert row.metadata == {"a": 1}
            with pytest.raises(river.ValidationError) as info:
                await admin.queue_update("q", fetch_cooldown=10**400)
            assert info.value.field == "fetch_cooldown"


async def test_queue_update_refuses_bad_input_without_connecting() -> None:
    # Port 1 on localhost: nothing listens; a connection attempt would fail differently.
    client = river.AsyncClient(
        "postgresql://nobody@127.0.0.1:1/none", river.Config(connect_timeout=2)
    )
    for kwargs in ({"max_workers": 0}, {"metadata": {"river_py": 1}}, {}):
        with pytest.raises(river.ValidationError):
            await client.queue_update("q", **kwargs)
    with pytest.raises(river.ValidationError):
        await client.queue_pause("not a queue!")
    await client.close()


async def test_poll_only_clients_reread_overrides_every_two_seconds(db_url: str) -> None:
    """A poll-only client hears no notification: it re-reads every queue's override and pause
    state at least every 2 s, even when the queue polls every 30 s."""
    tracker = Tracker()
    config = config_for(tracker, {"slow": QueueConfig(fetch_poll_interval=30)}, poll_only=True)
    async with running_client(db_url, config, tracker) as client:
        await client.queue_update("slow", max_workers=7)
        await wait_for(lambda: client.queues.get("slow").settings.max_workers == 7, timeout=5)
        await client.queue_pause("slow")
        await wait_for(lambda: client.queues.get("slow").paused, timeout=5)


async def test_a_local_update_racing_an_override_ends_on_the_settings_applied(
    db_url: str,
) -> None:
    """Changes are serialised under the queue manager's lock: whatever the interleaving, the
    last queue_updated event tells the settings the producer runs with."""
    tracker = Tracker()
    events: list[river.Event] = []
    config = config_for(tracker, {"q": QueueConfig(max_workers=8)}, on_event=events.append)

    def settled(client: river.AsyncClient, max_workers: int) -> bool:
        updates = [e for e in events if e.kind == river.EventKind.QUEUE_UPDATED]
        running = client.queues.get("q").settings.max_workers
        return running == max_workers and updates[-1].details["max_workers"] == running

    async with running_client(db_url, config, tracker) as client:
        for local, cluster in [(6, 2), (7, 3), (6, 2), (7, 3)]:
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(client.queues.update, "q", max_workers=local))
                tg.start_soon(partial(client.queue_update, "q", max_workers=cluster))
            await wait_for(partial(settled, client, cluster), timeout=5)
            await client.queue_update("q", clear="max_workers")
            await wait_for(partial(settled, client, local), timeout=5)
