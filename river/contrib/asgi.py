"""One connection pool for an ASGI app (FastAPI, Starlette) and its River client.

:class:`AppPool` owns a ``psycopg_pool.AsyncConnectionPool`` and an :class:`~river.AsyncClient`
built on it, gives the app a lifespan that opens and closes both in the right order, and a
per-request transaction in which a route writes its own rows and enqueues jobs with
``client.insert_tx(conn, ...)``: both are committed together, or rolled back together.

The module imports neither FastAPI nor Starlette (it is written against the ASGI lifespan
protocol and psycopg only), so it adds no dependency; docs/fastapi.md shows both frameworks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from river._client import AsyncClient
from river._config import Config
from river._errors import RiverError
from river._pool import pooled
from river._preflight import open_pool_async

__all__ = ["AppPool"]


class AppPool:
    """The app's connection pool, shared with a River client.

    ``conninfo`` is a ``postgresql://`` URL or a libpq conninfo string. The pool
    (:attr:`pool`) holds ``min_size`` to ``max_size`` connections in autocommit mode (the mode
    the client expects; a request's transaction is explicit, see :meth:`transaction`), with
    ``config.connection_kwargs`` applied (no server-side prepared statements behind a
    transaction pooler). It is sized for both users: the requests' transactions and the
    client's own statements (inserts, and, when it works jobs, fetches and completions; the
    client's LISTEN connection is one more, outside the pool, as is the reindexer's when
    ``config.reindexer_schedule`` is set). Jobs that take a connection of their own (``async
    with app_pool.begin()``) count too: with ``max_workers`` such jobs running at once, keep
    ``max_size`` above it, or requests wait for a connection. Other keyword arguments
    (``timeout``, ``configure``, ``check``, ``max_idle``...) go to ``AsyncConnectionPool``.
    ``stop_timeout``: see :attr:`stop_timeout`.

    :attr:`client` is ``river.AsyncClient(pool, config)``: it works jobs between the start and
    the end of the app when ``config`` has queues and workers, and only inserts otherwise.

    The pool is opened by :meth:`lifespan` and cannot be reopened once closed (a psycopg_pool
    rule): one ``AppPool`` serves one run of one app.
    """

    def __init__(
        self,
        conninfo: str,
        config: Config | None = None,
        *,
        min_size: int = 1,
        max_size: int = 10,
        stop_timeout: float | None = 30.0,
        **pool_kwargs: Any,
    ) -> None:
        self.config = config or Config()
        self._conninfo = conninfo
        #: Seconds the shutdown lets running jobs finish before cancelling them (their
        #: outcomes are written either way); None: no limit. Keep it under the platform's
        #: grace period (Kubernetes: 30 s by default, terminationGracePeriodSeconds).
        self.stop_timeout = stop_timeout
        #: The pool: also usable directly (``async with app_pool.pool.connection()``).
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, **self.config.connection_kwargs},
            name="river-app",
            **pool_kwargs,
        )
        #: The River client on :attr:`pool`.
        self.client = AsyncClient(self.pool, self.config)
        self._in_lifespan = False

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """The app's lifespan: ``FastAPI(lifespan=app_pool.lifespan)`` or
        ``Starlette(lifespan=app_pool.lifespan)``, or ``async with app_pool.lifespan(app):``
        inside a lifespan of your own.

        At start-up it opens the pool (waiting for ``min_size`` connections, at most
        ``config.connect_timeout``: DatabaseUnavailableError with the driver's reason when the
        database cannot be reached), then enters the client (which starts working jobs when it
        has queues, after checking the schema: SchemaNotReadyError when it is not migrated).
        At shutdown it stops the client first (running jobs get :attr:`stop_timeout` seconds to
        finish, then are cancelled; every outcome is written through the pool), then closes
        the pool. ``app`` is not used.

        One lifespan at a time: entering it while it runs (two apps sharing one ``AppPool``, a
        lifespan nested in another) raises RiverError and leaves the running one alone (its
        exit would otherwise stop the client and close the pool under the first app).
        """
        if self._in_lifespan:
            raise RiverError(
                "this AppPool's lifespan is already running: one AppPool serves one app "
                "(create one per app, or enter the lifespan once)"
            )
        self._in_lifespan = True
        try:
            await open_pool_async(self.pool, self._conninfo, self.config.connect_timeout_seconds)
            try:
                async with self.client:
                    try:
                        yield
                    finally:
                        await self.client.stop(timeout=self.stop_timeout)
            finally:
                await self.pool.close()
        finally:
            self._in_lifespan = False

    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A FastAPI dependency: a connection of the pool inside a transaction, for one request.

        The transaction commits when the route returns, and rolls back when anything raises
        (``HTTPException`` included), so rows written on the connection and jobs inserted
        with ``client.insert_tx(conn, ...)`` are kept or dropped together. Declare it with
        ``Depends(app_pool.transaction, scope="function")`` (FastAPI 0.121 and later): without
        ``scope="function"`` FastAPI runs the commit after the response is sent, so a client
        could see a success whose commit then fails.
        """
        async with pooled(self.pool) as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The same transaction as :meth:`transaction`, as ``async with app_pool.begin() as
        conn:``: for Starlette endpoints, background code, or any FastAPI version."""
        async with pooled(self.pool) as conn, conn.transaction():
            yield conn
