"""Admin operations on jobs and queues against a real Postgres (PROTOCOL.md 7.2, 10, 13.2).

Every operation is exercised through both clients (``Client`` and ``AsyncClient``, through the
``client`` fixture) where the behaviour matters; rows are set up and read back with plain SQL so
that the library under test never checks itself. Notifications are observed on a separate
connection that LISTENs on ``<current_schema>.river_control``; "nothing was sent" is proven with a
sentinel notification committed afterwards (Postgres delivers notifications in commit order), never
with a sleep.

Each module using these fixtures (this one, test_job_list.py, test_testing_kit.py) gets one
database cloned from the migrated template, emptied before every test: much faster than a new
database per test, and as isolated.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg import conninfo, sql
from psycopg.rows import dict_row

import river
from river import JobNotFoundError, JobRunningError, JobState, QueueNotFoundError, ValidationError

pytestmark = pytest.mark.anyio

FINALIZED = ("cancelled", "completed", "discarded")
MAX_OUTPUT_BYTES = 32 * 1024 * 1024


class AdminArgs(river.JobArgs):
    kind: ClassVar[str] = "admin_job"
    n: int = 0


# --- helpers -------------------------------------------------------------------------------------


def insert_job(
    conn: psycopg.Connection[Any],
    *,
    kind: str = "admin_job",
    queue: str = "default",
    state: str = "available",
    attempt: int = 0,
    max_attempts: int = 25,
    priority: int = 1,
    scheduled_at: datetime | None = None,
    attempted_at: datetime | None = None,
    finalized_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    args: dict[str, Any] | None = None,
) -> int:
    """Insert one row with plain SQL (every column under the test's control); return its id."""
    if state in FINALIZED and finalized_at is None:
        finalized_at = datetime.now(UTC) - timedelta(minutes=1)
    if state == "running" and attempted_at is None:
        attempted_at = datetime.now(UTC) - timedelta(seconds=5)
    row = conn.execute(
        """
        INSERT INTO river_job (kind, queue, state, attempt, max_attempts, priority, scheduled_at,
                               attempted_at, finalized_at, metadata, tags, errors, args)
        VALUES (%(kind)s, %(queue)s, %(state)s::river_job_state, %(attempt)s, %(max_attempts)s,
                %(priority)s, coalesce(%(scheduled_at)s, now()), %(attempted_at)s,
                %(finalized_at)s, %(metadata)s::jsonb, %(tags)s::varchar(255)[],
                %(errors)s::text[]::jsonb[], %(args)s::jsonb)
        RETURNING id
        """,
        {
            "kind": kind,
            "queue": queue,
            "state": state,
            "attempt": attempt,
            "max_attempts": max_attempts,
            "priority": priority,
            "scheduled_at": scheduled_at,
            "attempted_at": attempted_at,
            "finalized_at": finalized_at,
            "metadata": json.dumps(metadata or {}),
            "tags": tags or [],
            "errors": [json.dumps(e) for e in errors] if errors is not None else None,
            "args": json.dumps(args or {"n": 0}),
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def raw_job(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any] | None:
    """The row as stored (no decoding by the library), or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, kind, queue, state::text AS state, attempt, max_attempts, priority,"
            " created_at, scheduled_at, attempted_at, finalized_at, attempted_by, errors,"
            " metadata, tags, args FROM river_job WHERE id = %s",
            (job_id,),
        )
        return cur.fetchone()


def job_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM river_job").fetchone()
    assert row is not None
    return int(row[0])


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def insert_queue(
    conn: psycopg.Connection[Any],
    name: str,
    *,
    paused_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    updated_at: datetime | None = None,
) -> None:
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    conn.execute(
        "INSERT INTO river_queue (name, created_at, metadata, paused_at, updated_at)"
        " VALUES (%s, %s, %s::jsonb, %s, %s)",
        (name, long_ago, json.dumps(metadata or {}), paused_at, updated_at or long_ago),
    )


def raw_queue(conn: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT name, created_at, metadata, paused_at, updated_at FROM river_queue"
            " WHERE name = %s",
            (name,),
        )
        return cur.fetchone()


def parse_rfc3339(text: str) -> datetime:
    """Independent RFC 3339 parser (Z or offset, any fraction length up to nanoseconds)."""
    s = text.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        assert 1 <= i <= 9, f"bad fraction in {text!r}"
        s = f"{head}.{rest[:i][:6].ljust(6, '0')}{rest[i:]}"
    value = datetime.fromisoformat(s)
    assert value.tzinfo is not None, f"no offset in {text!r}"
    return value


class Listener:
    """LISTENs on ``<current_schema>.<topic>`` on its own connection."""

    def __init__(self, db_url: str, topic: str = "river_control") -> None:
        self.db_url = db_url
        self.conn = psycopg.connect(db_url, autocommit=True)
        row = self.conn.execute("SELECT current_schema()").fetchone()
        assert row is not None
        self.channel = f"{row[0]}.{topic}"
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))

    def drain(self) -> list[str]:
        """Every payload committed on the channel so far, in order.

        A sentinel is committed now from another connection; notifications are delivered in
        commit order, so everything committed before is received before it."""
        token = f"sentinel-{uuid.uuid4()}"
        with psycopg.connect(self.db_url, autocommit=True) as other:
            other.execute("SELECT pg_notify(%s, %s)", (self.channel, token))
        payloads: list[str] = []
        for notify in self.conn.notifies(timeout=10):
            if notify.payload == token:
                return payloads
            assert notify.channel == self.channel
            payloads.append(notify.payload)
        raise AssertionError("the sentinel notification never arrived")

    def close(self) -> None:
        self.conn.close()


class AnyClient:
    """Calls a sync ``Client`` or an ``AsyncClient`` the same way (``await client.job_get(...)``)
    and opens caller transactions of the matching connection type."""

    def __init__(self, client: river.Client | river.AsyncClient, db_url: str) -> None:
        self.raw = client
        self.db_url = db_url
        self.is_async = isinstance(client, river.AsyncClient)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.raw, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        return call

    async def connect(self) -> Tx:
        """A non-autocommit connection of the client's kind (a transaction opens on first use)."""
        if self.is_async:
            return Tx(await psycopg.AsyncConnection.connect(self.db_url))
        return Tx(psycopg.connect(self.db_url))


class Tx:
    def __init__(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def _call(self, name: str) -> None:
        result = getattr(self.conn, name)()
        if inspect.isawaitable(result):
            await result

    async def commit(self) -> None:
        await self._call("commit")

    async def rollback(self) -> None:
        await self._call("rollback")

    async def close(self) -> None:
        await self._call("close")


@pytest.fixture(scope="module")
def module_db_url(server_url: str, _template_db: str) -> Iterator[str]:
    """One database for this module, cloned from the migrated template (see ``db_url``)."""
    name = f"rq_admin_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as c:
        c.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(_template_db)
            )
        )
    params = conninfo.conninfo_to_dict(server_url)
    params["dbname"] = name
    try:
        yield conninfo.make_conninfo("", **params)
    finally:
        with psycopg.connect(server_url, autocommit=True) as c:
            c.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def db_url(module_db_url: str) -> str:
    """Overrides conftest's per-test database: the module's database, emptied for each test
    (creating a database per test would dominate this module's runtime)."""
    with psycopg.connect(module_db_url, autocommit=True) as c:
        # DELETE beats TRUNCATE on tables this small (no new files); no need to wait for the
        # WAL flush either. A lock left by a broken test fails the next one fast.
        c.execute("SET lock_timeout = '10s'")
        c.execute("SET synchronous_commit = off")
        with c.transaction():
            for table in ("river_job", "river_queue", "river_leader", "river_notification"):
                c.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
            c.execute("ALTER SEQUENCE river_job_id_seq RESTART")
    return module_db_url


@pytest.fixture(params=["sync", "async"])
async def client(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[AnyClient]:
    if request.param == "sync":
        sync_client = river.Client(db_url)
        try:
            yield AnyClient(sync_client, db_url)
        finally:
            sync_client.close()
    else:
        async_client = river.AsyncClient(db_url)
        try:
            yield AnyClient(async_client, db_url)
        finally:
            await async_client.close()


@pytest.fixture
def listener(db_url: str) -> Iterator[Listener]:
    lst = Listener(db_url)
    try:
        yield lst
    finally:
        lst.close()


@pytest.fixture
async def tx(client: AnyClient) -> AsyncIterator[Tx]:
    t = await client.connect()
    try:
        yield t
    finally:
        await t.rollback()
        await t.close()


def cancel_payload(job_id: int, queue: str) -> str:
    # River (Go) builds it with json_build_object, hence the spaces around the colons.
    return f'{{"action" : "cancel", "job_id" : {job_id}, "queue" : "{queue}"}}'


# --- job_get -------------------------------------------------------------------------------------


async def test_job_get_returns_the_row(client: AnyClient, conn: psycopg.Connection[Any]) -> None:
    inserted = await client.insert(
        AdminArgs(n=7), river.InsertOpts(queue="q", priority=3, tags=["t_1"], metadata={"m": 1})
    )
    job = await client.job_get(inserted.job.id)
    raw = raw_job(conn, inserted.job.id)
    assert raw is not None
    assert job.id == inserted.job.id
    assert job.kind == "admin_job"
    assert job.queue == "q"
    assert job.priority == 3
    assert job.state is JobState.AVAILABLE
    assert job.args == {"n": 7}
    assert job.tags == ["t_1"]
    assert job.metadata == {"m": 1}
    assert job.created_at == raw["created_at"]
    assert job.scheduled_at == raw["scheduled_at"]
    assert job.finalized_at is None


async def test_job_get_decodes_errors_and_attempts(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    error = {"at": "2024-05-06T07:08:09.123456789Z", "attempt": 2, "error": "boom", "trace": ""}
    job_id = insert_job(conn, state="retryable", attempt=2, max_attempts=5, errors=[error])
    job = await client.job_get(job_id)
    assert job.state is JobState.RETRYABLE
    assert (job.attempt, job.max_attempts) == (2, 5)
    assert len(job.errors) == 1
    assert job.errors[0].error == "boom"
    assert job.errors[0].attempt == 2
    assert job.errors[0].at == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


async def test_job_get_not_found(client: AnyClient) -> None:
    with pytest.raises(JobNotFoundError) as info:
        await client.job_get(424242)
    assert info.value.job_id == 424242


async def test_job_get_tx_sees_the_callers_uncommitted_row(client: AnyClient, tx: Tx) -> None:
    inserted = await client.insert_tx(tx.conn, AdminArgs(n=1))
    job = await client.job_get_tx(tx.conn, inserted.job.id)
    assert job.id == inserted.job.id
    with pytest.raises(JobNotFoundError):
        await client.job_get(inserted.job.id)  # another connection: not committed


# --- job_cancel ----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["available", "scheduled", "retryable", "pending"])
async def test_job_cancel_not_running_job_is_cancelled_now(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener, state: str
) -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    job_id = insert_job(
        conn,
        state=state,
        queue="q",
        scheduled_at=future if state in ("scheduled", "retryable") else None,
        metadata={"keep": "me"},
    )
    before_db, before = db_now(conn), datetime.now(UTC)
    job = await client.job_cancel(job_id)
    after_db, after = db_now(conn), datetime.now(UTC)

    assert job.state is JobState.CANCELLED
    assert job.finalized_at is not None
    assert before_db <= job.finalized_at <= after_db
    stamp = job.metadata["cancel_attempted_at"]
    assert isinstance(stamp, str)
    assert stamp.endswith("Z")
    assert before - timedelta(microseconds=1) <= parse_rfc3339(stamp) <= after
    assert job.metadata["keep"] == "me"

    raw = raw_job(conn, job_id)
    assert raw is not None
    assert raw["state"] == "cancelled"
    assert raw["finalized_at"] == job.finalized_at
    assert raw["metadata"] == {"keep": "me", "cancel_attempted_at": stamp}
    # Non-finalized jobs announce the cancel (River (Go) does it for every such job).
    assert listener.drain() == [cancel_payload(job_id, "q")]


async def test_job_cancel_running_job_stays_running_and_notifies(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener
) -> None:
    job_id = insert_job(conn, state="running", queue="q", attempt=1, metadata={"a": 1})
    before_row = raw_job(conn, job_id)
    assert before_row is not None
    job = await client.job_cancel(job_id)

    assert job.state is JobState.RUNNING
    assert job.finalized_at is None
    assert isinstance(job.metadata.get("cancel_attempted_at"), str)
    parse_rfc3339(job.metadata["cancel_attempted_at"])
    raw = raw_job(conn, job_id)
    assert raw is not None
    assert raw["state"] == "running"
    assert raw["finalized_at"] is None
    assert raw["attempt"] == 1
    assert raw["metadata"] == {"a": 1, "cancel_attempted_at": job.metadata["cancel_attempted_at"]}
    assert {k: v for k, v in raw.items() if k != "metadata"} == {
        k: v for k, v in before_row.items() if k != "metadata"
    }
    payloads = listener.drain()
    assert payloads == [cancel_payload(job_id, "q")]
    assert json.loads(payloads[0]) == {"action": "cancel", "job_id": job_id, "queue": "q"}


async def test_job_cancel_tx_notifies_on_commit_only(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener
) -> None:
    job_id = insert_job(conn, state="running", queue="q")
    t = await client.connect()
    try:
        job = await client.job_cancel_tx(t.conn, job_id)
        assert "cancel_attempted_at" in job.metadata
        assert listener.drain() == []  # not committed yet
        raw = raw_job(conn, job_id)
        assert raw is not None
        assert "cancel_attempted_at" not in raw["metadata"]
        await t.commit()
        assert listener.drain() == [cancel_payload(job_id, "q")]
        raw = raw_job(conn, job_id)
        assert raw is not None
        assert raw["metadata"]["cancel_attempted_at"] == job.metadata["cancel_attempted_at"]
    finally:
        await t.close()


async def test_job_cancel_tx_rolled_back_sends_nothing_and_changes_nothing(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener
) -> None:
    running = insert_job(conn, state="running", queue="q")
    available = insert_job(conn, state="available", queue="q")
    before = {i: raw_job(conn, i) for i in (running, available)}
    t = await client.connect()
    try:
        await client.job_cancel_tx(t.conn, running)
        cancelled = await client.job_cancel_tx(t.conn, available)
        assert cancelled.state is JobState.CANCELLED
        await t.rollback()
    finally:
        await t.close()
    assert listener.drain() == []
    assert {i: raw_job(conn, i) for i in (running, available)} == before


@pytest.mark.parametrize("state", FINALIZED)
async def test_job_cancel_finalized_job_is_returned_unchanged(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener, state: str
) -> None:
    job_id = insert_job(conn, state=state, metadata={"x": 1})
    before = raw_job(conn, job_id)
    assert before is not None
    job = await client.job_cancel(job_id)
    assert job.state == state
    assert job.finalized_at == before["finalized_at"]
    assert job.metadata == {"x": 1}
    assert raw_job(conn, job_id) == before
    assert listener.drain() == []


async def test_job_cancel_not_found(client: AnyClient, listener: Listener) -> None:
    with pytest.raises(JobNotFoundError):
        await client.job_cancel(987654)
    assert listener.drain() == []


async def test_job_cancel_twice_keeps_the_row_cancelled(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener
) -> None:
    job_id = insert_job(conn, state="available", queue="q")
    first = await client.job_cancel(job_id)
    second = await client.job_cancel(job_id)
    assert second.state is JobState.CANCELLED
    assert second.finalized_at == first.finalized_at
    assert second.metadata == first.metadata
    assert listener.drain() == [cancel_payload(job_id, "q")]


# --- job_retry -----------------------------------------------------------------------------------


async def test_job_retry_discarded_job_gets_one_more_attempt(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    errors = [
        {"at": f"2024-01-01T00:00:0{i}Z", "attempt": i, "error": f"e{i}", "trace": ""}
        for i in (1, 2, 3)
    ]
    job_id = insert_job(
        conn,
        state="discarded",
        attempt=3,
        max_attempts=3,
        errors=errors,
        scheduled_at=datetime(2024, 1, 1, tzinfo=UTC),
        metadata={"k": "v"},
    )
    before_db = db_now(conn)
    job = await client.job_retry(job_id)
    after_db = db_now(conn)

    assert job.state is JobState.AVAILABLE
    assert job.finalized_at is None
    assert before_db <= job.scheduled_at <= after_db
    assert job.attempt == 3
    assert job.max_attempts == 4
    assert [e.error for e in job.errors] == ["e1", "e2", "e3"]
    raw = raw_job(conn, job_id)
    assert raw is not None
    assert raw["state"] == "available"
    assert raw["finalized_at"] is None
    assert raw["scheduled_at"] == job.scheduled_at
    assert (raw["attempt"], raw["max_attempts"]) == (3, 4)
    assert raw["errors"] == errors
    assert raw["metadata"] == {"k": "v"}


@pytest.mark.parametrize("state", ["completed", "cancelled", "discarded"])
async def test_job_retry_finalized_job_with_attempts_left_keeps_max_attempts(
    client: AnyClient, conn: psycopg.Connection[Any], state: str
) -> None:
    job_id = insert_job(conn, state=state, attempt=1, max_attempts=25)
    job = await client.job_retry(job_id)
    assert job.state is JobState.AVAILABLE
    assert job.finalized_at is None
    assert (job.attempt, job.max_attempts) == (1, 25)


@pytest.mark.parametrize("state", ["scheduled", "retryable", "available", "pending"])
async def test_job_retry_future_job_becomes_available_now(
    client: AnyClient, conn: psycopg.Connection[Any], state: str
) -> None:
    job_id = insert_job(conn, state=state, scheduled_at=datetime.now(UTC) + timedelta(hours=2))
    before_db = db_now(conn)
    job = await client.job_retry(job_id)
    after_db = db_now(conn)
    assert job.state is JobState.AVAILABLE
    assert before_db <= job.scheduled_at <= after_db
    raw = raw_job(conn, job_id)
    assert raw is not None
    assert (raw["state"], raw["scheduled_at"]) == ("available", job.scheduled_at)


async def test_job_retry_removes_the_cancel_mark(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    # A retried job is wanted again: the mark job_cancel left would turn its next failure into
    # a cancellation (tests/test_remote_cancel.py shows that end to end).
    job_id = insert_job(
        conn, state="cancelled", metadata={"cancel_attempted_at": "2024-01-01T00:00:00Z", "k": 1}
    )
    job = await client.job_retry(job_id)
    assert job.state is JobState.AVAILABLE
    assert job.metadata == {"k": 1}
    raw = raw_job(conn, job_id)
    assert raw is not None
    assert raw["metadata"] == {"k": 1}


async def test_job_retry_running_job_is_unchanged(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    job_id = insert_job(conn, state="running", attempt=25, max_attempts=25)
    before = raw_job(conn, job_id)
    job = await client.job_retry(job_id)
    assert job.state is JobState.RUNNING
    assert job.max_attempts == 25
    assert raw_job(conn, job_id) == before


async def test_job_retry_available_due_job_is_unchanged(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=10)
    job_id = insert_job(conn, state="available", scheduled_at=past, attempt=2, max_attempts=2)
    before = raw_job(conn, job_id)
    job = await client.job_retry(job_id)
    assert job.scheduled_at == past
    assert job.max_attempts == 2
    assert raw_job(conn, job_id) == before


async def test_job_retry_not_found(client: AnyClient) -> None:
    with pytest.raises(JobNotFoundError):
        await client.job_retry(31337)


async def test_job_retry_tx_rolled_back_changes_nothing(
    client: AnyClient, conn: psycopg.Connection[Any], tx: Tx
) -> None:
    job_id = insert_job(conn, state="discarded", attempt=1, max_attempts=1)
    before = raw_job(conn, job_id)
    job = await client.job_retry_tx(tx.conn, job_id)
    assert job.state is JobState.AVAILABLE
    await tx.rollback()
    assert raw_job(conn, job_id) == before


#: River's default unique states (every state but cancelled and discarded) as an integer.
DEFAULT_UNIQUE_STATES = 0b11110101


def make_unique(conn: psycopg.Connection[Any], job_id: int, key: bytes) -> None:
    conn.execute(
        "UPDATE river_job SET unique_key = %s, unique_states = %s::integer::bit(8) WHERE id = %s",
        (key, DEFAULT_UNIQUE_STATES, job_id),
    )


async def test_job_retry_refuses_a_unique_key_another_job_holds(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    holder = insert_job(conn, state="retryable", attempt=1)
    make_unique(conn, holder, b"retry-key")
    old = insert_job(conn, state="discarded", attempt=25, max_attempts=25)
    make_unique(conn, old, b"retry-key")  # discarded: out of its unique states, so allowed
    before = raw_job(conn, old)
    with pytest.raises(river.UniqueConflictError) as refused:
        await client.job_retry(old)
    assert (refused.value.job_id, refused.value.holder_id) == (old, holder)
    assert refused.value.holder_state == "retryable"
    assert f"job {old} was not retried: job {holder} (retryable) holds" in str(refused.value)
    assert raw_job(conn, old) == before
    # Once the holder is finalized, the key is free again.
    conn.execute(
        "UPDATE river_job SET state = 'cancelled', finalized_at = now() WHERE id = %s", (holder,)
    )
    assert (await client.job_retry(old)).state is JobState.AVAILABLE


async def test_job_retry_tx_conflict_leaves_the_callers_transaction_usable(
    client: AnyClient, conn: psycopg.Connection[Any], tx: Tx
) -> None:
    holder = insert_job(conn, state="available")
    make_unique(conn, holder, b"tx-key")
    old = insert_job(conn, state="cancelled")
    make_unique(conn, old, b"tx-key")
    other = insert_job(conn, state="discarded", attempt=1, max_attempts=1)
    with pytest.raises(river.UniqueConflictError):
        await client.job_retry_tx(tx.conn, old)
    # Not aborted by a failed statement: the transaction goes on and commits.
    assert (await client.job_retry_tx(tx.conn, other)).state is JobState.AVAILABLE
    await tx.commit()
    assert raw_job(conn, other)["state"] == "available"  # type: ignore[index]
    assert raw_job(conn, old)["state"] == "cancelled"  # type: ignore[index]


async def test_job_retry_of_a_row_outside_the_unique_index_is_not_a_conflict(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    # A unique key without unique states (rows of older writers): never under the index, so
    # another job holding that key does not stop the retry.
    old = insert_job(conn, state="completed", attempt=1)
    conn.execute("UPDATE river_job SET unique_key = 'legacy' WHERE id = %s", (old,))
    holder = insert_job(conn, state="available")
    make_unique(conn, holder, b"legacy")
    assert (await client.job_retry(old)).state is JobState.AVAILABLE


async def test_job_retry_racing_a_new_holder_raises_unique_conflict(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    # A job taking the key between the statement's check and its update (a trigger inserts
    # it, in the update itself): the unique index refuses, and that is reported the same way,
    # without naming the holder.
    old = insert_job(conn, state="discarded", attempt=1, max_attempts=1)
    make_unique(conn, old, b"raced-key")
    conn.execute(
        """
        CREATE FUNCTION rq_test_take_key() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.state = 'available' AND OLD.state <> 'available' THEN
                INSERT INTO river_job (kind, args, state, unique_key, unique_states)
                VALUES ('thief', '{}', 'available', NEW.unique_key, NEW.unique_states);
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER rq_test_take_key BEFORE UPDATE ON river_job
            FOR EACH ROW EXECUTE FUNCTION rq_test_take_key();
        """
    )
    try:
        with pytest.raises(river.UniqueConflictError) as refused:
            await client.job_retry(old)
    finally:
        conn.execute("DROP TRIGGER rq_test_take_key ON river_job; DROP FUNCTION rq_test_take_key()")
    assert (refused.value.job_id, refused.value.holder_id) == (old, None)
    assert "another job took its unique key meanwhile" in str(refused.value)
    assert isinstance(refused.value.__cause__, psycopg.errors.UniqueViolation)
    assert raw_job(conn, old)["state"] == "discarded"  # type: ignore[index]


async def test_job_retry_of_a_running_unique_job_is_unchanged_not_a_conflict(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    # Not retried for being running; the key another row holds does not matter then.
    running = insert_job(conn, state="running", attempt=1)
    make_unique(conn, running, b"run-key")
    conn.execute("UPDATE river_job SET unique_states = NULL WHERE id = %s", (running,))
    holder = insert_job(conn, state="available")
    make_unique(conn, holder, b"run-key")
    assert (await client.job_retry(running)).state is JobState.RUNNING


# --- job_delete ----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["available", "completed", "scheduled", "discarded"])
async def test_job_delete_returns_the_deleted_row(
    client: AnyClient, conn: psycopg.Connection[Any], state: str
) -> None:
    job_id = insert_job(conn, state=state, queue="q", metadata={"a": 1})
    other = insert_job(conn, state=state)
    job = await client.job_delete(job_id)
    assert job.id == job_id
    assert job.state == state
    assert job.queue == "q"
    assert job.metadata == {"a": 1}
    assert raw_job(conn, job_id) is None
    assert raw_job(conn, other) is not None
    with pytest.raises(JobNotFoundError):
        await client.job_get(job_id)


async def test_job_delete_running_job_is_refused(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    job_id = insert_job(conn, state="running")
    before = raw_job(conn, job_id)
    with pytest.raises(JobRunningError) as info:
        await client.job_delete(job_id)
    assert info.value.job_id == job_id
    assert raw_job(conn, job_id) == before


async def test_job_delete_not_found(client: AnyClient) -> None:
    with pytest.raises(JobNotFoundError):
        await client.job_delete(5555)


async def test_job_delete_tx_rolled_back_keeps_the_row(
    client: AnyClient, conn: psycopg.Connection[Any], tx: Tx
) -> None:
    job_id = insert_job(conn, state="completed")
    deleted = await client.job_delete_tx(tx.conn, job_id)
    assert deleted.id == job_id
    await tx.rollback()
    assert raw_job(conn, job_id) is not None


# --- job_delete_many -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [{}, {"ids": []}, {"kinds": []}, {"states": []}, {"all": False}, {"limit": 5}],
    ids=["nothing", "empty-ids", "empty-kinds", "empty-states", "all-false", "limit-only"],
)
async def test_job_delete_many_requires_a_filter(
    client: AnyClient, conn: psycopg.Connection[Any], filters: dict[str, Any]
) -> None:
    insert_job(conn)
    with pytest.raises(ValidationError):
        await client.job_delete_many(**filters)
    assert job_count(conn) == 1


@pytest.mark.parametrize("limit", [0, -1, 10_001, True])
async def test_job_delete_many_limit_bounds(
    client: AnyClient, conn: psycopg.Connection[Any], limit: Any
) -> None:
    insert_job(conn)
    with pytest.raises(ValidationError) as info:
        await client.job_delete_many(all=True, limit=limit)
    assert info.value.field == "limit"
    assert job_count(conn) == 1


async def test_job_delete_many_bad_state_is_a_validation_error(client: AnyClient) -> None:
    with pytest.raises(ValidationError):
        await client.job_delete_many(states=["nope"])


async def test_job_delete_many_all_never_deletes_running_rows(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    states = ["available", "running", "completed", "scheduled", "running", "discarded"]
    ids = [insert_job(conn, state=s) for s in states]
    deleted = await client.job_delete_many(all=True)
    expected = [i for i, s in zip(ids, states, strict=True) if s != "running"]
    assert [j.id for j in deleted] == expected
    remaining = conn.execute("SELECT id FROM river_job ORDER BY id").fetchall()
    assert [r[0] for r in remaining] == [
        i for i, s in zip(ids, states, strict=True) if s == "running"
    ]


async def test_job_delete_many_running_rows_survive_a_state_filter(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    running = insert_job(conn, state="running")
    deleted = await client.job_delete_many(states=["running"])
    assert deleted == []
    assert raw_job(conn, running) is not None


async def test_job_delete_many_limit_takes_the_lowest_ids_in_order(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    ids = [insert_job(conn) for _ in range(5)]
    deleted = await client.job_delete_many(all=True, limit=2)
    assert [j.id for j in deleted] == ids[:2]
    assert job_count(conn) == 3
    rest = await client.job_delete_many(all=True)
    assert [j.id for j in rest] == ids[2:]
    assert job_count(conn) == 0


async def test_job_delete_many_default_limit_is_100(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO river_job (kind, args) SELECT 'admin_job', '{}' FROM generate_series(1, 105)"
    )
    deleted = await client.job_delete_many(kinds=["admin_job"])
    assert len(deleted) == 100
    assert [j.id for j in deleted] == sorted(j.id for j in deleted)
    assert job_count(conn) == 5


async def test_job_delete_many_limit_none_deletes_every_match(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    # Issue 18: docs/testing.md cleaned River's tables with job_delete_many(all=True), which
    # deleted 100 rows. More rows than the largest limit, so that one page could not do it.
    conn.execute(
        "INSERT INTO river_job (kind, args) SELECT 'admin_job', '{}' FROM generate_series(1, 10050)"
    )
    running = insert_job(conn, state="running")
    other = insert_job(conn, kind="kind_b")
    deleted = await client.job_delete_many(kinds=["admin_job"], limit=None)
    assert len(deleted) == 10050
    assert [j.id for j in deleted] == sorted(j.id for j in deleted)
    assert job_count(conn) == 2
    rest = await client.job_delete_many(all=True, limit=None)
    assert [j.id for j in rest] == [other]
    assert [r[0] for r in conn.execute("SELECT id FROM river_job").fetchall()] == [running]


async def test_job_delete_many_limit_none_still_needs_a_filter(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    insert_job(conn)
    with pytest.raises(ValidationError) as info:
        await client.job_delete_many(limit=None)
    assert info.value.field == "filters"
    assert job_count(conn) == 1


def _filter_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {
        "a": insert_job(conn, kind="kind_a", queue="q1", priority=1, state="available"),
        "b": insert_job(conn, kind="kind_b", queue="q2", priority=2, state="completed"),
        "c": insert_job(conn, kind="kind_a", queue="q2", priority=3, state="discarded"),
        "d": insert_job(conn, kind="kind_c", queue="q1", priority=4, state="scheduled"),
        "e": insert_job(conn, kind="kind_b", queue="q3", priority=2, state="available"),
    }


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"ids": "b,d"}, ["b", "d"]),
        ({"kinds": ["kind_a"]}, ["a", "c"]),
        ({"kinds": ["kind_b", "kind_c"]}, ["b", "d", "e"]),
        ({"queues": ["q2"]}, ["b", "c"]),
        ({"states": ["available"]}, ["a", "e"]),
        ({"states": [JobState.COMPLETED, JobState.DISCARDED]}, ["b", "c"]),
        ({"priorities": [2]}, ["b", "e"]),
        ({"kinds": ["kind_a"], "queues": ["q1"]}, ["a"]),
        ({"queues": ["q1"], "states": ["scheduled"], "priorities": [4]}, ["d"]),
        ({"kinds": ["missing"]}, []),
    ],
)
async def test_job_delete_many_filters(
    client: AnyClient,
    conn: psycopg.Connection[Any],
    filters: dict[str, Any],
    expected: list[str],
) -> None:
    rows = _filter_rows(conn)
    if "ids" in filters:
        filters = {**filters, "ids": [rows[k] for k in filters["ids"].split(",")]}
    deleted = await client.job_delete_many(**filters)
    assert [j.id for j in deleted] == sorted(rows[k] for k in expected)
    remaining = {r[0] for r in conn.execute("SELECT id FROM river_job").fetchall()}
    assert remaining == {rows[k] for k in rows if k not in expected}


async def test_job_delete_many_skips_rows_locked_by_another_transaction(
    client: AnyClient, conn: psycopg.Connection[Any], db_url: str
) -> None:
    locked, free = insert_job(conn), insert_job(conn)
    with psycopg.connect(db_url) as other:
        other.execute("SELECT 1 FROM river_job WHERE id = %s FOR UPDATE", (locked,))
        deleted = await client.job_delete_many(all=True)
        other.rollback()
    assert [j.id for j in deleted] == [free]
    assert raw_job(conn, locked) is not None


# --- after a lock wait ---------------------------------------------------------------------------


def _commit_once_waited_on(db_url: str, other: psycopg.Connection[Any]) -> threading.Thread:
    """Commit ``other``'s transaction from a thread as soon as another backend waits for one
    of its locks (the operation under test, started right after)."""

    def run() -> None:
        with psycopg.connect(db_url, autocommit=True) as watcher:
            deadline = time.monotonic() + 20
            while not watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ).fetchone():
                assert time.monotonic() < deadline, "nobody waited for the row lock"
                time.sleep(0.005)
        other.commit()

    thread = threading.Thread(target=run, name="commit-on-wait")
    thread.start()
    return thread


async def test_job_cancel_after_a_lock_wait_reports_the_row_as_left(
    client: AnyClient, conn: psycopg.Connection[Any], db_url: str, listener: Listener
) -> None:
    # The job completes in another transaction while job_cancel waits for its lock: the job is
    # not marked, and the row returned is the completed one (it was reported "running").
    job_id = insert_job(conn, state="running", attempt=1)
    with psycopg.connect(db_url) as other:
        other.execute(
            "UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = %s",
            (job_id,),
        )
        thread = _commit_once_waited_on(db_url, other)
        job = await client.job_cancel(job_id)
        thread.join()
    assert job.state is JobState.COMPLETED
    raw = raw_job(conn, job_id)
    assert raw is not None
    assert (raw["state"], raw["metadata"]) == ("completed", {})
    assert listener.drain() == []


async def test_job_retry_after_a_lock_wait_decides_on_the_row_as_left(
    client: AnyClient, conn: psycopg.Connection[Any], db_url: str
) -> None:
    # The running job is discarded in another transaction while job_retry waits for its lock:
    # it is retried (it was refused as "running", and nothing happened).
    job_id = insert_job(conn, state="running", attempt=3, max_attempts=3)
    with psycopg.connect(db_url) as other:
        other.execute(
            "UPDATE river_job SET state = 'discarded', finalized_at = now() WHERE id = %s",
            (job_id,),
        )
        thread = _commit_once_waited_on(db_url, other)
        job = await client.job_retry(job_id)
        thread.join()
    assert job.state is JobState.AVAILABLE
    assert (job.attempt, job.max_attempts) == (3, 4)
    raw = raw_job(conn, job_id)
    assert raw is not None
    assert (raw["state"], raw["finalized_at"], raw["max_attempts"]) == ("available", None, 4)


async def test_job_retry_after_a_lock_wait_leaves_a_job_that_started_running(
    client: AnyClient, conn: psycopg.Connection[Any], db_url: str
) -> None:
    job_id = insert_job(conn, state="retryable", attempt=1)
    with psycopg.connect(db_url) as other:
        other.execute(
            "UPDATE river_job SET state = 'running', attempt = 2, attempted_at = now()"
            " WHERE id = %s",
            (job_id,),
        )
        thread = _commit_once_waited_on(db_url, other)
        job = await client.job_retry(job_id)
        thread.join()
    assert (job.state, job.attempt) == (JobState.RUNNING, 2)
    raw = raw_job(conn, job_id)
    assert raw is not None
    assert (raw["state"], raw["attempt"]) == ("running", 2)


# --- job_update ----------------------------------------------------------------------------------


async def test_job_update_output_merges_into_metadata(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    job_id = insert_job(conn, state="running", metadata={"keep": [1, 2], "output": "old"})
    output = {"rows": 3, "names": ["a", "b"], "ok": True, "none": None}
    job = await client.job_update(job_id, output=output)
    assert job.state is JobState.RUNNING  # allowed while it runs, state untouched
    assert job.metadata == {"keep": [1, 2], "output": output}
    raw = raw_job(conn, job_id)
    assert raw is not None
    assert raw["metadata"] == {"keep": [1, 2], "output": output}
    assert raw["state"] == "running"


@pytest.mark.parametrize("output", [None, 0, "text", [1, "two"], {"nested": {"x": 1.5}}])
async def test_job_update_output_any_json_value(
    client: AnyClient, conn: psycopg.Connection[Any], output: Any
) -> None:
    job_id = insert_job(conn, state="completed")
    await client.job_update(job_id, output=output)
    raw = raw_job(conn, job_id)
    assert raw is not None
    assert raw["metadata"] == {"output": output}


async def test_job_update_not_found(client: AnyClient) -> None:
    with pytest.raises(JobNotFoundError):
        await client.job_update(777, output=1)


async def test_job_update_rejects_unencodable_output(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    job_id = insert_job(conn)
    with pytest.raises(ValidationError) as info:
        await client.job_update(job_id, output={"x": object()})
    assert info.value.field == "output"
    with pytest.raises(ValidationError):
        await client.job_update(job_id, output=float("nan"))
    raw = raw_job(conn, job_id)
    assert raw is not None
    assert raw["metadata"] == {}


# The size limit lives in the shared operation, so these big payloads go through one client each.


async def test_job_update_output_over_32_mb_is_rejected(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    job_id = insert_job(conn)
    async with river.AsyncClient(db_url) as client:
        # The encoded string is its characters plus two quotes: one byte over the limit.
        with pytest.raises(ValidationError) as info:
            await client.job_update(job_id, output="x" * (MAX_OUTPUT_BYTES - 1))
        assert info.value.field == "output"
        # 17 Mi characters, but 34 MiB of UTF-8: over the limit too.
        with pytest.raises(ValidationError):
            await client.job_update(job_id, output="é" * (17 * 1024 * 1024))
    raw = raw_job(conn, job_id)
    assert raw is not None
    assert raw["metadata"] == {}


def test_job_update_output_of_exactly_32_mb_is_accepted(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    job_id = insert_job(conn, metadata={"other": 1})
    output = "x" * (MAX_OUTPUT_BYTES - 2)  # plus two quotes: exactly 32 MiB encoded
    with river.Client(db_url) as client:
        client.job_update(job_id, output=output)
    row = conn.execute(
        "SELECT length(metadata->>'output'), metadata->'other' FROM river_job WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == (MAX_OUTPUT_BYTES - 2, 1)


# --- queues --------------------------------------------------------------------------------------


async def test_queue_list_ordered_by_name_with_limit(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    for name in ["zeta", "alpha", "mid_1", "beta"]:
        insert_queue(conn, name)
    queues = await client.queue_list()
    assert [q.name for q in queues] == ["alpha", "beta", "mid_1", "zeta"]
    assert [q.name for q in await client.queue_list(limit=2)] == ["alpha", "beta"]
    assert [q.name for q in await client.queue_list(2)] == ["alpha", "beta"]


async def test_queue_list_default_limit_is_100(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO river_queue (name, updated_at)"
        " SELECT 'q' || lpad(i::text, 3, '0'), now() FROM generate_series(1, 105) AS i"
    )
    queues = await client.queue_list()
    assert len(queues) == 100
    assert queues[0].name == "q001"
    assert queues[-1].name == "q100"


@pytest.mark.parametrize("limit", [0, -3, 10_001, False])
async def test_queue_list_limit_bounds(client: AnyClient, limit: Any) -> None:
    with pytest.raises(ValidationError) as info:
        await client.queue_list(limit=limit)
    assert info.value.field == "limit"


async def test_queue_list_empty(client: AnyClient) -> None:
    assert await client.queue_list() == []


async def test_queue_get(client: AnyClient, conn: psycopg.Connection[Any]) -> None:
    paused_at = datetime(2024, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    insert_queue(conn, "q", paused_at=paused_at, metadata={"concurrency": {"global": 5}})
    queue = await client.queue_get("q")
    raw = raw_queue(conn, "q")
    assert raw is not None
    assert queue.name == "q"
    assert queue.paused_at == paused_at
    assert queue.paused is True
    assert queue.metadata == {"concurrency": {"global": 5}}
    assert queue.created_at == raw["created_at"]
    assert queue.updated_at == raw["updated_at"]


async def test_queue_get_missing(client: AnyClient) -> None:
    with pytest.raises(QueueNotFoundError) as info:
        await client.queue_get("nope")
    assert info.value.name == "nope"


async def test_queue_pause_and_resume_named_queue(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener
) -> None:
    insert_queue(conn, "q")
    insert_queue(conn, "other")
    other_before = raw_queue(conn, "other")

    before_db = db_now(conn)
    await client.queue_pause("q")
    after_db = db_now(conn)
    row = raw_queue(conn, "q")
    assert row is not None
    assert row["paused_at"] is not None
    assert before_db <= row["paused_at"] <= after_db
    assert before_db <= row["updated_at"] <= after_db
    assert (await client.queue_get("q")).paused is True
    assert raw_queue(conn, "other") == other_before
    assert listener.drain() == ['{"action":"pause","queue":"q"}']

    before_db = db_now(conn)
    await client.queue_resume("q")
    after_db = db_now(conn)
    row = raw_queue(conn, "q")
    assert row is not None
    assert row["paused_at"] is None
    assert before_db <= row["updated_at"] <= after_db
    assert raw_queue(conn, "other") == other_before
    assert listener.drain() == ['{"action":"resume","queue":"q"}']


async def test_queue_pause_already_paused_keeps_its_paused_at(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener
) -> None:
    original = datetime(2023, 6, 7, 8, 9, 10, tzinfo=UTC)
    insert_queue(conn, "q", paused_at=original)
    before = raw_queue(conn, "q")
    await client.queue_pause("q")
    assert raw_queue(conn, "q") == before
    assert listener.drain() == ['{"action":"pause","queue":"q"}']


async def test_queue_resume_not_paused_queue_is_left_alone(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener
) -> None:
    insert_queue(conn, "q")
    before = raw_queue(conn, "q")
    await client.queue_resume("q")
    assert raw_queue(conn, "q") == before  # updated_at bumped only when it was paused
    assert listener.drain() == ['{"action":"resume","queue":"q"}']


async def test_queue_pause_star_pauses_every_queue(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener
) -> None:
    original = datetime(2023, 1, 1, tzinfo=UTC)
    insert_queue(conn, "a")
    insert_queue(conn, "b")
    insert_queue(conn, "c", paused_at=original)
    before_db = db_now(conn)
    await client.queue_pause("*")
    after_db = db_now(conn)
    rows = {n: raw_queue(conn, n) for n in "abc"}
    for name in "ab":
        row = rows[name]
        assert row is not None
        assert row["paused_at"] is not None
        assert before_db <= row["paused_at"] <= after_db
    c_row = rows["c"]
    assert c_row is not None
    assert c_row["paused_at"] == original
    assert listener.drain() == ['{"action":"pause","queue":"*"}']

    await client.queue_resume("*")
    assert all((r := raw_queue(conn, n)) is not None and r["paused_at"] is None for n in "abc")
    assert listener.drain() == ['{"action":"resume","queue":"*"}']


async def test_queue_pause_star_without_queues_is_not_an_error(client: AnyClient) -> None:
    await client.queue_pause("*")
    await client.queue_resume("*")


@pytest.mark.parametrize("action", ["queue_pause", "queue_resume"])
async def test_queue_pause_resume_missing_queue(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener, action: str
) -> None:
    insert_queue(conn, "present")
    with pytest.raises(QueueNotFoundError) as info:
        await getattr(client, action)("missing")
    assert info.value.name == "missing"
    assert listener.drain() == []
    row = raw_queue(conn, "present")
    assert row is not None
    assert row["paused_at"] is None


@pytest.mark.parametrize("name", ["", "Upper", "bad name", "-lead", "a" * 65])
async def test_queue_pause_invalid_name(client: AnyClient, name: str) -> None:
    with pytest.raises(ValidationError):
        await client.queue_pause(name)


async def test_queue_pause_tx_commit_and_rollback(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener
) -> None:
    insert_queue(conn, "q")
    t = await client.connect()
    try:
        await client.queue_pause_tx(t.conn, "q")
        assert listener.drain() == []
        await t.rollback()
        row = raw_queue(conn, "q")
        assert row is not None
        assert row["paused_at"] is None
        assert listener.drain() == []

        await client.queue_pause_tx(t.conn, "q")
        await t.commit()
        row = raw_queue(conn, "q")
        assert row is not None
        assert row["paused_at"] is not None
        assert listener.drain() == ['{"action":"pause","queue":"q"}']

        await client.queue_resume_tx(t.conn, "q")
        assert listener.drain() == []
        await t.commit()
        row = raw_queue(conn, "q")
        assert row is not None
        assert row["paused_at"] is None
        assert listener.drain() == ['{"action":"resume","queue":"q"}']
    finally:
        await t.close()


async def test_queue_update_replaces_metadata_and_notifies(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener
) -> None:
    paused_at = datetime(2024, 2, 2, tzinfo=UTC)
    insert_queue(conn, "q", metadata={"old": True, "shared": 1}, paused_at=paused_at)
    insert_queue(conn, "other", metadata={"untouched": 1})
    before_db = db_now(conn)
    queue = await client.queue_update("q", metadata={"shared": 2})
    after_db = db_now(conn)

    assert queue.name == "q"
    assert queue.metadata == {"shared": 2}
    assert queue.paused_at == paused_at
    assert before_db <= queue.updated_at <= after_db
    row = raw_queue(conn, "q")
    assert row is not None
    assert row["metadata"] == {"shared": 2}
    assert row["updated_at"] == queue.updated_at
    assert row["paused_at"] == paused_at
    other = raw_queue(conn, "other")
    assert other is not None
    assert other["metadata"] == {"untouched": 1}
    assert listener.drain() == ['{"action":"metadata_changed","metadata":{"shared":2},"queue":"q"}']


async def test_queue_update_nested_metadata_payload(
    client: AnyClient, conn: psycopg.Connection[Any], listener: Listener
) -> None:
    insert_queue(conn, "q")
    metadata = {"concurrency": {"global_limit": 10, "local_limit": 2}, "label": "<a&b>"}
    await client.queue_update("q", metadata=metadata)
    (payload,) = listener.drain()
    assert json.loads(payload) == {"action": "metadata_changed", "metadata": metadata, "queue": "q"}
    assert " " not in payload  # compact, as River (Go) sends it


async def test_queue_update_missing_queue(client: AnyClient, listener: Listener) -> None:
    with pytest.raises(QueueNotFoundError):
        await client.queue_update("missing", metadata={"a": 1})
    assert listener.drain() == []


async def test_queue_update_rejects_non_object_metadata(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    insert_queue(conn, "q", metadata={"a": 1})
    with pytest.raises(ValidationError):
        await client.queue_update("q", metadata=[1, 2])  # type: ignore[arg-type]
    row = raw_queue(conn, "q")
    assert row is not None
    assert row["metadata"] == {"a": 1}


# --- custom schema -------------------------------------------------------------------------------


async def test_admin_in_a_custom_schema_uses_that_schema_and_channel(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    from river.migrate import Migrator

    conn.execute('DROP SCHEMA IF EXISTS "Other" CASCADE')
    conn.execute('CREATE SCHEMA "Other"')
    Migrator(conn, schema="Other").migrate_up()
    lst = psycopg.connect(db_url, autocommit=True)
    try:
        lst.execute('LISTEN "Other.river_control"')
        client = river.AsyncClient(db_url, river.Config(schema="Other"))
        try:
            inserted = await client.insert(AdminArgs(n=1), river.InsertOpts(queue="q"))
            conn.execute(
                "UPDATE \"Other\".river_job SET state = 'running', attempted_at = now()"
                " WHERE id = %s",
                (inserted.job.id,),
            )
            conn.execute("INSERT INTO \"Other\".river_queue (name, updated_at) VALUES ('q', now())")
            job = await client.job_cancel(inserted.job.id)
            assert job.state is JobState.RUNNING
            await client.queue_pause("q")
            listed = await client.job_list(river.JobListParams())
            assert [j.id for j in listed.jobs] == [inserted.job.id]
            conn.execute("SELECT pg_notify('Other.river_control', 'end')")
            payloads = []
            for n in lst.notifies(timeout=10):
                if n.payload == "end":
                    break
                payloads.append(n.payload)
            assert payloads == [
                cancel_payload(inserted.job.id, "q"),
                '{"action":"pause","queue":"q"}',
            ]
            # Nothing of it touched the default schema.
            assert job_count(conn) == 0
        finally:
            await client.close()
    finally:
        lst.close()
        conn.execute('DROP SCHEMA "Other" CASCADE')
