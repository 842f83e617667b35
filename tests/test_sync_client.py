"""The sync ``Client`` under the conditions web servers put it in: forked workers (gunicorn
``--preload``), middleware that inserts through the client itself, use after ``close()``."""

from __future__ import annotations

import gc
import os
import threading
import warnings
from typing import Any, ClassVar

import psycopg
import pytest

import river
from river import _sync_client


class Note(river.JobArgs):
    kind: ClassVar[str] = "sync_note"
    n: int = 0


class Audit(river.JobArgs):
    kind: ClassVar[str] = "sync_audit"
    of: str = ""


def _backend_pids(client: river.Client) -> set[int]:
    pool = client._get_pool()
    with pool.connection() as conn:
        return {conn.info.backend_pid}


def _alive(db_url: str, pid: int) -> bool:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None


def _count(db_url: str, kind: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM river_job WHERE kind = %s", (kind,)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_forked_child_gets_a_pool_of_its_own_and_leaves_the_parents_alone(db_url: str) -> None:
    # The parent's pool (its sockets, its threads) is the parent's. The child inserts through
    # a pool of its own, then drops what it inherited as a process exiting would: the
    # parent's session must survive (closing an inherited connection sends the server a
    # Terminate on the parent's session) and the parent goes on inserting.
    with river.Client(db_url) as client:
        client.insert(Note(n=0))
        (parent_pid,) = _backend_pids(client)
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a process with threads (the pool's).
            warnings.simplefilter("ignore", DeprecationWarning)
            child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through its exit status
            status = 1
            try:
                for n in range(3):
                    client.insert(Note(n=n + 1))
                client.close()
                getattr(_sync_client, "_inherited", []).clear()
                gc.collect()  # what the child's exit would collect
                status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert _alive(db_url, parent_pid)
        client.insert(Note(n=4))
        assert _backend_pids(client) == {parent_pid}
    assert _count(db_url, "sync_note") == 5


def test_insert_middleware_may_insert_through_the_same_client(db_url: str) -> None:
    # The middleware used to run under the client's notification-limiter lock: inserting
    # through the client from it deadlocked.
    holder: list[river.Client] = []

    class AuditEveryInsert(river.Middleware):
        def insert_many(self, items: list[Any]) -> list[Any]:
            if not any(isinstance(args, Audit) for args, _ in items):
                holder[0].insert(Audit(of=type(items[0][0]).__name__))
            return items

    client = river.Client(db_url, river.Config(middleware=[AuditEveryInsert()]))
    holder.append(client)
    done = threading.Event()

    def insert() -> None:
        client.insert(Note())
        done.set()

    thread = threading.Thread(target=insert, daemon=True)
    thread.start()
    try:
        assert done.wait(20), "the insert deadlocked in its middleware"
    finally:
        client.close()
    assert (_count(db_url, "sync_note"), _count(db_url, "sync_audit")) == (1, 1)


def test_a_closed_client_refuses_instead_of_opening_a_pool_nobody_closes(db_url: str) -> None:
    client = river.Client(db_url)
    client.insert(Note())
    client.close()
    with pytest.raises(river.RiverError, match="closed"):
        client.insert(Note())
    client.close()  # twice is fine
    # A client on the caller's pool never closes it, and stays usable.
    from psycopg_pool import ConnectionPool

    with ConnectionPool(db_url, kwargs={"autocommit": True}, open=True) as pool:
        borrowed = river.Client(pool)
        borrowed.close()
        borrowed.insert(Note())
    assert _count(db_url, "sync_note") == 2
