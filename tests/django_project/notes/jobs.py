"""River workers of the test project: they write notes through Django's ORM."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection

import river
from notes.args import (
    CreateNote,
    CreateNoteAsync,
    CreateNoteHidden,
    CreateNoteWrapped,
    PairedNoteAsync,
)
from notes.models import Note


def _backend_pid() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


class CreateNoteWorker(river.Worker[CreateNote]):
    def work(self, job: river.Job[CreateNote]) -> None:  # sync: runs in a thread
        Note.objects.create(text=job.args.text, backend_pid=_backend_pid())


class CreateNoteAsyncWorker(river.Worker[CreateNoteAsync]):
    async def work(self, job: river.Job[CreateNoteAsync]) -> None:
        await Note.objects.acreate(text=job.args.text)


def _logged(work: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A sync decorator around an async work(), as logging or tracing wrappers are."""

    @functools.wraps(work)
    def wrapper(self: Any, job: Any) -> Awaitable[None]:
        return work(self, job)

    return wrapper


def _hiding(work: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """The same without functools.wraps: nothing shows that work() is async."""

    def wrapper(self: Any, job: Any) -> Awaitable[None]:
        return work(self, job)

    return wrapper


class CreateNoteWrappedWorker(river.Worker[CreateNoteWrapped]):
    @_logged
    async def work(self, job: river.Job[CreateNoteWrapped]) -> None:
        await Note.objects.acreate(text=job.args.text)


class CreateNoteHiddenWorker(river.Worker[CreateNoteHidden]):
    @_hiding
    async def work(self, job: river.Job[CreateNoteHidden]) -> None:
        await Note.objects.acreate(text=job.args.text)


#: Per pair: the jobs arrived, and the event set when both have.
_both_arrived: dict[int, tuple[list[int], asyncio.Event]] = {}


class PairedNoteAsyncWorker(river.Worker[PairedNoteAsync]):
    async def work(self, job: river.Job[PairedNoteAsync]) -> None:
        both = _both_arrived.setdefault(job.args.pair, ([], asyncio.Event()))
        both[0].append(job.id)
        if len(both[0]) == 2:
            both[1].set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(both[1].wait(), 10)
        pid = await sync_to_async(_backend_pid)()
        # The other job ends meanwhile (and cleans up after itself).
        await asyncio.sleep(0.5 if job.args.linger else 0)
        same = await sync_to_async(_backend_pid)() == pid
        await Note.objects.acreate(text=job.args.text, backend_pid=pid if same else -1)


workers = river.Workers()
workers.add(CreateNoteWorker())
workers.add(CreateNoteAsyncWorker())
workers.add(CreateNoteWrappedWorker())
workers.add(CreateNoteHiddenWorker())
workers.add(PairedNoteAsyncWorker())
