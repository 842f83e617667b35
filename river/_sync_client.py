"""``Client``: the synchronous client for inserting and administering jobs.

For sync applications (Django, Flask, scripts) that insert jobs inside their own psycopg
transactions. It works no jobs: run workers with ``river worker`` or an ``AsyncClient``. Every
statement and decision is shared with ``AsyncClient`` (river/_sansio.py operations).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from river import _admin
from river._admin import JobListParams, JobListResult
from river._client import InsertManyItem, _normalise_items
from river._config import Config, QueueConfig
from river._driver import (
    InsertBatch,
    QueueRow,
    copy_op,
    insert_many_op,
    notify_op,
    queries_for,
)
from river._elector import request_resign_payload
from river._errors import RiverError
from river._insert import InsertDefaults, NotifyLimiter, build_batch
from river._middleware import apply_insert_middleware
from river._preflight import SCHEMA_ERRORS, open_pool_sync, schema_error_sync
from river._sansio import Op, run_sync
from river._types import InsertOpts, InsertResult, JobRow

__all__ = ["Client"]

R = TypeVar("R")


class Client:
    """Synchronous insert and admin client.

    ``database`` is a ``postgresql://`` URL (the client then owns a small connection pool,
    created on first use and closed by :meth:`close` or ``with``) or a
    ``psycopg_pool.ConnectionPool`` the caller owns. Every method has a ``*_tx`` twin that runs
    on the caller's ``psycopg.Connection``, inside its transaction: the job and its
    notification exist only if that transaction commits.

    ``config`` supplies ``schema``, ``max_attempts``, ``fetch_cooldown`` (the insert
    notification limiter) and ``workers`` (when given, inserting a kind with no worker raises,
    unless ``skip_unknown_job_check``). Queues in the config are ignored: this client works no
    jobs. Thread-safe.

    The pool is opened by the first call that needs it, bounded by ``config.connect_timeout``:
    DatabaseUnavailableError (with the driver's reason) when the database cannot be reached;
    the next call tries again. No schema check runs up front; a statement failing because
    River's tables or columns are missing raises SchemaNotReadyError, naming the version found.
    """

    def __init__(
        self,
        database: str | ConnectionPool[Any] | None = None,
        config: Config | None = None,
        *,
        pool_max_size: int = 5,
    ) -> None:
        self.config = config or Config()
        self._pool: ConnectionPool[Any] | None
        if database is None:
            self._conninfo: str | None = None
            self._pool = None
            self._owns_pool = False
        elif isinstance(database, str):
            if not database.startswith(("postgres://", "postgresql://")) and "=" not in database:
                raise RiverError("database must be a postgresql:// URL or a ConnectionPool")
            self._conninfo = database
            self._pool = None
            self._owns_pool = True
        elif isinstance(database, ConnectionPool):
            self._conninfo = database.conninfo if isinstance(database.conninfo, str) else None
            self._pool = database
            self._owns_pool = False
        else:
            raise RiverError(f"database must be a URL or a ConnectionPool, not {database!r}")
        self._pool_max_size = pool_max_size
        self._pool_lock = threading.Lock()
        self._queries = queries_for(self.config.schema)
        self._middleware = tuple(self.config.middleware)
        workers = self.config.workers
        self._insert_defaults = InsertDefaults(
            max_attempts=self.config.max_attempts,
            max_encoded_size=self.config.max_encoded_size,
            known_kinds=(
                frozenset(workers.kinds())
                if workers is not None and not self.config.skip_unknown_job_check
                else None
            ),
        )
        self._limiter = NotifyLimiter(self.config.resolve(QueueConfig()).fetch_cooldown)
        self._limiter_lock = threading.Lock()

    # --- connections ---------------------------------------------------------------------

    def _get_pool(self) -> ConnectionPool[Any]:
        if self._pool is not None:
            return self._pool
        if self._conninfo is None:
            raise RiverError(
                "this Client has no database: pass a URL or pool, or use the *_tx methods"
            )
        with self._pool_lock:
            if self._pool is None:
                pool: ConnectionPool[Any] = ConnectionPool(
                    self._conninfo,
                    min_size=1,
                    max_size=self._pool_max_size,
                    kwargs={"autocommit": True, **self.config.connection_kwargs},
                    open=False,
                )
                # Bounded by config.connect_timeout, failing with the driver's reason.
                open_pool_sync(pool, self._conninfo, self.config.connect_timeout_seconds)
                self._pool = pool
        return self._pool

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        with self._get_pool().connection() as conn:
            yield conn

    def _run(self, op: Op[Any]) -> Any:
        with self._conn() as conn:
            return self._run_on(conn, op, own=True)

    def _run_on(self, conn: psycopg.Connection[Any], op: Op[R], *, own: bool = False) -> R:
        # ``own``: a connection of the client's pool (else the caller's, whose transaction is
        # never touched).
        try:
            return run_sync(conn, op, own=own)
        except SCHEMA_ERRORS as exc:  # River's tables missing or not migrated
            mapped = schema_error_sync(conn, self.config.schema, exc, own=own)
            if mapped is None:
                raise
            raise mapped from exc

    def close(self) -> None:
        """Close the pool this client created (a caller's pool is left open)."""
        if self._owns_pool and self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- insert ----------------------------------------------------------------------------

    def _batch(self, items: Sequence[InsertManyItem], *, many: bool) -> InsertBatch:
        with self._limiter_lock:
            return build_batch(
                apply_insert_middleware(self._middleware, _normalise_items(items)),
                self._insert_defaults,
                self._limiter,
                field_prefix="jobs" if many else "",
            )

    def insert(self, args: Any, opts: InsertOpts | None = None) -> InsertResult:
        """Insert one job in its own transaction (see ``AsyncClient.insert``)."""
        results: list[InsertResult] = self._run(
            insert_many_op(self._queries, self._batch([(args, opts)], many=False))
        )
        return results[0]

    def insert_tx(
        self, conn: psycopg.Connection[Any], args: Any, opts: InsertOpts | None = None
    ) -> InsertResult:
        """Insert one job in the caller's transaction (notification sent only on commit)."""
        batch = self._batch([(args, opts)], many=False)
        return self._run_on(conn, insert_many_op(self._queries, batch))[0]

    def insert_many(self, items: Sequence[InsertManyItem]) -> list[InsertResult]:
        """Insert many jobs in one statement; results in input order."""
        if not items:
            return []
        results: list[InsertResult] = self._run(
            insert_many_op(self._queries, self._batch(items, many=True))
        )
        return results

    def insert_many_tx(
        self, conn: psycopg.Connection[Any], items: Sequence[InsertManyItem]
    ) -> list[InsertResult]:
        """:meth:`insert_many` in the caller's transaction."""
        if not items:
            return []
        return self._run_on(conn, insert_many_op(self._queries, self._batch(items, many=True)))

    def insert_many_fast(self, items: Sequence[InsertManyItem]) -> int:
        """Insert many jobs with COPY; returns the count (see ``AsyncClient``)."""
        if not items:
            return 0
        batch = self._batch(items, many=True)
        with self._conn() as conn:
            try:
                with conn.transaction():
                    return run_sync(conn, copy_op(self._queries, batch, datetime.now(UTC)))
            except SCHEMA_ERRORS as exc:
                mapped = schema_error_sync(conn, self.config.schema, exc, own=True)
                if mapped is None:
                    raise
                raise mapped from exc

    def insert_many_fast_tx(
        self, conn: psycopg.Connection[Any], items: Sequence[InsertManyItem]
    ) -> int:
        """:meth:`insert_many_fast` in the caller's transaction."""
        if not items:
            return 0
        batch = self._batch(items, many=True)
        return self._run_on(conn, copy_op(self._queries, batch, datetime.now(UTC)))

    # --- admin -----------------------------------------------------------------------------

    def job_get(self, job_id: int) -> JobRow:
        """The job with this id (JobNotFoundError when there is none)."""
        row: JobRow = self._run(_admin.job_get_op(self._queries, job_id))
        return row

    def job_get_tx(self, conn: psycopg.Connection[Any], job_id: int) -> JobRow:
        """:meth:`job_get` on the caller's connection."""
        return self._run_on(conn, _admin.job_get_op(self._queries, job_id))

    def job_list(self, params: JobListParams | None = None) -> JobListResult:
        """A page of jobs (see :class:`river.JobListParams`)."""
        result: JobListResult = self._run(
            _admin.job_list_op(self._queries, params or JobListParams())
        )
        return result

    def job_list_tx(
        self, conn: psycopg.Connection[Any], params: JobListParams | None = None
    ) -> JobListResult:
        """:meth:`job_list` on the caller's connection."""
        return self._run_on(conn, _admin.job_list_op(self._queries, params or JobListParams()))

    def job_cancel(self, job_id: int) -> JobRow:
        """Cancel a job (see ``AsyncClient.job_cancel``)."""
        row: JobRow = self._run(_admin.job_cancel_op(self._queries, job_id, datetime.now(UTC)))
        return row

    def job_cancel_tx(self, conn: psycopg.Connection[Any], job_id: int) -> JobRow:
        """:meth:`job_cancel` in the caller's transaction."""
        return self._run_on(conn, _admin.job_cancel_op(self._queries, job_id, datetime.now(UTC)))

    def job_retry(self, job_id: int) -> JobRow:
        """Make a job available now (see ``AsyncClient.job_retry``)."""
        row: JobRow = self._run(_admin.job_retry_op(self._queries, job_id))
        return row

    def job_retry_tx(self, conn: psycopg.Connection[Any], job_id: int) -> JobRow:
        """:meth:`job_retry` in the caller's transaction."""
        return self._run_on(conn, _admin.job_retry_op(self._queries, job_id))

    def job_delete(self, job_id: int) -> JobRow:
        """Delete a non-running job and return it."""
        row: JobRow = self._run(_admin.job_delete_op(self._queries, job_id))
        return row

    def job_delete_tx(self, conn: psycopg.Connection[Any], job_id: int) -> JobRow:
        """:meth:`job_delete` in the caller's transaction."""
        return self._run_on(conn, _admin.job_delete_op(self._queries, job_id))

    def job_delete_many(self, **filters: Any) -> list[JobRow]:
        """Delete non-running jobs matching filters (see ``AsyncClient.job_delete_many``)."""
        rows: list[JobRow] = self._run(_admin.job_delete_many_op(self._queries, **filters))
        return rows

    def job_update(self, job_id: int, *, output: Any) -> JobRow:
        """Set the job's recorded output."""
        row: JobRow = self._run(_admin.job_update_op(self._queries, job_id, output=output))
        return row

    def queue_get(self, name: str) -> QueueRow:
        """The river_queue row of a queue."""
        row: QueueRow = self._run(_admin.queue_get_op(self._queries, name))
        return row

    def queue_list(self, limit: int = 100) -> list[QueueRow]:
        """Queues known to the database, ordered by name."""
        rows: list[QueueRow] = self._run(_admin.queue_list_op(self._queries, limit))
        return rows

    def queue_pause(self, name: str) -> None:
        """Pause a queue (``"*"``: all) for every client on the database."""
        self._run(_admin.queue_pause_op(self._queries, name, pause=True))

    def queue_pause_tx(self, conn: psycopg.Connection[Any], name: str) -> None:
        """:meth:`queue_pause` in the caller's transaction."""
        self._run_on(conn, _admin.queue_pause_op(self._queries, name, pause=True))

    def queue_resume(self, name: str) -> None:
        """Resume a paused queue (``"*"``: all)."""
        self._run(_admin.queue_pause_op(self._queries, name, pause=False))

    def queue_resume_tx(self, conn: psycopg.Connection[Any], name: str) -> None:
        """:meth:`queue_resume` in the caller's transaction."""
        self._run_on(conn, _admin.queue_pause_op(self._queries, name, pause=False))

    def request_resign(self) -> None:
        """Ask the current leader (any client on the database, River (Go) ones included) to
        resign; it then competes again with the others. Useful before maintenance of a
        leader's host, e.g. from a deploy script."""
        self._run(notify_op(self._queries, "river_leadership", [request_resign_payload()]))

    def queue_update(self, name: str, *, metadata: Mapping[str, Any]) -> QueueRow:
        """Replace a queue's metadata (broadcast as ``metadata_changed``)."""
        row: QueueRow = self._run(_admin.queue_update_op(self._queries, name, metadata))
        return row
