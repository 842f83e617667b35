"""Jobs written by others are worked (PROTOCOL 15, 7.4): rows inserted by ``riverqueue`` (River's
official insert-only Python client, SQLAlchemy driver, no NOTIFY) and rows inserted with plain
SQL are found by polling and worked; odd rows never crash the client."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import anyio
import pytest
import riverqueue
import sqlalchemy
from helpers import fast_config, make_workers, open_db, started_client, wait_for
from riverqueue.driver import riversqlalchemy

import river

pytestmark = pytest.mark.anyio


# --- the riverqueue side: dataclass args with kind and to_json ---------------------------------


@dataclass
class RqEmail:
    to: str
    n: int = 0
    kind: str = "rq_email"

    def to_json(self) -> str:
        # Python's json.dumps output: spaces after separators, ASCII escapes.
        return json.dumps({"to": self.to, "n": self.n})


@dataclass
class RqUnknown:
    kind: str = "rq_nobody_works_this"

    def to_json(self) -> str:
        return json.dumps({"x": 1})


@dataclass
class RqBadArgs:
    kind: str = "rq_email"

    def to_json(self) -> str:
        return json.dumps({"to": ["not", "a", "string"]})


@dataclass
class RqExtraFields:
    extra: dict[str, Any] = field(default_factory=lambda: {"nested": [1, 2]})
    kind: str = "rq_email"

    def to_json(self) -> str:
        return json.dumps({"to": "é@example.com", "n": 3, "extra": self.extra})


# --- our side ------------------------------------------------------------------------------------


class Email(river.JobArgs):
    kind: ClassVar[str] = "rq_email"
    to: str
    n: int = 0


class EmailWorker(river.Worker[Email]):
    def __init__(self) -> None:
        self.seen: list[tuple[int, str, int, str]] = []

    async def work(self, job: river.Job[Email]) -> None:
        self.seen.append((job.id, job.args.to, job.args.n, job.queue))


def _sqlalchemy_url(db_url: str) -> str:
    assert db_url.startswith("postgresql://")
    return "postgresql+psycopg://" + db_url.removeprefix("postgresql://")


@pytest.fixture
def engine(db_url: str) -> Iterator[sqlalchemy.Engine]:
    eng = sqlalchemy.create_engine(_sqlalchemy_url(db_url))
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def rq_client(engine: sqlalchemy.Engine) -> riverqueue.Client:
    return riverqueue.Client(riversqlalchemy.Driver(engine))


def _config(worker: EmailWorker, **kw: Any) -> river.Config:
    queues = {"default": river.QueueConfig(), "rq_high": river.QueueConfig()}
    kw.setdefault("retry_policy", lambda n, now: now + timedelta(hours=1))
    return fast_config(make_workers(worker), queues=queues, **kw)


async def test_riverqueue_jobs_are_worked(
    db_url: str, engine: sqlalchemy.Engine, rq_client: riverqueue.Client
) -> None:
    def insert_all() -> list[int]:
        one = rq_client.insert(RqEmail(to="a@x", n=1))
        opts = riverqueue.InsertOpts(queue="rq_high", priority=2, max_attempts=4, tags=["from_rq"])
        two = rq_client.insert(RqEmail(to="b@x", n=2), insert_opts=opts)
        count = rq_client.insert_many(
            [RqEmail(to="c@x", n=3), riverqueue.InsertManyParams(RqEmail(to="d@x", n=4), opts)]
        )
        assert count == 2
        with engine.begin() as tx:
            rq_client.insert_tx(tx, RqEmail(to="e@x", n=5))
        return [one.job.id, two.job.id]

    ids = await anyio.to_thread.run_sync(insert_all)
    worker = EmailWorker()
    async with open_db(db_url) as db:
        rows_before = {r["id"]: r for r in await db.jobs()}
        assert len(rows_before) == 5
        # riverqueue's own values, which this library must accept as they are.
        r2 = rows_before[ids[1]]
        assert (r2["queue"], r2["priority"], r2["max_attempts"], r2["tags"]) == (
            "rq_high",
            2,
            4,
            ["from_rq"],
        )
        assert r2["metadata"] == {}
        raw = await db.scalar("SELECT args::text FROM river_job WHERE id = %(id)s", {"id": ids[0]})
        assert json.loads(raw) == {"to": "a@x", "n": 1}
        async with started_client(db_url, _config(worker)) as client:
            await db.wait_count(5, "state = 'completed'")
        rows = await db.jobs()
    assert sorted((to, n, q) for _, to, n, q in worker.seen) == [
        ("a@x", 1, "default"),
        ("b@x", 2, "rq_high"),
        ("c@x", 3, "default"),
        ("d@x", 4, "rq_high"),
        ("e@x", 5, "default"),
    ]
    for r in rows:
        assert r["state"] == "completed"
        assert r["attempt"] == 1
        assert r["errors"] is None
        assert r["finalized_at"] is not None
        assert r["attempted_by"] == [client.id]


async def test_riverqueue_style_unique_rows_are_worked_and_keys_stay_separate(
    db_url: str,
) -> None:
    """A unique row as riverqueue >= 0.8 writes it (PROTOCOL 15: its own key format with a
    trailing ``&state=``, unique_states sent as a bit string). riverqueue 0.7.0, the newest on
    the registry here, cannot insert unique jobs into schema v6+ at all (its ON CONFLICT targets
    the v5 index on (kind, unique_key)), so the row is written with the same values by SQL."""
    states = "available,completed,pending,retryable,running,scheduled"
    args_text = json.dumps({"n": 9, "to": "u@x"}, sort_keys=True, separators=(",", ":"))
    key_string = f"&kind=rq_email&args={args_text}&state={states}"
    key = hashlib.sha256(key_string.encode()).digest()
    async with open_db(db_url) as db:
        rq_id = await db.scalar(
            "INSERT INTO river_job (args, kind, max_attempts, priority, queue, state, tags,"
            " unique_key, unique_states, scheduled_at) VALUES (%(args)s, 'rq_email', 25, 1,"
            " 'default', 'available', '{}', %(key)s, '11110101', now()) RETURNING id",
            {"args": json.dumps({"to": "u@x", "n": 9}), "key": key},
        )
        # Our own by_args key for the same logical job differs: no dedupe across formats.
        async with river.AsyncClient(db_url) as ours:
            mine = await ours.insert(
                Email(to="u@x", n=9), river.InsertOpts(unique_opts=river.UniqueOpts(by_args=True))
            )
            again = await ours.insert(
                Email(to="u@x", n=9), river.InsertOpts(unique_opts=river.UniqueOpts(by_args=True))
            )
        assert mine.unique_skipped_as_duplicate is False
        assert mine.job.id != rq_id
        assert mine.job.unique_key != key
        assert again.unique_skipped_as_duplicate is True
        assert again.job.id == mine.job.id
        worker = EmailWorker()
        async with started_client(db_url, _config(worker)):
            await db.wait_count(2, "state = 'completed'")
        row = await db.job(rq_id)
        assert bytes(row["unique_key"]) == key
        assert row["unique_states"] == "11110101"
        assert sorted(j for j, *_ in worker.seen) == sorted([rq_id, mine.job.id])


async def test_riverqueue_odd_rows_never_crash_the_client(
    db_url: str, rq_client: riverqueue.Client
) -> None:
    def insert_odd() -> tuple[int, int, int, int]:
        unknown = rq_client.insert(RqUnknown())
        bad = rq_client.insert(RqBadArgs())
        extra = rq_client.insert(RqExtraFields())
        good = rq_client.insert(RqEmail(to="ok@x", n=7))
        return unknown.job.id, bad.job.id, extra.job.id, good.job.id

    unknown_id, bad_id, extra_id, good_id = await anyio.to_thread.run_sync(insert_odd)
    worker = EmailWorker()
    async with open_db(db_url) as db, started_client(db_url, _config(worker)) as client:
        good = await db.wait_state(good_id, "completed")
        extra = await db.wait_state(extra_id, "completed")
        unknown = await db.wait_attempted(unknown_id)
        bad = await db.wait_attempted(bad_id)
        # The client is still healthy: a fresh job runs.
        again = await client.insert(Email(to="after@x", n=8))
        await db.wait_state(again.job.id, "completed")
    assert good["errors"] is None
    assert extra["errors"] is None  # unknown fields are ignored
    assert (extra_id, "é@example.com", 3, "default") in worker.seen
    for row, needle in ((unknown, "rq_nobody_works_this"), (bad, "to")):
        assert row["state"] == "retryable", row
        assert row["attempt"] == 1
        assert row["finalized_at"] is None
        assert len(row["errors"]) == 1
        assert needle in row["errors"][0]["error"]
        assert set(row["errors"][0]) == {"at", "attempt", "error", "trace"}


async def test_plain_sql_insert_without_notify_is_found_by_polling(db_url: str) -> None:
    """A row inserted with plain SQL (no NOTIFY), due only after the client's start-up fetch,
    can be found by nothing but the poll."""
    worker = EmailWorker()
    async with open_db(db_url) as db:
        for poll_only in (False, True):
            job_id = await db.scalar(
                "INSERT INTO river_job (args, kind, queue, scheduled_at) VALUES "
                "('{\"to\": \"sql@x\", \"n\": 42}', 'rq_email', 'rq_high',"
                " now() + interval '400 milliseconds') RETURNING id"
            )
            config = _config(worker, poll_only=poll_only, fetch_poll_interval=0.1)
            async with started_client(db_url, config):
                assert await db.state(job_id) == "available"
                row = await db.wait_state(job_id, "completed", timeout=5)
            assert row["attempted_at"] >= row["scheduled_at"]
            assert row["attempted_by"] is not None
            assert len(row["attempted_by"]) == 1
        # A plain, due row inserted while the client runs is found too.
        async with started_client(db_url, _config(worker, fetch_poll_interval=0.1)):
            job_id = await db.scalar(
                "INSERT INTO river_job (args, kind) VALUES ('{\"to\": \"now@x\"}', 'rq_email')"
                " RETURNING id"
            )
            await db.wait_state(job_id, "completed", timeout=5)
        assert [(to, n, q) for _, to, n, q in worker.seen] == [
            ("sql@x", 42, "rq_high"),
            ("sql@x", 42, "rq_high"),
            ("now@x", 0, "default"),
        ]


async def test_rows_with_nulls_and_foreign_values_are_worked(db_url: str) -> None:
    """Columns other writers may leave null or fill differently (attempted_by, errors, an
    errors array from another implementation, huge attempt counts, metadata keys)."""
    worker = EmailWorker()
    async with open_db(db_url) as db:
        plain = await db.scalar(
            "INSERT INTO river_job (args, kind, attempted_by, errors) VALUES "
            "('{\"to\": \"p@x\"}', 'rq_email', NULL, NULL) RETURNING id"
        )
        foreign = await db.scalar(
            "INSERT INTO river_job (args, kind, attempt, max_attempts, errors, metadata,"
            ' attempted_by) VALUES (\'{"to": "f@x", "n": 1}\', \'rq_email\', 3, 10,'
            ' ARRAY[\'{"at": "2024-05-06T07:08:09.123456789+02:00", "attempt": 3,'
            ' "error": "from go", "trace": "goroutine 1"}\','
            " '{\"weird\": true}']::jsonb[],"
            ' \'{"river:log": [{"attempt": 1, "log": "hi"}], "output": {"a": 1}}\','
            " ARRAY['go-client']) RETURNING id"
        )
        async with started_client(db_url, _config(worker)) as client:
            await db.wait_state(plain, "completed")
            row = await db.wait_state(foreign, "completed")
        assert row["attempt"] == 4
        assert row["attempted_by"] == ["go-client", client.id]
        # Untouched: the existing errors and metadata keys this library does not know.
        assert row["errors"][0]["error"] == "from go"
        assert row["errors"][1] == {"weird": True}
        assert row["metadata"] == {
            "river:log": [{"attempt": 1, "log": "hi"}],
            "output": {"a": 1},
        }


async def test_foreign_errors_count_for_retry_and_are_decoded(db_url: str) -> None:
    """A job that failed twice under another implementation: the next failure is error #3 and
    the worker sees the previous errors decoded."""
    counts: list[int] = []
    seen_errors: list[list[river.AttemptError]] = []

    class Failing(river.Worker[Email]):
        async def work(self, job: river.Job[Email]) -> None:
            seen_errors.append(list(job.errors))
            raise RuntimeError("third")

    def policy(n: int, now: Any) -> Any:
        counts.append(n)
        return now + timedelta(hours=1)

    async with open_db(db_url) as db:
        job_id = await db.scalar(
            'INSERT INTO river_job (args, kind, attempt, errors) VALUES (\'{"to": "x"}\','
            " 'rq_email', 2, ARRAY["
            '\'{"at": "2024-05-06T07:08:09.123456789Z", "attempt": 1, "error": "one",'
            ' "trace": ""}\','
            '\'{"at": "2024-05-06T09:08:09+02:00", "attempt": 2, "error": "two",'
            ' "trace": "t"}\']::jsonb[]) RETURNING id'
        )
        config = fast_config(make_workers(Failing()), retry_policy=policy)
        async with started_client(db_url, config):
            row = await db.wait_row(
                job_id, lambda r: len(r["errors"]) == 3 and r["state"] != "running", "3 errors"
            )
    assert counts == [3]
    assert row["state"] == "retryable"
    assert [e["error"] for e in row["errors"]] == ["one", "two", "RuntimeError: third"]
    (prev,) = seen_errors
    assert [e.error for e in prev] == ["one", "two"]
    assert [e.attempt for e in prev] == [1, 2]
    assert prev[0].at.isoformat() == "2024-05-06T07:08:09.123456+00:00"
    assert prev[1].at == prev[1].at.fromisoformat("2024-05-06T07:08:09+00:00")
    assert prev[1].trace == "t"


async def test_worker_side_insert_visible_to_riverqueue_readers(db_url: str) -> None:
    """Rows this library writes decode with riverqueue's own row model (its driver reads
    every column)."""
    from riverqueue.driver.riversqlalchemy.dbsqlc import river_job as rq_sql

    async with river.AsyncClient(db_url) as ours:
        res = await ours.insert(
            Email(to="ours@x", n=1),
            river.InsertOpts(tags=["tag_one"], metadata={"k": "v"}, priority=3),
        )

    def read_back() -> Any:
        eng = sqlalchemy.create_engine(_sqlalchemy_url(db_url))
        try:
            with eng.begin() as conn:
                return rq_sql.Querier(conn).job_get_by_id(id=res.job.id)
        finally:
            eng.dispose()

    row = await anyio.to_thread.run_sync(read_back)
    assert row is not None
    assert row.kind == "rq_email"
    assert row.args == {"to": "ours@x", "n": 1}
    assert row.tags == ["tag_one"]
    assert row.metadata == {"k": "v"}
    assert row.priority == 3
    assert str(row.state.value if hasattr(row.state, "value") else row.state) == "available"


async def test_wait_helper_reports_timeouts() -> None:
    with pytest.raises(AssertionError, match="never true"):
        await wait_for(lambda: False, timeout=0.05, message="never true")
