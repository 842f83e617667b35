"""The library's connections: checked out of a pool without handing on one the server has
closed (:func:`checkout`, :func:`pooled`), and its own closed for sure (:func:`owned`).

When Postgres restarts, fails over, or ends a session (``pg_terminate_backend``,
``idle_session_timeout``, a proxy's idle limit), the connections idle in a pool are dead, and
nothing notices until a statement is sent on one: the statement fails (``AdminShutdown``,
"server closed the connection unexpectedly"). Every idle connection would fail one insert,
one fetch or one completion write that way.

psycopg_pool's own remedy, a ``check`` callback such as ``check_connection``, costs a round trip
per checkout, and each further dead connection met by one checkout waits longer than the last
(1 s, 2 s, 4 s...: its reconnection backoff), so after a restart a single checkout could stall
for seconds. Here a checkout instead looks at the socket (one ``poll`` with no timeout, about a
microsecond): an idle connection has nothing to read unless the server sent something, and
when it did, libpq reads it. A server that ended the session has sent its error and closed
the socket, so reading fails and the connection is marked bad: it goes back to the pool, which
closes it and opens a replacement, and the next one is checked out, with no wait.

What this cannot see: a server that disappears without closing its sockets (a host that
vanished, a network cut). Such a connection fails on use, as before; TCP keepalives
(``keepalives_idle`` in the connection string) bound how long it stays in the pool.

The connections the library opens for itself (the LISTEN connection, the reindexer's) are
closed with :func:`owned`, not psycopg's ``async with``, whose exit can be interrupted by the
cancellation of a stopping client before it closes (see there).
"""

from __future__ import annotations

import select
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import psycopg
from psycopg.pq import ConnStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool

__all__ = ["checkout", "checkout_sync", "closed_by_server", "owned", "pooled", "pooled_sync"]

#: Reads of pending input per checkout: a session's end is the server's error message, then
#: the end of the stream; what is still pending after this many reads is notifications.
_MAX_READS = 4

_POLL = hasattr(select, "poll")

#: admin_shutdown, crash_shutdown, cannot_connect_now: the server is ending the session.
_SHUTDOWN = frozenset({"57P01", "57P02", "57P03"})


def _readable(fd: int) -> bool:
    if _POLL:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows: no poll()
    return bool(readable)


def closed_by_server(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection was closed by the server (or is otherwise unusable); one that
    was is left closed, so that its pool discards it. Sends no statement.

    Looks for pending input without blocking: nothing (the usual case) means the connection is
    fine. Otherwise libpq reads it: a parameter change is applied; a notification (on a
    connection that LISTENs) stays in libpq's queue, where psycopg finds it after the
    connection's next statement rather than at once. The server's goodbye is an error message
    (passed to the connection's notice handlers, since no statement is running): FATAL, or
    an admin or crash shutdown (SQLSTATE 57P01/57P02/57P03, which Postgres 14+ may send as a
    warning to the client only), then the end of the stream, which may not have arrived yet."""
    pgconn = conn.pgconn
    if pgconn.status != ConnStatus.OK:
        return True
    try:
        if not _readable(pgconn.socket):
            return False
    except (psycopg.OperationalError, OSError):
        return True
    return _read_pending(conn)


def _read_pending(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    pgconn = conn.pgconn
    fatal = False

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        nonlocal fatal
        fatal = fatal or (
            diag.severity_nonlocalized in ("FATAL", "PANIC") or diag.sqlstate in _SHUTDOWN
        )

    conn.add_notice_handler(on_notice)
    try:
        for _ in range(_MAX_READS):
            pgconn.consume_input()
            pgconn.is_busy()  # parses what was read (an error reaches on_notice)
            if fatal or not _readable(pgconn.socket):
                break
    except (psycopg.OperationalError, OSError):
        return True  # the end of the stream: libpq marked the connection bad
    finally:
        conn.remove_notice_handler(on_notice)
    if fatal:
        pgconn.finish()  # the session is over; its socket's end may just not be here yet
        return True
    return pgconn.status != ConnStatus.OK


async def checkout(
    pool: AsyncConnectionPool[Any], timeout: float | None = None
) -> psycopg.AsyncConnection[Any]:
    """``pool.getconn(timeout)``, handing back (to be closed and replaced) every connection the
    server closed while it was idle. Pair with ``pool.putconn``."""
    conn: psycopg.AsyncConnection[Any] = await pool.getconn(timeout)
    while closed_by_server(conn):
        await pool.putconn(conn)  # a bad connection: the pool closes it, opens another
        conn = await pool.getconn(timeout)
    return conn


def checkout_sync(
    pool: ConnectionPool[Any], timeout: float | None = None
) -> psycopg.Connection[Any]:
    """:func:`checkout` for a sync pool."""
    conn: psycopg.Connection[Any] = pool.getconn(timeout)
    while closed_by_server(conn):
        pool.putconn(conn)
        conn = pool.getconn(timeout)
    return conn


@asynccontextmanager
async def pooled(
    pool: AsyncConnectionPool[Any], timeout: float | None = None
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """``async with pool.connection(timeout)`` with :func:`checkout`: the connection's block
    commits on success and rolls back on error (a pool not in autocommit mode), then it goes
    back."""
    conn = await checkout(pool, timeout)
    try:
        async with conn:  # a pooled connection's exit ends its transaction, never closes it
            yield conn
    finally:
        with anyio.CancelScope(shield=True):  # given back even under a cancellation
            await pool.putconn(conn)


@contextmanager
def pooled_sync(
    pool: ConnectionPool[Any], timeout: float | None = None
) -> Iterator[psycopg.Connection[Any]]:
    """:func:`pooled` for a sync pool."""
    conn = checkout_sync(pool, timeout)
    try:
        with conn:
            yield conn
    finally:
        pool.putconn(conn)


@asynccontextmanager
async def owned(
    conn: psycopg.AsyncConnection[Any],
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection of the library's own (not a pool's), closed on exit whatever happens.

    Not ``async with conn``: psycopg's exit rolls back first, and its wait may yield to the
    event loop even with nothing to wait for (after ~5 ms without a yield, so as not to starve
    the loop). Under an anyio cancellation (a client stopping) that yield raises again, and the
    close after it never runs: the server session stayed open until the object was collected,
    which warned (ResourceWarning). The connections this is used for are autocommit: there is
    no transaction to roll back."""
    try:
        yield conn
    finally:
        with anyio.CancelScope(shield=True):
            await conn.close()
