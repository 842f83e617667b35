"""The dashboard's JSON API (docs/ui.md has the reference): the page uses nothing else, and
scripts may use it too.

Every answer is a JSON object. Errors are ``{"error": message}`` plus ``"field"`` when one
input is at fault: 400 bad input (also a value the database refused as data that no check of
river/ui/_input.py caught: logged, never a 500), 401/403 refused, 404 no such job or queue,
405 a method the endpoint does not take, 409 a running job cannot be deleted or a retry would
take a unique key another job holds, 503 the database is unreachable (or silent past the
store's deadline), every connection is busy, or River's tables are missing (``"reason"``:
``unreachable``, ``busy``, ``schema``), 504 a query ran past the statement timeout.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse as _StarletteJSONResponse
from starlette.responses import Response

from river._client import AsyncClient
from river._driver import QueueRow
from river._errors import (
    DatabaseUnavailableError,
    JobNotFoundError,
    JobRunningError,
    QueueNotFoundError,
    SchemaNotReadyError,
    UniqueConflictError,
    ValidationError,
)
from river._maintenance import PeriodicJob
from river._sansio import run_async
from river._schedule import NEVER, Cron, PeriodicInterval
from river._types import AttemptError, JobRow, JobState, format_time
from river._version import __version__
from river.ui import _data
from river.ui._input import (
    BadRequest,
    BulkRequest,
    Params,
    parse_bulk,
    parse_count,
    parse_job_id,
    parse_list,
    parse_minutes,
    parse_queue,
    parse_queue_name,
    parse_queues,
    parse_settings,
)
from river.ui._store import DatabaseBusyError, QueryTimeoutError, SharedReads, Store

__all__ = ["Api", "job_json", "summary_json"]

Handler = Callable[[Request], Awaitable[Response]]


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class JSONResponse(_StarletteJSONResponse):
    """Starlette's JSON response, for values written by anyone: an integer of more digits than
    Python reads (4,300) in a queue's or a job's metadata is decoded as an infinite float (see
    river/_driver.py ``_lenient_int``), which JSON cannot hold; it is sent as the string
    ``"Infinity"`` (or ``"-Infinity"``) rather than failing the whole answer with a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # "Out of range float values are not JSON compliant"
            return super().render(_finite(content))


#: Ids per statement of a bulk action.
BULK_BATCH = 1000
#: Most jobs one call of a bulk action over a filter acts on (five statements): the page goes
#: on in further calls, so no request runs long after its browser gave up.
BULK_PER_CALL = 5000
#: Most windows of :data:`_data.SCAN_WINDOW` ids one call of a bulk action over a filter no
#: index serves reads.
BULK_WINDOWS_PER_CALL = 10
#: Most queues listed (river_queue rows).
MAX_QUEUES = 10_000
#: Largest JSON body read (bytes): a longer one is refused before the rest is read.
MAX_BODY = 1_000_000

logger = logging.getLogger("river.ui")


def _time(value: datetime | None) -> str | None:
    if value is None or value.tzinfo is None:  # naive: an error whose "at" did not parse
        return None
    return format_time(value.astimezone(UTC))


def _error_json(e: AttemptError) -> dict[str, Any]:
    return {"at": _time(e.at), "attempt": e.attempt, "error": e.error, "trace": e.trace}


def _args_value(encoded: str) -> Any:
    try:
        return json.loads(encoded) if encoded else None
    except ValueError:
        return encoded


def _row_fields(row: JobRow) -> dict[str, Any]:
    """What the job list and the job detail both show of a row."""
    return {
        "id": row.id,
        "kind": row.kind,
        "queue": row.queue,
        "state": row.state.value,
        "attempt": row.attempt,
        "max_attempts": row.max_attempts,
        "priority": row.priority,
        "created_at": _time(row.created_at),
        "scheduled_at": _time(row.scheduled_at),
        "attempted_at": _time(row.attempted_at),
        "finalized_at": _time(row.finalized_at),
        "tags": list(row.tags),
    }


def _pretty(value: Any) -> str:
    """JSON as the page shows and copies it: Python's integers are exact, where the browser's
    JSON.parse turns any above 2**53 into a nearby double (an id 1234567890123456789 showed,
    and was copied, as 1234567890123456800)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def job_json(row: JobRow) -> dict[str, Any]:
    """A job, whole (the job detail page). ``args_text``, ``metadata_text`` and
    ``output_text``: the same values as indented JSON text, exact (see :func:`_pretty`)."""
    metadata = row.metadata
    args = _args_value(row.encoded_args)
    return {
        **_row_fields(row),
        "attempted_by": list(row.attempted_by),
        "args": args,
        "args_text": args if isinstance(args, str) else _pretty(args),
        "metadata": metadata,
        "metadata_text": _pretty(metadata),
        "output": metadata.get("output"),
        "output_text": _pretty(metadata.get("output")),
        "has_output": "output" in metadata,
        "errors": [_error_json(e) for e in row.errors],
        "unique_key": row.unique_key.hex() if row.unique_key is not None else None,
        "unique_states": (
            [s.value for s in JobState if row.unique_states & s.unique_bit]
            if row.unique_states is not None
            else None
        ),
    }


def summary_json(job: _data.JobSummary) -> dict[str, Any]:
    """A row of the job list (args as a preview, the last error's first line)."""
    row = job.row
    last_error = row.errors[-1].error if row.errors else None
    if last_error is not None:
        last_error = last_error.strip().splitlines()[0][:300] if last_error.strip() else ""
    return {
        **_row_fields(row),
        "args_preview": row.encoded_args,
        "args_truncated": job.args_truncated,
        "error_count": job.error_count,
        "last_error": last_error,
        "attempted_by": row.attempted_by[-1] if row.attempted_by else None,
    }


def _queue_json(name: str, row: QueueRow | None, all_counts: _data.Counts) -> dict[str, Any]:
    counts = all_counts.by_queue.get(name) or {s.value: 0 for s in _data.DISPLAY_STATES}
    override = row.override.as_dict() if row is not None else {}
    return {
        "name": name,
        "known": row is not None,
        "paused": row.paused if row is not None else False,
        "paused_at": _time(row.paused_at) if row is not None else None,
        "created_at": _time(row.created_at) if row is not None else None,
        "updated_at": _time(row.updated_at) if row is not None else None,
        "metadata": row.metadata if row is not None else {},
        "metadata_text": _pretty(row.metadata if row is not None else {}),
        "override": override,
        "counts": counts,
        "capped": all_counts.capped_by_queue.get(name, []),
        "total": sum(counts.values()),
    }


def _schedule_text(job: PeriodicJob) -> str:
    schedule = job.schedule
    if isinstance(schedule, Cron):
        return str(schedule)
    if isinstance(schedule, PeriodicInterval):
        seconds = schedule.interval.total_seconds()
        for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
            if seconds >= size and seconds % size == 0:
                return f"every {seconds / size:g}{unit}"
        return f"every {seconds:g}s"
    return repr(schedule)


def _next_run(job: PeriodicJob, last: datetime | None, now: datetime) -> datetime | None:
    """When the leader will next insert ``job``: the schedule after its last run, or after
    now when there is none, or when that time is past (a leader that was away runs it at its
    next pass, scheduled from then)."""
    try:
        when = job.schedule.next(last) if last is not None else job.schedule.next(now)
        if when <= now:
            when = job.schedule.next(now)
    except Exception:  # a schedule of the application's: show nothing rather than fail
        return None
    return None if when == NEVER else when


class Api:
    """The JSON endpoints of one dashboard (see module doc)."""

    def __init__(
        self,
        store: Store,
        *,
        client: AsyncClient | None,
        read_only: bool,
        csrf_token: str,
        title: str,
    ) -> None:
        self.store = store
        self.client = client
        self.read_only = read_only
        self.csrf_token = csrf_token
        self.title = title
        self.shared = SharedReads(ttl=1.0)
        #: Held while a bulk action runs: a second one (a second click) waits for it.
        self._bulk_lock = anyio.Lock()
        #: (path, SQLSTATE) of the data errors logged at warning level: each is logged once.
        self._data_errors_logged: set[tuple[str, str | None]] = set()

    # --- plumbing ------------------------------------------------------------------------

    @staticmethod
    def error(status: int, message: str, field: str | None = None) -> JSONResponse:
        """An error answer (see module doc)."""
        body: dict[str, Any] = {"error": message}
        if field is not None:
            body["field"] = field
        return JSONResponse(body, status_code=status)

    @staticmethod
    def unavailable(message: str, reason: str) -> JSONResponse:
        """A 503: the database is unreachable, busy, or River's tables are missing."""
        return JSONResponse(
            {"error": message, "reason": reason},
            status_code=503,
            headers={"Retry-After": "2" if reason != "schema" else "30"},
        )

    def endpoint(self, fn: Handler) -> Handler:
        """``fn`` with exceptions turned into error answers."""

        async def handle(request: Request) -> Response:
            try:
                if request.method == "POST":
                    # A change must show on the next read, not after the shared reads expire.
                    try:
                        return await fn(request)
                    finally:
                        self.shared.clear()
                return await fn(request)
            except BadRequest as exc:
                return self.error(400, exc.message, exc.field)
            except ValidationError as exc:
                return self.error(400, exc.rule, exc.field)
            except JobNotFoundError as exc:
                return self.error(404, str(exc), "id")
            except QueueNotFoundError as exc:
                return self.error(404, str(exc), "queue")
            except JobRunningError as exc:
                return self.error(409, f"job {exc.job_id} is running: cancel it first")
            except DatabaseBusyError as exc:
                return self.unavailable(str(exc), "busy")
            except DatabaseUnavailableError as exc:
                return self.unavailable(str(exc), "unreachable")
            except SchemaNotReadyError as exc:
                return self.unavailable(str(exc), "schema")
            except QueryTimeoutError as exc:
                return self.error(504, str(exc))
            except psycopg.DataError as exc:
                # Input the checks of river/ui/_input.py let through and Postgres refused as
                # data (a value out of range, text it cannot hold): the caller's to fix.
                self._log_data_error(request, exc)
                reason = (
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                )
                return self.error(400, f"the database refused a value of the request: {reason}")

        return handle

    def _log_data_error(self, request: Request, exc: psycopg.DataError) -> None:
        """Log a data error that reached the endpoint: at warning level the first time for
        its path and SQLSTATE (an input check is missing: worth a report), at debug level
        after (a page polling with the same input would repeat it every few seconds)."""
        key = (request.url.path, exc.sqlstate)
        first = key not in self._data_errors_logged
        if first and len(self._data_errors_logged) < 1000:
            self._data_errors_logged.add(key)
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "dashboard request %s %s: the database refused a value (SQLSTATE %s): %s",
            request.method,
            request.url.path,
            exc.sqlstate,
            exc,
        )

    @staticmethod
    def _params(request: Request) -> Params:
        params: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            params.setdefault(key, []).append(value)
        return params

    @staticmethod
    async def _body(request: Request) -> Any:
        """The JSON body, read chunk by chunk and no further than :data:`MAX_BODY` bytes."""
        too_long = BadRequest("body", "must be at most 1 MB")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise too_long
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise too_long
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            return json.loads(raw or b"{}")
        except RecursionError:
            raise BadRequest("body", "is JSON nested too deeply") from None
        except ValueError:
            raise BadRequest("body", "is not valid JSON") from None

    @staticmethod
    def _job_id(request: Request) -> int:
        return parse_job_id(request.path_params["job_id"])

    async def _counts(self) -> _data.Counts:
        return await self.shared.get(
            "counts", lambda: self.store.run(_data.counts_op(self.store.ui))
        )

    async def _queue_rows(self) -> list[QueueRow]:
        async def read() -> list[QueueRow]:
            return await self.store.call(lambda admin, c: admin.queue_list_tx(c, MAX_QUEUES))

        return await self.shared.get("queue_rows", read)

    # --- endpoints -----------------------------------------------------------------------

    async def meta(self, request: Request) -> Response:
        """``GET /api/meta``: the dashboard's settings, and the CSRF token of mutations."""
        return JSONResponse(
            {
                "title": self.title,
                "version": __version__,
                "read_only": self.read_only,
                "schema": self.store.schema,
                "csrf_token": self.csrf_token,
                "periodic_known": self.client is not None,
                "states": [s.value for s in _data.DISPLAY_STATES],
            }
        )

    async def overview(self, request: Request) -> Response:
        """``GET /api/overview``: jobs per state and per queue, the leader, active clients."""

        async def read() -> _data.Overview:
            return await self.store.run(_data.overview_op(self.store.ui, self.store.runtime))

        ov = await self.shared.get("overview", read)
        rows = await self._queue_rows()
        return JSONResponse(
            {
                "now": _time(ov.now),
                "states": ov.counts.by_state,
                "total": ov.counts.total,
                "capped": ov.counts.capped,
                "count_cap": ov.counts.cap,
                "queues": self._queues(rows, ov.counts),
                "leader": (
                    {
                        "id": ov.leader.leader_id,
                        "elected_at": _time(ov.leader.elected_at),
                        "expires_at": _time(ov.leader.expires_at),
                    }
                    if ov.leader is not None
                    else None
                ),
                "clients": [
                    {"id": c.client_id, "running": c.running, "last_seen": _time(c.last_seen)}
                    for c in ov.clients
                ],
            }
        )

    @staticmethod
    def _queues(rows: list[QueueRow], counts: _data.Counts) -> list[dict[str, Any]]:
        by_name = {r.name: r for r in rows}
        names = sorted(set(by_name) | set(counts.by_queue))
        return [_queue_json(n, by_name.get(n), counts) for n in names]

    async def counts(self, request: Request) -> Response:
        """``GET /api/counts?queue=``: jobs per state (of the queues given, added up, or of
        every queue), and the names of the queues that have jobs. Several queues come as the
        job list takes them (``queue=a,b`` or ``queue=a&queue=b``): a list of two queues
        asked for the counts of a queue named "a,b", and showed zeros."""
        counts = await self._counts()
        queues = parse_queues(self._params(request))
        if not queues:
            states, capped = counts.by_state, counts.capped
        else:
            states = {s.value: 0 for s in _data.DISPLAY_STATES}
            capped_states: set[str] = set()
            for queue in queues:
                for state, n in (counts.by_queue.get(queue) or {}).items():
                    states[state] = states.get(state, 0) + n
                capped_states.update(counts.capped_by_queue.get(queue, []))
            capped = [s for s in states if s in capped_states]
        return JSONResponse(
            {
                "states": states,
                "total": sum(states.values()),
                "capped": capped,
                "count_cap": counts.cap,
                "queue": queues[0] if len(queues) == 1 else None,
                "queues": list(counts.by_queue),
            }
        )

    async def throughput(self, request: Request) -> Response:
        """``GET /api/throughput?minutes=60&queue=``: jobs per minute by outcome."""
        params = self._params(request)
        minutes = parse_minutes(params)
        queue = parse_queue(params)

        async def read() -> _data.Throughput:
            return await self.store.run(
                _data.throughput_op(self.store.ui, minutes=minutes, queue=queue)
            )

        t = await self.shared.get(("throughput", minutes, queue), read)
        return JSONResponse(
            {"since": _time(t.since), "minutes": t.minutes, "queue": queue, "series": t.series}
        )

    async def jobs(self, request: Request) -> Response:
        """``GET /api/jobs``: a page of jobs (filters, sort, order, limit, after)."""
        req = parse_list(self._params(request))
        page = await self.store.run(
            _data.job_page_op(
                self.store.ui,
                req.filter,
                sort=req.sort,
                descending=req.descending,
                limit=req.limit,
                after=req.after,
            )
        )
        searched = page.searched
        return JSONResponse(
            {
                "now": _time(page.now),
                "jobs": [summary_json(j) for j in page.jobs],
                "next": page.next_cursor,
                "sort": "id" if page.sort_column == "id" else "time",
                "sort_column": page.sort_column,
                "sort_note": page.sort_note,
                "searched": (
                    {
                        "low_id": searched[0],
                        "high_id": searched[1],
                        "window": _data.SCAN_WINDOW,
                        "why": page.searched_why,
                    }
                    if searched is not None
                    else None
                ),
            }
        )

    async def jobs_count(self, request: Request) -> Response:
        """``GET /api/jobs/count``: how many jobs match the filters, and the highest id. A
        filter no index serves is counted :data:`_data.COUNT_WINDOWS` windows of ids per call,
        newest first: until ``next`` is null the count is of the ids read so far (a lower
        bound), and the same request with ``next`` added goes on."""
        req = parse_count(self._params(request))
        found = await self.store.run(_data.count_op(self.store.ui, req.filter, below=req.below))
        count = req.count_before + found.count
        max_id = max(req.max_id_before, found.max_id or 0)
        following = (
            None
            if found.below is None
            else {"below": found.below, "count_before": count, "max_id_before": max_id}
        )
        searched = found.searched
        return JSONResponse(
            {
                "count": count,
                "max_id": max_id,
                "complete": following is None,
                "next": following,
                "searched": (
                    {"low_id": searched[0], "high_id": searched[1]}
                    if searched is not None
                    else None
                ),
            }
        )

    async def job(self, request: Request) -> Response:
        """``GET /api/jobs/{id}``: one job, whole."""
        job_id = self._job_id(request)

        async def read(admin: AsyncClient, conn: Any) -> tuple[JobRow, datetime]:
            row = await admin.job_get_tx(conn, job_id)
            now = await run_async(conn, _data.now_op(self.store.ui))
            return row, now

        row, now = await self.store.call(read)
        return JSONResponse({"now": _time(now), "job": job_json(row)})

    async def job_action(self, request: Request) -> Response:
        """``POST /api/jobs/{id}/retry|cancel|delete``: the admin call of that name."""
        job_id = self._job_id(request)
        action = request.path_params["action"]
        if action == "retry":
            try:
                row = await self.store.call(lambda admin, c: admin.job_retry_tx(c, job_id))
            except UniqueConflictError as exc:
                return self._unique_conflict(exc)
        elif action == "cancel":
            row = await self.store.call(lambda admin, c: admin.job_cancel_tx(c, job_id))
        elif action == "delete":
            row = await self.store.call(lambda admin, c: admin.job_delete_tx(c, job_id))
            return JSONResponse({"deleted": True, "job": job_json(row)})
        else:
            return self.error(404, f"no action {action!r}: retry, cancel or delete", "action")
        return JSONResponse({"job": job_json(row)})

    def _unique_conflict(self, exc: UniqueConflictError) -> Response:
        """The 409 of a retry refused because another job holds the job's unique key: the job
        is left as it was."""
        conflict = (
            None if exc.holder_id is None else {"id": exc.holder_id, "state": exc.holder_state}
        )
        return JSONResponse(
            {"error": str(exc), "field": "unique_key", "conflict": conflict}, status_code=409
        )

    async def jobs_bulk(self, request: Request) -> Response:
        """``POST /api/jobs/bulk``: retry, cancel or delete a selection of ids, or the jobs
        matching a filter up to its ``max_id`` and its confirmed ``count``, at most
        :data:`BULK_PER_CALL` per call (``next`` continues), in batches of :data:`BULK_BATCH`."""
        req = parse_bulk(await self._body(request))
        if self._bulk_lock.locked():
            return self.error(
                409, "another bulk action of this dashboard is running: wait for it to end"
            )
        async with self._bulk_lock:
            if req.ids is not None:
                return await self._bulk_ids(req.action, req.ids)
            return await self._bulk_filter(request, req)

    async def _bulk_batch(
        self, action: _data.BulkAction, ids: list[int], flt: _data.JobFilter | None
    ) -> _data.BulkResult:
        """One bulk statement; when a retry meets a unique key taken since the batch was
        read (a race the statement's own checks cannot see), the batch again row by row."""
        ui = self.store.ui
        try:
            return await self.store.run(_data.bulk_op(ui, action, ids, datetime.now(UTC), flt))
        except psycopg.errors.UniqueViolation:
            changed: list[int] = []
            conflicts: list[int] = []
            for job_id in ids:
                try:
                    one = await self.store.run(
                        _data.bulk_op(ui, action, [job_id], datetime.now(UTC), flt)
                    )
                except psycopg.errors.UniqueViolation:
                    conflicts.append(job_id)
                else:
                    changed += one.changed
                    conflicts += one.conflicts
            return _data.BulkResult(changed, conflicts)

    async def _bulk_ids(self, action: _data.BulkAction, ids: tuple[int, ...]) -> Response:
        changed = conflicts = 0
        for start in range(0, len(ids), BULK_BATCH):
            result = await self._bulk_batch(action, list(ids[start : start + BULK_BATCH]), None)
            changed += len(result.changed)
            conflicts += len(result.conflicts)
        return JSONResponse(
            {
                "action": action,
                "matched": len(ids),
                "changed": changed,
                "skipped": len(ids) - changed,
                "conflicts": conflicts,
                "next": None,
                "stopped": None,
            }
        )

    async def _bulk_filter(self, request: Request, req: BulkRequest) -> Response:
        """One call of a bulk action over a filter (see docs/ui.md): from ``after_id``, the
        jobs matching the filter up to ``max_id``, acted on only while they still match, and
        never more in all than the ``count`` confirmed (the call stops before a batch that
        would pass it)."""
        ui = self.store.ui
        assert req.filter is not None and req.max_id is not None and req.count is not None
        flt = req.filter
        max_id = req.max_id
        confirmed = req.count
        after_id = req.after_id
        before = req.matched_before
        matched = changed = conflicts = 0
        stopped: str | None = None
        more_than_confirmed = (
            f"more jobs match this filter than the {confirmed:,} confirmed (jobs changed state "
            "since the count): count again and confirm"
        )
        windowed = flt.scan_limited()
        windows = 0
        # A filter no index serves is read window by window of ids, from the table's lowest id
        # (from 0, a table whose ids start in the hundreds of millions after years of cleanup
        # took hundreds of calls of empty windows before the first match).
        floor = 0
        if windowed and after_id == 0:
            bounds = await self.store.run(_data.id_bounds_op(ui))
            floor = bounds[0] - 1 if bounds is not None else max_id
        # Before the first change: are there already more than confirmed? A filter no index
        # serves is checked window by window, over as many calls as it takes (``checked_id``).
        checked_id, found = (max(req.checked_id, floor), req.checked) if windowed else (0, 0)
        checking = after_id == 0 and before == 0
        while checking and found <= confirmed and checked_id < max_id:
            if windowed and windows >= BULK_WINDOWS_PER_CALL:
                break
            upper = min(max_id, checked_id + _data.SCAN_WINDOW) if windowed else max_id
            found += await self.store.run(
                _data.count_upto_op(
                    ui, flt, max_id=upper, limit=confirmed + 1 - found, after_id=checked_id
                )
            )
            checked_id = upper
            windows += 1 if windowed else 0
        if checking and found > confirmed:
            stopped = more_than_confirmed
        elif checking and checked_id < max_id:
            windows = BULK_WINDOWS_PER_CALL  # no change in this call: the check goes on first
        elif after_id == 0:
            after_id = floor  # the check is done: act from the lowest id
        while stopped is None and after_id < max_id:
            if matched >= BULK_PER_CALL or windows >= BULK_WINDOWS_PER_CALL:
                break
            if await request.is_disconnected():
                stopped = "the client went away"
                break
            upper = min(max_id, after_id + _data.SCAN_WINDOW) if windowed else max_id
            room = confirmed - before - matched
            ids = await self.store.run(
                _data.matching_ids_op(
                    ui, flt, after_id=after_id, upper_id=upper, limit=min(BULK_BATCH, room + 1)
                )
            )
            if len(ids) > room:
                stopped = more_than_confirmed
                break
            if not ids:
                if upper >= max_id:
                    after_id = max_id
                    break
                after_id = upper  # an empty window of a bounded scan: the next one
                windows += 1
                continue
            result = await self._bulk_batch(req.action, ids, flt)
            matched += len(ids)
            changed += len(result.changed)
            conflicts += len(result.conflicts)
            after_id = ids[-1]
            if len(ids) < min(BULK_BATCH, room + 1):  # nothing more up to upper
                after_id = upper
                windows += 1
        done = stopped is not None or after_id >= max_id
        following: dict[str, int] | None = None
        if not done:
            following = {"after_id": after_id, "matched_before": before + matched}
            if windowed and after_id == 0 and before + matched == 0:
                following.update(checked_id=checked_id, checked=found)
        return JSONResponse(
            {
                "action": req.action,
                "matched": matched,
                "changed": changed,
                "skipped": matched - changed,
                "conflicts": conflicts,
                "next": following,
                "stopped": stopped,
            }
        )

    async def queues(self, request: Request) -> Response:
        """``GET /api/queues``: every queue (river_queue rows and queues that only have jobs)
        with its counts, pause state and cluster-wide override."""
        counts = await self._counts()
        rows = await self._queue_rows()
        return JSONResponse({"queues": self._queues(rows, counts)})

    def _queue_name(self, request: Request) -> str:
        name = request.path_params.get("name")
        if name is None:
            name = request.query_params.get("name", "")
        return parse_queue_name(str(name))

    async def queue(self, request: Request) -> Response:
        """``GET /api/queues/{name}`` (or ``/api/queue?name=``): one queue."""
        name = self._queue_name(request)
        counts = await self._counts()
        try:
            row: QueueRow | None = await self.store.call(
                lambda admin, c: admin.queue_get_tx(c, name)
            )
        except QueueNotFoundError:
            if name not in counts.by_queue:
                raise
            row = None
        return JSONResponse({"queue": _queue_json(name, row, counts)})

    async def queue_action(self, request: Request) -> Response:
        """``POST /api/queues/{name}/pause|resume|settings`` (or ``/api/queue/...?name=``)."""
        name = self._queue_name(request)
        action = request.path_params["action"]
        if action == "pause":
            await self.store.call(lambda admin, c: admin.queue_pause_tx(c, name))
        elif action == "resume":
            await self.store.call(lambda admin, c: admin.queue_resume_tx(c, name))
        elif action == "settings":
            settings = parse_settings(await self._body(request))
            await self.store.call(lambda admin, c: admin.queue_update_tx(c, name, **settings))
        else:
            return self.error(404, f"no action {action!r}: pause, resume or settings", "action")
        row = await self.store.call(lambda admin, c: admin.queue_get_tx(c, name))
        counts = await self.store.run(_data.counts_op(self.store.ui))
        return JSONResponse({"queue": _queue_json(name, row, counts)})

    async def kinds(self, request: Request) -> Response:
        """``GET /api/kinds``: the job kinds in the table (for the filter's suggestions)."""

        async def read() -> list[str]:
            return await self.store.run(_data.kinds_op(self.store.ui))

        return JSONResponse({"kinds": await self.shared.get("kinds", read)})

    async def periodic(self, request: Request) -> Response:
        """``GET /api/periodic``: the periodic jobs of the client the dashboard was created
        with (schedule, next run), and those seen in the table (last run)."""
        runs = await self.store.run(_data.periodic_runs_op(self.store.ui))
        now = await self.store.run(_data.now_op(self.store.ui))
        by_id: dict[str, _data.PeriodicRun] = {}
        for run in runs:
            if run.periodic_id is not None:
                known = by_id.get(run.periodic_id)
                if known is None or run.last_created_at > known.last_created_at:
                    by_id[run.periodic_id] = run
        jobs = []
        matched: set[str] = set()
        client = self.client
        if client is not None:
            for job in client.periodic_jobs.list():
                found = by_id.get(job.id) if job.id is not None else None
                if job.id is not None:
                    matched.add(job.id)
                last = found.last_created_at if found is not None else None
                jobs.append(
                    {
                        "id": job.id,
                        "schedule": _schedule_text(job),
                        "run_on_start": job.run_on_start,
                        "kind": found.kind if found is not None else None,
                        "queue": found.queue if found is not None else None,
                        "last_run": _time(last),
                        "last_job_id": found.last_job_id if found is not None else None,
                        "next_run": _time(_next_run(job, last, now)),
                    }
                )
        seen = [
            {
                "id": run.periodic_id,
                "kind": run.kind,
                "queue": run.queue,
                "count": run.count,
                "last_run": _time(run.last_created_at),
                "last_job_id": run.last_job_id,
            }
            for run in runs
            if run.periodic_id is None or run.periodic_id not in matched
        ]
        return JSONResponse(
            {
                "now": _time(now),
                "known": client is not None,
                "client": (
                    {"id": client.id, "running": client.running, "leader": client.is_leader}
                    if client is not None
                    else None
                ),
                "jobs": jobs,
                "seen": seen,
            }
        )
