"""``DjangoClient``: a ``river.Client`` that runs on Django's connection, and ``get_client()``."""

from __future__ import annotations

import threading
from typing import Any

from django.db import connections, transaction

from river._config import Config
from river._sansio import Op, primed
from river._sync_client import Client
from river.contrib.django._conn import psycopg_connection
from river.contrib.django._settings import river_settings

__all__ = ["DjangoClient", "clear_clients", "get_client"]


class DjangoClient(Client):
    """A :class:`river.Client` without a pool of its own: its insert and admin methods run on
    Django's connection to database ``using`` (default ``RIVER["DATABASE"]``) of the calling
    thread.

    Inside ``transaction.atomic()`` a call joins Django's transaction (a rollback drops the job
    and its notification); outside one it commits on its own, like any query Django runs in
    autocommit mode. ``insert_many_fast`` (COPY) runs in an ``atomic()`` block of its own
    (a savepoint inside an outer one). The ``*_tx`` twins take any connection: Django's (of any
    alias) or a psycopg one.

    Like Django's connections, it is for sync code: from async code, call it through
    ``asgiref.sync.sync_to_async``. :meth:`close` does nothing (Django owns the connections).
    """

    def __init__(self, config: Config | None = None, *, using: str | None = None) -> None:
        super().__init__(None, config)
        #: The Django database alias the calls run on.
        self.using = using or river_settings().database

    def _run(self, op: Op[Any]) -> Any:
        op = primed(op)  # validation first: bad input touches no connection
        return self._run_on(psycopg_connection(connections[self.using]), op)

    def _run_in_tx(self, op: Op[Any]) -> Any:
        op = primed(op)
        with transaction.atomic(using=self.using):
            return self._run_on(psycopg_connection(connections[self.using]), op)

    def __repr__(self) -> str:
        return f"<DjangoClient using={self.using!r} schema={self.config.schema!r}>"


_clients: dict[str | None, DjangoClient] = {}
_lock = threading.Lock()


def get_client(using: str | None = None) -> DjangoClient:
    """The process's :class:`DjangoClient` (one per alias, made on first use): schema from
    ``RIVER["SCHEMA"]``, and, when ``RIVER["APP"]`` is set, that app's Config (its workers,
    so that inserting a kind no worker handles raises, its ``max_attempts``, insert
    middleware, ...), as ``manage.py river_worker`` runs it. Thread-safe; each thread uses its
    own Django connection."""
    client = _clients.get(using)
    if client is None:
        from river.contrib.django._app import client_config

        with _lock:
            client = _clients.get(using)
            if client is None:
                client = DjangoClient(client_config(), using=using)
                _clients[using] = client
    return client


def clear_clients() -> None:
    """Forget the clients (settings changed)."""
    with _lock:
        _clients.clear()
