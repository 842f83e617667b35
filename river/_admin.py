"""Admin operations on jobs and queues (PROTOCOL.md 10 and 13), written once as operations
(river/_sansio.py) for both clients."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from psycopg import sql

from river._driver import Queries, QueueRow, job_from_row, notify_op, queue_from_row
from river._errors import (
    JobNotFoundError,
    JobNotRunningError,
    JobRunningError,
    QueueNotFoundError,
    UniqueConflictError,
    ValidationError,
)
from river._gojson import encode_value
from river._insert import validate_queue_name
from river._queue_override import METADATA_KEY, settings_patch, validate_patch
from river._ratelimit import RateLimit
from river._sansio import Op, Query
from river._types import JobRow, JobState, parse_time
from river._validate import DEFAULT_MAX_ENCODED_SIZE, MAX_ENCODED_SIZE_LIMIT, encode_json_value
from river._validate import MAX_OUTPUT_BYTES as _MAX_OUTPUT_BYTES

__all__ = [
    "JobListParams",
    "JobListResult",
    "decode_cursor",
    "encode_cursor",
]

#: Postgres refuses NOTIFY payloads of 8000 bytes or more.
_MAX_NOTIFY_BYTES = 8000

OrderBy = Literal["id", "time", "scheduled_at", "finalized_at", "created_at", "attempted_at"]
_FINALIZED = frozenset({JobState.CANCELLED, JobState.COMPLETED, JobState.DISCARDED})
_ZERO_TIME = "0001-01-01T00:00:00Z"
_ZERO_DATETIME = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class JobListParams:
    """Filters, order and page of :meth:`AsyncClient.job_list` (all filters are AND-ed).

    - ``ids``, ``kinds``, ``queues``, ``states``, ``priorities``: match any of the values.
    - ``tags_all``: the job has every one of these tags; ``tags_any``: at least one.
    - ``metadata``: a JSON object the job's metadata contains (jsonb ``@>``).
    - ``order_by``: ``"id"`` (default), ``"time"`` (scheduled_at for available, pending,
      retryable and scheduled; attempted_at for running; finalized_at for finalized states,
      chosen by the first state filter), ``"scheduled_at"``, ``"created_at"``,
      ``"attempted_at"`` or ``"finalized_at"`` (only when every state filtered on is finalized).
    - ``descending``: order direction (default ascending). Ties are broken by id.
    - ``limit``: 1 to 10,000 (default 100).
    - ``after``: a cursor from a previous :class:`JobListResult` to get the next page.
    """

    ids: Sequence[int] | None = None
    kinds: Sequence[str] | None = None
    queues: Sequence[str] | None = None
    states: Sequence[JobState | str] | None = None
    priorities: Sequence[int] | None = None
    tags_all: Sequence[str] | None = None
    tags_any: Sequence[str] | None = None
    metadata: Mapping[str, Any] | None = None
    order_by: OrderBy = "id"
    descending: bool = False
    limit: int = 100
    after: str | None = None


@dataclass(frozen=True, slots=True)
class JobListResult:
    """A page of jobs and the cursor of its last row (None when the page is empty)."""

    jobs: list[JobRow]
    cursor: str | None


def _sort_column(params: JobListParams, states: list[JobState]) -> str:
    order = params.order_by
    if order == "id":
        return "id"
    if order == "time":
        first = states[0] if states else JobState.AVAILABLE
        if first is JobState.RUNNING:
            return "attempted_at"
        if first in _FINALIZED:
            return "finalized_at"
        return "scheduled_at"
    if order == "finalized_at" and (not states or any(s not in _FINALIZED for s in states)):
        raise ValidationError(
            "order_by", "finalized_at is only allowed when every state filtered on is finalized"
        )
    if order not in ("scheduled_at", "finalized_at", "created_at", "attempted_at"):
        raise ValidationError("order_by", f"unknown order {order!r}")
    return order


def encode_cursor(row: JobRow, sort_field: str, column: str | None = None) -> str:
    """River (Go)'s cursor text: URL-safe base64 (padded) of a small JSON object, encoded as
    Go's encoding/json does. ``sort_field`` is the order asked for (``"time"`` stays
    ``"time"``, as River (Go) writes it); ``column`` is the column holding the row's sort value
    (default: ``sort_field``). A null value is written as the zero time."""
    value = None if sort_field == "id" else getattr(row, column or sort_field)
    time_text = _rfc3339_nano(value) if isinstance(value, datetime) else _ZERO_TIME
    payload = {
        "id": row.id,
        "kind": row.kind,
        "queue": row.queue,
        "sort_field": sort_field,
        "time": time_text,
    }
    return base64.urlsafe_b64encode(encode_value(payload).encode()).decode()


def _rfc3339_nano(value: datetime) -> str:
    value = value.astimezone(UTC)
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{value.microsecond:06d}000".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def decode_cursor(text: str) -> dict[str, Any]:
    """Decode a cursor (accepts the URL-safe and the standard base64 alphabets)."""
    try:
        raw = text.strip()
        padded = raw + "=" * (-len(raw) % 4)
        alt = padded.replace("-", "+").replace("_", "/")
        data = json.loads(base64.b64decode(alt, validate=True))
        if not isinstance(data, dict) or type(data.get("id")) is not int:
            raise ValueError("not a cursor object")
        if not 0 <= data["id"] <= _BIGINT_MAX:
            raise ValueError("its id is not a job id")
        time_text = data.get("time", _ZERO_TIME)
        if not isinstance(time_text, str):
            raise ValueError("time is not a string")
        data["time"] = parse_time(time_text)
        return data
    except (ValueError, binascii.Error) as exc:
        raise ValidationError("after", f"is not a valid job list cursor ({exc})") from None
    except RecursionError:  # JSON nested deeper than the parser goes
        raise ValidationError(
            "after", "is not a valid job list cursor (nested too deeply)"
        ) from None


_BIGINT_MAX = 2**63 - 1


def _is_job_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _BIGINT_MAX


def _is_priority(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4


def _is_str(value: object) -> bool:
    return isinstance(value, str)


#: Per filter: whether a value is acceptable, and the rule it must follow.
_FILTER_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "ids": (_is_job_id, "job ids (integers >= 1)"),
    "kinds": (_is_str, "strings"),
    "queues": (_is_str, "strings"),
    "priorities": (_is_priority, "priorities (integers 1 to 4)"),
    "tags_all": (_is_str, "strings"),
    "tags_any": (_is_str, "strings"),
}


def _collection(name: str, values: object, what: str = "values") -> list[Any]:
    """``values`` as a list, once it is a collection: a lone string would be taken as its
    characters (``queues="default"`` matched queues "d", "e", ...)."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise ValidationError(
            name, f"must be a list of {what}, not a single {type(values).__name__}"
        )
    return list(values)


def _filter_values(name: str, values: object) -> list[Any]:
    """``values`` as a list (:func:`_collection`) of values the filter's rule accepts
    (:data:`_FILTER_RULES`)."""
    out = _collection(name, values)
    accepts, rule = _FILTER_RULES[name]
    for value in out:
        if not accepts(value):
            raise ValidationError(name, f"must hold {rule}, got {value!r}")
    return out


class _Filters:
    """The WHERE conditions of a job list or bulk delete, composed from the ``job_filter_*``
    fragments of river/_sql/job.sql, and their parameters."""

    def __init__(self, q: Queries) -> None:
        self._q = q
        self.where: list[sql.Composable] = []
        self.args: dict[str, Any] = {}

    def add(self, name: str, values: object) -> None:
        """Match any of ``values`` (no filter when None or empty); ValidationError naming the
        filter when it is not a collection of acceptable values."""
        if values is None:
            return
        checked = _filter_values(name, values)
        if checked:
            self.condition(name, checked)

    def condition(self, name: str, value: Any) -> None:
        """Add fragment ``job_filter_<name>``, whose parameter ``name`` is ``value``."""
        self.where.append(self._q.fragment(f"job_filter_{name}"))
        self.args[name] = value

    def conditions(self) -> sql.Composable:
        """The conditions AND-ed (``job_filter_none`` when there is none)."""
        return sql.SQL(" AND ").join(self.where or [self._q.fragment("job_filter_none")])


def _job_states(states: object) -> list[JobState]:
    """The ``states`` filter checked (a collection of job states or their names)."""
    if states is None:
        return []
    out: list[JobState] = []
    for s in _collection("states", states, "job states"):
        try:
            out.append(JobState(s))
        except ValueError:
            names = ", ".join(state.value for state in JobState)
            raise ValidationError("states", f"{s!r} is not a job state ({names})") from None
    return out


def job_list_op(q: Queries, params: JobListParams) -> Op[JobListResult]:
    """List jobs (see :class:`JobListParams`)."""
    if isinstance(params.limit, bool) or not 1 <= params.limit <= 10_000:
        raise ValidationError("limit", "must be between 1 and 10000")
    states = _job_states(params.states)
    sort = _sort_column(params, states)
    filters = _Filters(q)
    filters.add("ids", params.ids)
    filters.add("kinds", params.kinds)
    filters.add("queues", params.queues)
    if states:
        filters.condition("states", [s.value for s in states])
    filters.add("priorities", params.priorities)
    filters.add("tags_all", params.tags_all)
    filters.add("tags_any", params.tags_any)
    if params.metadata is not None:
        if not isinstance(params.metadata, Mapping):
            raise ValidationError("metadata", "must be a JSON object")
        filters.condition("metadata", encode_value(dict(params.metadata)))
    # Tokens of the order direction, composed into the job_filter_after_* / job_order_*
    # fragments of river/_sql/job.sql.
    op = sql.SQL("<" if params.descending else ">")
    direction = sql.SQL("DESC" if params.descending else "ASC")
    column = sql.Identifier(sort)
    if params.after:
        cursor = decode_cursor(params.after)
        filters.args["cursor_id"] = cursor["id"]
        if sort == "id":
            filters.where.append(q.compose("job_filter_after_id", op=op))
        else:
            # A row without a value has the zero time in its cursor: it stands for +infinity
            # (how nulls sort, see job_filter_after_time).
            cursor_time: datetime = cursor["time"]
            filters.args["cursor_time"] = (
                "infinity" if cursor_time == _ZERO_DATETIME else cursor_time
            )
            filters.where.append(q.compose("job_filter_after_time", column=column, op=op))
    if sort == "id":
        order = q.compose("job_order_id", direction=direction)
    else:
        order = q.compose("job_order_time", column=column, direction=direction)
    filters.args["limit"] = params.limit
    rows = yield Query(q.compose("job_list", where=filters.conditions(), order=order), filters.args)
    jobs = [job_from_row(r) for r in rows]
    return JobListResult(jobs, encode_cursor(jobs[-1], params.order_by, sort) if jobs else None)


def job_get_op(q: Queries, job_id: int) -> Op[JobRow]:
    """Get a job by id; JobNotFoundError when absent."""
    row = yield Query(q.job_get, {"id": job_id}, fetch="one")
    if row is None:
        raise JobNotFoundError(job_id)
    return job_from_row(row)


def job_cancel_op(q: Queries, job_id: int, now: datetime) -> Op[JobRow]:
    """Cancel a job (PROTOCOL.md 13.2): non-running, non-finalized jobs are cancelled now; a
    running job is marked and its client cancels the attempt; finalized jobs are unchanged."""
    row = yield Query(
        q.job_cancel, {"id": job_id, "now": _rfc3339_nano(now), "schema": q.schema}, fetch="one"
    )
    if row is None:
        raise JobNotFoundError(job_id)
    return job_from_row(row)


def job_retry_op(q: Queries, job_id: int) -> Op[JobRow]:
    """Make a non-running job available now (PROTOCOL.md 13.2); UniqueConflictError, with
    nothing changed, when another job holds the unique key it would take back."""
    row, _ = yield from job_retry_changed_op(q, job_id)
    return row


def job_retry_changed_op(q: Queries, job_id: int) -> Op[tuple[JobRow, bool]]:
    """:func:`job_retry_op`, and whether the row changed (False: it was running, or available
    and already due: left as it was)."""
    row = yield Query(q.job_retry, {"id": job_id}, fetch="one")
    if row is None:
        raise JobNotFoundError(job_id)
    if row[18] is not None:
        raise UniqueConflictError(job_id, int(row[18]), str(row[19]))
    return job_from_row(row), bool(row[20])


def job_delete_op(q: Queries, job_id: int) -> Op[JobRow]:
    """Delete a job that is not running; returns the deleted row."""
    row = yield Query(q.job_delete, {"id": job_id}, fetch="one")
    if row is None or row[0] is None:
        raise JobNotFoundError(job_id)
    if row[1] is None:
        raise JobRunningError(job_id, "deleted")
    return job_from_row(row[1:])


def job_delete_many_op(
    q: Queries,
    *,
    ids: Sequence[int] | None = None,
    kinds: Sequence[str] | None = None,
    queues: Sequence[str] | None = None,
    states: Sequence[JobState | str] | None = None,
    priorities: Sequence[int] | None = None,
    all: bool = False,
    limit: int | None = 100,
) -> Op[list[JobRow]]:
    """Delete up to ``limit`` non-running jobs matching the filters (or ``all=True``), lowest
    ids first; ``limit=None``: every one of them, in one statement."""
    if not (ids or kinds or queues or states or priorities or all):
        raise ValidationError(
            "filters", "job_delete_many needs at least one filter, or all=True to delete all"
        )
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000
    ):
        raise ValidationError("limit", "must be between 1 and 10000, or None for no limit")
    filters = _Filters(q)
    filters.add("ids", ids)
    filters.add("kinds", kinds)
    filters.add("queues", queues)
    checked_states = _job_states(states)
    if checked_states:
        filters.condition("states", [s.value for s in checked_states])
    filters.add("priorities", priorities)
    filters.args["limit"] = limit  # None: LIMIT NULL, which is no limit
    rows = yield Query(q.compose("job_delete_many", where=filters.conditions()), filters.args)
    return sorted((job_from_row(r) for r in rows), key=lambda j: j.id)


def job_update_op(q: Queries, job_id: int, *, output: Any) -> Op[JobRow]:
    """Record ``output`` in the job's metadata (allowed while it runs)."""
    # Refuses what Postgres or River (Go) cannot store (river._validate); the size is checked
    # below, against River's limit for outputs.
    encoded_output = encode_json_value(output, MAX_ENCODED_SIZE_LIMIT, "output")
    # The limit applies to the output's own encoding, in UTF-8 bytes (not characters).
    if len(encoded_output) > _MAX_OUTPUT_BYTES or (
        not encoded_output.isascii() and len(encoded_output.encode()) > _MAX_OUTPUT_BYTES
    ):
        raise ValidationError("output", "encoded size must be at most 32 MB")
    encoded = '{"output":' + encoded_output + "}"
    row = yield Query(q.job_update_metadata, {"id": job_id, "metadata": encoded}, fetch="one")
    if row is None:
        raise JobNotFoundError(job_id)
    return job_from_row(row)


def job_complete_fenced_op(
    q: Queries, job: JobRow, finalized_at: datetime | None, metadata: Mapping[str, Any] | None
) -> Op[JobRow]:
    """Complete a running job at the attempt seen, in the caller's transaction."""
    row = yield Query(
        q.job_complete_fenced,
        {
            "id": job.id,
            "attempt": job.attempt,
            "attempted_at": job.attempted_at,
            "finalized_at": finalized_at,
            "metadata": (
                encode_json_value(dict(metadata), DEFAULT_MAX_ENCODED_SIZE, "metadata")
                if metadata
                else None
            ),
        },
        fetch="one",
    )
    if row is None:
        raise JobNotRunningError(job.id, job.attempt)
    return job_from_row(row)


def queue_get_op(q: Queries, name: str) -> Op[QueueRow]:
    """Get a queue row; QueueNotFoundError when absent."""
    row = yield Query(q.queue_get, {"name": name}, fetch="one")
    if row is None:
        raise QueueNotFoundError(name)
    return queue_from_row(row)


def queue_list_op(q: Queries, limit: int = 100) -> Op[list[QueueRow]]:
    """List queues ordered by name (limit 1 to 10,000)."""
    if isinstance(limit, bool) or not 1 <= limit <= 10_000:
        raise ValidationError("limit", "must be between 1 and 10000")
    rows = yield Query(q.queue_list, {"limit": limit})
    return [queue_from_row(r) for r in rows]


#: The states :func:`job_counts_by_queue_op` counts, in display order.
COUNTED_STATES = (JobState.AVAILABLE, JobState.RUNNING, JobState.RETRYABLE, JobState.SCHEDULED)


def job_counts_by_queue_op(q: Queries) -> Op[dict[str, dict[JobState, int]]]:
    """Jobs per queue and state, for the :data:`COUNTED_STATES` (one grouped query). Every
    queue with such jobs is a key, with or without a river_queue row; a state without jobs
    counts 0."""
    rows = yield Query(q.job_count_by_queue_and_state)
    counts: dict[str, dict[JobState, int]] = {}
    for queue, state, count in rows:
        counts.setdefault(queue, dict.fromkeys(COUNTED_STATES, 0))[JobState(state)] = count
    return counts


def _control_payload(action: str, name: str) -> str:
    return json.dumps({"action": action, "queue": name}, separators=(",", ":"))


def queue_pause_op(q: Queries, name: str, *, pause: bool = True) -> Op[None]:
    """Pause (or resume) a queue, or every queue with ``"*"``; persisted and broadcast."""
    if name != "*":
        validate_queue_name(name)
    action = "pause" if pause else "resume"
    rows = yield Query(
        q.queue_pause if pause else q.queue_resume,
        {"name": name, "schema": q.schema, "payload": _control_payload(action, name)},
    )
    if not rows and name != "*":
        raise QueueNotFoundError(name)


def queue_update_op(
    q: Queries,
    name: str,
    metadata: Mapping[str, Any] | None = None,
    *,
    max_workers: int | None = None,
    fetch_cooldown: float | timedelta | None = None,
    fetch_poll_interval: float | timedelta | None = None,
    min_workers: int | None = None,
    rate_limit: RateLimit | None = None,
    clear: Sequence[str] | str = (),
) -> Op[QueueRow]:
    """Replace a queue's application metadata (``metadata``, unless None) and/or change its
    cluster-wide settings override (settings given are set, those named in ``clear`` removed),
    in one statement; broadcast ``metadata_changed``. Validated before any SQL;
    QueueNotFoundError when the queue has no row."""
    validate_queue_name(name)
    encoded: str | None = None
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise ValidationError("metadata", "must be a JSON object")
        if METADATA_KEY in metadata:
            raise ValidationError(
                f"metadata[{METADATA_KEY!r}]",
                "is reserved for river-queue's cluster-wide settings; pass max_workers, "
                "fetch_cooldown or fetch_poll_interval instead",
            )
        encoded = encode_json_value(dict(metadata), DEFAULT_MAX_ENCODED_SIZE, "metadata")
    try:
        patch = validate_patch(
            settings_patch(
                max_workers, fetch_cooldown, fetch_poll_interval, clear, min_workers, rate_limit
            )
        )
    except ValueError as exc:
        field, _, rule = str(exc).partition(": ")
        raise ValidationError(field, rule) from None
    if encoded is None and not patch:
        raise ValidationError("queue_update", "nothing to update: pass metadata or a setting")
    row = yield Query(
        q.queue_update_metadata,
        {"name": name, "metadata": encoded, "patch": json.dumps(patch, separators=(",", ":"))},
        fetch="one",
    )
    if row is None:
        raise QueueNotFoundError(name)
    queue = queue_from_row(row)
    yield from notify_op(q, "river_control", [_metadata_changed_payload(name, queue.metadata)])
    return queue


def _metadata_changed_payload(name: str, metadata: Mapping[str, Any]) -> str:
    """The ``metadata_changed`` notification: compact, in River (Go)'s key order, with the
    stored metadata. The payload is a hint (listeners re-read the row), and the metadata is
    not only the caller's: what others stored (an integer beyond int64, a number decoded as
    infinite) is encoded as it is, without this library's insert rules, and on any problem,
    or over the 8000-byte cap of NOTIFY payloads, left out."""
    short = '{"action":"metadata_changed","queue":' + json.dumps(name) + "}"
    try:
        encoded = encode_value(dict(metadata))
    except Exception:  # not encodable (infinite, nested too deep): the hint names the queue
        return short
    payload = (
        '{"action":"metadata_changed","metadata":' + encoded + ',"queue":' + json.dumps(name) + "}"
    )
    return short if len(payload.encode()) >= _MAX_NOTIFY_BYTES else payload
