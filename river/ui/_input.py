"""Parsing the JSON API's input: query parameters and JSON bodies in, typed values out, or
:class:`BadRequest` naming the field (HTTP 400). Pure: no Starlette, no database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from river._admin import decode_cursor
from river._errors import ValidationError
from river._types import JobState
from river.ui._data import BulkAction, JobFilter, search_document

__all__ = [
    "MAX_BULK_IDS",
    "BadRequest",
    "BulkRequest",
    "CountRequest",
    "ListRequest",
    "Params",
    "check_text",
    "parse_bulk",
    "parse_count",
    "parse_filter",
    "parse_job_id",
    "parse_list",
    "parse_minutes",
    "parse_queue",
    "parse_queue_name",
    "parse_settings",
]

#: Query parameters as lists of values: ``?state=a&state=b`` and ``?state=a,b`` alike.
Params = Mapping[str, Sequence[str]]

#: The most ids a bulk request may name (a selection); "all matching" has no such limit.
MAX_BULK_IDS = 10_000
_MAX_INT64 = 2**63 - 1
#: The largest ``count`` a bulk request may confirm: the action counts up to ``count + 1``
#: (a bigint), so one less than the largest bigint.
MAX_BULK_COUNT = _MAX_INT64 - 1
_STATE_NAMES = ", ".join(s.value for s in JobState)


class BadRequest(Exception):
    """Input the API refuses: answered 400 with ``{"error": message, "field": field}``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_text(field: str, text: str) -> str:
    """``text`` when Postgres can take it as a text value; else :class:`BadRequest` naming
    ``field`` and the rule: no NUL character (Postgres text cannot hold one), and no lone
    surrogate (a ``\\ud800`` escape of a JSON body: not Unicode text, UTF-8 cannot encode it)."""
    if "\x00" in text:
        raise BadRequest(
            field, "must not contain a NUL character (U+0000): Postgres text cannot hold it"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            field, "must be Unicode text: a lone surrogate (such as \\ud800) is not"
        ) from None
    return text


def _values(params: Params, name: str) -> list[str]:
    out: list[str] = []
    for raw in params.get(name, ()):
        out.extend(part.strip() for part in check_text(name, str(raw)).split(","))
    return [v for v in out if v]


def _int(field: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise BadRequest(field, f"{text!r} is not an integer") from None
    if not low <= value <= high:
        raise BadRequest(field, f"must be between {low} and {high}, got {value}")
    return value


def parse_job_id(text: str, field: str = "id") -> int:
    """A job id: a positive 64-bit integer."""
    return _int(field, text, 1, _MAX_INT64)


def _states(values: Sequence[str]) -> tuple[JobState, ...]:
    states = []
    for v in values:
        try:
            states.append(JobState(v.lower()))
        except ValueError:
            raise BadRequest("state", f"{v!r} is not a job state (one of {_STATE_NAMES})") from None
    return tuple(dict.fromkeys(states))


def parse_filter(params: Params) -> JobFilter:
    """The job filter of ``state``, ``kind``, ``queue``, ``priority``, ``id``, ``tag`` and
    ``q`` (free text, or a JSON object)."""
    text = check_text("q", " ".join(params.get("q", ())).strip())
    if len(text) > 1000:
        raise BadRequest("q", "must be at most 1000 characters")
    try:
        search_document(text)  # a JSON object jsonb cannot hold is refused here, not by SQL
    except ValidationError as exc:
        raise BadRequest(exc.field, exc.rule) from None
    for name in ("kind", "queue", "tag"):
        for v in _values(params, name):
            if len(v) > 255:
                raise BadRequest(name, "values must be at most 255 characters")
    return JobFilter(
        ids=tuple(parse_job_id(v) for v in _values(params, "id")),
        kinds=tuple(_values(params, "kind")),
        queues=tuple(_values(params, "queue")),
        states=_states(_values(params, "state")),
        priorities=tuple(_int("priority", v, 1, 4) for v in _values(params, "priority")),
        tags=tuple(_values(params, "tag")),
        text=text,
    )


@dataclass(frozen=True, slots=True)
class ListRequest:
    """A request for a page of the job list (``sort`` None: the filter's default order, see
    :func:`river.ui._data.default_sort`)."""

    filter: JobFilter
    sort: Literal["id", "time"] | None
    descending: bool
    limit: int
    after: str | None


def _one(params: Params, name: str) -> str | None:
    values = [v for v in params.get(name, ()) if v != ""]
    if len(values) > 1:
        raise BadRequest(name, "give it once")
    return values[0] if values else None


def parse_list(params: Params) -> ListRequest:
    """``GET /api/jobs``: the filter, ``sort`` (id, time; absent: the filter's default),
    ``order`` (desc, asc), ``limit`` (1 to 500, default 50) and ``after`` (a cursor from a
    previous page)."""
    sort = _one(params, "sort")
    if sort is not None and sort not in ("id", "time"):
        raise BadRequest("sort", f"must be id or time, got {sort!r}")
    order = _one(params, "order") or "desc"
    if order not in ("asc", "desc"):
        raise BadRequest("order", f"must be asc or desc, got {order!r}")
    limit_text = _one(params, "limit")
    limit = _int("limit", limit_text, 1, 500) if limit_text is not None else 50
    after = _one(params, "after")
    if after is not None:
        try:
            decode_cursor(after)
        except ValidationError as exc:
            raise BadRequest("after", exc.rule) from None
    return ListRequest(
        parse_filter(params),
        cast(Literal["id", "time"] | None, sort),
        order == "desc",
        limit,
        after,
    )


@dataclass(frozen=True, slots=True)
class CountRequest:
    """``GET /api/jobs/count``: the filter, and where an earlier call of the same count stopped
    (its ``next``): the ids below ``below`` are still to be counted; ``count_before`` jobs
    matched above it, the highest of them ``max_id_before`` (0: none)."""

    filter: JobFilter
    below: int | None = None
    count_before: int = 0
    max_id_before: int = 0


def parse_count(params: Params) -> CountRequest:
    """The filter, plus ``below``, ``count_before`` and ``max_id_before`` (the ``next`` of the
    previous answer) to go on with a count."""
    flt = parse_filter(params)
    below_text = _one(params, "below")
    below = parse_job_id(below_text, "below") if below_text is not None else None
    before_text = _one(params, "count_before")
    max_text = _one(params, "max_id_before")
    if below is None and (before_text is not None or max_text is not None):
        raise BadRequest(
            "below", "give it with count_before and max_id_before (the next of the answer)"
        )
    before = _int("count_before", before_text, 0, MAX_BULK_COUNT) if before_text else 0
    max_before = _int("max_id_before", max_text, 0, _MAX_INT64) if max_text else 0
    if max_before and max_before < (below or 0):
        raise BadRequest(
            "max_id_before", "must be 0 or at least below (the ids counted so far are above it)"
        )
    return CountRequest(flt, below, before, max_before)


def parse_queue(params: Params) -> str | None:
    """The one ``queue`` of a throughput or counts request (None: every queue)."""
    text = _one(params, "queue")
    return check_text("queue", text) if text is not None else None


def parse_queues(params: Params) -> list[str]:
    """The ``queue`` values of a counts request, as the job list reads them (repeated, or
    comma-separated): several queues' counts are added up (empty: every queue)."""
    return list(dict.fromkeys(_values(params, "queue")))


def parse_queue_name(text: str, field: str = "name") -> str:
    """A queue's name from the path or ``?name=``: given, and text Postgres can hold (River's
    own rules for a name are the admin calls', which answer "no such queue" for the rest), and
    not ``"*"``, which the admin calls read as every queue."""
    if not text:
        raise BadRequest(field, "give the queue's name")
    if text == "*":
        # The admin calls read "*" as every queue; the dashboard acts on one queue at a time.
        raise BadRequest(field, "'*' is not a queue's name: give one queue")
    return check_text(field, text)


def parse_minutes(params: Params) -> int:
    """``minutes`` of a throughput window: 1 to 1440 (a day), default 60."""
    text = _one(params, "minutes")
    return _int("minutes", text, 1, 1440) if text is not None else 60


def _body_params(value: Any) -> dict[str, list[str]]:
    """A filter sent as a JSON object (``{"state": ["discarded"], "kind": "email"}``) in the
    shape of query parameters."""
    if not isinstance(value, Mapping):
        raise BadRequest("filter", "must be a JSON object")
    out: dict[str, list[str]] = {}
    for key, item in value.items():
        if key not in ("state", "kind", "queue", "priority", "id", "tag", "q"):
            raise BadRequest(f"filter.{key}", "is not a filter")
        items = item if isinstance(item, list) else [item]
        for element in items:
            if isinstance(element, bool) or not isinstance(element, str | int):
                raise BadRequest(f"filter.{key}", "must be a string, a number or a list of them")
        out[str(key)] = [str(element) for element in items]
    return out


@dataclass(frozen=True, slots=True)
class BulkRequest:
    """``POST /api/jobs/bulk``: an action over a selection of ids, or over the jobs matching
    a filter up to ``max_id`` (the highest id when the count was shown), never more than
    ``count`` (the count confirmed), going on from ``after_id`` where an earlier call of the
    same action stopped (``matched_before``: the jobs that call and those before it matched).
    Before the first change, a filter no index serves is checked against ``count`` window by
    window, over several calls: ``checked_id`` is where that check stopped, ``checked`` the
    jobs it found up to there."""

    action: BulkAction
    ids: tuple[int, ...] | None
    filter: JobFilter | None
    max_id: int | None
    count: int | None = None
    after_id: int = 0
    matched_before: int = 0
    checked_id: int = 0
    checked: int = 0


def _count_field(
    body: Mapping[str, Any],
    name: str,
    message: str,
    default: int | None,
    high: int = _MAX_INT64,
) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(name, message)
    if value > high:
        raise BadRequest(name, f"must be at most {high}, got {value} ({message})")
    return value


def parse_bulk(body: Any) -> BulkRequest:
    """``{"action": "retry"|"cancel"|"delete", "ids": [...]}`` or ``{"action": ...,
    "filter": {...}, "max_id": n, "count": n}``, plus ``after_id`` and ``matched_before`` (the
    ``next`` of the previous answer, with ``checked_id`` and ``checked`` while the count is
    being checked) to go on."""
    if not isinstance(body, Mapping):
        raise BadRequest("body", "must be a JSON object")
    action = body.get("action")
    if action not in ("retry", "cancel", "delete"):
        raise BadRequest("action", "must be retry, cancel or delete")
    has_ids, has_filter = "ids" in body, "filter" in body
    if has_ids == has_filter:
        raise BadRequest("ids", "give either ids or filter (with max_id and count)")
    if has_ids:
        ids = body["ids"]
        if not isinstance(ids, list) or not ids:
            raise BadRequest("ids", "must be a non-empty list of job ids")
        if len(ids) > MAX_BULK_IDS:
            raise BadRequest("ids", f"at most {MAX_BULK_IDS} ids; use a filter for more")
        parsed = []
        for value in ids:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise BadRequest("ids", f"{value!r} is not a job id")
            parsed.append(parse_job_id(str(value), "ids"))
        return BulkRequest(action, tuple(dict.fromkeys(parsed)), None, None)
    flt = parse_filter(_body_params(body["filter"]))
    max_id = _count_field(
        body, "max_id", "must be the max_id of the count confirmed (GET /api/jobs/count)", None
    )
    count = _count_field(
        body,
        "count",
        "must be the number of jobs confirmed (GET /api/jobs/count)",
        None,
        MAX_BULK_COUNT,
    )
    after_id = _count_field(body, "after_id", "must be the after_id of the previous answer", 0)
    before = _count_field(
        body, "matched_before", "must be the matched_before of the previous answer", 0
    )
    if after_id > max_id:
        raise BadRequest("after_id", "cannot be past max_id")
    if before > count:
        raise BadRequest("matched_before", "cannot be more than the count confirmed")
    checked_id = _count_field(
        body, "checked_id", "must be the checked_id of the previous answer", 0
    )
    checked = _count_field(body, "checked", "must be the checked of the previous answer", 0)
    if checked_id > max_id:
        raise BadRequest("checked_id", "cannot be past max_id")
    if checked > count:
        raise BadRequest("checked", "cannot be more than the count confirmed")
    return BulkRequest(action, None, flt, max_id, count, after_id, before, checked_id, checked)


#: The cluster-wide settings a queue's settings form may set or clear.
SETTINGS = ("max_workers", "fetch_cooldown", "fetch_poll_interval")


def parse_settings(body: Any) -> dict[str, Any]:
    """``POST /api/queues/{name}/settings``: ``{"max_workers": 5, "fetch_cooldown": 0.1,
    "fetch_poll_interval": 2, "clear": ["fetch_cooldown"]}`` (each optional; values are
    checked by :meth:`AsyncClient.queue_update`) as its keyword arguments."""
    if not isinstance(body, Mapping):
        raise BadRequest("body", "must be a JSON object")
    unknown = set(body) - {*SETTINGS, "clear"}
    if unknown:
        raise BadRequest(sorted(unknown)[0], "is not a queue setting")
    out: dict[str, Any] = {}
    for name in SETTINGS:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(name, f"must be a number, got {value!r}")
        if name == "max_workers" and not isinstance(value, int):
            if not float(value).is_integer():
                raise BadRequest(name, f"must be an integer, got {value!r}")
            value = int(value)
        out[name] = value
    clear = body.get("clear", [])
    if isinstance(clear, str):
        clear = [clear]
    if not isinstance(clear, list) or any(c not in SETTINGS for c in clear):
        raise BadRequest("clear", f"must list settings among {', '.join(SETTINGS)}")
    if set(clear) & set(out):
        raise BadRequest("clear", "a setting cannot be set and cleared at once")
    if clear:
        out["clear"] = list(clear)
    if not out:
        raise BadRequest("body", "nothing to change: give a setting or clear")
    return out
