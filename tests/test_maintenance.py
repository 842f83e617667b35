"""Each maintenance service's ``run_once`` against real rows (PROTOCOL.md 9.2 to 9.7).

Rows are written with plain SQL so every state, timestamp, unique key and mask is exactly what
the case needs; the services come from ``client.maintenance_services()`` (configured like the
client) or are built directly when a case needs other options. Times are relative to the
database clock, which is the clock the services judge by.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import anyio
import psycopg
import pytest
from helpers import DB, open_db, wait_for
from psycopg import sql

import river
from river._driver import queries_for
from river._maintenance import (
    DEFAULT_REINDEX_INDEXES,
    RESCUE_ERROR,
    JobCleaner,
    QueueCleaner,
    Reindexer,
    Rescuer,
    Scheduler,
)
from river._types import JobRow
from river.migrate import Migrator

pytestmark = pytest.mark.anyio


class Maint(river.JobArgs):
    kind: ClassVar[str] = "maint"
    n: int = 0


class MaintWorker(river.Worker[Maint]):
    async def work(self, job: river.Job[Maint]) -> None:
        pass


class Forever(river.JobArgs):
    kind: ClassVar[str] = "maint_forever"


class ForeverWorker(river.Worker[Forever]):
    """No timeout: such a job may legitimately run for days, so the rescuer never touches it."""

    async def work(self, job: river.Job[Forever]) -> None:
        pass

    def timeout(self, job: river.Job[Forever]) -> float | None:
        return -1


class Long(river.JobArgs):
    kind: ClassVar[str] = "maint_long"


class LongWorker(river.Worker[Long]):
    async def work(self, job: river.Job[Long]) -> None:
        pass

    def timeout(self, job: river.Job[Long]) -> float | None:
        return 3 * 3600.0


class Quirky(river.JobArgs):
    kind: ClassVar[str] = "maint_quirky"
    mode: str = "raise"


#: When QuirkyWorker.next_retry asks its jobs to be retried (fixed, to be recognised).
QUIRKY_RETRY = datetime(2099, 1, 1, tzinfo=UTC)


class QuirkyWorker(river.Worker[Quirky]):
    """User code that misbehaves in the rescuer's hands: a ``timeout()`` that raises (or says
    NaN: no timeout), and a ``next_retry()`` of its own."""

    async def work(self, job: river.Job[Quirky]) -> None:
        pass

    def timeout(self, job: river.Job[Quirky]) -> float | None:
        if job.args.mode == "raise":
            raise KeyError("tenant")
        if job.args.mode == "delta":
            return timedelta(minutes=5)  # type: ignore[return-value]  # seconds were meant
        return math.nan

    def next_retry(self, job: river.Job[Quirky]) -> datetime | None:
        return QUIRKY_RETRY


def workers() -> river.Workers:
    registry = river.Workers()
    for w in (MaintWorker(), ForeverWorker(), LongWorker(), QuirkyWorker()):
        registry.add(w)
    return registry


@asynccontextmanager
async def opened(db_url: str, **config: Any) -> AsyncIterator[tuple[river.AsyncClient, DB]]:
    """An insert/admin client (pool open, not started) and a raw connection."""
    client = river.AsyncClient(db_url, river.Config(workers=workers(), **config))
    async with client, open_db(db_url) as db:
        yield client, db


def services(client: river.AsyncClient) -> tuple[Scheduler, Rescuer, JobCleaner, QueueCleaner]:
    scheduler, rescuer, cleaner, queue_cleaner, _ = client.maintenance_services()
    return scheduler, rescuer, cleaner, queue_cleaner


def ago(seconds: float | None) -> str:
    return "NULL" if seconds is None else f"now() - make_interval(secs => {float(seconds)})"


async def insert_job(
    db: DB,
    *,
    kind: str = "maint",
    state: str = "available",
    queue: str = "default",
    args: str = '{"n": 0}',
    priority: int = 1,
    attempt: int = 0,
    max_attempts: int = 25,
    scheduled_in: float = 0.0,
    attempted_ago: float | None = None,
    finalized_ago: float | None = None,
    metadata: dict[str, Any] | None = None,
    errors: int = 0,
    unique_key: str | None = None,
    unique_states: int | None = None,
) -> int:
    """Insert one row with plain SQL (no notification); times relative to database now."""
    if finalized_ago is None and state in ("completed", "cancelled", "discarded"):
        finalized_ago = 1.0
    error = json.dumps({"at": "2024-01-01T00:00:00Z", "attempt": 1, "error": "e", "trace": ""})
    query = f"""
        INSERT INTO river_job (kind, state, queue, args, priority, attempt, max_attempts,
                               scheduled_at, attempted_at, finalized_at, metadata, errors,
                               unique_key, unique_states)
        VALUES (%(kind)s, %(state)s, %(queue)s, %(args)s, %(priority)s, %(attempt)s,
                %(max_attempts)s, now() + make_interval(secs => %(scheduled_in)s),
                {ago(attempted_ago)}, {ago(finalized_ago)}, %(metadata)s,
                CASE WHEN %(errors)s > 0 THEN array_fill(%(error)s::jsonb, ARRAY[%(errors)s]) END,
                %(unique_key)s, %(unique_states)s::integer::bit(8))
        RETURNING id"""
    return int(
        await db.scalar(
            query,
            {
                "kind": kind,
                "state": state,
                "queue": queue,
                "args": args,
                "priority": priority,
                "attempt": attempt,
                "max_attempts": max_attempts,
                "scheduled_in": scheduled_in,
                "metadata": json.dumps(metadata or {}),
                "error": error,
                "errors": errors,
                "unique_key": hashlib.sha256(unique_key.encode()).digest() if unique_key else None,
                "unique_states": unique_states,
            },
        )
    )


# --- scheduler ----------------------------------------------------------------------------------


async def test_scheduler_promotes_due_jobs_and_leaves_later_ones(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        scheduler, *_ = services(client)
        due_scheduled = await insert_job(db, state="scheduled", scheduled_in=-60)
        due_retryable = await insert_job(db, state="retryable", scheduled_in=-1, errors=1)
        soon = await insert_job(db, state="scheduled", scheduled_in=3)  # within the 5 s window
        later = await insert_job(db, state="scheduled", scheduled_in=30)
        later_retry = await insert_job(db, state="retryable", scheduled_in=20, errors=1)
        other = await insert_job(db, state="available")
        before = {r["id"]: r for r in await db.jobs()}

        result = await scheduler.run_once()
        assert (result.promoted, result.discarded) == (3, 0)
        assert result.queues == ("default",)
        after = {r["id"]: r for r in await db.jobs()}
        for job_id in (due_scheduled, due_retryable, soon):
            assert after[job_id]["state"] == "available"
            # Promotion changes the state only: a job due in 3 s is fetched in 3 s.
            assert after[job_id]["scheduled_at"] == before[job_id]["scheduled_at"]
            assert after[job_id]["finalized_at"] is None
        assert after[later]["state"] == "scheduled"
        assert after[later_retry]["state"] == "retryable"
        assert after[other] == before[other]

        again = await scheduler.run_once()
        assert (again.promoted, again.discarded) == (0, 0)


async def test_scheduler_respects_its_batch_limit(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        scheduler, *_ = services(client)
        scheduler.limit = 2
        ids = [await insert_job(db, state="scheduled", scheduled_in=-10 + i) for i in range(5)]
        first = await scheduler.run_once()
        assert first.promoted == 2
        # Candidates are taken in (priority, scheduled_at, id) order.
        assert [await db.state(i) for i in ids] == ["available"] * 2 + ["scheduled"] * 3
        await scheduler.run_once()
        await scheduler.run_once()
        assert await db.count("state = 'available'") == 5


# Unique masks: retryable (0x20) left out, so a retryable row holds no key while it waits.
MASK_NO_RETRYABLE = 0xFF & ~0x20 & ~0x02 & ~0x08  # all but retryable, cancelled, discarded
MASK_DEFAULT = 0xF5  # all but cancelled and discarded


async def test_scheduler_discards_a_job_whose_unique_key_is_held_outside_the_candidates(
    db_url: str,
) -> None:
    async with opened(db_url) as (client, db):
        scheduler, *_ = services(client)
        holder = await insert_job(
            db, state="available", unique_key="k1", unique_states=MASK_DEFAULT
        )
        blocked = await insert_job(
            db,
            state="retryable",
            scheduled_in=-5,
            errors=1,
            metadata={"keep": "me"},
            unique_key="k1",
            unique_states=MASK_NO_RETRYABLE,
        )
        # The same key held by a row in a state its own mask does not cover blocks nothing.
        await insert_job(db, state="cancelled", unique_key="k2", unique_states=MASK_DEFAULT)
        free = await insert_job(
            db,
            state="retryable",
            scheduled_in=-5,
            errors=1,
            unique_key="k2",
            unique_states=MASK_NO_RETRYABLE,
        )
        result = await scheduler.run_once()
        assert (result.promoted, result.discarded) == (1, 1)
        row = await db.job(blocked)
        assert row["state"] == "discarded"
        assert row["finalized_at"] is not None
        assert row["metadata"] == {"keep": "me", "unique_key_conflict": "scheduler_discarded"}
        assert (await db.job(holder))["state"] == "available"
        assert (await db.job(free))["state"] == "available"
        assert "unique_key_conflict" not in (await db.job(free))["metadata"]


async def test_scheduler_ranks_candidates_sharing_a_unique_key(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        scheduler, *_ = services(client)
        common: dict[str, Any] = {
            "state": "retryable",
            "errors": 1,
            "unique_states": MASK_NO_RETRYABLE,
        }
        # Rank by (priority, scheduled_at, id): the priority-1 row wins although it is later.
        low = await insert_job(db, scheduled_in=-30, priority=2, unique_key="k", **common)
        best = await insert_job(db, scheduled_in=-10, priority=1, unique_key="k", **common)
        tie_late = await insert_job(db, scheduled_in=-5, priority=1, unique_key="k", **common)
        alone = await insert_job(db, scheduled_in=-5, unique_key="other", **common)
        result = await scheduler.run_once()
        assert (result.promoted, result.discarded) == (2, 2)
        assert await db.state(best) == "available"
        assert await db.state(alone) == "available"
        for job_id in (low, tie_late):
            row = await db.job(job_id)
            assert row["state"] == "discarded"
            assert row["metadata"]["unique_key_conflict"] == "scheduler_discarded"


async def test_scheduler_notifies_queues_with_jobs_due_now(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        scheduler, *_ = services(client)
        await insert_job(db, state="scheduled", queue="due_q", scheduled_in=-1)
        await insert_job(db, state="retryable", queue="due_q", scheduled_in=-2, errors=1)
        await insert_job(db, state="scheduled", queue="soon_q", scheduled_in=3)
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listen:
            await listen.execute(sql.SQL("LISTEN {}").format(sql.Identifier("public.river_insert")))
            result = await scheduler.run_once()
            assert sorted(result.queues) == ["due_q", "soon_q"]
            await db.execute("SELECT pg_notify('public.river_insert', 'sentinel')")
            payloads = []
            async for n in listen.notifies(timeout=5):
                if n.payload == "sentinel":
                    break
                payloads.append(n.payload)
        # Exactly River (Go)'s text, once per queue with due jobs; none for jobs due later
        # (fetch would find nothing yet).
        assert payloads == ['{"queue": "due_q"}']


# --- rescuer ------------------------------------------------------------------------------------

STUCK = 2 * 3600.0  # attempted two hours ago: past the default 1 h horizon


async def test_rescuer_retries_discards_cancels_and_skips(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        _, rescuer, *_ = services(client)
        assert rescuer.rescue_after == 3600.0
        retry = await insert_job(
            db,
            state="running",
            attempt=1,
            attempted_ago=STUCK,
            metadata={"river:rescue_count": 3, "x": 1},
        )
        last = await insert_job(db, state="running", attempt=5, max_attempts=5, attempted_ago=STUCK)
        cancel = await insert_job(
            db,
            state="running",
            attempt=1,
            attempted_ago=STUCK,
            metadata={"cancel_attempted_at": "2024-01-01T00:00:00.000000000Z"},
        )
        forever = await insert_job(
            db, kind="maint_forever", args="{}", state="running", attempt=1, attempted_ago=STUCK
        )
        long_ = await insert_job(
            db, kind="maint_long", args="{}", state="running", attempt=1, attempted_ago=STUCK
        )
        unknown = await insert_job(
            db, kind="go_only_kind", state="running", attempt=2, errors=1, attempted_ago=STUCK
        )
        unknown_last = await insert_job(
            db, kind="go_only_kind", state="running", attempt=3, max_attempts=3, attempted_ago=STUCK
        )
        bad_args = await insert_job(
            db, args='{"n": "not a number"}', state="running", attempt=1, attempted_ago=STUCK
        )
        recent = await insert_job(db, state="running", attempt=1, attempted_ago=600)
        before = {r["id"]: r for r in await db.jobs()}

        now = await db.scalar("SELECT now() AS now")  # before the pass: its retry comes later
        result = await rescuer.run_once()
        assert result.rescued == {"retryable": 3, "discarded": 2, "cancelled": 1}
        assert result.skipped == 2  # forever, long_ (recent is not even selected)
        rows = {r["id"]: r for r in await db.jobs()}

        r = rows[retry]
        assert r["state"] == "retryable"
        assert r["finalized_at"] is None
        assert now < r["scheduled_at"] < now + timedelta(seconds=30)  # 1st error: ~1 s
        assert r["metadata"] == {"river:rescue_count": 4, "x": 1}
        assert r["attempt"] == 1
        (err,) = r["errors"]
        assert err["error"] == RESCUE_ERROR == "Stuck job rescued by JobRescuer"
        assert err["trace"] == ""
        assert err["attempt"] == 1

        assert rows[last]["state"] == "discarded"
        assert rows[last]["finalized_at"] is not None
        assert rows[last]["metadata"] == {"river:rescue_count": 1}
        assert rows[last]["errors"][-1]["error"] == RESCUE_ERROR

        assert rows[cancel]["state"] == "cancelled"
        assert rows[cancel]["finalized_at"] is not None
        assert rows[cancel]["metadata"]["river:rescue_count"] == 1

        # River (Go) would discard kinds it has no worker for; this library retries them.
        assert rows[unknown]["state"] == "retryable"
        assert len(rows[unknown]["errors"]) == 2
        assert rows[unknown_last]["state"] == "discarded"
        assert rows[bad_args]["state"] == "retryable"

        for untouched in (forever, long_, recent):
            assert rows[untouched] == before[untouched]

        # A second pass finds nothing more to do.
        again = await rescuer.run_once()
        assert again.rescued == {}
        assert again.skipped == 2


async def test_rescuer_survives_worker_code_that_raises(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose timeout() raises for a stuck job's args ended every pass (and, over
    restarts, the leader): no stuck job was rescued any more. It now counts as the client's
    job timeout, said once per attempt; a NaN timeout is none (the executor lets such a job
    run), and the worker's next_retry() sets the retry time, as after any failed attempt."""
    async with opened(db_url) as (client, db):
        _, rescuer, *_ = services(client)
        raising = await insert_job(
            db, kind="maint_quirky", args="{}", state="running", attempt=1, attempted_ago=STUCK
        )
        endless = await insert_job(
            db,
            kind="maint_quirky",
            args='{"mode": "nan"}',
            state="running",
            attempt=1,
            attempted_ago=STUCK,
        )
        delta = await insert_job(
            db,
            kind="maint_quirky",
            args='{"mode": "delta"}',
            state="running",
            attempt=1,
            attempted_ago=STUCK,
        )
        plain = await insert_job(db, state="running", attempt=1, attempted_ago=STUCK)
        with caplog.at_level(logging.WARNING, logger="river"):
            result = await rescuer.run_once()
        assert result.rescued == {"retryable": 3}
        assert await db.state(delta) == "retryable"
        assert await db.state(plain) == "retryable"
        row = await db.job(raising)
        assert row["state"] == "retryable"
        assert row["scheduled_at"] == QUIRKY_RETRY
        assert await db.state(endless) == "running"
        warned = [r for r in caplog.records if "timeout() failed" in r.getMessage()]
        assert warned[0].getMessage() == (
            f"rescuer: job {raising}: QuirkyWorker.timeout() failed ('tenant'); "
            "using the client's job timeout"
        )
        assert len(warned) == 2  # and the timedelta one's TypeError
        assert warned[0].job_id == raising  # type: ignore[attr-defined]


async def test_rescuer_horizon_follows_the_config(db_url: str) -> None:
    async with opened(db_url, rescue_stuck_jobs_after=120.0) as (client, db):
        _, rescuer, *_ = services(client)
        assert rescuer.rescue_after == 120.0
        stuck = await insert_job(db, state="running", attempt=1, attempted_ago=180)
        fresh = await insert_job(db, state="running", attempt=1, attempted_ago=60)
        result = await rescuer.run_once()
        assert result.rescued == {"retryable": 1}
        assert await db.state(stuck) == "retryable"
        assert await db.state(fresh) == "running"


async def test_rescuer_pages_through_more_than_one_batch(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        _, rescuer, *_ = services(client)
        rescuer.limit = 2
        for _ in range(5):
            await insert_job(db, state="running", attempt=1, attempted_ago=STUCK)
        result = await rescuer.run_once()
        assert result.rescued == {"retryable": 5}
        assert await db.count("state = 'running'") == 0


class RacingRescuer(Rescuer):
    """A rescuer that lets another actor change rows after it selected them and before it
    writes (the decision step sits between the two)."""

    def __init__(self, *args: Any, race: Callable[[JobRow], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._race = race

    def _decide(self, row: JobRow, db_now: Any) -> Any:
        self._race(row)
        return super()._decide(row, db_now)


async def test_rescuer_guard_leaves_jobs_changed_after_selection_alone(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        completed = await insert_job(db, state="running", attempt=1, attempted_ago=STUCK)
        refetched = await insert_job(db, state="running", attempt=1, attempted_ago=STUCK)
        rescued_meanwhile = await insert_job(db, state="running", attempt=1, attempted_ago=STUCK)
        untouched = await insert_job(db, state="running", attempt=1, attempted_ago=STUCK)

        with psycopg.connect(db_url, autocommit=True) as other:

            def race(row: JobRow) -> None:
                # Another client acts on the row after the rescuer read it.
                if row.id == completed:
                    other.execute(
                        "UPDATE river_job SET state = 'completed', finalized_at = now()"
                        " WHERE id = %s",
                        (row.id,),
                    )
                elif row.id == refetched:
                    # Rescued by someone else and fetched again: running, a new attempt.
                    other.execute(
                        "UPDATE river_job SET attempt = attempt + 1, attempted_at = now()"
                        " WHERE id = %s",
                        (row.id,),
                    )
                elif row.id == rescued_meanwhile:
                    other.execute(
                        "UPDATE river_job SET state = 'retryable', scheduled_at = now()"
                        " WHERE id = %s",
                        (row.id,),
                    )

            rescuer = RacingRescuer(
                client._pool,
                client._queries,
                workers(),
                retry_policy=client.config.retry_policy,
                race=race,
            )
            before = {r["id"]: r for r in await db.jobs()}
            result = await rescuer.run_once()

        assert result.rescued == {"retryable": 1}
        rows = {r["id"]: r for r in await db.jobs()}
        assert rows[untouched]["state"] == "retryable"
        assert rows[untouched]["errors"][0]["error"] == RESCUE_ERROR

        assert rows[completed]["state"] == "completed"
        assert rows[completed]["errors"] is None
        assert rows[completed]["metadata"] == {}

        assert rows[refetched]["state"] == "running"
        assert rows[refetched]["attempt"] == 2
        assert rows[refetched]["attempted_at"] > before[refetched]["attempted_at"]
        assert rows[refetched]["errors"] is None

        assert rows[rescued_meanwhile]["state"] == "retryable"
        assert rows[rescued_meanwhile]["errors"] is None
        assert rows[rescued_meanwhile]["metadata"] == {}


# --- job cleaner --------------------------------------------------------------------------------

HOUR = 3600.0
DAY = 24 * HOUR


async def test_job_cleaner_deletes_each_state_after_its_retention(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        _, _, cleaner, _ = services(client)
        assert (
            cleaner.completed_retention,
            cleaner.cancelled_retention,
            cleaner.discarded_retention,
        ) == (DAY, DAY, 7 * DAY)
        gone = [
            await insert_job(db, state="completed", finalized_ago=DAY + 60),
            await insert_job(db, state="cancelled", finalized_ago=DAY + 60),
            await insert_job(db, state="discarded", finalized_ago=7 * DAY + 60),
        ]
        kept = [
            await insert_job(db, state="completed", finalized_ago=DAY - 60),
            await insert_job(db, state="cancelled", finalized_ago=DAY - 60),
            await insert_job(db, state="discarded", finalized_ago=DAY + 60),
            await insert_job(db, state="available", scheduled_in=-30 * DAY),
            await insert_job(db, state="running", attempt=1, attempted_ago=30 * DAY),
            await insert_job(db, state="scheduled", scheduled_in=-30 * DAY),
            await insert_job(db, state="retryable", scheduled_in=-30 * DAY, errors=1),
            await insert_job(db, state="pending", scheduled_in=-30 * DAY),
        ]
        assert await cleaner.run_once() == 3
        remaining = {r["id"] for r in await db.jobs()}
        assert remaining == set(kept)
        assert not remaining & set(gone)
        assert await cleaner.run_once() == 0


async def test_job_cleaner_keeps_forever_with_minus_one_and_uses_config(db_url: str) -> None:
    config = {
        "completed_job_retention": -1,
        "cancelled_job_retention": 60.0,
        "discarded_job_retention": -1,
    }
    async with opened(db_url, **config) as (client, db):
        _, _, cleaner, _ = services(client)
        old = 365 * DAY
        completed = await insert_job(db, state="completed", finalized_ago=old)
        discarded = await insert_job(db, state="discarded", finalized_ago=old)
        cancelled = await insert_job(db, state="cancelled", finalized_ago=120)
        recent_cancel = await insert_job(db, state="cancelled", finalized_ago=10)
        assert await cleaner.run_once() == 1
        remaining = {r["id"] for r in await db.jobs()}
        assert remaining == {completed, discarded, recent_cancel}
        assert cancelled not in remaining


async def test_job_cleaner_deletes_in_batches_until_done(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        _, _, cleaner, _ = services(client)
        cleaner.limit = 3
        for _ in range(10):
            await insert_job(db, state="completed", finalized_ago=2 * DAY)
        keep = await insert_job(db, state="completed", finalized_ago=60)
        assert await cleaner.run_once() == 10
        assert [r["id"] for r in await db.jobs()] == [keep]


# --- queue cleaner ------------------------------------------------------------------------------


async def test_queue_cleaner_removes_queues_idle_for_a_day(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        _, _, _, queue_cleaner = services(client)
        assert queue_cleaner.idle == DAY
        for name, idle in (("abandoned", DAY + 60), ("old_but_alive", DAY - 60), ("fresh", 0.0)):
            await db.execute(
                "INSERT INTO river_queue (name, created_at, metadata, updated_at)"
                " VALUES (%(name)s, now() - interval '30 days', '{}',"
                " now() - make_interval(secs => %(idle)s))",
                {"name": name, "idle": idle},
            )
        assert await queue_cleaner.run_once() == 1
        names = [r["name"] for r in await db.all("SELECT name FROM river_queue ORDER BY name")]
        assert names == ["fresh", "old_but_alive"]
        assert await queue_cleaner.run_once() == 0

        custom = QueueCleaner(client._pool, client._queries, idle=30.0)
        assert await custom.run_once() == 1
        names = [r["name"] for r in await db.all("SELECT name FROM river_queue ORDER BY name")]
        assert names == ["fresh"]


# --- reindexer ----------------------------------------------------------------------------------


async def index_oids(db: DB, schema: str) -> dict[str, int]:
    rows = await db.all(
        "SELECT c.relname, c.oid::bigint AS oid FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %(schema)s AND c.relkind = 'i'",
        {"schema": schema},
    )
    return {r["relname"]: r["oid"] for r in rows}


async def test_reindexer_rebuilds_the_default_indexes(db_url: str) -> None:
    schedule = river.Cron("0 0 * * *")
    async with opened(db_url, reindexer_schedule=schedule) as (client, db):
        *_, reindexer = client.maintenance_services()
        assert reindexer is not None
        assert reindexer.indexes == DEFAULT_REINDEX_INDEXES
        assert reindexer.schedule is schedule
        before = await index_oids(db, "public")
        assert set(DEFAULT_REINDEX_INDEXES) <= set(before)
        result = await reindexer.run_once()
        assert result == dict.fromkeys(DEFAULT_REINDEX_INDEXES, "reindexed")
        after = await index_oids(db, "public")
        # REINDEX CONCURRENTLY builds a new index and swaps it in: new relations, same names,
        # and no leftovers.
        for name in DEFAULT_REINDEX_INDEXES:
            assert after[name] != before[name], name
        assert not [n for n in after if "_ccnew" in n or "_ccold" in n]
    # Without a schedule the client has no reindexer (opt-in).
    async with opened(db_url) as (client, _):
        assert client.maintenance_services()[4] is None


async def test_reindexer_skips_an_index_with_rebuild_leftovers(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        await db.execute("CREATE INDEX river_job_kind_ccnew ON river_job (kind)")
        await db.execute("CREATE INDEX river_job_pkey_ccold2 ON river_job (id)")
        # Not a leftover name: does not block river_job_args_index.
        await db.execute("CREATE INDEX river_job_args_index_ccnewer ON river_job (id)")
        reindexer = Reindexer(db_url, client._queries, river.Cron("0 0 * * *"))
        before = await index_oids(db, "public")
        result = await reindexer.run_once()
        assert result["river_job_kind"] == "skipped"
        assert result["river_job_pkey"] == "skipped"
        assert {k: v for k, v in result.items() if v != "skipped"} == {
            name: "reindexed"
            for name in DEFAULT_REINDEX_INDEXES
            if name not in ("river_job_kind", "river_job_pkey")
        }
        after = await index_oids(db, "public")
        assert after["river_job_kind"] == before["river_job_kind"]
        assert after["river_job_kind_ccnew"] == before["river_job_kind_ccnew"]
        assert after["river_job_args_index"] != before["river_job_args_index"]


async def test_reindexer_in_a_custom_schema(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA maint_other")
        Migrator(conn, schema="maint_other").migrate_up()
    async with open_db(db_url) as db:
        # A leftover in the default schema does not concern the custom schema's indexes...
        await db.execute("CREATE INDEX river_job_kind_ccnew ON public.river_job (kind)")
        # ...but one in the custom schema does.
        await db.execute(
            "CREATE INDEX river_job_metadata_index_ccold ON maint_other.river_job (id)"
        )
        reindexer = Reindexer(
            db_url,
            queries_for("maint_other"),
            river.Cron("0 0 * * *"),
            indexes=("river_job_kind", "river_job_metadata_index"),
        )
        public_before = await index_oids(db, "public")
        other_before = await index_oids(db, "maint_other")
        result = await reindexer.run_once()
        assert result == {"river_job_kind": "reindexed", "river_job_metadata_index": "skipped"}
        public_after = await index_oids(db, "public")
        other_after = await index_oids(db, "maint_other")
        assert public_after == public_before
        assert other_after["river_job_kind"] != other_before["river_job_kind"]
        assert other_after["river_job_metadata_index"] == other_before["river_job_metadata_index"]


async def test_reindexer_reports_a_failure_and_goes_on(db_url: str) -> None:
    async with opened(db_url) as (client, db):
        reindexer = Reindexer(
            db_url,
            client._queries,
            river.Cron("0 0 * * *"),
            indexes=("no_such_index", "river_job_kind"),
        )
        result = await reindexer.run_once()
        assert result["no_such_index"].startswith("failed:")
        assert result["river_job_kind"] == "reindexed"
        leftovers = [n for n in await index_oids(db, "public") if "_cc" in n]
        assert leftovers == []


async def _activity(db: DB, like: str) -> list[dict[str, Any]]:
    return await db.all(
        "SELECT pid, wait_event_type FROM pg_stat_activity"
        " WHERE query ILIKE %(like)s AND pid <> pg_backend_pid() AND datname = current_database()",
        {"like": like},
    )


async def test_reindexer_gives_up_on_a_rebuild_and_drops_what_it_left(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A rebuild past the timeout (here: waiting for an open writer) ends on the server (a
    client-side timeout left it running there), is logged, its leftovers are dropped, and the
    pass goes on with the next index (after a timeout the next ones were skipped: the
    connection had been closed)."""
    async with opened(db_url) as (client, db):
        reindexer = Reindexer(
            db_url,
            client._queries,
            river.Cron("0 0 * * *"),
            indexes=("river_job_kind", "river_job_metadata_index"),
            # Not shorter: the cleanup (a new connection, the cancel, the DROP) runs within
            # it too, and on a busy machine 1 s was not always enough.
            timeout=5.0,
        )
        result: dict[str, str] = {}
        async with await psycopg.AsyncConnection.connect(db_url) as writer:
            # An open transaction that wrote to the table: REINDEX CONCURRENTLY creates its
            # new index, then waits for it.
            await writer.execute("INSERT INTO river_job (kind, args) VALUES ('x', '{}')")
            with caplog.at_level(logging.WARNING, logger="river"):
                async with anyio.create_task_group() as tg:

                    async def run() -> None:
                        result.update(await reindexer.run_once())

                    tg.start_soon(run)
                    # The cleanup's DROP INDEX CONCURRENTLY waits for the writer as well.
                    await wait_for(
                        lambda: _activity(db, "DROP INDEX CONCURRENTLY%"),
                        timeout=30,
                        message="no drop",
                    )
                    assert await _activity(db, "REINDEX INDEX CONCURRENTLY%") == []
                    await writer.rollback()
        assert result == {
            "river_job_kind": "failed: timed out after 5 s",
            "river_job_metadata_index": "reindexed",
        }
        leftovers = [n for n in await index_oids(db, "public") if "_cc" in n]
        assert leftovers == []
        assert [r.getMessage() for r in caplog.records] == [
            "reindexer: rebuilding river_job_kind failed: timed out after 5 s"
        ]  # nothing from psycopg either: the server ended the statement, the connection lived


async def test_a_reindexer_stopped_mid_rebuild_stops_it_and_drops_what_it_left(
    db_url: str,
) -> None:
    """Cancelled during a rebuild (the client stopping, leadership lost), the reindexer ends
    the REINDEX the server would have gone on with, and drops its leftovers (PROTOCOL.md 9.7)
    before the cancellation goes on; the index was skipped by every later run."""
    async with opened(db_url) as (client, db):
        reindexer = Reindexer(
            db_url, client._queries, river.Cron("0 0 * * *"), indexes=("river_job_kind",)
        )
        async with await psycopg.AsyncConnection.connect(db_url) as writer:
            await writer.execute("INSERT INTO river_job (kind, args) VALUES ('x', '{}')")
            scope = anyio.CancelScope()
            finished = anyio.Event()
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    with scope:
                        await reindexer.run_once()
                    finished.set()

                tg.start_soon(run)
                await wait_for(
                    lambda: _activity(db, "REINDEX INDEX CONCURRENTLY%"), message="no reindex"
                )
                scope.cancel()
                await wait_for(lambda: _activity(db, "DROP INDEX CONCURRENTLY%"), message="no drop")
                assert await _activity(db, "REINDEX INDEX CONCURRENTLY%") == []
                await writer.rollback()
                with anyio.fail_after(10):
                    await finished.wait()
        assert scope.cancelled_caught
        leftovers = [n for n in await index_oids(db, "public") if "_cc" in n]
        assert leftovers == []


async def test_reindexer_runs_at_its_scheduled_time_on_an_injected_clock(db_url: str) -> None:
    """The reindexer reads its schedule against an injectable wall clock: a clock set 50 ms
    before midnight makes the daily run start now, without waiting for midnight."""
    just_before = datetime(2026, 1, 1, 23, 59, 59, 950_000, tzinfo=UTC)
    clock_calls: list[datetime] = []

    def clock() -> datetime:
        clock_calls.append(just_before)
        return just_before

    async with opened(db_url) as (client, db):
        reindexer = Reindexer(
            db_url,
            client._queries,
            river.Cron("0 0 * * *"),
            indexes=("river_job_kind",),
            clock=clock,
        )
        before = await index_oids(db, "public")
        async with anyio.create_task_group() as tg:
            await tg.start(reindexer.run)

            async def rebuilt() -> bool:
                return (await index_oids(db, "public"))["river_job_kind"] != before[
                    "river_job_kind"
                ]

            await wait_for(rebuilt, timeout=10, message="river_job_kind rebuilt")
            tg.cancel_scope.cancel()
        assert clock_calls
