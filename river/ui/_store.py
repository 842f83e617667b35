"""The dashboard's database access: its own small connection pool, the admin client on it, and
one mapping of database failures to what the API answers.

The dashboard never borrows connections from the application's job runtime: a page left open
(or a dozen) polling every few seconds must not take the connections that workers need, nor
wait behind them. It opens its pool on the first request, not at import or construction, so
that an app mounting it starts even while the database is down, and a mounted app (whose
lifespan events Starlette does not forward to mounts) needs no start-up hook.

Every request's work runs in one transaction on one connection checked out for at most the
wait timeout, whose first statement sets the statement timeout for that transaction only
(``SET LOCAL``): the limits hold the same on the dashboard's own pool and on a pool the
application passes in, and never leak into the application's use of its connections.

Every checkout looks at the connection's socket first (river/_pool.py): a connection that died
with the server (a restart, a failover) is replaced instead of failing the request that drew
it, on the dashboard's own pool and on one the application passes in.

A database that stops answering without closing the connection (a network that goes silent:
a half-open TCP connection after a NAT, firewall or host forgot it) would leave a request
waiting on its socket for as long as the kernel keeps it, the server's statement timeout
being of no help. So each transaction of a request is bounded on this side too
(:attr:`Store.request_deadline`: the wait timeout, the statement timeout and a margin): past
it the request answers 503 ``unreachable`` and its connection is closed, never given back to
the pool in an unknown state (a query may be in flight on it); the store's own pool then
replaces its idle connections too (they likely went silent with it), and opens new ones.

The pool is never replaced: a busy pool (every connection in use by slow requests) is not a
dead one, and replacing it would leave the old pool's connections open beside the new ones.
The dashboard's own pool gives up a failing reconnection after the wait timeout instead of
backing off for minutes, so the next request after an outage tries afresh and the page
recovers within a refresh or two of the database coming back.
"""

from __future__ import annotations

import os
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
from river._pool import pooled
from river._preflight import SCHEMA_ERRORS, schema_error_async
from river._sansio import Op, run_async
from river.ui._queries import UIQueries, ui_queries

__all__ = [
    "CLIENT_MARGIN",
    "DatabaseBusyError",
    "QueryTimeoutError",
    "SharedReads",
    "SilentDatabaseError",
    "Store",
]

R = TypeVar("R")
Conn = psycopg.AsyncConnection[Any]

#: ``application_name`` of the dashboard's connections unless the URL or ``PGAPPNAME`` sets one.
APPLICATION_NAME = "river ui"
#: Seconds a transaction of the dashboard may take beyond the wait timeout and the statement
#: timeout before the client gives up on it (:attr:`Store.request_deadline`): the server's own
#: cancellation, its answer, and the transaction's short statements (setup, now()) fit in it.
CLIENT_MARGIN = 2.0


class QueryTimeoutError(Exception):
    """A dashboard query ran past the statement timeout of the dashboard's connections."""


class SilentDatabaseError(DatabaseUnavailableError):
    """A transaction of the dashboard got no answer within :attr:`Store.request_deadline`:
    the connection is held open but nothing comes back (a silent network). Answered 503
    ``unreachable``, like a database that refuses connections."""


class DatabaseBusyError(Exception):
    """Every connection of the pool was in use for the whole wait timeout: the database is up,
    other requests of the dashboard (or of the application, on a pool it lent) hold them."""


class Store:
    """Connections, queries and the admin client of one dashboard (see module doc).

    ``database`` is a ``postgresql://`` URL or libpq conninfo (the store owns a pool of at most
    ``pool_size`` connections), or an open ``psycopg_pool.AsyncConnectionPool`` the caller
    owns. Either way a request waits at most ``wait_timeout`` seconds for a connection, and
    each of its statements runs at most ``statement_timeout`` seconds."""

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
        self.wait_timeout = wait_timeout
        self._pool_size = pool_size
        self._conninfo: str | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        if isinstance(database, str):
            self._conninfo = database
        else:
            self._pool = database
        self._owns_pool = self._conninfo is not None
        #: The admin calls run as ``*_tx`` on the store's connections: a client without a pool.
        self._admin = AsyncClient(config=Config(schema=schema, id="river-ui"))
        self._lock = anyio.Lock()
        #: Connections the store holds right now (checked out and not yet returned).
        self.in_use = 0
        self._errors_seen = 0

    @property
    def request_deadline(self) -> float:
        """Seconds one transaction of a request may take, checkout included, before the
        client abandons it (see module doc): the wait timeout, the statement timeout, and
        :data:`CLIENT_MARGIN`."""
        return self.wait_timeout + self.statement_timeout + CLIENT_MARGIN

    @property
    def pool_size(self) -> int:
        """The most connections the store's pool holds."""
        return self._pool.max_size if self._pool is not None else self._pool_size

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        assert self._conninfo is not None
        try:
            params = conninfo.conninfo_to_dict(self._conninfo)
        except psycopg.ProgrammingError as exc:
            raise DatabaseUnavailableError(exc) from None
        kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": None}
        if "application_name" not in params and not os.environ.get("PGAPPNAME"):
            kwargs["application_name"] = APPLICATION_NAME
        if "connect_timeout" not in params:
            kwargs["connect_timeout"] = 5
        return AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            kwargs=kwargs,
            timeout=self.wait_timeout,
            # A reconnection gives up after the wait timeout (psycopg_pool's default backs off
            # for up to 5 minutes): the next request that needs a connection starts a fresh
            # attempt at once, so the page recovers as soon as the database is back.
            reconnect_timeout=max(1.0, self.wait_timeout),
            name="river-ui",
        )

    async def pool(self) -> AsyncConnectionPool[Any]:
        """The pool, opened on first use (in the background: requests wait for a connection
        at most the wait timeout, so a database that is down answers 503 at once)."""
        current = self._pool
        if current is not None and (not self._owns_pool or not current.closed):
            return current
        async with self._lock:
            if self._pool is None or (self._owns_pool and self._pool.closed):
                pool = self._new_pool()
                await pool.open(wait=False)
                self._pool = pool
            return self._pool

    async def _with_conn(self, fn: Callable[[Conn], Awaitable[R]]) -> R:
        """``fn(conn)`` in one transaction of a connection of the pool, within
        :attr:`request_deadline` (see module doc)."""
        pool = await self.pool()
        timeout_ms = str(max(1, round(self.statement_timeout * 1000)))
        silent = SilentDatabaseError(
            f"the database did not answer within {self.request_deadline:g}s (is the network "
            "to it down?): the request was abandoned and its connection closed"
        )
        try:
            with anyio.move_on_after(self.request_deadline) as deadline:
                async with pooled(pool, self.wait_timeout) as conn:
                    self.in_use += 1
                    try:
                        try:
                            async with conn.transaction():
                                await conn.execute(
                                    self.ui.ui_transaction_setup,
                                    {"statement_timeout": timeout_ms},
                                )
                                return await fn(conn)
                        except SCHEMA_ERRORS as exc:
                            mapped = await schema_error_async(conn, self.schema, exc, own=True)
                            if mapped is None:
                                raise
                            raise mapped from exc
                    except BaseException:
                        if deadline.cancel_called:
                            # Cut mid-statement: the connection's state is unknown (a query
                            # may be in flight). Closed, the pool discards it on its return
                            # (libpq's own close: psycopg's may hand it back to a pool).
                            conn.pgconn.finish()
                        raise
                    finally:
                        self.in_use -= 1
        except Exception as exc:
            # What the cut left behind (the rollback of a closed connection fails, say).
            if not deadline.cancel_called:
                raise
            await self._after_silence(pool)
            raise silent from exc
        await self._after_silence(pool)  # the deadline's cancellation, caught by its scope
        raise silent

    async def _after_silence(self, pool: AsyncConnectionPool[Any]) -> None:
        """After a connection went silent, its idle siblings likely did too (a network cut,
        a NAT that forgot its mappings): the store's own pool replaces them all at once
        (psycopg_pool 3.3's ``drain``), so that the next requests do not each wait out a
        dead connection. A pool of the application's is left to it."""
        drain = getattr(pool, "drain", None)
        if self._owns_pool and drain is not None:
            with anyio.CancelScope(shield=True):
                await drain()

    async def run(self, op: Op[R]) -> R:
        """Run a dashboard operation in one transaction (see :meth:`call` for the errors)."""

        async def body(conn: Conn) -> R:
            return await run_async(conn, op)

        return await self._mapped(body)

    async def call(self, fn: Callable[[AsyncClient, Conn], Awaitable[R]]) -> R:
        """``fn(admin client, connection)``: an admin ``*_tx`` call in one transaction (see
        :meth:`_mapped` for the errors)."""

        async def body(conn: Conn) -> R:
            return await fn(self._admin, conn)

        return await self._mapped(body)

    async def _mapped(self, fn: Callable[[Conn], Awaitable[R]]) -> R:
        """``fn`` on a connection, with the failures of the database mapped: every connection
        in use for the whole wait timeout raises DatabaseBusyError; no connection otherwise, or
        a broken one, DatabaseUnavailableError; a statement cut by the statement timeout
        QueryTimeoutError. River's errors and the others pass through."""
        try:
            return await self._with_conn(fn)
        except PoolTimeout:
            if self._busy():
                raise DatabaseBusyError(
                    f"all {self.pool_size} database connections of the dashboard stayed busy "
                    f"for {self.wait_timeout:g}s (slow requests hold them): try again shortly"
                ) from None
            raise DatabaseUnavailableError(
                f"no connection within {self.wait_timeout:g}s (is the database up?)"
            ) from None
        except PoolClosed:
            raise DatabaseUnavailableError("the connection pool is closed") from None
        except psycopg.errors.QueryCanceled:
            raise QueryTimeoutError(
                f"the query ran longer than {self.statement_timeout:g}s and was cancelled"
            ) from None
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailableError(exc) from None

    def _busy(self) -> bool:
        """Whether a checkout timed out because every connection was in use (rather than
        because none could be made: no connection error since the last look)."""
        pool = self._pool
        if pool is None:
            return False
        stats = pool.get_stats()
        errors = int(stats.get("connections_errors", 0))
        failing = errors > self._errors_seen
        self._errors_seen = errors
        if failing:
            return False
        if self._owns_pool:
            return self.in_use >= pool.max_size
        return (
            int(stats.get("pool_size", 0)) >= pool.max_size
            and int(stats.get("pool_available", 0)) == 0
        )

    async def close(self) -> None:
        """Close the pool the store owns (a later request opens a new one)."""
        async with self._lock:
            pool = self._pool
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
