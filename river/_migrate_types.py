"""Pure data of the migrator: versions, results, bookkeeping rows. No I/O here.

:mod:`river.migrate` re-exports every name; this module exists so that
:class:`~river.MigrationFailedError` (``river._errors``) can name the versions it applied
without importing the migrator, which imports the errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "AppliedMigration",
    "Direction",
    "MigrateResult",
    "Migration",
    "MigrationVersionResult",
    "ValidateResult",
]

#: ``"up"`` applies versions, ``"down"`` reverts them.
Direction = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One version of a migration line.

    ``name`` is the file stem after the number with ``_`` shown as spaces (``initial schema``),
    as River (Go) displays it. ``up_sql`` and ``down_sql`` are already qualified for the schema
    they were loaded for (no schema: unqualified names, resolved through ``search_path``).
    """

    version: int
    name: str
    up_sql: str
    down_sql: str

    def sql(self, direction: Direction) -> str:
        """``up_sql`` or ``down_sql``."""
        return self.up_sql if direction == "up" else self.down_sql


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """One row of ``river_migration`` for the migrator's line."""

    version: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MigrationVersionResult:
    """One version applied (or, in a dry run, that would be applied).

    ``duration`` is the wall time of the version's SQL in seconds (0.0 in a dry run); ``sql`` is
    the text that ran.
    """

    version: int
    name: str
    direction: Direction
    duration: float
    sql: str


@dataclass(frozen=True, slots=True)
class MigrateResult:
    """Outcome of :meth:`Migrator.migrate_up` / :meth:`Migrator.migrate_down`.

    ``versions`` lists the versions applied by this call in the order they ran (ascending for up,
    descending for down); empty when there was nothing to do. Versions that a concurrent migrator
    applied first are not listed. With ``dry_run`` nothing ran and ``versions`` is the plan.
    """

    direction: Direction
    versions: tuple[MigrationVersionResult, ...]
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class ValidateResult:
    """Outcome of :meth:`Migrator.validate`.

    ``ok`` is true when every version the line knows is recorded (extra recorded versions, such as
    River (Go)'s version 8, do not matter). Otherwise ``unapplied`` lists the missing versions and
    ``messages`` holds ``Unapplied migrations: [6 7]``, River (Go)'s wording.
    """

    ok: bool
    unapplied: tuple[int, ...] = ()
    messages: tuple[str, ...] = ()
