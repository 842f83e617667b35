"""Every exception this library raises on purpose derives from :class:`RiverError`."""

from __future__ import annotations

__all__ = [
    "DuplicateUniqueKeyInBatchError",
    "InvalidConfigError",
    "JobNotFoundError",
    "JobNotRunningError",
    "JobRunningError",
    "MigrationError",
    "QueueAlreadyAddedError",
    "QueueNotFoundError",
    "RiverError",
    "UnknownJobKindError",
    "ValidationError",
]


class RiverError(Exception):
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
    """A migration could not be planned or applied; the database is left as it was."""


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
