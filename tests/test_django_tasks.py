"""``river.contrib.django.tasks.RiverBackend``: ``django.tasks`` (the ``django-tasks`` backport on
Django 5.2) enqueueing river jobs in Django's transaction, ``manage.py river_worker`` running
them, ``get_result`` reading them back."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import timedelta
from functools import partial

import pytest
from django_project.harness import django_on, project_env, running_manage
from worker_apps.harness import query, wait_until


@pytest.fixture
def django_db(db_url: str) -> Iterator[str]:
    with django_on(db_url):
        yield db_url


def _jobs(db_url: str) -> list[tuple[int, str, str, int, str, dict[str, object]]]:
    rows = query(
        db_url,
        "SELECT id, kind, queue, priority, state::text, args FROM river_job ORDER BY id",
    )
    return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


def test_enqueue_joins_djangos_transaction(django_db: str) -> None:
    from django.db import transaction
    from notes import tasks

    from river.contrib.django.tasks import task_enqueued

    def view() -> None:
        with transaction.atomic():
            tasks.add.enqueue(1, 2)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        view()
    assert _jobs(django_db) == []
    sent: list[object] = []

    def receiver(sender: type, task_result: object, **kwargs: object) -> None:
        sent.append(task_result)

    task_enqueued.connect(receiver)
    try:
        with transaction.atomic():
            result = tasks.add.enqueue(1, 2)
            assert _jobs(django_db) == []  # not committed yet
    finally:
        task_enqueued.disconnect(receiver)
    assert sent == [result]  # django.tasks' signal, as its own backends send it
    ((job_id, kind, queue, priority, state, args),) = _jobs(django_db)
    assert (str(job_id), kind, queue, priority, state) == (
        result.id,
        "django_task",
        "default",
        2,
        "available",
    )
    assert args == {
        "task": "notes.tasks.add",
        "args": [1, 2],
        "kwargs": {},
        "backend": "default",
        "priority": 0,
    }
    assert result.status == "READY"
    assert result.enqueued_at is not None
    assert result.args == [1, 2]


def test_enqueue_outside_atomic_and_on_commit(django_db: str) -> None:
    from django.db import transaction
    from notes import tasks

    tasks.add.enqueue(1, 1)
    assert len(_jobs(django_db)) == 1
    with transaction.atomic():
        transaction.on_commit(partial(tasks.add.enqueue, 2, 2))
        assert len(_jobs(django_db)) == 1
    assert len(_jobs(django_db)) == 2


def test_priority_queue_and_run_after_map_to_river(django_db: str) -> None:
    from django.utils import timezone
    from notes import tasks

    later = timezone.now() + timedelta(hours=1)
    results = [
        tasks.fail.enqueue("x"),  # queue_name="tasks", priority=10
        tasks.add.using(priority=-10).enqueue(1, 2),
        tasks.add.using(priority=-100).enqueue(1, 2),
        tasks.add.using(run_after=later).enqueue(1, 2),
    ]
    jobs = _jobs(django_db)
    assert [(j[2], j[3], j[4]) for j in jobs] == [
        ("tasks", 1, "available"),
        ("default", 3, "available"),
        ("default", 4, "available"),
        ("default", 2, "scheduled"),
    ]
    (scheduled_at,) = query(
        django_db, "SELECT scheduled_at FROM river_job WHERE id = %s", [jobs[3][0]]
    )[0]
    assert abs((scheduled_at - later).total_seconds()) < 0.001
    again = tasks.add.get_result(results[2].id)
    assert (again.status, again.task.priority, again.task.queue_name) == ("READY", -100, "default")
    assert tasks.fail.get_result(results[0].id).task.queue_name == "tasks"


def test_get_result_of_what_is_not_a_task(django_db: str) -> None:
    from notes import tasks
    from notes.args import CreateNote

    from river.contrib.django import get_client
    from river.contrib.django.tasks import TaskResultDoesNotExist

    other = get_client().insert(CreateNote(text="x")).job.id
    for result_id in ("123456", "not-a-number", str(other)):
        with pytest.raises(TaskResultDoesNotExist):
            tasks.add.get_result(result_id)


def test_arguments_must_be_json(django_db: str) -> None:
    from notes import tasks

    with pytest.raises(TypeError, match="Unsupported type"):
        tasks.add.enqueue(object(), 1)
    assert _jobs(django_db) == []


def test_backend_options_are_checked(django_db: str) -> None:
    from river._errors import RiverError
    from river.contrib.django.tasks import RiverBackend

    with pytest.raises(RiverError, match=r"unknown key\(s\) RETRIES"):
        RiverBackend("x", {"OPTIONS": {"RETRIES": 1}})
    with pytest.raises(RiverError, match="MAX_ATTEMPTS'] must be a positive integer"):
        RiverBackend("x", {"OPTIONS": {"MAX_ATTEMPTS": 0}})
    assert RiverBackend("x", {}).check() == []


def test_tasks_run_in_river_worker_and_results_come_back(db_url: str) -> None:
    with django_on(db_url):
        from notes import tasks

        results = {
            "add": tasks.add.enqueue(2, 3),
            "fail": tasks.fail.enqueue("boom"),
            "attempt": tasks.attempt.enqueue(),
            "echo": tasks.echo.enqueue({"x": [1, 2]}),
            "note": tasks.create_note.enqueue("from a task"),
            "unstorable": tasks.unstorable.enqueue(),
        }
    env = project_env(db_url)
    with running_manage(["river_worker"], env) as worker:
        worker.wait_for("worker started")
        wait_until(
            lambda: {j[4] for j in _jobs(db_url)} <= {"completed", "discarded", "cancelled"},
            message=worker.output,
        )
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()
    with django_on(db_url):
        for result in results.values():
            result.refresh()
        add, fail, attempt, echo, note, unstorable = results.values()
        assert (add.status, add.return_value, add.attempts) == ("SUCCESSFUL", 5, 1)
        assert add.finished_at is not None
        assert add.started_at is not None
        assert fail.status == "FAILED"
        (error,) = fail.errors
        assert error.exception_class_path == "builtins.ValueError"
        assert error.exception_class is ValueError
        assert "ValueError: boom" in error.traceback
        assert attempt.return_value == {"attempt": 1, "id": attempt.id}
        assert echo.return_value == {"x": [1, 2]}  # an async task
        assert note.return_value in (1, 2)  # the notes so far (unstorable makes one too)
        assert tasks.create_note.get_result(note.id).status == "SUCCESSFUL"
        assert (unstorable.status, unstorable.attempts) == ("FAILED", 1)
        assert "cannot be stored as JSON" in unstorable.errors[-1].traceback
    # The task that returned a set ran once: its side effect is not repeated.
    assert sorted(query(db_url, "SELECT text FROM notes_note")) == [
        ("from a task",),
        ("side effect",),
    ]
