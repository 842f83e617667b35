"""Connections of other libraries in the ``*_tx`` calls.

The ``*_tx`` methods of both clients run on the caller's psycopg connection. A Django
connection (``django.db.connection``, ``connections[alias]``) is accepted by the sync
:class:`~river.Client` too: :func:`sync_connection` turns it into a view of its psycopg 3
connection (river/contrib/django/_conn.py), opening it first if Django has not yet, so that
the statements join whatever transaction Django has open. An :class:`~river.AsyncClient`
refuses one with a clear error: Django's connections are synchronous.

Django is recognised by the modules of the object's classes, so that neither this module nor
``import river`` imports Django.
"""

from __future__ import annotations

from typing import Any

import psycopg

from river._errors import RiverError

__all__ = ["async_connection", "sync_connection"]


def _is_django(conn: object) -> bool:
    return any(cls.__module__.startswith("django.") for cls in type(conn).__mro__)


def sync_connection(conn: Any) -> psycopg.Connection[Any]:
    """``conn`` as the psycopg connection the sync client's ``*_tx`` calls run on."""
    if isinstance(conn, psycopg.Connection):
        return conn
    if _is_django(conn):
        from river.contrib.django._conn import psycopg_connection

        return psycopg_connection(conn)
    # Anything else is used as it is (a psycopg.Connection look-alike), as always.
    return conn  # type: ignore[no-any-return]


def async_connection(conn: Any) -> psycopg.AsyncConnection[Any]:
    """``conn`` as the psycopg connection the async client's ``*_tx`` calls run on."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    if _is_django(conn):
        raise RiverError(
            "a Django connection is synchronous: pass it to river.Client's *_tx methods "
            "(river.contrib.django.get_client()), e.g. through asgiref's sync_to_async from "
            "async code (docs/django.md)"
        )
    return conn  # type: ignore[no-any-return]
