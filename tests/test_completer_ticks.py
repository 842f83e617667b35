"""The completer's flush schedule: one write per tick for what is waiting, full batches at once.

The completer writes outcomes that arrive while a write is in progress on its next tick, not
straight after the write: flushing again whenever outcomes had arrived chained small writes
back to back (at 10 slots, twice the writes for half the outcomes each). Each test drives a
real Completer over a real pool, with jobs made running by the real fetch statement, and
checks what was written, not how fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from psycopg_pool import AsyncConnectionPool

import river
from river._completer import Completer
from river._driver import AttemptKey, fetch_op, queries_for
from river._outcome import Outcome
from river._sansio import run_pooled
from river._types import JobRow, JobState
from tests.helpers import assert_stays, wait_for

pytestmark = pytest.mark.anyio


class TickArgs(river.JobArgs):
    kind = "completer_tick"
    n: int


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    async with AsyncConnectionPool(
        db_url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
    ) as pool:
        yield pool


async def _running_jobs(db_url: str, pool: AsyncConnectionPool[Any], n: int) -> list[JobRow]:
    async with river.AsyncClient(db_url) as client:
        await client.insert_many([TickArgs(n=i) for i in range(n)])
    rows: list[JobRow] = await run_pooled(pool, fetch_op(queries_for(None), "default", n, "t"))
    assert len(rows) == n
    return rows


def _completed(row: JobRow) -> Outcome:
    return Outcome(row, JobState.COMPLETED, "job_completed", finalized_at=datetime.now(UTC))


def _completer(pool: AsyncConnectionPool[Any], writes: Any, **settings: Any) -> Completer:
    """A completer over ``pool`` reporting each write to ``writes``."""
    return Completer(pool, queries_for(None), write_timeout=10, on_persisted=writes, **settings)


class Writes:
    """Each write's size, as the completer reports them."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.applied = 0

    def __call__(self, outcomes: list[Outcome], persisted: dict[AttemptKey, Any]) -> None:
        self.sizes.append(len(outcomes))
        self.applied += len(persisted)


async def test_outcomes_arriving_during_writes_wait_for_the_next_tick(
    db_url: str, pool: AsyncConnectionPool[Any]
) -> None:
    rows = await _running_jobs(db_url, pool, 8)
    pending = list(rows[1:])
    writes = Writes()
    interval = 0.05
    completer: Completer

    def on_persisted(outcomes: list[Outcome], persisted: dict[AttemptKey, Any]) -> None:
        writes(outcomes, persisted)
        if pending:  # the next outcome arrives as the write ends
            completer.add(_completed(pending.pop(0)))

    completer = _completer(pool, on_persisted, flush_interval=interval)
    async with anyio.create_task_group() as tg:
        await tg.start(completer.run)
        started = anyio.current_time()
        completer.add(_completed(rows[0]))
        await wait_for(lambda: writes.applied == len(rows), timeout=10)
        elapsed = anyio.current_time() - started
        completer.stop()
    assert writes.sizes == [1] * len(rows)
    # One write per tick: flushing again right after each write (as the completer once did)
    # wrote all eight back to back, in a few milliseconds.
    assert elapsed >= (len(rows) - 2) * interval, (elapsed, writes.sizes)


async def test_full_batches_go_out_at_once_and_stop_writes_the_rest(
    db_url: str, pool: AsyncConnectionPool[Any]
) -> None:
    rows = await _running_jobs(db_url, pool, 25)
    writes = Writes()
    # A tick far away: only full batches and the stop may cause writes.
    completer = _completer(pool, writes, batch_size=10, flush_interval=60)
    async with anyio.create_task_group() as tg:
        await tg.start(completer.run)
        for row in rows:
            completer.add(_completed(row))
        await wait_for(lambda: sum(writes.sizes) >= 20, timeout=10)
        assert writes.sizes == [10, 10]  # both full batches, back to back; 5 wait
        assert completer.backlog == 5
        completer.stop()
    assert writes.sizes == [10, 10, 5]
    assert writes.applied == 25
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM river_job WHERE state = 'completed' AND id = ANY(%s)",
            [[r.id for r in rows]],
        )
        assert await cur.fetchone() == (25,)


async def test_flushed_writes_at_once_without_waiting_for_the_tick(
    db_url: str, pool: AsyncConnectionPool[Any]
) -> None:
    rows = await _running_jobs(db_url, pool, 3)
    writes = Writes()
    completer = _completer(pool, writes, flush_interval=60)
    async with anyio.create_task_group() as tg:
        await tg.start(completer.run)
        seq = 0
        for row in rows:
            seq = completer.add(_completed(row))
        with anyio.fail_after(10):  # the tick is a minute away
            await completer.flushed(seq)
        assert writes.applied == 3
        completer.stop()


async def test_callbacks_run_after_their_outcome_is_written_and_never_hurry_it(
    db_url: str, pool: AsyncConnectionPool[Any], caplog: pytest.LogCaptureFixture
) -> None:
    rows = await _running_jobs(db_url, pool, 2)
    writes = Writes()
    called: list[tuple[str, int]] = []
    completer = _completer(pool, writes, flush_interval=0.5)
    async with anyio.create_task_group() as tg:
        await tg.start(completer.run)
        first = completer.add(_completed(rows[0]))

        def broken() -> None:
            raise RuntimeError("callback bug")

        completer.call_when_written(first, broken)
        completer.call_when_written(first, lambda: called.append(("first", writes.applied)))
        assert called == []  # not before the write...
        assert writes.sizes == []  # ...and the write does not come sooner for it
        await wait_for(lambda: called, timeout=10)
        assert called == [("first", 1)]  # after the write, despite the callback before it
        completer.call_when_written(first, lambda: called.append(("again", writes.applied)))
        assert called[-1] == ("again", 1)  # already written: at once
        second = completer.add(_completed(rows[1]))
        completer.call_when_written(second, lambda: called.append(("second", writes.applied)))
        await wait_for(lambda: len(called) == 3, timeout=10)
        assert called[-1] == ("second", 2)
        completer.stop()
    assert "a callback after writing job outcomes failed" in caplog.text


async def test_outcomes_filling_a_batch_mid_write_leave_no_early_write_behind(
    db_url: str, pool: AsyncConnectionPool[Any]
) -> None:
    """A batch filled during a write goes out at once; what is left after it waits for the
    tick (the wake-up the full batch asked for is answered by that write, not kept)."""
    rows = await _running_jobs(db_url, pool, 25)
    early, late = rows[:15], rows[15:]
    writes = Writes()
    arrived = False

    def want_rows() -> bool:  # called as each write begins: the late outcomes arrive then
        nonlocal arrived
        if not arrived:
            arrived = True
            for row in late:
                completer.add(_completed(row))
        return False

    completer = _completer(pool, writes, batch_size=10, flush_interval=60, want_rows=want_rows)
    async with anyio.create_task_group() as tg:
        await tg.start(completer.run)
        for row in early:
            completer.add(_completed(row))
        await wait_for(lambda: writes.applied == 20, timeout=10)
        await assert_stays(lambda: writes.sizes == [10, 10], 0.3, message=lambda: str(writes.sizes))
        assert completer.backlog == 5
        completer.stop()
    assert writes.sizes == [10, 10, 5]


async def test_a_large_fetch_does_not_stay_held_by_the_kept_cursor(db_url: str) -> None:
    """The fetch runs on the cursor kept with a pool connection; a result of more than a few
    rows (whole job rows, args included) is not kept alive by it until the next statement."""
    async with river.AsyncClient(db_url) as client:
        await client.insert_many([TickArgs(n=i) for i in range(42)])
    q = queries_for(None)
    async with AsyncConnectionPool(
        db_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
    ) as one:  # one connection: every statement below runs on it
        assert len(await run_pooled(one, fetch_op(q, "default", 2, "t"))) == 2
        async with one.connection() as conn:
            kept = getattr(conn, "_river_kept_cursor", None)
            assert kept is not None  # a small fetch keeps its cursor
            assert not kept.closed
        assert len(await run_pooled(one, fetch_op(q, "default", 40, "t"))) == 40
        async with one.connection() as conn:
            kept = getattr(conn, "_river_kept_cursor", None)
            assert kept is None or kept.closed or kept.pgresult is None
        assert len(await run_pooled(one, fetch_op(q, "default", 40, "t"))) == 0  # still works
