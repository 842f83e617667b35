"""Django's database connection as river's statements need it.

:func:`psycopg_connection` is what the sync client's ``*_tx`` calls do with a Django connection
(river/_conn_adapt.py): it opens the connection if Django has not yet (``connection.connection``
is None until the first query), refuses a broken transaction as Django's own queries would,
and returns a view of Django's psycopg 3 connection, so that river's statements run inside
whatever transaction Django has open (``atomic()``), or in autocommit outside one.

The view differs from Django's connection in its cursors only. Django makes its connections
with a client-side-binding cursor class and adapters of its own (``jsonb`` loaded as text,
``timestamptz`` loaded naive when ``USE_TZ = False``); river's statements bind parameters on
the server, some in binary, and read ``jsonb`` and ``timestamptz`` as psycopg does by default.
So the view's cursors are psycopg's own ``Cursor`` with psycopg's default loaders for those
types. Everything else (transactions, the server session, ``prepare_threshold``, which Django
sets to None so that poolers keep working) is Django's connection itself.

:func:`conninfo` gives the libpq connection string of a Django database, for the worker's own
connections.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from psycopg.pq import Format
from psycopg.rows import RowFactory

from river.contrib.django._settings import check_postgres

__all__ = ["conninfo", "psycopg_connection"]

#: (oid, psycopg's default loader), in both formats, of the types whose loaders Django replaces.
_DEFAULT_LOADERS = tuple(
    (oid, loader)
    for oid in (psycopg.postgres.types[name].oid for name in ("json", "jsonb", "timestamptz"))
    for fmt in (Format.TEXT, Format.BINARY)
    if (loader := psycopg.adapters.get_loader(oid, fmt)) is not None
)


class _TrackedCursor(psycopg.Cursor[Any]):
    """psycopg's cursor that tells Django when a statement (``execute``, ``executemany``) or a
    ``COPY`` failed (``errors_occurred``), as Django's own cursors do (not for a data or
    integrity error, which leaves the connection usable): ``close_old_connections()`` then
    checks the connection at the end of the request and throws it away when it is no longer
    usable (a server restart)."""

    _django: Any = None

    def _failed(self, exc: psycopg.Error) -> None:
        if self._django is not None and not isinstance(
            exc, psycopg.DataError | psycopg.IntegrityError
        ):
            self._django.errors_occurred = True

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute(*args, **kwargs)
        except psycopg.Error as exc:
            self._failed(exc)
            raise

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().executemany(*args, **kwargs)
        except psycopg.Error as exc:
            self._failed(exc)
            raise

    @contextmanager
    def copy(self, *args: Any, **kwargs: Any) -> Iterator[psycopg.Copy]:
        try:
            with super().copy(*args, **kwargs) as copy:
                yield copy
        except psycopg.Error as exc:
            self._failed(exc)
            raise


class _RiverView:
    """A psycopg connection (Django's) whose cursors are psycopg's own (see module doc)."""

    __slots__ = ("_django", "_raw")

    def __init__(self, raw: psycopg.Connection[Any], django: Any = None) -> None:
        self._raw = raw
        self._django = django

    def cursor(self, *, row_factory: RowFactory[Any] | None = None) -> psycopg.Cursor[Any]:
        cur = _TrackedCursor(self._raw, row_factory=row_factory or self._raw.row_factory)
        cur._django = self._django
        adapters = cur.adapters  # the cursor's own copy of the connection's map
        for oid, loader in _DEFAULT_LOADERS:
            adapters.register_loader(oid, loader)
        return cur

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __repr__(self) -> str:
        return f"<river view of {self._raw!r}>"


def psycopg_connection(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg 3 connection under a Django connection (``django.db.connection`` or
    ``connections[alias]``), opened if need be, as river's statements use it (module doc).

    Raises ``ImproperlyConfigured`` for another backend (sqlite, ...) or psycopg2, and what
    Django raises for a connection shared across threads or a transaction marked for
    rollback (``TransactionManagementError``)."""
    check_postgres(conn.alias)
    conn.validate_thread_sharing()
    conn.validate_no_broken_transaction()
    # As Django does before each of its own cursors: a persistent connection that fails its
    # health check (CONN_HEALTH_CHECKS) is closed here and reopened below.
    close_if_failed = getattr(conn, "close_if_health_check_failed", None)
    if close_if_failed is not None and not conn.in_atomic_block:
        close_if_failed()
    conn.ensure_connection()
    raw = conn.connection
    if not isinstance(raw, psycopg.Connection):
        check_postgres(conn.alias)  # names psycopg2, when that is what it is
        raise TypeError(f"Django's connection {conn.alias!r} is not a psycopg connection: {raw!r}")
    # A duck-typed view: river's runners only create cursors and read the connection's state.
    return cast(psycopg.Connection[Any], _RiverView(raw, conn))


#: Connection parameters Django passes to psycopg that are not libpq's.
_NOT_LIBPQ = frozenset({"cursor_factory", "context", "prepare_threshold", "row_factory"})


def conninfo(alias: str) -> str:
    """The libpq connection string of Django database ``alias`` (``NAME``, ``USER``,
    ``PASSWORD``, ``HOST``, ``PORT`` and the libpq keys of ``OPTIONS``, as Django connects)."""
    from django.db import connections

    check_postgres(alias)
    params = connections[alias].get_connection_params()
    libpq = {
        key: value
        for key, value in params.items()
        if key not in _NOT_LIBPQ and isinstance(value, str | int) and not isinstance(value, bool)
    }
    return psycopg.conninfo.make_conninfo("", **libpq)
