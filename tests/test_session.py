"""Session settings of the connections a client opens itself (river/_sql/session.sql).

Timestamps decode in UTC on the client's own pool whatever the server's TimeZone: psycopg
builds datetimes cheaply only for a session in 'UTC', and the client fetches every job through
that pool. A pool or connection the application passes in is never changed.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import anyio
import psycopg
import pytest
from helpers import fast_config, make_workers
from psycopg_pool import AsyncConnectionPool

import river

pytestmark = pytest.mark.anyio


class StampArgs(river.JobArgs):
    kind: ClassVar[str] = "session_stamp"


class StampWorker(river.Worker[StampArgs]):
    def __init__(self) -> None:
        self.seen: list[river.JobRow] = []
        self.done = anyio.Event()

    async def work(self, job: river.Job[StampArgs]) -> None:
        self.seen.append(job.row)
        self.done.set()


def _set_database_timezone(db_url: str, zone: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        dbname = conn.info.dbname
        conn.execute(
            psycopg.sql.SQL("ALTER DATABASE {} SET TimeZone = {}").format(
                psycopg.sql.Identifier(dbname), psycopg.sql.Literal(zone)
            )
        )


async def test_own_pool_decodes_timestamps_in_utc_on_a_server_in_another_zone(
    db_url: str,
) -> None:
    _set_database_timezone(db_url, "Europe/Paris")
    worker = StampWorker()
    async with river.AsyncClient(db_url, fast_config(make_workers(worker))) as client:
        inserted = await client.insert(StampArgs())
        await client.start()
        with anyio.fail_after(10):
            await worker.done.wait()
        await client.stop()
        stored = await client.job_get(inserted.job.id)
    # The worker's row (fetched) and the rows read back are in UTC ...
    (fetched,) = worker.seen
    for when in (fetched.created_at, fetched.scheduled_at, fetched.attempted_at):
        assert when is not None
        assert when.tzinfo is UTC
    assert stored.finalized_at is not None
    assert stored.finalized_at.tzinfo is UTC
    # ... and the same instants a session in Paris reads.
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT created_at, current_setting('TimeZone') FROM river_job WHERE id = %s",
            [inserted.job.id],
        ).fetchone()
    assert row is not None
    paris_created, zone = row
    assert zone == "Europe/Paris"
    assert paris_created.tzinfo == ZoneInfo("Europe/Paris")
    assert paris_created == stored.created_at
    assert paris_created.utcoffset() in (timedelta(hours=1), timedelta(hours=2))


def test_sync_client_own_pool_decodes_timestamps_in_utc(db_url: str) -> None:
    _set_database_timezone(db_url, "America/New_York")
    with river.Client(db_url, fast_config(None, queues={})) as client:
        inserted = client.insert(StampArgs())
        assert client.job_get(inserted.job.id).created_at.tzinfo is UTC


async def test_a_pool_the_application_passes_in_is_left_as_it_is(db_url: str) -> None:
    _set_database_timezone(db_url, "Asia/Tokyo")
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db_url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
    )
    async with pool:
        client = river.AsyncClient(pool, fast_config(None, queues={}))
        inserted = await client.insert(StampArgs())
        row = await client.job_get(inserted.job.id)
        assert row.created_at.tzinfo == ZoneInfo("Asia/Tokyo")
        async with pool.connection() as conn:
            cur = await conn.execute("SHOW TimeZone")
            assert await cur.fetchone() == ("Asia/Tokyo",)


async def test_no_session_setting_behind_a_transaction_pooler(db_url: str) -> None:
    """With pooler="transaction" no connection keeps session state (some poolers pin a client
    after a SET, or hand it on): timestamps then come in the server's zone."""
    _set_database_timezone(db_url, "Europe/Paris")
    config = fast_config(None, queues={}, pooler="transaction")
    async with river.AsyncClient(db_url, config) as client:
        inserted = await client.insert(StampArgs())
        row = await client.job_get(inserted.job.id)
    assert row.created_at.tzinfo == ZoneInfo("Europe/Paris")
