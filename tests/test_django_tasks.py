"""``river.contrib.django.tasks.RiverBackend``: ``django.tasks`` (the ``django-tasks`` backport on
Django 5.2) enqueueing river jobs in Django's transaction, ``manage.py river_worker`` running
them, ``get_result`` reading them back."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

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
    # They were raised by the backend's constructor, which Django's own check of the task
    # backends calls: `manage.py check` failed on a traceback instead of listing them.
    from django.core.exceptions import ImproperlyConfigured
    from notes import tasks

    from river.contrib.django.tasks import RiverBackend

    unknown = RiverBackend("x", {"OPTIONS": {"RETRIES": 1, "MAX_ATTEMPTS": 0}})
    assert [(e.id, e.msg) for e in unknown.check()] == [
        ("river.E005", "TASKS['x']['OPTIONS']: unknown key(s) RETRIES; known: MAX_ATTEMPTS"),
        (
            "river.E005",
            "TASKS['x']['OPTIONS']['MAX_ATTEMPTS'] must be an integer from 1 to 32767 "
            "(river_job.max_attempts is a smallint), not 0",
        ),
    ]
    with pytest.raises(ImproperlyConfigured, match=r"unknown key\(s\) RETRIES"):
        unknown.enqueue(tasks.add, [1, 2], {})
    with pytest.raises(ImproperlyConfigured, match="MAX_ATTEMPTS'] must be an integer from 1"):
        unknown.get_result("1")
    assert _jobs(django_db) == []
    assert RiverBackend("x", {}).check() == []
    assert RiverBackend("x", {"OPTIONS": {"MAX_ATTEMPTS": 3}}).max_attempts == 3
    # Accepted before, then refused at every enqueue (and the worker would not start).
    for params, field in [
        ({"QUEUES": ["default", "Emails"]}, "TASKS['x']['QUEUES']"),
        ({"OPTIONS": {"MAX_ATTEMPTS": 40_000}}, "MAX_ATTEMPTS"),
        ({"OPTIONS": None}, "must be a dict"),  # crashed the constructor (manage.py check)
    ]:
        (error,) = RiverBackend("x", params).check()
        assert error.id == "river.E005"
        assert field in error.msg, error.msg


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
        assert unstorable.errors[-1].exception_class_path == "builtins.TypeError"
    # The task that returned a set ran once: its side effect is not repeated.
    assert sorted(query(db_url, "SELECT text FROM notes_note")) == [
        ("from a task",),
        ("side effect",),
    ]


def _work(db_url: str, task_path: str, *args: object, max_attempts: int = 5) -> Any:
    """Work one django_task job of ``task_path`` with the worker manage.py river_worker runs
    (river.testing.work_job: the real executor), allowed ``max_attempts``."""
    import psycopg

    from river import InsertOpts
    from river.contrib.django._app import worker_config
    from river.contrib.django.tasks import DjangoTaskArgs
    from river.testing import work_job

    registered = worker_config().workers.get("django_task")
    assert registered is not None
    with psycopg.connect(db_url, autocommit=True) as conn:
        return work_job(
            conn,
            registered.worker,
            DjangoTaskArgs(task=task_path, args=list(args)),
            InsertOpts(max_attempts=max_attempts),
        )


@pytest.mark.parametrize(
    ("what", "exception_class"),
    [
        ("set", "builtins.TypeError"),
        ("nan", "river.ValidationError"),
        ("int", "river.ValidationError"),
        ("nul", "river.ValidationError"),
    ],
)
def test_a_return_value_river_cannot_store_fails_the_task_once(
    django_db: str, what: str, exception_class: str
) -> None:
    # Django's JSON normalization accepts NaN, 2**64 and NUL; river's record_output refuses
    # them. Either way the task ran: it is failed once (cancelled), not run again.
    from notes import tasks

    from river import JobState
    from river.contrib.django.tasks import task_finished

    finished: list[Any] = []

    def receiver(sender: type, task_result: Any, **kwargs: object) -> None:
        finished.append(task_result)

    task_finished.connect(receiver)
    try:
        result = _work(django_db, "notes.tasks.unrecordable", what)
    finally:
        task_finished.disconnect(receiver)
    assert result.state == JobState.CANCELLED
    assert "cannot be stored as JSON" in result.job.errors[-1].error
    (sent,) = finished
    assert sent.status == "FAILED"
    assert [e.exception_class_path for e in sent.errors] == [exception_class]
    stored = tasks.unrecordable.get_result(str(result.job.id))
    assert stored.status == "FAILED"
    assert [e.exception_class_path for e in stored.errors] == [exception_class]
    # Django resolves the path back to the class (river exports it under that name).
    assert stored.errors[0].exception_class.__name__ == exception_class.rpartition(".")[2]
    assert query(django_db, "SELECT text FROM notes_note") == [(f"unrecordable {what}",)]


def test_a_failing_signal_receiver_never_runs_a_task_again(
    django_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A task_started or task_finished receiver that raises (a metrics hook, say): after the
    task ran, its error failed the attempt and river ran the task again, up to MAX_ATTEMPTS
    times. It is logged; the task runs once and succeeds."""
    import logging

    from river import JobState
    from river.contrib.django.tasks import task_finished, task_started

    def broken(sender: type, task_result: Any, **kwargs: object) -> None:
        raise RuntimeError("metrics backend down")

    task_started.connect(broken)
    task_finished.connect(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="river.django"):
            result = _work(django_db, "notes.tasks.create_note", "once", max_attempts=3)
    finally:
        task_started.disconnect(broken)
        task_finished.disconnect(broken)
    assert result.state == JobState.COMPLETED
    assert query(django_db, "SELECT text FROM notes_note") == [("once",)]
    said = [r.getMessage() for r in caplog.records if r.name == "river.django"]
    assert len(said) == 2, said
    assert "task_started" in said[0]
    assert "task_finished" in said[1]


def test_a_result_keeps_the_backend_it_was_enqueued_with(django_db: str) -> None:
    """A task enqueued with using(backend=...) came back with its decorator's backend: the
    result refreshed through that other backend."""
    import importlib

    from django.test import override_settings
    from notes import tasks

    from river.contrib.django import tasks as river_tasks

    # django.tasks (Django 6) or the django_tasks backport (5.2), as the backend uses.
    package = river_tasks.BaseTaskBackend.__module__.partition(".backends")[0]
    task_backends = importlib.import_module(package).task_backends
    with override_settings(
        TASKS={
            "default": {"BACKEND": f"{package}.backends.immediate.ImmediateBackend"},
            "river": {
                "BACKEND": "river.contrib.django.tasks.RiverBackend",
                "QUEUES": ["default", "tasks"],
            },
        }
    ):
        result = tasks.add.using(backend="river").enqueue(1, 2)
        again = task_backends["river"].get_result(result.id)
        assert again.task.backend == "river"
        again.refresh()  # through the river backend: no error
        assert again.status == "READY"


@pytest.mark.parametrize(
    ("task_path", "cause"),
    [
        ("notes.tasks.removed", 'does not define a "removed" attribute'),
        ("notes.gone.task", "No module named 'notes.gone'"),
        ("notes.moved_tasks.orphan", "Queue 'added_in_a_later_release' is not valid"),
        ("notes.models.Note", "is not a django.tasks Task"),
    ],
)
def test_a_task_the_worker_cannot_load_is_retried(
    django_db: str, task_path: str, cause: str
) -> None:
    # The code may arrive (a rolling deploy): retried with river's backoff, as a job of a kind
    # no worker knows is, not cancelled at its first attempt.
    from notes import tasks

    from river import JobState

    result = _work(django_db, task_path)
    # Retried (a first retry, due within seconds, goes straight back to available).
    assert result.state in (JobState.RETRYABLE, JobState.AVAILABLE)
    (error,) = result.job.errors
    assert f"django task {task_path!r} cannot be loaded here" in error.error
    assert cause in error.error
    # get_result cannot build the result's task either: TaskResultDoesNotExist, saying why.
    from river.contrib.django.tasks import TaskResultDoesNotExist

    with pytest.raises(TaskResultDoesNotExist, match=f"{result.job.id}: django task"):
        tasks.add.get_backend().get_result(str(result.job.id))


def test_empty_queues_are_refused(django_db: str) -> None:
    # django.tasks accepts any queue_name with QUEUES = [], but river's worker works the
    # queues listed: a task of another queue would never run.
    from django.core.checks import run_checks
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings
    from notes import tasks

    from river.contrib.django._app import worker_config
    from river.worker import AppError

    backend = "river.contrib.django.tasks.RiverBackend"
    with override_settings(TASKS={"default": {"BACKEND": backend, "QUEUES": []}}):
        errors = [e for e in run_checks() if e.id.startswith("river.")]
        assert [e.id for e in errors] == ["river.E003"]  # once
        assert "TASKS['default']['QUEUES'] is empty" in errors[0].msg
        with pytest.raises(ImproperlyConfigured, match="QUEUES'] is empty"):
            tasks.add.using(queue_name="anything").enqueue(1, 2)
        with pytest.raises(AppError, match="QUEUES'] is empty"):
            worker_config()
    assert _jobs(django_db) == []


def test_a_subclass_of_river_backend_is_worked(django_db: str) -> None:
    from django.test import override_settings

    from river.contrib.django._app import worker_config

    params = {"BACKEND": "notes.backends.ProjectBackend", "QUEUES": ["default", "mail"]}
    with override_settings(TASKS={"default": params}):
        config = worker_config()
    assert config.workers is not None
    assert "django_task" in config.workers
    assert {"default", "mail"} <= set(config.queues)


def test_results_are_naive_without_use_tz(django_db: str) -> None:
    # As Django's own backends give them: naive, in the current time zone.
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from django.db import connections
    from django.test import override_settings
    from django.utils import timezone
    from notes import tasks

    with override_settings(USE_TZ=False, TIME_ZONE="America/Chicago"):
        connections.close_all()
        try:
            result = tasks.add.enqueue(1, 2)
            again = tasks.add.get_result(result.id)
            now = timezone.now()
        finally:
            connections.close_all()
    for enqueued_at in (result.enqueued_at, again.enqueued_at):
        assert enqueued_at is not None
        assert enqueued_at.tzinfo is None
        assert timedelta(0) <= now - enqueued_at < timedelta(minutes=1)
    chicago = datetime.now(ZoneInfo("America/Chicago")).replace(tzinfo=None)
    assert abs(chicago - again.enqueued_at) < timedelta(minutes=1)
