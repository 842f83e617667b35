"""River's tables as Django models, for reading (the admin of river/contrib/django/admin.py).

:class:`Job` is ``river_job``, :class:`Queue` is ``river_queue``: unmanaged models (Django
never creates, alters or flushes the tables; River's schema is River's migrations', in
river/contrib/django/migrations/). Write through river's API (``get_client()``, the ``*_tx``
calls), never through these models: River's rules (no retry of a running job, a cancel that
reaches the client working the job, ...) live there.

Two details:

- ``Meta.auto_created = True`` keeps the models out of Django's migration state (Django's
  autodetector would otherwise write a ``CreateModel`` migration for an unmanaged model too,
  and ``makemigrations --check`` would fail), out of ``dumpdata`` and of ``manage.py check``'s
  model checks. A side effect: Django creates no permission rows for them (the admin shows
  them to superusers; see docs/django.md, "Admin").
- ``RIVER["SCHEMA"]`` is read when this module is imported: the tables are then
  ``"schema"."river_job"`` and ``"schema"."river_queue"``; without it, the connection's
  ``search_path`` finds them, as it does for River's own statements. A ``RIVER`` setting
  with a mistake does not fail the import (``manage.py check`` reports it, ``river.E001``).

The managers query ``RIVER["DATABASE"]``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from river._errors import ValidationError
from river._names import validate_schema
from river.contrib.django._settings import river_settings

__all__ = ["JOB_STATES", "Job", "Queue"]

#: Every value of the ``river_job_state`` enum, in the order the admin lists them.
JOB_STATES = (
    "available",
    "pending",
    "scheduled",
    "running",
    "retryable",
    "completed",
    "cancelled",
    "discarded",
)


def _schema_at_import() -> str | None:
    """``RIVER["SCHEMA"]``, read leniently: this module is imported by ``django.setup()``, so
    a mistake in ``RIVER`` must not stop every ``manage.py`` command here; the system check
    (``river.E001``) reports it. A valid ``SCHEMA`` is used even when another key is wrong."""
    try:
        return river_settings().schema
    except ImproperlyConfigured:
        raw: Any = getattr(settings, "RIVER", None)
        try:
            return validate_schema(raw.get("SCHEMA")) if isinstance(raw, dict) else None
        except ValidationError:
            return None


def _table(name: str) -> str:
    schema = _schema_at_import()
    # Django leaves a name already in double quotes as it is: "schema"."table" works.
    return f'"{schema}"."{name}"' if schema else name


class _RiverManager(models.Manager[Any]):
    """Queries ``RIVER["DATABASE"]``, wherever the routers would send them."""

    def get_queryset(self) -> models.QuerySet[Any]:
        return super().get_queryset().using(river_settings().database)


class Job(models.Model):
    """A row of ``river_job`` (read-only: write through river's API)."""

    id: models.BigAutoField[Any, int] = models.BigAutoField(primary_key=True)
    state: models.CharField[Any, str] = models.CharField(
        max_length=16, choices=[(s, s) for s in JOB_STATES]
    )
    kind: models.TextField[Any, str] = models.TextField()
    queue: models.TextField[Any, str] = models.TextField()
    priority: models.SmallIntegerField[Any, int] = models.SmallIntegerField()
    attempt: models.SmallIntegerField[Any, int] = models.SmallIntegerField()
    max_attempts: models.SmallIntegerField[Any, int] = models.SmallIntegerField()
    args = models.JSONField(null=True)
    metadata = models.JSONField(default=dict)
    errors: Any = ArrayField(models.JSONField(), null=True)
    tags: Any = ArrayField(models.CharField(max_length=255), null=True)
    attempted_by: Any = ArrayField(models.TextField(), null=True)
    created_at: models.DateTimeField[Any, datetime] = models.DateTimeField()
    scheduled_at: models.DateTimeField[Any, datetime] = models.DateTimeField()
    attempted_at: models.DateTimeField[Any, datetime | None] = models.DateTimeField(null=True)
    finalized_at: models.DateTimeField[Any, datetime | None] = models.DateTimeField(null=True)

    objects: ClassVar[_RiverManager] = _RiverManager()

    class Meta:
        managed = False
        auto_created = True  # out of Django's migration state (module doc)
        app_label = "river"
        db_table = _table("river_job")
        ordering = ("-id",)
        verbose_name = "job"
        verbose_name_plural = "jobs"

    def __str__(self) -> str:
        return f"{self.kind} #{self.id}"


class Queue(models.Model):
    """A row of ``river_queue`` (read-only: pause and resume through river's API)."""

    name: models.TextField[Any, str] = models.TextField(primary_key=True)
    created_at: models.DateTimeField[Any, datetime] = models.DateTimeField()
    updated_at: models.DateTimeField[Any, datetime] = models.DateTimeField()
    paused_at: models.DateTimeField[Any, datetime | None] = models.DateTimeField(null=True)
    metadata = models.JSONField(default=dict)

    objects: ClassVar[_RiverManager] = _RiverManager()

    class Meta:
        managed = False
        auto_created = True
        app_label = "river"
        db_table = _table("river_queue")
        ordering = ("name",)
        verbose_name = "queue"
        verbose_name_plural = "queues"

    def __str__(self) -> str:
        return str(self.name)
