"""The dashboard's database access: its own small connection pool, the admin client on it, and
one mapping of database failures to what the API answers.

The dashboard never borrows connections from the application's job runtime: a page left open
(or a dozen) polling every few seconds must not take the connections that workers need, nor
wait behind them. It opens its pool on the first request, not at import or construction, so
that an app mounting it starts even while the database is down, and a mounted app (whose
lifespan events Starlette does not forward to mounts) needs no start-up hook.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg import conninfo
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from river._client import AsyncClient
from river._config import Config
from river._driver import Queries, queries_for
from river._errors import DatabaseUnavailableError
from river._preflight import SCHEMA_ERRORS, schema_error_async
from river._sansio import Op, run_async
from river.ui._queries import UIQueries, ui_queries

__all__ = ["QueryTimeoutError", "SharedReads", "Store"]

R = TypeVar("R")

#: ``application_name`` of the dashboard's connections unless the URL sets one.
APPLICATION_NAME = "river ui"


class QueryTimeoutError(Exception):
    """A dashboard query ran past the statement timeout of the dashboard's connections."""


class Store:
    """Connections, queries and the admin client of one dashboard (see module doc).

    ``database`` is a ``postgresql://`` URL or libpq conninfo (the store owns a pool of at most
    ``pool_size`` connections, each with ``statement_timeout`` seconds per statement), or an
    open ``psycopg_pool.AsyncConnectionPool`` the caller owns (used as it is: its connections
    should be in autocommit mode)."""

    def __init__(
        self,
        database: str | AsyncConnectionPool[Any],
        *,
        schema: str | None,
        pool_size: int = 4,
        statement_timeout: float = 10.0,
        wait_timeout: float = 3.0,
    ) -> None:
        self.schema = schema
        self.ui: UIQueries = ui_queries(schema)
        self.runtime: Queries = queries_for(schema)
        self.statement_timeout = statement_timeout
        self._wait_timeout = wait_timeout
        self._pool_size = pool_size
        self._conninfo: str | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        if isinstance(database, str):
            self._conninfo = database
        else:
            self._pool = database
        self._owns_pool = self._conninfo is not None
        self._admin: AsyncClient | None = None
        self._lock = anyio.Lock()
        #: Set when a request found the database unreachable: the next one replaces the pool.
        self._stale = False

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        assert self._conninfo is not None
        try:
            params = conninfo.conninfo_to_dict(self._conninfo)
        except psycopg.ProgrammingError as exc:
            raise DatabaseUnavailableError(exc) from None
        kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": None}
        if "application_name" not in params:
            kwargs["application_name"] = APPLICATION_NAME
        if "connect_timeout" not in params:
            kwargs["connect_timeout"] = 5
        return AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            kwargs=kwargs,
            configure=self._configure,
            # A connection that died with the server (a restart, a failover) is found on
            # checkout and replaced, instead of failing the request that drew it.
            check=AsyncConnectionPool.check_connection,
            timeout=self._wait_timeout,
            name="river-ui",
        )

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        timeout_ms = str(max(1, round(self.statement_timeout * 1000)))
        await conn.execute(self.ui.ui_session_setup, {"statement_timeout": timeout_ms})

    async def pool(self) -> AsyncConnectionPool[Any]:
        """The pool, opened on first use (in the background: requests wait for a connection
        at most the wait timeout, so a database that is down answers 503 at once)."""
        current = self._pool
        if current is not None and (not self._owns_pool or not (current.closed or self._stale)):
            return current
        async with self._lock:
            old = self._pool
            if old is None or (self._owns_pool and (old.closed or self._stale)):
                # After a failure, a new pool tries to connect at once, where the old one would
                # wait out its reconnection backoff (up to minutes): the page recovers within
                # one refresh of the database coming back.
                pool = self._new_pool()
                await pool.open(wait=False)
                self._pool, self._stale = pool, False
                if old is not None and not old.closed:
                    await old.close(timeout=0)
            assert self._pool is not None
            return self._pool

    async def admin(self) -> AsyncClient:
        """An insert/admin-only client on the dashboard's pool (no workers, no queues)."""
        pool = await self.pool()
        if self._admin is None or self._admin_pool is not pool:
            self._admin = AsyncClient(pool, Config(schema=self.schema, id="river-ui"))
            self._admin_pool = pool
        return self._admin

    _admin_pool: AsyncConnectionPool[Any] | None = None

    async def run(self, op: Op[R]) -> R:
        """Run a dashboard operation on a connection of the pool (see :meth:`call` for the
        errors)."""

        async def body(_: AsyncClient) -> R:
            pool = await self.pool()
            async with pool.connection() as conn:
                try:
                    return await run_async(conn, op)
                except SCHEMA_ERRORS as exc:
                    mapped = await schema_error_async(conn, self.schema, exc, own=True)
                    if mapped is None:
                        raise
                    raise mapped from exc

        return await self.call(body)

    async def call(self, fn: Callable[[AsyncClient], Awaitable[R]]) -> R:
        """``fn(admin client)``, with the failures of the database mapped: no connection within
        the wait timeout or a broken one raise DatabaseUnavailableError; a statement cut by
        the statement timeout raises QueryTimeoutError; River's errors pass through."""
        try:
            return await fn(await self.admin())
        except (PoolTimeout, PoolClosed):
            self._stale = True
            raise DatabaseUnavailableError(
                f"no connection within {self._wait_timeout:g}s (is the database up?)"
            ) from None
        except psycopg.errors.QueryCanceled:
            raise QueryTimeoutError(
                f"the query ran longer than {self.statement_timeout:g}s and was cancelled"
            ) from None
        except psycopg.OperationalError as exc:
            self._stale = True
            raise DatabaseUnavailableError(exc) from None

    async def close(self) -> None:
        """Close the pool the store owns (a later request opens a new one)."""
        async with self._lock:
            pool, self._admin = self._pool, None
            if self._owns_pool and pool is not None:
                self._pool = None
                await pool.close()


class SharedReads:
    """Reuse a read for ``ttl`` seconds and let concurrent identical reads wait for one query:
    ten tabs polling the overview cost the database one count per second, not ten."""

    def __init__(self, ttl: float = 1.0, max_keys: int = 256) -> None:
        self._ttl = ttl
        self._max_keys = max_keys
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, anyio.Lock] = {}

    def clear(self) -> None:
        """Forget every value (after a change: the next read shows it)."""
        self._values.clear()

    async def get(self, key: Hashable, read: Callable[[], Awaitable[R]]) -> R:
        """The value of ``read()`` for ``key``, at most ``ttl`` seconds old."""
        hit = self._values.get(key)
        if hit is not None and hit[0] > time.monotonic():
            value: R = hit[1]
            return value
        if len(self._locks) > self._max_keys:
            self._locks.clear()
            self._values.clear()
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            hit = self._values.get(key)
            if hit is not None and hit[0] > time.monotonic():
                cached: R = hit[1]
                return cached
            fresh = await read()
            self._values[key] = (time.monotonic() + self._ttl, fresh)
            return fresh
