"""The dashboard's named queries (river/_sql/ui.sql), rendered once per schema.

They are kept apart from the runtime's catalog (river/_driver.py): a process that never serves
the dashboard never loads them. Same file format and same rules (STYLE.md 2); the statements of
the runtime the dashboard also runs (``leader_get``) come from :func:`river._driver.queries_for`.
"""

from __future__ import annotations

import functools

from river._driver import Queries, load_sql

__all__ = ["UIQueries", "ui_queries"]

_STATEMENTS, _FRAGMENTS = load_sql("ui.sql")


class UIQueries(Queries):
    """The queries of ui.sql for one schema: statements by attribute (bytes), fragments by
    :meth:`fragment` / :meth:`compose` (the runtime's :class:`river._driver.Queries`, over the
    dashboard's file)."""

    def __init__(self, schema: str | None) -> None:
        super().__init__(schema, _STATEMENTS, _FRAGMENTS)


@functools.lru_cache(maxsize=16)
def ui_queries(schema: str | None) -> UIQueries:
    """The dashboard's queries for ``schema`` (cached)."""
    return UIQueries(schema)
