"""Stopping a client while the database cannot be reached: the outcome writes are retried for
``Config.completer_stop_timeout``, or until ``river worker``'s third signal, then given up (each
job logged, left ``running`` for a rescuer), and the stop returns."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import anyio
import psycopg
import pytest
from helpers import Gate, fast_config, make_workers, wait_for
from netproxy import CuttableProxy, server_address

import river
import river._runtime

pytestmark = pytest.mark.anyio


class Held(river.JobArgs):
    kind: ClassVar[str] = "held_at_stop"


class HeldWorker(river.Worker[Held]):
    def __init__(self) -> None:
        self.gate = Gate()
        self.done: list[int] = []

    async def work(self, job: river.Job[Held]) -> None:
        await self.gate.wait()
        self.done.append(job.id)


def job_state(db_url: str, job_id: int) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT state::text FROM river_job WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def cut_off(db_url: str, proxy: CuttableProxy) -> None:
    """The database becomes unreachable for the client behind ``proxy``: new connections are
    refused and its open ones end, on both sides (a pool connection still being set up once
    escaped the server-side termination alone, and the completer wrote the outcome through
    it)."""
    proxy.sever()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def given_up(caplog: pytest.LogCaptureFixture, job_id: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "river.completer"
        and r.levelno == logging.ERROR
        and f"gave up writing the outcome of job {job_id} " in r.getMessage()
    ]


#: Nothing else in flight when the database goes away (a statement in flight would finish
#: first, up to its own deadline): no leader duties, no polling (the insert's notification
#: brings the job), and the outcome waits for the stop, not for the completer's tick.
QUIET: dict[str, Any] = {
    "leader_election": False,
    "fetch_poll_interval": 60.0,
    "completer_flush_interval": 60.0,
}


@asynccontextmanager
async def cut_off_client(
    db_url: str, name: str, **config: Any
) -> AsyncIterator[tuple[river.AsyncClient, int]]:
    """:func:`run_until_cut_off` behind a proxy of its own; the client is closed after."""
    async with CuttableProxy(*server_address(db_url)) as proxy:
        client, _, job_id = await run_until_cut_off(db_url, proxy, name, **config)
        try:
            yield client, job_id
        finally:
            with anyio.CancelScope(shield=True):
                await client.close()


@pytest.fixture(autouse=True)
def _short_statement_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fetch in flight when the database goes away ends at its deadline (15 s): the stop
    # waits for it before the outcome writes. Shorter here, to keep the tests short.
    monkeypatch.setattr(river._runtime, "STATEMENT_DEADLINE", 2.0)


async def run_until_cut_off(
    db_url: str, proxy: CuttableProxy, name: str, **config: Any
) -> tuple[river.AsyncClient, HeldWorker, int]:
    """A started client behind ``proxy`` running one job; the database is then cut off and
    the job allowed to finish: its outcome cannot be written."""
    worker = HeldWorker()
    client = river.AsyncClient(
        proxy.url(db_url, name), fast_config(make_workers(worker), **{**QUIET, **config})
    )
    await client.start()
    job_id = (await client.insert(Held())).job.id
    await wait_for(lambda: worker.gate.entered.is_set(), timeout=30, message="the job to start")
    cut_off(db_url, proxy)
    worker.gate.open()
    await wait_for(lambda: worker.done == [job_id], timeout=30, message="the job to finish")
    return client, worker, job_id


async def test_stop_gives_up_writes_after_the_stop_timeout(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with cut_off_client(db_url, "stop-bound", completer_stop_timeout=1.0) as (
        client,
        job_id,
    ):
        runtime = client._runtime
        assert runtime is not None
        with anyio.fail_after(30):  # bounded: without the stop timeout it would not return
            await client.stop()
    # Given up, not stale (a stale outcome is one the database saw and did not apply).
    assert (runtime.completer.given_up_at_stop, runtime.completer.stale) == (1, 0)
    [record] = given_up(caplog, job_id)
    assert "kind held_at_stop, queue default, completed" in record.getMessage()
    assert record.job_id == job_id  # type: ignore[attr-defined]
    # Left for a rescuer, as if the process had been killed.
    assert job_state(db_url, job_id) == "running"


async def test_give_up_now_ends_a_stop_that_retries_for_ever(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with cut_off_client(db_url, "stop-forever", completer_stop_timeout=None) as (
        client,
        job_id,
    ):
        runtime = client._runtime
        assert runtime is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.stop)
            # The stop is trying to write the outcome (it waits for a connection).
            await wait_for(
                lambda: runtime.completer._try_scope is not None, timeout=30, message="a try"
            )
            assert not given_up(caplog, job_id)
            with anyio.fail_after(30):
                client._give_up_writes()  # what river worker's third signal does
                await wait_for(lambda: given_up(caplog, job_id), timeout=30, message="give-up")
    assert job_state(db_url, job_id) == "running"


def test_completer_stop_timeout_is_validated() -> None:
    with pytest.raises(river.InvalidConfigError, match="completer_stop_timeout"):
        river.Config(completer_stop_timeout=0)
    with pytest.raises(river.InvalidConfigError, match="completer_stop_timeout"):
        river.Config(completer_stop_timeout="soon")  # type: ignore[arg-type]
    assert river.Config(completer_stop_timeout=None).completer_stop_timeout_seconds is None


async def test_river_worker_third_signal_gives_up_and_exits_unhealthy(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``river worker``'s escalation while the database is away: the first signal stops softly,
    the second cancels the running job, the third gives up writing its outcome (the default
    stop bound, 60 s, would otherwise hold the exit); the exit status says the stop was not
    clean."""
    from river.worker._config import build_plan, load_file
    from river.worker._runner import EXIT_UNHEALTHY, RunnerOptions, WorkerRunner

    caplog.set_level(logging.INFO)
    worker = HeldWorker()
    base = fast_config(make_workers(worker), **QUIET)
    async with CuttableProxy(*server_address(db_url)) as proxy:
        url = proxy.url(db_url, "stop-worker")
        runner = WorkerRunner(
            base, build_plan(load_file(None, {"database": {"url": url}}), base), RunnerOptions()
        )
        try:
            await runner._start()
            job_id = (await runner.client.insert(Held())).job.id
            await wait_for(lambda: worker.gate.entered.is_set(), timeout=30, message="start")
            cut_off(db_url, proxy)
            for _ in range(3):
                runner.request_stop("SIGTERM")
            with anyio.fail_after(30):
                await runner._shutdown()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.client.close()
    assert runner.exit_status == EXIT_UNHEALTHY
    [record] = given_up(caplog, job_id)
    assert "(kind held_at_stop, queue default, available)" in record.getMessage()  # cancelled
    messages = [r.getMessage() for r in caplog.records]
    assert any("SIGTERM a third time: outcome writes that do not go through" in m for m in messages)
    assert any(
        m.startswith("1 job outcomes could not be written before the exit") for m in messages
    )
    assert job_state(db_url, job_id) == "running"


async def test_give_up_now_still_writes_to_a_database_that_answers(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # An impatient third signal with the database up: the outcome still gets its short try.
    caplog.set_level(logging.WARNING)
    worker = HeldWorker()
    config = fast_config(make_workers(worker), leader_election=False, completer_flush_interval=60.0)
    client = river.AsyncClient(db_url, config)
    await client.start()
    try:
        job_id = (await client.insert(Held())).job.id
        worker.gate.open()
        await wait_for(lambda: worker.done == [job_id], timeout=30, message="the job to finish")
        runtime = client._runtime
        assert runtime is not None
        client._give_up_writes()
        # Even past the give-up bound, an outcome not tried yet gets its one short try.
        await wait_for(
            lambda: anyio.current_time() > runtime.completer._give_up_at,
            timeout=10,
            message="the bound to pass",
        )
    finally:
        with anyio.fail_after(30):
            await client.stop()
        await client.close()
    assert job_state(db_url, job_id) == "completed"
    assert not given_up(caplog, job_id)
    assert client._unwritten_at_stop == 0


async def test_stop_behind_a_queue_removal_is_bounded_too(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A removal waits for its queue's outcomes to be written while holding the lock that
    # stop() takes: with the database away, the stop bound starts at the stop request.
    caplog.set_level(logging.WARNING)
    async with (
        cut_off_client(db_url, "stop-removal", completer_stop_timeout=1.0) as (
            client,
            job_id,
        ),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(client.queues.remove, "default")
        await wait_for(lambda: client.queues.lock.locked(), timeout=10, message="removal")
        with anyio.fail_after(30):
            await client.stop()
    assert given_up(caplog, job_id)
    assert job_state(db_url, job_id) == "running"


async def test_a_stop_cuts_short_a_maintenance_statement_stuck_behind_a_lock(
    db_url: str,
) -> None:
    # The leader's maintenance statements are not cancelled half-way (that costs their pool
    # connection) but allowed up to 30 s; a stopping client gives them
    # MAINTENANCE_STOP_GRACE instead. Here the scheduler's statement waits for a table lock
    # another session holds: the stop used to wait for it (30 s, or the lock).
    config = fast_config(
        make_workers(HeldWorker()), **{**QUIET, "leader_election": True}, scheduler_interval=0.1
    )
    client = river.AsyncClient(db_url, config)
    await client.start()
    try:
        await wait_for(lambda: client.is_leader, timeout=30, message="leadership")
        with psycopg.connect(db_url) as locker:
            locker.execute("LOCK TABLE river_job IN ACCESS EXCLUSIVE MODE")

            def maintenance_waits() -> bool:
                with psycopg.connect(db_url, autocommit=True) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                        " AND query NOT ILIKE '%%skip locked%%'"
                    ).fetchone()
                return row is not None and row[0] > 0

            await wait_for(maintenance_waits, timeout=30, message="a maintenance statement")
            started = anyio.current_time()
            await client.stop()  # shielded inside: a fail_after here could not cut it short
            # Well under the guard's 30 s (about the grace plus the fetch deadline here).
            assert anyio.current_time() - started < 20
            locker.rollback()
    finally:
        with anyio.CancelScope(shield=True):
            await client.close()


async def test_a_cut_applies_to_statements_started_after_it_and_to_its_owner_only() -> None:
    # A pass of many statements (a cleaner's backlog) went on with a fresh 30 s guard per
    # statement after the stop cut the one in flight; and two clients sharing a pool the
    # application passed in must not cut each other's statements.
    from river._maintenance import _statement_guard, cut_guards, guard_owner, reset_guards

    class Owner:  # a runtime, or a pool outside one (weakly referenced)
        pass

    pool, mine, theirs = Owner(), Owner(), Owner()
    guard_owner.set(mine)
    cut_guards(mine, 0)
    with pytest.raises(TimeoutError), _statement_guard(pool):  # type: ignore[arg-type]
        await anyio.sleep(5)  # a statement started after the cut: ended at once
    guard_owner.set(theirs)
    with _statement_guard(pool):  # type: ignore[arg-type]
        await anyio.sleep(0.05)  # another client's statement runs as usual
    reset_guards(mine)  # the owner's next run
    guard_owner.set(mine)
    with _statement_guard(pool):  # type: ignore[arg-type]
        await anyio.sleep(0.05)
