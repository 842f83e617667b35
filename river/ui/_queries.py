"""The dashboard's named queries (river/_sql/ui.sql), rendered once per schema.

They are kept apart from the runtime's catalog (river/_driver.py): a process that never serves
the dashboard never loads them. Same file format and same rules (STYLE.md 2); the statements of
the runtime the dashboard also runs (``leader_get``) come from :func:`river._driver.queries_for`.
"""

from __future__ import annotations

import functools

from psycopg import sql

from river._driver import load_sql
from river._schema import qualify

__all__ = ["UIQueries", "ui_queries"]

_STATEMENTS, _FRAGMENTS = load_sql("ui.sql")


class UIQueries:
    """The queries of ui.sql for one schema: statements by attribute (bytes), fragments by
    :meth:`fragment` / :meth:`compose` (as :class:`river._driver.Queries`)."""

    def __init__(self, schema: str | None) -> None:
        self.schema = schema
        self._q = {name: qualify(text, schema).encode() for name, text in _STATEMENTS.items()}
        self._fragments = {
            name: sql.SQL(qualify(text, schema)) for name, text in _FRAGMENTS.items()
        }

    def __getattr__(self, name: str) -> bytes:
        try:
            return self._q[name]
        except KeyError:
            raise AttributeError(name) from None

    def fragment(self, name: str) -> sql.SQL:
        """The fragment ``name``, rendered for this schema."""
        return self._fragments[name]

    def compose(self, name: str, **fields: sql.Composable) -> sql.Composed:
        """The fragment ``name`` with its ``{field}`` slots filled."""
        return self._fragments[name].format(**fields)


@functools.lru_cache(maxsize=16)
def ui_queries(schema: str | None) -> UIQueries:
    """The dashboard's queries for ``schema`` (cached)."""
    return UIQueries(schema)
