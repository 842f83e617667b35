"""Every statement of the library is a named query in river/_sql (issue 12, STYLE.md 2).

The library's Python holds no SQL text: statements are ``-- name:`` entries of river/_sql/*.sql,
per-call statements are composed with ``psycopg.sql`` from ``-- fragment:`` entries, and all of
them run as sans-IO operations. The scan below keeps it that way; the loader's rules are checked
on small catalogs of their own. Nothing here needs a database.
"""

from __future__ import annotations

import ast
import re

import pytest

from river._driver import RETURNING_MARKER, parse_sql, queries_for
from river._errors import RiverError
from river._schema import PLACEHOLDER
from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "river"

#: A string literal starting with one of these (upper case, as SQL is written here) is a
#: statement.
_SQL_START = re.compile(
    r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|LISTEN|UNLISTEN|NOTIFY|COPY|REINDEX|DROP|CREATE|"
    r"ALTER|TRUNCATE|VACUUM|RETURNING)\b"
)
#: A pyformat parameter with a cast (``%(id)s::bigint``): a piece of a statement.
_SQL_PARAMETER = re.compile(r"%\(\w+\)[sb]::")

#: Files that may hold SQL text, and why.
EXEMPT_FILES = {
    # Bench code may inline SQL (STYLE.md 2): these statements create, inspect and empty the
    # benchmark's own schemas; none of them is part of River's protocol.
    "river/_bench.py": "the `river bench` harness",
}
#: String literals that read like SQL and are not, by file and start.
NOT_SQL = {
    ("river/_errors.py", "LISTEN does not work"): "an error message",
}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are statements of their own (docstrings, attribute
    docstrings): text for readers, never run."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def _sql_literals(source: str, rel: str) -> list[tuple[int, str]]:
    """(line, text) of the string literals of ``source`` (file ``rel``) that are SQL."""
    tree = ast.parse(source, rel)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in skip:
            continue
        value = node.value
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            continue
        if any(rel == file and value.startswith(start) for file, start in NOT_SQL):
            continue
        if (
            _SQL_START.match(value)
            or (PLACEHOLDER in value and value != PLACEHOLDER)
            or _SQL_PARAMETER.search(value)
        ):
            found.append((node.lineno, value))
    return sorted(found)


def test_no_sql_text_in_the_library_source() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).as_posix()
        if rel in EXEMPT_FILES:
            continue
        for line, text in _sql_literals(path.read_text(encoding="utf-8"), rel):
            found.append(f"{rel}:{line}: {text[:70]!r}")
    assert not found, (
        "SQL text in Python: make it a named query (or a fragment composed with psycopg.sql) "
        "in river/_sql/*.sql and run it as a sans-IO operation:\n" + "\n".join(found)
    )


def test_the_scan_finds_sql() -> None:
    # The scan itself: statements, schema-qualified pieces and cast parameters are found;
    # docstrings, prose and the placeholder's own definition are not.
    source = (
        '"""SELECT in a docstring is prose."""\n'
        'a = "SELECT 1"\n'
        'b = f"UPDATE {table} SET x = 1"\n'
        'c = " FROM /* schema */river_job"\n'
        'd = "id = ANY(%(ids)s::bigint[])"\n'
        'e = b"LISTEN x"\n'
        'f = "Select a queue"\n'
        'g = "/* schema */"\n'
        'h = "LISTEN does not work through this connection"\n'
    )
    assert [text for _, text in _sql_literals(source, "river/_errors.py")] == [
        "SELECT 1",
        "UPDATE ",
        " FROM /* schema */river_job",
        "id = ANY(%(ids)s::bigint[])",
        "LISTEN x",
    ]


# --------------------------------------------------------------------------------------------
# The catalog
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [None, "my_schema"])
def test_every_statement_and_fragment_renders(schema: str | None) -> None:
    q = queries_for(schema)
    assert q._q
    assert q._fragments
    for name, text in q._q.items():
        assert PLACEHOLDER.encode() not in text, name
        assert RETURNING_MARKER.encode() not in text, name
    for name, fragment in q._fragments.items():
        assert PLACEHOLDER not in fragment.as_string(), name
    if schema:
        assert b'FROM "my_schema".river_job' in q.job_get
        assert 'FROM "my_schema".river_job' in q.fragment("job_list").as_string()


def test_returning_variants_are_one_statement() -> None:
    # The variants differ in their RETURNING list only: the statement is written once.
    q = queries_for(None)
    for whole, other in [
        ("job_insert_many", "job_insert_many_new"),
        ("job_insert_one", "job_insert_one_new"),
        ("job_set_state_many", "job_set_state_many_rows"),
    ]:
        head_whole, _, tail_whole = getattr(q, whole).rpartition(b"RETURNING ")
        head_other, _, tail_other = getattr(q, other).rpartition(b"RETURNING ")
        assert head_whole == head_other
        assert tail_whole != tail_other
    # What river/_driver.py _new_rows reads back (scheduled_at NULL when it is created_at).
    assert q.job_insert_one_new.endswith(
        b"RETURNING j.id, j.args::text, j.created_at, nullif(j.scheduled_at, j.created_at)"
    )


def test_loader_shares_text_between_consecutive_names() -> None:
    statements, fragments = parse_sql(
        {
            "t.sql": "-- Preamble comment.\n\n"
            "-- name: a  returning: ret_a\n"
            "-- name: b  returning: ret_b\n"
            "-- Why this statement is as it is.\n"
            "DELETE FROM /* schema */t\nRETURNING /* returning */\n\n"
            "-- fragment: ret_a\nid\n\n"
            "-- fragment: ret_b\n-- A comment.\nid, name\n\n"
            "-- name: c\nSELECT 1\n"
        }
    )
    assert statements == {
        "a": "DELETE FROM /* schema */t\nRETURNING id",
        "b": "DELETE FROM /* schema */t\nRETURNING id, name",
        "c": "SELECT 1",
    }
    assert fragments == {"ret_a": "id", "ret_b": "id, name"}


@pytest.mark.parametrize(
    "files",
    [
        pytest.param({"t.sql": "-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n"}, id="twice"),
        pytest.param(
            {"t.sql": "-- name: a\nSELECT 1\n", "u.sql": "-- fragment: a\nx\n"},
            id="twice-across-files",
        ),
        pytest.param({"t.sql": "SELECT 0\n-- name: a\nSELECT 1\n"}, id="text-before-header"),
        pytest.param({"t.sql": "-- name: a\n-- only a comment\n"}, id="no-text"),
        pytest.param({"t.sql": "-- name: a\nSELECT 1 RETURNING /* returning */\n"}, id="no-frag"),
        pytest.param(
            {"t.sql": "-- name: a  returning: r\nSELECT 1\n-- fragment: r\nx\n"}, id="no-marker"
        ),
        pytest.param(
            {"t.sql": "-- name: a  returning: r\nRETURNING /* returning */\n"}, id="unknown-frag"
        ),
        pytest.param({"t.sql": "-- fragment: f\n-- fragment: g\nx\n"}, id="shared-fragment"),
    ],
)
def test_loader_refuses_a_malformed_catalog(files: dict[str, str]) -> None:
    with pytest.raises(RiverError):
        parse_sql(files)
