"""A task module a worker cannot import: its task names a queue the test project's TASKS does
not list (``InvalidTask`` at import), as when web processes run newer code than workers."""

from __future__ import annotations

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task  # type: ignore[no-redef]


@task(queue_name="added_in_a_later_release")
def orphan() -> None:
    pass
