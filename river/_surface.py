"""The insert and admin methods of :class:`~river.AsyncClient`, written once.

The sync :class:`~river.Client` gets the same methods from ``river/_surface_sync.py``, which
``tools/gen_sync_surface.py`` generates from this file (``make generate``; ``make check`` fails
when it is out of date), so the two surfaces cannot drift: same names, signatures, docstrings,
``*_tx`` twins and telemetry. Edit this file, never the generated one.

Each method builds a sans-IO operation (river/_sansio.py) and hands it to one of the client's
runners:

- ``_run(op)``: on a connection of the client's pool, committed on its own;
- ``_run_in_tx(op)``: on a connection of the client's pool, inside one transaction (COPY);
- ``_run_on(conn, op)``: on the caller's connection, inside whatever transaction the caller
  has open (the ``*_tx`` twins: notifications are then sent only if it commits).

All three turn a missing River table into :class:`~river.SchemaNotReadyError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from river import _admin
from river._admin import JobListParams, JobListResult
from river._args import JobArgs
from river._driver import InsertBatch, Queries, QueueRow, copy_op, insert_many_op, notify_op
from river._elector import request_resign_payload
from river._errors import UniqueConflictError
from river._ratelimit import RateLimit
from river._sansio import Op
from river._telemetry import TELEMETRY
from river._types import InsertOpts, InsertResult, JobRow

__all__ = ["AsyncSurface", "InsertManyItem"]

#: An item of ``insert_many``: args alone, or (args, InsertOpts).
InsertManyItem = JobArgs | tuple[JobArgs, InsertOpts | None]


class AsyncSurface:
    """Inserts and admin (see module doc). The client provides the runners and ``_batch``."""

    _queries: Queries

    def _batch(self, items: Sequence[InsertManyItem], *, many: bool) -> InsertBatch:
        raise NotImplementedError

    async def _run(self, op: Op[Any]) -> Any:
        raise NotImplementedError

    async def _run_in_tx(self, op: Op[Any]) -> Any:
        raise NotImplementedError

    async def _run_on(self, conn: psycopg.AsyncConnection[Any], op: Op[Any]) -> Any:
        raise NotImplementedError

    # --- insert ----------------------------------------------------------------------------

    async def insert(self, args: JobArgs, opts: InsertOpts | None = None) -> InsertResult:
        """Insert one job (in its own transaction, with its notification). A duplicate of a
        unique job returns the existing row with ``unique_skipped_as_duplicate=True``.

        Every field is validated before any SQL (:class:`~river.ValidationError` naming the
        field and the rule; docs/inserting.md)."""
        batch = self._batch([(args, opts)], many=False)
        with TELEMETRY.insert_span(batch):
            results: list[InsertResult] = await self._run(insert_many_op(self._queries, batch))
        return results[0]

    async def insert_tx(
        self, conn: psycopg.AsyncConnection[Any], args: JobArgs, opts: InsertOpts | None = None
    ) -> InsertResult:
        """:meth:`insert` in the caller's transaction (notification sent only on commit)."""
        batch = self._batch([(args, opts)], many=False)
        with TELEMETRY.insert_span(batch):
            results: list[InsertResult] = await self._run_on(
                conn, insert_many_op(self._queries, batch)
            )
        return results[0]

    async def insert_many(self, items: Sequence[InsertManyItem]) -> list[InsertResult]:
        """Insert many jobs in one statement; results in input order. Items are args or
        ``(args, InsertOpts)`` pairs. Two jobs with the same unique key in one batch raise
        DuplicateUniqueKeyInBatchError before anything is sent; one invalid job refuses the
        whole batch."""
        if not items:
            return []
        batch = self._batch(items, many=True)
        with TELEMETRY.insert_span(batch):
            results: list[InsertResult] = await self._run(insert_many_op(self._queries, batch))
        return results

    async def insert_many_tx(
        self, conn: psycopg.AsyncConnection[Any], items: Sequence[InsertManyItem]
    ) -> list[InsertResult]:
        """:meth:`insert_many` in the caller's transaction."""
        if not items:
            return []
        batch = self._batch(items, many=True)
        with TELEMETRY.insert_span(batch):
            results: list[InsertResult] = await self._run_on(
                conn, insert_many_op(self._queries, batch)
            )
        return results

    async def insert_many_fast(self, items: Sequence[InsertManyItem]) -> int:
        """Insert many jobs with COPY (the fastest path) and return how many were inserted.

        No rows come back, and there is no conflict handling: a live duplicate of a unique
        job aborts the whole batch with a database error (nothing is inserted)."""
        if not items:
            return 0
        batch = self._batch(items, many=True)
        with TELEMETRY.insert_span(batch):
            count: int = await self._run_in_tx(copy_op(self._queries, batch, datetime.now(UTC)))
        return count

    async def insert_many_fast_tx(
        self, conn: psycopg.AsyncConnection[Any], items: Sequence[InsertManyItem]
    ) -> int:
        """:meth:`insert_many_fast` in the caller's transaction."""
        if not items:
            return 0
        batch = self._batch(items, many=True)
        with TELEMETRY.insert_span(batch):
            count: int = await self._run_on(conn, copy_op(self._queries, batch, datetime.now(UTC)))
        return count

    # --- jobs ------------------------------------------------------------------------------

    async def job_get(self, job_id: int) -> JobRow:
        """The job with this id (JobNotFoundError when there is none)."""
        row: JobRow = await self._run(_admin.job_get_op(self._queries, job_id))
        return row

    async def job_get_tx(self, conn: psycopg.AsyncConnection[Any], job_id: int) -> JobRow:
        """:meth:`job_get` on the caller's connection."""
        row: JobRow = await self._run_on(conn, _admin.job_get_op(self._queries, job_id))
        return row

    async def job_list(self, params: JobListParams | None = None) -> JobListResult:
        """A page of jobs (see :class:`river.JobListParams`)."""
        op = _admin.job_list_op(self._queries, params or JobListParams())
        result: JobListResult = await self._run(op)
        return result

    async def job_list_tx(
        self, conn: psycopg.AsyncConnection[Any], params: JobListParams | None = None
    ) -> JobListResult:
        """:meth:`job_list` on the caller's connection."""
        op = _admin.job_list_op(self._queries, params or JobListParams())
        result: JobListResult = await self._run_on(conn, op)
        return result

    async def job_cancel(self, job_id: int) -> JobRow:
        """Cancel a job. Not running: cancelled now. Running: marked, and the client working it
        cancels the attempt (it ends ``cancelled``). Finalized: returned unchanged."""
        op = _admin.job_cancel_op(self._queries, job_id, datetime.now(UTC))
        row: JobRow = await self._run(op)
        return row

    async def job_cancel_tx(self, conn: psycopg.AsyncConnection[Any], job_id: int) -> JobRow:
        """:meth:`job_cancel` in the caller's transaction."""
        op = _admin.job_cancel_op(self._queries, job_id, datetime.now(UTC))
        row: JobRow = await self._run_on(conn, op)
        return row

    async def job_retry(self, job_id: int) -> JobRow:
        """Make a job available now (not when it is running or already due); a job that used
        all its attempts gets one more. :class:`~river.UniqueConflictError`, with nothing
        changed, when another job holds the unique key this one would take back."""
        try:
            row: JobRow = await self._run(_admin.job_retry_op(self._queries, job_id))
        except psycopg.errors.UniqueViolation as exc:  # a holder inserted concurrently
            raise UniqueConflictError(job_id) from exc
        return row

    async def job_retry_tx(self, conn: psycopg.AsyncConnection[Any], job_id: int) -> JobRow:
        """:meth:`job_retry` in the caller's transaction (left usable by a
        :class:`~river.UniqueConflictError`, unless the holder was inserted concurrently)."""
        try:
            row: JobRow = await self._run_on(conn, _admin.job_retry_op(self._queries, job_id))
        except psycopg.errors.UniqueViolation as exc:
            raise UniqueConflictError(job_id) from exc
        return row

    async def job_delete(self, job_id: int) -> JobRow:
        """Delete a job and return it; refuses a running job (JobRunningError)."""
        row: JobRow = await self._run(_admin.job_delete_op(self._queries, job_id))
        return row

    async def job_delete_tx(self, conn: psycopg.AsyncConnection[Any], job_id: int) -> JobRow:
        """:meth:`job_delete` in the caller's transaction."""
        row: JobRow = await self._run_on(conn, _admin.job_delete_op(self._queries, job_id))
        return row

    async def job_delete_many(self, **filters: Any) -> list[JobRow]:
        """Delete up to ``limit`` (default 100, at most 10,000) non-running jobs matching
        ``ids``, ``kinds``, ``queues``, ``states``, ``priorities`` (at least one, or
        ``all=True``), lowest ids first, and return them. ``limit=None`` deletes every match,
        in one statement (``job_delete_many(all=True, limit=None)`` empties the job table but
        for running jobs). Rows another transaction holds locked are skipped."""
        rows: list[JobRow] = await self._run(_admin.job_delete_many_op(self._queries, **filters))
        return rows

    async def job_delete_many_tx(
        self, conn: psycopg.AsyncConnection[Any], **filters: Any
    ) -> list[JobRow]:
        """:meth:`job_delete_many` in the caller's transaction."""
        op = _admin.job_delete_many_op(self._queries, **filters)
        rows: list[JobRow] = await self._run_on(conn, op)
        return rows

    async def job_update(self, job_id: int, *, output: Any) -> JobRow:
        """Set the job's recorded output (metadata ``output``; at most 32 MB encoded)."""
        op = _admin.job_update_op(self._queries, job_id, output=output)
        row: JobRow = await self._run(op)
        return row

    async def job_update_tx(
        self, conn: psycopg.AsyncConnection[Any], job_id: int, *, output: Any
    ) -> JobRow:
        """:meth:`job_update` in the caller's transaction."""
        op = _admin.job_update_op(self._queries, job_id, output=output)
        row: JobRow = await self._run_on(conn, op)
        return row

    # --- queues ------------------------------------------------------------------------------

    async def queue_get(self, name: str) -> QueueRow:
        """The river_queue row of a queue (QueueNotFoundError when absent)."""
        row: QueueRow = await self._run(_admin.queue_get_op(self._queries, name))
        return row

    async def queue_get_tx(self, conn: psycopg.AsyncConnection[Any], name: str) -> QueueRow:
        """:meth:`queue_get` on the caller's connection."""
        row: QueueRow = await self._run_on(conn, _admin.queue_get_op(self._queries, name))
        return row

    async def queue_list(self, limit: int = 100) -> list[QueueRow]:
        """Queues known to the database, ordered by name."""
        rows: list[QueueRow] = await self._run(_admin.queue_list_op(self._queries, limit))
        return rows

    async def queue_list_tx(
        self, conn: psycopg.AsyncConnection[Any], limit: int = 100
    ) -> list[QueueRow]:
        """:meth:`queue_list` on the caller's connection."""
        rows: list[QueueRow] = await self._run_on(conn, _admin.queue_list_op(self._queries, limit))
        return rows

    async def queue_pause(self, name: str) -> None:
        """Pause a queue (``"*"``: all) for every client on the database, Go ones included."""
        await self._run(_admin.queue_pause_op(self._queries, name, pause=True))

    async def queue_pause_tx(self, conn: psycopg.AsyncConnection[Any], name: str) -> None:
        """:meth:`queue_pause` in the caller's transaction."""
        await self._run_on(conn, _admin.queue_pause_op(self._queries, name, pause=True))

    async def queue_resume(self, name: str) -> None:
        """Resume a paused queue (``"*"``: all)."""
        await self._run(_admin.queue_pause_op(self._queries, name, pause=False))

    async def queue_resume_tx(self, conn: psycopg.AsyncConnection[Any], name: str) -> None:
        """:meth:`queue_resume` in the caller's transaction."""
        await self._run_on(conn, _admin.queue_pause_op(self._queries, name, pause=False))

    async def queue_update(
        self,
        name: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        fetch_cooldown: float | timedelta | None = None,
        fetch_poll_interval: float | timedelta | None = None,
        min_workers: int | None = None,
        rate_limit: RateLimit | None = None,
        clear: Sequence[str] | str = (),
    ) -> QueueRow:
        """Change a queue for the whole cluster; returns the updated row.

        - ``metadata`` replaces the queue's application metadata (as River (Go)'s QueueUpdate
          does), keeping river-queue's own key.
        - ``max_workers``, ``fetch_cooldown``, ``fetch_poll_interval`` set a cluster-wide
          override: every river-queue client working the queue applies it within about one
          poll interval (at once when it listens), without restarting jobs in flight, and a
          client started later applies it too. An override wins over each client's own
          ``QueueConfig``/``Config``; River (Go) clients ignore it (docs/queues.md).
        - ``min_workers`` below the effective ``max_workers`` autoscales the queue on every
          client; ``rate_limit`` (a :class:`~river.RateLimit`) limits how many of its jobs
          start per period across the cluster (docs/queues.md).
        - ``clear`` names settings to remove from the override (each client returns to its
          own value): ``"max_workers"``, ``"min_workers"``, ``"fetch_cooldown"``,
          ``"fetch_poll_interval"``, ``"rate_limit"``.

        Validated before any SQL (ValidationError naming the field); QueueNotFoundError when
        the queue has no row in ``river_queue`` (no client has worked it yet). Broadcast as
        ``metadata_changed``.
        """
        op = _admin.queue_update_op(
            self._queries,
            name,
            metadata,
            max_workers=max_workers,
            fetch_cooldown=fetch_cooldown,
            fetch_poll_interval=fetch_poll_interval,
            min_workers=min_workers,
            rate_limit=rate_limit,
            clear=clear,
        )
        # Two statements (the update, then its notification): one transaction.
        row: QueueRow = await self._run_in_tx(op)
        return row

    async def queue_update_tx(
        self,
        conn: psycopg.AsyncConnection[Any],
        name: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        fetch_cooldown: float | timedelta | None = None,
        fetch_poll_interval: float | timedelta | None = None,
        min_workers: int | None = None,
        rate_limit: RateLimit | None = None,
        clear: Sequence[str] | str = (),
    ) -> QueueRow:
        """:meth:`queue_update` in the caller's transaction (the clients apply the change once
        it commits)."""
        op = _admin.queue_update_op(
            self._queries,
            name,
            metadata,
            max_workers=max_workers,
            fetch_cooldown=fetch_cooldown,
            fetch_poll_interval=fetch_poll_interval,
            min_workers=min_workers,
            rate_limit=rate_limit,
            clear=clear,
        )
        row: QueueRow = await self._run_on(conn, op)
        return row

    # --- leadership --------------------------------------------------------------------------

    async def request_resign(self) -> None:
        """Ask the current leader (any client on the database, River (Go) ones included) to
        resign; it then competes again with the others. Useful before maintenance of a
        leader's host, e.g. from a deploy script."""
        await self._run(notify_op(self._queries, "river_leadership", [request_resign_payload()]))
