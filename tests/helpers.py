"""Shared helpers of the runtime tests: condition waits with deadlines, raw row reads, fast
client configs and a client context that always stops.

Nothing here sleeps and hopes: every wait polls a condition until a deadline and fails with a
message naming what it waited for. A negative assertion ("nothing happens") watches its
condition over a named window with :func:`assert_stays` instead of a bare sleep.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import psycopg
from psycopg.rows import dict_row

import river
import river.testing

#: The columns of river_job, as read raw (no decoding by the library under test).
JOB_SELECT = (
    "SELECT id, state::text AS state, attempt, max_attempts, attempted_at, created_at,"
    " finalized_at, scheduled_at, priority, args, attempted_by, errors, kind, metadata, queue,"
    " tags, unique_key, unique_states::text AS unique_states FROM river_job"
)


async def wait_for(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str | Callable[[], str] = "condition",
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns a truthy value; return that value.

    Fails the test with ``message`` (a string, or a callable producing one, evaluated at the
    deadline so it can describe the current state) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s waiting for: {text}")
        await anyio.sleep(interval)


async def assert_stays(
    predicate: Callable[[], Any | Awaitable[Any]],
    seconds: float,
    interval: float = 0.01,
    message: str | Callable[[], str] = "condition",
) -> None:
    """Assert that ``predicate`` (sync or async) stays truthy for ``seconds``.

    For negative assertions ("nothing is fetched", "no second leader"): no event marks that
    nothing happened, so they need a bounded observation window, and this names it. The
    predicate is checked at once, every ``interval`` and at the end of the window; the first
    falsy result fails the test with ``message`` (evaluated then, so it can describe the
    state), without waiting for the rest of the window."""
    deadline = time.monotonic() + seconds
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if not result:
            text = message() if callable(message) else message
            elapsed = seconds - (deadline - time.monotonic())
            raise AssertionError(f"no longer true after {elapsed:.3f}s of {seconds}s: {text}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        await anyio.sleep(min(interval, remaining))


def wait_for_sync(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """:func:`wait_for` for sync code."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {message}")
        time.sleep(interval)


class DB:
    """An autocommit async connection for reading and poking rows with plain SQL."""

    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]], url: str) -> None:
        self.conn = conn
        self.url = url

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        await self.conn.execute(sql, params)

    async def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        cur = await self.conn.execute(sql, params)
        return await cur.fetchall()

    async def one(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        rows = await self.all(sql, params)
        assert len(rows) == 1, f"expected one row, got {len(rows)}: {sql}"
        return rows[0]

    async def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        row = await self.one(sql, params)
        return next(iter(row.values()))

    async def job(self, job_id: int) -> dict[str, Any]:
        return await self.one(JOB_SELECT + " WHERE id = %(id)s", {"id": job_id})

    async def jobs(self) -> list[dict[str, Any]]:
        return await self.all(JOB_SELECT + " ORDER BY id")

    async def count(self, where: str = "true", params: Mapping[str, Any] | None = None) -> int:
        value = await self.scalar(f"SELECT count(*) AS n FROM river_job WHERE {where}", params)
        return int(value)

    async def state(self, job_id: int) -> str | None:
        rows = await self.all(
            "SELECT state::text AS s FROM river_job WHERE id = %(id)s", {"id": job_id}
        )
        return rows[0]["s"] if rows else None

    async def in_state(self, job_id: int, *states: str) -> bool:
        """Whether the job is in one of ``states`` (a predicate for :func:`assert_stays`)."""
        return await self.state(job_id) in states

    async def wait_state(self, job_id: int, *states: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the job is in one of ``states``; return its row."""
        last: list[str | None] = [None]

        async def check() -> dict[str, Any] | None:
            row = await self.job(job_id)
            last[0] = row["state"]
            return row if row["state"] in states else None

        row: dict[str, Any] = await wait_for(
            check,
            timeout=timeout,
            message=lambda: f"job {job_id} in state {states} (last seen: {last[0]})",
        )
        return row

    async def wait_row(
        self,
        job_id: int,
        predicate: Callable[[dict[str, Any]], bool],
        description: str,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Wait until the job's row satisfies ``predicate``; return the row."""
        last: list[dict[str, Any] | None] = [None]

        async def check() -> dict[str, Any] | None:
            row = await self.job(job_id)
            last[0] = row
            return row if predicate(row) else None

        row: dict[str, Any] = await wait_for(
            check,
            timeout=timeout,
            message=lambda: f"job {job_id}: {description} (last row: {last[0]})",
        )
        return row

    async def wait_failed(
        self, job_id: int, errors: int = 1, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Wait until the job has ``errors`` recorded errors and is not running."""
        return await self.wait_row(
            job_id,
            lambda r: r["state"] != "running" and len(r["errors"] or ()) == errors,
            f"{errors} errors recorded",
            timeout,
        )

    async def wait_attempted(self, job_id: int, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the job has been fetched at least once and is no longer running (its
        first outcome is persisted); return the row."""
        return await self.wait_row(
            job_id,
            lambda r: r["attempted_at"] is not None and r["state"] != "running",
            "an attempt's outcome persisted",
            timeout,
        )

    async def wait_count(self, expected: int, where: str = "true", timeout: float = 20.0) -> None:
        last = [-1]

        async def check() -> bool:
            last[0] = await self.count(where)
            return last[0] == expected

        await wait_for(
            check,
            timeout=timeout,
            interval=0.02,
            message=lambda: f"{expected} jobs where {where} (last count: {last[0]})",
        )


@asynccontextmanager
async def open_db(db_url: str) -> AsyncIterator[DB]:
    conn = await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row)
    async with conn:
        yield DB(conn, db_url)


def fast_config(
    workers: river.Workers | None,
    queues: Mapping[str, river.QueueConfig] | None = None,
    **overrides: Any,
) -> river.Config:
    """A client config with short intervals so tests finish fast."""
    settings: dict[str, Any] = {
        "queues": dict(queues) if queues is not None else {"default": river.QueueConfig()},
        "workers": workers,
        "fetch_cooldown": 0.005,
        "fetch_poll_interval": 0.05,
        "completer_flush_interval": 0.005,
    }
    settings.update(overrides)
    return river.Config(**settings)


def make_workers(*workers: river.Worker[Any]) -> river.Workers:
    registry = river.Workers()
    for worker in workers:
        registry.add(worker)
    return registry


@asynccontextmanager
async def started_client(db_url: str, config: river.Config) -> AsyncIterator[river.AsyncClient]:
    """A started AsyncClient that is stopped (hard, if the test failed) and closed after. Its
    test signals (``river.testing.signals``) are enabled before it starts."""
    client = river.AsyncClient(db_url, config)
    river.testing.signals(client)
    try:
        await client.start()
        yield client
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            await client.stop_and_cancel()
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await client.close()


class Gate:
    """A thread-safe gate a worker can wait on; tests open it when they are ready."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.entered = threading.Event()

    def open(self) -> None:
        self._event.set()

    async def wait(self, timeout: float = 30.0) -> None:
        self.entered.set()
        deadline = time.monotonic() + timeout
        while not self._event.is_set():
            if time.monotonic() >= deadline:
                raise AssertionError("gate never opened")
            await anyio.sleep(0.005)

    def wait_sync(self, timeout: float = 30.0) -> None:
        self.entered.set()
        if not self._event.wait(timeout):
            raise AssertionError("gate never opened")


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or offset, any fraction length) independently of
    the library's own parser."""
    s = text.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        s = f"{head}.{rest[:i][:6].ljust(6, '0')}{rest[i:]}"
    value = datetime.fromisoformat(s)
    assert value.tzinfo is not None, f"timestamp without offset: {text!r}"
    return value
