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
