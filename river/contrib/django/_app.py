"""The Config a Django project's workers run with, and the one ``get_client()`` inserts with.

:func:`worker_config` is ``river worker``'s base Config under ``manage.py river_worker``: the
workers of ``RIVER["APP"]`` (loaded as ``river worker APP`` loads it), plus the worker of the
``django.tasks`` backend when ``TASKS`` uses it (or a subclass), every one wrapped for Django's
connection hygiene; the queues of those backends added to the app's; ``RIVER["SCHEMA"]``.

Connection hygiene: Django's connections are per thread, and a worker thread lives for many
jobs, as a thread serving requests does. So, as Django does around each request,
``close_old_connections()`` runs in the worker's thread before and after each job: it closes
a connection older than ``CONN_MAX_AGE`` (0 by default: after every job) or left unusable by an
error. A sync worker (``def work``) runs in one of the client's threads, where the hooks run
too; an async worker's job runs in a thread-sensitive context of its own (as Django's ASGI
handler runs a request), whose thread takes the job's ``sync_to_async`` calls and the hooks.
River's middleware runs on the event loop, not in the worker's thread, hence wrappers around
the workers rather than a middleware.

A connection a positive ``CONN_MAX_AGE`` keeps open after a job lives in its thread's locals.
When the thread ends (an idle worker thread retiring, every one of them when the client's
event loop ends, asgiref's at exit), it is closed there (:class:`_CloseAtThreadExit`): left to
the garbage collector, it went away with a ResourceWarning and without a goodbye to the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
import threading
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any, cast

import anyio
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils.module_loading import import_string

from river._args import Worker, Workers, works_async
from river._config import Config, QueueConfig
from river._types import Job
from river.contrib.django._settings import project_root, river_settings
from river.worker._app import AppError, load_app

__all__ = [
    "TASKS_BACKEND",
    "client_config",
    "river_task_backends",
    "task_queues",
    "worker_config",
]

#: The ``BACKEND`` of ``TASKS`` entries this module looks for (or a subclass of it).
TASKS_BACKEND = "river.contrib.django.tasks.RiverBackend"


class _CloseAtThreadExit:
    """Kept in a thread's locals once a job left a Django connection open there. CPython
    clears a thread's locals in that thread as it ends, which runs ``__del__`` there: the
    connections are closed as their thread would (Django's checks pass), or at the driver's
    level if Django refuses."""

    __slots__ = ("wrappers",)

    def __init__(self) -> None:
        self.wrappers: dict[str, Any] = {}  # alias -> the thread's DatabaseWrapper

    def __del__(self) -> None:
        for wrapper in self.wrappers.values():
            with contextlib.suppress(Exception):
                wrapper.close()
            raw = wrapper.connection
            if raw is not None:
                with contextlib.suppress(Exception):
                    raw.close()


_thread_state = threading.local()


def _after_job() -> None:
    """Django's hygiene after a job (module doc), in the job's thread; a connection kept open
    is closed when the thread ends."""
    close_old_connections()
    kept = [w for w in connections.all(initialized_only=True) if w.connection is not None]
    if kept:
        closer: _CloseAtThreadExit | None = getattr(_thread_state, "closer", None)
        if closer is None:
            closer = _thread_state.closer = _CloseAtThreadExit()
        for wrapper in kept:
            closer.wrappers[wrapper.alias] = wrapper


async def _with_async_hygiene(work: Awaitable[None] | None) -> None:
    """Await an async job's ``work`` with the hygiene sent to its own thread.

    The job runs in a thread-sensitive context of its own, as Django's ASGI handler runs each
    request: its ``sync_to_async`` calls (the ORM's ``a*`` methods too) go to a thread, and so
    a connection, of that job alone. Without it they all went to asgiref's one thread for the
    process: concurrent jobs shared one connection, and one job's cleanup closed it under
    another (a server-side cursor of ``aiterator()`` gone mid-iteration)."""
    async with ThreadSensitiveContext():
        await sync_to_async(close_old_connections)()
        try:
            await cast(Awaitable[None], work)
        finally:
            with anyio.CancelScope(shield=True):  # also after the attempt was cancelled
                await sync_to_async(_after_job)()


class _SyncHygiene(Worker[Any]):
    """A sync worker with Django's connection hygiene around each job (module doc)."""

    def __init__(self, inner: Worker[Any]) -> None:
        self.inner = inner

    def work(self, job: Job[Any]) -> Awaitable[None] | None:
        close_old_connections()
        result: Awaitable[None] | None = None
        try:
            result = self.inner.work(job)
        finally:
            if not inspect.isawaitable(result):
                _after_job()
        if inspect.isawaitable(result):
            # An async work() behind a wrapper that hides it (no functools.wraps): the core
            # awaits what the thread returns, so its hygiene goes with it.
            return _with_async_hygiene(result)
        return None

    def timeout(self, job: Job[Any]) -> float | None:
        return self.inner.timeout(job)

    def next_retry(self, job: Job[Any]) -> datetime | None:
        return self.inner.next_retry(job)


class _AsyncHygiene(_SyncHygiene):
    """An async worker with the hygiene sent to the job's own thread (module doc)."""

    async def work(self, job: Job[Any]) -> None:
        await _with_async_hygiene(self.inner.work(job))


def _hygienic(worker: Worker[Any]) -> Worker[Any]:
    # As the core decides (behind functools.wraps too): an async work() wrapped as sync
    # would have been called in a thread and its coroutine dropped, the job completed.
    base = _AsyncHygiene if works_async(worker) else _SyncHygiene
    # Workers.add reads the args type from the class; the qualname keeps log lines naming the
    # app's worker.
    cls = type(
        type(worker).__name__,
        (base,),
        {"args_type": type(worker).args_type, "__qualname__": type(worker).__qualname__},
    )
    wrapped: Worker[Any] = cls(worker)
    return wrapped


def _is_river_backend(path: Any) -> bool:
    """Whether ``BACKEND`` path names :class:`~river.contrib.django.tasks.RiverBackend` or a
    subclass. Imports the class (as django.tasks does when the backend is first used); called
    once Django is set up, never while settings are read."""
    if path == TASKS_BACKEND:
        return True
    if not isinstance(path, str):
        return False
    try:
        cls = import_string(path)
    except ImportError:
        return False  # django.tasks reports it when the backend is used
    # A subclass was defined after importing RiverBackend's module: not loaded, no subclass
    # (and django.tasks itself, which it needs, is not imported for nothing).
    module = sys.modules.get(TASKS_BACKEND.rpartition(".")[0])
    river_backend = getattr(module, "RiverBackend", None)
    return isinstance(cls, type) and river_backend is not None and issubclass(cls, river_backend)


def river_task_backends() -> dict[str, Mapping[str, Any]]:
    """The ``TASKS`` entries (alias: params) whose backend is river's (or a subclass)."""
    tasks: Any = getattr(settings, "TASKS", None) or {}
    if not isinstance(tasks, Mapping):
        return {}
    return {
        str(alias): params
        for alias, params in tasks.items()
        if isinstance(params, Mapping) and _is_river_backend(params.get("BACKEND"))
    }


def task_queues(*, strict: bool = True) -> list[str]:
    """The queues of the ``TASKS`` backends that are river's (empty when there is none).
    Raises :class:`river.worker.AppError` for an empty ``QUEUES`` (any queue name would be
    accepted, and no worker would work them); ``strict=False``: counted as ``["default"]``."""
    queues: set[str] = set()
    for alias, params in river_task_backends().items():
        listed = params.get("QUEUES", ["default"]) or ([] if strict else ["default"])
        if not listed:
            raise AppError(
                f"TASKS[{alias!r}]['QUEUES'] is empty: django.tasks then accepts any "
                "queue_name, but river's worker works only the queues listed: list them"
            )
        queues.update(str(q) for q in listed)
    return sorted(queues)


def _app_config(spec: str | None) -> Config:
    if spec is None:
        return Config()
    try:
        return load_app(spec, project_root())
    except AppError as exc:
        if "no workers are registered" in str(exc):
            # RIVER["APP"] may be a Config without workers when the tasks backend brings one.
            return Config()
        raise


def worker_config(app: str | None = None, *, strict: bool = True) -> Config:
    """The base Config of ``manage.py river_worker`` (module doc). ``app`` overrides
    ``RIVER["APP"]``. Raises :class:`river.worker.AppError` when there is nothing to work, or
    (``strict``) for an empty ``QUEUES`` of river's tasks backend."""
    river = river_settings()
    spec = app or river.app
    base = _app_config(spec) if spec is not None else Config()
    workers = Workers()
    for kind in base.workers or ():
        registered = base.workers.get(kind) if base.workers is not None else None
        assert registered is not None
        workers.add(_hygienic(registered.worker))
    queues = task_queues(strict=strict)
    if queues:
        from river.contrib.django.tasks import TASK_KIND, DjangoTaskWorker

        if TASK_KIND in workers:
            raise AppError(f"APP {spec!r} registers kind {TASK_KIND!r}, which django.tasks uses")
        workers.add(_hygienic(DjangoTaskWorker()))
    if len(workers) == 0:
        raise AppError(
            "no workers: set RIVER['APP'] to a module:attribute naming a river.Workers, a "
            f"river.Config or a factory, or use {TASKS_BACKEND} in TASKS (docs/django.md)"
        )
    if base.schema is not None and river.schema is not None and base.schema != river.schema:
        raise AppError(
            f"APP {spec!r} works in schema {base.schema!r} but RIVER['SCHEMA'] is "
            f"{river.schema!r}: set one of them"
        )
    return dataclasses.replace(
        base,
        workers=workers,
        schema=base.schema or river.schema,
        queues={**{q: QueueConfig() for q in queues}, **base.queues},
    )


def client_config() -> Config:
    """The Config of :func:`river.contrib.django.get_client`: ``RIVER["APP"]``'s with the
    tasks backend's worker (so that unknown kinds are refused as the worker would), else one
    with no workers (no kind is refused)."""
    river = river_settings()
    if river.app is None:
        return Config(schema=river.schema)
    # Not strict: an empty QUEUES fails the tasks backend's enqueue (and manage.py check), not
    # every insert of the project's own jobs.
    return dataclasses.replace(worker_config(strict=False), queues={})
