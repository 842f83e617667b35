"""``Client``: the synchronous client for inserting and administering jobs.

For sync applications (Django, Flask, scripts) that insert jobs inside their own psycopg
transactions. It works no jobs: run workers with ``river worker`` or an ``AsyncClient``. Every
statement and decision is shared with ``AsyncClient`` (river/_sansio.py operations), and its
insert and admin methods are generated from ``AsyncClient``'s (river/_surface_sync.py).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from river._client import InsertManyItem, _normalise_items
from river._config import Config, QueueConfig
from river._conn_adapt import sync_connection
from river._driver import (
    InsertBatch,
    queries_for,
)
from river._errors import RiverError
from river._insert import InsertDefaults, NotifyLimiter, build_batch
from river._middleware import apply_insert_middleware
from river._pool import pooled_sync
from river._preflight import SCHEMA_ERRORS, open_pool_sync, schema_error_sync
from river._sansio import Op, primed, run_sync
from river._surface_sync import SyncSurface

__all__ = ["Client"]

R = TypeVar("R")

#: Every Client that owns a pool, for the fork handler below.
_clients: weakref.WeakSet[Client] = weakref.WeakSet()
#: Pools a forked child inherited: kept, never closed nor collected there (see _after_fork).
_inherited: list[ConnectionPool[Any]] = []


def _after_fork() -> None:
    """In a child just forked (gunicorn ``--preload``, multiprocessing's fork): the pools of
    the parent's clients are the parent's. Their sockets are shared with it, and their threads
    did not survive the fork, so using them hangs or mixes both processes' replies, and
    closing them (or the child's exit collecting them) would send the server a Terminate on
    the parent's sessions. So each inherited connection's descriptor is pointed at /dev/null
    in the child (the parent's sessions are left alone whatever the child does with it), the
    pool is set aside, and the client opens a pool of its own on its next call."""
    for client in list(_clients):
        client._forget_inherited_pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class Client(SyncSurface):
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
        #: The connections of the pool this client opened (for :meth:`_forget_inherited_pool`).
        self._connections: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        self._closed = False
        if self._owns_pool:
            _clients.add(self)
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
            if self._closed:
                # A pool opened now would never be closed.
                raise RiverError("this Client is closed: create a new one")
            if self._pool is None:
                pool: ConnectionPool[Any] = ConnectionPool(
                    self._conninfo,
                    min_size=1,
                    max_size=self._pool_max_size,
                    kwargs={"autocommit": True, **self.config.connection_kwargs},
                    open=False,
                    configure=self._configure_connection,
                )
                # Bounded by config.connect_timeout, failing with the driver's reason.
                open_pool_sync(pool, self._conninfo, self.config.connect_timeout_seconds)
                self._pool = pool
        return self._pool

    def _forget_inherited_pool(self) -> None:
        """After a fork, in the child (see :func:`_after_fork`)."""
        # Locks another thread held at the fork stay held in the child: new ones.
        self._pool_lock = threading.Lock()
        self._limiter_lock = threading.Lock()
        pool, self._pool = self._pool, None
        if pool is None or not self._owns_pool:
            return
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for conn in list(self._connections):
                fd = -1
                with contextlib.suppress(Exception):
                    fd = conn.pgconn.socket
                if fd >= 0:
                    # The child's descriptor now reads /dev/null: the parent's socket stays
                    # open, and a Terminate sent here later goes nowhere.
                    os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        self._connections = weakref.WeakSet()
        _inherited.append(pool)

    def _configure_connection(self, conn: psycopg.Connection[Any]) -> None:
        self._connections.add(conn)
        # Our own pool's connections only: timestamps decode in UTC (session_timezone_utc).
        # Not behind a transaction pooler: some pin a client to one server connection for the
        # rest of its life after a SET, or hand the setting on to other clients.
        if self.config.pooler is None and conn.pgconn.parameter_status(b"TimeZone") != b"UTC":
            conn.execute(self._queries.session_timezone_utc)
            if not conn.autocommit:
                conn.commit()

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        with pooled_sync(self._get_pool()) as conn:
            yield conn

    def _run(self, op: Op[Any]) -> Any:
        op = primed(op)  # validation first: no connection taken for bad input
        with self._conn() as conn:
            return self._run_on(conn, op, own=True)

    def _run_in_tx(self, op: Op[Any]) -> Any:
        op = primed(op)  # validation first: no connection taken, no BEGIN sent for bad input
        with self._conn() as conn:
            try:
                with conn.transaction():
                    return run_sync(conn, op)
            except SCHEMA_ERRORS as exc:  # after the rollback: the version can be read
                mapped = schema_error_sync(conn, self.config.schema, exc, own=True)
                if mapped is None:
                    raise
                raise mapped from exc

    def _run_on(self, conn: psycopg.Connection[Any], op: Op[R], *, own: bool = False) -> R:
        # ``own``: a connection of the client's pool (else the caller's, whose transaction is
        # never touched). A caller's Django connection becomes its psycopg one here.
        if type(conn) is not psycopg.Connection:
            conn = sync_connection(conn)
        try:
            return run_sync(conn, op, own=own)
        except SCHEMA_ERRORS as exc:  # River's tables missing or not migrated
            mapped = schema_error_sync(conn, self.config.schema, exc, own=own)
            if mapped is None:
                raise
            raise mapped from exc

    def close(self) -> None:
        """Close the pool this client created (a caller's pool is left open). A closed client
        that owned its pool raises RiverError on the next call that needs the database."""
        if self._owns_pool:
            # Under the lock: a pool another thread is opening is closed too, once open.
            with self._pool_lock:
                self._closed = True
                pool, self._pool = self._pool, None
            if pool is not None:
                pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- insert ----------------------------------------------------------------------------

    def _batch(self, items: Sequence[InsertManyItem], *, many: bool) -> InsertBatch:
        # The application's middleware runs outside the lock: it may be slow, or insert
        # through this client itself (which would deadlock on the lock).
        normalised = apply_insert_middleware(
            self._middleware, _normalise_items(items), one=not many
        )
        with self._limiter_lock:
            return build_batch(
                normalised,
                self._insert_defaults,
                self._limiter,
                field_prefix="jobs" if many else "",
            )
