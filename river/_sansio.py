"""Write database operations once, run them sync or async.

An *operation* is a generator that yields :class:`Query` objects and receives each query's
result; its return value is the operation's result. :func:`run_sync` drives it on a
``psycopg.Connection``, :func:`run_async` on a ``psycopg.AsyncConnection``. This is how the sync
``Client``/``Migrator`` and the async ``AsyncClient``/``AsyncMigrator`` share every statement and
every decision without two hand-maintained copies (docs/design.md).

Results sent back into the generator, by ``Query.fetch``:

- ``"all"``: list of row tuples;
- ``"one"``: the first row tuple or None;
- ``"none"``: None;
- ``"rowcount"``: the cursor's rowcount;
- ``"copy"``: the statement is ``COPY ... FROM STDIN``; ``Query.rows`` are written as rows, and
  the result is the number of rows written.

Operations never open or close transactions themselves; callers decide (see
:func:`in_transaction` helpers of each runner).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

import psycopg
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed
from psycopg_pool import AsyncConnectionPool

from river._pool import checkout

__all__ = ["Op", "Query", "primed", "run_async", "run_pooled", "run_sync", "single"]

R = TypeVar("R")
Fetch = Literal["all", "one", "none", "rowcount", "copy"]


@dataclass(slots=True)
class Query:
    """One statement of an operation: a named query of river/_sql (bytes), or a statement
    composed from its fragments (``psycopg.sql``). Treat it as immutable (not frozen only
    because a frozen dataclass costs three times as much to build, once per statement)."""

    sql: bytes | str | SQL | Composed
    params: Sequence[Any] | Mapping[str, Any] | None = None
    fetch: Fetch = "all"
    #: Rows to write when ``fetch == "copy"``.
    rows: Iterable[Sequence[Any]] | None = None
    #: Let psycopg prepare the statement (server-side) when it is executed often.
    prepare: bool | None = None
    #: Ask for results in binary format (cheaper to decode for wide, numeric/time rows).
    binary: bool | None = None
    #: Run on a cursor kept with the connection instead of a new one (saves ~15 µs of cursor
    #: setup per statement: the single insert, the fetch), when the runner owns the
    #: connection. The cursor keeps its last result (libpq's, not Python rows) until the
    #: connection's next such statement, unless it has more than ``_KEEP_ROWS`` rows: the
    #: cursor is then closed (a fetch that large pays for a new one easily).
    reuse_cursor: bool = False


Op = Generator[Query, Any, R]


def primed(op: Op[R]) -> Op[R]:
    """Run ``op`` up to its first query now, and return an operation that yields that query
    and then goes on with ``op``. A runner calls it before it takes a connection or opens a
    transaction, so that an operation's validation (which runs before its first query)
    raises with no connection used and no statement sent."""
    try:
        first = next(op)
    except StopIteration as stop:
        return _finished(stop.value)
    return _resume(first, op)


def _finished(value: R) -> Op[R]:
    return value
    yield  # a generator that returns at once


def _resume(first: Query, op: Op[R]) -> Op[R]:
    result = yield first
    while True:
        try:
            query = op.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        result = yield query


def single(query: Query) -> Op[Any]:
    """The operation of one statement; its result is the statement's (see ``Query.fetch``)."""
    return (yield query)


def run_sync(conn: psycopg.Connection[Any], op: Op[R], *, own: bool = False) -> R:
    """Drive ``op`` on a sync connection and return its result (on cursors of
    :func:`_cursor`). ``own``: the
    connection is the library's (checked out of its pool for this call), so statements marked
    ``reuse_cursor`` may run on a cursor kept with it; never for a caller's connection, which
    other code may use concurrently."""
    try:
        query = next(op)
        while True:
            # Tuple rows whatever the connection's row factory (e.g. a caller's dict_row).
            if own and query.reuse_cursor:
                cur = _kept_cursor(conn)
                result = _execute_sync(cur, query)
                if _holds_many(cur):
                    cur.close()  # frees the result; the next use opens another cursor
            else:
                with _cursor(conn) as cur:
                    result = _execute_sync(cur, query)
            query = op.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _execute_sync(cur: psycopg.Cursor[Any], query: Query) -> Any:
    if query.fetch == "copy":
        count = 0
        with cur.copy(query.sql) as copy:
            for row in query.rows or ():
                copy.write_row(row)
                count += 1
        return count
    cur.execute(query.sql, query.params, prepare=query.prepare, binary=query.binary)
    return _result(cur, query.fetch)


async def run_async(conn: psycopg.AsyncConnection[Any], op: Op[R], *, own: bool = False) -> R:
    """Drive ``op`` on an async connection and return its result (``own``: see
    :func:`run_sync`)."""
    try:
        query = next(op)
        while True:
            if own and query.reuse_cursor:
                kept = _kept_cursor(conn)
                result = await _execute_async(kept, query)
                if _holds_many(kept):
                    await kept.close()  # frees the result; the next use opens another cursor
            else:
                async with _async_cursor(conn) as cur:
                    result = await _execute_async(cur, query)
            query = op.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


#: Maps an error raised on a pooled connection to the one to raise instead (None: keep it).
ErrorMapper = Callable[[psycopg.AsyncConnection[Any], Exception], Awaitable[Exception | None]]


async def run_pooled(
    pool: AsyncConnectionPool[Any], op: Op[R], *, map_error: ErrorMapper | None = None
) -> R:
    """Drive ``op`` on a connection of ``pool`` (owned: kept cursors allowed) and give the
    connection back; what ``async with pool.connection()`` does, for about half its cost on
    paths run per job (a single insert, a fetch). A transaction the statements left open (a
    pool whose connections are not in autocommit mode) is committed, or rolled back on
    error; ``map_error`` may replace an error, with the connection still in hand."""
    conn = await checkout(pool)  # never one the server closed while it was idle
    try:
        result = await run_async(conn, op, own=True)
        if conn.pgconn.transaction_status != TransactionStatus.IDLE:
            await conn.commit()
        return result
    except BaseException as exc:
        await _rollback_quietly(conn)
        if map_error is not None and isinstance(exc, Exception):
            mapped = await map_error(conn, exc)
            await _rollback_quietly(conn)  # what the mapper read, on a non-autocommit pool
            if mapped is not None:
                raise mapped from exc
        raise
    finally:
        await pool.putconn(conn)


async def _rollback_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
    if conn.pgconn.transaction_status != TransactionStatus.IDLE and not conn.closed:
        with contextlib.suppress(Exception):
            await conn.rollback()


async def _execute_async(cur: psycopg.AsyncCursor[Any], query: Query) -> Any:
    if query.fetch == "copy":
        count = 0
        async with cur.copy(query.sql) as copy:
            for row in query.rows or ():
                await copy.write_row(row)
                count += 1
        return count
    await cur.execute(query.sql, query.params, prepare=query.prepare, binary=query.binary)
    fetch = query.fetch
    if fetch in ("all", "one"):
        rows = await cur.fetchall() if _has_rows(cur) else []
        if fetch == "all":
            return rows
        return rows[0] if rows else None
    if fetch == "rowcount":
        return cur.rowcount
    return None


def _cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    """A tuple-row cursor of ``conn``: its own factory's (a Django view's tracks errors), but
    a plain one for a client-side factory (``ClientCursor``, as some PgBouncer setups use),
    which cannot fetch the binary results some statements ask for."""
    if isinstance(conn, psycopg.Connection) and issubclass(
        conn.cursor_factory, psycopg.ClientCursor
    ):
        return psycopg.Cursor(conn, row_factory=tuple_row)
    return conn.cursor(row_factory=tuple_row)


def _async_cursor(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncCursor[Any]:
    """:func:`_cursor` of an async connection."""
    if issubclass(conn.cursor_factory, psycopg.AsyncClientCursor):
        return psycopg.AsyncCursor(conn, row_factory=tuple_row)
    return conn.cursor(row_factory=tuple_row)


_KEPT_CURSOR = "_river_kept_cursor"


@overload
def _kept_cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Any]: ...
@overload
def _kept_cursor(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncCursor[Any]: ...
def _kept_cursor(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
) -> psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]:
    """The tuple-row cursor kept as an attribute of ``conn`` (created on first use). An
    attribute, not a weak mapping: the cursor refers to its connection, so a mapping entry
    would keep the connection alive forever; the attribute makes a cycle the collector frees."""
    cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any] | None = getattr(conn, _KEPT_CURSOR, None)
    if cur is None or cur.closed:
        cur = _async_cursor(conn) if isinstance(conn, psycopg.AsyncConnection) else _cursor(conn)
        setattr(conn, _KEPT_CURSOR, cur)
    return cur


#: Rows a kept cursor may go on holding (as libpq's result) after its statement: a fetch
#: brings up to a queue's free slots of whole job rows, args included.
_KEEP_ROWS = 16


def _holds_many(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> bool:
    result = cur.pgresult
    return result is not None and result.ntuples > _KEEP_ROWS


def _has_rows(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> bool:
    # Cheaper than ``cur.description is not None``, which builds a Column per result column.
    result = cur.pgresult
    return result is not None and result.status == ExecStatus.TUPLES_OK


def _result(cur: psycopg.Cursor[Any], fetch: Fetch) -> Any:
    if fetch == "all":
        return cur.fetchall() if _has_rows(cur) else []
    if fetch == "one":
        if not _has_rows(cur):
            return None
        rows = cur.fetchall()
        return rows[0] if rows else None
    if fetch == "rowcount":
        return cur.rowcount
    return None
