"""The job args of the test project's river workers (no Django import: tests insert them)."""

from __future__ import annotations

from typing import ClassVar

import river


class CreateNote(river.JobArgs):
    kind: ClassVar[str] = "create_note"
    text: str


class CreateNoteAsync(river.JobArgs):
    kind: ClassVar[str] = "create_note_async"
    text: str


class CreateNoteWrapped(river.JobArgs):
    """Written by an async ``work()`` behind a sync decorator (functools.wraps)."""

    kind: ClassVar[str] = "create_note_wrapped"
    text: str


class CreateNoteHidden(river.JobArgs):
    """Written by an async ``work()`` behind a sync decorator without functools.wraps."""

    kind: ClassVar[str] = "create_note_hidden"
    text: str


class PairedNoteAsync(river.JobArgs):
    """Two async jobs of one ``pair`` run side by side; each notes the backend pid its ORM
    calls used, or -1 if that changed while it ran (``linger``: it outlives the other)."""

    kind: ClassVar[str] = "paired_note_async"
    text: str
    pair: int
    linger: bool = False
