"""Hooks and middleware (order, effects), record_output / set_metadata, OpenTelemetry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import psycopg
import pytest
from opentelemetry import trace

import river
from river import _telemetry
from tests.helpers import fast_config, make_workers, started_client, wait_for


class Greet(river.JobArgs):
    kind: ClassVar[str] = "greet"
    name: str


class Fail(river.JobArgs):
    kind: ClassVar[str] = "fail_always"


calls: list[str] = []


class GreetWorker(river.Worker[Greet]):
    async def work(self, job: river.Job[Greet]) -> None:
        calls.append(f"worker:{job.args.name}")
        river.record_output({"greeted": job.args.name})
        river.set_metadata("lang", "en")


class FailWorker(river.Worker[Fail]):
    async def work(self, job: river.Job[Fail]) -> None:
        river.record_output("partial")
        raise ValueError("nope")


class Recording(river.Middleware):
    def __init__(self, name: str) -> None:
        self.name = name

    def insert_many(self, items: list[Any]) -> list[Any]:
        calls.append(f"{self.name}:insert_many:{len(items)}")
        out = []
        for args, opts in items:
            meta = dict((opts.metadata if opts else None) or {})
            meta[f"seen_by_{self.name}"] = True
            out.append((args, river.InsertOpts(metadata=meta, queue=opts.queue if opts else None)))
        return out

    def insert_begin(self, args: river.JobArgs, opts: river.InsertOpts | None) -> None:
        calls.append(f"{self.name}:insert_begin")

    def work_begin(self, job: river.Job[Any]) -> None:
        calls.append(f"{self.name}:work_begin")

    async def work(self, job: river.Job[Any], call_next: Callable[[], Awaitable[None]]) -> None:
        calls.append(f"{self.name}:before")
        try:
            await call_next()
        finally:
            calls.append(f"{self.name}:after")

    def work_end(self, job: river.Job[Any], error: BaseException | None) -> BaseException | None:
        calls.append(f"{self.name}:work_end:{type(error).__name__ if error else None}")
        return error


class Rescue(river.Middleware):
    """Turns a failure into a success (work_end may replace the error)."""

    def work_end(self, job: river.Job[Any], error: BaseException | None) -> BaseException | None:
        return None


class Veto(river.Middleware):
    def insert_begin(self, args: river.JobArgs, opts: river.InsertOpts | None) -> None:
        raise river.ValidationError("args", "vetoed by middleware")


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


@pytest.mark.anyio
async def test_order_of_hooks_and_middleware(db_url: str) -> None:
    config = fast_config(
        make_workers(GreetWorker()), middleware=[Recording("outer"), Recording("inner")]
    )
    async with started_client(db_url, config) as client:
        result = await client.insert(Greet(name="ada"))
        await wait_for(lambda: any(c.startswith("inner:work_end") for c in calls))
        row = await wait_for(lambda: _completed(client, result.job.id), message="job completed")
    assert calls[:4] == [
        "outer:insert_many:1",
        "inner:insert_many:1",
        "outer:insert_begin",
        "inner:insert_begin",
    ]
    assert calls[4:] == [
        "outer:work_begin",
        "inner:work_begin",
        "outer:before",
        "inner:before",
        "worker:ada",
        "inner:after",
        "outer:after",
        "outer:work_end:None",
        "inner:work_end:None",
    ]
    # Insert middleware changed what was stored; staged metadata was merged on completion.
    assert row.metadata["seen_by_outer"] is True
    assert row.metadata["seen_by_inner"] is True
    assert row.metadata["output"] == {"greeted": "ada"}
    assert row.metadata["lang"] == "en"


async def _completed(client: river.AsyncClient, job_id: int) -> river.JobRow | None:
    row = await client.job_get(job_id)
    return row if row.state is river.JobState.COMPLETED else None


@pytest.mark.anyio
async def test_work_end_can_replace_an_error_and_output_is_kept_on_failure(db_url: str) -> None:
    config = fast_config(make_workers(FailWorker()), middleware=[Rescue()])
    async with started_client(db_url, config) as client:
        result = await client.insert(Fail())
        row = await wait_for(lambda: _completed(client, result.job.id))
    assert row.errors == []
    assert row.metadata["output"] == "partial"

    config = fast_config(make_workers(FailWorker()))
    async with started_client(db_url, config) as client:
        result = await client.insert(Fail(), river.InsertOpts(max_attempts=1))

        async def discarded() -> river.JobRow | None:
            job = await client.job_get(result.job.id)
            return job if job.state is river.JobState.DISCARDED else None

        row = await wait_for(discarded)
    assert row.metadata["output"] == "partial"
    assert row.errors[0].error == "ValueError: nope"


def test_insert_hook_can_veto_before_any_sql(conn: psycopg.Connection) -> None:
    client = river.Client(config=river.Config(middleware=[Veto()]))
    with pytest.raises(river.ValidationError, match="vetoed"):
        client.insert_tx(conn, Greet(name="x"))
    assert conn.execute("SELECT count(*) FROM river_job").fetchone() == (0,)


class DropAll(river.Middleware):
    def insert_many(self, items: list[Any]) -> list[Any]:
        return []


class Doubles(river.Middleware):
    def insert_many(self, items: list[Any]) -> list[Any]:
        return items + items


@pytest.mark.parametrize("middleware", [DropAll(), Doubles()])
def test_insert_middleware_must_leave_one_job_for_insert(
    conn: psycopg.Connection, middleware: river.Middleware
) -> None:
    """insert() returns one result: a middleware that filtered the job out made it fail with
    an IndexError after the statement ran, and one that added a job inserted it silently."""
    with river.Client(conn.info.dsn, river.Config(middleware=[middleware])) as client:
        with pytest.raises(river.RiverError, match=r"returned (0|2) jobs for insert"):
            client.insert(Greet(name="x"))
        assert client.insert_many([Greet(name="y")]) is not None  # many: any number
    count = conn.execute("SELECT count(*) FROM river_job WHERE args->>'name' = 'x'").fetchone()
    assert count == (0,)


def test_record_output_outside_a_job_raises() -> None:
    with pytest.raises(RuntimeError, match="while working a job"):
        river.record_output(1)
    with pytest.raises(RuntimeError):
        river.set_metadata("k", 1)


@pytest.mark.anyio
async def test_reserved_and_unencodable_metadata_rejected(db_url: str) -> None:
    errors: list[BaseException] = []

    class Bad(river.JobArgs):
        kind: ClassVar[str] = "bad_meta"

    class BadWorker(river.Worker[Bad]):
        async def work(self, job: river.Job[Bad]) -> None:
            for call in (
                lambda: river.set_metadata("river:x", 1),
                lambda: river.record_output(object()),
            ):
                try:
                    call()
                except river.ValidationError as exc:
                    errors.append(exc)

    async with started_client(db_url, fast_config(make_workers(BadWorker()))) as client:
        result = await client.insert(Bad())
        await wait_for(lambda: _completed(client, result.job.id))
    assert [e.field for e in errors] == ["key", "output"]  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_spans_and_metrics(db_url: str, otel: Any) -> None:
    exporter, reader = otel
    async with started_client(db_url, fast_config(make_workers(GreetWorker()))) as client:
        result = await client.insert(Greet(name="otel"))
        await wait_for(lambda: _completed(client, result.job.id))
        await wait_for(lambda: any(s.name == "river.work" for s in exporter.get_finished_spans()))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    insert = spans["river.insert"]
    work = spans["river.work"]
    assert insert.kind is trace.SpanKind.PRODUCER
    assert insert.attributes["messaging.batch.message_count"] == 1
    # OpenTelemetry's messaging conventions, so that tracing back ends classify the spans.
    assert insert.attributes["messaging.operation.type"] == "send"
    assert insert.attributes["messaging.destination.name"] == "default"
    assert work.kind is trace.SpanKind.CONSUMER
    assert work.attributes["messaging.operation.type"] == "process"
    assert work.attributes["messaging.destination.name"] == "default"
    assert work.attributes["messaging.message.id"] == str(result.job.id)
    assert work.attributes["river.kind"] == "greet"
    assert work.attributes["river.job.id"] == result.job.id
    assert work.attributes["river.outcome"] == "job_completed"

    data = reader.get_metrics_data()
    points = {
        m.name: m.data.data_points
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    (count,) = points["river.jobs"]
    assert count.value == 1
    assert dict(count.attributes) == {
        "river.kind": "greet",
        "river.queue": "default",
        "river.status": "completed",
    }
    (duration,) = points["river.job.duration"]
    assert duration.count == 1
    assert "river.job.id" not in duration.attributes  # no high-cardinality attributes
    # Bounds in seconds, as the unit says (the SDK's defaults are for milliseconds: every
    # attempt under 5 s fell in one bucket).
    assert tuple(duration.explicit_bounds) == _telemetry.DURATION_BUCKETS
    assert duration.explicit_bounds[0] == 0.005


def test_no_sdk_means_no_tracer() -> None:
    assert _telemetry.TELEMETRY.tracer() is None
