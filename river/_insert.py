"""Turning (args, InsertOpts) pairs into validated insert rows (PROTOCOL.md section 4).

Everything here runs before any SQL: a bad job raises ValidationError naming the field (and,
for batches, its index) and the rule, and nothing is written.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from river._args import JobArgs, validate_kind
from river._driver import InsertBatch
from river._errors import DuplicateUniqueKeyInBatchError, UnknownJobKindError, ValidationError
from river._names import MAX_QUEUE_NAME_LENGTH, validate_queue_name
from river._types import InsertOpts, JobState, UniqueOpts
from river._unique import unique_key
from river._validate import DEFAULT_MAX_ENCODED_SIZE, encode_job_args, encode_json_value

__all__ = [
    "MAX_QUEUE_NAME_LENGTH",
    "InsertDefaults",
    "NotifyLimiter",
    "build_batch",
    "insert_payload",
    "validate_queue_name",
]

_TAG_RE = re.compile(r"[\w][\w\-]+[\w]", re.ASCII)
_SMALLINT_MAX = 32767
_AVAILABLE = JobState.AVAILABLE.value


@dataclass(frozen=True, slots=True)
class InsertDefaults:
    """Client-level defaults applied when neither the insert nor the args set a field."""

    max_attempts: int = 25
    #: Kinds with a registered worker; None disables the unknown-kind check.
    known_kinds: frozenset[str] | None = None
    #: Largest encoded args, and metadata, of one job in UTF-8 bytes (Config.max_encoded_size).
    max_encoded_size: int = DEFAULT_MAX_ENCODED_SIZE


def insert_payload(queue: str) -> str:
    """The insert notification's payload, exactly as River (Go) writes it (note the space)."""
    return '{"queue": ' + json.dumps(queue) + "}"


class NotifyLimiter:
    """At most one insert notification per queue per ``interval`` seconds, per client
    (PROTOCOL.md 7.3). It counts an attempt even if the transaction later rolls back; the
    producers' poll covers a suppressed notification."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}

    def allow(self, queue: str) -> bool:
        now = time.monotonic()
        last = self._last.get(queue)
        if last is not None and now - last < self.interval:
            return False
        self._last[queue] = now
        return True


def _pick(field: str, insert: InsertOpts | None, args: InsertOpts | None) -> Any:
    if insert is not None:
        value = getattr(insert, field)
        if value is not None:
            return value
    if args is not None:
        return getattr(args, field)
    return None


def _check_scheduled_at(value: Any, field: str) -> None:
    """A timezone-aware datetime whose UTC time Python can represent (years 1 to 9999): Postgres
    stores more, but such a row could not be read back (the insert's own result, every later
    fetch or list), after its insert had committed."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        return  # said by the caller's own check
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValidationError(
            field, "is out of range: its time in UTC must fall in years 1 to 9999"
        ) from None


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _validated_tags(tags: object, field: str) -> str:
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise ValidationError(field, "must be a list of strings")
    for tag in tags:
        if not isinstance(tag, str) or len(tag) > 255 or not _TAG_RE.fullmatch(tag):
            raise ValidationError(
                field,
                f"tag {tag!r} must be 3 to 255 characters of ASCII letters, digits, '_' and '-', "
                "starting and ending with a letter, digit or '_' (no commas)",
            )
    return ",".join(tags)


def _validated_metadata(
    metadata: object,
    field: str,
    reserved_ok: bool = False,
    max_size: int = DEFAULT_MAX_ENCODED_SIZE,
) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping):
        raise ValidationError(field, "must be a JSON object (a mapping)")
    for key in metadata:
        if not isinstance(key, str):
            raise ValidationError(field, f"keys must be strings, got {key!r}")
        if key.startswith("river:") and not reserved_ok:
            raise ValidationError(field, f"key {key!r}: keys starting with 'river:' are reserved")
    return encode_json_value(dict(metadata), max_size, field)


def _int_in(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(field, f"must be an integer from {low} to {high}, got {value!r}")
    return value


#: Kinds and queue names already validated (valid values only; bounded so that a program
#: generating names cannot grow it without limit). Validation is pure, so caching is safe.
_VALID_NAMES: set[tuple[str, str]] = set()
_VALID_NAMES_MAX = 10_000


def _checked(kind_or_queue: str, value: object, field: str) -> str:
    if isinstance(value, str) and (kind_or_queue, value) in _VALID_NAMES:
        return value
    if kind_or_queue == "kind":
        out = validate_kind(value, field)
    else:
        out = validate_queue_name(value, field)
    if len(_VALID_NAMES) >= _VALID_NAMES_MAX:
        _VALID_NAMES.clear()
    _VALID_NAMES.add((kind_or_queue, out))
    return out


def _fast_kind(cls: type, known_kinds: frozenset[str] | None) -> str | None:
    """The kind of args class ``cls`` when its jobs take build_batch's fast path without
    options: a kind already validated, registered (when ``known_kinds`` is set), and the
    default ``insert_opts``. ``isinstance(args, JobArgs)`` then holds: only JobArgs
    subclasses define insert_opts."""
    kind = getattr(cls, "kind", None)
    if (
        isinstance(kind, str)
        and ("kind", kind) in _VALID_NAMES
        and getattr(cls, "insert_opts", None) is JobArgs.insert_opts
        and (known_kinds is None or kind in known_kinds)
    ):
        return kind
    return None


def build_batch(
    items: Sequence[tuple[JobArgs, InsertOpts | None]],
    defaults: InsertDefaults,
    limiter: NotifyLimiter | None,
    *,
    field_prefix: str = "",
    now: datetime | None = None,
    allow_reserved_metadata: bool = False,
) -> InsertBatch:
    """Validate and encode jobs into an :class:`InsertBatch`.

    ``field_prefix`` (e.g. ``"jobs"``) makes error fields read ``jobs[3].priority`` for batches.
    ``allow_reserved_metadata`` lets internal callers (the periodic enqueuer) write ``river:``
    metadata keys that user code may not set.

    A job without options (no ``InsertOpts`` and an args class that does not override
    :meth:`JobArgs.insert_opts`) takes a fast path: every option is its default, so only the
    kind and the args need checking and encoding.
    """
    batch = InsertBatch()
    # Args classes seen taking the fast path in this call, with their kind.
    fast_kinds: dict[type, str] = {}
    add_args, add_kind, add_queue = batch.args.append, batch.kind.append, batch.queue.append
    add_priority, add_max_attempts = batch.priority.append, batch.max_attempts.append
    add_state, add_scheduled_at = batch.state.append, batch.scheduled_at.append
    add_tags, add_metadata = batch.tags.append, batch.metadata.append
    add_unique_key, add_unique_states = batch.unique_key.append, batch.unique_states.append
    notify_queues: dict[str, None] = {}
    seen_keys: dict[bytes, int] = {}
    single = len(items) == 1 and not field_prefix
    known_kinds = defaults.known_kinds
    default_max_attempts = _int_in(defaults.max_attempts, "max_attempts", 1, _SMALLINT_MAX)
    max_size = defaults.max_encoded_size
    prefix = "" if single else f"{field_prefix or 'jobs'}["
    for index, (args, opts) in enumerate(items):
        cls = type(args)
        kind = fast_kinds.get(cls) if opts is None else None
        if kind is None and opts is None:
            kind = _fast_kind(cls, known_kinds)
            if kind is not None:
                fast_kinds[cls] = kind
        where = ""
        if kind is not None:
            # The fast path (see the docstring).
            queue, priority, max_attempts = "default", 1, default_max_attempts
            scheduled_at, tags_text, metadata_text = None, "", "{}"
            state, unique_opts = _AVAILABLE, None
        else:
            kind = getattr(cls, "kind", None)
            if prefix:
                where = f"{prefix}{index}]."
            if not isinstance(args, JobArgs):
                raise ValidationError(
                    f"{where}args", f"must be a river.JobArgs instance, got {cls.__name__}"
                )
            kind = _checked("kind", kind, f"{where}kind")
            if known_kinds is not None and kind not in known_kinds:
                raise UnknownJobKindError(
                    f"{where}kind",
                    f"no worker is registered for kind {kind!r} on this client "
                    "(register one, or set Config(skip_unknown_job_check=True))",
                )
            if opts is not None and not isinstance(opts, InsertOpts):
                raise ValidationError(f"{where}opts", "must be a river.InsertOpts or None")
            args_opts = args.insert_opts()
            # None means "not set"; an explicit 0 or "" is a bad value, not a request for the
            # default.
            queue = _checked(
                "queue", _default(_pick("queue", opts, args_opts), "default"), f"{where}queue"
            )
            priority = _int_in(
                _default(_pick("priority", opts, args_opts), 1), f"{where}priority", 1, 4
            )
            max_attempts = _int_in(
                _default(_pick("max_attempts", opts, args_opts), defaults.max_attempts),
                f"{where}max_attempts",
                1,
                _SMALLINT_MAX,
            )
            scheduled_at = _pick("scheduled_at", opts, args_opts)
            if scheduled_at is not None:
                _check_scheduled_at(scheduled_at, f"{where}scheduled_at")
            if scheduled_at is not None and (
                not isinstance(scheduled_at, datetime) or scheduled_at.tzinfo is None
            ):
                raise ValidationError(f"{where}scheduled_at", "must be a timezone-aware datetime")
            tags = _pick("tags", opts, args_opts)
            tags_text = _validated_tags(tags, f"{where}tags") if tags is not None else ""
            metadata_text = _validated_metadata(
                _pick("metadata", opts, args_opts),
                f"{where}metadata",
                allow_reserved_metadata,
                max_size,
            )
            pending = bool((opts is not None and opts.pending) or (args_opts and args_opts.pending))
            if pending:
                state = JobState.PENDING.value
            elif scheduled_at is not None:
                state = JobState.SCHEDULED.value
            else:
                state = _AVAILABLE
            unique_opts = _pick("unique_opts", opts, args_opts)
            if (
                isinstance(unique_opts, UniqueOpts)
                and not unique_opts.enabled
                and args_opts is not None
                and args_opts.unique_opts is not None
            ):
                # Empty per-insert options (exclude_kind alone counts as empty) leave the args'
                # own in force, as in River (Go) (PROTOCOL.md 5.1).
                unique_opts = args_opts.unique_opts
        try:
            encoded = encode_job_args(args, max_size, where)
        except ValidationError as exc:
            if where or not prefix:
                raise
            # The fast path does not compute `where`: name the item now.
            raise ValidationError(f"{prefix}{index}].{exc.field}", exc.rule) from None
        key: bytes | None = None
        mask: int | None = None
        if unique_opts is not None:
            if not isinstance(unique_opts, UniqueOpts):
                raise ValidationError(f"{where}unique_opts", "must be a river.UniqueOpts")
            if unique_opts.enabled:
                if now is None:  # only unique keys need it (by_period)
                    now = datetime.now(UTC)
                key = unique_key(kind, queue, encoded, unique_opts, now, scheduled_at)
                mask = unique_opts.states_mask
                if key in seen_keys:
                    raise DuplicateUniqueKeyInBatchError(
                        f"{where}unique_opts",
                        f"has the same unique key as job {seen_keys[key]} of this batch; "
                        "Postgres cannot insert both in one statement (insert them separately "
                        "to get the existing job back)",
                    )
                seen_keys[key] = index
        add_args(encoded)
        add_kind(kind)
        add_queue(queue)
        add_priority(priority)
        add_max_attempts(max_attempts)
        add_state(state)
        add_scheduled_at(scheduled_at)
        add_tags(tags_text)
        add_metadata(metadata_text)
        add_unique_key(key)
        add_unique_states(mask)
        if state == _AVAILABLE:
            notify_queues[queue] = None
    for queue in notify_queues:
        if limiter is None or limiter.allow(queue):
            batch.notify_payloads.append(insert_payload(queue))
    return batch
