"""The supervisor of a client's services (river/_supervisor.py), on its own and in a client.

The first part drives the supervisor with plain coroutines (no database is involved in its
logic); the second crashes real services of a started client against a real Postgres and
checks that they come back, that the crash is logged once with its traceback, and that a
service that keeps crashing makes the client unhealthy.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import anyio
import pytest
from anyio.abc import TaskStatus

import river
from river._supervisor import Supervisor
from tests.helpers import fast_config, make_workers, open_db, started_client, wait_for

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


async def test_a_crash_is_logged_and_the_service_restarts(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    again = anyio.Event()

    async def service(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        runs.append(len(runs))
        if len(runs) < 3:
            raise Boom(f"crash {len(runs)}")
        again.set()
        await anyio.sleep_forever()

    sup = Supervisor(backoff_initial=0.01, backoff_max=0.02)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run, "svc", service)
        with anyio.fail_after(5):
            await again.wait()
        health = sup.health()["svc"]
        assert (health.state, health.restarts, health.healthy) == ("running", 2, True)
        assert health.last_error == "Boom: crash 2"
        tg.cancel_scope.cancel()
    errors = [r for r in caplog.records if r.name == "river.supervisor"]
    assert len(errors) == 2
    assert all(r.levelno == logging.ERROR and r.exc_info for r in errors)
    assert "service svc crashed (1 in a row, 1 restarts in all)" in errors[0].getMessage()


async def test_a_service_that_keeps_crashing_is_failed_then_recovers() -> None:
    crash = True
    changes: list[list[str]] = []
    ran_stably = anyio.Event()

    async def service(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if crash:
            raise Boom("again")
        ran_stably.set()
        await anyio.sleep_forever()

    sup = Supervisor(backoff_initial=0.01, backoff_max=0.01, max_failures=3, stable_after=0.2)
    sup.on_change = lambda: changes.append(sup.failed())
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run, "svc", service)
        await wait_for(lambda: sup.failed() == ["svc"], message="svc failed")
        assert sup.health()["svc"].failures_in_row >= 3
        assert not sup.health()["svc"].healthy
        crash = False
        await ran_stably.wait()
        await wait_for(lambda: sup.failed() == [], message="svc recovered after a stable run")
        assert sup.health()["svc"].state == "running"
        tg.cancel_scope.cancel()
    assert ["svc"] in changes


async def test_a_failure_before_started_is_not_supervised() -> None:
    async def service(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        raise Boom("cannot start")

    sup = Supervisor()
    async with anyio.create_task_group() as tg:
        with pytest.raises(Boom):
            await tg.start(sup.run, "svc", service)
    assert sup.health()["svc"].restarts == 0


async def test_a_service_that_returns_is_stopped_and_not_restarted() -> None:
    runs = 0

    async def service(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()

    sup = Supervisor()
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run, "svc", service)
    assert runs == 1
    assert sup.health()["svc"].state == "stopped"


# --- in a client --------------------------------------------------------------------------


class Ping(river.JobArgs):
    kind: ClassVar[str] = "supervised_ping"


class PingWorker(river.Worker[Ping]):
    def __init__(self) -> None:
        self.done: list[int] = []

    async def work(self, job: river.Job[Ping]) -> None:
        self.done.append(job.id)


def _crash_once(monkeypatch: pytest.MonkeyPatch, owner: Any, method: str) -> list[int]:
    """Make ``owner.method`` raise on its first call (a stand-in for a bug in that service)."""
    original = getattr(owner, method)
    calls: list[int] = []

    async def crashing(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise Boom(f"bug in {method}")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(owner, method, crashing)
    return calls


async def test_a_crashed_fetch_loop_restarts_and_works_jobs(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from river._producer import Producer

    calls = _crash_once(monkeypatch, Producer, "_fetch_loop_body")
    worker = PingWorker()
    config = fast_config(make_workers(worker), leader_election=False)
    async with started_client(db_url, config) as client:
        job_id = (await client.insert(Ping())).job.id
        await wait_for(lambda: job_id in worker.done, message="job worked after the restart")
        health = client.health()
        assert health.healthy
        assert health.services["producer:default"].restarts == 1
        assert "bug in _fetch_loop_body" in (health.services["producer:default"].last_error or "")
    assert len(calls) >= 2
    crashes = [r for r in caplog.records if r.name == "river.supervisor"]
    assert len(crashes) == 1
    assert crashes[0].exc_info


async def test_a_poller_that_keeps_crashing_makes_the_client_unhealthy(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from river._poller import Poller

    async def broken(self: Any) -> None:
        raise Boom("poller bug")

    monkeypatch.setattr(Poller, "_tick", broken)
    worker = PingWorker()
    config = fast_config(make_workers(worker), leader_election=False)
    async with started_client(db_url, config) as client:
        client._runtime.supervisor.backoff_initial = client._runtime.supervisor.backoff_max = 0.01
        await wait_for(lambda: not client.health().healthy, message="client unhealthy")
        health = client.health()
        assert health.failed == ["poller"]
        assert health.services["poller"].state == "failed"
        # The rest keeps working: the notifier still wakes the producer for a new job.
        job_id = (await client.insert(Ping())).job.id
        await wait_for(lambda: job_id in worker.done, message="job worked while unhealthy")
    async with open_db(db_url) as db:
        assert await db.state(job_id) == "completed"


async def test_leadership_lost_and_won_again_while_the_old_term_unwinds(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The maintenance-scope race: a term that is still unwinding when the next one begins
    must not clear the next term's scope, or losing leadership again would leave that term's
    maintenance running on a client that no longer leads."""
    from river._maintenance import Scheduler

    unwinding = anyio.Event()
    release = anyio.Event()
    original = Scheduler.run

    async def slow_to_stop(
        self: Scheduler, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await original(self, task_status=task_status)
        finally:
            if not release.is_set():  # the first term only: a statement still in flight
                unwinding.set()
                with anyio.CancelScope(shield=True):
                    await release.wait()

    monkeypatch.setattr(Scheduler, "run", slow_to_stop)
    from river._runtime import Runtime

    terms_over: list[int] = []
    main = Runtime._maintenance_main

    async def recorded(self: Runtime, term: int) -> None:
        try:
            await main(self, term)
        finally:
            terms_over.append(term)

    monkeypatch.setattr(Runtime, "_maintenance_main", recorded)
    config = fast_config(make_workers(PingWorker()), leader_elect_interval=0.2)

    def maintenance() -> dict[str, str]:
        services = client.health().services.items()
        return {n: h.state for n, h in services if n.startswith("maintenance:")}

    async with started_client(db_url, config) as client:
        await wait_for(lambda: client.is_leader, message="leadership")
        await wait_for(lambda: maintenance().get("maintenance:scheduler") == "running")
        client._runtime.leadership_changed(False)
        await unwinding.wait()
        client._runtime.leadership_changed(True)  # won again while the first term still unwinds
        await wait_for(lambda: maintenance().get("maintenance:periodic") == "running")
        release.set()
        await wait_for(lambda: len(terms_over) == 1, message="the first term to end")
        assert client._runtime._maintenance_scope is not None, (
            "the first term cleared the second's scope"
        )
        client._runtime.leadership_changed(False)
        await wait_for(
            lambda: set(maintenance().values()) == {"stopped"},
            message=lambda: f"the second term to stop: {maintenance()}",
        )


# --- river worker ---------------------------------------------------------------------------


async def test_readyz_and_metrics_name_a_failed_service(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from river._poller import Poller
    from river.worker._config import build_plan, load_file
    from river.worker._runner import RunnerOptions, WorkerRunner

    async def broken(self: Any) -> None:
        raise Boom("poller bug")

    monkeypatch.setattr(Poller, "_tick", broken)
    base = fast_config(make_workers(PingWorker()), leader_election=False)
    plan = build_plan(load_file(None, {"database": {"url": db_url}}), base)
    runner = WorkerRunner(base, plan, RunnerOptions())
    try:
        await runner._start()
        runner.client._runtime.supervisor.backoff_initial = (
            runner.client._runtime.supervisor.backoff_max
        ) = 0.01
        await wait_for(lambda: not runner.client.health().healthy, message="unhealthy")
        status, body = await runner._routes("/readyz")
        assert (status, body) == (503, "not ready: services failed: poller\n")
        metrics = runner.metrics_text()
        assert 'river_service_up{service="poller"} 0' in metrics
        assert 'river_service_up{service="completer"} 1' in metrics
        restarts = int(
            metrics.split('river_service_restarts_total{service="poller"} ')[1].split()[0]
        )
        assert restarts >= 5
    finally:
        await runner.client.stop()
        await runner.client.close()


def test_river_worker_exits_when_a_service_keeps_failing(db_url: str) -> None:
    """A process that can no longer work says so: five crashes of the poller in a row, then
    the worker stops and exits with status 3 (its process manager starts a fresh one)."""
    from worker_apps.harness import running_worker, worker_env

    with running_worker(["worker_apps.broken_poller:make_config"], worker_env(db_url)) as worker:
        worker.wait_for("worker started")
        assert worker.wait_exit(timeout=30) == 3, worker.output()
    output = worker.output()
    assert output.count("service poller crashed") >= 5, output
    assert "crashed (5 in a row, 5 restarts in all)" in output
    assert "RuntimeError: poller bug" in output  # the traceback, logged with each crash
    assert "services failed (poller: RuntimeError: poller bug): stopping, exit status 3" in output
    assert "worker stopped" in output


# --- what a restart must not hide ------------------------------------------------------------


class Mutates(river.JobArgs):
    kind: ClassVar[str] = "mutates_metadata"


class MutatesWorker(river.Worker[Mutates]):
    async def work(self, job: river.Job[Mutates]) -> None:
        value: list[Any] = [1]
        river.set_metadata("k", value)  # checked and staged
        value.append(object())  # changed after the call: it can no longer be encoded


async def test_an_outcome_whose_staged_metadata_cannot_be_encoded_is_still_written(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The completer writes the outcome without the metadata (logged), loses no other outcome,
    and flushed()/queues.remove() do not wait for ever."""
    config = fast_config(make_workers(MutatesWorker(), PingWorker()), leader_election=False)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        bad = (await client.insert(Mutates())).job.id
        good = (await client.insert(Ping())).job.id
        await db.wait_state(bad, "completed")
        await db.wait_state(good, "completed")
        with anyio.fail_after(10):
            await client.queues.remove("default")
        assert "k" not in (await db.job(bad))["metadata"]
    assert any("cannot be encoded" in r.getMessage() for r in caplog.records)


async def test_a_row_with_malformed_errors_is_fetched_and_worked(db_url: str) -> None:
    """Rows written by another implementation decode leniently: a malformed errors[].at must
    not crash the fetch loop after the rows were locked (they would wait for the rescuer)."""
    worker = PingWorker()
    config = fast_config(make_workers(worker), leader_election=False)
    async with open_db(db_url) as db:
        await db.execute(
            "INSERT INTO river_job (kind, args, queue, state, max_attempts, errors)"
            " VALUES ('supervised_ping', '{}', 'default', 'available', 5,"
            ' ARRAY[\'{"at": "not a time", "attempt": 1e400, "error": "x"}\'::jsonb])'
        )
        job_id = await db.scalar("SELECT id FROM river_job")
        async with started_client(db_url, config) as client:
            await db.wait_state(job_id, "completed")
            assert client.health().services["producer:default"].restarts == 0
    assert job_id in worker.done


async def test_a_restarted_periodic_enqueuer_does_not_insert_run_on_start_jobs_again(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from river._maintenance import PeriodicJobEnqueuer

    crashed = anyio.Event()
    original = PeriodicJobEnqueuer._safe_once

    async def crash_after_start(self: PeriodicJobEnqueuer, *, on_start: bool = False) -> None:
        await original(self, on_start=on_start)
        if not on_start and not crashed.is_set():
            crashed.set()
            raise Boom("periodic bug")

    monkeypatch.setattr(PeriodicJobEnqueuer, "_safe_once", crash_after_start)
    on_start = river.PeriodicJob(river.PeriodicInterval(60), lambda: Ping(), run_on_start=True)
    config = fast_config(
        make_workers(PingWorker()), leader_elect_interval=0.2, periodic_jobs=[on_start]
    )
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        await db.wait_count(1)  # the start pass
        # Adding a job wakes the enqueuer for a regular pass, which crashes (a stand-in bug).
        client.periodic_jobs.add(river.PeriodicJob(river.PeriodicInterval(60), lambda: None))
        await crashed.wait()
        await wait_for(
            lambda: (
                client.health().services["maintenance:periodic"].state == "running"
                and client.health().services["maintenance:periodic"].restarts == 1
            ),
            message="the periodic enqueuer restarted",
        )
        # A negative assertion needs a window: the restarted enqueuer would insert the
        # run-on-start job at once if it ran its start pass again.
        watch_until = anyio.current_time() + 1.0
        while anyio.current_time() < watch_until:
            assert await db.count() == 1, "the run-on-start job was inserted again"
            await anyio.sleep(0.05)


async def test_a_bad_periodic_job_does_not_hold_back_the_others(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad = river.PeriodicJob(
        river.PeriodicInterval(60),
        lambda: (Ping(), river.InsertOpts(queue="not a queue!")),
        run_on_start=True,
        id="bad",
    )
    good = river.PeriodicJob(river.PeriodicInterval(60), lambda: Ping(), run_on_start=True)
    config = fast_config(
        make_workers(PingWorker()), leader_elect_interval=0.2, periodic_jobs=[bad, good]
    )
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        await db.wait_count(1, "kind = 'supervised_ping'")
        assert client.health().services["maintenance:periodic"].restarts == 0
    assert any("periodic job bad" in r.getMessage() for r in caplog.records)


class Held(river.JobArgs):
    kind: ClassVar[str] = "held_until_opened"


class HeldWorker(river.Worker[Held]):
    def __init__(self) -> None:
        from tests.helpers import Gate

        self.gate = Gate()

    async def work(self, job: river.Job[Held]) -> None:
        await self.gate.wait()


async def test_a_silently_dead_link_does_not_hold_outcomes_or_fetches(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pooled connection's link freezes (a pulled cable: no error, no bytes; new
    connections work): the outcome written on a frozen connection and the next fetch give up
    after the statement deadline and go through a fresh connection, instead of waiting for
    the kernel to drop the socket (many minutes). Measured at scale: bench/faults.py
    network-freeze-30s."""
    from river import _runtime
    from tests.netproxy import CuttableProxy, server_address

    monkeypatch.setattr(_runtime, "STATEMENT_DEADLINE", 1.0)
    held = HeldWorker()
    worker = PingWorker()
    config = fast_config(make_workers(held, worker), leader_election=False)
    async with (
        CuttableProxy(*server_address(db_url)) as proxy,
        open_db(db_url) as db,
        started_client(proxy.url(db_url, "rq-frozen"), config) as client,
    ):
        first = (await client.insert(Held())).job.id
        await db.wait_state(first, "running")
        await wait_for(held.gate.entered.is_set, message="the job runs")
        proxy.freeze()
        held.gate.open()  # its outcome is now written on a frozen connection
        await db.wait_state(first, "completed", timeout=15)
        second = (await client.insert(Ping())).job.id
        await db.wait_state(second, "completed", timeout=15)
    assert second in worker.done
