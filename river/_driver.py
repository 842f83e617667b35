"""Every SQL statement of the runtime: loading the named queries, decoding rows, and the
write-once operations (see river/_sansio.py) that both clients run.

Query text lives in ``river/_sql/*.sql`` (one file per table, or per service for statements
on no table of River's). It is read once at import and rendered once per schema
(:func:`queries_for`), so the hot path only executes prepared text. A file is a sequence of
entries, each opened by a header line:

- ``-- name: <name>``: a complete statement, run as ``queries.<name>`` (bytes).
- ``-- name: <name>  returning: <fragment>``: a statement whose ``RETURNING /* returning */``
  gets the list of columns of ``<fragment>``, once at import. Consecutive headers with no text
  between them share the text that follows: one statement, one name per result shape, and no
  copy of a long statement per shape.
- ``-- fragment: <name>``: a piece of SQL, composed with :mod:`psycopg.sql` where statements are
  built per call (:meth:`Queries.fragment`, :meth:`Queries.compose`): a filter, an order, or a
  statement with ``{field}`` slots for identifiers and other fragments.

Lines starting with ``--`` are comments (they say why) and are dropped; ``/* schema */`` before
an object name is replaced by the quoted schema and a dot, or nothing (river/_schema.py).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

from psycopg import sql

from river._errors import RiverError
from river._pgarray import all_null, bytea_array, int_array, text_array
from river._queue_override import QueueOverride, from_metadata
from river._sansio import Op, Query
from river._schema import qualify
from river._types import AttemptError, InsertResult, JobRow, JobState

__all__ = [
    "Queries",
    "QueueRow",
    "decode_queue_json",
    "job_from_row",
    "load_sql",
    "parse_sql",
    "queries_for",
]

logger = logging.getLogger("river.client")

_HEADER_RE = re.compile(
    r"^-- (name|fragment): (\w+)(?:[ \t]+returning: (\w+))?[ \t]*$", re.MULTILINE
)
#: Where a statement's RETURNING columns go (see the module doc).
RETURNING_MARKER = "/* returning */"
#: The files of the runtime's queries (river_migration.sql is the migrator's, river/migrate.py).
_FILES = (
    "job.sql",
    "queue.sql",
    "leader.sql",
    "maintenance.sql",
    "notifier.sql",
    "dev.sql",
    "session.sql",
)


def _body(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if not ln.lstrip().startswith("--")]
    return "\n".join(lines).strip()


def load_sql(*filenames: str) -> tuple[dict[str, str], dict[str, str]]:
    """The statements and the fragments of ``filenames`` (in ``river/_sql``): see
    :func:`parse_sql`."""
    files = resources.files("river._sql")
    return parse_sql({name: files.joinpath(name).read_text(encoding="utf-8") for name in filenames})


def parse_sql(files: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The statements and the fragments of ``files`` ({file name: text}), by name, with every
    statement's RETURNING marker filled (see the module doc). Names are unique across all the
    files; a malformed file raises RiverError (at import: a broken catalog never ships)."""
    texts: dict[str, tuple[str, str | None]] = {}
    fragments: dict[str, str] = {}
    for filename, text in files.items():
        headers = list(_HEADER_RE.finditer(text))
        if _body(text[: headers[0].start()] if headers else text):
            raise RiverError(f"river/_sql/{filename}: text before the first header")
        waiting: list[re.Match[str]] = []
        for i, header in enumerate(headers):
            end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
            body = _body(text[header.end() : end])
            waiting.append(header)
            if not body:
                continue  # shares the text of the next header (see the module doc)
            for kind, name, returning in (h.groups() for h in waiting):
                if name in texts or name in fragments:
                    raise RiverError(f"river/_sql/{filename}: {name!r} is defined twice")
                if kind == "fragment":
                    if returning is not None or len(waiting) > 1:
                        raise RiverError(
                            f"river/_sql/{filename}: fragment {name!r} needs a text of its own"
                        )
                    fragments[name] = body
                else:
                    texts[name] = (body, returning)
            waiting = []
        if waiting:
            raise RiverError(f"river/_sql/{filename}: {waiting[-1][2]!r} has no text")
    statements: dict[str, str] = {}
    for name, (body, returning) in texts.items():
        marks = body.count(RETURNING_MARKER)
        if returning is None and marks == 0:
            statements[name] = body
        elif returning in fragments and marks == 1:
            statements[name] = body.replace(RETURNING_MARKER, fragments[returning])
        else:
            raise RiverError(
                f"river/_sql: {name!r} needs exactly one {RETURNING_MARKER} and a known "
                f"'returning:' fragment, or neither (markers: {marks}, returning: {returning})"
            )
    return statements, fragments


_STATEMENTS, _FRAGMENTS = load_sql(*_FILES)


class Queries:
    """The named queries rendered for one schema; attribute access by name. ``statements`` and
    ``fragments`` (as :func:`load_sql` returns them) default to the runtime's catalog; the
    dashboard renders its own file with the same class (river/ui/_queries.py)."""

    def __init__(
        self,
        schema: str | None,
        statements: dict[str, str] | None = None,
        fragments: dict[str, str] | None = None,
    ) -> None:
        self.schema = schema
        statements = _STATEMENTS if statements is None else statements
        fragments = _FRAGMENTS if fragments is None else fragments
        self._q = {name: qualify(text, schema).encode() for name, text in statements.items()}
        self._fragments = {name: sql.SQL(qualify(text, schema)) for name, text in fragments.items()}

    def __getattr__(self, name: str) -> bytes:
        try:
            return self._q[name]
        except KeyError:
            raise AttributeError(name) from None

    def fragment(self, name: str) -> sql.SQL:
        """The fragment ``name`` (``-- fragment:`` in river/_sql), rendered for this schema."""
        return self._fragments[name]

    def compose(self, name: str, **fields: sql.Composable) -> sql.Composed:
        """The fragment ``name`` with its ``{field}`` slots filled (``psycopg.sql.SQL.format``):
        identifiers as ``sql.Identifier``, other fragments, or tokens as ``sql.SQL``."""
        return self._fragments[name].format(**fields)


@functools.lru_cache(maxsize=64)
def queries_for(schema: str | None) -> Queries:
    """Queries rendered for ``schema`` (cached)."""
    return Queries(schema)


_STATES = {s.value: s for s in JobState}


def _metadata(value: Any, job_id: int = 0) -> dict[str, Any]:
    # Selected as text: decoding it here is ~3 us/row cheaper than psycopg's jsonb loader, and
    # most rows carry the empty object.
    if value == "{}" or value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            # Written by someone else (an integer beyond Python's 4,300-digit limit, nesting
            # deeper than its recursion limit): decoded leniently, never failing the fetch
            # that already locked the job's batch.
            value = _job_metadata_leniently(value, job_id)
    return value if isinstance(value, dict) else {}


def _job_metadata_leniently(text: str, job_id: int) -> Any:
    value, error = _lenient_loads(text)
    if error is not None:
        logger.warning(
            "job %d: its metadata cannot be decoded (%s): read as empty",
            job_id,
            error,
            extra={"job_id": job_id},
        )
    return value


def job_from_row(row: Sequence[Any]) -> JobRow:
    """Decode one row of the job row shape (river/_sql/job.sql; lenient: rows from any
    writer)."""
    # Positional, in the column order (JobRow's field order): every fetched job passes here.
    # Rows of some statements carry more columns after these (e.g. insert's "skipped").
    if len(row) != 18:
        row = row[:18]
    (
        id_, kind, queue, state, args, attempt, max_attempts, priority, created_at,
        scheduled_at, attempted_at, finalized_at, attempted_by, errors, metadata, tags,
        unique_key, unique_states,
    ) = row  # fmt: skip
    return JobRow(
        id_, kind, queue, _STATES[state], args, attempt, max_attempts, priority, created_at,
        scheduled_at, attempted_at, finalized_at, attempted_by or [],
        [AttemptError.from_json(e) for e in errors if isinstance(e, dict)] if errors else [],
        {} if metadata == "{}" or metadata is None else _metadata(metadata, id_),
        tags or [],
        bytes(unique_key) if unique_key is not None else None,
        unique_states,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A row of ``river_queue``."""

    name: str
    created_at: datetime
    metadata: dict[str, Any]
    paused_at: datetime | None
    updated_at: datetime

    @property
    def paused(self) -> bool:
        """Whether the queue is paused."""
        return self.paused_at is not None

    @property
    def override(self) -> QueueOverride:
        """The queue's cluster-wide settings override (``queue_update``; falsy when none).
        Invalid fields in the stored value are left out."""
        return from_metadata(self.metadata)[0]


def _lenient_int(text: str) -> int | float:
    # An integer beyond Python's int-conversion limit (4,300 digits by default), which jsonb
    # stores: read as json reads 1e5000, an infinite float (invalid wherever a setting is
    # expected), instead of raising ValueError.
    try:
        return int(text)
    except ValueError:
        return float(text)


def _lenient_loads(text: str | bytes) -> tuple[Any, str | None]:
    """``text`` decoded with integers of any length (:func:`_lenient_int`): (value, None), or
    (None, the error's name) when Python cannot decode it at all (nesting deeper than its
    recursion limit)."""
    try:
        return json.loads(text, parse_int=_lenient_int), None
    except (ValueError, RecursionError, MemoryError) as exc:
        return None, type(exc).__name__


def decode_queue_json(value: Any, queue: str, what: str = "metadata") -> Any:
    """A JSON value of a ``river_queue`` row, selected as text (river/_sql/queue.sql), decoded
    leniently: whoever can write the row (the application, River (Go), River Pro, a person)
    must never make a client fail to start, poll or read its queues. Integers of any length
    decode (see :func:`_lenient_int`); a value Python cannot decode at all (nested deeper than
    its recursion limit) is logged at WARNING and reads as None. NULL is None."""
    if value is None or not isinstance(value, str | bytes):
        return value  # NULL, or already decoded (a caller's own jsonb loader)
    decoded, error = _lenient_loads(value)
    if error is not None:
        # Once per value (the keep-alive reads every queue's row again and again).
        seen = (queue, what, hash(value))
        if seen not in _UNDECODABLE:
            if len(_UNDECODABLE) >= 1024:
                _UNDECODABLE.clear()
            _UNDECODABLE.add(seen)
            logger.warning(
                "queue %s: ignoring its %s, which cannot be decoded (%s)",
                queue,
                what,
                error,
                extra={"queue": queue},
            )
    return decoded


#: The undecodable values already logged (bounded).
_UNDECODABLE: set[tuple[str, str, int]] = set()


def queue_from_row(row: Sequence[Any]) -> QueueRow:
    """Decode one river_queue row (``metadata`` selected as text, decoded leniently: see
    :func:`decode_queue_json`; anything but an object reads as empty)."""
    # Most queues have none: no decoding.
    metadata = {} if row[2] == "{}" else decode_queue_json(row[2], row[0])
    return QueueRow(
        name=row[0],
        created_at=row[1],
        metadata=metadata if isinstance(metadata, dict) else {},
        paused_at=row[3],
        updated_at=row[4],
    )


# --- insert -------------------------------------------------------------------------------------


@dataclass(slots=True)
class InsertBatch:
    """Parallel column arrays for ``job_insert_many`` / ``job_copy`` (built by river/_insert.py)."""

    args: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)
    priority: list[int] = field(default_factory=list)
    max_attempts: list[int] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    scheduled_at: list[datetime | None] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)
    unique_key: list[bytes | None] = field(default_factory=list)
    unique_states: list[int | None] = field(default_factory=list)
    #: Insert notification payloads, one per distinct queue with an available row.
    notify_payloads: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.kind)


def insert_many_op(q: Queries, batch: InsertBatch) -> Op[list[InsertResult]]:
    """Insert the batch in one statement (with its notifications); results in input order.

    A batch without unique keys reads back only the columns the server fills (id, created_at,
    scheduled_at, and args as jsonb normalised them) and builds the rest from what it sent."""
    new = all_null(batch.unique_key)
    if len(batch) == 1 and len(batch.notify_payloads) <= 1:
        row = yield Query(
            q.job_insert_one_new if new else q.job_insert_one,
            {
                "schema": q.schema,
                "notify_payload": batch.notify_payloads[0] if batch.notify_payloads else None,
                "args": batch.args[0],
                "kind": batch.kind[0],
                "queue": batch.queue[0],
                "priority": batch.priority[0],
                "max_attempts": batch.max_attempts[0],
                "state": batch.state[0],
                "scheduled_at": batch.scheduled_at[0],
                "tags": batch.tags[0],
                "metadata": batch.metadata[0],
                "unique_key": batch.unique_key[0],
                "unique_states": batch.unique_states[0],
            },
            fetch="one",
            prepare=True,
            reuse_cursor=True,
        )
        if new:
            return _new_rows(batch, [row])
        return [InsertResult(job_from_row(row), bool(row[18]))]
    # Text literals and NULL for a column of None throughout (river/_pgarray.py, job.sql).
    rows = yield Query(
        q.job_insert_many_new if new else q.job_insert_many,
        {
            "schema": q.schema,
            "notify_payloads": text_array(batch.notify_payloads),
            "args": text_array(batch.args),
            "kind": text_array(batch.kind),
            "queue": text_array(batch.queue),
            "priority": int_array(batch.priority),
            "max_attempts": int_array(batch.max_attempts),
            "state": text_array(batch.state),
            "scheduled_at": None if all_null(batch.scheduled_at) else batch.scheduled_at,
            "tags": text_array(batch.tags),
            # The empty object throughout (no job sets metadata): NULL, which the statement
            # turns back into '{}'.
            "metadata": (
                None if batch.metadata.count("{}") == len(batch) else text_array(batch.metadata)
            ),
            "unique_key": None if new else bytea_array(batch.unique_key),
            "unique_states": (
                None if all_null(batch.unique_states) else int_array(batch.unique_states)
            ),
        },
        binary=True,  # ids and timestamps decode with less work than from text
    )
    if len(rows) != len(batch):
        # Only a trigger on river_job that drops rows could do this; never pair rows wrongly.
        raise RiverError(
            f"the insert statement returned {len(rows)} rows for {len(batch)} jobs "
            "(does a trigger on river_job skip rows?)"
        )
    if new:
        return _new_rows(batch, rows)
    return [InsertResult(job_from_row(r), bool(r[18])) for r in rows]


def _new_rows(batch: InsertBatch, returned: Sequence[Sequence[Any]]) -> list[InsertResult]:
    """The rows the jobs of ``batch`` were inserted as, from the values sent and ``returned``
    (per job, in order: id, args as stored, created_at, and scheduled_at or NULL when it is
    created_at). Valid only for a fresh insert."""
    # One pass over the columns, JobRow fields by position (the whole row, defaults included).
    states = _STATES
    return [
        InsertResult(
            JobRow(
                r[0], kind, queue, states[state], r[1], 0, max_attempts, priority, r[2],
                r[2] if r[3] is None else r[3],
                None, None, [], [], {} if metadata == "{}" else _metadata(metadata),
                tags.split(",") if tags else [],
            )
        )
        for r, kind, queue, state, max_attempts, priority, metadata, tags in zip(
            returned, batch.kind, batch.queue, batch.state, batch.max_attempts, batch.priority,
            batch.metadata, batch.tags, strict=True,
        )
    ]  # fmt: skip


def copy_op(q: Queries, batch: InsertBatch, now: datetime) -> Op[int]:
    """COPY the batch (no conflict handling: a unique clash aborts it), then notify."""
    # Text COPY: values psycopg would format per row (the creation time, tag arrays) are
    # formatted once or written as array literals. Tags are [\w-] only, and quoted so that a
    # tag such as "null" stays a string.
    now_text = now.isoformat()

    def rows() -> Any:
        args, kind, queue, state = batch.args, batch.kind, batch.queue, batch.state
        priority, max_attempts, metadata = batch.priority, batch.max_attempts, batch.metadata
        scheduled_at, tags, unique_key = batch.scheduled_at, batch.tags, batch.unique_key
        unique_states = batch.unique_states
        for i in range(len(batch)):
            tag_text = tags[i]
            mask = unique_states[i]
            yield (
                args[i],
                now_text,
                kind[i],
                max_attempts[i],
                metadata[i],
                priority[i],
                queue[i],
                scheduled_at[i] or now_text,
                state[i],
                '{"' + tag_text.replace(",", '","') + '"}' if tag_text else "{}",
                unique_key[i],
                None if mask is None else format(mask, "08b"),
            )

    count: int = yield Query(q.job_copy, fetch="copy", rows=rows())
    if batch.notify_payloads:
        yield from notify_op(q, "river_insert", batch.notify_payloads)
    return count


def notify_op(q: Queries, topic: str, payloads: list[str]) -> Op[None]:
    """Send payloads on ``<schema>.<topic>`` (in the caller's transaction)."""
    yield Query(
        q.notify_many,
        {"schema": q.schema, "topic": topic, "payloads": payloads},
        fetch="none",
    )


# --- fetch and completion -----------------------------------------------------------------------


def fetch_op(q: Queries, queue: str, limit: int, client_id: str) -> Op[list[JobRow]]:
    """Lock up to ``limit`` available, due jobs of ``queue`` and mark them running."""
    rows = yield Query(
        q.job_fetch,
        {"queue": queue, "limit": limit, "client_id": client_id},
        prepare=True,
        binary=True,
        reuse_cursor=True,  # at most a fetch's limit of rows (a producer's free slots)
    )
    return [job_from_row(r) for r in rows]


def fetch_limited_op(
    q: Queries, queue: str, limit: int, client_id: str, rate: float, capacity: int
) -> Op[tuple[list[JobRow], float | None, bool]]:
    """:func:`fetch_op` for a rate-limited queue (``job_fetch_limited``): the jobs, the tokens
    the queue's bucket held before the fetch (None: its river_queue row was locked by another
    transaction, or is missing), and whether the row exists."""
    rows = yield Query(
        q.job_fetch_limited,
        {
            "queue": queue,
            "limit": limit,
            "client_id": client_id,
            "rate": rate,
            "capacity": capacity,
        },
        prepare=True,
        binary=True,
    )
    first = rows[0]
    tokens = None if first[18] is None else float(first[18])
    return [job_from_row(r) for r in rows if r[0] is not None], tokens, bool(first[19])


@dataclass(slots=True)
class CompletionBatch:
    """Parallel arrays for ``job_set_state_many`` (see river/_completer.py)."""

    id: list[int] = field(default_factory=list)
    #: The attempt each outcome belongs to (the row's attempt when it was fetched): the fence.
    seen_attempt: list[int] = field(default_factory=list)
    #: The row's attempted_at when it was fetched: with the attempt, the fence (the number
    #: alone can come back after a snooze or an interruption).
    seen_attempted_at: list[datetime | None] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    finalized_at: list[datetime | None] = field(default_factory=list)
    scheduled_at: list[datetime | None] = field(default_factory=list)
    attempt: list[int | None] = field(default_factory=list)
    error: list[str | None] = field(default_factory=list)
    metadata: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.id)


#: Identifies one attempt of one job: (job id, attempt number).
AttemptKey = tuple[int, int]


def set_state_many_op(
    q: Queries, batch: CompletionBatch, *, full_rows: bool = False
) -> Op[dict[AttemptKey, JobRow | str]]:
    """Write a batch of outcomes, each fenced by its attempt. Returns, for the outcomes that
    applied, {(job id, attempt): persisted state} or, with ``full_rows``, {(job id, attempt):
    the row as persisted}. An outcome missing from the result was not applied: its row was
    deleted, or a newer attempt of the job owns it (see the fence in river/_sql/job.sql)."""
    # Text literals and NULL for a column of None throughout (river/_pgarray.py, job.sql).
    rows = yield Query(
        q.job_set_state_many_rows if full_rows else q.job_set_state_many,
        {
            "id": int_array(batch.id),
            "seen_attempt": int_array(batch.seen_attempt),
            "seen_attempted_at": batch.seen_attempted_at,
            "state": text_array(batch.state),
            "finalized_at": None if all_null(batch.finalized_at) else batch.finalized_at,
            "scheduled_at": None if all_null(batch.scheduled_at) else batch.scheduled_at,
            "attempt": None if all_null(batch.attempt) else int_array(batch.attempt),
            "error": None if all_null(batch.error) else text_array(batch.error),
            "metadata": None if all_null(batch.metadata) else text_array(batch.metadata),
        },
        prepare=True,
    )
    if full_rows:
        return {(r[1], r[0]): job_from_row(r[1:]) for r in rows}
    return {(r[1], r[0]): r[2] for r in rows}


def upsert_queues_op(q: Queries, names: list[str]) -> Op[dict[str, QueueRow]]:
    """Make sure ``river_queue`` has a row for each queue (touching ``updated_at``, which the
    queue cleaner reads); return the rows (paused state, cluster-wide override) by name."""
    if not names:
        return {}
    rows = yield Query(q.queue_upsert_many, {"names": names})
    return {r[0]: queue_from_row(r) for r in rows}
