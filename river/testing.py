"""Helpers for testing code that inserts and works River jobs.

Assertions (River's ``rivertest`` semantics), usable with a sync ``psycopg.Connection`` (they
return the value) or a ``psycopg.AsyncConnection`` (they return an awaitable), typically inside
the test's own transaction:

- :func:`require_inserted`: exactly one job of the args' kind exists (optionally matching
  :class:`RequireInsertedOpts`); returns it as ``Job[T]`` with typed args.
- :func:`require_not_inserted`: no job of that kind (matching the options) exists.
- :func:`require_many_inserted`: the jobs of the given kinds exist, in insertion order, and no
  other job of those kinds.

:func:`signals`: the named test signals of a client (river/_testsignal.py), to wait for "the
producer fetched", "this client became leader", "the completer wrote a batch" instead of
sleeping or reading private state.

And :func:`work_job`: insert a job and work it inline, inside the caller's transaction, through
the real executor and completion write, returning a :class:`WorkResult` with the outcome and
the row as persisted. Nothing is committed unless the caller commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

import anyio
import psycopg

from river._args import JobArgs, Worker, Workers
from river._completer import Outcome, _to_batch
from river._config import DEFAULT_JOB_TIMEOUT
from river._conn_adapt import sync_connection
from river._driver import (
    InsertBatch,
    insert_many_op,
    job_from_row,
    queries_for,
    set_state_many_op,
)
from river._errors import ValidationError
from river._events import job_event_kind
from river._executor import Executor, RunningJob
from river._insert import InsertDefaults, build_batch
from river._retry import next_retry_at
from river._sansio import Op, Query, run_async, run_sync
from river._schema import validate_schema
from river._testsignal import TestSignal, TestSignals
from river._types import InsertOpts, Job, JobRow, JobState

__all__ = [
    "RequireInsertedOpts",
    "TestSignal",
    "TestSignals",
    "WorkResult",
    "require_inserted",
    "require_many_inserted",
    "require_not_inserted",
    "signals",
    "work_job",
]

A = TypeVar("A", bound=JobArgs)
R = TypeVar("R")


def signals(client: Any) -> TestSignals:
    """Enable and return the named test signals of ``client`` (an ``AsyncClient``), before or
    after it starts; they stay enabled across its restarts. Each signal buffers what it emits
    from now on; ``await signal.wait(timeout)`` takes the oldest value, failing with
    TimeoutError after ``timeout`` seconds. See :class:`TestSignals` for what each emits.

    For tests only: an enabled signal keeps every value until taken (``drain()`` drops them).
    Disabled (the default) they cost one attribute check per emit.
    """
    found = getattr(client, "_signals", None)
    if not isinstance(found, TestSignals):
        raise TypeError(f"river.testing.signals() needs a river.AsyncClient, not {client!r}")
    return found.enable()


@dataclass(frozen=True, slots=True)
class RequireInsertedOpts:
    """Fields a matching job must have (None: any).

    ``scheduled_at`` (timezone-aware) matches within one second either way, so a test can pass
    a time it computed itself; River (Go) compares exactly, to the microsecond. ``tags`` must
    equal the job's tags in order (an empty list matches only a job without tags).
    """

    max_attempts: int | None = None
    priority: int | None = None
    queue: str | None = None
    scheduled_at: datetime | None = None
    state: JobState | None = None
    tags: Sequence[str] | None = None

    def __post_init__(self) -> None:
        # Checked, so that a typo cannot make require_not_inserted pass by matching nothing.
        if self.scheduled_at is not None and (
            not isinstance(self.scheduled_at, datetime) or self.scheduled_at.tzinfo is None
        ):
            raise ValidationError("scheduled_at", "must be a timezone-aware datetime")
        if self.state is not None:
            try:
                object.__setattr__(self, "state", JobState(self.state))
            except ValueError:
                states = ", ".join(s.value for s in JobState)
                raise ValidationError(
                    "state", f"{self.state!r} is not a job state ({states})"
                ) from None
        if self.tags is not None and (
            isinstance(self.tags, str) or not all(isinstance(t, str) for t in self.tags)
        ):
            raise ValidationError("tags", "must be a list of strings (not one string)")
        for name, low, high in (("priority", 1, 4), ("max_attempts", 1, 32_767)):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
            ):
                raise ValidationError(name, f"must be an integer from {low} to {high}")
        if self.queue is not None and not isinstance(self.queue, str):
            raise ValidationError("queue", "must be a string")


def _drive(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], op: Op[R]) -> Any:
    if isinstance(conn, psycopg.AsyncConnection):
        return run_async(conn, op)
    # A Django connection too (in a TestCase's transaction), as Client.*_tx accepts it.
    return run_sync(sync_connection(conn), op)


def _kind_of(args_type: type[JobArgs]) -> str:
    kind = getattr(args_type, "kind", None)
    if not isinstance(kind, str):
        raise TypeError(f"{args_type!r} is not a JobArgs class with a kind")
    return kind


def _jobs_of_kinds(schema: str | None, kinds: list[str]) -> Op[list[JobRow]]:
    q = queries_for(validate_schema(schema))
    rows = yield Query(q.job_get_by_kinds, {"kinds": kinds})
    return [job_from_row(r) for r in rows]


def _mismatches(row: JobRow, opts: RequireInsertedOpts | None) -> list[str]:
    if opts is None:
        return []
    problems = []
    for field in ("max_attempts", "priority", "queue", "scheduled_at", "state"):
        want = getattr(opts, field)
        have = getattr(row, field)
        if want is None:
            continue
        if field == "scheduled_at":
            # Within a second either way (see RequireInsertedOpts).
            if abs((have - want).total_seconds()) >= 1:
                problems.append(f"scheduled_at {have} != {want}")
        elif have != want:
            problems.append(f"{field} {have!r} != {want!r}")
    if opts.tags is not None and list(row.tags) != list(opts.tags):
        problems.append(f"tags {row.tags!r} != {list(opts.tags)!r}")
    return problems


def _require_inserted(
    schema: str | None, args_type: type[A], opts: RequireInsertedOpts | None
) -> Op[Job[A]]:
    kind = _kind_of(args_type)
    rows = yield from _jobs_of_kinds(schema, [kind])
    if len(rows) != 1:
        raise AssertionError(f"expected exactly 1 job of kind {kind!r}, found {len(rows)}")
    problems = _mismatches(rows[0], opts)
    if problems:
        raise AssertionError(f"job {rows[0].id} of kind {kind!r}: " + "; ".join(problems))
    return Job(rows[0], args_type.model_validate_json(rows[0].encoded_args))


@overload
def require_inserted(
    conn: psycopg.Connection[Any],
    args_type: type[A],
    opts: RequireInsertedOpts | None = None,
    *,
    schema: str | None = None,
) -> Job[A]: ...


@overload
def require_inserted(
    conn: psycopg.AsyncConnection[Any],
    args_type: type[A],
    opts: RequireInsertedOpts | None = None,
    *,
    schema: str | None = None,
) -> Awaitable[Job[A]]: ...


def require_inserted(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    args_type: type[A],
    opts: RequireInsertedOpts | None = None,
    *,
    schema: str | None = None,
) -> Job[A] | Awaitable[Job[A]]:
    """Assert exactly one job of ``args_type``'s kind exists (matching ``opts``); return it."""
    result: Job[A] | Awaitable[Job[A]] = _drive(conn, _require_inserted(schema, args_type, opts))
    return result


def _require_not_inserted(
    schema: str | None, args_type: type[JobArgs], opts: RequireInsertedOpts | None
) -> Op[None]:
    kind = _kind_of(args_type)
    rows = yield from _jobs_of_kinds(schema, [kind])
    matching = [r for r in rows if not _mismatches(r, opts)]
    if matching:
        raise AssertionError(
            f"expected no job of kind {kind!r}"
            + (" matching the options" if opts else "")
            + f", found {len(matching)} (ids {[r.id for r in matching]})"
        )


def require_not_inserted(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    args_type: type[JobArgs],
    opts: RequireInsertedOpts | None = None,
    *,
    schema: str | None = None,
) -> Any:
    """Assert no job of ``args_type``'s kind (matching ``opts`` when given) exists.
    Returns None, or an awaitable for an async connection."""
    return _drive(conn, _require_not_inserted(schema, args_type, opts))


def _require_many(
    schema: str | None, expected: Sequence[type[JobArgs] | tuple[type[JobArgs], Any]]
) -> Op[list[JobRow]]:
    wanted = [(e, None) if isinstance(e, type) else (e[0], e[1]) for e in expected]
    kinds = [_kind_of(t) for t, _ in wanted]
    rows = yield from _jobs_of_kinds(schema, sorted(set(kinds)))
    if [r.kind for r in rows] != kinds:
        raise AssertionError(
            f"expected jobs of kinds {kinds} in order, found {[r.kind for r in rows]}"
        )
    for row, (_, opts) in zip(rows, wanted, strict=True):
        problems = _mismatches(row, opts)
        if problems:
            raise AssertionError(f"job {row.id} of kind {row.kind!r}: " + "; ".join(problems))
    return rows


def require_many_inserted(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    expected: Sequence[type[JobArgs] | tuple[type[JobArgs], RequireInsertedOpts | None]],
    *,
    schema: str | None = None,
) -> Any:
    """Assert the jobs of these kinds are exactly the expected ones, in insertion order.
    Returns the rows, or an awaitable of them for an async connection."""
    return _drive(conn, _require_many(schema, expected))


@dataclass(frozen=True, slots=True)
class WorkResult:
    """What :func:`work_job` did: the state and event a client reports for it (from the
    outcome as written: an attempt that raised after its ``job_complete_tx`` committed is
    ``completed``/``job_completed``, as in the client's events), the row as persisted, and the
    executor's outcome as requested."""

    state: JobState
    event: str
    job: JobRow
    outcome: Outcome


def _batch(args: JobArgs, opts: InsertOpts | None) -> InsertBatch:
    batch = build_batch([(args, opts)], InsertDefaults(), None)
    # No unique key: a duplicate would otherwise hand back (and re-run) the existing row.
    batch.unique_key = [None]
    batch.unique_states = [None]
    return batch


def _insert_and_fetch(schema: str | None, batch: InsertBatch, client_id: str) -> Op[JobRow]:
    q = queries_for(schema)
    (inserted,) = yield from insert_many_op(q, batch)
    # Take exactly this job as a fetch would (other jobs in the database are left alone).
    row = yield Query(
        q.job_fetch_by_id, {"id": inserted.job.id, "client_id": client_id}, fetch="one"
    )
    return job_from_row(row)


def _persist(schema: str | None, outcome: Outcome) -> Op[WorkResult]:
    q = queries_for(schema)
    written = yield from set_state_many_op(q, _to_batch([outcome]))
    row = job_from_row((yield Query(q.job_get, {"id": outcome.job.id}, fetch="one")))
    state = written.get((outcome.job.id, outcome.job.attempt))
    persisted = state if isinstance(state, str) else None
    return WorkResult(
        row.state if persisted is not None else outcome.state,
        job_event_kind(outcome.event, persisted),
        row,
        outcome,
    )


async def _work_async(
    conn: psycopg.AsyncConnection[Any],
    worker: Worker[Any],
    args: JobArgs,
    opts: InsertOpts | None,
    schema: str | None,
    job_timeout: float,
) -> WorkResult:
    row = await run_async(conn, _insert_and_fetch(schema, _batch(args, opts), "river_testing"))
    outcome = await _executor(worker, job_timeout).execute(RunningJob(row, 0.0))
    result: WorkResult = await run_async(conn, _persist(schema, outcome))
    return result


def _executor(worker: Worker[Any], job_timeout: float) -> Executor:
    workers = Workers()
    workers.add(worker)
    return Executor(
        workers,
        job_timeout=job_timeout,
        retry_policy=next_retry_at,
        thread_limiter=anyio.CapacityLimiter(1),
        clock=lambda: datetime.now(UTC),
    )


def work_job(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    worker: Worker[Any],
    args: JobArgs,
    opts: InsertOpts | None = None,
    *,
    schema: str | None = None,
    job_timeout: float = DEFAULT_JOB_TIMEOUT,
) -> Any:
    """Insert ``args``, fetch it and work it with ``worker`` through the real executor, then
    write the outcome, all on ``conn`` (inside its transaction when one is open).

    With an ``AsyncConnection`` it returns an awaitable of :class:`WorkResult`; with a sync
    connection it runs the attempt in a private event loop (in a helper thread when called
    from a running loop) and returns the result.

    Unique options are ignored, as River (Go)'s test worker does: a test may work the same
    unique job any number of times.
    """
    schema = validate_schema(schema)
    if isinstance(conn, psycopg.AsyncConnection):
        return _work_async(conn, worker, args, opts, schema, job_timeout)
    conn = sync_connection(conn)  # a Django connection too, as Client.*_tx accepts it
    row = run_sync(conn, _insert_and_fetch(schema, _batch(args, opts), "river_testing"))

    async def attempt() -> Outcome:
        return await _executor(worker, job_timeout).execute(RunningJob(row, 0.0))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        outcome = anyio.run(attempt)
    else:
        # Called from async code (say, an async test using a sync connection): this thread's
        # loop is busy, so the attempt runs in a loop of its own in a helper thread.
        with ThreadPoolExecutor(1, thread_name_prefix="river-testing") as pool:
            outcome = pool.submit(anyio.run, attempt).result()
    return run_sync(conn, _persist(schema, outcome))
