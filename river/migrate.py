"""Schema migrations, compatible with River (Go)'s migration line ``main``.

The SQL of every version lives in ``migrations/<line>/NNN_name.up.sql`` and ``.down.sql`` (shipped
in the wheel as ``river/migrations``). :class:`Migrator` (sync, ``psycopg.Connection``) and
:class:`AsyncMigrator` (``psycopg.AsyncConnection``) apply them and keep ``river_migration`` exactly
as River (Go)'s migrator does (PROTOCOL.md 2.7), so either tool can take over from the other.

Guarantees:

- Each version runs in its own transaction together with the insert (up) or delete (down) of its
  ``river_migration`` row: a failed version leaves the earlier ones applied and itself absent.
- Bad input (schema name, line, target version, step count) and inconsistent bookkeeping raise a
  :class:`~river.MigrationError` subclass before any statement that writes.
- Migrators of this library racing on one schema never apply a version twice: each version's
  transaction first takes an advisory lock derived from the schema name, then re-reads what is
  applied. (River (Go)'s migrator takes no such lock; do not run both at the same instant.)
- Recorded versions this library does not know (River (Go)'s no-op version 8) are ignored.

The two classes share every statement and decision through the write-once operations of
``river/_sansio.py``; they differ only in how they await the database.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from river._driver import load_sql
from river._errors import (
    MigrationError,
    MigrationFailedError,
    MigrationStateError,
    MigrationTargetError,
    UnknownMigrationLineError,
)

# The public data types live in a pure-data module that river._errors can name too; they are
# part of this module's API (__all__).
from river._migrate_types import (
    AppliedMigration,
    Direction,
    MigrateResult,
    Migration,
    MigrationVersionResult,
    ValidateResult,
)
from river._sansio import Op, Query, run_async, run_sync
from river._schema import prefix, qualify, validate_schema

__all__ = [
    "MAIN_LINE",
    "AppliedMigration",
    "AsyncMigrator",
    "Direction",
    "MigrateResult",
    "Migration",
    "MigrationVersionResult",
    "Migrator",
    "StepCallback",
    "ValidateResult",
    "get_sql",
    "load_migrations",
    "migration_lines",
]

#: The migration line of open-source River (Go), and the only one this library ships.
MAIN_LINE = "main"

#: ``on_step(position, total, migration)`` of ``migrate_up`` / ``migrate_down``: called before
#: each version runs, ``position`` counting from 1 to ``total`` (the versions planned). For
#: progress display only: it must not touch the connection.
StepCallback = Callable[[int, int, Migration], None]

_log = logging.getLogger("river.migrate")

#: Version of line ``main`` that rebuilds river_migration with a ``line`` column. Below it, rows
#: are recorded and removed by version alone (PROTOCOL.md 2.7).
_LINED_SINCE = 5

_FILE_RE = re.compile(r"^(\d+)_(\w+)\.(up|down)\.sql$")


# --------------------------------------------------------------------------------------------
# Migration files
# --------------------------------------------------------------------------------------------


def _migrations_root() -> Traversable:
    # An installed wheel carries the files as river/migrations (pyproject force-include); a
    # source checkout (editable install, tests) has them at the repository root beside river/.
    packaged = resources.files("river").joinpath("migrations")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "migrations"


def migration_lines() -> list[str]:
    """Names of the migration lines shipped with this library (``["main"]``)."""
    root = _migrations_root()
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir())


@cache
def _load_line(line: str) -> tuple[Migration, ...]:
    """The line's migrations with schema placeholders left in; read once per process."""
    if line not in migration_lines():
        raise UnknownMigrationLineError(line, migration_lines())
    directory = _migrations_root().joinpath(line)
    names: dict[int, str] = {}
    texts: dict[tuple[int, str], str] = {}
    for entry in directory.iterdir():
        match = _FILE_RE.match(entry.name)
        if match is None:
            continue
        version, stem, direction = int(match[1]), match[2], match[3]
        if names.setdefault(version, stem) != stem:
            raise MigrationError(f"line {line!r}: version {version} has two names in {directory}")
        texts[(version, direction)] = entry.read_text(encoding="utf-8")
    versions = sorted(names)
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(
            f"line {line!r}: versions must run from 1 without gaps, found {versions} in {directory}"
        )
    migrations = []
    for version in versions:
        missing = [d for d in ("up", "down") if (version, d) not in texts]
        if missing:
            raise MigrationError(
                f"line {line!r}: version {version} has no {' or '.join(missing)} file"
            )
        migrations.append(
            Migration(
                version=version,
                name=names[version].replace("_", " "),
                up_sql=texts[(version, "up")].strip() + "\n",
                down_sql=texts[(version, "down")].strip() + "\n",
            )
        )
    return tuple(migrations)


def load_migrations(line: str = MAIN_LINE, *, schema: str | None = None) -> list[Migration]:
    """All migrations of ``line``, ascending, with their SQL qualified for ``schema``.

    Needs no database. Raises :class:`~river.ValidationError` for an invalid schema name and
    :class:`~river.UnknownMigrationLineError` for a line that does not exist.
    """
    schema = validate_schema(schema)
    return [
        Migration(m.version, m.name, qualify(m.up_sql, schema), qualify(m.down_sql, schema))
        for m in _load_line(line)
    ]


def get_sql(
    versions: Iterable[int] | None = None,
    direction: Direction = "up",
    *,
    line: str = MAIN_LINE,
    schema: str | None = None,
) -> str:
    """The SQL of ``versions`` (None: all) as one script, the way ``river migrate-get`` prints it.

    Each version is introduced by a comment line ``-- River main migration 002 [up]`` and
    separated from the next by a blank line. Versions run ascending for ``up`` and descending for
    ``down``, whatever order they were given in; duplicates are dropped. Needs no database.
    Raises :class:`~river.MigrationTargetError` for a version the line does not know.
    """
    _check_direction(direction)
    known = {m.version: m for m in load_migrations(line, schema=schema)}
    wanted = sorted(known) if versions is None else sorted(set(versions))
    unknown = [v for v in wanted if v not in known]
    if unknown:
        raise MigrationTargetError(
            f"unknown version(s) {_go_list(unknown)} of line {line!r} "
            f"(known: 1 to {max(known, default=0)})"
        )
    if direction == "down":
        wanted.reverse()
    parts = [
        f"-- River {line} migration {v:03d} [{direction}]\n{known[v].sql(direction).rstrip()}\n"
        for v in wanted
    ]
    return "\n".join(parts)


@cache
def _queries() -> dict[str, str]:
    # The migrator's statements, read by the driver's loader (its own names: not the runtime's).
    statements, _ = load_sql("river_migration.sql")
    return statements


def _go_list(values: Iterable[int]) -> str:
    """A list the way Go's fmt prints an []int: ``[1 2 3]``."""
    return "[" + " ".join(str(v) for v in values) + "]"


def _check_direction(direction: str) -> None:
    if direction not in ("up", "down"):
        raise MigrationTargetError(f"direction must be 'up' or 'down', not {direction!r}")


def _lock_key(schema_name: str) -> int:
    # A constant per schema, so that migrators of different schemas on one database do not wait
    # on each other. Derived locally (not with Postgres' hashtext) to stay stable across versions.
    digest = hashlib.sha256(b"river-queue migrate\x00" + schema_name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _as_tuple(row: Any) -> tuple[Any, ...]:
    # The caller's connection may use a dict or namedtuple row factory.
    if isinstance(row, Mapping):
        return tuple(row.values())
    return tuple(row)


# --------------------------------------------------------------------------------------------
# Shared logic: pure planning plus write-once operations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _State:
    current_schema: str | None
    schema_exists: bool
    table_exists: bool
    lined: bool
    applied: tuple[AppliedMigration, ...]
    other_lines: tuple[str, ...]

    @property
    def versions(self) -> frozenset[int]:
        return frozenset(a.version for a in self.applied)


@dataclass(frozen=True, slots=True)
class _Request:
    direction: Direction
    target_version: int | None
    max_steps: int | None
    dry_run: bool


@dataclass(frozen=True, slots=True)
class _Plan:
    request: _Request
    steps: tuple[Migration, ...]
    lock_key: int


class _Core:
    """Everything both migrators share; no I/O of its own."""

    def __init__(self, line: str, schema: str | None) -> None:
        self.schema = validate_schema(schema)
        if not isinstance(line, str):
            raise UnknownMigrationLineError(repr(line), migration_lines())
        self.line = line
        self.migrations = tuple(load_migrations(line, schema=self.schema))
        self.by_version = {m.version: m for m in self.migrations}
        self.latest = self.migrations[-1].version if self.migrations else 0
        # A parameter of the state query (to_regclass), not SQL text: the table's name as
        # Postgres parses it, schema-qualified when a schema is configured.
        self.table = prefix(self.schema) + "river_migration"
        self.q = {name: qualify(text, self.schema) for name, text in _queries().items()}

    # -- requests (validated before any SQL) --------------------------------------------------

    def _check_max_steps(self, max_steps: int | None) -> None:
        if max_steps is None:
            return
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise MigrationTargetError(
                f"max_steps must be a positive integer or None (no limit), not {max_steps!r}"
            )

    def _check_int(self, name: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MigrationTargetError(f"{name} must be an integer, not {value!r}")

    def up_request(self, target_version: int, max_steps: int | None, dry_run: bool) -> _Request:
        self._check_int("target_version", target_version)
        if not 0 <= target_version <= self.latest:
            raise MigrationTargetError(
                f"target version {target_version} is not a version of line {self.line!r}: "
                f"use 0 (all) or 1 to {self.latest}"
            )
        self._check_max_steps(max_steps)
        return _Request("up", target_version, max_steps, bool(dry_run))

    def down_request(
        self, target_version: int | None, max_steps: int | None, dry_run: bool
    ) -> _Request:
        if target_version is not None:
            self._check_int("target_version", target_version)
            if not -1 <= target_version <= self.latest:
                raise MigrationTargetError(
                    f"target version {target_version} is not a version of line {self.line!r}: "
                    f"use -1 or 0 (all the way down) or 1 to {self.latest}"
                )
        self._check_max_steps(max_steps)
        return _Request("down", target_version, max_steps, bool(dry_run))

    # -- reading -------------------------------------------------------------------------------

    def read_state_op(self) -> Op[_State]:
        row = yield Query(
            self.q["state"], {"schema": self.schema, "table": self.table}, fetch="one"
        )
        current, schema_exists, table_exists, lined = _as_tuple(row)
        rows: list[Any] = []
        if table_exists:
            rows = yield Query(self.q["rows"] if lined else self.q["rows_unlined"], fetch="all")
        applied: list[AppliedMigration] = []
        others: set[str] = set()
        for line, version, created_at in map(_as_tuple, rows):
            if line == self.line:
                applied.append(AppliedMigration(int(version), created_at))
            else:
                others.add(line)
        # The first layout has no line column: its rows all belong to "main" (PROTOCOL.md 2.7).
        if not lined and self.line != MAIN_LINE:
            applied = []
        return _State(
            current_schema=current,
            schema_exists=bool(schema_exists),
            table_exists=bool(table_exists),
            lined=bool(lined),
            applied=tuple(applied),
            other_lines=tuple(sorted(others)),
        )

    # -- planning -----------------------------------------------------------------------------

    def plan_op(self, request: _Request) -> Op[_Plan]:
        state = yield from self.read_state_op()
        return self.plan(state, request)

    def plan(self, state: _State, request: _Request) -> _Plan:
        recorded = state.versions
        if request.direction == "up":
            # A set difference, so that a gap is filled and unknown versions (8) are ignored.
            pending = [m for m in self.migrations if m.version not in recorded]
            if request.target_version:
                pending = [m for m in pending if m.version <= request.target_version]
            steps = pending[: request.max_steps] if request.max_steps else pending
            if steps and not state.schema_exists:
                if self.schema is None and state.current_schema is None:
                    raise MigrationStateError(
                        "no schema to create the tables in: the connection's search_path names "
                        "no existing schema"
                    )
                name = self.schema or state.current_schema
                raise MigrationStateError(
                    f"schema {name!r} does not exist; create it first (CREATE SCHEMA ...)"
                )
            if steps and self.schema is None:
                # The schema the tables land in comes from search_path: it obeys the same
                # rules as an explicit one, or clients could not NOTIFY on its channels.
                validate_schema(state.current_schema, "schema (the current schema of search_path)")
        else:
            applied = [m for m in reversed(self.migrations) if m.version in recorded]
            target = request.target_version
            if target is None:
                steps = applied[: request.max_steps or 1]
            else:
                if target > 0:
                    applied = [m for m in applied if m.version > target]
                steps = applied[: request.max_steps] if request.max_steps else applied
        self.check_steps(state, request.direction, [m.version for m in steps])
        schema_name = self.schema or state.current_schema or ""
        return _Plan(request, tuple(steps), _lock_key(schema_name))

    def check_steps(self, state: _State, direction: Direction, versions: Sequence[int]) -> None:
        """Refuse steps whose bookkeeping would not fit river_migration's layout at that point."""
        recorded = sorted(state.versions)
        if self.line != MAIN_LINE:
            return
        if state.table_exists and not state.lined and any(v >= _LINED_SINCE for v in recorded):
            raise MigrationStateError(
                f"river_migration has no line column (the layout of versions 1 to 4) but records "
                f"version(s) {_go_list(v for v in recorded if v >= _LINED_SINCE)}"
            )
        if direction == "up" and 1 in versions and state.table_exists:
            raise MigrationStateError(
                "river_migration exists but does not record version 1 of line 'main'"
            )
        lined = state.table_exists and state.lined
        for version in versions:
            crosses = version == _LINED_SINCE
            if direction == "up":
                if lined and version < _LINED_SINCE:
                    raise MigrationStateError(
                        f"version {version} is not recorded, but river_migration already has the "
                        f"line column of version {_LINED_SINCE}: recorded versions are "
                        f"{_go_list(recorded)}"
                    )
                if not lined and version > _LINED_SINCE:
                    raise MigrationStateError(
                        f"cannot apply version {version} before version {_LINED_SINCE}"
                    )
                lined = lined or crosses
            else:
                if not lined and version >= _LINED_SINCE:
                    raise MigrationStateError(
                        f"cannot revert version {version}: river_migration has no line column"
                    )
                if lined and version < _LINED_SINCE:
                    raise MigrationStateError(
                        f"cannot revert version {version}: river_migration has the line column "
                        f"of version {_LINED_SINCE}, which is not recorded: recorded versions "
                        f"are {_go_list(recorded)}"
                    )
                unknown = [v for v in recorded if v > self.latest]
                if crosses and unknown:
                    # Version 5's down copies every row into the layout without a line
                    # column, where a version this library does not know blocks every later
                    # step (up or down) until the row is deleted by hand.
                    raise MigrationStateError(
                        f"cannot revert version {_LINED_SINCE} of line 'main': river_migration "
                        f"records version(s) {_go_list(unknown)}, which this library does not "
                        f"know; revert them first with the River version that applied them"
                    )
                if crosses and state.other_lines:
                    raise MigrationStateError(
                        f"cannot revert version {_LINED_SINCE} of line 'main': river_migration "
                        f"also records line(s) {', '.join(state.other_lines)}, which the layout "
                        f"of versions 1 to 4 cannot hold; migrate those lines down first"
                    )
                lined = lined and not crosses

    def steps(self, plan: _Plan) -> tuple[Migration, ...]:
        """What the caller's loop runs: nothing in a dry run."""
        return () if plan.request.dry_run else plan.steps

    # -- applying -----------------------------------------------------------------------------

    def apply_op(self, plan: _Plan, migration: Migration) -> Op[MigrationVersionResult | None]:
        """One version in the caller's transaction: lock, re-check, run, record.

        Returns None when a concurrent migrator got there first.
        """
        direction = plan.request.direction
        yield Query(self.q["lock"], {"key": plan.lock_key}, fetch="none")
        state = yield from self.read_state_op()
        if (migration.version in state.versions) == (direction == "up"):
            return None
        self.check_steps(state, direction, [migration.version])
        sql = migration.sql(direction)
        started = time.perf_counter_ns()
        yield Query(sql, fetch="none")
        elapsed = time.perf_counter_ns() - started
        record = self._bookkeeping(migration.version, direction)
        if record is not None:
            yield record
        _log.info(
            "applied migration %03d [%s] %s in %.2f ms",
            migration.version,
            direction,
            migration.name,
            elapsed / 1e6,
        )
        return MigrationVersionResult(
            migration.version, migration.name, direction, elapsed / 1e9, sql
        )

    def _bookkeeping(self, version: int, direction: Direction) -> Query | None:
        params = {"line": self.line, "version": version}
        unlined = self.line == MAIN_LINE and version < _LINED_SINCE
        if direction == "up":
            return Query(self.q["record_unlined" if unlined else "record"], params, fetch="none")
        if self.line == MAIN_LINE and version == 1:
            return None  # version 1's down dropped the table with its row
        # Version 5's down has just restored the first layout, so its row goes by version too.
        unlined = self.line == MAIN_LINE and version <= _LINED_SINCE
        return Query(self.q["unrecord_unlined" if unlined else "unrecord"], params, fetch="none")

    def failure(
        self,
        plan: _Plan,
        migration: Migration,
        done: Sequence[MigrationVersionResult],
        exc: BaseException,
    ) -> MigrationFailedError:
        return MigrationFailedError(
            migration.version, migration.name, plan.request.direction, done, exc
        )

    def result(self, plan: _Plan, done: Sequence[MigrationVersionResult]) -> MigrateResult:
        direction = plan.request.direction
        if plan.request.dry_run:
            planned = tuple(
                MigrationVersionResult(m.version, m.name, direction, 0.0, m.sql(direction))
                for m in plan.steps
            )
            return MigrateResult(direction, planned, dry_run=True)
        return MigrateResult(direction, tuple(done))

    def validate(self, state: _State) -> ValidateResult:
        missing = tuple(m.version for m in self.migrations if m.version not in state.versions)
        if not missing:
            return ValidateResult(ok=True)
        return ValidateResult(
            ok=False, unapplied=missing, messages=(f"Unapplied migrations: {_go_list(missing)}",)
        )


# --------------------------------------------------------------------------------------------
# The two flavours
# --------------------------------------------------------------------------------------------


class Migrator:
    """Apply, revert and inspect migrations on a sync ``psycopg.Connection``.

    ``schema`` (default None: unqualified names, resolved through the connection's
    ``search_path``) must match ``^[a-zA-Z_][a-zA-Z0-9_]*$`` and have at most 46 characters; it
    must exist before migrating up. ``line`` (default ``"main"``) selects the migration line.
    Both are checked here, before any SQL: :class:`~river.ValidationError` for the schema,
    :class:`~river.UnknownMigrationLineError` for the line.

    Transactions: on an autocommit connection, or a non-autocommit one with no transaction open,
    every version commits on its own together with its ``river_migration`` row, and the
    connection is left idle. When the caller already has a transaction open, everything runs
    inside it as savepoints and the caller decides whether to commit. One transaction cannot
    span versions 4 and 6, though: Postgres refuses to let version 6 use the enum value
    ``pending`` before the transaction that added it (version 4) has committed.

    The connection's row factory must produce tuples or dicts (psycopg's default is tuples).
    A migrator holds no state between calls besides its configuration; it is not thread-safe,
    like the connection it uses.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        schema: str | None = None,
        line: str = MAIN_LINE,
    ) -> None:
        self._conn = conn
        self._core = _Core(line, schema)

    @property
    def schema(self) -> str | None:
        """The configured schema, or None for search_path."""
        return self._core.schema

    @property
    def line(self) -> str:
        """The migration line."""
        return self._core.line

    def migrate_up(
        self,
        *,
        target_version: int = 0,
        max_steps: int | None = None,
        dry_run: bool = False,
        on_step: StepCallback | None = None,
    ) -> MigrateResult:
        """Apply the versions not yet recorded, ascending.

        ``target_version`` 0 (default) applies everything pending; N applies pending versions up
        to N (a no-op when N is already applied). ``max_steps`` (None: no limit, else >= 1) caps
        the number of versions. ``dry_run`` reads what is applied and returns the plan, writing
        nothing. A gap in the recorded versions is filled; recorded versions unknown to this
        library (such as 8) are ignored. Raises :class:`~river.MigrationTargetError` for a
        target outside 0..latest, :class:`~river.MigrationStateError` for inconsistent
        bookkeeping (both before any write) and :class:`~river.MigrationFailedError` when a
        version's SQL fails. ``on_step`` (:data:`StepCallback`) is told of each version before
        it runs (``river migrate-up`` draws its progress with it).
        """
        return self._migrate(self._core.up_request(target_version, max_steps, dry_run), on_step)

    def migrate_down(
        self,
        *,
        target_version: int | None = None,
        max_steps: int | None = None,
        dry_run: bool = False,
        on_step: StepCallback | None = None,
    ) -> MigrateResult:
        """Revert recorded versions, descending.

        ``target_version`` None (default) reverts one version (or ``max_steps`` versions); -1 or
        0 reverts everything, dropping every River table; N reverts the versions above N.
        Version 1's row is never deleted: its down drops ``river_migration`` itself. Reverting
        version 5 is refused (:class:`~river.MigrationStateError`, before any write) while other
        lines are recorded. Other errors and ``on_step`` as in :meth:`migrate_up`.
        """
        return self._migrate(self._core.down_request(target_version, max_steps, dry_run), on_step)

    def _migrate(self, request: _Request, on_step: StepCallback | None) -> MigrateResult:
        core, conn = self._core, self._conn
        # READ COMMITTED whatever the database's default: each version's transaction takes the
        # advisory lock first, and only a statement after it may see what a racing migrator
        # committed meanwhile (under REPEATABLE READ the lock statement fixed the snapshot).
        # Not when the caller's transaction is already open (the level is set by then).
        idle = isinstance(conn, psycopg.Connection) and (
            conn.info.transaction_status == TransactionStatus.IDLE
        )
        restore = conn.isolation_level if idle else None
        if idle:
            conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        try:
            with conn.transaction():
                plan = run_sync(conn, core.plan_op(request))
            done: list[MigrationVersionResult] = []
            steps = core.steps(plan)
            for position, migration in enumerate(steps, start=1):
                if on_step is not None:
                    on_step(position, len(steps), migration)
                try:
                    with conn.transaction():
                        result = run_sync(conn, core.apply_op(plan, migration))
                except psycopg.Error as exc:
                    raise core.failure(plan, migration, done, exc) from exc
                if result is not None:
                    done.append(result)
            return core.result(plan, done)
        finally:
            if idle and not conn.closed and conn.isolation_level != restore:
                conn.isolation_level = restore

    def applied(self) -> list[AppliedMigration]:
        """The rows recorded for this line, ascending (unknown versions included)."""
        with self._conn.transaction():
            return list(run_sync(self._conn, self._core.read_state_op()).applied)

    def applied_versions(self) -> list[int]:
        """The versions recorded for this line, ascending (unknown versions such as 8 included);
        empty when ``river_migration`` does not exist."""
        return [a.version for a in self.applied()]

    def available(self) -> list[Migration]:
        """Every migration of the line, ascending, with SQL qualified for the schema. No SQL."""
        return list(self._core.migrations)

    def validate(self) -> ValidateResult:
        """Whether every version of the line is recorded (see :class:`ValidateResult`)."""
        with self._conn.transaction():
            state = run_sync(self._conn, self._core.read_state_op())
        return self._core.validate(state)

    def get_sql(self, versions: Iterable[int] | None = None, direction: Direction = "up") -> str:
        """The script of ``versions`` for this migrator's line and schema (see :func:`get_sql`)."""
        return get_sql(versions, direction, line=self.line, schema=self.schema)


class AsyncMigrator:
    """Apply, revert and inspect migrations on a ``psycopg.AsyncConnection``.

    Same configuration, methods, arguments, results, errors and transaction rules as
    :class:`Migrator`, as coroutines (except :meth:`available` and :meth:`get_sql`, which need
    no database). psycopg's async API runs on asyncio only.
    """

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        *,
        schema: str | None = None,
        line: str = MAIN_LINE,
    ) -> None:
        self._conn = conn
        self._core = _Core(line, schema)

    @property
    def schema(self) -> str | None:
        """The configured schema, or None for search_path."""
        return self._core.schema

    @property
    def line(self) -> str:
        """The migration line."""
        return self._core.line

    async def migrate_up(
        self,
        *,
        target_version: int = 0,
        max_steps: int | None = None,
        dry_run: bool = False,
        on_step: StepCallback | None = None,
    ) -> MigrateResult:
        """See :meth:`Migrator.migrate_up`."""
        return await self._migrate(
            self._core.up_request(target_version, max_steps, dry_run), on_step
        )

    async def migrate_down(
        self,
        *,
        target_version: int | None = None,
        max_steps: int | None = None,
        dry_run: bool = False,
        on_step: StepCallback | None = None,
    ) -> MigrateResult:
        """See :meth:`Migrator.migrate_down`."""
        return await self._migrate(
            self._core.down_request(target_version, max_steps, dry_run), on_step
        )

    async def _migrate(self, request: _Request, on_step: StepCallback | None) -> MigrateResult:
        core, conn = self._core, self._conn
        # READ COMMITTED whatever the database's default (see Migrator._migrate).
        idle = isinstance(conn, psycopg.AsyncConnection) and (
            conn.info.transaction_status == TransactionStatus.IDLE
        )
        restore = conn.isolation_level if idle else None
        if idle:
            await conn.set_isolation_level(psycopg.IsolationLevel.READ_COMMITTED)
        try:
            async with conn.transaction():
                plan = await run_async(conn, core.plan_op(request))
            done: list[MigrationVersionResult] = []
            steps = core.steps(plan)
            for position, migration in enumerate(steps, start=1):
                if on_step is not None:
                    on_step(position, len(steps), migration)
                try:
                    async with conn.transaction():
                        result = await run_async(conn, core.apply_op(plan, migration))
                except psycopg.Error as exc:
                    raise core.failure(plan, migration, done, exc) from exc
                if result is not None:
                    done.append(result)
            return core.result(plan, done)
        finally:
            if idle and not conn.closed and conn.isolation_level != restore:
                await conn.set_isolation_level(restore)

    async def applied(self) -> list[AppliedMigration]:
        """See :meth:`Migrator.applied`."""
        async with self._conn.transaction():
            return list((await run_async(self._conn, self._core.read_state_op())).applied)

    async def applied_versions(self) -> list[int]:
        """See :meth:`Migrator.applied_versions`."""
        return [a.version for a in await self.applied()]

    def available(self) -> list[Migration]:
        """See :meth:`Migrator.available`."""
        return list(self._core.migrations)

    async def validate(self) -> ValidateResult:
        """See :meth:`Migrator.validate`."""
        async with self._conn.transaction():
            state = await run_async(self._conn, self._core.read_state_op())
        return self._core.validate(state)

    def get_sql(self, versions: Iterable[int] | None = None, direction: Direction = "up") -> str:
        """See :meth:`Migrator.get_sql`."""
        return get_sql(versions, direction, line=self.line, schema=self.schema)
