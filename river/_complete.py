"""``job_complete_tx``: complete a running job inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any, overload

import psycopg

from river._admin import job_complete_fenced_op
from river._driver import queries_for
from river._errors import ValidationError
from river._executor import note_completed_in_tx
from river._sansio import Op, run_async, run_sync
from river._schema import validate_schema
from river._types import Job, JobRow

__all__ = ["job_complete_tx"]


@overload
def job_complete_tx(
    conn: psycopg.Connection[Any],
    job: Job[Any] | JobRow,
    *,
    schema: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> JobRow: ...


@overload
def job_complete_tx(
    conn: psycopg.AsyncConnection[Any],
    job: Job[Any] | JobRow,
    *,
    schema: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Awaitable[JobRow]: ...


def job_complete_tx(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    job: Job[Any] | JobRow,
    *,
    schema: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> JobRow | Awaitable[JobRow]:
    """Mark a running job completed inside the caller's transaction, so the job's completion
    commits or rolls back with the caller's own writes.

    The update is fenced on (id, attempt, attempted_at): if the job is no longer running at the
    attempt this worker holds (rescued and re-fetched, cancelled, deleted, already completed),
    it raises :class:`river.JobNotRunningError`, so the caller's transaction can roll back.
    (River (Go) returns silently there; this is deliberately stronger.) With a sync connection
    it returns the updated row; with an ``AsyncConnection`` it returns an awaitable. ``schema``
    must match the client's; ``metadata`` is merged into the job's metadata.

    The worker should then return normally: its own completion write finds the row already
    completed and changes nothing.
    """
    row = job.row if isinstance(job, Job) else job
    if not isinstance(row, JobRow):
        raise ValidationError("job", "must be a river.Job or river.JobRow")
    op = job_complete_fenced_op(
        queries_for(validate_schema(schema)), row, datetime.now(UTC), metadata
    )
    if isinstance(conn, psycopg.AsyncConnection):
        return _complete_async(conn, op)
    completed = run_sync(conn, op)
    note_completed_in_tx(completed)
    return completed


async def _complete_async(conn: psycopg.AsyncConnection[Any], op: Op[JobRow]) -> JobRow:
    completed = await run_async(conn, op)
    note_completed_in_tx(completed)
    return completed
