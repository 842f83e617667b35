"""Rules for names: queues and schemas (PROTOCOL.md sections 2.8 and 10).

Pure functions on strings, importing nothing heavy, so that configuration (river/_config.py)
can validate without loading the driver.
"""

from __future__ import annotations

import re

from river._errors import ValidationError

#: The most jobs one queue may run at once in one client (``max_workers``).
MAX_WORKERS_LIMIT = 10_000

__all__ = ["MAX_QUEUE_NAME_LENGTH", "MAX_SCHEMA_LENGTH", "validate_queue_name", "validate_schema"]

#: Longest queue name River accepts.
MAX_QUEUE_NAME_LENGTH = 64
#: River's rule, written so that Python's backtracking engine checks it in linear time (River
#: (Go)'s ``(?:[a-z0-9])+(?:[_|\-]?[a-z0-9]+)*``, the same language, took exponential time here
#: on an invalid name: 4 s at 27 characters, for ever at 64, the event loop frozen meanwhile).
_QUEUE_RE = re.compile(r"[a-z0-9]+(?:[_|\-][a-z0-9]+)*")
#: 63 (Postgres identifier limit) - 1 (the dot) - 16 (``river_leadership``, the longest topic).
MAX_SCHEMA_LENGTH = 46
_SCHEMA_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def validate_queue_name(name: object, field: str = "queue") -> str:
    """Return ``name`` if it is a valid queue name (PROTOCOL.md section 10), else raise."""
    if not isinstance(name, str):
        raise ValidationError(field, f"must be a string, not {type(name).__name__}")
    if not name or len(name) > MAX_QUEUE_NAME_LENGTH:
        raise ValidationError(field, f"must be 1 to {MAX_QUEUE_NAME_LENGTH} characters")
    if not _QUEUE_RE.fullmatch(name):
        raise ValidationError(
            field,
            f"{name!r} must be lowercase letters and digits, optionally split by single '_', "
            "'-' or '|' characters (no leading, trailing or doubled separators)",
        )
    return name


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
