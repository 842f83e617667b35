"""System checks (``manage.py check``): the ``RIVER`` setting, its app and its database.

- ``river.E001``: ``settings.RIVER`` is invalid (the message names the key and the rule);
- ``river.E002``: ``RIVER["DATABASE"]`` does not use Django's PostgreSQL backend on psycopg 3;
- ``river.E003``: ``QUEUES`` of river's ``django.tasks`` backend is empty (the backend's own
  check, river/contrib/django/tasks.py);
- ``river.E004``: ``RIVER["APP"]`` cannot be imported (its module, then its attribute; a
  factory is not called);
- ``river.W001``, ``river.W002`` (database checks: only with ``check --database ALIAS`` naming
  ``RIVER["DATABASE"]``, as Django runs its own database checks, and before ``migrate``):
  ``RIVER["SCHEMA"]`` does not exist; River's migrations are not all applied (``river
  validate``'s check), although Django records River's Django migrations as applied (after
  ``migrate --fake``, ``river migrate-down`` or a dropped schema behind Django's back, or
  with ``RIVER["MIGRATE"] = False``). While Django itself has River's migrations to apply,
  they are its pending migrations (``migrate --check`` fails, ``runserver`` warns) and nothing
  is reported here: ``migrate`` runs these checks before applying them. Warnings, not errors,
  for the same reason: ``migrate`` (of the project's own apps too) must not be stopped by
  them (``check --database default --fail-level WARNING`` fails on them); ``river.W003``: the
  database could not be read.

Only the database checks connect to the database.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import psycopg
from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from river._driver import queries_for
from river.contrib.django._settings import (
    RiverSettings,
    check_postgres,
    project_root,
    river_settings,
)

__all__ = ["check_app", "check_database", "check_settings"]


def check_settings() -> list[checks.CheckMessage]:
    """The problems of the ``RIVER`` setting and of its database (see module doc)."""
    try:
        database = river_settings().database
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="river.E001")]
    try:
        check_postgres(database)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="river.E002")]
    return []


def check_app() -> list[checks.CheckMessage]:
    """``river.E004`` when ``RIVER["APP"]`` does not import (module doc)."""
    try:
        spec = river_settings().app
    except ImproperlyConfigured:
        return []  # river.E001
    if spec is None:
        return []
    module_name, _, attr_path = spec.partition(":")
    root = project_root()
    if root not in sys.path:  # as manage.py river_worker loads it
        sys.path.insert(0, root)
    hint = (
        "RIVER['APP'] is 'module:attribute' naming a river.Workers, a river.Config or a "
        "factory, importable from the project (what manage.py river_worker loads)"
    )
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        return [
            checks.Error(
                f"settings.RIVER['APP'] {spec!r} cannot be imported: {type(exc).__name__}: {exc}",
                hint=hint,
                id="river.E004",
            )
        ]
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            return [
                checks.Error(
                    f"settings.RIVER['APP'] {spec!r}: module {module_name!r} has no attribute "
                    f"{attr_path!r}",
                    hint=hint,
                    id="river.E004",
                )
            ]
    return []


def check_database(databases: Sequence[str] | None) -> list[checks.CheckMessage]:
    """``river.W001``/``river.W002`` for ``RIVER["DATABASE"]`` when ``databases`` names it
    (module doc)."""
    try:
        settings = river_settings()
        check_postgres(settings.database)
    except ImproperlyConfigured:
        return []  # river.E001, river.E002
    if not databases or settings.database not in databases:
        return []
    from django.db import connections

    from river.contrib.django._conn import psycopg_connection

    alias = settings.database
    try:
        if settings.migrate and _django_has_river_migrations_to_apply(connections[alias]):
            return []  # manage.py migrate applies them (and creates the schema)
        return _database_warnings(psycopg_connection(connections[alias]), alias, settings)
    except (psycopg.Error, DatabaseError) as exc:
        return [
            checks.Warning(
                f"River's schema in database {alias!r} could not be checked: "
                f"{type(exc).__name__}: {' '.join(str(exc).split())}",
                id="river.W003",
            )
        ]


def _django_has_river_migrations_to_apply(connection: Any) -> bool:
    """Whether Django's records lack some of River's migrations (``migrate`` would apply
    them). Django reports pending migrations itself (``migrate --check``, ``runserver``); and
    ``migrate`` runs the database checks before it applies them: not repeated here."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connection, ignore_no_migrations=True)
    river = {key for key in loader.graph.nodes if key[0] == "river"}
    return bool(river - set(loader.applied_migrations))


def _database_warnings(
    conn: psycopg.Connection[Any], alias: str, settings: RiverSettings
) -> list[checks.CheckMessage]:
    from river.migrate import Migrator

    if settings.schema is not None:
        with conn.cursor() as cur:
            cur.execute(queries_for(None).schema_exists, {"schema": settings.schema})
            row = cur.fetchone()
            exists = row is not None and bool(row[0])
        if not exists:
            return [
                checks.Warning(
                    f"RIVER['SCHEMA'] {settings.schema!r} does not exist in database {alias!r}",
                    hint=_migrate_hint(settings.migrate, "creates it and River's tables"),
                    id="river.W001",
                )
            ]
    result = Migrator(conn, schema=settings.schema).validate()
    if result.ok:
        return []
    where = f" in schema {settings.schema!r}" if settings.schema else ""
    return [
        checks.Warning(
            f"River's migrations are not all applied to database {alias!r}{where}: "
            + "; ".join(result.messages),
            hint=_migrate_hint(settings.migrate, "applies them"),
            id="river.W002",
        )
    ]


def _migrate_hint(migrate: bool, what: str) -> str:
    if migrate:
        return f"python manage.py migrate {what}"
    return (
        "RIVER['MIGRATE'] is False: bring River's schema up to date with river migrate-up "
        "(or River (Go)'s migrator)"
    )


@checks.register()
def _check_river(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    return [*check_settings(), *check_app()]


@checks.register(checks.Tags.database)
def _check_river_database(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[Any]:
    return check_database(databases)
