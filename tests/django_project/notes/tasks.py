"""django.tasks tasks of the test project (the RiverBackend runs them)."""

from __future__ import annotations

from typing import Any

try:
    from django.tasks import TaskContext, task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import TaskContext, task  # type: ignore[no-redef]

from notes.models import Note


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="tasks", priority=10)
def fail(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def attempt(context: TaskContext) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id}


@task
async def echo(value: Any) -> Any:
    return value


@task
def create_note(text: str) -> int:
    Note.objects.create(text=text)
    return Note.objects.count()


@task
def unstorable() -> set[int]:
    """Returns what JSON cannot hold: failed once, not retried (its effects would repeat)."""
    Note.objects.create(text="side effect")
    return {1, 2}


#: What ``unrecordable`` returns, by name: values JSON holds that River cannot store.
UNRECORDABLE: dict[str, Any] = {
    "set": {1, 2},  # not JSON at all (Django's normalization refuses it)
    "nan": float("nan"),
    "int": 2**64,  # outside int64
    "nul": "a\x00b",  # Postgres' jsonb holds no NUL
}


@task
def unrecordable(what: str) -> Any:
    """Returns a value River cannot store: failed once, not retried (its effects would
    repeat)."""
    Note.objects.create(text=f"unrecordable {what}")
    return UNRECORDABLE[what]
