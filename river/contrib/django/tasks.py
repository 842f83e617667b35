"""A ``django.tasks`` backend on River: transactional enqueue, ``manage.py river_worker`` runs.

::

    TASKS = {
        "default": {
            "BACKEND": "river.contrib.django.tasks.RiverBackend",
            "QUEUES": ["default", "emails"],  # river queues the worker works (not empty)
            "OPTIONS": {"MAX_ATTEMPTS": 3},  # optional; else the client's max_attempts
        }
    }

Django 6 ships ``django.tasks``; on Django 5.2 the ``django-tasks`` package is its backport
(``pip install django-tasks``), and this module uses whichever is there (``django.tasks``
first).

Each enqueued task is a river job of kind ``django_task`` (:class:`DjangoTaskArgs`: the task's
import path, its JSON args and kwargs, the backend alias and Django's priority), inserted on
Django's connection to ``RIVER["DATABASE"]``: inside ``atomic()`` the job exists only if the
transaction commits, so there is no need for ``transaction.on_commit`` (which still works: the
job is then inserted after the commit). The result id is the job id. Mapping:

- ``queue_name`` is the river queue; ``run_after`` is ``scheduled_at`` (a naive datetime, with
  ``USE_TZ = False``, is in the current time zone);
- ``priority`` (-100 to 100, higher first) maps to river's 1 (first) to 4: above 0 -> 1,
  0 (the default) -> 2, -1 to -50 -> 3, below -50 -> 4; the result keeps Django's value;
- states: available, scheduled, pending, retryable -> ``READY``; running -> ``RUNNING``;
  completed -> ``SUCCESSFUL``; cancelled, discarded -> ``FAILED``;
- the return value (normalized to JSON as Django does) is the job's recorded output
  (metadata ``output``); each failed attempt is a ``TaskError`` with river's traceback and the
  exception's class (kept in metadata ``django_task_exceptions``);
- ``worker_ids`` are river's ``attempted_by`` (client ids), so ``attempts`` counts attempts;
- a result's times are aware, or naive in the current time zone with ``USE_TZ = False``.

A failing task is retried with river's backoff up to ``OPTIONS["MAX_ATTEMPTS"]`` attempts
(when unset, the inserting client's ``max_attempts``: 25, or the ``RIVER["APP"]`` Config's):
``READY`` in between, ``FAILED`` once discarded. So is a task the worker cannot load
(:class:`TaskUnavailableError`: removed, or not yet deployed to the worker). A return value
that cannot be stored (Django's JSON normalization, then river's ``record_output`` rules)
fails the task once, without a retry: it ran, and running it again would repeat its effects.

``QUEUES: []`` (Django: any queue name) is refused (``river.E003``, ``enqueue``, the worker):
the worker works the queues listed.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

import pydantic
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string
from pydantic import Field

from river._args import JobArgs, Worker
from river._errors import JobCancel, JobNotFoundError, RiverError
from river._executor import current_job, record_output, set_metadata
from river._names import validate_queue_name
from river._types import InsertOpts, Job, JobRow, JobState

if TYPE_CHECKING:
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django.tasks.exceptions import InvalidTask as InvalidTaskError
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
else:
    try:  # Django 6 and later
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
        from django.tasks.exceptions import InvalidTask as InvalidTaskError
        from django.tasks.exceptions import TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started
        from django.utils.json import normalize_json
    except ImportError:
        try:  # Django 5.2 with the django-tasks backport
            from django_tasks.backends.base import BaseTaskBackend
            from django_tasks.base import (
                Task,
                TaskContext,
                TaskError,
                TaskResult,
                TaskResultStatus,
            )
            from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
            from django_tasks.signals import task_enqueued, task_finished, task_started
            from django_tasks.utils import normalize_json
        except ImportError as exc:
            raise ImportError(
                "river.contrib.django.tasks needs django.tasks: Django 6 or later, or on "
                "Django 5.2 the django-tasks backport (pip install django-tasks)"
            ) from exc

__all__ = [
    "TASK_KIND",
    "DjangoTaskArgs",
    "DjangoTaskWorker",
    "RiverBackend",
    "TaskUnavailableError",
    "river_priority",
]

logger = logging.getLogger("river.django")

#: The signals' names, for log lines.
_SIGNAL_NAMES = {
    task_enqueued: "task_enqueued",
    task_started: "task_started",
    task_finished: "task_finished",
}

#: The job kind of every task.
TASK_KIND = "django_task"
#: Metadata key: the exception class of each failed attempt, by attempt number.
_EXCEPTIONS_KEY = "django_task_exceptions"

_STATUS = {
    JobState.AVAILABLE: TaskResultStatus.READY,
    JobState.SCHEDULED: TaskResultStatus.READY,
    JobState.PENDING: TaskResultStatus.READY,
    JobState.RETRYABLE: TaskResultStatus.READY,
    JobState.RUNNING: TaskResultStatus.RUNNING,
    JobState.COMPLETED: TaskResultStatus.SUCCESSFUL,
    JobState.CANCELLED: TaskResultStatus.FAILED,
    JobState.DISCARDED: TaskResultStatus.FAILED,
}


# The ignore: pydantic's mypy plugin gives a model that ignores extra fields an
# ``__init__(..., **kwargs)``, which clashes with the field named ``kwargs``.
class DjangoTaskArgs(JobArgs):  # type: ignore[no-redef]
    """The args of a ``django_task`` job."""

    kind: ClassVar[str] = TASK_KIND
    #: Import path of the ``Task`` (the module attribute the ``@task`` decorator made).
    task: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: The ``TASKS`` alias the task was enqueued with.
    backend: str = "default"
    #: Django's priority (-100 to 100); the job's river priority is mapped from it.
    priority: int = 0


def river_priority(priority: int) -> int:
    """River's priority (1 first, 4 last) for Django's (-100 to 100, higher first)."""
    if priority > 0:
        return 1
    if priority == 0:
        return 2
    return 3 if priority >= -50 else 4


def _exception_path(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


class TaskUnavailableError(RiverError):
    """The task of a job cannot be loaded in this process: its import path does not resolve
    (the task was removed or renamed, or this process runs older code than the one that
    enqueued it), names something that is not a ``Task``, or importing it raised
    ``InvalidTask`` (the task is not valid for this process's ``TASKS``)."""

    def __init__(self, path: str, cause: BaseException) -> None:
        self.path = path
        super().__init__(
            f"django task {path!r} cannot be loaded here: {type(cause).__name__}: {cause}"
        )


def _load_task(path: str) -> Task[..., Any]:
    """The ``Task`` at ``path``; :class:`TaskUnavailableError` when it cannot be loaded."""
    try:
        obj = import_string(path)
    except (ImportError, InvalidTaskError) as exc:
        raise TaskUnavailableError(path, exc) from exc
    if not isinstance(obj, Task):
        raise TaskUnavailableError(
            path, TypeError(f"{path} is not a django.tasks Task (decorate it with @task)")
        )
    return obj


def _local_time(value: datetime | None) -> datetime | None:
    """``value`` (aware, from river) as Django's own backends give it: naive in the current
    time zone when ``USE_TZ = False``."""
    if value is None or settings.USE_TZ or timezone.is_naive(value):
        return value
    return timezone.make_naive(value)


def _result(
    row: JobRow, args: DjangoTaskArgs, task: Task[..., Any], status: Any = None
) -> TaskResult[..., Any]:
    """The TaskResult of job ``row`` (``status``: instead of the row's)."""
    exceptions = row.metadata.get(_EXCEPTIONS_KEY)
    exceptions = exceptions if isinstance(exceptions, Mapping) else {}
    errors = [
        TaskError(
            exception_class_path=str(exceptions.get(str(e.attempt), "builtins.Exception")),
            traceback=e.trace or e.error,
        )
        for e in row.errors
    ]
    result: TaskResult[..., Any] = TaskResult(
        task=task,
        id=str(row.id),
        status=status if status is not None else _STATUS[row.state],
        enqueued_at=_local_time(row.created_at),
        started_at=_local_time(row.attempted_at),
        finished_at=_local_time(row.finalized_at),
        last_attempted_at=_local_time(row.attempted_at),
        args=args.args,
        kwargs=args.kwargs,
        backend=args.backend,
        errors=errors,
        worker_ids=list(row.attempted_by),
    )
    if row.state == JobState.COMPLETED:
        object.__setattr__(result, "_return_value", row.metadata.get("output"))
    return result


def _task_as_enqueued(task: Task[..., Any], args: DjangoTaskArgs, queue: str) -> Task[..., Any]:
    # The task object of a result, and of its run, with the backend, priority and queue it
    # was enqueued with (when they are still valid; else the task as its module defines it
    # now). Without the backend, a task enqueued with using(backend=...) came back with the
    # decorator's: its result refreshed through that other backend, and its queue was
    # checked against that backend's queues.
    if task.priority == args.priority and task.queue_name == queue and task.backend == args.backend:
        return task
    try:
        return task.using(priority=args.priority, queue_name=queue, backend=args.backend)
    except Exception:  # InvalidTaskError, or a backend alias no longer in TASKS
        return task


class RiverBackend(BaseTaskBackend):
    """The ``django.tasks`` backend of river-queue (module doc). ``OPTIONS``:
    ``MAX_ATTEMPTS`` (attempts before a failing task is discarded; river's default 25)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        #: What is wrong with ``OPTIONS``: reported by :meth:`check` (``river.E005``, so that
        #: ``manage.py check`` lists it with the rest instead of failing on a traceback) and
        #: raised by ``enqueue`` and ``get_result`` (ImproperlyConfigured).
        self.options_problems: list[str] = []
        options: Mapping[str, Any] = self.options if isinstance(self.options, Mapping) else {}
        if not isinstance(self.options, Mapping):
            # ("OPTIONS": None crashed here, and with it manage.py check.)
            self.options_problems.append(
                f"TASKS[{alias!r}]['OPTIONS'] must be a dict, not {self.options!r}"
            )
        unknown = sorted(str(key) for key in set(options) - {"MAX_ATTEMPTS"})
        if unknown:
            self.options_problems.append(
                f"TASKS[{alias!r}]['OPTIONS']: unknown key(s) {', '.join(unknown)}; known: "
                "MAX_ATTEMPTS"
            )
        max_attempts = options.get("MAX_ATTEMPTS")
        if max_attempts is not None and (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, int)
            or not 1 <= max_attempts <= 32_767
        ):
            self.options_problems.append(
                f"TASKS[{alias!r}]['OPTIONS']['MAX_ATTEMPTS'] must be an integer from 1 to "
                f"32767 (river_job.max_attempts is a smallint), not {max_attempts!r}"
            )
            max_attempts = None
        for queue in sorted(str(q) for q in self.queues):
            # River's rule for a queue name: a bad one was accepted here, then refused at every
            # enqueue, and by the worker (and every get_client() with RIVER["APP"]) at start.
            try:
                validate_queue_name(queue, f"TASKS[{alias!r}]['QUEUES']")
            except RiverError as exc:
                self.options_problems.append(str(exc))
        self.max_attempts: int | None = max_attempts
        #: ``QUEUES: []``: django.tasks would accept any queue name, but river's worker works
        #: the queues listed (``manage.py river_worker``): refused (:meth:`check`, enqueue).
        self.queues_empty = "QUEUES" in params and not params["QUEUES"]

    def _refuse_if_misconfigured(self, *, queues: bool = True) -> None:
        """ImproperlyConfigured for invalid ``OPTIONS``, and (``queues``) an empty ``QUEUES``:
        what :meth:`check` reports."""
        if self.options_problems:
            raise ImproperlyConfigured("; ".join(self.options_problems))
        if queues and self.queues_empty:
            raise ImproperlyConfigured(self._queues_empty_message())

    def _queues_empty_message(self) -> str:
        return (
            f"TASKS[{self.alias!r}]['QUEUES'] is empty: django.tasks then accepts any "
            "queue_name, but river's worker (manage.py river_worker) works only the queues "
            "listed, so tasks of other queues would never run"
        )

    def enqueue(
        self, task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[Any, Any]:
        """Insert the task's job on Django's connection (in its transaction, if any)."""
        from river.contrib.django._client import get_client

        self._refuse_if_misconfigured()
        self.validate_task(task)
        # Django's own JSON normalization (TypeError for what JSON cannot hold), before SQL.
        args = cast(list[Any], normalize_json(list(args)))
        kwargs = cast(dict[str, Any], normalize_json(dict(kwargs)))
        run_after = task.run_after
        if run_after is not None and timezone.is_naive(run_after):
            run_after = timezone.make_aware(run_after)
        job_args = DjangoTaskArgs(
            task=task.module_path,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            priority=task.priority,
        )
        opts = InsertOpts(
            queue=task.queue_name,
            priority=river_priority(task.priority),
            scheduled_at=run_after,
            max_attempts=self.max_attempts,
        )
        row = get_client().insert(job_args, opts).job
        result = _result(row, job_args, task)
        _send(task_enqueued, type(self), result)
        return result

    def get_result(self, result_id: str) -> TaskResult[Any, Any]:
        """The result of a task by id (its job's id), read from river_job on Django's
        connection. ``TaskResultDoesNotExist`` for an unknown id, another kind of job, or a
        task this process cannot load (:class:`TaskUnavailableError` as its cause)."""
        from river.contrib.django._client import get_client

        self._refuse_if_misconfigured(queues=False)  # results of any queue can be read
        try:
            job_id = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        try:
            row = get_client().job_get(job_id)
        except JobNotFoundError:
            raise TaskResultDoesNotExist(result_id) from None
        if row.kind != TASK_KIND:
            raise TaskResultDoesNotExist(result_id)
        try:
            args = DjangoTaskArgs.model_validate_json(row.encoded_args)
        except pydantic.ValidationError as exc:
            raise TaskResultDoesNotExist(
                f"{result_id}: the job's args are not a django task's: {exc}"
            ) from exc
        try:
            task = _load_task(args.task)
        except TaskUnavailableError as exc:
            raise TaskResultDoesNotExist(f"{result_id}: {exc}") from exc
        return _result(row, args, _task_as_enqueued(task, args, row.queue))

    def check(self, **kwargs: Any) -> list[Any]:
        """This backend's problems (the ``RIVER`` setting's are river's own checks':
        river/contrib/django/checks.py)."""
        from django.core import checks

        problems: list[Any] = [
            checks.Error(
                problem,
                hint="OPTIONS takes MAX_ATTEMPTS (1 to 32767) only; QUEUES are river queue "
                "names (lowercase letters and digits, with _ - | between them)",
                id="river.E005",
            )
            for problem in self.options_problems
        ]
        if self.queues_empty:
            problems.append(
                checks.Error(
                    self._queues_empty_message(),
                    hint="list the queues the tasks use, or leave QUEUES out for ['default']",
                    id="river.E003",
                )
            )
        return problems


class DjangoTaskWorker(Worker[DjangoTaskArgs]):
    """Runs ``django_task`` jobs (sync: in a thread of the client; async task functions run
    through ``async_to_sync``), sending ``task_started`` and ``task_finished`` as Django's
    backends do."""

    def work(self, job: Job[DjangoTaskArgs]) -> None:
        args = job.args
        try:
            task = _load_task(args.task)
        except TaskUnavailableError as exc:
            # An ordinary failure, retried with river's backoff as an unknown kind is: the
            # code may arrive (a rolling deploy where web processes run newer code).
            _record_exception(job, exc)
            raise
        task = _task_as_enqueued(task, args, job.row.queue)
        backend = type(task.get_backend())
        running = _result(job.row, args, task, TaskResultStatus.RUNNING)
        object.__setattr__(running, "finished_at", None)
        _send(task_started, backend, running)
        try:
            if task.takes_context:
                value = task.call(TaskContext(task_result=running), *args.args, **args.kwargs)
            else:
                value = task.call(*args.args, **args.kwargs)
        except Exception as exc:
            _record_exception(job, exc)
            _finished(backend, running, TaskResultStatus.FAILED, exc)
            raise
        try:
            output = normalize_json(value)
            # River's own rules (no NaN, infinities, NUL, lone surrogates, integers outside
            # int64, at most 32 MB): river.ValidationError, a ValueError.
            record_output(output)
        except (TypeError, ValueError) as exc:
            # The task ran: running it again would repeat its effects for a result that can
            # never be stored. Failed once, as Django's database backend does.
            _record_exception(job, exc)
            _finished(backend, running, TaskResultStatus.FAILED, exc)
            raise JobCancel(
                f"the task's return value cannot be stored as JSON: {type(exc).__name__}: {exc}"
            ) from exc
        object.__setattr__(running, "_return_value", output)
        _finished(backend, running, TaskResultStatus.SUCCESSFUL)


def _record_exception(job: Job[DjangoTaskArgs], exc: BaseException) -> None:
    """Keep the class of the exception that failed this attempt (metadata
    ``django_task_exceptions``, by attempt), for the result's ``TaskError``."""
    row = current_job()
    seen = row.metadata.get(_EXCEPTIONS_KEY) if row is not None else None
    set_metadata(
        _EXCEPTIONS_KEY,
        {**(seen if isinstance(seen, Mapping) else {}), str(job.row.attempt): _exception_path(exc)},
    )


def _finished(
    backend: type[Any],
    running: TaskResult[..., Any],
    status: Any,
    exc: BaseException | None = None,
) -> None:
    """Send ``task_finished`` with ``running`` finished now with ``status`` (and this
    attempt's error, as Django's immediate backend adds it)."""
    if exc is not None:
        running.errors.append(
            TaskError(
                exception_class_path=_exception_path(exc),
                traceback="".join(traceback.format_exception(exc)),
            )
        )
    object.__setattr__(running, "status", status)
    object.__setattr__(running, "finished_at", timezone.now())
    _send(task_finished, backend, running)


def _send(signal: Any, sender: type[Any], result: TaskResult[..., Any]) -> None:
    """Send a ``django.tasks`` signal; a receiver's exception is logged, never raised. Raised
    after the task ran, it failed the attempt and river ran the task again (up to
    ``MAX_ATTEMPTS`` times, for a metrics hook that kept failing); raised after the job was
    inserted, the caller saw a failed enqueue of a task that was queued."""
    for receiver, response in signal.send_robust(sender=sender, task_result=result):
        if isinstance(response, Exception):
            logger.error(
                "django.tasks: a receiver of %s (%s) raised for task %s: %s",
                _SIGNAL_NAMES.get(signal, "a signal"),
                getattr(receiver, "__qualname__", receiver),
                result.id,
                response,
                exc_info=response,
            )
