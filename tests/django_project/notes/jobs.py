"""River workers of the test project: they write notes through Django's ORM."""

from __future__ import annotations

from django.db import connection

import river
from notes.args import CreateNote, CreateNoteAsync
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


workers = river.Workers()
workers.add(CreateNoteWorker())
workers.add(CreateNoteAsyncWorker())
