"""What the dashboard reads from the database and the bulk actions it runs, as sans-IO
operations (river/_sansio.py) over the named queries of river/_sql/ui.sql.

Single-job actions and queue changes are not here: the dashboard calls the public admin
methods of an :class:`~river.AsyncClient` for those (river/ui/_store.py), so they behave exactly
as ``client.job_retry(...)`` or ``river job retry`` do. What is here is what the admin API has
no call for: exact counts per queue and state, throughput per minute, the clients seen, the
job list with free-text search, and batches of retries, cancels and deletes.

No operation imports Starlette: they are testable on a plain connection.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from psycopg import sql

from river._admin import decode_cursor, encode_cursor
from river._driver import Queries, job_from_row
from river._errors import ValidationError
from river._sansio import Op, Query
from river._types import JobRow, JobState
from river.ui._queries import UIQueries

__all__ = [
    "COUNT_CAP",
    "DISPLAY_STATES",
    "FINALIZED",
    "SCAN_WINDOW",
    "BulkAction",
    "BulkResult",
    "Counts",
    "JobFilter",
    "JobPage",
    "JobSummary",
    "MatchCount",
    "Overview",
    "PeriodicRun",
    "Throughput",
    "bulk_op",
    "count_op",
    "count_upto_op",
    "counts_op",
    "default_sort",
    "id_bounds_op",
    "job_page_op",
    "kinds_op",
    "list_order",
    "matching_ids_op",
    "now_op",
    "overview_op",
    "periodic_runs_op",
    "search_document",
    "throughput_op",
    "time_column",
    "windowed",
]

#: Every job state, in the order the dashboard shows them (the life of a job, then its ends).
DISPLAY_STATES: tuple[JobState, ...] = (
    JobState.PENDING,
    JobState.SCHEDULED,
    JobState.AVAILABLE,
    JobState.RUNNING,
    JobState.RETRYABLE,
    JobState.COMPLETED,
    JobState.CANCELLED,
    JobState.DISCARDED,
)
FINALIZED = frozenset({JobState.COMPLETED, JobState.CANCELLED, JobState.DISCARDED})
_WAITING = frozenset({JobState.PENDING, JobState.SCHEDULED, JobState.AVAILABLE, JobState.RETRYABLE})
_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)

#: Ids a bounded scan reads per page (a text or tag search, see :meth:`JobFilter.scan_limited`):
#: the newest ``SCAN_WINDOW`` ids below the cursor, then a "search older" continuation.
SCAN_WINDOW = 100_000
#: Windows of :data:`SCAN_WINDOW` ids one call of :func:`count_op` reads for a filter no index
#: serves: a count of a text search goes on in further calls (``below``) instead of reading the
#: whole table in one statement.
COUNT_WINDOWS = 10
#: Jobs counted per queue and state at most: a count that reaches it reads "at least".
COUNT_CAP = 100_000
#: (state, queue) pairs counted at most (``ui_counts``).
MAX_COUNT_PAIRS = 5_000

BulkAction = Literal["retry", "cancel", "delete"]
Sort = Literal["id", "time"]


# --------------------------------------------------------------------------------------------
# Job list
# --------------------------------------------------------------------------------------------


def _like_pattern(text: str) -> str:
    """``text`` as an ILIKE substring pattern: its own wildcards and escapes taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a list, a count or a bulk action is about: AND of the fields given, each
    matching any of its values (``tags``: the job has all of them). ``text`` is a substring of
    the args or metadata (case-insensitive), or, when it is a JSON object, contained in them."""

    ids: tuple[int, ...] = ()
    kinds: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    states: tuple[JobState, ...] = ()
    priorities: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    text: str = ""

    def is_empty(self) -> bool:
        """Whether the filter matches every job."""
        return not (
            self.ids
            or self.kinds
            or self.queues
            or self.states
            or self.priorities
            or self.tags
            or self.text
        )

    def conditions(self, q: UIQueries) -> tuple[list[sql.Composable], dict[str, Any]]:
        """The ``ui_filter_*`` fragments of this filter and their parameters."""
        where: list[sql.Composable] = []
        args: dict[str, Any] = {}

        def add(name: str, value: Any) -> None:
            where.append(q.fragment(f"ui_filter_{name}"))
            args[name] = value

        if self.ids:
            add("ids", list(self.ids))
        if self.kinds:
            add("kinds", list(self.kinds))
        if len(self.queues) == 1:
            add("queue", self.queues[0])
        elif self.queues:
            add("queues", list(self.queues))
        if len(self.states) == 1:
            add("state", self.states[0].value)
        elif self.states:
            add("states", [s.value for s in self.states])
        if len(self.priorities) == 1:
            add("priority", self.priorities[0])
        elif self.priorities:
            add("priorities", list(self.priorities))
        if self.tags:
            add("tags", list(self.tags))
        text = self.text.strip()
        if text:
            document = search_document(text)
            if document is not None:
                add("json", document)
            else:
                add("text", _like_pattern(text))
        return where, args

    def scan_limited(self) -> bool:
        """Whether no index can find this filter's jobs: free text (not a JSON object), tags,
        or a queue or priority without a state, kind, id or JSON object beside them. A list
        then reads at most :data:`SCAN_WINDOW` ids per page (and a bulk action per batch), in
        id order, instead of walking the whole table when nothing matches."""
        if self.searches_text():
            return True
        indexed = self.ids or self.kinds or self.states or self.text.strip()
        return bool(self.queues or self.priorities) and not indexed

    def searches_text(self) -> bool:
        """Whether the filter has tags or free text (not a JSON object), which no index finds."""
        text = self.text.strip()
        return bool(self.tags) or bool(text and search_document(text) is None)

    def where(self, q: UIQueries) -> tuple[sql.Composable, dict[str, Any]]:
        """The conditions joined with AND (``ui_filter_none`` for an empty filter)."""
        where, args = self.conditions(q)
        return sql.SQL(" AND ").join(where or [q.fragment("ui_filter_none")]), args


#: Deepest nesting of a JSON object typed in the search box (checked before decoding: the
#: decoder's recursion, and so its limit, depends on the interpreter and the stack).
MAX_SEARCH_DEPTH = 100


def _depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class _Unsearchable(Exception):
    """Raised while decoding a JSON object that jsonb cannot hold: the rule it breaks."""


def _no_constant(name: str) -> Any:
    raise _Unsearchable(
        f"{name} is not a JSON number (jsonb has no NaN or Infinity): a JSON object to "
        "search by holds finite numbers only"
    )


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unsearchable(
            f"{text} is beyond the range of a number (about 1.8e308): a JSON object to search "
            "by holds finite numbers only"
        )
    return value


def _text_rule(text: str) -> str | None:
    """Why jsonb cannot hold the decoded JSON string ``text`` (None: it can)."""
    if "\x00" in text:
        return "holds a NUL character (\\u0000), which jsonb cannot hold"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate (such as \\ud800), which is not Unicode text"
    return None


def search_document(text: str) -> str | None:
    """``text`` re-encoded when it is a JSON object (a search by containment), None when it
    is not one (a substring search). A JSON object jsonb cannot hold raises
    :class:`ValidationError` naming ``q`` and the rule: NaN, Infinity or a number beyond a
    double's range, a NUL character or a lone surrogate in a key or a string, nesting deeper
    than :data:`MAX_SEARCH_DEPTH` levels."""
    if not text.startswith("{"):
        return None
    if _depth(text) > MAX_SEARCH_DEPTH:
        raise ValidationError(
            "q",
            f"is a JSON object nested too deeply to search by (at most {MAX_SEARCH_DEPTH} levels)",
        )
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except _Unsearchable as exc:
        raise ValidationError("q", str(exc)) from None
    except RecursionError:
        raise ValidationError("q", "is a JSON object nested too deeply to search by") from None
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    pending: list[Any] = [value]
    while pending:  # not recursive: the depth is the text's
        item = pending.pop()
        strings: list[str] = []
        if isinstance(item, dict):
            strings += item
            pending += item.values()
        elif isinstance(item, list):
            pending += item
        elif isinstance(item, str):
            strings.append(item)
        for string in strings:
            rule = _text_rule(string)
            if rule is not None:
                raise ValidationError("q", f"is a JSON object that {rule}")
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        raise ValidationError("q", "is a JSON object nested too deeply to search by") from None


def time_column(states: Sequence[JobState]) -> str:
    """The column a "time" order sorts by: the moment that matters for the states shown.

    Finalized states: ``finalized_at``; waiting states: ``scheduled_at`` (when it runs, or ran
    out of its wait); running: ``attempted_at``; a mix, or no state: ``created_at``."""
    chosen = set(states)
    if chosen and chosen <= FINALIZED:
        return "finalized_at"
    if chosen and chosen <= _WAITING:
        return "scheduled_at"
    if chosen == {JobState.RUNNING}:
        return "attempted_at"
    return "created_at"


def list_order(flt: JobFilter, sort: Sort) -> tuple[str, str | None]:
    """The column a list of ``flt`` is ordered by when ``sort`` is asked for, and why it is
    ``"id"`` when "time" was asked for but no index serves it (None otherwise).

    A time order is offered only where an index returns the rows in that order from the
    cursor, so that a page costs the same on any table: one finalized state
    (``river_job_state_and_finalized_at_index``); one waiting state with one queue and one
    priority (``river_job_prioritized_fetching_index`` (state, queue, priority, scheduled_at,
    id)); running jobs (as many as the workers run at once); or jobs named by id. Anything
    else would sort every matching row on each page: it is listed by id (creation order)."""
    if sort == "id":
        return "id", None
    if flt.scan_limited():
        if flt.searches_text():
            return "id", "a text or tag search reads the jobs by id"
        return "id", "a queue or priority filter without a state or kind reads the jobs by id"
    if flt.ids:
        return time_column(flt.states), None
    if len(flt.states) != 1:
        return "id", (
            "ordering by time needs one state (an index orders each state by its own time)"
        )
    (state,) = flt.states
    if state in FINALIZED:
        return "finalized_at", None
    if state is JobState.RUNNING:
        return "attempted_at", None
    if len(flt.queues) == 1 and len(flt.priorities) == 1:
        return "scheduled_at", None
    return "id", (
        f"ordering {state.value} jobs by time needs one queue and one priority (the order of "
        "the index River fetches with)"
    )


def _one_finalized_state(flt: JobFilter) -> bool:
    """Whether ``flt`` is one finalized state (completed, cancelled or discarded) that an index
    finds, with no ids: what river_job_state_and_finalized_at_index serves in finalized_at
    order."""
    return (
        len(flt.states) == 1
        and flt.states[0] in FINALIZED
        and not flt.ids
        and not flt.scan_limited()
    )


def default_sort(flt: JobFilter, after: str | None = None) -> Sort:
    """The order of a list whose request names none.

    A cursor carries its order (``sort_field``): a list that goes on from one keeps it, so a
    cursor stays valid whatever the default of its filter. Otherwise: by time for one
    finalized state (the tabs of completed, cancelled and discarded jobs: most recently
    finalized first, through river_job_state_and_finalized_at_index, so that a page costs the
    same however many newer jobs are in other states), by id anywhere else."""
    if after:
        return "id" if decode_cursor(after).get("sort_field") == "id" else "time"
    return "time" if _one_finalized_state(flt) else "id"


def windowed(flt: JobFilter, column: str) -> str | None:
    """Why a list of ``flt`` ordered by ``column`` reads a bounded window of ids per page
    (:data:`SCAN_WINDOW`), or None when an index serves it. A filter no index finds
    (:meth:`JobFilter.scan_limited`); or one finalized state by id: its rows are found by state
    but no index returns them in id order, and the backward scan of the primary key would step
    over every newer job of the other states (all of a burst of available jobs) on each page."""
    if flt.scan_limited():
        return "no index finds the jobs of this filter"
    if column == "id" and _one_finalized_state(flt):
        return (
            f"no index returns {flt.states[0].value} jobs in id order (the time order does: "
            "it is the default)"
        )
    return None


@dataclass(frozen=True, slots=True)
class JobSummary:
    """A row of the job list: the job (``encoded_args`` holds a preview of the args, at most
    the preview length; ``errors`` only the last error; ``metadata`` empty) and how many
    errors it has."""

    row: JobRow
    error_count: int
    args_truncated: bool


@dataclass(frozen=True, slots=True)
class JobPage:
    """A page of the job list and the cursor of the next one (None on the last page).

    ``sort_column`` is the order used (``"id"`` or a time column), ``sort_note`` why it is not
    the time order asked for. ``searched`` is the range of ids (low, high) a bounded scan read
    (None when the filter is served by an index), ``searched_why`` why it is bounded (see
    :func:`windowed`): a page of a text search may hold fewer rows than asked, or none, and
    still have a next page (the older ids)."""

    jobs: list[JobSummary]
    next_cursor: str | None
    now: datetime
    sort_column: str = "id"
    sort_note: str | None = None
    searched: tuple[int, int] | None = None
    searched_why: str | None = None


def _id_cursor(job_id: int) -> str:
    """A cursor of the id order positioned at ``job_id`` (the edge of a scanned window)."""
    edge = JobRow(
        id=job_id, kind="", queue="", state=JobState.AVAILABLE, encoded_args="{}", attempt=0,
        max_attempts=0, priority=1, created_at=_ZERO_TIME, scheduled_at=_ZERO_TIME,
    )  # fmt: skip
    return encode_cursor(edge, "id")


def id_bounds_op(q: UIQueries) -> Op[tuple[int, int] | None]:
    """The lowest and highest job id (None when the table is empty)."""
    row = yield Query(q.ui_id_bounds, fetch="one")
    if row is None or row[0] is None:
        return None
    return int(row[0]), int(row[1])


def job_page_op(
    q: UIQueries,
    flt: JobFilter,
    *,
    sort: Sort | None = "id",
    descending: bool = True,
    limit: int = 50,
    after: str | None = None,
    preview: int = 240,
    window: int | None = None,
) -> Op[JobPage]:
    """A page of jobs matching ``flt`` in ``sort`` order (``"id"``, or ``"time"`` where an
    index serves it: see :func:`list_order`; ties by id; None: :func:`default_sort`), after the
    cursor ``after`` (River (Go)'s cursor format, from :func:`river._admin.encode_cursor`).

    Keyset pagination: the cursor's position goes into the WHERE clause, so a page deep into
    the table costs what the first one does (the order's index is read from that position).
    A filter no index serves (:meth:`JobFilter.scan_limited`) reads at most ``window`` ids
    from the cursor (default :data:`SCAN_WINDOW`): when they hold less than a page, the next
    cursor continues beyond them; so does one finalized state by id (see :func:`windowed`)."""
    window = SCAN_WINDOW if window is None else window
    if sort is None:
        sort = default_sort(flt, after)
    where, args = flt.conditions(q)
    op = sql.SQL("<" if descending else ">")
    direction = sql.SQL("DESC" if descending else "ASC")
    column_name, note = list_order(flt, sort)
    column: sql.Composable = (
        q.fragment("ui_column_attempted_at")
        if column_name == "attempted_at"
        else sql.Identifier(column_name)
    )
    if column_name == "finalized_at":
        where.append(q.fragment("ui_filter_finalized"))
    cursor_id: int | None = None
    if after:
        cursor = decode_cursor(after)
        if cursor.get("sort_field") != column_name:
            raise ValidationError("after", "is a cursor of another order: start from page one")
        cursor_id = int(cursor["id"])
        args["cursor_id"] = cursor_id
        if column_name == "id":
            where.append(q.compose("ui_after_id", op=op))
        else:
            cursor_time: datetime = cursor["time"]
            args["cursor_time"] = "infinity" if cursor_time == _ZERO_TIME else cursor_time
            where.append(q.compose("ui_after_time", column=column, op=op))
    searched: tuple[int, int] | None = None
    edge: int | None = None  # where the next window starts, when there are ids beyond this one
    why = windowed(flt, column_name)
    if why is not None:
        bounds = yield from id_bounds_op(q)
        if bounds is None:
            pass  # an empty table: nothing to read, no window
        elif descending:
            high = bounds[1] if cursor_id is None else min(bounds[1], cursor_id - 1)
            low = max(bounds[0], high - window + 1)
            searched = (low, high)
            args["window_low"] = low
            where.append(q.fragment("ui_window_from"))
            edge = low if low > bounds[0] else None
        else:
            low = bounds[0] if cursor_id is None else max(bounds[0], cursor_id + 1)
            high = min(bounds[1], low + window - 1)
            searched = (low, high)
            args["window_high"] = high
            where.append(q.fragment("ui_window_to"))
            edge = high if high < bounds[1] else None
        if searched is not None and searched[0] > searched[1]:
            searched, edge = None, None  # past either end: nothing left to read
    if column_name == "id":
        order = q.compose("ui_order_id", direction=direction)
    else:
        order = q.compose("ui_order_time", column=column, direction=direction)
    conditions = sql.SQL(" AND ").join(where or [q.fragment("ui_filter_none")])
    # One row more than asked: whether there is a next page, without a count.
    args["limit"] = limit + 1
    args["preview"] = preview + 1
    rows = yield Query(q.compose("ui_job_list", where=conditions, order=order), args)
    now_row = yield Query(q.ui_now, fetch="one")
    jobs = []
    for r in rows[:limit]:
        args_text: str = r[4] or ""
        truncated = len(args_text) > preview
        row = job_from_row([*r[:4], args_text[:preview], *r[5:18]])
        jobs.append(JobSummary(row, int(r[18]), truncated))
    more = len(rows) > limit
    next_cursor = encode_cursor(jobs[-1].row, column_name) if jobs and more else None
    if next_cursor is None and edge is not None:
        next_cursor = _id_cursor(edge)
    return JobPage(
        jobs, next_cursor, now_row[0], column_name, note, searched,
        why if searched is not None else None,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class MatchCount:
    """How many jobs match a filter among the ids a count read, and the highest id among them
    (None when none do). ``below`` is None when the count is complete; otherwise the ids below
    it are still to be counted (a filter no index serves is counted window by window, in
    several calls). ``searched``: the ids (low, high) this call read, when windowed."""

    count: int
    max_id: int | None
    below: int | None = None
    searched: tuple[int, int] | None = None


def count_op(
    q: UIQueries,
    flt: JobFilter,
    *,
    below: int | None = None,
    windows: int | None = None,
    window: int | None = None,
) -> Op[MatchCount]:
    """How many jobs match ``flt`` with an id below ``below`` (None: any), and the highest id
    among them.

    A filter an index serves is counted in one statement. One no index serves (a text or tag
    search: :meth:`JobFilter.scan_limited`) would read the whole table: it is counted newest
    first in at most ``windows`` windows of ``window`` ids (defaults :data:`COUNT_WINDOWS`,
    :data:`SCAN_WINDOW`), one statement each, and the answer's ``below`` says where the next
    call goes on."""
    window = SCAN_WINDOW if window is None else window
    windows = COUNT_WINDOWS if windows is None else windows
    if not flt.scan_limited():
        where, args = flt.conditions(q)
        if below is not None:
            where.append(q.fragment("ui_window_to"))
            args["window_high"] = below - 1
        conditions = sql.SQL(" AND ").join(where or [q.fragment("ui_filter_none")])
        row = yield Query(q.compose("ui_job_count", where=conditions), args, fetch="one")
        return MatchCount(int(row[0]), row[1])
    bounds = yield from id_bounds_op(q)
    if bounds is None:
        return MatchCount(0, None)
    high = bounds[1] if below is None else min(bounds[1], below - 1)
    if high < bounds[0]:
        return MatchCount(0, None)
    total = 0
    max_id: int | None = None
    top = low = high
    for _ in range(max(1, windows)):
        low = max(bounds[0], high - window + 1)
        where, args = flt.conditions(q)
        where += [q.fragment("ui_window_from"), q.fragment("ui_window_to")]
        args.update(window_low=low, window_high=high)
        conditions = sql.SQL(" AND ").join(where)
        row = yield Query(q.compose("ui_job_count", where=conditions), args, fetch="one")
        total += int(row[0])
        if max_id is None and row[1] is not None:
            max_id = int(row[1])
        if low <= bounds[0]:
            break
        high = low - 1
    return MatchCount(total, max_id, low if low > bounds[0] else None, (low, top))


def count_upto_op(
    q: UIQueries, flt: JobFilter, *, max_id: int, limit: int, after_id: int = 0
) -> Op[int]:
    """How many jobs match ``flt`` with an id in ``(after_id, max_id]``, counting at most
    ``limit``."""
    where, args = flt.conditions(q)
    if after_id > 0:
        where.append(q.fragment("ui_window_from"))
        args["window_low"] = after_id + 1
    conditions = sql.SQL(" AND ").join(where or [q.fragment("ui_filter_none")])
    args.update(max_id=max_id, limit=limit)
    row = yield Query(q.compose("ui_job_count_upto", where=conditions), args, fetch="one")
    return int(row[0])


def matching_ids_op(
    q: UIQueries, flt: JobFilter, *, after_id: int, upper_id: int, limit: int
) -> Op[list[int]]:
    """The next ``limit`` ids matching ``flt`` in ``(after_id, upper_id]``, ascending."""
    where, args = flt.where(q)
    args.update(after_id=after_id, upper_id=upper_id, limit=limit)
    rows = yield Query(q.compose("ui_job_ids", where=where), args)
    return [r[0] for r in rows]


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What one bulk statement did: the ids it changed, and (retry) the ids it left alone
    because another job holds their unique key."""

    changed: list[int]
    conflicts: list[int] = field(default_factory=list)


def bulk_op(
    q: UIQueries,
    action: BulkAction,
    ids: Sequence[int],
    now: datetime,
    flt: JobFilter | None = None,
) -> Op[BulkResult]:
    """Retry, cancel or delete the jobs ``ids`` that still match ``flt`` (when given) in one
    statement, with the rules of the single-job admin calls (see river/_sql/ui.sql)."""
    if not ids:
        return BulkResult([])
    where, params = (flt or JobFilter()).where(q)
    params["batch"] = list(ids)
    if action == "retry":
        name = "ui_job_retry_many"
    elif action == "cancel":
        name = "ui_job_cancel_many"
        params["now"] = _rfc3339(now)
        params["schema"] = q.schema
    else:
        name = "ui_job_delete_many"
    rows = yield Query(q.compose(name, where=where), params)
    return BulkResult(
        sorted(int(r[0]) for r in rows if not r[1]), sorted(int(r[0]) for r in rows if r[1])
    )


def _rfc3339(value: datetime) -> str:
    """``cancel_attempted_at`` as River (Go) writes it: RFC 3339 in UTC, fraction trimmed."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{value.microsecond:06d}".rstrip("0")
    return f"{text}.{frac}Z" if frac else f"{text}Z"


# --------------------------------------------------------------------------------------------
# Overview
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counts:
    """Jobs per queue and state (every queue with at least one job), and per state. A count
    that reached :data:`COUNT_CAP` in one queue is a lower bound: its state is in ``capped``
    (and in ``capped_by_queue[queue]``)."""

    by_queue: dict[str, dict[str, int]]
    by_state: dict[str, int]
    capped_by_queue: dict[str, list[str]] = field(default_factory=dict)
    capped: list[str] = field(default_factory=list)
    cap: int = COUNT_CAP

    @property
    def total(self) -> int:
        """All jobs (at least, when a count is capped)."""
        return sum(self.by_state.values())


def _empty_states() -> dict[str, int]:
    return {s.value: 0 for s in DISPLAY_STATES}


def counts_op(q: UIQueries, *, cap: int | None = None) -> Op[Counts]:
    """Counts of river_job by queue and state, each at most ``cap`` (default
    :data:`COUNT_CAP`; see ``ui_counts``): exact below it, so exact on any table of fewer
    rows."""
    cap = COUNT_CAP if cap is None else cap
    rows = yield Query(q.ui_counts, {"count_limit": cap + 1, "max_pairs": MAX_COUNT_PAIRS})
    by_queue: dict[str, dict[str, int]] = {}
    by_state = _empty_states()
    capped_by_queue: dict[str, list[str]] = {}
    for queue, state, count in rows:
        n = min(int(count), cap)
        by_queue.setdefault(queue, _empty_states())[state] = n
        by_state[state] = by_state.get(state, 0) + n
        if int(count) > cap:
            capped_by_queue.setdefault(queue, []).append(state)
    capped = sorted({s for states in capped_by_queue.values() for s in states})
    return Counts(
        dict(sorted(by_queue.items())), by_state, dict(sorted(capped_by_queue.items())), capped, cap
    )


@dataclass(frozen=True, slots=True)
class Leader:
    """The row of river_leader: the client elected to run maintenance."""

    leader_id: str
    elected_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ActiveClient:
    """A client seen working jobs (see ``ui_active_clients``)."""

    client_id: str
    running: int
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview page's figures, read in one connection checkout."""

    counts: Counts
    leader: Leader | None
    clients: list[ActiveClient]
    now: datetime


def overview_op(q: UIQueries, runtime: Queries, *, client_minutes: int = 5) -> Op[Overview]:
    """Counts, the leader and the clients seen in the last ``client_minutes`` minutes."""
    counts = yield from counts_op(q)
    leader_row = yield Query(runtime.leader_get, fetch="one")
    client_rows = yield Query(q.ui_active_clients, {"minutes": client_minutes})
    now_row = yield Query(q.ui_now, fetch="one")
    leader = Leader(*leader_row) if leader_row is not None else None
    clients = [ActiveClient(r[0], int(r[1]), r[2]) for r in client_rows]
    return Overview(counts, leader, clients, now_row[0])


@dataclass(frozen=True, slots=True)
class Throughput:
    """Jobs per minute over a window: ``series[name][i]`` is minute ``since + i``."""

    since: datetime
    minutes: int
    series: dict[str, list[int]] = field(default_factory=dict)


#: The series of :func:`throughput_op`, in the order the chart draws them.
SERIES = ("completed", "failed", "discarded", "cancelled")


def throughput_op(q: UIQueries, *, minutes: int = 60, queue: str | None = None) -> Op[Throughput]:
    """Completed, failed (attempts that errored), discarded and cancelled jobs per minute over
    the last ``minutes`` minutes of the database clock (the current minute included)."""
    params = {"minutes": minutes, "queue": queue}
    rows = yield Query(q.ui_throughput, params)
    failures = yield Query(q.ui_failures, params)
    series = {name: [0] * minutes for name in SERIES}
    since = next((r[0] for r in rows if r[1] == "since"), datetime.now(UTC))

    def index(minute: datetime) -> int:
        return int((minute - since).total_seconds() // 60)

    for minute, name, count in rows:
        if name != "since" and 0 <= index(minute) < minutes:
            series[name][index(minute)] = int(count)
    for minute, count in failures:
        if 0 <= index(minute) < minutes:
            series["failed"][index(minute)] = int(count)
    return Throughput(since, minutes, series)


def now_op(q: UIQueries) -> Op[datetime]:
    """The database clock (the dashboard shows times relative to it, not to the browser's)."""
    row = yield Query(q.ui_now, fetch="one")
    now: datetime = row[0]
    return now


def kinds_op(q: UIQueries, limit: int = 500) -> Op[list[str]]:
    """Distinct job kinds, in order (at most ``limit``)."""
    rows = yield Query(q.ui_kinds, {"limit": limit})
    return [r[0] for r in rows]


@dataclass(frozen=True, slots=True)
class PeriodicRun:
    """Periodic jobs found in river_job, by periodic job id (None: inserted without one)."""

    periodic_id: str | None
    kind: str
    queue: str
    count: int
    last_created_at: datetime
    last_job_id: int


def periodic_runs_op(q: UIQueries) -> Op[list[PeriodicRun]]:
    """The periodic jobs seen in the table (see ``ui_periodic_runs``)."""
    rows = yield Query(q.ui_periodic_runs)
    return [PeriodicRun(r[0], r[1], r[2], int(r[3]), r[4], int(r[5])) for r in rows]
