"""Leader election between real clients on one database (PROTOCOL.md 8).

Every test runs two (or one) started AsyncClients with short election settings
(``leader_elect_interval=0.2``, ``leader_ttl=1.5``) and waits on conditions with deadlines.
Failover is tested as a real outage: the leader reaches Postgres through a TCP proxy owned by
the test, which stops accepting connections, and every backend of the leader (found by its
``application_name``) is ended with ``pg_terminate_backend``; the leader can then neither renew
its term nor reconnect until the proxy is opened again.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, ClassVar

import anyio
import psycopg
import pytest
from helpers import DB, assert_stays, fast_config, make_workers, open_db, started_client, wait_for
from netproxy import CuttableProxy, server_address
from psycopg import sql

import river
from river.testing import signals

pytestmark = pytest.mark.anyio

ELECT = 0.2
TTL = 1.5
#: The elector's random extra wait per interval: 1 s at most, a fifth of short intervals.
JITTER = min(1.0, ELECT / 5)


class Noop(river.JobArgs):
    kind: ClassVar[str] = "leader_noop"


class NoopWorker(river.Worker[Noop]):
    def __init__(self) -> None:
        self.done: list[int] = []

    async def work(self, job: river.Job[Noop]) -> None:
        self.done.append(job.id)


def leader_config(client_id: str, **overrides: Any) -> river.Config:
    settings: dict[str, Any] = {
        "id": client_id,
        "leader_elect_interval": ELECT,
        "leader_ttl": TTL,
        "scheduler_interval": 0.2,
    }
    settings.update(overrides)
    return fast_config(make_workers(NoopWorker()), **settings)


async def leader_row(db: DB) -> dict[str, Any] | None:
    rows = await db.all(
        "SELECT leader_id, elected_at, expires_at, expires_at > now() AS live FROM river_leader"
    )
    assert len(rows) <= 1
    return rows[0] if rows else None


async def wait_leader(
    db: DB, clients: list[river.AsyncClient], timeout: float = 10.0
) -> river.AsyncClient:
    """Wait until exactly one of ``clients`` leads and the river_leader row names it."""

    async def check() -> river.AsyncClient | None:
        leaders = [c for c in clients if c.is_leader]
        if len(leaders) != 1:
            return None
        row = await leader_row(db)
        return leaders[0] if row is not None and row["leader_id"] == leaders[0].id else None

    leader: river.AsyncClient = await wait_for(
        check,
        timeout=timeout,
        interval=0.02,
        message=lambda: f"one leader among {[(c.id, c.is_leader) for c in clients]}",
    )
    return leader


class Listener:
    """An async LISTEN on ``<current_schema>.<topic>``, collecting raw payloads."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], channel: str) -> None:
        self.conn = conn
        self.channel = channel
        self.payloads: list[str] = []

    async def wait_payload(self, predicate: Any, timeout: float = 10.0) -> str:
        """The first payload received so far (or until ``timeout``) matching ``predicate``.

        ``notifies()`` is always drained to its own timeout: leaving its generator early drops
        the other notifications that came in the same packet."""
        deadline = time.monotonic() + timeout
        while True:
            for p in self.payloads:
                if predicate(p):
                    return p
            if time.monotonic() >= deadline:
                raise AssertionError(f"no matching payload on {self.channel}; got {self.payloads}")
            async for n in self.conn.notifies(timeout=0.05):
                self.payloads.append(n.payload)


@asynccontextmanager
async def listening(db_url: str, topic: str) -> AsyncIterator[Listener]:
    conn = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
    async with conn:
        cur = await conn.execute("SELECT current_schema()")
        row = await cur.fetchone()
        assert row is not None
        channel = f"{row[0]}.{topic}"
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        yield Listener(conn, channel)


async def terminate_app(db: DB, application_name: str) -> int:
    rows = await db.all(
        "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity"
        # This test's database only: client ids repeat across tests (and pytest-xdist workers).
        " WHERE application_name = %(app)s AND datname = current_database()"
        " AND pid <> pg_backend_pid()",
        {"app": application_name},
    )
    return len(rows)


# --- tests ------------------------------------------------------------------------------------


async def test_two_clients_elect_exactly_one_leader_and_keep_the_term(db_url: str) -> None:
    async with (
        open_db(db_url) as db,
        started_client(db_url, leader_config("client-a")) as a,
        started_client(db_url, leader_config("client-b")) as b,
    ):
        leader = await wait_leader(db, [a, b])
        first = await leader_row(db)
        assert first is not None
        assert first["live"]
        # Over several renewals (each 0.2-1.2 s) the term stays the same and keeps being
        # extended, and the other client never claims leadership.
        await assert_stays(
            lambda: [c.id for c in (a, b) if c.is_leader] == [leader.id],
            2.5,
            interval=0.05,
            message=f"{leader.id} the only leader",
        )
        row = await leader_row(db)
        assert row is not None
        assert (row["leader_id"], row["elected_at"]) == (first["leader_id"], first["elected_at"])
        assert row["expires_at"] > first["expires_at"]
        assert row["live"]
        # One term: leadership gained once, never lost.
        assert signals(leader).leadership.drain() == [True]


async def test_a_short_ttl_close_to_the_interval_keeps_one_stable_term(db_url: str) -> None:
    # Valid settings (ttl > interval): renewals must come within the TTL every time, so the
    # jitter cannot be a fixed second (it once was: such a leader lost every other term).
    # The interval leaves each renewal ~0.4 s before the trusted term ends (0.72 s after the
    # last one): with 0.5, a commit slowed past ~0.15 s by a busy server lost the term.
    config = leader_config("client-a", leader_elect_interval=0.25, leader_ttl=0.9)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        await wait_leader(db, [client])
        first = await leader_row(db)
        assert first is not None
        # The term is not only held but trusted: the leader's maintenance acts (the trust
        # margin was a fixed second, so a TTL under a second was never trusted: the scheduler
        # skipped every pass while nobody else could lead).
        trusted = await assert_trusted_throughout(client, 3.0)
        assert trusted > 0.5, trusted
        row = await leader_row(db)
        assert row is not None
        assert row["elected_at"] == first["elected_at"]
        assert signals(client).leadership.drain() == [True]
        job_id = await db.scalar(
            "INSERT INTO river_job (kind, args, state, scheduled_at) VALUES ('leader_noop', '{}',"
            " 'scheduled', now() + interval '0.3 seconds') RETURNING id"
        )
        await db.wait_state(job_id, "completed", timeout=5)


async def assert_trusted_throughout(client: river.AsyncClient, seconds: float) -> float:
    """Sample the leader for ``seconds``: it must lead throughout; returns the share of the
    samples in which it also trusted its term."""
    elector = client._runtime.elector
    assert elector is not None
    samples = trusted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert client.is_leader
        samples += 1
        trusted += elector.trusted()
        await anyio.sleep(0.05)
    return trusted / samples


def test_a_ttl_the_leader_could_never_trust_is_refused() -> None:
    for interval, ttl in ((10.0, 11.0), (1.0, 1.5), (0.5, 0.7)):
        with pytest.raises(river.InvalidConfigError) as info:
            river.Config(leader_elect_interval=interval, leader_ttl=ttl)
        assert info.value.field == "leader_ttl"
        assert "trusted term" in info.value.rule


async def test_leader_resigns_on_stop_and_the_follower_takes_over_at_once(db_url: str) -> None:
    # A long elect interval: a follower that takes over within a second was woken by the
    # resignation notification, not by its own timer.
    slow = {"leader_elect_interval": 5.0, "leader_ttl": 15.0}
    async with (
        open_db(db_url) as db,
        listening(db_url, "river_leadership") as listener,
        AsyncExitStack() as stack,
    ):
        a = await stack.enter_async_context(
            started_client(db_url, leader_config("client-a", **slow))
        )
        b = await stack.enter_async_context(
            started_client(db_url, leader_config("client-b", **slow))
        )
        leader = await wait_leader(db, [a, b])
        follower = b if leader is a else a
        await leader.stop()  # resigns on its way out
        stopped_at = time.monotonic()
        assert not leader.is_leader
        payload = await listener.wait_payload(lambda p: "resigned" in p)
        # The exact text River (Go) sends (json_build_object spacing).
        assert payload == f'{{"leader_id" : "{leader.id}", "action" : "resigned"}}'
        assert json.loads(payload) == {"leader_id": leader.id, "action": "resigned"}
        new = await wait_leader(db, [follower], timeout=4.0)
        assert new is follower
        # Its own timer is up to 5 s away.
        assert time.monotonic() - stopped_at < 3.0, "the follower was not woken by the resignation"


async def test_failover_when_the_leaders_connections_are_terminated(db_url: str) -> None:
    host, port = server_address(db_url)
    async with (
        open_db(db_url) as db,
        CuttableProxy(host, port) as proxy_a,
        CuttableProxy(host, port) as proxy_b,
        AsyncExitStack() as stack,
    ):
        proxies = {"client-a": proxy_a, "client-b": proxy_b}
        a = await stack.enter_async_context(
            started_client(proxy_a.url(db_url, "rq-client-a"), leader_config("client-a"))
        )
        b = await stack.enter_async_context(
            started_client(proxy_b.url(db_url, "rq-client-b"), leader_config("client-b"))
        )
        leader = await wait_leader(db, [a, b])
        follower = b if leader is a else a
        old = await leader_row(db)
        assert old is not None

        # The leader's host drops off the network: no new connection gets through, and every
        # backend it had (pool and LISTEN connection) is terminated.
        proxies[leader.id].cut()
        killed_at = time.monotonic()
        assert await terminate_app(db, f"rq-{leader.id}") >= 2
        proxies[leader.id].sever()  # and a connection still being set up (no name yet)

        both: list[float] = []

        async def follower_leads() -> bool:
            if leader.is_leader and follower.is_leader:
                both.append(time.monotonic())
            row = await leader_row(db)
            return follower.is_leader and row is not None and row["leader_id"] == follower.id

        bound = TTL + ELECT + JITTER + 1.5  # + slack for a loaded machine
        await wait_for(follower_leads, timeout=bound, interval=0.02, message="failover")
        took = time.monotonic() - killed_at
        assert took <= bound
        # The old leader gave up locally (its term could not be renewed) before the lease
        # ended, so the two never led at the same time.
        assert not leader.is_leader
        assert both == []
        new = await leader_row(db)
        assert new is not None
        assert new["elected_at"] > old["elected_at"]

        # The old leader comes back as a follower and does not take leadership back.
        proxies[leader.id].mend()
        await wait_for(
            lambda: (
                leader._runtime.notifier is not None and leader._runtime.notifier.connections >= 2
            ),
            timeout=15,
            message="old leader's notifier reconnected",
        )
        await assert_stays(
            lambda: follower.is_leader and not leader.is_leader,
            ELECT + JITTER,  # one election attempt of the old leader
            message="the follower keeps leading",
        )
        row = await leader_row(db)
        assert row is not None
        assert row["leader_id"] == follower.id


@pytest.mark.parametrize("outsider_kind", ["async", "sync"])
async def test_request_resign_makes_the_leader_resign_and_someone_lead_again(
    db_url: str, outsider_kind: str
) -> None:
    async with (
        open_db(db_url) as db,
        listening(db_url, "river_leadership") as listener,
        started_client(db_url, leader_config("client-a")) as a,
        started_client(db_url, leader_config("client-b")) as b,
        river.AsyncClient(db_url) as outsider,
    ):
        await wait_leader(db, [a, b])
        old = await leader_row(db)
        assert old is not None
        if outsider_kind == "async":
            await outsider.request_resign()
        else:
            with river.Client(db_url) as sync_outsider:
                await anyio.to_thread.run_sync(sync_outsider.request_resign)
        request = await listener.wait_payload(lambda p: "request_resign" in p)
        assert json.loads(request) == {"action": "request_resign", "leader_id": ""}
        resigned = await listener.wait_payload(lambda p: "resigned" in p and "request" not in p)
        assert json.loads(resigned) == {"leader_id": old["leader_id"], "action": "resigned"}

        async def new_term() -> bool:
            row = await leader_row(db)
            return row is not None and row["elected_at"] != old["elected_at"]

        await wait_for(new_term, timeout=5, message="a new term after request_resign")
        leader = await wait_leader(db, [a, b])
        gained = [g for c in (a, b) for g in signals(c).leadership.drain() if g]
        assert len(gained) == 2, f"one term before the request and one after (leader {leader.id})"


async def test_a_foreign_leader_blocks_election_until_its_term_expires(db_url: str) -> None:
    async with open_db(db_url) as db:
        # Another process (e.g. a River (Go) client) holds leadership for 5 more seconds
        # (what the client's start leaves of them is checked below).
        await db.execute(
            "INSERT INTO river_leader (leader_id, elected_at, expires_at)"
            " VALUES ('go-client', now(), now() + interval '5 seconds')"
        )
        # A due scheduled job: only a leader's scheduler makes it available.
        job_id = await db.scalar(
            "INSERT INTO river_job (kind, args, state, scheduled_at)"
            " VALUES ('leader_noop', '{}', 'scheduled', now() - interval '1 minute') RETURNING id"
        )
        async with started_client(db_url, leader_config("client-a")) as client:
            expires = await db.scalar("SELECT expires_at - now() AS left FROM river_leader")
            assert expires.total_seconds() > 1, "the client took the whole term to start"

            async def follower_without_maintenance() -> bool:
                return not client.is_leader and await db.in_state(job_id, "scheduled")

            await assert_stays(
                follower_without_maintenance,
                expires.total_seconds() - 0.3,  # the foreign term, less a margin
                interval=0.05,
                message="no leadership and no maintenance while the foreign term lasts",
            )
            await wait_leader(db, [client], timeout=TTL + ELECT + JITTER + 1.0)
            # Leadership brings maintenance: the scheduler promotes the job and it is worked.
            await db.wait_state(job_id, "completed", timeout=5)

            # Someone deletes the term and takes over: the client notices at its next renewal,
            # gives up leadership and stops its maintenance services.
            await db.execute("DELETE FROM river_leader")
            await db.execute(
                "INSERT INTO river_leader (leader_id, elected_at, expires_at)"
                " VALUES ('go-client', now(), now() + interval '1 hour')"
            )
            await wait_for(lambda: not client.is_leader, timeout=5, message="leadership lost")
            await signals(client).maintenance.wait_for(False, timeout=5)  # maintenance stopped
            late = await db.scalar(
                "INSERT INTO river_job (kind, args, state, scheduled_at)"
                " VALUES ('leader_noop', '{}', 'scheduled', now() - interval '1 minute')"
                " RETURNING id"
            )
            await assert_stays(
                lambda: db.in_state(late, "scheduled"),
                1.0,  # several scheduler intervals
                message="no maintenance after leadership is lost",
            )
            row = await leader_row(db)
            assert row is not None
            assert row["leader_id"] == "go-client"


async def test_leader_election_disabled_writes_no_row_and_runs_no_maintenance(db_url: str) -> None:
    config = leader_config("client-a", leader_election=False)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        job_id = await db.scalar(
            "INSERT INTO river_job (kind, args, state, scheduled_at)"
            " VALUES ('leader_noop', '{}', 'scheduled', now() - interval '1 minute') RETURNING id"
        )
        available = await client.insert(Noop())
        await db.wait_state(available.job.id, "completed")  # the client does work jobs
        await assert_stays(
            lambda: not client.is_leader,
            TTL + ELECT,  # long enough for a term to be won and to expire
            message="never leader with election disabled",
        )
        assert signals(client).leadership.drain() == []
        assert signals(client).maintenance.drain() == []
        assert await leader_row(db) is None
        assert await db.state(job_id) == "scheduled"


async def test_maintenance_runs_only_on_the_leader(db_url: str) -> None:
    async with (
        open_db(db_url) as db,
        started_client(db_url, leader_config("client-a")) as a,
        started_client(db_url, leader_config("client-b", leader_election=False)) as b,
    ):
        leader = await wait_leader(db, [a, b])
        assert leader is a
        job_id = await db.scalar(
            "INSERT INTO river_job (kind, args, state, scheduled_at)"
            " VALUES ('leader_noop', '{}', 'scheduled', now() - interval '1 minute') RETURNING id"
        )
        await db.wait_state(job_id, "completed", timeout=5)
        assert signals(a).maintenance.drain() == [True]  # started, still running
        assert signals(b).maintenance.drain() == []


async def test_a_leader_past_its_trusted_term_sends_no_maintenance_statement(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A leader whose process or event loop stalled past its term (SIGSTOP, a worker blocking
    # the loop) may have been replaced: when it resumes, its overdue maintenance timers fire
    # before its elector notices, and it used to insert periodic jobs and promote jobs beside
    # the new leader. Every maintenance statement now checks the term is still trusted. Here
    # the stall is simulated: the term's trust runs out, and renewal never completes.
    import logging

    from river._elector import Elector

    caplog.set_level(logging.INFO, logger="river.maintenance")

    class Tick(river.JobArgs):
        kind: ClassVar[str] = "leader_noop"

    ticks = river.PeriodicJob(river.PeriodicInterval(0.2), Tick)
    config = leader_config(
        "stalled", periodic_jobs=[ticks], leader_elect_interval=5.0, leader_ttl=15.0
    )
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        await wait_leader(db, [client])
        await wait_for(lambda: db.scalar("SELECT count(*) FROM river_job"), message="a tick")
        runtime = client._runtime
        assert runtime is not None
        assert runtime.elector is not None

        async def never(self: Elector) -> bool:
            await anyio.sleep_forever()
            return True  # pragma: no cover

        monkeypatch.setattr(Elector, "_attempt_reelect", never)
        runtime.elector._trusted_until = time.monotonic() - 1  # the stall
        await wait_for(
            lambda: any("pass skipped" in r.getMessage() for r in caplog.records),
            message="a maintenance pass skipped",
        )
        before = await db.scalar("SELECT count(*) FROM river_job")
        await assert_stays(
            lambda: db.scalar("SELECT count(*) = %(n)s FROM river_job", {"n": before}), seconds=1.0
        )
