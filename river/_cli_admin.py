"""``river job ...`` and ``river queue ...``: administer jobs and queues from a shell.

::

    river job list --state retryable --queue email --limit 20
    river job get 12
    river job retry 12 13 14          # one line per job: "12 retried (available)"
    river job cancel 15
    river job delete 16 17
    river queue list                  # rows, overrides and job counts
    river queue pause email           # '*': every queue
    river queue resume email
    river queue update email --max-workers 50 --fetch-cooldown 100ms
    river queue update email --clear max_workers

Every command is a thin layer over the sync client's admin API (the ``*_tx`` methods of
:class:`river.Client`, run on the one autocommit connection the CLI opens with the flags and
timeouts of the migrate commands), so the CLI holds no logic the library lacks. Each job or
queue named is acted on in its own statement: what was done stays done if a later one fails.

Exit status (:data:`EXIT_OK` ...): 0 success; 1 an operational error (database unreachable,
River's tables missing, a statement failing: one ``Error:`` line, no traceback); 2 bad input
(``Error: <field>: <rule>``, found before connecting, so before any SQL; flag errors also
print the usage); 3 some of the jobs or queues named were not found (or, for ``job delete``,
were running): each is reported on stderr and the others were acted on. ``--json`` prints one
JSON document on stdout (datetimes in ISO 8601, UTC). docs/cli.md is the reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from river._commands import Commands, Handler
from river._duration import DurationError, parse_duration
from river._errors import (
    InvalidConfigError,
    JobNotFoundError,
    JobRunningError,
    QueueNotFoundError,
    UniqueConflictError,
    ValidationError,
)
from river._names import validate_queue_name, validate_schema
from river._progress import Progress
from river._queue_override import FIELDS, from_metadata, validate_patch
from river._ratelimit import RateLimit, parse_rate_limit
from river._types import JobRow, JobState, format_time

if TYPE_CHECKING:
    import psycopg

    from river._driver import QueueRow
    from river._sansio import Op
    from river._sync_client import Client

__all__ = [
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROGRESS_MIN_JOBS",
    "DatabaseAccess",
    "register_admin_commands",
]

#: Exit status: success.
EXIT_OK = 0
#: Exit status: an operational error (database unreachable, schema missing, statement failed).
EXIT_ERROR = 1
#: Exit status: bad input or flags (nothing was sent to the database).
EXIT_USAGE = 2
#: Exit status: some of the jobs or queues named were not found or were refused (the others
#: were acted on).
EXIT_NOT_FOUND = 3

#: ``job retry|cancel|delete`` draw a progress counter on a terminal above this many ids.
PROGRESS_MIN_JOBS = 50
#: Largest ``--limit`` of ``job list`` (the API's).
MAX_LIST_LIMIT = 10_000
#: Rows of ``river_queue`` that ``queue list`` reads at most.
MAX_QUEUES = 10_000
_MAX_JOB_ID = (1 << 63) - 1
_ERROR_WIDTH = 60

R = TypeVar("R")


@dataclass(frozen=True)
class DatabaseAccess:
    """How the commands get their database flags and connection (river/cli.py's helpers,
    passed in so that this module does not import the CLI that registers it)."""

    add_flags: Callable[[argparse.ArgumentParser], None]
    connect: Callable[[argparse.Namespace], psycopg.Connection[Any]]


# --------------------------------------------------------------------------------------------
# Input (checked before connecting)
# --------------------------------------------------------------------------------------------


def _job_ids(texts: Sequence[str]) -> list[int]:
    ids: dict[int, None] = {}
    for text in texts:
        digits = text.strip()
        # Plain ASCII digits only: int() also takes "1_000" and other scripts' digits.
        value = int(digits) if digits.isascii() and digits.isdigit() else 0
        if not 1 <= value <= _MAX_JOB_ID:
            raise ValidationError("id", f"must be a positive integer, got {text!r}")
        ids[value] = None
    return list(ids)


def _split(texts: Sequence[str] | None) -> list[str]:
    """Repeated flags, each possibly a comma-separated list."""
    return [part.strip() for text in texts or () for part in text.split(",")]


def _states(texts: Sequence[str] | None) -> list[JobState]:
    states = []
    for text in _split(texts):
        try:
            states.append(JobState(text.lower()))
        except ValueError:
            raise ValidationError(
                "--state", f"{text!r} is not a job state (one of {', '.join(JobState)})"
            ) from None
    return states


def _kinds(texts: Sequence[str] | None) -> list[str]:
    for text in texts or ():
        if not 1 <= len(text) <= 127:
            raise ValidationError("--kind", f"must be 1 to 127 characters, got {text!r}")
    return list(texts or ())


def _queues(texts: Sequence[str] | None, field: str) -> list[str]:
    return [validate_queue_name(name, field=field) for name in _split(texts)]


def _integer(text: str, field: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValidationError(field, f"must be an integer, got {text!r}") from None


def _int(text: str, field: str, low: int, high: int) -> int:
    value = _integer(text, field)
    if not low <= value <= high:
        raise ValidationError(field, f"must be between {low} and {high}, got {value}")
    return value


def _seconds(text: str, field: str) -> float:
    try:
        return parse_duration(text, text="go_or_seconds")
    except DurationError:
        raise ValidationError(
            field, f"invalid duration {text!r} (examples: 100ms, 1.5s, 2m, 1m30s, or seconds: 0.5)"
        ) from None


def _schema(args: argparse.Namespace) -> str | None:
    return validate_schema(args.schema, field="--schema")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _rate_limit(text: str) -> RateLimit:
    try:
        return parse_rate_limit(text, "--rate-limit")
    except InvalidConfigError as exc:
        raise ValidationError(exc.field, exc.rule) from None


def _field(text: str) -> str:
    """A settings field named on the command line (``max-workers`` or ``max_workers``)."""
    name = text.strip().replace("-", "_")
    if name not in FIELDS:
        raise ValidationError(
            "--clear", f"{text!r} is not a queue setting (one of {', '.join(FIELDS)})"
        )
    return name


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


@dataclass
class _Session:
    client: Client
    conn: psycopg.Connection[Any]
    schema: str | None

    def run(self, op: Op[R]) -> R:
        """Run an admin operation that the client has no method for, mapping a missing table
        to SchemaNotReadyError as the client's methods do."""
        from river._preflight import SCHEMA_ERRORS, schema_error_sync
        from river._sansio import run_sync

        try:
            return run_sync(self.conn, op)
        except SCHEMA_ERRORS as exc:
            mapped = schema_error_sync(self.conn, self.schema, exc, own=False)
            if mapped is None:
                raise
            raise mapped from exc


@contextmanager
def _session(
    args: argparse.Namespace, db: DatabaseAccess, schema: str | None
) -> Iterator[_Session]:
    # Imported when a command runs, not when the parser is built.
    from river._config import Config
    from river._sync_client import Client

    client = Client(None, Config(schema=schema))
    with db.connect(args) as conn:
        yield _Session(client, conn, schema)


def _handler(
    command: Callable[[argparse.Namespace, DatabaseAccess], int], db: DatabaseAccess
) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        try:
            return command(args, db)
        except ValidationError as exc:
            # Bad input, found before any SQL (here or by the library's own checks).
            _err(f"Error: {exc}")
            return EXIT_USAGE

    return handler


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    """RFC 3339 in UTC; None for None and for a naive time (an error whose ``at`` another
    writer left unreadable: :meth:`AttemptError.from_json` keeps it as ``datetime.min``)."""
    if value is None or value.tzinfo is None:
        return None
    return format_time(value.astimezone(UTC))


def _utc(value: datetime | None) -> str:
    """A compact absolute time: ``2026-12-06 19:24:01Z``."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _span(seconds: float) -> str:
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    for unit, size, sub, sub_size in (("d", 86_400, "h", 3_600), ("h", 3_600, "m", 60)):
        if total >= size:
            rest = (total % size) // sub_size
            return f"{total // size}{unit}{rest}{sub}" if rest else f"{total // size}{unit}"
    minutes, rest = divmod(total, 60)
    return f"{minutes}m{rest}s" if rest else f"{minutes}m"


def _relative(value: datetime | None, now: datetime) -> str:
    """``3m12s ago``, ``in 14s``, ``now`` (by this machine's clock)."""
    if value is None:
        return "-"
    delta = (value - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {_span(delta)}" if delta > 0 else f"{_span(-delta)} ago"


def _when(job: JobRow, now: datetime) -> tuple[str, datetime | None]:
    """The time that matters for the job's state, said in words, and the time."""
    if job.state.finalized:
        return f"finalized {_relative(job.finalized_at, now)}", job.finalized_at
    if job.state is JobState.RUNNING and job.attempted_at is not None:
        return f"started {_relative(job.attempted_at, now)}", job.attempted_at
    return f"scheduled {_relative(job.scheduled_at, now)}", job.scheduled_at


def _truncate(text: str, width: int) -> str:
    line = text.strip().split("\n", 1)[0]
    if len(line) > width or "\n" in text.strip():
        return line[: width - 3].rstrip() + "..."
    return line


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()
) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = []
    for row in [headers, *rows]:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _print_json(document: Any) -> None:
    _out(json.dumps(document, indent=2, ensure_ascii=False))


def _unique_states(mask: int | None) -> list[str] | None:
    if mask is None:
        return None
    return [state.value for state in JobState if mask & state.unique_bit]


def job_json(job: JobRow) -> dict[str, Any]:
    """Every column of a job row as JSON: datetimes in ISO 8601 UTC, ``args`` and
    ``metadata`` decoded, ``unique_key`` in hex, ``unique_states`` as the stored bit mask."""
    return {
        "id": job.id,
        "state": job.state.value,
        "queue": job.queue,
        "kind": job.kind,
        "priority": job.priority,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "args": json.loads(job.encoded_args),
        "metadata": job.metadata,
        "tags": job.tags,
        "created_at": _iso(job.created_at),
        "scheduled_at": _iso(job.scheduled_at),
        "attempted_at": _iso(job.attempted_at),
        "finalized_at": _iso(job.finalized_at),
        "attempted_by": job.attempted_by,
        "errors": [
            {"at": _iso(e.at), "attempt": e.attempt, "error": e.error, "trace": e.trace}
            for e in job.errors
        ],
        "unique_key": None if job.unique_key is None else job.unique_key.hex(),
        "unique_states": job.unique_states,
    }


def _job_lines(jobs: Sequence[JobRow], now: datetime) -> list[str]:
    rows = []
    for job in jobs:
        when, at = _when(job, now)
        error = _truncate(job.errors[-1].error, _ERROR_WIDTH) if job.errors else ""
        rows.append(
            [
                str(job.id),
                job.state.value,
                job.queue,
                job.kind,
                f"{job.attempt}/{job.max_attempts}",
                when,
                _utc(at),
                error,
            ]
        )
    headers = ["ID", "STATE", "QUEUE", "KIND", "ATTEMPT", "WHEN", "AT (UTC)", "LAST ERROR"]
    return _table(headers, rows, right=frozenset({0, 4}))


def _indented(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def _job_detail(job: JobRow, now: datetime) -> str:
    def at(value: datetime | None) -> str:
        return "-" if value is None else f"{_iso(value)} ({_relative(value, now)})"

    fields = [
        ("id", str(job.id)),
        ("kind", job.kind),
        ("queue", job.queue),
        ("state", job.state.value),
        ("priority", str(job.priority)),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        ("tags", ", ".join(job.tags) or "-"),
        ("attempted by", ", ".join(job.attempted_by) or "-"),
        ("created", at(job.created_at)),
        ("scheduled", at(job.scheduled_at)),
        ("attempted", at(job.attempted_at)),
        ("finalized", at(job.finalized_at)),
    ]
    if job.unique_key is not None:
        states = ", ".join(_unique_states(job.unique_states) or []) or "-"
        fields.append(("unique key", f"{job.unique_key.hex()} (states: {states})"))
    width = max(len(name) for name, _ in fields) + 1
    lines = [f"{name + ':':<{width}} {value}" for name, value in fields]
    lines.append("args:")
    lines.append(_indented(json.dumps(json.loads(job.encoded_args), indent=2, ensure_ascii=False)))
    lines.append("metadata:")
    lines.append(_indented(json.dumps(job.metadata, indent=2, ensure_ascii=False)))
    if not job.errors:
        lines.append("errors: none")
    else:
        lines.append(f"errors ({len(job.errors)}):")
        for error in job.errors:
            lines.append(f"  attempt {error.attempt} at {_iso(error.at) or 'an unknown time'}:")
            lines.append(_indented(error.error.rstrip() or "(no message)", "    "))
            if error.trace.strip():
                lines.append(_indented(error.trace.rstrip(), "    "))
    return "\n".join(lines)


def _duration_text(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def _override_text(metadata: Mapping[str, Any]) -> str:
    override, problems = from_metadata(metadata)
    parts = []
    for field, value in override.as_dict().items():
        if field in ("max_workers", "min_workers"):
            shown = str(value)
        elif field == "rate_limit":
            shown = f"{value['jobs']}/{_duration_text(float(value['per']))}"
            if "burst" in value:
                shown += f",burst={value['burst']}"
        else:
            shown = _duration_text(float(value))
        parts.append(f"{field}={shown}")
    parts.extend(f"invalid {problem.partition(':')[0]}" for problem in problems)
    return " ".join(parts) or "-"


def _queue_json(
    name: str, row: QueueRow | None, counts: Mapping[JobState, int] | None
) -> dict[str, Any]:
    override, problems = from_metadata(row.metadata if row is not None else None)
    return {
        "name": name,
        "status": _queue_status(row),
        "has_row": row is not None,
        "paused": row is not None and row.paused,
        "paused_at": _iso(row.paused_at) if row is not None else None,
        "created_at": _iso(row.created_at) if row is not None else None,
        "updated_at": _iso(row.updated_at) if row is not None else None,
        "metadata": row.metadata if row is not None else None,
        "override": override.as_dict(),
        "override_problems": problems,
        "jobs": None if counts is None else {state.value: n for state, n in counts.items()},
    }


def _queue_status(row: QueueRow | None) -> str:
    if row is None:
        return "no row"
    return "paused" if row.paused else "active"


# --------------------------------------------------------------------------------------------
# job commands
# --------------------------------------------------------------------------------------------


def _cmd_job_list(args: argparse.Namespace, db: DatabaseAccess) -> int:
    from river._admin import JobListParams, decode_cursor

    states = _states(args.state)
    kinds = _kinds(args.kind)
    queues = _queues(args.queue, "--queue")
    limit = _int(args.limit, "--limit", 1, MAX_LIST_LIMIT)
    if args.after is not None:
        try:
            decode_cursor(args.after)
        except ValidationError as exc:
            raise ValidationError("--after", exc.rule) from None
    schema = _schema(args)
    params = JobListParams(
        states=states or None,
        kinds=kinds or None,
        queues=queues or None,
        limit=limit,
        descending=True,
        after=args.after,
    )
    with _session(args, db, schema) as session:
        result = session.client.job_list_tx(session.conn, params)
    if args.json:
        _print_json({"jobs": [job_json(j) for j in result.jobs], "cursor": result.cursor})
        return EXIT_OK
    if not result.jobs:
        _out("no jobs")
        return EXIT_OK
    _out("\n".join(_job_lines(result.jobs, datetime.now(UTC))))
    if len(result.jobs) == limit:
        _err(f"(more may follow: add --after {result.cursor})")
    return EXIT_OK


def _cmd_job_get(args: argparse.Namespace, db: DatabaseAccess) -> int:
    (job_id,) = _job_ids([args.id])
    schema = _schema(args)
    with _session(args, db, schema) as session:
        try:
            job = session.client.job_get_tx(session.conn, job_id)
        except JobNotFoundError as exc:
            _err(f"Error: {exc}")
            return EXIT_NOT_FOUND
    if args.json:
        _print_json(job_json(job))
    else:
        _out(_job_detail(job, datetime.now(UTC)))
    return EXIT_OK


#: A job action: (session, id) -> (result word, row).
_Action = Callable[[_Session, int], tuple[str, JobRow]]


def _retry(session: _Session, job_id: int) -> tuple[str, JobRow]:
    import psycopg

    from river._admin import job_retry_changed_op
    from river._driver import queries_for

    # The statement leaves a running job alone, and an available, due one as it is.
    try:
        row, changed = session.run(job_retry_changed_op(queries_for(session.schema), job_id))
    except psycopg.errors.UniqueViolation as exc:  # a holder inserted concurrently
        raise UniqueConflictError(job_id) from exc
    return ("retried" if changed else "not retried"), row


def _cancel(session: _Session, job_id: int) -> tuple[str, JobRow]:
    row = session.client.job_cancel_tx(session.conn, job_id)
    if row.state is JobState.CANCELLED:
        return "cancelled", row
    if row.state is JobState.RUNNING:
        # Marked: the client working it cancels the attempt when the notification arrives.
        return "cancel requested", row
    return "not cancelled", row  # already completed or discarded


def _delete(session: _Session, job_id: int) -> tuple[str, JobRow]:
    return "deleted", session.client.job_delete_tx(session.conn, job_id)


#: Page size of the job list that collects the jobs a selection (--state, ...) matches.
_SELECTION_PAGE = 10_000


def _selection(args: argparse.Namespace) -> tuple[list[JobState], list[str], list[str]] | None:
    """The --state/--kind/--queue selection of retry/cancel/delete (None without one);
    ValidationError when it is given with ids, or neither is."""
    states = _states(args.state)
    kinds = _kinds(args.kind)
    queues = _queues(args.queue, "--queue")
    selected = bool(states or kinds or queues)
    if selected and args.ids:
        raise ValidationError(
            "ids", "give job ids or a selection (--state, --kind, --queue), not both"
        )
    if not selected and not args.ids:
        raise ValidationError("ids", "give job ids, or select jobs with --state, --kind or --queue")
    return (states, kinds, queues) if selected else None


def _selected_ids(
    session: _Session, selection: tuple[list[JobState], list[str], list[str]]
) -> list[int]:
    """Every job the selection matches when the command starts, in id order (jobs that match
    later are not acted on: a selection is a snapshot, not a loop). The pages are read in one
    REPEATABLE READ transaction, so that they all see the same snapshot."""
    import psycopg

    from river._admin import JobListParams

    states, kinds, queues = selection
    ids: list[int] = []
    cursor: str | None = None
    conn = session.conn
    isolation = conn.isolation_level
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction():
            while True:
                page = session.client.job_list_tx(
                    conn,
                    JobListParams(
                        states=states or None,
                        kinds=kinds or None,
                        queues=queues or None,
                        limit=_SELECTION_PAGE,
                        after=cursor,
                    ),
                )
                ids.extend(job.id for job in page.jobs)
                if len(page.jobs) < _SELECTION_PAGE:
                    return ids
                cursor = page.cursor
    finally:
        conn.isolation_level = isolation


def _each_job(args: argparse.Namespace, db: DatabaseAccess, action: _Action) -> int:
    selection = _selection(args)
    ids = _job_ids(args.ids) if selection is None else []
    schema = _schema(args)
    results: list[dict[str, Any]] = []
    try:
        with _session(args, db, schema) as session:
            if selection is not None:
                ids = _selected_ids(session, selection)
                if not ids and not args.json:
                    _out("no jobs")
            with Progress(len(ids), "jobs", min_total=PROGRESS_MIN_JOBS) as progress:
                _act_on_each(args, ids, session, action, progress, results)
    finally:
        # Also when the database fails part-way (the error follows on stderr): a script
        # reading --json learns which jobs were acted on before it.
        if args.json:
            _print_json(results)
    if any(r["result"] == "error" for r in results):
        return EXIT_ERROR
    missing = sum(1 for r in results if r["job"] is None)
    return EXIT_NOT_FOUND if missing else EXIT_OK


#: The result word of an id the action refused (``job`` is null in --json).
_REFUSALS: dict[type[Exception], str] = {
    JobNotFoundError: "not found",
    JobRunningError: "running",
    UniqueConflictError: "unique conflict",
}


def _act_on_each(
    args: argparse.Namespace,
    ids: list[int],
    session: _Session,
    action: _Action,
    progress: Progress,
    results: list[dict[str, Any]],
) -> None:
    import psycopg

    for job_id in ids:
        try:
            word, row = action(session, job_id)
        except (JobNotFoundError, JobRunningError, UniqueConflictError) as exc:
            word = _REFUSALS[type(exc)]
            results.append({"id": job_id, "result": word.replace(" ", "_"), "job": None})
            progress.echo(f"Error: {exc}", file=sys.stderr)
        except psycopg.Error as exc:
            if session.conn.broken or session.conn.closed:
                raise  # the connection is gone: the command fails here (exit 1)
            # One statement failed (a lock held past the statement timeout, a trigger): on
            # the autocommit connection it changed nothing, and the other ids go on.
            reason = " ".join(str(exc).split()) or type(exc).__name__
            results.append({"id": job_id, "result": "error", "error": reason, "job": None})
            progress.echo(f"Error: job {job_id}: {reason}", file=sys.stderr)
        else:
            results.append({"id": job_id, "result": word.replace(" ", "_"), "job": job_json(row)})
            if not args.json:
                progress.echo(f"{job_id} {word} ({row.state.value})")
        progress.advance()


def _cmd_job_retry(args: argparse.Namespace, db: DatabaseAccess) -> int:
    return _each_job(args, db, _retry)


def _cmd_job_cancel(args: argparse.Namespace, db: DatabaseAccess) -> int:
    return _each_job(args, db, _cancel)


def _cmd_job_delete(args: argparse.Namespace, db: DatabaseAccess) -> int:
    return _each_job(args, db, _delete)


# --------------------------------------------------------------------------------------------
# queue commands
# --------------------------------------------------------------------------------------------


def _cmd_queue_list(args: argparse.Namespace, db: DatabaseAccess) -> int:
    from river._admin import job_counts_by_queue_op
    from river._driver import queries_for

    schema = _schema(args)
    with _session(args, db, schema) as session:
        rows = {r.name: r for r in session.client.queue_list_tx(session.conn, MAX_QUEUES)}
        counts = (
            None if args.no_counts else session.run(job_counts_by_queue_op(queries_for(schema)))
        )
    names = sorted(set(rows) | set(counts or ()))
    if args.json:
        _print_json(
            [
                _queue_json(n, rows.get(n), None if counts is None else _counts(counts, n))
                for n in names
            ]
        )
        return EXIT_OK
    if not names:
        _out("no queues")
        return EXIT_OK
    now = datetime.now(UTC)
    headers = ["NAME", "STATUS", "CREATED (UTC)", "UPDATED", "OVERRIDE"]
    if counts is not None:
        headers += ["AVAILABLE", "RUNNING", "RETRYABLE", "SCHEDULED"]
    lines = []
    for name in names:
        row = rows.get(name)
        line = [
            name,
            _queue_status(row),
            _utc(row.created_at) if row is not None else "-",
            _relative(row.updated_at, now) if row is not None else "-",
            _override_text(row.metadata) if row is not None else "-",
        ]
        if counts is not None:
            line += [str(n) for n in _counts(counts, name).values()]
        lines.append(line)
    _out("\n".join(_table(headers, lines, right=frozenset({5, 6, 7, 8}))))
    if any(name not in rows for name in names):
        _out("no row: jobs wait in a queue that no client works (it has no river_queue row)")
    return EXIT_OK


def _counts(counts: Mapping[str, Mapping[JobState, int]], name: str) -> dict[JobState, int]:
    from river._admin import COUNTED_STATES

    found = counts.get(name, {})
    return {state: found.get(state, 0) for state in COUNTED_STATES}


def _pause_or_resume(args: argparse.Namespace, db: DatabaseAccess, *, pause: bool) -> int:
    names = [n if n == "*" else validate_queue_name(n, field="name") for n in args.names]
    names = list(dict.fromkeys(names))
    schema = _schema(args)
    missing = 0
    with _session(args, db, schema) as session:
        for name in names:
            try:
                if pause:
                    session.client.queue_pause_tx(session.conn, name)
                else:
                    session.client.queue_resume_tx(session.conn, name)
            except QueueNotFoundError as exc:
                missing += 1
                _err(f"Error: {exc}")
                continue
            target = "all queues" if name == "*" else name
            _out(f"{target} {'paused' if pause else 'resumed'}")
    return EXIT_NOT_FOUND if missing else EXIT_OK


def _cmd_queue_pause(args: argparse.Namespace, db: DatabaseAccess) -> int:
    return _pause_or_resume(args, db, pause=True)


def _cmd_queue_resume(args: argparse.Namespace, db: DatabaseAccess) -> int:
    return _pause_or_resume(args, db, pause=False)


def _cmd_queue_update(args: argparse.Namespace, db: DatabaseAccess) -> int:
    name = validate_queue_name(args.name, field="name")
    given: dict[str, Any] = {}
    if args.max_workers is not None:
        given["max_workers"] = _integer(args.max_workers, "--max-workers")
    if args.min_workers is not None:
        given["min_workers"] = _integer(args.min_workers, "--min-workers")
    if args.rate_limit is not None:
        given["rate_limit"] = _rate_limit(args.rate_limit)
    if args.fetch_cooldown is not None:
        given["fetch_cooldown"] = _seconds(args.fetch_cooldown, "--fetch-cooldown")
    if args.fetch_poll_interval is not None:
        given["fetch_poll_interval"] = _seconds(args.fetch_poll_interval, "--fetch-poll-interval")
    clear: list[str] = []
    if args.clear is not None:
        clear = [_field(f) for f in _split(args.clear) if f] if args.clear else list(FIELDS)
    for field in clear:
        if field in given:
            raise ValidationError("--clear", f"{field} is also given as {_flag(field)}")
    if not given and not clear:
        raise ValidationError(
            "queue update",
            "nothing to update: give --max-workers, --min-workers, --fetch-cooldown, "
            "--fetch-poll-interval, --rate-limit or --clear",
        )
    try:
        validate_patch({**given, **dict.fromkeys(clear)})
    except ValueError as exc:
        field, _, rule = str(exc).partition(": ")
        raise ValidationError(_flag(field), rule) from None
    schema = _schema(args)
    with _session(args, db, schema) as session, session.conn.transaction():
        # One transaction: the update and the notification telling clients about it commit
        # together (the session's connection is in autocommit mode).
        try:
            row = session.client.queue_update_tx(
                session.conn,
                name,
                max_workers=given.get("max_workers"),
                min_workers=given.get("min_workers"),
                fetch_cooldown=given.get("fetch_cooldown"),
                fetch_poll_interval=given.get("fetch_poll_interval"),
                rate_limit=given.get("rate_limit"),
                clear=clear,
            )
        except QueueNotFoundError as exc:
            _err(f"Error: {exc} (no client has worked it yet)")
            return EXIT_NOT_FOUND
    if args.json:
        _print_json(_queue_json(row.name, row, None))
    else:
        text = _override_text(row.metadata)
        _out(f"{row.name} updated: {'no override' if text == '-' else text}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------

_EXIT_TEXT = (
    "Exit status: 0 success; 1 operational error (database unreachable, schema missing); "
    "2 bad input (nothing sent to the database); 3 some jobs or queues not found, or refused "
    "(the others were acted on). See docs/cli.md."
)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document (times in ISO 8601, UTC)"
    )


def _register_job(commands: Commands, db: DatabaseAccess) -> None:
    group = commands.group(
        "job",
        help="list, inspect, retry, cancel and delete jobs",
        description="Administer jobs (river_job). " + _EXIT_TEXT,
        usage_status=EXIT_USAGE,
    )
    listing = group.add(
        "list",
        help="list jobs, newest first",
        description="List jobs, newest first, as a table (or --json). Filters are AND-ed; a "
        "repeated filter matches any of its values (--state and --queue also take "
        "comma-separated lists). " + _EXIT_TEXT,
        handler=_handler(_cmd_job_list, db),
    )
    db.add_flags(listing)
    listing.add_argument(
        "--state", action="append", metavar="STATE", help="only jobs in this state; repeatable"
    )
    listing.add_argument(
        "--kind", action="append", metavar="KIND", help="only jobs of this kind; repeatable"
    )
    listing.add_argument(
        "--queue", action="append", metavar="QUEUE", help="only jobs of this queue; repeatable"
    )
    listing.add_argument(
        "--limit",
        default="100",
        metavar="N",
        help=f"at most N jobs, 1 to {MAX_LIST_LIMIT} (default: 100)",
    )
    listing.add_argument(
        "--after", metavar="CURSOR", help="the page after this cursor (printed by a full page)"
    )
    _json_flag(listing)

    get = group.add(
        "get",
        help="show one job: args, metadata, times and every attempt's error",
        description="Show one job with its args, metadata, tags, attempts and errors (with "
        "traces). " + _EXIT_TEXT,
        handler=_handler(_cmd_job_get, db),
    )
    db.add_flags(get)
    get.add_argument("id", metavar="ID", help="the job's id")
    _json_flag(get)

    for name, command, help_text, sample in [
        ("retry", _cmd_job_retry, "make jobs available now (not running ones)", "retried"),
        (
            "cancel",
            _cmd_job_cancel,
            "cancel jobs (a running job is cancelled by its client)",
            "cancelled",
        ),
        ("delete", _cmd_job_delete, "delete jobs (not running ones)", "deleted"),
    ]:
        parser = group.add(
            name,
            help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}: one line per job, e.g. "
            f"'12 {sample} (available)'. The jobs are the ids given, or every job that "
            "--state, --kind and --queue select (AND-ed; each repeatable or comma-separated) "
            "when the command starts, in id order. Each job is acted on in its own statement. "
            f"On a terminal, more than {PROGRESS_MIN_JOBS} jobs show a progress counter on "
            "stderr. " + _EXIT_TEXT,
            handler=_handler(command, db),
        )
        db.add_flags(parser)
        parser.add_argument("ids", nargs="*", metavar="ID", help="job ids")
        for flag, what in (
            ("state", "in this state"),
            ("kind", "of this kind"),
            ("queue", "of this queue"),
        ):
            parser.add_argument(
                f"--{flag}",
                action="append",
                metavar=flag.upper(),
                help=f"instead of ids: every job {what}; repeatable",
            )
        _json_flag(parser)


def _register_queue(commands: Commands, db: DatabaseAccess) -> None:
    group = commands.group(
        "queue",
        help="list, pause, resume and update queues",
        description="Administer queues (river_queue). " + _EXIT_TEXT,
        usage_status=EXIT_USAGE,
    )
    listing = group.add(
        "list",
        help="list queues with their override and job counts",
        description="List queues: status (active, paused, or 'no row' for jobs waiting in a "
        "queue no client works), times, cluster-wide override and counts of available, "
        "running, retryable and scheduled jobs. " + _EXIT_TEXT,
        handler=_handler(_cmd_queue_list, db),
    )
    db.add_flags(listing)
    listing.add_argument(
        "--no-counts", action="store_true", help="skip counting jobs (one grouped query)"
    )
    _json_flag(listing)

    for name, command, help_text in [
        ("pause", _cmd_queue_pause, "pause queues for every client, River (Go) ones included"),
        ("resume", _cmd_queue_resume, "resume paused queues"),
    ]:
        parser = group.add(
            name,
            help=help_text + " ('*': all)",
            description=f"{help_text[0].upper()}{help_text[1:]}. NAME '*' (quoted) means every "
            "queue. " + _EXIT_TEXT,
            handler=_handler(command, db),
        )
        db.add_flags(parser)
        parser.add_argument("names", nargs="+", metavar="NAME", help="queue name, or '*'")

    update = group.add(
        "update",
        help="set or clear a queue's cluster-wide settings",
        description="Set (or clear) the cluster-wide override of a queue's settings: every "
        "river-queue client working the queue applies it within about a poll interval, over "
        "its own configuration; River (Go) clients ignore it. Durations: 100ms, 1.5s, 2m, "
        "1m30s, or plain seconds. " + _EXIT_TEXT,
        handler=_handler(_cmd_queue_update, db),
    )
    db.add_flags(update)
    update.add_argument("name", metavar="NAME", help="queue name")
    update.add_argument("--max-workers", metavar="N", help="jobs worked at once per client")
    update.add_argument(
        "--min-workers",
        metavar="N",
        help="below --max-workers: autoscale the queue between the two",
    )
    update.add_argument(
        "--rate-limit",
        metavar="JOBS/PERIOD",
        help="jobs started per period across all clients, e.g. 50/1s, 1000/1h, 10/1s,burst=10",
    )
    update.add_argument(
        "--fetch-cooldown", metavar="DURATION", help="least time between two fetches"
    )
    update.add_argument(
        "--fetch-poll-interval", metavar="DURATION", help="fetch at least this often"
    )
    update.add_argument(
        "--clear",
        nargs="*",
        metavar="FIELD",
        help=f"remove these fields from the override ({', '.join(FIELDS)}); "
        "none named: all of them",
    )
    _json_flag(update)


def register_admin_commands(commands: Commands, db: DatabaseAccess) -> None:
    """``job list|get|retry|cancel|delete`` and ``queue list|pause|resume|update``."""
    _register_job(commands, db)
    _register_queue(commands, db)
