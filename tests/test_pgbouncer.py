"""Through a real PgBouncer in transaction mode (tests/pgbouncer.py starts a private one).

With ``Config(pooler="transaction", poll_only=True)`` everything the library does works
through it: inserts of every kind, admin calls, the sync client, working 2,000 jobs, leader
election and maintenance, migrations through the CLI. Without ``pooler`` the same run fails
with ``prepared statement ... already exists`` (PgBouncer 1.18 hands a connection's prepared
statements to whichever client it serves next); with LISTEN left on, ``start()`` refuses and
says what to set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import psycopg
import pytest

import river
from river import cli
from tests import pgbouncer
from tests.helpers import fast_config, make_workers, open_db, wait_for

pytestmark = pytest.mark.anyio

if pgbouncer.binary() is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI must test through PgBouncer: install Debian's pgbouncer package")
    pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)", allow_module_level=True)


@pytest.fixture(scope="module")
def bouncer(server_url: str) -> Iterator[str]:
    """URL template (``{dbname}``) of a PgBouncer in transaction mode."""
    with pgbouncer.running(server_url) as template:
        yield template


@pytest.fixture
def pooled_url(bouncer: str, db_url: str) -> str:
    """``db_url``'s database, reached through PgBouncer."""
    return bouncer.format(dbname=psycopg.conninfo.conninfo_to_dict(db_url)["dbname"])


class Tick(river.JobArgs):
    kind: ClassVar[str] = "tick"
    n: int


class TickWorker(river.Worker[Tick]):
    def __init__(self) -> None:
        self.done: set[int] = set()

    async def work(self, job: river.Job[Tick]) -> None:
        self.done.add(job.args.n)


def _pooled_config(worker: river.Worker[Any], **overrides: Any) -> river.Config:
    settings: dict[str, Any] = {
        "pooler": "transaction",
        "poll_only": True,
        "queues": {"default": river.QueueConfig(max_workers=100)},
        "leader_elect_interval": 0.2,
        "scheduler_interval": 0.2,
    }
    settings.update(overrides)
    return fast_config(make_workers(worker), **settings)


def _pooler_errors(records: list[logging.LogRecord]) -> list[str]:
    """Log lines of the library that mention an error (there must be none)."""
    return [
        r.getMessage()
        for r in records
        if r.name.startswith("river") and r.levelno >= logging.WARNING
    ]


async def test_2000_jobs_inserts_and_admin_calls_through_pgbouncer(
    pooled_url: str, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    worker = TickWorker()
    async with river.AsyncClient(pooled_url, _pooled_config(worker)) as client:
        # Every insert path, each more often than psycopg's prepare threshold (5).
        for n in range(10):
            await client.insert(Tick(n=n))
        for start in range(10, 1010, 100):
            await client.insert_many([Tick(n=n) for n in range(start, start + 100)])
        for start in range(1010, 2000, 110):
            await client.insert_many_fast([Tick(n=n) for n in range(start, start + 110)])
        await wait_for(lambda: len(worker.done) == 2000, timeout=60, message="2,000 jobs worked")
        await wait_for(lambda: client.is_leader, message="leadership through PgBouncer")
        for _ in range(8):
            jobs = (await client.job_list(river.JobListParams(limit=10))).jobs
            assert len(jobs) == 10
            assert (await client.job_get(jobs[0].id)).id == jobs[0].id
            await client.queue_list()
            await client.queue_pause("default")
            await client.queue_resume("default")
        cancelled = await client.job_cancel((await client.insert(Tick(n=-1))).job.id)
        assert cancelled.id > 0
    assert worker.done == set(range(2000))
    assert _pooler_errors(caplog.records) == []
    async with open_db(db_url) as db:
        assert await db.count("state = 'completed'") == 2000


def test_sync_client_through_pgbouncer(pooled_url: str, db_url: str) -> None:
    with river.Client(pooled_url, river.Config(pooler="transaction")) as client:
        ids = [client.insert(Tick(n=n)).job.id for n in range(10)]
        client.insert_many([Tick(n=n) for n in range(10)])
        for job_id in ids:
            assert client.job_get(job_id).id == job_id
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM river_job").fetchone() == (20,)


def test_migrations_through_pgbouncer(
    bouncer: str, empty_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI prepares nothing: migrating up, down and up again works through the pooler."""
    url = bouncer.format(dbname=psycopg.conninfo.conninfo_to_dict(empty_db_url)["dbname"])
    for argv in (["migrate-up"], ["migrate-down", "--target-version", "0"], ["migrate-up"]):
        assert cli.main([*argv, "--database-url", url]) == 0, capsys.readouterr().err
    assert cli.main(["validate", "--database-url", url]) == 0


async def test_without_the_pooler_setting_prepared_statements_break(pooled_url: str) -> None:
    """Why the setting exists: the library prepares its hot statements, and PgBouncer 1.18 in
    transaction mode lends the server connection that holds them to another client (here two
    clients taking turns, so both land on the same idle server connection)."""
    if pgbouncer.version(pgbouncer.binary() or "") >= (1, 21):
        pytest.skip("PgBouncer 1.21+ tracks prepared statements when max_prepared_statements > 0")
    config = river.Config(poll_only=True)
    async with (
        river.AsyncClient(pooled_url, config) as a,
        river.AsyncClient(pooled_url, config) as b,
    ):
        errors: list[psycopg.Error] = []
        for n in range(10):
            for client in (a, b):
                try:
                    await client.insert(Tick(n=n))
                except psycopg.errors.DatabaseError as exc:
                    errors.append(exc)
        assert errors
        assert all("prepared statement" in str(e) for e in errors), errors


async def test_pooler_without_poll_only_refuses_to_start(pooled_url: str) -> None:
    client = river.AsyncClient(pooled_url, _pooled_config(TickWorker(), poll_only=False))
    with pytest.raises(river.InvalidConfigError) as info:
        await client.start()
    assert info.value.field == "poll_only"
    assert "LISTEN" in str(info.value)
    await client.close()


async def test_listen_through_a_transaction_pooler_is_detected_at_start(pooled_url: str) -> None:
    """No pooler setting, LISTEN on: the notifier's probe never comes back through PgBouncer,
    and start() says why and what to set instead of silently running without wake-ups."""
    config = _pooled_config(TickWorker(), pooler=None, poll_only=False)
    client = river.AsyncClient(pooled_url, config)
    with pytest.raises(river.ListenUnavailableError) as info:
        await client.start()
    message = str(info.value)
    assert "poll_only=True" in message
    assert 'pooler="transaction"' in message
    assert not client.running
    await client.close()
