"""Every exception this library raises on purpose derives from :class:`RiverError`."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from river._migrate_types import MigrationVersionResult

__all__ = [
    "DatabaseUnavailableError",
    "DuplicateUniqueKeyInBatchError",
    "InvalidConfigError",
    "JobNotFoundError",
    "JobNotRunningError",
    "JobRunningError",
    "ListenUnavailableError",
    "MigrationError",
    "MigrationFailedError",
    "MigrationStateError",
    "MigrationTargetError",
    "QueueAlreadyAddedError",
    "QueueNotFoundError",
    "RiverError",
    "SchemaNotReadyError",
    "UniqueConflictError",
    "UnknownJobKindError",
    "UnknownMigrationLineError",
    "ValidationError",
]


def describe(exc: BaseException) -> str:
    """An exception for a log line: its message, or its type when it has none (a bare
    ``TimeoutError`` would otherwise log as nothing at all)."""
    text = str(exc).strip()
    return text if text else type(exc).__name__


#: libpq quotes the offending part of a malformed URL, which may be the password.
_PERCENT_TOKEN = re.compile(r'invalid percent-encoded token: "[^"]*"')
#: The password of a URL quoted in a message: ``scheme://user:SECRET@`` (up to the last ``@``
#: of the quoted text, since an unencoded ``@`` in a password is a common mistake).
_URL_PASSWORD = re.compile(r'(://[^:/@\s"]*):[^\s"]*@')
#: A word of a key/value string libpq could not read (``password=my secret``: the second word
#: of the password).
_MISSING_EQUALS = re.compile(r'missing "=" after "[^"]*"')
#: A host name holding an ``@`` (a password with an unencoded ``@`` splits there).
_HOST_WITH_AT = re.compile(r"(host ['\"])[^'\"]*@")
#: ``password=...`` of a key/value connection string (quoted or not).
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_secrets(text: str) -> str:
    """``text`` (a driver's message about a connection string) with any password in it
    replaced by ``***``. libpq quotes malformed URLs, or the part it could not parse, in its
    errors; these reach logs and terminals."""
    text = _PERCENT_TOKEN.sub(
        'invalid percent-encoded token in the URL (a "%" must be followed by two hex digits; '
        "write a literal % as %25)",
        text,
    )
    text = _MISSING_EQUALS.sub('missing "=" after a word (quote values with blanks)', text)
    text = _HOST_WITH_AT.sub(r"\1***@", text)
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    return _KV_PASSWORD.sub(r"\1***", text)


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return cls(*args, **kwargs)


class _Rebuildable(BaseException):
    """Pickles by the arguments it was constructed with. The default pickling of exceptions
    calls the class with ``self.args``, the message alone, which the constructors below do not
    take: unpickling failed (a ProcessPoolExecutor, Django's parallel test runner)."""

    _init_args: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        self = super().__new__(cls, *args)
        self._init_args = (args, kwargs)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        args, kwargs = self._init_args
        state = {k: v for k, v in self.__dict__.items() if k != "_init_args"}
        return (_rebuild, (type(self), args, kwargs), state)


class RiverError(_Rebuildable, Exception):
    """Base class of this library's exceptions."""


class ValidationError(RiverError, ValueError):
    """Bad input (job args, insert options, names, configuration), found before any SQL ran.

    ``field`` names the offending input and ``rule`` the rule it broke; ``str(error)`` combines
    both into one line.
    """

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


class InvalidConfigError(ValidationError):
    """A client, queue or worker configuration value is out of range."""


class DuplicateUniqueKeyInBatchError(ValidationError):
    """Two jobs of one ``insert_many`` batch carry the same unique key.

    Postgres would reject the whole statement ("cannot affect row a second time"); this library
    finds the clash before sending anything, so nothing is written.
    """


class UnknownJobKindError(ValidationError):
    """A job kind was inserted that no registered worker handles (clients with workers only)."""


class MigrationError(RiverError):
    """A migration could not be planned or applied (base class of the errors below).

    Planning errors (bad target, unknown line, inconsistent bookkeeping) are raised before any
    statement that writes, so the database is left as it was. :class:`MigrationFailedError`
    reports a version whose SQL failed mid-run.
    """


class UnknownMigrationLineError(MigrationError, ValueError):
    """No migrations exist for the requested line (this library ships line ``main`` only)."""

    def __init__(self, line: str, known: Sequence[str]) -> None:
        self.line = line
        self.known = tuple(known)
        super().__init__(
            f"migration line {line!r} not found (known lines: {', '.join(self.known) or 'none'})"
        )


class MigrationTargetError(MigrationError, ValueError):
    """A target version, step count or requested version is outside what the line knows."""


class MigrationStateError(MigrationError):
    """``river_migration`` contradicts itself or the requested operation.

    Examples: versions 5 and up recorded in the table layout of versions 1 to 4; a version below
    5 missing while the table already has the ``line`` column; migrating ``main`` below version
    5 while other lines (River Pro) are recorded; the configured schema does not exist.
    """


class MigrationFailedError(MigrationError):
    """The SQL of one version failed. That version was rolled back with its bookkeeping row.

    Versions applied earlier in the same run stay applied (each runs in its own transaction);
    they are listed in ``applied``. ``version`` and ``direction`` name the failed version, and
    ``__cause__`` is the database error.
    """

    def __init__(
        self,
        version: int,
        name: str,
        direction: str,
        applied: Sequence[MigrationVersionResult],
        cause: BaseException,
    ) -> None:
        self.version = version
        self.name = name
        self.direction = direction
        self.applied = tuple(applied)
        detail = " ".join(str(cause).split())
        super().__init__(f"migration {version:03d} [{direction}] {name} failed: {detail}")


class DatabaseUnavailableError(RiverError):
    """The database could not be reached: unknown host, refused connection, bad credentials,
    missing database, or no answer within ``Config.connect_timeout``.

    Raised by :meth:`AsyncClient.start` and by the first call that needs the client's own
    connection pool (which is then not opened; a later call tries again). ``reason`` is the
    driver's one-line reason; ``str(error)`` is ``cannot connect to the database: <reason>``,
    the wording of every ``river`` command. ``__cause__`` is the driver's error, if any.
    """

    def __init__(self, reason: str | BaseException) -> None:
        text = reason if isinstance(reason, str) else describe(reason)
        self.reason = redact_secrets(" ".join(text.split()))
        super().__init__(f"cannot connect to the database: {self.reason}")


class ListenUnavailableError(RiverError):
    """LISTEN does not work through the client's connection: at start, a notification sent
    from the client's pool did not reach its LISTEN connection in time.

    Behind a connection pooler in transaction mode (PgBouncer ``pool_mode = transaction``) the
    listening session is lent to other clients between statements, so notifications never
    arrive; a client that went on would find work only by polling while believing it
    listens. Raised by :meth:`AsyncClient.start`; the message says what to set
    (``Config(pooler="transaction", poll_only=True)``, docs/production.md).
    """

    def __init__(self, waited: float) -> None:
        self.waited = waited
        super().__init__(
            f"LISTEN does not work through this connection: a notification sent from the "
            f"client's pool did not reach its LISTEN connection within {waited:g}s. A "
            "connection pooler in transaction mode (PgBouncer pool_mode = transaction) does "
            'this: set Config(pooler="transaction", poll_only=True) (river worker: --pooler '
            "transaction --poll-only), or give the client a direct or session-pooled "
            "connection (docs/production.md)"
        )


class SchemaNotReadyError(RiverError):
    """River's tables are missing, or migrated to an older version than this library needs.

    ``found_version`` is the highest version of line ``main`` recorded in ``river_migration``
    (None when there is none, or when it could not be read); ``required_version`` the version
    this library needs; ``schema`` the configured schema. ``str(error)`` is one line that
    names the version found and says to run ``river migrate-up`` (with ``--schema`` when a
    schema is configured).
    """

    def __init__(
        self,
        message: str,
        *,
        found_version: int | None,
        required_version: int,
        schema: str | None = None,
    ) -> None:
        self.found_version = found_version
        self.required_version = required_version
        self.schema = schema
        super().__init__(message)


class JobNotFoundError(RiverError):
    """No job has the requested id."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} not found")


class JobRunningError(RiverError):
    """The operation refuses a running job (e.g. delete)."""

    def __init__(self, job_id: int, operation: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} is running and cannot be {operation}")


class UniqueConflictError(RiverError):
    """``job_retry`` refused: another job holds the unique key the job would take back (a job
    with the same key, in a state its unique options count). Nothing was changed, and the
    caller's transaction (``job_retry_tx``) is still usable. ``holder_id`` and
    ``holder_state`` name that job; both are None when it was inserted concurrently, between
    the check and the update (the statement then failed on the unique index, which aborts a
    caller's transaction)."""

    def __init__(
        self, job_id: int, holder_id: int | None = None, holder_state: str | None = None
    ) -> None:
        self.job_id = job_id
        self.holder_id = holder_id
        self.holder_state = holder_state
        if holder_id is None:
            message = f"job {job_id} was not retried: another job took its unique key meanwhile"
        else:
            message = (
                f"job {job_id} was not retried: job {holder_id} ({holder_state}) holds the "
                "same unique key; retry it once that job is finalized, or delete one of them"
            )
        super().__init__(message)


class JobNotRunningError(RiverError):
    """``job_complete_tx`` fenced out: the job is no longer running at that attempt."""

    def __init__(self, job_id: int, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        super().__init__(
            f"job {job_id} is no longer running at attempt {attempt} "
            "(rescued, cancelled, deleted or already completed)"
        )


class QueueNotFoundError(RiverError):
    """No queue of that name (in the client, or in river_queue for admin calls)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"queue {name!r} not found")


class QueueAlreadyAddedError(RiverError):
    """``client.queues.add`` was given a name the client already has."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"queue {name!r} already added")


class JobCancel(_Rebuildable, Exception):
    """Raise from ``work`` to cancel the job now: no retry, state ``cancelled``.

    ``reason`` is recorded as the attempt's error text.
    """

    def __init__(self, reason: str | BaseException = "job cancelled by worker") -> None:
        self.reason = reason
        super().__init__(str(reason))


class JobSnooze(_Rebuildable, Exception):
    """Raise from ``work`` to run the job again after ``seconds`` without using an attempt.

    The job's ``attempt`` is restored, no error is recorded, and metadata ``snoozes`` counts the
    snoozes. Up to the client's ``scheduler_interval`` (5 s by default) the job goes straight
    back to ``available`` (scheduled in the future); longer snoozes make it ``scheduled``.
    """

    def __init__(self, seconds: float) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not seconds >= 0  # also rejects NaN
            or seconds == math.inf
        ):
            raise ValidationError("JobSnooze.seconds", "must be a finite number of seconds >= 0")
        self.seconds = float(seconds)
        super().__init__(f"snoozed for {self.seconds:g}s")


# Shown as river.X (tracebacks, reprs, help()), the name users import them by: river exports
# each of them (river/__init__.py), so pickle finds them there too.
for _public in (*__all__, "JobCancel", "JobSnooze"):
    globals()[_public].__module__ = "river"
del _public
