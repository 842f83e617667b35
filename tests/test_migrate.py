"""Migrations and the Migrator API against a real Postgres (PROTOCOL.md 2.6 to 2.9).

The oracle is tests/data/river-schema/catalog-main-v7.json, compared with the output of
tests/data/tools/schema_catalog.py. That tool reads river_migration's line column, so it only works
from version 5 on; for earlier versions these tests use :func:`catalog`, an in-process reading of
the same catalog facts (checked against the oracle at version 7).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

from river._errors import (
    MigrationFailedError,
    MigrationStateError,
    MigrationTargetError,
    UnknownMigrationLineError,
    ValidationError,
)
from river._schema import qualify
from river.migrate import (
    AsyncMigrator,
    Migrator,
    get_sql,
    load_migrations,
    migration_lines,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "tests" / "data"
ORACLE_PATH = DATA / "river-schema" / "catalog-main-v7.json"
CATALOG_TOOL = DATA / "tools" / "schema_catalog.py"
MIGRATIONS_DIR = REPO_ROOT / "migrations" / "main"

NAMES = [
    "create river migration",
    "initial schema",
    "river job tags non null",
    "pending and more",
    "migration unique client",
    "bulk unique",
    "notification outbox sqlite jsonb and sql cleanup",
]

TABLES_AT = {
    0: set(),
    1: {"river_migration"},
    2: {"river_migration", "river_job", "river_leader"},
    3: {"river_migration", "river_job", "river_leader"},
    4: {"river_migration", "river_job", "river_leader", "river_queue"},
    5: {
        "river_migration",
        "river_job",
        "river_leader",
        "river_queue",
        "river_client",
        "river_client_queue",
    },
    6: {
        "river_migration",
        "river_job",
        "river_leader",
        "river_queue",
        "river_client",
        "river_client_queue",
    },
    7: {"river_migration", "river_job", "river_leader", "river_queue", "river_notification"},
}


def oracle() -> dict[str, Any]:
    return json.loads(ORACLE_PATH.read_text())  # type: ignore[no-any-return]


def tool_catalog(url: str, schema: str | None = None) -> dict[str, Any]:
    """schema_catalog.py's output; with a schema, its name is stripped from the text."""
    args = [sys.executable, str(CATALOG_TOOL), url] + ([schema] if schema else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    if schema:
        out = out.replace(f"{schema}.", "")
    return json.loads(out)  # type: ignore[no-any-return]


def catalog(conn: psycopg.Connection[Any], schema: str = "public") -> dict[str, Any]:
    """The schema facts schema_catalog.py reports, minus river_migration's rows.

    Runs with search_path set to ``schema`` so that names in that schema print unqualified, like
    the tool's normalised output (objects elsewhere still print qualified, and so differ).
    """
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
        tables: dict[str, Any] = {}
        rels = conn.execute(
            "SELECT c.oid, c.relname, c.relpersistence FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE 'river%%' ORDER BY 2",
            (schema,),
        ).fetchall()
        for oid, name, persistence in rels:
            cols = conn.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
                "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped",
                (oid,),
            ).fetchall()
            cons = conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s",
                (oid,),
            ).fetchall()
            idx = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
                "AND tablename = %s",
                (schema, name),
            ).fetchall()
            tables[name] = {
                "unlogged": persistence == "u",
                "columns": {c: {"type": t, "not_null": nn, "default": d} for c, t, nn, d in cols},
                "constraints": dict(cons),
                # pg_get_indexdef qualifies the table whatever the search_path; the tool strips
                # the schema from index definitions, and so does this.
                "indexes": {
                    i: d.replace(f'"{schema}".', "").replace(f"{schema}.", "") for i, d in idx
                },
            }
        enums = {
            name: values
            for name, values in conn.execute(
                "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type t "
                "JOIN pg_enum e ON e.enumtypid = t.oid "
                "JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE n.nspname = %s GROUP BY t.typname",
                (schema,),
            ).fetchall()
        }
        functions = sorted(
            r[0]
            for r in conn.execute(
                "SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || "
                "') returns ' || pg_get_function_result(p.oid) FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = %s AND p.proname LIKE 'river%%'",
                (schema,),
            ).fetchall()
        )
        triggers = sorted(
            r[0]
            for r in conn.execute(
                "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND NOT tgisinternal",
                (schema,),
            ).fetchall()
        )
        sequences = sorted(
            r[0]
            for r in conn.execute(
                "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = %s",
                (schema,),
            ).fetchall()
        )
    return {
        "tables": tables,
        "enums": enums,
        "functions": functions,
        "triggers": triggers,
        "sequences": sequences,
    }


def oracle_without_migrations() -> dict[str, Any]:
    expected = oracle()
    del expected["migrations"]
    return expected


def migration_rows(conn: psycopg.Connection[Any], schema: str = "public") -> list[tuple[Any, ...]]:
    """river_migration's rows as (line, version), whatever the layout; [] without the table."""
    table = sql.SQL("{}.river_migration").format(sql.Identifier(schema))
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table.as_string(conn),)).fetchone()
    if not exists or not exists[0]:
        return []
    lined = conn.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'river_migration' AND column_name = 'line'",
        (schema,),
    ).fetchone()
    assert lined is not None
    if lined[0]:
        query = sql.SQL("SELECT line, version FROM {} ORDER BY line, version").format(table)
    else:
        query = sql.SQL("SELECT 'main', version FROM {} ORDER BY version").format(table)
    return [tuple(r) for r in conn.execute(query).fetchall()]


def snapshot(conn: psycopg.Connection[Any], schema: str = "public") -> dict[str, Any]:
    return {"catalog": catalog(conn, schema), "rows": migration_rows(conn, schema)}


@pytest.fixture
def empty_conn(empty_db_url: str) -> Any:
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        yield c


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def test_files_versions_and_names() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, 8))
    assert [m.name for m in migrations] == NAMES
    assert migration_lines() == ["main"]
    for m in migrations:
        assert m.up_sql.strip()
        assert m.down_sql.strip()
        assert "/* schema */" not in m.up_sql + m.down_sql
    files = sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    assert len(files) == 14


def test_schema_placeholder_qualifies_and_keeps_case() -> None:
    raw = load_migrations()
    qualified = load_migrations(schema="My_Schema")
    assert 'CREATE TABLE "My_Schema".river_job (' in qualified[1].up_sql
    assert '"My_Schema".river_job_state_in_bitmask(unique_states, state)' in qualified[5].up_sql
    assert "CREATE TABLE river_job (" in raw[1].up_sql


# --------------------------------------------------------------------------------------------
# The schema oracle
# --------------------------------------------------------------------------------------------


def test_up_from_empty_equals_v7_catalog(empty_db_url: str, empty_conn: Any) -> None:
    result = Migrator(empty_conn).migrate_up()
    assert [v.version for v in result.versions] == list(range(1, 8))
    assert all(v.direction == "up" and v.duration > 0 for v in result.versions)
    assert tool_catalog(empty_db_url) == oracle()
    # The in-process reading used for the earlier versions agrees with the tool.
    assert catalog(empty_conn) == oracle_without_migrations()


def test_up_custom_schema_equals_v7_catalog(empty_db_url: str, empty_conn: Any) -> None:
    empty_conn.execute("CREATE SCHEMA rq_custom")
    result = Migrator(empty_conn, schema="rq_custom").migrate_up()
    assert len(result.versions) == 7
    assert tool_catalog(empty_db_url, "rq_custom") == oracle()
    # Nothing leaked into the search_path schema: every reference was qualified.
    assert catalog(empty_conn, "public") == {
        "tables": {},
        "enums": {},
        "functions": [],
        "triggers": [],
        "sequences": [],
    }
    assert Migrator(empty_conn, schema="rq_custom").validate().ok
    assert not Migrator(empty_conn).validate().ok


def test_mixed_case_schema_round_trip(empty_conn: Any) -> None:
    empty_conn.execute('CREATE SCHEMA "RiverCase"')
    migrator = Migrator(empty_conn, schema="RiverCase")
    migrator.migrate_up()
    assert catalog(empty_conn, "RiverCase") == oracle_without_migrations()
    assert migrator.applied_versions() == list(range(1, 8))
    # The unique index predicate calls the function of that schema: a conflicting insert is
    # inferred through ON CONFLICT like River (Go)'s unique insert does.
    insert = (
        'INSERT INTO "RiverCase".river_job (args, kind, max_attempts, unique_key, unique_states) '
        "VALUES ('{}', 'k', 25, 'key', B'11110101') ON CONFLICT (unique_key) WHERE "
        "unique_key IS NOT NULL AND unique_states IS NOT NULL AND "
        '"RiverCase".river_job_state_in_bitmask(unique_states, state) DO NOTHING RETURNING id'
    )
    assert empty_conn.execute(insert).fetchone() is not None
    assert empty_conn.execute(insert).fetchone() is None
    migrator.migrate_down(target_version=-1)
    assert catalog(empty_conn, "RiverCase")["tables"] == {}
    assert migrator.applied_versions() == []


# --------------------------------------------------------------------------------------------
# Every version, up and down
# --------------------------------------------------------------------------------------------


def _known_down_differences(cat: dict[str, Any], version: int) -> dict[str, Any]:
    """What a down migration cannot or does not restore exactly (PROTOCOL.md 2.6, version 4)."""
    cat = json.loads(json.dumps(cat))
    if 2 <= version < 4:
        # 'pending' stays in the enum; metadata keeps neither its default nor NOT NULL.
        cat["enums"]["river_job_state"].remove("pending")
        metadata = cat["tables"]["river_job"]["columns"]["metadata"]
        assert metadata == {"type": "jsonb", "not_null": False, "default": None}
        metadata.update(not_null=True, default="'{}'::jsonb")
    return cat


def test_round_trip_through_every_version(empty_db_url: str, empty_conn: Any) -> None:
    migrator = Migrator(empty_conn)
    at: dict[int, dict[str, Any]] = {0: snapshot(empty_conn)}
    for version in range(1, 8):
        result = migrator.migrate_up(max_steps=1)
        assert [(v.version, v.name) for v in result.versions] == [(version, NAMES[version - 1])]
        at[version] = snapshot(empty_conn)
        assert set(at[version]["catalog"]["tables"]) == TABLES_AT[version]
        assert at[version]["rows"] == [("main", v) for v in range(1, version + 1)]

    cats = {v: s["catalog"] for v, s in at.items()}
    # Layout of river_migration: line column from version 5 on, old pkey name before.
    assert "line" not in cats[4]["tables"]["river_migration"]["columns"]
    assert "river_migration_pkey" in cats[4]["tables"]["river_migration"]["constraints"]
    assert "river_migration_pkey1" in cats[5]["tables"]["river_migration"]["constraints"]
    # Version 2 notified through a trigger; version 4 removed it and added 'pending'.
    assert cats[2]["triggers"] == ["river_notify"]
    assert cats[2]["functions"] == ["river_job_notify() returns trigger"]
    assert "pending" not in cats[3]["enums"]["river_job_state"]
    assert cats[4]["triggers"] == []
    assert cats[4]["functions"] == []
    assert cats[4]["enums"]["river_job_state"][4] == "pending"
    assert cats[2]["tables"]["river_job"]["columns"]["tags"]["not_null"] is False
    assert cats[3]["tables"]["river_job"]["columns"]["tags"]["not_null"] is True
    assert "river_job_kind_unique_key_idx" in cats[5]["tables"]["river_job"]["indexes"]
    assert "river_job_kind_unique_key_idx" not in cats[6]["tables"]["river_job"]["indexes"]
    assert "river_job_unique_idx" in cats[6]["tables"]["river_job"]["indexes"]
    assert cats[6]["tables"]["river_job"]["columns"]["max_attempts"]["default"] is None
    assert cats[7] == oracle_without_migrations()

    for version in range(6, -1, -1):
        result = migrator.migrate_down()
        assert [(v.version, v.direction) for v in result.versions] == [(version + 1, "down")]
        now = snapshot(empty_conn)
        assert now["rows"] == at[version]["rows"], version
        assert _known_down_differences(now["catalog"], version) == at[version]["catalog"], version

    assert catalog(empty_conn)["enums"] == {}
    assert migrator.applied_versions() == []
    assert [v.version for v in migrator.migrate_up().versions] == list(range(1, 8))
    assert tool_catalog(empty_db_url) == oracle()


def test_down_all_the_way_in_one_call(conn: Any) -> None:
    result = Migrator(conn).migrate_down(target_version=-1)
    assert [v.version for v in result.versions] == [7, 6, 5, 4, 3, 2, 1]
    assert all(v.direction == "down" for v in result.versions)
    assert catalog(conn) == catalog_empty()
    assert Migrator(conn).migrate_down(target_version=0).versions == ()


def catalog_empty() -> dict[str, Any]:
    return {"tables": {}, "enums": {}, "functions": [], "triggers": [], "sequences": []}


@pytest.mark.parametrize("start", [4, 5, 6])
def test_continues_from_an_earlier_version(empty_db_url: str, empty_conn: Any, start: int) -> None:
    Migrator(empty_conn).migrate_up(target_version=start)
    lined = "line" in catalog(empty_conn)["tables"]["river_migration"]["columns"]
    assert lined == (start >= 5)
    before = empty_conn.execute(
        "SELECT version, created_at FROM river_migration ORDER BY version"
    ).fetchall()
    # A new migrator (another process, River (Go) before us) takes over from the table alone.
    result = Migrator(empty_conn).migrate_up()
    assert [v.version for v in result.versions] == list(range(start + 1, 8))
    assert tool_catalog(empty_db_url) == oracle()
    after = empty_conn.execute(
        "SELECT version, created_at FROM river_migration WHERE version <= %s ORDER BY version",
        (start,),
    ).fetchall()
    assert after == before  # rows survive the layout change with their timestamps


def test_old_layout_bookkeeping(empty_conn: Any) -> None:
    migrator = Migrator(empty_conn)
    migrator.migrate_up(target_version=4)
    columns = {
        r[0]
        for r in empty_conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'river_migration'"
        )
    }
    assert columns == {"id", "created_at", "version"}
    assert migrator.applied_versions() == [1, 2, 3, 4]
    assert [a.version for a in migrator.applied()] == [1, 2, 3, 4]
    migrator.migrate_down(max_steps=2)
    assert empty_conn.execute("SELECT version FROM river_migration ORDER BY 1").fetchall() == [
        (1,),
        (2,),
    ]
    migrator.migrate_down()
    # Version 1's row is never deleted on its own: version 1's down drops the table.
    assert migration_rows(empty_conn) == [("main", 1)]
    migrator.migrate_down()
    assert migration_rows(empty_conn) == []
    assert catalog(empty_conn) == catalog_empty()


# --------------------------------------------------------------------------------------------
# Version 8, other lines, gaps
# --------------------------------------------------------------------------------------------


def test_recorded_version_8_is_accepted(conn: Any, db_url: str) -> None:
    conn.execute("INSERT INTO river_migration (line, version) VALUES ('main', 8)")
    migrator = Migrator(conn)
    assert migrator.validate().ok
    assert migrator.migrate_up().versions == ()
    assert migrator.applied_versions() == [1, 2, 3, 4, 5, 6, 7, 8]
    # Down only reverts versions this library knows; 8 stays recorded.
    assert [v.version for v in migrator.migrate_down().versions] == [7]
    assert migrator.applied_versions() == [1, 2, 3, 4, 5, 6, 8]
    assert migrator.validate().unapplied == (7,)
    assert [v.version for v in migrator.migrate_up().versions] == [7]
    expected = oracle()
    expected["migrations"].append(["main", "8"])
    assert tool_catalog(db_url) == expected


def test_down_past_5_refused_while_an_unknown_version_is_recorded(conn: Any) -> None:
    """River (Go) recorded 8. Reverting 5 copied that row into the layout without a line
    column, and every later step (up or down) failed on it until it was deleted by hand; the
    plan is now refused before anything runs, and stopping at 5 still works."""
    conn.execute("INSERT INTO river_migration (line, version) VALUES ('main', 8)")
    migrator = Migrator(conn)
    before = snapshot(conn)
    for kwargs in [{"target_version": -1}, {"target_version": 4}, {"max_steps": 3}]:
        with pytest.raises(MigrationStateError, match=r"records version\(s\) \[8\]"):
            migrator.migrate_down(**kwargs)
        assert snapshot(conn) == before
    assert [v.version for v in migrator.migrate_down(target_version=5).versions] == [7, 6]
    assert [v.version for v in migrator.migrate_up().versions] == [6, 7]
    assert migrator.applied_versions() == [1, 2, 3, 4, 5, 6, 7, 8]


def test_other_lines_are_left_alone(conn: Any) -> None:
    conn.execute("INSERT INTO river_migration (line, version) VALUES ('pro', 1), ('pro', 2)")
    migrator = Migrator(conn)
    assert migrator.validate().ok
    assert migrator.applied_versions() == list(range(1, 8))
    assert [v.version for v in migrator.migrate_down(target_version=5).versions] == [7, 6]
    assert [v.version for v in migrator.migrate_up().versions] == [6, 7]
    assert {("pro", 1), ("pro", 2)} <= set(migration_rows(conn))


def test_down_past_5_refused_while_other_lines_exist(conn: Any) -> None:
    conn.execute("INSERT INTO river_migration (line, version) VALUES ('pro', 1)")
    migrator = Migrator(conn)
    before = snapshot(conn)
    # The whole plan is refused before anything runs: versions 7 and 6 stay applied.
    for kwargs in [{"target_version": -1}, {"target_version": 4}, {"max_steps": 3}]:
        with pytest.raises(MigrationStateError, match="pro"):
            migrator.migrate_down(**kwargs)
        with pytest.raises(MigrationStateError):
            migrator.migrate_down(dry_run=True, **kwargs)
        assert snapshot(conn) == before
    migrator.migrate_down(target_version=5)
    with pytest.raises(MigrationStateError):
        migrator.migrate_down()
    # The SQL file refuses on its own too, for operators who run migrate-get output by hand.
    with pytest.raises(psycopg.errors.RaiseException), conn.transaction():
        conn.execute(get_sql([5], "down").encode())
    assert migration_rows(conn) == [("main", v) for v in range(1, 6)] + [("pro", 1)]


def test_gap_in_new_layout_is_refused_before_writing(conn: Any) -> None:
    conn.execute("DELETE FROM river_migration WHERE version = 6")
    assert [v.version for v in Migrator(conn).migrate_up(dry_run=True).versions] == [6]
    conn.execute("DELETE FROM river_migration WHERE version = 3")
    before = snapshot(conn)
    with pytest.raises(MigrationStateError, match="version 3"):
        Migrator(conn).migrate_up()
    assert snapshot(conn) == before
    assert Migrator(conn).validate().unapplied == (3, 6)


def test_gap_in_old_layout_is_filled(empty_conn: Any) -> None:
    migrator = Migrator(empty_conn)
    migrator.migrate_up(target_version=4)
    empty_conn.execute("DELETE FROM river_migration WHERE version = 3")
    # Version 3 is idempotent, so filling the gap re-runs it harmlessly.
    assert [v.version for v in migrator.migrate_up(target_version=4).versions] == [3]
    assert migrator.applied_versions() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("INSERT INTO river_migration (version) VALUES (6)", id="v6-in-old-layout"),
        pytest.param("DELETE FROM river_migration", id="table-without-version-1"),
    ],
)
def test_inconsistent_old_layout_refused(empty_conn: Any, damage: str) -> None:
    migrator = Migrator(empty_conn)
    migrator.migrate_up(target_version=4)
    empty_conn.execute(damage)
    before = snapshot(empty_conn)
    with pytest.raises(MigrationStateError):
        migrator.migrate_up()
    with pytest.raises(MigrationStateError):
        migrator.migrate_up(dry_run=True)
    assert snapshot(empty_conn) == before


# --------------------------------------------------------------------------------------------
# Steps, targets, dry runs
# --------------------------------------------------------------------------------------------


def test_max_steps_and_target_version(empty_conn: Any) -> None:
    migrator = Migrator(empty_conn)
    assert [v.version for v in migrator.migrate_up(max_steps=2).versions] == [1, 2]
    assert [v.version for v in migrator.migrate_up(target_version=4).versions] == [3, 4]
    assert migrator.migrate_up(target_version=3).versions == ()  # already applied: no-op
    assert [v.version for v in migrator.migrate_up(target_version=7, max_steps=1).versions] == [5]
    assert [v.version for v in migrator.migrate_up(max_steps=10).versions] == [6, 7]
    assert migrator.migrate_up().versions == ()
    assert [v.version for v in migrator.migrate_down().versions] == [7]
    assert [v.version for v in migrator.migrate_down(max_steps=2).versions] == [6, 5]
    assert [v.version for v in migrator.migrate_down(target_version=2).versions] == [4, 3]
    assert migrator.migrate_down(target_version=5).versions == ()  # nothing above 5
    assert migrator.applied_versions() == [1, 2]
    result = migrator.migrate_down(target_version=0, max_steps=1)
    assert [v.version for v in result.versions] == [2]


def test_dry_run_writes_nothing(empty_conn: Any) -> None:
    migrator = Migrator(empty_conn)
    result = migrator.migrate_up(dry_run=True)
    assert result.dry_run
    assert [v.version for v in result.versions] == list(range(1, 8))
    assert all(
        v.duration == 0.0 and v.sql == m.up_sql
        for v, m in zip(result.versions, load_migrations(), strict=True)
    )
    assert snapshot(empty_conn) == {"catalog": catalog_empty(), "rows": []}

    migrator.migrate_up()
    before = snapshot(empty_conn)
    down = migrator.migrate_down(target_version=-1, dry_run=True)
    assert [v.version for v in down.versions] == [7, 6, 5, 4, 3, 2, 1]
    assert down.versions[0].sql == load_migrations()[6].down_sql
    assert migrator.migrate_up(dry_run=True).versions == ()
    assert snapshot(empty_conn) == before


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda c: Migrator(c, schema="bad-name"), ValidationError),
        (lambda c: Migrator(c, schema="x" * 47), ValidationError),
        (lambda c: Migrator(c, schema="1abc"), ValidationError),
        (lambda c: Migrator(c, line="pro"), UnknownMigrationLineError),
        (lambda c: Migrator(c).migrate_up(target_version=8), MigrationTargetError),
        (lambda c: Migrator(c).migrate_up(target_version=-1), MigrationTargetError),
        (lambda c: Migrator(c).migrate_up(max_steps=0), MigrationTargetError),
        (lambda c: Migrator(c).migrate_up(max_steps=-1), MigrationTargetError),
        (lambda c: Migrator(c).migrate_up(target_version="3"), MigrationTargetError),
        (lambda c: Migrator(c).migrate_down(target_version=-2), MigrationTargetError),
        (lambda c: Migrator(c).migrate_down(target_version=8), MigrationTargetError),
        (lambda c: Migrator(c).migrate_down(max_steps=True), MigrationTargetError),
        (lambda c: Migrator(c).get_sql([9]), MigrationTargetError),
        (lambda c: Migrator(c).get_sql([1], "sideways"), MigrationTargetError),  # type: ignore[arg-type]
        (lambda c: Migrator(c, schema="missing").migrate_up(), MigrationStateError),
    ],
)
def test_bad_input_is_typed_and_changes_nothing(
    conn: Any, make: Any, error: type[Exception]
) -> None:
    before = snapshot(conn)
    with pytest.raises(error):
        make(conn)
    assert snapshot(conn) == before
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_unknown_line_error_names_known_lines() -> None:
    with pytest.raises(UnknownMigrationLineError, match="main") as info:
        load_migrations("pro")
    assert info.value.line == "pro"
    assert isinstance(info.value, ValueError)


def test_missing_schema_on_empty_database(empty_conn: Any) -> None:
    with pytest.raises(MigrationStateError, match="does not exist"):
        Migrator(empty_conn, schema="nope").migrate_up()
    assert Migrator(empty_conn, schema="nope").migrate_down().versions == ()
    assert not Migrator(empty_conn, schema="nope").validate().ok
    empty_conn.execute("SET search_path = ''")
    with pytest.raises(MigrationStateError, match="search_path"):
        Migrator(empty_conn).migrate_up()
    empty_conn.execute("RESET search_path")
    assert snapshot(empty_conn) == {"catalog": catalog_empty(), "rows": []}


def test_tolerant_steps_accept_hand_made_objects(empty_db_url: str, empty_conn: Any) -> None:
    migrator = Migrator(empty_conn)
    migrator.migrate_up(target_version=4)
    # Objects some installations created by hand ahead of versions 5 and 6.
    empty_conn.execute("ALTER TABLE river_job ADD COLUMN unique_key bytea")
    empty_conn.execute("ALTER TABLE river_job ADD COLUMN unique_states bit(8)")
    empty_conn.execute(
        "CREATE UNIQUE INDEX river_job_kind_unique_key_idx ON river_job (kind, unique_key) "
        "WHERE unique_key IS NOT NULL"
    )
    assert [v.version for v in migrator.migrate_up().versions] == [5, 6, 7]
    assert tool_catalog(empty_db_url) == oracle()


# --------------------------------------------------------------------------------------------
# Failures and transactions
# --------------------------------------------------------------------------------------------


def test_failed_version_rolls_back_alone(empty_conn: Any) -> None:
    migrator = Migrator(empty_conn)
    migrator.migrate_up(target_version=2)
    # A hand-made river_queue makes version 4 fail after version 3 succeeded in the same run.
    empty_conn.execute("CREATE TABLE river_queue (name text)")
    with pytest.raises(MigrationFailedError) as info:
        migrator.migrate_up()
    exc = info.value
    assert (exc.version, exc.direction, exc.name) == (4, "up", "pending and more")
    assert [v.version for v in exc.applied] == [3]
    assert isinstance(exc.__cause__, psycopg.errors.DuplicateTable)
    assert migrator.applied_versions() == [1, 2, 3]
    # Version 4's earlier statements were rolled back with it.
    cat = catalog(empty_conn)
    assert "pending" not in cat["enums"]["river_job_state"]
    assert cat["tables"]["river_job"]["columns"]["args"]["not_null"] is False
    assert cat["triggers"] == ["river_notify"]
    assert empty_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_non_autocommit_connection_commits_each_version(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as c:
        assert not c.autocommit
        result = Migrator(c).migrate_up(max_steps=3)
        assert [v.version for v in result.versions] == [1, 2, 3]
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with psycopg.connect(empty_db_url, autocommit=True) as other:
        assert Migrator(other).applied_versions() == [1, 2, 3]


def test_caller_transaction_is_the_callers(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as c:
        c.execute("SELECT 1")  # the caller's transaction is open
        Migrator(c).migrate_up(target_version=5)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert Migrator(c).applied_versions() == [1, 2, 3, 4, 5]
        # Postgres refuses to use 'pending' (version 6) in the transaction that added it (4).
        with pytest.raises(MigrationFailedError, match="pending"):
            Migrator(c).migrate_up()
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        c.rollback()
        assert Migrator(c).applied_versions() == []


def test_dict_row_connection(empty_db_url: str) -> None:
    from psycopg.rows import dict_row

    with psycopg.connect(empty_db_url, autocommit=True, row_factory=dict_row) as c:
        migrator = Migrator(c)
        migrator.migrate_up()
        assert migrator.validate().ok
        assert migrator.applied_versions() == list(range(1, 8))


# --------------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read", "serializable"])
def test_racing_migrators_apply_each_version_once(
    empty_db_url: str, empty_conn: Any, isolation: str
) -> None:
    # Whatever the database's default isolation: under REPEATABLE READ the advisory lock's
    # statement fixed the snapshot, so a migrator that waited for the lock missed the version
    # the other had just recorded, and failed ("river_migration exists but does not record
    # version 1").
    empty_conn.execute(
        sql.SQL("ALTER DATABASE {} SET default_transaction_isolation = {}").format(
            sql.Identifier(empty_conn.info.dbname), sql.Literal(isolation)
        )
    )
    for _round in range(3):
        barrier = threading.Barrier(3)
        results: list[list[int]] = []
        errors: list[BaseException] = []

        def race(
            barrier: threading.Barrier = barrier,
            results: list[list[int]] = results,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                with psycopg.connect(empty_db_url, autocommit=True) as c:
                    migrator = Migrator(c)
                    barrier.wait(timeout=10)
                    results.append([v.version for v in migrator.migrate_up().versions])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=race) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert sorted(v for r in results for v in r) == list(range(1, 8))
        assert migration_rows(empty_conn) == [("main", v) for v in range(1, 8)]
        assert catalog(empty_conn) == oracle_without_migrations()
        Migrator(empty_conn).migrate_down(target_version=-1)


@pytest.mark.anyio
async def test_async_migrator(empty_db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as c:
        migrator = AsyncMigrator(c)
        assert [m.version for m in migrator.available()] == list(range(1, 8))
        assert (await migrator.validate()).messages == ("Unapplied migrations: [1 2 3 4 5 6 7]",)
        dry = await migrator.migrate_up(dry_run=True)
        assert len(dry.versions) == 7
        assert await migrator.applied_versions() == []
        up = await migrator.migrate_up(max_steps=5)
        assert [v.version for v in up.versions] == [1, 2, 3, 4, 5]
        await migrator.migrate_up()
        assert (await migrator.validate()).ok
        assert [a.version for a in await migrator.applied()] == list(range(1, 8))
        down = await migrator.migrate_down(target_version=-1)
        assert [v.version for v in down.versions] == [7, 6, 5, 4, 3, 2, 1]
        assert migrator.get_sql([1]) == get_sql([1])


@pytest.mark.anyio
async def test_async_racing_migrators(empty_db_url: str) -> None:
    results: list[list[int]] = []

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as c:
            result = await AsyncMigrator(c).migrate_up()
            results.append([v.version for v in result.versions])

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(run)
    assert sorted(v for r in results for v in r) == list(range(1, 8))


# --------------------------------------------------------------------------------------------
# SQL text
# --------------------------------------------------------------------------------------------


def test_get_sql_script() -> None:
    text = get_sql([2, 1], "up")
    assert text.startswith("-- River main migration 001 [up]\n")
    assert "\n\n-- River main migration 002 [up]\n" in text
    assert text.index("CREATE TABLE river_migration") < text.index("CREATE TABLE river_job")
    down = get_sql(None, "down", schema="rq")
    headers = [line for line in down.splitlines() if line.startswith("-- River main migration")]
    assert headers == [f"-- River main migration {v:03d} [down]" for v in range(7, 0, -1)]
    assert 'DROP TABLE "rq".river_notification;' in down
    assert get_sql([3, 3]) == get_sql([3])
    with pytest.raises(MigrationTargetError):
        get_sql([0])


def test_available_matches_files() -> None:
    for m in load_migrations():
        stem = f"{m.version:03d}_{m.name.replace(' ', '_')}"
        for direction in ("up", "down"):
            text = (MIGRATIONS_DIR / f"{stem}.{direction}.sql").read_text()
            assert qualify(text, None).strip() == m.sql(direction).strip()
