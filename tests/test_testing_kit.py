"""river.testing against a real Postgres: the require_* assertions (River (Go)'s rivertest
semantics) and work_job, with sync and async connections, inside uncommitted transactions.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import anyio
import psycopg
import pytest
import test_admin as shared
from psycopg.rows import dict_row
from test_admin import insert_job, raw_job

import river
from river import InsertOpts, JobCancel, JobSnooze, JobState, UniqueOpts
from river.testing import (
    RequireInsertedOpts,
    WorkResult,
    require_inserted,
    require_many_inserted,
    require_not_inserted,
    work_job,
)

pytestmark = pytest.mark.anyio

# test_admin's module-database fixtures (each module gets its own database).
module_db_url = shared.module_db_url
db_url = shared.db_url


class EmailArgs(river.JobArgs):
    kind: ClassVar[str] = "kit_email"
    to: str = "a@example.com"


class SmsArgs(river.JobArgs):
    kind: ClassVar[str] = "kit_sms"
    number: str = "1"


class OtherArgs(river.JobArgs):
    kind: ClassVar[str] = "kit_other"


# --- connections ---------------------------------------------------------------------------------


class Conn:
    """A non-autocommit connection, sync or async, used the same way by the tests: helpers of
    river.testing return a value (sync) or an awaitable (async); ``call`` resolves both."""

    def __init__(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        # No pools: only the *_tx methods run, on the caller's connection.
        self.client = river.Client()
        self.async_client = river.AsyncClient("postgresql://unused")

    @property
    def is_async(self) -> bool:
        return isinstance(self.conn, psycopg.AsyncConnection)

    @staticmethod
    async def call(value: Any) -> Any:
        return await value if inspect.isawaitable(value) else value

    async def insert(self, args: river.JobArgs, opts: InsertOpts | None = None) -> int:
        if isinstance(self.conn, psycopg.AsyncConnection):
            result = await self.async_client.insert_tx(self.conn, args, opts)
        else:
            result = self.client.insert_tx(self.conn, args, opts)
        return result.job.id

    async def execute(self, query: str, params: Any = None) -> None:
        await self.call(self.conn.execute(query, params))

    async def rollback(self) -> None:
        await self.call(self.conn.rollback())

    async def commit(self) -> None:
        await self.call(self.conn.commit())


@pytest.fixture(params=["sync", "async"])
async def kit_conn(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Conn]:
    if request.param == "sync":
        with psycopg.connect(db_url) as sync_conn:
            yield Conn(sync_conn)
            sync_conn.rollback()
    else:
        async with await psycopg.AsyncConnection.connect(db_url) as async_conn:
            yield Conn(async_conn)
            await async_conn.rollback()


def committed_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM river_job").fetchone()
    assert row is not None
    return int(row[0])


# --- require_inserted ----------------------------------------------------------------------------


async def test_require_inserted_returns_the_typed_job_inside_the_transaction(
    kit_conn: Conn, conn: psycopg.Connection[Any]
) -> None:
    job_id = await kit_conn.insert(EmailArgs(to="x@example.com"))
    await kit_conn.insert(OtherArgs())  # other kinds do not count
    job = await kit_conn.call(require_inserted(kit_conn.conn, EmailArgs))
    assert isinstance(job, river.Job)
    assert isinstance(job.args, EmailArgs)
    assert job.args.to == "x@example.com"
    assert job.id == job_id
    assert job.state is JobState.AVAILABLE
    assert committed_count(conn) == 0  # all of it is the test's uncommitted transaction
    await kit_conn.rollback()
    with pytest.raises(AssertionError):
        await kit_conn.call(require_inserted(kit_conn.conn, EmailArgs))


async def test_require_inserted_none_fails(kit_conn: Conn) -> None:
    await kit_conn.insert(SmsArgs())
    with pytest.raises(AssertionError, match="kit_email"):
        await kit_conn.call(require_inserted(kit_conn.conn, EmailArgs))


async def test_require_inserted_two_fails(kit_conn: Conn) -> None:
    await kit_conn.insert(EmailArgs(to="1"))
    await kit_conn.insert(EmailArgs(to="2"))
    with pytest.raises(AssertionError, match="found 2"):
        await kit_conn.call(require_inserted(kit_conn.conn, EmailArgs))


async def test_require_inserted_counts_jobs_in_any_state(kit_conn: Conn) -> None:
    await kit_conn.insert(EmailArgs(), InsertOpts(pending=True))
    job = await kit_conn.call(require_inserted(kit_conn.conn, EmailArgs))
    assert job.state is JobState.PENDING


_AT = datetime(2031, 5, 6, 7, 8, 9, 500_000, tzinfo=UTC)
_INSERT_OPTS = InsertOpts(
    queue="kit_q", priority=3, max_attempts=7, scheduled_at=_AT, tags=["tag_a", "tag_b"]
)


@pytest.mark.parametrize(
    ("good", "bad", "field"),
    [
        ({"max_attempts": 7}, {"max_attempts": 8}, "max_attempts"),
        ({"priority": 3}, {"priority": 1}, "priority"),
        ({"queue": "kit_q"}, {"queue": "default"}, "queue"),
        ({"state": JobState.SCHEDULED}, {"state": JobState.AVAILABLE}, "state"),
        ({"state": "scheduled"}, {"state": "available"}, "state"),
        ({"scheduled_at": _AT}, {"scheduled_at": _AT + timedelta(seconds=2)}, "scheduled_at"),
        (
            {"scheduled_at": _AT - timedelta(milliseconds=400)},
            {"scheduled_at": _AT - timedelta(seconds=1, milliseconds=1)},
            "scheduled_at",
        ),
        (
            {"scheduled_at": _AT.astimezone(timezone(timedelta(hours=-7)))},  # same instant
            {"scheduled_at": _AT - timedelta(days=365)},
            "scheduled_at",
        ),
        ({"tags": ["tag_a", "tag_b"]}, {"tags": ["tag_b", "tag_a"]}, "tags"),
        ({"tags": ["tag_a", "tag_b"]}, {"tags": []}, "tags"),
    ],
)
async def test_require_inserted_opts_each_field(
    kit_conn: Conn, good: dict[str, Any], bad: dict[str, Any], field: str
) -> None:
    await kit_conn.insert(EmailArgs(), _INSERT_OPTS)
    job = await kit_conn.call(
        require_inserted(kit_conn.conn, EmailArgs, RequireInsertedOpts(**good))
    )
    assert job.args == EmailArgs()
    with pytest.raises(AssertionError, match=field):
        await kit_conn.call(require_inserted(kit_conn.conn, EmailArgs, RequireInsertedOpts(**bad)))


async def test_require_inserted_all_opts_at_once_and_every_mismatch_reported(
    kit_conn: Conn,
) -> None:
    await kit_conn.insert(EmailArgs(), _INSERT_OPTS)
    everything = RequireInsertedOpts(
        max_attempts=7,
        priority=3,
        queue="kit_q",
        scheduled_at=_AT,
        state=JobState.SCHEDULED,
        tags=["tag_a", "tag_b"],
    )
    await kit_conn.call(require_inserted(kit_conn.conn, EmailArgs, everything))
    wrong = RequireInsertedOpts(max_attempts=1, priority=4, queue="other")
    with pytest.raises(AssertionError) as info:
        await kit_conn.call(require_inserted(kit_conn.conn, EmailArgs, wrong))
    for field in ("max_attempts", "priority", "queue"):
        assert field in str(info.value)


def test_require_inserted_opts_need_an_aware_scheduled_at() -> None:
    with pytest.raises(river.ValidationError) as info:
        RequireInsertedOpts(scheduled_at=datetime(2030, 1, 1))
    assert info.value.field == "scheduled_at"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"state": "complete"}, "state"),  # a typo: no job could ever match
        ({"tags": "urgent"}, "tags"),  # one string: read as a list of letters
        ({"priority": 0}, "priority"),
        ({"priority": "1"}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"queue": 5}, "queue"),
    ],
)
def test_require_inserted_opts_refuse_what_no_job_can_match(
    kwargs: dict[str, Any], field: str
) -> None:
    """Values no job can have made require_not_inserted pass whatever was inserted."""
    with pytest.raises(river.ValidationError) as info:
        RequireInsertedOpts(**kwargs)
    assert info.value.field == field
    assert RequireInsertedOpts(state="completed").state is JobState.COMPLETED


async def test_require_inserted_empty_opts_match_anything(kit_conn: Conn) -> None:
    await kit_conn.insert(EmailArgs())
    await kit_conn.call(require_inserted(kit_conn.conn, EmailArgs, RequireInsertedOpts()))


async def test_require_inserted_sees_rows_written_by_anyone(
    kit_conn: Conn, conn: psycopg.Connection[Any]
) -> None:
    """Rows inserted by other code (here plain SQL, as a Go service would) count too."""
    insert_job(conn, kind="kit_email", args={"to": "go@example.com"}, queue="from_go")
    job = await kit_conn.call(
        require_inserted(kit_conn.conn, EmailArgs, RequireInsertedOpts(queue="from_go"))
    )
    assert job.args.to == "go@example.com"


# --- require_not_inserted ------------------------------------------------------------------------


async def test_require_not_inserted_without_opts(kit_conn: Conn) -> None:
    await kit_conn.insert(SmsArgs())
    assert await kit_conn.call(require_not_inserted(kit_conn.conn, EmailArgs)) is None
    await kit_conn.insert(EmailArgs())
    with pytest.raises(AssertionError, match="kit_email"):
        await kit_conn.call(require_not_inserted(kit_conn.conn, EmailArgs))


@pytest.mark.parametrize(
    ("opts", "fails"),
    [
        ({"queue": "kit_q"}, True),
        ({"queue": "other"}, False),
        ({"queue": "kit_q", "priority": 3}, True),
        ({"queue": "kit_q", "priority": 2}, False),  # one differing field: not a match
        ({"max_attempts": 7, "tags": ["tag_a", "tag_b"], "state": "scheduled"}, True),
        ({"max_attempts": 7, "tags": ["tag_a"]}, False),
        ({"scheduled_at": _AT}, True),
        ({"scheduled_at": _AT + timedelta(minutes=1)}, False),
        ({}, True),  # empty options: any job of the kind is a match
    ],
)
async def test_require_not_inserted_with_opts_fails_only_when_every_field_matches(
    kit_conn: Conn, opts: dict[str, Any], fails: bool
) -> None:
    await kit_conn.insert(EmailArgs(), _INSERT_OPTS)

    def call() -> Any:
        return require_not_inserted(kit_conn.conn, EmailArgs, RequireInsertedOpts(**opts))

    if fails:
        with pytest.raises(AssertionError):
            await kit_conn.call(call())
    else:
        assert await kit_conn.call(call()) is None


async def test_require_not_inserted_fails_if_any_of_several_jobs_matches(kit_conn: Conn) -> None:
    await kit_conn.insert(EmailArgs(to="1"), InsertOpts(queue="q_a"))
    await kit_conn.insert(EmailArgs(to="2"), InsertOpts(queue="q_b"))
    await kit_conn.call(
        require_not_inserted(kit_conn.conn, EmailArgs, RequireInsertedOpts(queue="q_c"))
    )
    with pytest.raises(AssertionError):
        await kit_conn.call(
            require_not_inserted(kit_conn.conn, EmailArgs, RequireInsertedOpts(queue="q_b"))
        )


# --- require_many_inserted -----------------------------------------------------------------------


async def test_require_many_inserted_in_order(kit_conn: Conn) -> None:
    ids = [
        await kit_conn.insert(EmailArgs(to="1")),
        await kit_conn.insert(OtherArgs()),  # not asked about: ignored
        await kit_conn.insert(SmsArgs()),
        await kit_conn.insert(EmailArgs(to="2")),
    ]
    rows = await kit_conn.call(
        require_many_inserted(kit_conn.conn, [EmailArgs, SmsArgs, EmailArgs])
    )
    assert [r.id for r in rows] == [ids[0], ids[2], ids[3]]
    assert [r.kind for r in rows] == ["kit_email", "kit_sms", "kit_email"]
    assert json.loads(rows[2].encoded_args) == {"to": "2"}
    # Only the kinds asked about are considered (River (Go) semantics).
    (sms,) = await kit_conn.call(require_many_inserted(kit_conn.conn, [SmsArgs]))
    assert sms.id == ids[2]


@pytest.mark.parametrize(
    "expected",
    [
        [EmailArgs, EmailArgs, SmsArgs],  # wrong order
        [SmsArgs, EmailArgs, EmailArgs],
        [EmailArgs, SmsArgs],  # an extra email job exists
        [EmailArgs, SmsArgs, EmailArgs, SmsArgs],  # one missing
        [EmailArgs, SmsArgs, EmailArgs, OtherArgs],  # a kind with no job
    ],
)
async def test_require_many_inserted_mismatch_fails(kit_conn: Conn, expected: list[Any]) -> None:
    await kit_conn.insert(EmailArgs(to="1"))
    await kit_conn.insert(SmsArgs())
    await kit_conn.insert(EmailArgs(to="2"))
    with pytest.raises(AssertionError, match="kit_"):
        await kit_conn.call(require_many_inserted(kit_conn.conn, expected))


async def test_require_many_inserted_with_opts(kit_conn: Conn) -> None:
    await kit_conn.insert(EmailArgs(), InsertOpts(queue="q_a", priority=2))
    await kit_conn.insert(SmsArgs(), InsertOpts(queue="q_b"))
    await kit_conn.call(
        require_many_inserted(
            kit_conn.conn,
            [(EmailArgs, RequireInsertedOpts(queue="q_a", priority=2)), (SmsArgs, None)],
        )
    )
    await kit_conn.call(
        require_many_inserted(
            kit_conn.conn, [EmailArgs, (SmsArgs, RequireInsertedOpts(queue="q_b"))]
        )
    )
    with pytest.raises(AssertionError, match="queue"):
        await kit_conn.call(
            require_many_inserted(
                kit_conn.conn, [EmailArgs, (SmsArgs, RequireInsertedOpts(queue="q_a"))]
            )
        )


async def test_require_many_inserted_nothing_expected_nothing_there(kit_conn: Conn) -> None:
    await kit_conn.insert(OtherArgs())
    assert await kit_conn.call(require_many_inserted(kit_conn.conn, [])) == []


async def test_require_many_inserted_sees_only_the_transaction(
    kit_conn: Conn, conn: psycopg.Connection[Any]
) -> None:
    await kit_conn.insert(EmailArgs())
    await kit_conn.call(require_many_inserted(kit_conn.conn, [EmailArgs]))
    await kit_conn.rollback()
    with pytest.raises(AssertionError):
        await kit_conn.call(require_many_inserted(kit_conn.conn, [EmailArgs]))
    assert committed_count(conn) == 0


# --- custom schema -------------------------------------------------------------------------------


def test_assertions_and_work_job_in_a_custom_schema(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    from river.migrate import Migrator

    conn.execute("DROP SCHEMA IF EXISTS kit CASCADE")
    conn.execute("CREATE SCHEMA kit")
    try:
        Migrator(conn, schema="kit").migrate_up()
        client = river.Client(config=river.Config(schema="kit"))
        with psycopg.connect(db_url) as c:
            client.insert_tx(c, EmailArgs())
            require_inserted(c, EmailArgs, schema="kit")
            with pytest.raises(AssertionError):
                require_inserted(c, EmailArgs)  # the default schema has none
            result = work_job(c, SmsWorker(), SmsArgs(), schema="kit")
            assert result.state is JobState.COMPLETED
            require_many_inserted(c, [EmailArgs, SmsArgs], schema="kit")
            require_not_inserted(c, SmsArgs)
            c.rollback()
    finally:
        conn.execute("DROP SCHEMA kit CASCADE")


# --- work_job ------------------------------------------------------------------------------------


class Seen:
    def __init__(self) -> None:
        self.jobs: list[river.Job[Any]] = []
        self.current: list[river.JobRow | None] = []


class EmailWorker(river.Worker[EmailArgs]):
    """Behaviour picked by the args: ``to`` = ok | error | cancel | snooze:<seconds>."""

    def __init__(self, seen: Seen | None = None) -> None:
        self.seen = seen or Seen()

    async def work(self, job: river.Job[EmailArgs]) -> None:
        self.seen.jobs.append(job)
        self.seen.current.append(river.current_job())
        await anyio.lowlevel.checkpoint()
        _behave(job.args.to)


class SyncEmailWorker(river.Worker[EmailArgs]):
    def __init__(self, seen: Seen | None = None) -> None:
        self.seen = seen or Seen()

    def work(self, job: river.Job[EmailArgs]) -> None:
        self.seen.jobs.append(job)
        self.seen.current.append(river.current_job())
        _behave(job.args.to)


def _behave(to: str) -> None:
    if to == "error":
        raise ValueError("boom")
    if to == "cancel":
        raise JobCancel("not wanted")
    if to.startswith("snooze:"):
        raise JobSnooze(float(to.split(":", 1)[1]))


class SmsWorker(river.Worker[SmsArgs]):
    async def work(self, job: river.Job[SmsArgs]) -> None:
        pass


@pytest.fixture(params=["async-worker", "sync-worker"])
def worker_cls(request: pytest.FixtureRequest) -> type[river.Worker[EmailArgs]]:
    return EmailWorker if request.param == "async-worker" else SyncEmailWorker


async def _work(
    kit_conn: Conn,
    worker: river.Worker[Any],
    args: river.JobArgs,
    opts: InsertOpts | None = None,
    **kwargs: Any,
) -> WorkResult:
    value = work_job(kit_conn.conn, worker, args, opts, **kwargs)
    if isinstance(kit_conn.conn, psycopg.AsyncConnection):
        assert isinstance(value, Awaitable)
        result: WorkResult = await value
    else:
        result = value
    return result


async def _raw(kit_conn: Conn, job_id: int) -> dict[str, Any]:
    cur = kit_conn.conn.cursor(row_factory=dict_row)
    await kit_conn.call(
        cur.execute(
            "SELECT id, state::text AS state, attempt, max_attempts, attempted_at, attempted_by,"
            " finalized_at, scheduled_at, errors, metadata, queue FROM river_job WHERE id = %s",
            (job_id,),
        )
    )
    row = await kit_conn.call(cur.fetchone())
    assert row is not None
    return dict(row)


async def _db_now(kit_conn: Conn) -> datetime:
    cur = kit_conn.conn.cursor()
    await kit_conn.call(cur.execute("SELECT clock_timestamp()"))
    row = await kit_conn.call(cur.fetchone())
    value: datetime = row[0]
    return value


async def test_work_job_completed(
    kit_conn: Conn, worker_cls: type[Any], conn: psycopg.Connection[Any]
) -> None:
    seen = Seen()
    result = await _work(kit_conn, worker_cls(seen), EmailArgs(to="ok"))
    assert isinstance(result, WorkResult)
    assert result.state is JobState.COMPLETED
    assert result.event == "job_completed"
    # The worker saw its job running at attempt 1, with typed args.
    (job,) = seen.jobs
    assert job.state is JobState.RUNNING
    assert job.attempt == 1
    assert job.args == EmailArgs(to="ok")
    assert seen.current[0] is not None
    assert seen.current[0].id == job.id
    # The returned row is the persisted one.
    raw = await _raw(kit_conn, result.job.id)
    assert result.job.id == job.id
    assert raw["state"] == "completed"
    assert raw["attempt"] == 1
    assert raw["finalized_at"] is not None
    assert raw["finalized_at"] == result.job.finalized_at
    assert raw["attempted_at"] is not None
    assert len(raw["attempted_by"]) == 1
    assert raw["errors"] is None
    assert result.job.state is JobState.COMPLETED
    assert committed_count(conn) == 0  # nothing committed behind the caller's back
    await kit_conn.rollback()
    assert committed_count(conn) == 0


async def test_work_job_error_is_retried(kit_conn: Conn, worker_cls: type[Any]) -> None:
    before = await _db_now(kit_conn)
    result = await _work(kit_conn, worker_cls(), EmailArgs(to="error"))
    assert result.event == "job_failed"
    # First retry is about 1 s away: straight back to available (PROTOCOL.md 3.5).
    assert result.state is JobState.AVAILABLE
    raw = await _raw(kit_conn, result.job.id)
    assert raw["state"] == "available"
    assert raw["attempt"] == 1
    assert raw["finalized_at"] is None
    assert raw["scheduled_at"] > before
    (error,) = raw["errors"]
    assert error["attempt"] == 1
    assert "boom" in error["error"]
    assert "ValueError" in error["trace"]
    assert [e.error for e in result.job.errors] == [error["error"]]


async def test_work_job_error_on_last_attempt_is_discarded(
    kit_conn: Conn, worker_cls: type[Any]
) -> None:
    result = await _work(kit_conn, worker_cls(), EmailArgs(to="error"), InsertOpts(max_attempts=1))
    assert (result.state, result.event) == (JobState.DISCARDED, "job_failed")
    raw = await _raw(kit_conn, result.job.id)
    assert raw["state"] == "discarded"
    assert raw["finalized_at"] is not None
    assert len(raw["errors"]) == 1


async def test_work_job_cancel(kit_conn: Conn, worker_cls: type[Any]) -> None:
    result = await _work(kit_conn, worker_cls(), EmailArgs(to="cancel"))
    assert (result.state, result.event) == (JobState.CANCELLED, "job_cancelled")
    raw = await _raw(kit_conn, result.job.id)
    assert raw["state"] == "cancelled"
    assert raw["finalized_at"] is not None
    (error,) = raw["errors"]
    assert error["error"] == "not wanted"


@pytest.mark.parametrize(("seconds", "state"), [(30, "scheduled"), (1, "available")])
async def test_work_job_snooze(
    kit_conn: Conn, worker_cls: type[Any], seconds: int, state: str
) -> None:
    before = await _db_now(kit_conn)
    result = await _work(
        kit_conn, worker_cls(), EmailArgs(to=f"snooze:{seconds}"), InsertOpts(metadata={"m": 1})
    )
    assert result.event == "job_snoozed"
    assert result.state == state
    raw = await _raw(kit_conn, result.job.id)
    assert raw["state"] == state
    assert raw["attempt"] == 0  # a snooze gives the attempt back
    assert raw["errors"] is None
    assert raw["metadata"] == {"m": 1, "snoozes": 1}
    assert raw["finalized_at"] is None
    assert before + timedelta(seconds=seconds) <= raw["scheduled_at"]
    assert raw["scheduled_at"] <= datetime.now(UTC) + timedelta(seconds=seconds)


async def test_work_job_uses_insert_opts(kit_conn: Conn) -> None:
    result = await _work(
        kit_conn,
        EmailWorker(),
        EmailArgs(),
        InsertOpts(queue="kit_q", priority=4, tags=["tag_x"], metadata={"k": "v"}),
    )
    raw = await _raw(kit_conn, result.job.id)
    assert raw["queue"] == "kit_q"
    assert raw["metadata"] == {"k": "v"}
    assert result.job.priority == 4
    assert result.job.tags == ["tag_x"]


async def test_work_job_times_out_with_job_timeout(kit_conn: Conn) -> None:
    class SlowWorker(river.Worker[EmailArgs]):
        async def work(self, job: river.Job[EmailArgs]) -> None:
            await anyio.sleep_forever()

    result = await _work(kit_conn, SlowWorker(), EmailArgs(), job_timeout=0.05)
    assert result.event == "job_failed"
    (error,) = result.job.errors
    assert "timed out" in error.error


async def test_work_job_leaves_other_jobs_alone(
    kit_conn: Conn, conn: psycopg.Connection[Any]
) -> None:
    waiting = insert_job(conn, kind="kit_email", args={"to": "ok"})
    running = insert_job(conn, kind="kit_email", args={"to": "ok"}, state="running", attempt=1)
    due = insert_job(conn, kind="kit_email", args={"to": "ok"}, priority=1)
    before = {i: raw_job(conn, i) for i in (waiting, running, due)}
    seen = Seen()
    result = await _work(kit_conn, EmailWorker(seen), EmailArgs(to="ok"), InsertOpts(priority=4))
    assert result.job.id not in before
    assert [j.id for j in seen.jobs] == [result.job.id]
    await kit_conn.commit()
    assert {i: raw_job(conn, i) for i in (waiting, running, due)} == before
    persisted = raw_job(conn, result.job.id)
    assert persisted is not None
    assert persisted["state"] == "completed"


async def test_work_job_same_unique_job_twice(kit_conn: Conn) -> None:
    """Unique options do not stop a test from working the same job again (as in River (Go)'s
    test worker, which disables unique enforcement)."""
    opts = InsertOpts(unique_opts=UniqueOpts(by_args=True))
    first = await _work(kit_conn, EmailWorker(), EmailArgs(to="ok"), opts)
    second = await _work(kit_conn, EmailWorker(), EmailArgs(to="ok"), opts)
    assert first.state is second.state is JobState.COMPLETED
    assert first.job.id != second.job.id


async def test_work_job_worker_inserts_in_the_same_transaction(kit_conn: Conn) -> None:
    """The usual test shape: work a job whose worker enqueues a follow-up job on the test's
    connection, then assert on both with the require_* helpers."""
    worker: river.Worker[EmailArgs]
    if kit_conn.is_async:

        class AsyncChain(river.Worker[EmailArgs]):
            async def work(self, job: river.Job[EmailArgs]) -> None:
                await kit_conn.async_client.insert_tx(kit_conn.conn, SmsArgs(number=job.args.to))

        worker = AsyncChain()
    else:

        class SyncChain(river.Worker[EmailArgs]):
            def work(self, job: river.Job[EmailArgs]) -> None:
                kit_conn.client.insert_tx(kit_conn.conn, SmsArgs(number=job.args.to))

        worker = SyncChain()

    result = await _work(kit_conn, worker, EmailArgs(to="42"))
    assert result.state is JobState.COMPLETED
    sms = await kit_conn.call(require_inserted(kit_conn.conn, SmsArgs))
    assert sms.args.number == "42"
    done = await kit_conn.call(
        require_inserted(kit_conn.conn, EmailArgs, RequireInsertedOpts(state=JobState.COMPLETED))
    )
    assert done.id == result.job.id
    await kit_conn.call(require_many_inserted(kit_conn.conn, [EmailArgs, SmsArgs]))


def test_work_job_sync_connection_returns_the_result_directly(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    with psycopg.connect(db_url) as c:
        result = work_job(c, SyncEmailWorker(), EmailArgs(to="ok"))
        assert isinstance(result, WorkResult)
        assert result.state is JobState.COMPLETED
        c.rollback()
    assert committed_count(conn) == 0


async def test_work_job_async_connection_returns_an_awaitable(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as c:
        pending = work_job(c, EmailWorker(), EmailArgs(to="ok"))
        assert inspect.isawaitable(pending)
        result = await pending
        assert result.state is JobState.COMPLETED
        await c.rollback()


class CompletesThenRaises(river.Worker[EmailArgs]):
    """Completes its job in the test's transaction, then fails (a step after the commit)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def work(self, job: river.Job[EmailArgs]) -> None:
        river.job_complete_tx(self.conn, job)
        raise RuntimeError("the step after the commit failed")


def test_work_job_reports_what_was_persisted(db_url: str) -> None:
    """The state and event are the client's (from the outcome as written): this job stays
    completed and a client reports job_completed, where work_job said job_failed/available."""
    with psycopg.connect(db_url) as conn:
        result = work_job(conn, CompletesThenRaises(conn), EmailArgs())
        assert (result.state, result.event) == (JobState.COMPLETED, "job_completed")
        assert result.job.state is JobState.COMPLETED
        assert result.outcome.event == "job_failed"  # what the executor asked for
        conn.rollback()
