"""Connections the server closed while they sat idle in a pool (a restart, a failover,
``pg_terminate_backend``) are found on checkout and replaced: the insert, fetch or write that
draws one does not fail (river/_pool.py)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import anyio
import psycopg
import pytest
from helpers import fast_config, make_workers, open_db, wait_for, wait_for_sync
from netproxy import CuttableProxy, server_address
from psycopg_pool import AsyncConnectionPool, ConnectionPool

import river
from river._pool import _readable, closed_by_server

pytestmark = pytest.mark.anyio


class Ping(river.JobArgs):
    kind: ClassVar[str] = "stale_ping"
    n: int


class PingWorker(river.Worker[Ping]):
    def __init__(self) -> None:
        self.seen: list[int] = []

    async def work(self, job: river.Job[Ping]) -> None:
        self.seen.append(job.args.n)


def terminate(db_url: str, pids: list[int]) -> None:
    """End the sessions ``pids`` as a restarting server would, and wait until they are gone."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE pid = ANY(%s)",
            (pids,),
        ).fetchone()
        assert ended == (len(pids),)
        wait_for_sync(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
                ).fetchone()
                == (0,)
            ),
            timeout=10,
            message="the terminated sessions to end",
        )


async def idle_pids(pool: AsyncConnectionPool[Any], count: int) -> list[int]:
    """The server pids of ``count`` connections of ``pool``, all given back (idle) after."""
    conns = [await pool.getconn() for _ in range(count)]
    pids = [c.info.backend_pid for c in conns]
    for c in conns:
        await pool.putconn(c)
    return pids


def river_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("river") and r.levelno >= logging.WARNING
    ]


async def test_closed_by_server_reads_only_what_is_pending(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        assert not closed_by_server(conn)  # nothing pending
        received: list[str] = []
        conn.add_notify_handler(lambda n: received.append(n.payload))
        await conn.execute("LISTEN stale_test")
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as other:
            await other.execute("NOTIFY stale_test, 'hello'")
        # A notification pending on an idle connection: read and kept, the connection is fine.
        await wait_for(lambda: _readable(conn.pgconn.socket), message="the notification")
        assert not closed_by_server(conn)
        assert not _readable(conn.pgconn.socket)  # it was read...
        await conn.execute("SELECT 1")
        assert received == ["hello"]  # ...and psycopg delivers it after the next statement
        terminate(db_url, [conn.info.backend_pid])
        # The server's error, then the end of the stream: bad, and nothing was sent.
        assert closed_by_server(conn)
        assert conn.pgconn.status == psycopg.pq.ConnStatus.BAD


async def test_closed_by_server_before_the_end_of_the_stream_arrives(db_url: str) -> None:
    # The server's FATAL error has arrived, the closing of its socket not (yet): the session
    # is over all the same, and the connection is closed so that a pool discards it.
    async with CuttableProxy(*server_address(db_url)) as proxy:
        url = proxy.url(db_url, "stale-linger")
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            proxy.linger()
            terminate(db_url, [conn.info.backend_pid])
            await wait_for(lambda: closed_by_server(conn), timeout=10, message="the FATAL")
            assert conn.closed


async def test_insert_after_the_server_closed_every_idle_connection(db_url: str) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db_url, min_size=3, max_size=3, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    try:
        async with river.AsyncClient(pool) as client:
            await client.insert(Ping(n=1))
            terminate(db_url, await idle_pids(pool, 3))
            # Every idle connection is dead: each is handed back and replaced, no error.
            result = await client.insert(Ping(n=2))
            assert result.job.args == {"n": 2}
            assert pool.get_stats()["returns_bad"] == 3
    finally:
        await pool.close()


def test_sync_insert_after_the_server_closed_every_idle_connection(db_url: str) -> None:
    pool: ConnectionPool[Any] = ConnectionPool(
        db_url, min_size=2, max_size=2, open=False, kwargs={"autocommit": True}
    )
    pool.open(wait=True)
    try:
        with river.Client(pool) as client:
            client.insert(Ping(n=1))
            conns = [pool.getconn() for _ in range(2)]
            pids = [c.info.backend_pid for c in conns]
            for c in conns:
                pool.putconn(c)
            terminate(db_url, pids)
            assert client.insert(Ping(n=2)).job.args == {"n": 2}
            assert pool.get_stats()["returns_bad"] == 2
    finally:
        pool.close()


async def test_worker_goes_on_without_an_error_after_its_connections_die(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    worker = PingWorker()
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db_url, min_size=3, max_size=3, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    client = river.AsyncClient(pool, fast_config(make_workers(worker)))
    try:
        await client.start()
        await client.insert(Ping(n=1))
        await wait_for(lambda: worker.seen == [1], timeout=30, message="the first job to run")
        pids = await idle_pids(pool, 3)
        caplog.clear()
        terminate(db_url, pids)
        # The fetch loop, the completer, the maintenance services and this insert all check
        # connections out of the same pool; none of them may fail on a dead one.
        await client.insert(Ping(n=2))
        await wait_for(lambda: worker.seen == [1, 2], timeout=30, message="the second job")
        async with open_db(db_url) as db:
            await db.wait_count(2, "state = 'completed'", timeout=30)
        assert pool.get_stats()["returns_bad"] == 3
        assert river_warnings(caplog) == []
    finally:
        with anyio.CancelScope(shield=True):
            await client.stop()
            await pool.close()
