"""Start-up checks of both clients and ``river worker``: a first connection that fails fast with
the driver's reason, and the version of River's schema.

Connecting: ``psycopg_pool`` hides why it cannot connect. ``open(wait=True)`` retries until its
timeout, then raises ``PoolTimeout`` ("pool initialization incomplete after 30 sec"), and the
reason only reaches the ``psycopg.pool`` logger. So a client first connects once on its own,
bounded by ``Config.connect_timeout``: an unknown host, a refused port, bad credentials or a
missing database fail at once with the driver's reason, an address that never answers within
the bound; only then is the pool opened. Both raise :class:`DatabaseUnavailableError`.

Schema: :func:`check_schema_async` reads ``river_migration`` with the migrator's own code (one
or two short queries, once per start) and raises :class:`SchemaNotReadyError` naming the
version found and the command that fixes it. Clients that only insert are not checked up
front (no round trip per call): an undefined-table or -column error of one of their River
statements is turned into the same error by :func:`schema_error_async` /
:func:`schema_error_sync`, which read the version only then.
"""

from __future__ import annotations

import contextlib
import math
import re
from functools import cache
from typing import Any

import anyio
import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from river._errors import DatabaseUnavailableError, SchemaNotReadyError
from river._pool import checkout
from river._sansio import run_async, run_sync
from river._schema import validate_schema
from river.migrate import MAIN_LINE, _Core, _go_list, _State

__all__ = [
    "SCHEMA_ERRORS",
    "check_schema_async",
    "libpq_connect_timeout",
    "not_ready",
    "open_pool_async",
    "open_pool_sync",
    "probe_async",
    "probe_sync",
    "schema_error_async",
    "schema_error_sync",
]

#: Errors of a River statement that mean River's tables or columns are not there (yet).
SCHEMA_ERRORS = (pg_errors.UndefinedTable, pg_errors.UndefinedColumn)
#: A River table named in an error message (``relation "river_job" does not exist``).
_RIVER_RELATION = re.compile(r'relation "(?:[^"]*\.)?river_\w+"')


def libpq_connect_timeout(timeout: float) -> int:
    """libpq's ``connect_timeout`` for a bound of ``timeout`` seconds (whole seconds, at
    least 2: libpq's minimum). It applies per address tried."""
    return max(2, math.ceil(timeout))


# --------------------------------------------------------------------------------------------
# Connecting
# --------------------------------------------------------------------------------------------


async def probe_async(conninfo: str, timeout: float) -> None:
    """Connect once and disconnect; raise :class:`DatabaseUnavailableError` with the driver's
    reason, or after ``timeout`` seconds without an answer."""
    try:
        with anyio.fail_after(timeout):
            conn = await psycopg.AsyncConnection.connect(
                conninfo, connect_timeout=libpq_connect_timeout(timeout)
            )
    except TimeoutError as exc:
        raise DatabaseUnavailableError(f"no answer within {timeout:g}s (connect_timeout)") from exc
    except psycopg.Error as exc:
        raise DatabaseUnavailableError(exc) from exc
    await conn.close()


def probe_sync(conninfo: str, timeout: float) -> None:
    """:func:`probe_async` for sync code. The bound is libpq's (whole seconds, at least 2, per
    address tried)."""
    try:
        conn = psycopg.connect(conninfo, connect_timeout=libpq_connect_timeout(timeout))
    except psycopg.Error as exc:
        raise DatabaseUnavailableError(exc) from exc
    conn.close()


async def open_pool_async(pool: AsyncConnectionPool[Any], conninfo: str, timeout: float) -> None:
    """Open a pool that was created with ``open=False``, failing like :func:`probe_async`.

    On failure the pool is closed, and psycopg_pool cannot reopen a closed pool: the caller
    makes a new one before trying again. The whole call is bounded by ``timeout``."""
    try:
        with anyio.fail_after(timeout):
            await probe_async(conninfo, timeout)
            try:
                await pool.open(wait=True, timeout=timeout)
            except PoolTimeout as exc:
                # The server answered the probe a moment ago: ask again for the reason.
                await probe_async(conninfo, timeout)
                raise DatabaseUnavailableError(exc) from exc
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await pool.close()
        if isinstance(exc, TimeoutError):
            raise DatabaseUnavailableError(
                f"no answer within {timeout:g}s (connect_timeout)"
            ) from exc
        raise


def open_pool_sync(pool: ConnectionPool[Any], conninfo: str, timeout: float) -> None:
    """:func:`open_pool_async` for sync code."""
    probe_sync(conninfo, timeout)
    try:
        pool.open(wait=True, timeout=timeout)
    except BaseException as exc:
        pool.close()
        if isinstance(exc, PoolTimeout):
            probe_sync(conninfo, timeout)
            raise DatabaseUnavailableError(exc) from exc
        raise


# --------------------------------------------------------------------------------------------
# The schema's version
# --------------------------------------------------------------------------------------------


@cache
def _core(schema: str | None) -> _Core:
    return _Core(MAIN_LINE, schema)


def _not_ready(
    schema: str | None, found: int | None, what: str, *, required: int
) -> SchemaNotReadyError:
    flag = f" --schema {schema}" if schema else ""
    return SchemaNotReadyError(
        f"River schema not ready: {what}, this library needs version {required}; "
        f"run 'river migrate-up{flag}'",
        found_version=found,
        required_version=required,
        schema=schema,
    )


def not_ready(schema: str | None, state: _State) -> SchemaNotReadyError | None:
    """The error for a schema in ``state``, or None when every version is applied."""
    core = _core(schema)
    result = core.validate(state)
    if result.ok:
        return None
    required = core.latest
    known = sorted(v for v in state.versions if v in core.by_version)
    found = known[-1] if known else None
    if not state.schema_exists and schema is not None:
        return SchemaNotReadyError(
            f'River schema not ready: schema "{schema}" does not exist; create it (CREATE '
            f"SCHEMA {schema}), then run 'river migrate-up --schema {schema}'",
            found_version=None,
            required_version=required,
            schema=schema,
        )
    if found is None:
        where = f' in schema "{schema}"' if schema else ""
        table = "no river_migration table" if not state.table_exists else "no version recorded"
        return _not_ready(schema, None, f"found version none ({table}{where})", required=required)
    what = f"found version {found}"
    if list(result.unapplied) != list(range(found + 1, required + 1)):
        what += f" (unapplied: {_go_list(result.unapplied)})"
    return _not_ready(schema, found, what, required=required)


def _fallback(schema: str | None, exc: BaseException) -> SchemaNotReadyError | None:
    # The version cannot be read (the caller's transaction has failed): go by the message.
    primary = getattr(getattr(exc, "diag", None), "message_primary", None) or str(exc)
    if not _RIVER_RELATION.search(primary):
        return None
    what = " ".join(primary.split())
    return _not_ready(schema, None, what, required=_core(schema).latest)


async def _read_state_async(conn: psycopg.AsyncConnection[Any], schema: str | None) -> _State:
    try:
        return await run_async(conn, _core(schema).read_state_op())
    finally:
        # A connection not in autocommit mode: end the read-only transaction of the read.
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()


def _read_state_sync(conn: psycopg.Connection[Any], schema: str | None) -> _State:
    try:
        return run_sync(conn, _core(schema).read_state_op())
    finally:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()


async def check_schema_async(
    pool: AsyncConnectionPool[Any], schema: str | None, timeout: float, conninfo: str | None
) -> None:
    """Raise :class:`SchemaNotReadyError` unless every migration of line ``main`` is applied.

    Uses a connection of ``pool`` (waiting at most ``timeout`` seconds for one: a caller's pool
    may not be able to connect; then :class:`DatabaseUnavailableError`, with the driver's reason
    when ``conninfo`` allows a direct attempt)."""
    try:
        conn = await checkout(pool, timeout)
    except PoolTimeout as exc:
        if conninfo:
            await probe_async(conninfo, timeout)
        raise DatabaseUnavailableError(f"no connection from the pool within {timeout:g}s") from exc
    try:
        state = await _read_state_async(conn, schema)
    finally:
        await pool.putconn(conn)
    if schema is None and state.current_schema is not None:
        # The schema the client works in comes from search_path: it obeys the rules of an
        # explicit one, or the client could not NOTIFY on <schema>.river_leadership.
        validate_schema(state.current_schema, "schema (the current schema of search_path)")
    error = not_ready(schema, state)
    if error is not None:
        raise error


async def schema_error_async(
    conn: psycopg.AsyncConnection[Any], schema: str | None, exc: BaseException, *, own: bool
) -> SchemaNotReadyError | None:
    """What a River statement's undefined-table/column error ``exc`` stands for: the
    :class:`SchemaNotReadyError` of the version recorded, or None when it is something else
    (the schema is complete, or the error names no River table).

    The version is read on ``conn`` when it can run a query: it is in autocommit mode, or
    ``own`` (the client's connection, whose failed transaction may be rolled back). A caller's
    failed transaction is never touched: the error then goes by the message alone."""
    if not isinstance(exc, SCHEMA_ERRORS) or conn.closed:
        return None
    status = conn.info.transaction_status
    if own and status != TransactionStatus.IDLE:
        with contextlib.suppress(psycopg.Error):
            await conn.rollback()
        status = conn.info.transaction_status
    if status == TransactionStatus.IDLE:
        try:
            state = await _read_state_async(conn, schema)
        except psycopg.Error:
            pass
        else:
            return not_ready(schema, state)
    return _fallback(schema, exc)


def schema_error_sync(
    conn: psycopg.Connection[Any], schema: str | None, exc: BaseException, *, own: bool
) -> SchemaNotReadyError | None:
    """:func:`schema_error_async` for sync code."""
    if not isinstance(exc, SCHEMA_ERRORS) or conn.closed:
        return None
    status = conn.info.transaction_status
    if own and status != TransactionStatus.IDLE:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        status = conn.info.transaction_status
    if status == TransactionStatus.IDLE:
        try:
            state = _read_state_sync(conn, schema)
        except psycopg.Error:
            pass
        else:
            return not_ready(schema, state)
    return _fallback(schema, exc)
