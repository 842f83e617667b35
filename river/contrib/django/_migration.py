"""The Django migration operation behind each of River's schema versions.

Migration ``river.000N_<name>`` is River's version N (migrations/main/00N_<name>.up.sql), applied
by this library's own :class:`river.Migrator` on Django's connection, so that ``manage.py
migrate``, ``river migrate-up`` and River (Go)'s migrator keep the same ``river_migration``
bookkeeping and can be mixed in any order:

- forwards: ``migrate_up(target_version=N)``: a no-op when version N is already recorded
  (e.g. by ``river migrate-up``); fills any gap below N;
- backwards (``manage.py migrate river 000M``, ``... river zero``): ``migrate_down(
  target_version=N-1)``, i.e. every version above M is reverted; ``zero`` drops River's tables.

Each migration is non-atomic: every version runs in a transaction of its own together with its
``river_migration`` row, under the migrator's advisory lock (versions 4 and 6 cannot share a
transaction). Only database ``RIVER["DATABASE"]`` is touched, in ``RIVER["SCHEMA"]`` (created
first when it does not exist: a fresh database such as Django's test database has none), and
nothing at all with ``RIVER["MIGRATE"] = False`` (the migrations are then recorded as applied
and do nothing). ``manage.py sqlmigrate`` prints a comment naming ``river migrate-get``, which
prints the SQL.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db.migrations.operations.base import Operation
from psycopg import sql

from river._driver import queries_for
from river.contrib.django._conn import psycopg_connection
from river.contrib.django._settings import river_settings
from river.migrate import Migrator, load_migrations

__all__ = ["RiverSchemaVersion"]


def _create_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create ``schema`` unless it exists (a fresh database: Django's test database, a new
    deployment). Looked up first: ``CREATE SCHEMA IF NOT EXISTS`` needs the CREATE privilege
    on the database even when the schema is there."""
    q = queries_for(None)
    with conn.cursor() as cur:
        cur.execute(q.schema_exists, {"schema": schema})
        row = cur.fetchone()
        if row is None or not row[0]:
            cur.execute(q.compose("schema_create", schema=sql.Identifier(schema)))


class RiverSchemaVersion(Operation):
    """Bring River's schema to ``version`` (forwards) or below it (backwards)."""

    reversible = True
    reduces_to_sql = True  # sqlmigrate: a comment naming `river migrate-get` (see _migrate)

    def __init__(self, version: int) -> None:
        self.version = version

    @property
    def _name(self) -> str:
        names = {m.version: m.name for m in load_migrations()}
        return names.get(self.version, "?")

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass  # no models

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        self._migrate(schema_editor, up=True)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        self._migrate(schema_editor, up=False)

    def _migrate(self, schema_editor: Any, *, up: bool) -> None:
        settings = river_settings()
        connection = schema_editor.connection
        if not settings.migrate or connection.alias != settings.database:
            return
        if schema_editor.collect_sql:  # sqlmigrate: show, never run
            direction = "up" if up else "down"
            schema = f" --schema {settings.schema}" if settings.schema else ""
            if up and settings.schema:
                create = queries_for(None).compose(
                    "schema_create", schema=sql.Identifier(settings.schema)
                )
                schema_editor.collected_sql.append(
                    f"{create.as_string(None)}; -- when it does not exist yet"
                )
            schema_editor.collected_sql.append(
                f"-- River schema version {self.version} ({self._name}), {direction}: run by "
                f"river.Migrator; its SQL: river migrate-get --version {self.version} "
                f"--{direction}{schema}"
            )
            return
        conn = psycopg_connection(connection)
        migrator = Migrator(conn, schema=settings.schema)
        if up:
            if settings.schema:
                _create_schema(conn, settings.schema)
            migrator.migrate_up(target_version=self.version)
        else:
            migrator.migrate_down(target_version=self.version - 1)

    def describe(self) -> str:
        return f"River schema version {self.version} ({self._name})"

    @property
    def migration_name_fragment(self) -> str:
        return f"river_v{self.version}"
