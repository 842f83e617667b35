"""OpenTelemetry (issue 13): providers found whatever the import order, trace context carried
from insert to work in the job's metadata, the leader's queue depth (OTel gauge and
``river worker``'s Prometheus text), and the worker's job metrics.

Spans and metrics go to the SDK's in-memory exporters; jobs are worked against the test
database. The import-order tests run in a fresh interpreter each (the order is the point).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from psycopg_pool import AsyncConnectionPool

import river
from river import _telemetry
from river._driver import InsertBatch, queries_for
from river._events import Event, JobStatistics
from river._telemetry import TELEMETRY, TRACE_CONTEXT_KEY
from river._types import JobRow, JobState
from river.worker._health import relabel_metrics
from river.worker._metrics import JobMetrics, queue_depth_lines
from tests.conftest import REPO_ROOT
from tests.helpers import fast_config, make_workers, open_db, started_client, wait_for


class Ping(river.JobArgs):
    kind: ClassVar[str] = "otel_ping"
    n: int = 0


class PingWorker(river.Worker[Ping]):
    async def work(self, job: river.Job[Ping]) -> None:
        return None


def _spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for point in m.data.data_points
    ]


async def _metadata(db_url: str, job_id: int) -> dict[str, Any]:
    async with open_db(db_url) as db:
        value: dict[str, Any] = await db.scalar(
            "SELECT metadata FROM river_job WHERE id = %(id)s", {"id": job_id}
        )
    return value


async def _completed(db_url: str, job_id: int) -> bool:
    async with open_db(db_url) as db:
        return await db.state(job_id) == "completed"


# --------------------------------------------------------------------------------------------
# Providers: any import order
# --------------------------------------------------------------------------------------------

_IMPORT_ORDER_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from typing import ClassVar

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    order, url = sys.argv[1], sys.argv[2]
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()

    def install():
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    if order == "sdk-first":
        install()
    # river's modules load lazily: naming AsyncClient loads the client and its telemetry.
    import river
    from river import AsyncClient
    if order == "river-first":
        install()

    class Ping(river.JobArgs):
        kind: ClassVar[str] = "otel_ping"

    class PingWorker(river.Worker[Ping]):
        async def work(self, job):
            return None

    async def main():
        workers = river.Workers()
        workers.add(PingWorker())
        config = river.Config(
            workers=workers,
            queues={"default": river.QueueConfig()},
            fetch_poll_interval=0.05,
            completer_flush_interval=0.005,
            leader_election=False,
        )
        async with AsyncClient(url, config) as client:
            with trace.get_tracer("app").start_as_current_span("app"):
                job = (await client.insert(Ping())).job
            for _ in range(1000):
                names = {s.name for s in exporter.get_finished_spans()}
                if (await client.job_get(job.id)).state.value == "completed" and (
                    "river.work" in names
                ):
                    break
                await asyncio.sleep(0.01)
        spans = {s.name: s for s in exporter.get_finished_spans()}
        data = reader.get_metrics_data()
        names = sorted(
            m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        )
        work = spans.get("river.work")
        print(json.dumps({
            "spans": sorted(spans),
            "metrics": names,
            "same_trace": work is not None
            and work.context.trace_id == spans["app"].context.trace_id,
        }))

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("order", ["sdk-first", "river-first"])
def test_sdk_installed_before_or_after_importing_river(
    db_url: str, tmp_path: Path, order: str
) -> None:
    script = tmp_path / "app.py"
    script.write_text(_IMPORT_ORDER_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), order, db_url],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["spans"] == ["app", "river.insert", "river.work"], report
    assert {"river.jobs", "river.job.duration"} <= set(report["metrics"]), report
    assert report["same_trace"], report


def test_inert_providers_mean_no_instrumentation() -> None:
    saved = (trace._TRACER_PROVIDER, metrics._internal._METER_PROVIDER)
    try:
        assert TELEMETRY.tracer() is None
        assert not TELEMETRY.bind_metrics()
        # An application may also install the API's no-op providers explicitly.
        trace._TRACER_PROVIDER = trace.NoOpTracerProvider()
        metrics._internal._METER_PROVIDER = metrics.NoOpMeterProvider()
        assert TELEMETRY.tracer() is None
        assert not TELEMETRY.bind_metrics()
        trace._TRACER_PROVIDER = TracerProvider()
        assert TELEMETRY.tracer() is not None
    finally:
        trace._TRACER_PROVIDER, metrics._internal._METER_PROVIDER = saved
    assert TELEMETRY.tracer() is None


# --------------------------------------------------------------------------------------------
# Trace context from insert to work
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_work_span_is_a_child_of_the_insert(db_url: str, otel: Any) -> None:
    exporter, _ = otel
    tracer = trace.get_tracer("app")
    async with started_client(db_url, fast_config(make_workers(PingWorker()))) as client:
        with tracer.start_as_current_span("app") as app:
            job = (await client.insert(Ping())).job
        await wait_for(lambda: _spans(exporter, "river.work"), message="river.work span")
    (insert,) = _spans(exporter, "river.insert")
    (work,) = _spans(exporter, "river.work")
    trace_id = app.get_span_context().trace_id
    assert insert.parent is not None
    assert insert.parent.span_id == app.get_span_context().span_id
    assert work.context.trace_id == trace_id
    assert work.parent is not None
    assert work.parent.span_id == insert.context.span_id
    assert work.parent.is_remote
    assert not work.links
    stored = (await _metadata(db_url, job.id))[TRACE_CONTEXT_KEY]
    assert list(stored) == ["traceparent"]  # no tracestate: none was set
    version, stored_trace, stored_span, flags = stored["traceparent"].split("-")
    assert (version, stored_trace, stored_span) == (
        "00",
        f"{trace_id:032x}",
        f"{insert.context.span_id:016x}",
    )
    assert int(flags, 16) & 1  # sampled
    assert job.metadata == {TRACE_CONTEXT_KEY: stored}  # the returned row says the same


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["link", "none"])
async def test_work_span_linked_or_apart(db_url: str, otel: Any, mode: str) -> None:
    exporter, _ = otel
    config = fast_config(make_workers(PingWorker()), otel_work_span=mode)
    # Started inside a span of the application's start-up: the jobs' tasks inherit that
    # context, and must not make every attempt a child of it.
    with trace.get_tracer("app").start_as_current_span("startup"):
        client_cm = started_client(db_url, config)
        client = await client_cm.__aenter__()
    try:
        with trace.get_tracer("app").start_as_current_span("app"):
            job = (await client.insert(Ping())).job
        await wait_for(lambda: _spans(exporter, "river.work"), message="river.work span")
    finally:
        await client_cm.__aexit__(None, None, None)
    (insert,) = _spans(exporter, "river.insert")
    (work,) = _spans(exporter, "river.work")
    assert work.context.trace_id != insert.context.trace_id
    assert work.parent is None
    if mode == "link":
        (link,) = work.links
        assert link.context.trace_id == insert.context.trace_id
        assert link.context.span_id == insert.context.span_id
    else:
        assert not work.links
    # The context is stored whatever the mode: another client may work the job.
    assert TRACE_CONTEXT_KEY in await _metadata(db_url, job.id)


@pytest.mark.anyio
async def test_a_job_without_a_stored_context_is_worked_in_a_new_trace(
    db_url: str, otel: Any
) -> None:
    # Inserted with no span current (or by River (Go), or before an SDK was installed): the
    # attempt starts a trace of its own, whatever span was current when the client started.
    exporter, _ = otel
    with trace.get_tracer("app").start_as_current_span("startup") as startup:
        client_cm = started_client(db_url, fast_config(make_workers(PingWorker())))
        await client_cm.__aenter__()
    try:
        # As River (Go) inserts it: no trace context in the metadata.
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute("INSERT INTO river_job (kind, args) VALUES (%s, '{}')", (Ping.kind,))
        await wait_for(lambda: _spans(exporter, "river.work"), message="river.work span")
    finally:
        await client_cm.__aexit__(None, None, None)
    (work,) = _spans(exporter, "river.work")
    assert work.parent is None
    assert not work.links
    assert work.context.trace_id != startup.get_span_context().trace_id


@pytest.mark.anyio
async def test_every_insert_path_stores_the_trace_context(db_url: str, otel: Any) -> None:
    tracer = trace.get_tracer("app")
    opts = river.InsertOpts(metadata={"tenant": "a"})
    client = river.AsyncClient(db_url, river.Config(workers=make_workers(PingWorker())))
    sync_client = river.Client(db_url, river.Config(workers=make_workers(PingWorker())))
    ids: list[int] = []
    async with client:
        with tracer.start_as_current_span("app") as app:
            ids.append((await client.insert(Ping(n=1))).job.id)
            ids.extend(r.job.id for r in await client.insert_many([Ping(n=2), (Ping(n=3), opts)]))
            assert await client.insert_many_fast([Ping(n=4), (Ping(n=5), opts)]) == 2
            async with await psycopg.AsyncConnection.connect(db_url) as conn:
                ids.append((await client.insert_tx(conn, Ping(n=6))).job.id)
                await client.insert_many_tx(conn, [(Ping(n=7), opts)])
                await client.insert_many_fast_tx(conn, [Ping(n=8)])
            with sync_client:
                ids.append(sync_client.insert(Ping(n=9)).job.id)
                sync_client.insert_many([(Ping(n=10), opts)])
                sync_client.insert_many_fast([Ping(n=11)])
    trace_id = f"{app.get_span_context().trace_id:032x}"
    async with open_db(db_url) as db:
        rows = await db.all("SELECT args->>'n' AS n, metadata FROM river_job ORDER BY id")
    assert [int(r["n"]) for r in rows] == list(range(1, 12))
    for row in rows:
        metadata = row["metadata"]
        assert metadata[TRACE_CONTEXT_KEY]["traceparent"].split("-")[1] == trace_id, row
        if int(row["n"]) in (3, 5, 7, 10):
            assert metadata["tenant"] == "a", row  # the user's metadata is kept


@pytest.mark.anyio
async def test_no_span_means_no_metadata_change(db_url: str) -> None:
    """Without an SDK and without a current span context nothing is stored; a context
    propagated into the application (no SDK: a non-recording span) is stored all the same."""
    assert TELEMETRY.tracer() is None
    async with river.AsyncClient(db_url, river.Config(skip_unknown_job_check=True)) as client:
        plain = (await client.insert(Ping())).job
        await client.insert_many_fast([Ping(n=1)])
        remote = SpanContext(
            trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=TraceFlags(1)
        )
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
        try:
            propagated = (await client.insert(Ping(n=2))).job
        finally:
            otel_context.detach(token)
    assert plain.metadata == {}
    assert await _metadata(db_url, plain.id) == {}
    async with open_db(db_url) as db:
        assert await db.scalar("SELECT metadata FROM river_job WHERE args->>'n' = '1'") == {}
    assert await _metadata(db_url, propagated.id) == {
        TRACE_CONTEXT_KEY: {"traceparent": f"00-{0x1234:032x}-{0x5678:016x}-01"}
    }


@pytest.mark.anyio
async def test_trace_context_is_not_part_of_the_unique_key(db_url: str, otel: Any) -> None:
    tracer = trace.get_tracer("app")
    opts = river.InsertOpts(unique_opts=river.UniqueOpts(by_args=True))
    async with river.AsyncClient(db_url, river.Config(skip_unknown_job_check=True)) as client:
        with tracer.start_as_current_span("first"):
            first = await client.insert(Ping(n=1), opts)
        with tracer.start_as_current_span("second"):
            second = await client.insert(Ping(n=1), opts)
    assert not first.unique_skipped_as_duplicate
    assert second.unique_skipped_as_duplicate
    assert second.job.id == first.job.id


def test_stored_context_is_merged_into_encoded_metadata() -> None:
    batch = InsertBatch()
    batch.metadata = [
        "{}",
        '{"a":1}',
        '{"note":"river:otel"}',
        '{"river:otel":{"traceparent":"explicit"}}',
        "{ }",
    ]
    remote = SpanContext(trace_id=1, span_id=2, is_remote=True, trace_flags=TraceFlags(1))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
    try:
        _telemetry._store_trace_context(batch)
    finally:
        otel_context.detach(token)
    stored = {"traceparent": f"00-{1:032x}-{2:016x}-01"}
    assert [json.loads(text) for text in batch.metadata] == [
        {TRACE_CONTEXT_KEY: stored},
        {"a": 1, TRACE_CONTEXT_KEY: stored},
        {"note": "river:otel", TRACE_CONTEXT_KEY: stored},
        {TRACE_CONTEXT_KEY: {"traceparent": "explicit"}},  # an explicit value wins
        {TRACE_CONTEXT_KEY: stored},
    ]


@pytest.mark.parametrize(
    "value",
    [
        None,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # not an object
        {"traceparent": "garbage"},
        {"traceparent": 42},
        {"tracestate": "a=b"},
        {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
    ],
)
def test_work_span_origin_ignores_what_it_cannot_use(value: Any) -> None:
    metadata = {} if value is None else {TRACE_CONTEXT_KEY: value}
    for mode in ("child", "link", "none"):
        # A new trace: an empty context, never the one current where the job runs.
        assert TELEMETRY.work_span_origin(metadata, mode) == (Context(), None)  # type: ignore[arg-type]


def test_work_span_origin_modes() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    metadata = {TRACE_CONTEXT_KEY: {"traceparent": traceparent, "tracestate": "vendor=x"}}
    parent, links = TELEMETRY.work_span_origin(metadata, "child")
    assert links is None
    assert parent is not None
    span_context = trace.get_current_span(parent).get_span_context()
    assert span_context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span_context.trace_state.get("vendor") == "x"
    parent, links = TELEMETRY.work_span_origin(metadata, "link")
    assert parent == Context()
    assert links is not None
    assert links[0].context.span_id == 0xB7AD6B7169203331
    assert TELEMETRY.work_span_origin(metadata, "none") == (Context(), None)


def test_config_validates_the_telemetry_options() -> None:
    with pytest.raises(river.InvalidConfigError, match="otel_work_span"):
        river.Config(otel_work_span="parent")  # type: ignore[arg-type]
    with pytest.raises(river.InvalidConfigError, match="queue_depth_interval"):
        river.Config(queue_depth_interval=0)
    assert river.Config(queue_depth_interval=None).queue_depth_interval_seconds is None
    assert river.Config().queue_depth_interval_seconds == 10.0
    assert river.Config().otel_work_span == "child"


# --------------------------------------------------------------------------------------------
# Queue depth: the leader's sample
# --------------------------------------------------------------------------------------------

_EXPECTED_DEPTH = {
    ("alpha", "available"): 2,
    ("alpha", "pending"): 0,
    ("alpha", "retryable"): 0,
    ("alpha", "running"): 0,
    ("alpha", "scheduled"): 1,
    ("idle", "available"): 0,
    ("idle", "pending"): 0,
    ("idle", "retryable"): 0,
    ("idle", "running"): 0,
    ("idle", "scheduled"): 0,
}


async def _seed_depth(db_url: str) -> None:
    async with open_db(db_url) as db:
        await db.execute(
            "INSERT INTO river_job (args, kind, max_attempts, queue, state, scheduled_at,"
            " finalized_at) VALUES"
            " ('{}', 'k', 25, 'alpha', 'available', now(), NULL),"
            " ('{}', 'k', 25, 'alpha', 'available', now(), NULL),"
            " ('{}', 'k', 25, 'alpha', 'scheduled', now() + interval '1 hour', NULL),"
            " ('{}', 'k', 25, 'alpha', 'completed', now(), now())"
        )
        await db.execute(
            "INSERT INTO river_queue (name, created_at, updated_at) VALUES ('idle', now(), now())"
        )


@pytest.mark.anyio
async def test_queue_depth_sampler_counts_by_queue_and_state(db_url: str) -> None:
    from river._maintenance import QueueDepthSampler

    await _seed_depth(db_url)
    async with AsyncConnectionPool(db_url, min_size=1, max_size=1, open=False) as pool:
        sampler = QueueDepthSampler(pool, queries_for(None))
        assert sampler.sample is None
        assert await sampler.run_once() == _EXPECTED_DEPTH
        assert sampler.sample == _EXPECTED_DEPTH


@pytest.mark.anyio
async def test_queue_depth_is_reported_by_the_leader_only(db_url: str, otel: Any) -> None:
    _, reader = otel
    await _seed_depth(db_url)
    workers = make_workers(PingWorker())
    follower_config = fast_config(workers, leader_election=False, queue_depth_interval=0.05)
    leader_config = fast_config(
        workers, leader_elect_interval=0.2, leader_ttl=5.0, queue_depth_interval=0.05
    )
    async with (
        started_client(db_url, follower_config) as follower,
        started_client(db_url, leader_config) as leader,
    ):
        await wait_for(lambda: leader.is_leader, message="leadership")
        depth = await wait_for(leader.queue_depth, message="a queue depth sample")
        assert depth[("alpha", "available")] == 2
        assert depth[("default", "available")] == 0  # the started clients' queue
        assert "maintenance:queue_depth" in leader.health().services
        # A client that does not lead samples nothing and reports nothing.
        assert follower.queue_depth() is None
        assert "maintenance:queue_depth" not in follower.health().services
        points = {
            (p.attributes["river.queue"], p.attributes["river.state"]): p.value
            for p in _points(reader, "river.queue.depth")
        }
        assert points[("alpha", "available")] == 2
        assert points[("alpha", "scheduled")] == 1
        assert ("alpha", "completed") not in points
    # Stopped, the former leader reports nothing either.
    assert leader.queue_depth() is None
    assert _points(reader, "river.queue.depth") == []


# --------------------------------------------------------------------------------------------
# river worker: Prometheus text
# --------------------------------------------------------------------------------------------


def _event(kind: str, queue: str, outcome: str, seconds: float) -> Event:
    now = datetime.now(UTC)
    row = JobRow(1, kind, queue, JobState.COMPLETED, "{}", 1, 25, 1, now, now)
    return Event(f"job_{outcome}", queue, row, JobStatistics(0.0, seconds, 0.0))


def test_worker_job_metrics_text() -> None:
    jobs = JobMetrics()
    jobs.observe(_event("email", "default", "completed", 0.003))
    jobs.observe(_event("email", "default", "completed", 0.2))
    jobs.observe(_event("email", "default", "failed", 7200.0))
    jobs.observe(_event("report", "slow", "completed", 1.0))
    jobs.observe(Event("queue_paused", "default"))  # not a job event: ignored
    lines = jobs.lines()
    assert lines[:2] == [
        "# HELP river_jobs_total Jobs finished by this process, by kind, queue and outcome.",
        "# TYPE river_jobs_total counter",
    ]
    text = "\n".join(lines)
    assert 'river_jobs_total{kind="email",queue="default",outcome="completed"} 2' in text
    assert 'river_jobs_total{kind="email",queue="default",outcome="failed"} 1' in text
    assert "# TYPE river_job_duration_seconds histogram" in text
    bucket = 'river_job_duration_seconds_bucket{kind="email",queue="default",le="%s"} %d'
    assert bucket % ("0.005", 1) in text
    assert bucket % ("0.25", 2) in text  # cumulative
    assert bucket % ("3600", 2) in text
    assert bucket % ("+Inf", 3) in text  # the 2 h attempt is only in +Inf
    assert 'river_job_duration_seconds_sum{kind="email",queue="default"} 7200.203' in text
    assert 'river_job_duration_seconds_count{kind="email",queue="default"} 3' in text
    assert 'river_job_duration_seconds_bucket{kind="report",queue="slow",le="1"} 1' in text
    # Merged under a process label (river worker --processes), the families stay whole.
    merged = "\n".join(relabel_metrics([({"process": "0"}, text + "\n")]))
    assert merged.count("# TYPE river_job_duration_seconds histogram") == 1
    assert 'river_job_duration_seconds_count{process="0",kind="email",queue="default"} 3' in merged


def test_worker_queue_depth_text() -> None:
    assert queue_depth_lines(None) == [
        "# HELP river_queue_depth Jobs not yet finalized by queue and state (reported by the "
        "leader only).",
        "# TYPE river_queue_depth gauge",
    ]
    lines = queue_depth_lines({("b", "running"): 3, ("a", "available"): 0})
    assert lines[2:] == [
        'river_queue_depth{queue="a",state="available"} 0',
        'river_queue_depth{queue="b",state="running"} 3',
    ]
