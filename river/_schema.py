"""Schema names: validation and qualification of SQL text (PROTOCOL.md 2.8).

SQL text (query files and migrations) marks every reference to a River object with the
placeholder ``/* schema */`` written right before the name, e.g. ``/* schema */river_job``.
:func:`qualify` replaces it with the quoted schema and a dot (``"my_schema".``), rendered by
``psycopg.sql.Identifier``, or with nothing when no schema is configured (search_path applies).
"""

from __future__ import annotations

import re

from psycopg import sql

from river._errors import ValidationError

__all__ = ["MAX_SCHEMA_LENGTH", "PLACEHOLDER", "prefix", "qualify", "validate_schema"]

PLACEHOLDER = "/* schema */"
#: 63 (Postgres identifier limit) - 1 (the dot) - 16 (``river_leadership``, the longest topic).
MAX_SCHEMA_LENGTH = 46
_SCHEMA_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def validate_schema(schema: str | None, field: str = "schema") -> str | None:
    """Return ``schema`` (None or "" meaning: use search_path) or raise ValidationError."""
    if schema is None or schema == "":
        return None
    if not isinstance(schema, str):
        raise ValidationError(field, f"must be a string, not {type(schema).__name__}")
    if len(schema) > MAX_SCHEMA_LENGTH:
        raise ValidationError(
            field,
            f"must be at most {MAX_SCHEMA_LENGTH} characters (got {len(schema)}), so that "
            "notification channels <schema>.river_leadership fit in 63 bytes",
        )
    if not _SCHEMA_RE.fullmatch(schema):
        raise ValidationError(
            field,
            f"{schema!r} must start with a letter or underscore and contain only ASCII letters, "
            "digits and underscores (^[a-zA-Z_][a-zA-Z0-9_]*$)",
        )
    return schema


def prefix(schema: str | None) -> str:
    """The text that replaces the placeholder: ``"schema".`` or ``""``."""
    if not schema:
        return ""
    return sql.Identifier(schema).as_string() + "."


def qualify(text: str, schema: str | None) -> str:
    """Replace every schema placeholder in ``text`` (see module doc)."""
    return text.replace(PLACEHOLDER, prefix(schema))
