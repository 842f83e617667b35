"""Hooks and middleware around inserts and job attempts.

Subclass :class:`Middleware` and override what you need; pass instances in
``Config(middleware=[...])``. The first entry is the outermost: its ``work`` wraps all the
others, and its insert hooks run first.

Order of one attempt: ``work_begin`` hooks (in list order; an exception fails the attempt
without running the worker) -> ``work`` middleware (outermost first) -> the worker ->
``work_end`` hooks (in list order, each may replace the error) -> outcome.

Order of one insert call: ``insert_many`` middleware (outermost first; each may return a new
list of items, e.g. with extra metadata or tags) -> ``insert_begin`` hooks per job -> validation
and SQL. Insert hooks are synchronous so that the sync ``Client`` runs them too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from river._errors import RiverError

if TYPE_CHECKING:
    from river._args import JobArgs
    from river._types import InsertOpts, Job

__all__ = ["InsertItem", "Middleware"]

#: One job of an insert call: its args and options (None: defaults).
InsertItem = tuple["JobArgs", "InsertOpts | None"]


class Middleware:
    """Base class for hooks and middleware; every method defaults to doing nothing."""

    def insert_many(self, items: list[InsertItem]) -> list[InsertItem]:
        """Called once per insert call with its jobs; return the jobs to insert."""
        return items

    def insert_begin(self, args: JobArgs, opts: InsertOpts | None) -> None:
        """Called per job before it is validated and inserted; raise to abort the insert."""

    def work_begin(self, job: Job[Any]) -> None:
        """Called before each attempt; raising fails the attempt (the worker does not run)."""

    async def work(self, job: Job[Any], call_next: Callable[[], Awaitable[None]]) -> None:
        """Wraps each attempt: ``await call_next()`` runs the inner middleware and the
        worker; its exceptions are the attempt's outcome (re-raise them, or raise another)."""
        await call_next()

    def work_end(self, job: Job[Any], error: BaseException | None) -> BaseException | None:
        """Called after each attempt with its error (None on success); return the error to
        use (the same, another, or None to turn a failure into a success)."""
        return error


def apply_insert_middleware(
    middleware: tuple[Middleware, ...], items: list[InsertItem], *, one: bool = False
) -> list[InsertItem]:
    """Run the insert middleware and hooks over ``items`` (see module doc). ``one``: for
    ``insert()``, which returns one result, so the middleware must leave exactly one job
    (RiverError otherwise, before any SQL: it failed on an IndexError after the statement)."""
    for mw in middleware:
        items = mw.insert_many(items)
    if one and len(items) != 1:
        raise RiverError(
            f"an insert middleware returned {len(items)} jobs for insert(), which inserts "
            "exactly one: use insert_many() to insert several, or raise to refuse the job"
        )
    for args, opts in items:
        for mw in middleware:
            mw.insert_begin(args, opts)
    return items
