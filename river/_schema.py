"""Schema names: validation and qualification of SQL text (PROTOCOL.md 2.8).

SQL text (query files and migrations) marks every reference to a River object with the
placeholder ``/* schema */`` written right before the name, e.g. ``/* schema */river_job``.
:func:`qualify` replaces it with the quoted schema and a dot (``"my_schema".``), rendered by
``psycopg.sql.Identifier``, or with nothing when no schema is configured (search_path applies).
"""

from __future__ import annotations

from psycopg import sql

from river._names import MAX_SCHEMA_LENGTH, validate_schema

__all__ = ["MAX_SCHEMA_LENGTH", "PLACEHOLDER", "prefix", "qualify", "validate_schema"]

PLACEHOLDER = "/* schema */"


def prefix(schema: str | None) -> str:
    """The text that replaces the placeholder: ``"schema".`` or ``""``."""
    if not schema:
        return ""
    return sql.Identifier(schema).as_string() + "."


def qualify(text: str, schema: str | None) -> str:
    """Replace every schema placeholder in ``text`` (see module doc)."""
    return text.replace(PLACEHOLDER, prefix(schema))
