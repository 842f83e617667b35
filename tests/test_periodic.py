"""Periodic jobs (PROTOCOL.md 9.6): the enqueuer's passes with a controlled clock, and the
leader's enqueuer inside a running client (add/remove while running).

Rows are inserted through the client's normal insert path into a real database.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from helpers import DB, assert_stays, fast_config, make_workers, open_db, started_client, wait_for

import river
from river._maintenance import PeriodicJobEnqueuer

pytestmark = pytest.mark.anyio


class Tick(river.JobArgs):
    kind: ClassVar[str] = "periodic_tick"
    name: str


class TickWorker(river.Worker[Tick]):
    def __init__(self) -> None:
        self.names: list[str] = []

    async def work(self, job: river.Job[Tick]) -> None:
        self.names.append(job.args.name)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def tick(name: str) -> Any:
    return lambda: Tick(name=name)


class Runs:
    """Constructors that record each call: one per run the enqueuer makes of a job.

    The enqueuer builds a pass's jobs synchronously before inserting them, so once
    ``periodic_jobs.remove()`` has returned no run of the removed job can begin: the record
    shows exactly what was run, with no grace period for inserts under way."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def tick(self, name: str) -> Callable[[], Tick]:
        def construct() -> Tick:
            self.names.append(name)
            return Tick(name=name)

        return construct


async def rows_by_name(db: DB) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in await db.jobs():
        out.setdefault(row["args"]["name"], []).append(row)
    return out


@pytest.fixture
async def client(db_url: str) -> Any:
    async with river.AsyncClient(db_url, river.Config(workers=make_workers(TickWorker()))) as c:
        yield c


async def test_interval_and_cron_schedules_with_run_on_start(
    client: river.AsyncClient, db_url: str
) -> None:
    t0 = datetime(2024, 1, 1, 12, 1, 30, tzinfo=UTC)
    clock = Clock(t0)
    jobs = [
        river.PeriodicJob(river.PeriodicInterval(60), tick("interval"), id="every_minute"),
        river.PeriodicJob(river.Cron("*/5 * * * *"), tick("cron")),
        river.PeriodicJob(river.PeriodicInterval(60), tick("start"), run_on_start=True, id="st"),
    ]
    enqueuer = PeriodicJobEnqueuer(jobs, client._insert_periodic, clock=clock)
    async with open_db(db_url) as db:
        # On gaining leadership: only run-on-start jobs, and every schedule computed from now.
        assert await enqueuer.run_once(on_start=True) == 1
        assert [enqueuer._next_run(j) for j in jobs] == [
            t0 + timedelta(minutes=1),
            datetime(2024, 1, 1, 12, 5, tzinfo=UTC),
            t0 + timedelta(minutes=1),
        ]
        clock.now = t0 + timedelta(seconds=30)
        assert await enqueuer.run_once() == 0
        # Due within the next 100 ms counts as due.
        clock.now = t0 + timedelta(seconds=59.95)
        assert await enqueuer.run_once() == 2
        # 12:05: the cron job and (overdue, once) the interval jobs; missed runs are skipped.
        clock.now = datetime(2024, 1, 1, 12, 5, tzinfo=UTC)
        assert await enqueuer.run_once() == 3
        assert enqueuer._next_run(jobs[0]) == datetime(2024, 1, 1, 12, 5, 30, tzinfo=UTC)
        assert enqueuer._next_run(jobs[1]) == datetime(2024, 1, 1, 12, 10, tzinfo=UTC)
        assert await enqueuer.run_once() == 0

        rows = await rows_by_name(db)
        assert {k: len(v) for k, v in rows.items()} == {"start": 3, "interval": 2, "cron": 1}
        for row in rows["interval"]:
            assert row["metadata"] == {"periodic": True, "river:periodic_job_id": "every_minute"}
            assert row["state"] == "available"
            assert row["kind"] == "periodic_tick"
        assert rows["cron"][0]["metadata"] == {"periodic": True}  # no id, no id key
        assert rows["start"][0]["metadata"]["river:periodic_job_id"] == "st"


async def test_constructor_none_skips_and_opts_form_and_failures(
    client: river.AsyncClient, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls = {"skip": 0}

    def skipper() -> None:
        calls["skip"] += 1

    def with_opts() -> tuple[river.JobArgs, river.InsertOpts]:
        return Tick(name="opts"), river.InsertOpts(
            queue="reports", priority=3, tags=["nightly"], metadata={"team": "data"}
        )

    def broken() -> river.JobArgs:
        raise RuntimeError("constructor bug")

    clock = Clock(datetime(2024, 1, 1, tzinfo=UTC))
    jobs = [
        river.PeriodicJob(river.PeriodicInterval(10), skipper, run_on_start=True),
        river.PeriodicJob(river.PeriodicInterval(10), with_opts, run_on_start=True, id="rep"),
        river.PeriodicJob(river.PeriodicInterval(10), broken, run_on_start=True, id="broken"),
    ]
    enqueuer = PeriodicJobEnqueuer(jobs, client._insert_periodic, clock=clock)
    with caplog.at_level(logging.ERROR, logger="river.maintenance"):
        assert await enqueuer.run_once(on_start=True) == 1
    assert calls["skip"] == 1
    assert "constructor failed" in caplog.text
    assert "constructor bug" in caplog.text
    # A skipped run still advances the schedule.
    clock.now += timedelta(seconds=10)
    assert await enqueuer.run_once() == 1
    assert calls["skip"] == 2
    async with open_db(db_url) as db:
        rows = await db.jobs()
        assert len(rows) == 2
        for row in rows:
            assert row["args"] == {"name": "opts"}
            assert row["queue"] == "reports"
            assert row["priority"] == 3
            assert row["tags"] == ["nightly"]
            # User metadata is kept; the enqueuer adds its keys.
            assert row["metadata"] == {
                "team": "data",
                "periodic": True,
                "river:periodic_job_id": "rep",
            }


async def test_unique_periodic_job_is_inserted_once(client: river.AsyncClient, db_url: str) -> None:
    def unique() -> tuple[river.JobArgs, river.InsertOpts]:
        return Tick(name="unique"), river.InsertOpts(unique_opts=river.UniqueOpts(by_args=True))

    clock = Clock(datetime(2024, 1, 1, tzinfo=UTC))
    job = river.PeriodicJob(river.PeriodicInterval(1), unique, run_on_start=True, id="uniq")
    enqueuer = PeriodicJobEnqueuer([job], client._insert_periodic, clock=clock)
    await enqueuer.run_once(on_start=True)
    for _ in range(3):
        clock.now += timedelta(seconds=1)
        await enqueuer.run_once()
    async with open_db(db_url) as db:
        # While the first is still available, later runs are duplicates (skipped, no error).
        assert await db.count() == 1


def test_periodic_job_validation() -> None:
    ok = river.PeriodicJob(river.Cron("@hourly"), tick("x"), id="a_valid-id:1")
    assert ok.id == "a_valid-id:1"
    assert ok.run_on_start is False
    with pytest.raises(TypeError):
        river.PeriodicJob(river.Cron("@hourly"), tick("x"), True)  # type: ignore[call-arg]
    with pytest.raises(river.ValidationError, match=r"PeriodicJob\.id"):
        river.PeriodicJob(river.Cron("@hourly"), tick("x"), id="x" * 128)
    with pytest.raises(river.ValidationError, match=r"PeriodicJob\.id"):
        river.PeriodicJob(river.Cron("@hourly"), tick("x"), id="has space")
    with pytest.raises(river.ValidationError, match=r"PeriodicJob\.id"):
        river.PeriodicJob(river.Cron("@hourly"), tick("x"), id="x")  # River (Go): 2+ chars
    with pytest.raises(river.ValidationError, match=r"PeriodicJob\.schedule"):
        river.PeriodicJob("*/5 * * * *", tick("x"))  # type: ignore[arg-type]
    with pytest.raises(river.ValidationError, match=r"PeriodicJob\.construct"):
        river.PeriodicJob(river.Cron("@hourly"), Tick(name="x"))  # type: ignore[arg-type]


async def test_leader_enqueues_periodic_jobs_and_they_can_change_while_running(
    db_url: str,
) -> None:
    worker = TickWorker()
    runs = Runs()
    config = fast_config(
        make_workers(worker),
        leader_elect_interval=0.2,
        leader_ttl=1.5,
        periodic_jobs=[
            river.PeriodicJob(
                river.PeriodicInterval(0.3), runs.tick("fast"), run_on_start=True, id="fast"
            )
        ],
    )
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        await wait_for(lambda: client.is_leader, timeout=5, message="leadership")
        # run_on_start at once, then every 0.3 s; each worked like any job.
        await wait_for(lambda: worker.names.count("fast") >= 3, timeout=5, message="3 fast runs")
        rows = await rows_by_name(db)
        assert all(
            r["metadata"] == {"periodic": True, "river:periodic_job_id": "fast"}
            for r in rows["fast"]
        )

        # Added while running: a cron job (every second) and a run-on-start job.
        added = client.periodic_jobs.add(
            river.PeriodicJob(river.Cron("@every 1s"), runs.tick("cron"))
        )
        client.periodic_jobs.add(
            river.PeriodicJob(
                river.PeriodicInterval(3600), runs.tick("now"), run_on_start=True, id="now"
            )
        )
        await wait_for(lambda: "now" in worker.names, timeout=2, message="run_on_start on add")
        await wait_for(lambda: "cron" in worker.names, timeout=3, message="the added cron job")
        with pytest.raises(river.RiverError, match="already exists"):
            client.periodic_jobs.add(
                river.PeriodicJob(river.PeriodicInterval(1), tick("x"), id="now")
            )
        assert len(client.periodic_jobs.list()) == 3

        # Removed while running (by id and by handle): no more runs of either.
        assert client.periodic_jobs.remove("fast") is True
        assert client.periodic_jobs.remove(added) is True
        assert client.periodic_jobs.remove("fast") is False
        assert [j.id for j in client.periodic_jobs.list()] == ["now"]
        made = len(runs.names)
        await assert_stays(
            lambda: len(runs.names) == made,
            1.3,  # more than a period of each removed job (0.3 s and 1 s)
            message=lambda: f"no run of a removed job (runs since: {runs.names[made:]})",
        )

        async def every_run_inserted() -> bool:
            return await db.count() == made

        await wait_for(every_run_inserted, timeout=5, message=f"{made} rows, one per run")


async def test_no_periodic_jobs_without_leadership(db_url: str) -> None:
    runs = Runs()
    config = fast_config(
        make_workers(TickWorker()),
        leader_election=False,
        periodic_jobs=[
            river.PeriodicJob(river.PeriodicInterval(0.1), runs.tick("x"), run_on_start=True)
        ],
    )
    async with open_db(db_url) as db, started_client(db_url, config):
        await assert_stays(
            lambda: runs.names == [], 0.6, message="no periodic run without leadership"
        )
        assert await db.count() == 0


async def test_periodic_jobs_go_through_the_insert_middleware(db_url: str) -> None:
    # As every insert: a middleware sees (and may change or refuse) the periodic jobs; one it
    # refuses is logged and skipped, the others are inserted.
    seen: list[str] = []

    class TagAndVeto(river.Middleware):
        def insert_many(self, items: list[Any]) -> list[Any]:
            out = []
            for args, opts in items:
                seen.append(args.name)
                if args.name == "vetoed":
                    raise ValueError("not this one")
                tagged = dataclasses.replace(opts or river.InsertOpts(), tags=["from_mw"])
                out.append((args, tagged))
            return out

    config = river.Config(workers=make_workers(TickWorker()), middleware=[TagAndVeto()])
    async with river.AsyncClient(db_url, config) as client, open_db(db_url) as db:
        jobs = [
            river.PeriodicJob(river.PeriodicInterval(60), tick("kept"), run_on_start=True, id="kk"),
            river.PeriodicJob(river.PeriodicInterval(60), tick("vetoed"), run_on_start=True),
        ]
        # As the client builds its own enqueuer.
        enqueuer = PeriodicJobEnqueuer(
            jobs, client._insert_periodic, prepare=client._periodic._prepare
        )
        assert await enqueuer.run_once(on_start=True) == 1
        rows = await rows_by_name(db)
    assert set(rows) == {"kept"}
    assert sorted(seen) == ["kept", "vetoed"]  # once each: a refusal does not run it again
    assert rows["kept"][0]["tags"] == ["from_mw"]
    assert rows["kept"][0]["metadata"]["river:periodic_job_id"] == "kk"


class _Once:
    """A schedule with one run, at ``at``."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def next(self, after: datetime) -> datetime:
        return self.at if after < self.at else datetime.max.replace(tzinfo=UTC)


async def test_a_run_is_inserted_at_its_time_not_before(client: river.AsyncClient) -> None:
    """The enqueuer sleeps until a run's time itself: it woke 100 ms early and inserted then,
    so the job ran early and, with a by_period unique key, counted in the period before (where
    it took the key of that period's run, which was then skipped as a duplicate)."""
    import anyio

    target = datetime.now(UTC) + timedelta(seconds=0.6)
    constructed: list[datetime] = []

    def construct() -> Tick:
        constructed.append(datetime.now(UTC))
        return Tick(name="on_time")

    job = river.PeriodicJob(_Once(target), construct)
    enqueuer = PeriodicJobEnqueuer([job], client._insert_periodic)
    async with anyio.create_task_group() as tg:
        tg.start_soon(enqueuer.run)
        await wait_for(lambda: constructed, timeout=5, message="the run")
        tg.cancel_scope.cancel()
    assert constructed[0] >= target, (constructed[0], target)


class Tagged(river.JobArgs):
    kind: ClassVar[str] = "periodic_tick"
    name: str = "tagged"

    def insert_opts(self) -> river.InsertOpts:
        return river.InsertOpts(metadata={"team": "billing"})


async def test_the_args_class_metadata_is_kept(client: river.AsyncClient, db_url: str) -> None:
    """Metadata from the args class's insert_opts() goes in with the enqueuer's own keys (it
    was dropped: the enqueuer passed its keys as the insert's metadata, which wins)."""
    enqueuer = PeriodicJobEnqueuer(
        [river.PeriodicJob(river.PeriodicInterval(60), Tagged, run_on_start=True, id="tagged")],
        client._insert_periodic,
    )
    assert await enqueuer.run_once(on_start=True) == 1
    async with open_db(db_url) as db:
        (row,) = await db.jobs()
    assert row["metadata"] == {
        "team": "billing", "periodic": True, "river:periodic_job_id": "tagged",
    }  # fmt: skip


async def test_one_job_shared_by_two_enqueuers_runs_on_each(
    client: river.AsyncClient, db_url: str
) -> None:
    """Two clients built from one Config (one per schema, say) share its PeriodicJob objects:
    the next run lived on the shared object, so the first enqueuer to pass moved it on and the
    other never inserted."""
    t0 = datetime(2024, 1, 1, 12, 0, 30, tzinfo=UTC)
    clock = Clock(t0)
    job = river.PeriodicJob(river.PeriodicInterval(60), tick("shared"))
    first = PeriodicJobEnqueuer([job], client._insert_periodic, clock=clock)
    second = PeriodicJobEnqueuer([job], client._insert_periodic, clock=clock)
    for enqueuer in (first, second):
        await enqueuer.run_once(on_start=True)
    clock.now = t0 + timedelta(minutes=1)
    assert await first.run_once() == 1
    assert await second.run_once() == 1


async def test_a_periodic_job_cannot_be_added_twice(client: river.AsyncClient) -> None:
    job = river.PeriodicJob(river.PeriodicInterval(60), tick("twice"), id="twice")
    client.periodic_jobs.add(job)
    with pytest.raises(river.RiverError, match="already added"):
        client.periodic_jobs.add(job)
    with pytest.raises(river.RiverError, match="'twice' already exists"):
        client.periodic_jobs.add(
            river.PeriodicJob(river.PeriodicInterval(5), tick("x"), id="twice")
        )
    with pytest.raises(river.InvalidConfigError) as info:
        river.Config(periodic_jobs=[job, job])
    assert info.value.field == "periodic_jobs[1]"
    other = river.PeriodicJob(river.PeriodicInterval(5), tick("y"), id="twice")
    with pytest.raises(river.InvalidConfigError) as info:
        river.Config(periodic_jobs=[job, other])
    assert info.value.field == "periodic_jobs[1].id"
