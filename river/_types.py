"""Pure data: job states, rows, attempt errors, insert and unique options. No I/O here."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from river._duration import DurationError, parse_duration
from river._errors import ValidationError

__all__ = [
    "DEFAULT_UNIQUE_STATES",
    "AttemptError",
    "InsertOpts",
    "InsertResult",
    "Job",
    "JobRow",
    "JobState",
    "UniqueOpts",
]


class JobState(enum.StrEnum):
    """The eight states of ``river_job_state``, in the enum's physical order."""

    AVAILABLE = "available"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    DISCARDED = "discarded"
    PENDING = "pending"
    RETRYABLE = "retryable"
    RUNNING = "running"
    SCHEDULED = "scheduled"

    @property
    def finalized(self) -> bool:
        """True for cancelled, completed and discarded (the row has ``finalized_at``)."""
        return self in _FINALIZED

    @property
    def unique_bit(self) -> int:
        """This state's bit in a ``unique_states`` mask (available = 1 ... scheduled = 128)."""
        return _UNIQUE_BITS[self]


_FINALIZED = frozenset({JobState.CANCELLED, JobState.COMPLETED, JobState.DISCARDED})
# Bit n is the n-th state in enum order (PROTOCOL.md 2.4).
_UNIQUE_BITS = {state: 1 << index for index, state in enumerate(JobState)}

#: States a unique job is unique across by default: all but cancelled and discarded (mask 245).
DEFAULT_UNIQUE_STATES: tuple[JobState, ...] = (
    JobState.AVAILABLE,
    JobState.COMPLETED,
    JobState.PENDING,
    JobState.RETRYABLE,
    JobState.RUNNING,
    JobState.SCHEDULED,
)
_REQUIRED_UNIQUE_STATES = frozenset(
    {JobState.AVAILABLE, JobState.PENDING, JobState.RUNNING, JobState.SCHEDULED}
)


def format_time(value: datetime) -> str:
    """RFC 3339 with up to microsecond fraction (trailing zeros trimmed) and ``Z`` for UTC."""
    text = value.isoformat()
    if "." in text:
        head, _, rest = text.partition(".")
        frac = rest[:6].rstrip("0")
        tz = rest[6:]
        text = f"{head}.{frac}{tz}" if frac else f"{head}{tz}"
    return text.replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 with any offset and any fraction length (nanoseconds are truncated)."""
    s = text.strip().replace("z", "Z")
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    if "." in s:
        head, _, rest = s.partition(".")
        digits = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            digits += rest[i]
            i += 1
        s = f"{head}.{digits[:6].ljust(6, '0')}{rest[i:]}"
    return datetime.fromisoformat(s)


@dataclass(frozen=True, slots=True)
class AttemptError:
    """One failed attempt, as stored in ``river_job.errors`` (PROTOCOL.md 3.7)."""

    #: When the failed attempt started. ``datetime.min`` (naive) when the stored ``at`` was
    #: missing or unreadable (a row another writer left so); every other value is aware.
    at: datetime
    #: The job's attempt number when it failed.
    attempt: int
    #: The error text.
    error: str
    #: The Python traceback for uncaught exceptions, ``""`` otherwise.
    trace: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in the database."""
        return {
            "at": format_time(self.at),
            "attempt": self.attempt,
            "error": self.error,
            "trace": self.trace,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> AttemptError:
        """Decode a stored error leniently (rows written by other implementations)."""
        at = value.get("at")
        attempt = value.get("attempt")
        # Never raise: a row must decode whatever another writer put in its errors, or a fetch
        # of it would fail after the row was locked and its attempt counted.
        try:
            when = parse_time(at) if isinstance(at, str) else datetime.min
        except ValueError:
            when = datetime.min
        try:
            number = int(attempt) if isinstance(attempt, int | float) else 0
        except (ValueError, OverflowError):
            number = 0
        return cls(
            at=when,
            attempt=number,
            error=str(value.get("error", "")),
            trace=str(value.get("trace") or ""),
        )


@dataclass(slots=True)
class JobRow:
    """A row of ``river_job``, as persisted. ``args`` is decoded on access."""

    id: int
    kind: str
    queue: str
    state: JobState
    #: The job's arguments, exactly as stored (JSON text).
    encoded_args: str
    attempt: int
    max_attempts: int
    priority: int
    created_at: datetime
    scheduled_at: datetime
    attempted_at: datetime | None = None
    finalized_at: datetime | None = None
    attempted_by: list[str] = field(default_factory=list)
    errors: list[AttemptError] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    unique_key: bytes | None = None
    unique_states: int | None = None

    @property
    def args(self) -> dict[str, Any]:
        """The arguments decoded from JSON (a new dict on every access)."""
        value = json.loads(self.encoded_args)
        return value if isinstance(value, dict) else {"": value}


class _HasKind(Protocol):
    """What :class:`Job` asks of its args type: a job kind. :class:`river.JobArgs` is the type
    meant here; the bound is structural because this module is pure data and ``river._args``
    (pydantic models) imports it, not the other way round."""

    kind: ClassVar[str]


T = TypeVar("T", bound=_HasKind)


@dataclass(slots=True)
class Job(Generic[T]):
    """A job handed to a worker: the persisted row plus its typed, validated ``args``."""

    row: JobRow
    args: T

    @property
    def id(self) -> int:
        """The job's id (``river_job.id``)."""
        return self.row.id

    @property
    def kind(self) -> str:
        """The job's kind (the args class's ``kind``)."""
        return self.row.kind

    @property
    def queue(self) -> str:
        """The queue it was fetched from."""
        return self.row.queue

    @property
    def state(self) -> JobState:
        """Its state as fetched: ``running`` while a worker has it."""
        return self.row.state

    @property
    def attempt(self) -> int:
        """This attempt's number, from 1 (a snooze or an interruption gives it back)."""
        return self.row.attempt

    @property
    def max_attempts(self) -> int:
        """Attempts allowed before the job is discarded."""
        return self.row.max_attempts

    @property
    def priority(self) -> int:
        """Its priority, 1 (first) to 4."""
        return self.row.priority

    @property
    def created_at(self) -> datetime:
        """When it was inserted (database clock)."""
        return self.row.created_at

    @property
    def scheduled_at(self) -> datetime:
        """When it was due (database clock)."""
        return self.row.scheduled_at

    @property
    def attempted_at(self) -> datetime | None:
        """When this attempt began (database clock; None only for rows never fetched)."""
        return self.row.attempted_at

    @property
    def attempted_by(self) -> list[str]:
        """Ids of the clients that ran its attempts, oldest first (the last 100)."""
        return self.row.attempted_by

    @property
    def errors(self) -> list[AttemptError]:
        """The errors of its failed attempts so far, oldest first."""
        return self.row.errors

    @property
    def metadata(self) -> dict[str, Any]:
        """Its metadata as fetched (a copy is not made: treat it as read-only)."""
        return self.row.metadata

    @property
    def tags(self) -> list[str]:
        """Its tags."""
        return self.row.tags


def _seconds(value: float | timedelta | None, field_name: str) -> float:
    if value is None:
        return 0.0
    try:
        seconds = parse_duration(value, text="seconds")
    except DurationError:
        seconds = math.nan  # refused below, with the same words
    if math.isnan(seconds) or seconds < 0:
        raise ValidationError(field_name, "must be zero or a positive duration")
    return seconds


#: The longest ``UniqueOpts.by_period`` (100 years, in seconds).
_MAX_UNIQUE_PERIOD = 100 * 365.25 * 86_400.0


@dataclass(frozen=True, slots=True)
class UniqueOpts:
    """Make an insert unique (PROTOCOL.md section 5).

    Uniqueness is enabled when any of ``by_args``, ``by_period``, ``by_queue`` or ``by_state`` is
    set; ``exclude_kind`` alone does not enable it. A duplicate insert returns the existing job
    with ``InsertResult.unique_skipped_as_duplicate`` set instead of inserting a row.

    - ``by_args``: True for all arguments, or a list of dotted field paths (``"account.id"``)
      to consider only those fields.
    - ``by_period``: seconds (or a timedelta) of the time bucket; 0/None disables; at least 1 s.
      The bucket is taken from the insert's ``scheduled_at`` when given, else now (UTC).
    - ``by_queue``: include the queue name.
    - ``by_state``: the states in which an existing job blocks a new one; must include
      available, pending, running and scheduled. Default: all but cancelled and discarded.
    - ``exclude_kind``: leave the kind out of the key (jobs of different kinds then collide).
    """

    by_args: bool | Sequence[str] = False
    by_period: float | timedelta | None = None
    by_queue: bool = False
    by_state: Sequence[JobState | str] | None = None
    exclude_kind: bool = False

    def __post_init__(self) -> None:
        period = _seconds(self.by_period, "unique_opts.by_period")
        if 0 < period < 1:
            raise ValidationError("unique_opts.by_period", "must be 0 or at least 1 second")
        if not period <= _MAX_UNIQUE_PERIOD:  # NaN and infinity too
            raise ValidationError("unique_opts.by_period", "must be at most 100 years")
        if not isinstance(self.by_args, bool):
            if isinstance(self.by_args, str):
                raise ValidationError(
                    "unique_opts.by_args", "must be True/False or a list of field paths"
                )
            if not self.by_args:
                raise ValidationError(
                    "unique_opts.by_args",
                    "an empty list selects no field: list at least one, or give True for all",
                )
            for path in self.by_args:
                if not isinstance(path, str) or not path:
                    raise ValidationError(
                        "unique_opts.by_args", "field paths must be non-empty strings"
                    )
        if self.by_state is not None:
            states = []
            for s in self.by_state:
                try:
                    states.append(JobState(s))
                except ValueError:
                    raise ValidationError(
                        "unique_opts.by_state", f"{s!r} is not a job state"
                    ) from None
            missing = _REQUIRED_UNIQUE_STATES - set(states)
            if missing:
                raise ValidationError(
                    "unique_opts.by_state",
                    "must include available, pending, running and scheduled (missing: "
                    + ", ".join(sorted(missing))
                    + ")",
                )

    @property
    def enabled(self) -> bool:
        """Whether these options make the insert unique."""
        return bool(
            self.args_enabled
            or _seconds(self.by_period, "unique_opts.by_period")
            or self.by_queue
            or self.by_state
        )

    @property
    def args_enabled(self) -> bool:
        """Whether the arguments (all, or the listed fields) are part of the key."""
        return self.by_args is True or not isinstance(self.by_args, bool)

    @property
    def period_seconds(self) -> int:
        """``by_period`` in whole seconds (0 when unset)."""
        return int(_seconds(self.by_period, "unique_opts.by_period"))

    @property
    def states_mask(self) -> int:
        """The ``unique_states`` bitmask (245 by default)."""
        states = self.by_state if self.by_state else DEFAULT_UNIQUE_STATES
        mask = 0
        for s in states:
            mask |= JobState(s).unique_bit
        return mask


@dataclass(frozen=True, slots=True)
class InsertOpts:
    """Options of one insert. ``None`` means "not set here": the job args' own
    :meth:`JobArgs.insert_opts` apply, then the client's defaults (PROTOCOL.md 4.1).

    - ``queue``: queue name (default ``"default"``).
    - ``priority``: 1 (highest) to 4 (default 1).
    - ``scheduled_at``: run no earlier than this (timezone-aware). Setting it, even in the past,
      inserts the job as ``scheduled``; the scheduler makes it available when due.
    - ``max_attempts``: attempts before the job is discarded (default ``Config.max_attempts``,
      25).
    - ``tags``: list of tags (each 3-255 chars of letters, digits, ``_`` and ``-``; no commas).
      Not merged: the first list given wins, even an empty one.
    - ``metadata``: a JSON object stored with the job. Keys starting with ``river:`` are reserved.
    - ``pending``: insert as ``pending`` (nothing moves it on until you do). A plain flag, so it
      can only be turned on: the job is pending when this or its args' defaults say so.
    - ``unique_opts``: see :class:`UniqueOpts`.
    """

    queue: str | None = None
    priority: int | None = None
    scheduled_at: datetime | None = None
    max_attempts: int | None = None
    tags: Sequence[str] | None = None
    metadata: Mapping[str, Any] | None = None
    pending: bool = False
    unique_opts: UniqueOpts | None = None


@dataclass(frozen=True, slots=True)
class InsertResult:
    """The result of one insert: the row, and whether it was an existing unique duplicate."""

    job: JobRow
    unique_skipped_as_duplicate: bool = False
