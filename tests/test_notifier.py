"""The notifier's recovery and the polling safety net (PROTOCOL.md 7.4, 7.5).

Notifications are hints: a LISTEN connection killed with ``pg_terminate_backend`` is replaced
(with backoff) and every producer fetches after the reconnect, since notifications may have
been lost meanwhile; a job inserted with no NOTIFY at all is found by polling; ``poll_only``
opens no LISTEN connection and still works jobs. A silently dead link (no bytes, no error) is
found by the liveness probe.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import anyio
import pytest
from helpers import DB, fast_config, make_workers, open_db, started_client, wait_for
from netproxy import CuttableProxy, server_address

import river
from river._notifier import Notifier

pytestmark = pytest.mark.anyio


class Ping(river.JobArgs):
    kind: ClassVar[str] = "notifier_ping"
    n: int = 0


class PingWorker(river.Worker[Ping]):
    def __init__(self) -> None:
        self.done: list[int] = []

    async def work(self, job: river.Job[Ping]) -> None:
        self.done.append(job.args.n)


async def listen_backends(db: DB) -> list[int]:
    """Backends of this database whose last statement was a LISTEN (notifier connections)."""
    rows = await db.all(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND query ILIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
    )
    return [r["pid"] for r in rows]


async def test_notifier_reconnects_after_its_backend_is_terminated(db_url: str) -> None:
    # A poll interval far longer than the test: only notifications and the reconnect wake-up
    # can get a job started.
    config = fast_config(
        make_workers(PingWorker()), fetch_poll_interval=60.0, leader_election=False
    )
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        notifier = client._notifier
        assert notifier is not None
        await notifier.wait_connected()
        first_pid = notifier.backend_pid
        assert first_pid is not None
        assert notifier.connections == 1
        assert await listen_backends(db) == [first_pid]

        # Works through notifications before the kill.
        before = await client.insert(Ping(n=1))
        await db.wait_state(before.job.id, "completed", timeout=3)

        killed = await db.scalar("SELECT pg_terminate_backend(%(pid)s) AS ok", {"pid": first_pid})
        assert killed
        # Inserted while the notifier is down (or about to notice): its notification is lost.
        lost = await client.insert(Ping(n=2))
        started = time.monotonic()
        await db.wait_state(lost.job.id, "completed", timeout=10)
        # Found after the reconnect (backoff <= 0.5 s at the first failure), long before a poll.
        assert time.monotonic() - started < 5
        await wait_for(
            lambda: notifier.connections >= 2, timeout=10, message="the notifier reconnected"
        )
        assert notifier.backend_pid not in (None, first_pid)
        assert client._notifier is notifier

        # Notifications flow again on the new connection.
        after = await client.insert(Ping(n=3))
        started = time.monotonic()
        await db.wait_state(after.job.id, "completed", timeout=5)
        assert time.monotonic() - started < 2
        assert await listen_backends(db) == [notifier.backend_pid]


async def test_job_inserted_without_notification_is_found_by_polling(db_url: str) -> None:
    config = fast_config(make_workers(PingWorker()), fetch_poll_interval=0.3)
    async with open_db(db_url) as db, started_client(db_url, config):
        await anyio.sleep(0.1)
        job_id = await db.scalar(
            "INSERT INTO river_job (kind, args) VALUES ('notifier_ping', '{\"n\": 7}') RETURNING id"
        )
        started = time.monotonic()
        await db.wait_state(job_id, "completed", timeout=5)
        assert time.monotonic() - started < 0.3 * 1.1 + 1.0


async def test_poll_only_opens_no_listen_connection_and_still_works_jobs(db_url: str) -> None:
    worker = PingWorker()
    config = fast_config(
        make_workers(worker),
        poll_only=True,
        fetch_poll_interval=0.2,
        leader_elect_interval=0.2,
        leader_ttl=1.5,
    )
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        assert client._notifier is None
        assert await listen_backends(db) == []
        results = await client.insert_many([Ping(n=i) for i in range(5)])
        for r in results:
            await db.wait_state(r.job.id, "completed", timeout=5)
        assert sorted(worker.done) == list(range(5))
        # The elector works by polling alone.
        await wait_for(lambda: client.is_leader, timeout=5, message="poll-only client leads")
        assert await listen_backends(db) == []
    # The default mode does listen (the check above is not vacuous).
    config = fast_config(make_workers(PingWorker()), leader_election=False)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        assert client._notifier is not None
        await client._notifier.wait_connected()
        assert await listen_backends(db) == [client._notifier.backend_pid]


async def test_probe_detects_a_silently_dead_connection(db_url: str) -> None:
    received: list[tuple[str, dict[str, Any]]] = []
    reconnects: list[float] = []
    async with CuttableProxy(*server_address(db_url)) as proxy, open_db(db_url) as db:
        notifier = Notifier(
            proxy.url(db_url, "rq-notifier"),
            None,
            lambda topic, payload: received.append((topic, payload)),
            on_reconnect=lambda: reconnects.append(time.monotonic()),
            probe_interval=0.3,
            probe_timeout=0.3,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(notifier.run)
            await notifier.wait_connected()
            assert notifier.channel_schema == "public"
            await db.execute("SELECT pg_notify('public.river_insert', '{\"queue\": \"q\"}')")
            await wait_for(lambda: received, timeout=5, message="a notification")
            assert received == [("river_insert", {"queue": "q"})]

            # The link goes silent: no error, no bytes. Only the probe can tell.
            proxy.freeze()
            frozen_at = time.monotonic()
            await wait_for(
                lambda: notifier.connections >= 2, timeout=10, message="reconnect after probe"
            )
            # Quiet for probe_interval, then a probe_timeout deadline, then backoff (<= 0.5 s).
            assert time.monotonic() - frozen_at < 0.3 + 0.3 + 0.5 + 1.0
            assert len(reconnects) == 1

            # Non-JSON and non-object payloads are ignored; valid ones still arrive.
            for payload in ("not json", "[1, 2]", '{"queue": "r"}'):
                await db.execute("SELECT pg_notify('public.river_insert', %(p)s)", {"p": payload})
            await wait_for(lambda: len(received) >= 2, timeout=5, message="second notification")
            assert received[1:] == [("river_insert", {"queue": "r"})]
            tg.cancel_scope.cancel()
        assert notifier.backend_pid is None
