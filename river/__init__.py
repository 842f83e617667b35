"""river-queue: durable Postgres-backed jobs that speak River (Go)'s database protocol.

Start with :class:`AsyncClient` (work jobs, insert, admin) or :class:`Client` (sync insert and
admin), :class:`JobArgs` and :class:`Worker`. The documentation lives in ``docs/``.

The public names are imported on first use (PEP 562), so that ``import river._types`` or
``river.__version__`` does not load psycopg, anyio and OpenTelemetry. Type checkers read the
imports under ``TYPE_CHECKING``; ``_EXPORTS`` says the same for the interpreter, and
tests/test_architecture.py checks that the two and ``__all__`` agree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from river._version import __version__

if TYPE_CHECKING:
    from river import migrate as migrate
    from river._admin import JobListParams, JobListResult
    from river._args import JobArgs, Worker, Workers
    from river._client import AsyncClient, InsertManyItem, PeriodicJobs, QueueInfo, QueueManager
    from river._complete import job_complete_tx
    from river._config import Config, QueueConfig
    from river._driver import QueueRow
    from river._errors import (
        DatabaseUnavailableError,
        DuplicateUniqueKeyInBatchError,
        InvalidConfigError,
        JobCancel,
        JobNotFoundError,
        JobNotRunningError,
        JobRunningError,
        JobSnooze,
        ListenUnavailableError,
        MigrationError,
        MigrationFailedError,
        MigrationStateError,
        MigrationTargetError,
        QueueAlreadyAddedError,
        QueueNotFoundError,
        RiverError,
        SchemaNotReadyError,
        UniqueConflictError,
        UnknownJobKindError,
        UnknownMigrationLineError,
        ValidationError,
    )
    from river._events import Event, EventKind, JobStatistics, Subscription
    from river._executor import cancel_requested, current_job, record_output, set_metadata
    from river._gotypes import GoDuration
    from river._joblog import JobLogConfig
    from river._maintenance import PeriodicJob
    from river._middleware import Middleware
    from river._migrate_types import MigrateResult, Migration
    from river._queue_override import QueueOverride
    from river._ratelimit import RateLimit
    from river._schedule import Cron, PeriodicInterval, Schedule
    from river._supervisor import ClientHealth, ServiceHealth
    from river._sync_client import Client
    from river._types import (
        AttemptError,
        InsertOpts,
        InsertResult,
        Job,
        JobRow,
        JobState,
        UniqueOpts,
    )
    from river.migrate import AsyncMigrator, Migrator

__all__ = [
    "AsyncClient",
    "AsyncMigrator",
    "AttemptError",
    "Client",
    "ClientHealth",
    "Config",
    "Cron",
    "DatabaseUnavailableError",
    "DuplicateUniqueKeyInBatchError",
    "Event",
    "EventKind",
    "GoDuration",
    "InsertManyItem",
    "InsertOpts",
    "InsertResult",
    "InvalidConfigError",
    "Job",
    "JobArgs",
    "JobCancel",
    "JobListParams",
    "JobListResult",
    "JobLogConfig",
    "JobNotFoundError",
    "JobNotRunningError",
    "JobRow",
    "JobRunningError",
    "JobSnooze",
    "JobState",
    "JobStatistics",
    "ListenUnavailableError",
    "Middleware",
    "MigrateResult",
    "Migration",
    "MigrationError",
    "MigrationFailedError",
    "MigrationStateError",
    "MigrationTargetError",
    "Migrator",
    "PeriodicInterval",
    "PeriodicJob",
    "PeriodicJobs",
    "QueueAlreadyAddedError",
    "QueueConfig",
    "QueueInfo",
    "QueueManager",
    "QueueNotFoundError",
    "QueueOverride",
    "QueueRow",
    "RateLimit",
    "RiverError",
    "Schedule",
    "SchemaNotReadyError",
    "ServiceHealth",
    "Subscription",
    "UniqueConflictError",
    "UniqueOpts",
    "UnknownJobKindError",
    "UnknownMigrationLineError",
    "ValidationError",
    "Worker",
    "Workers",
    "__version__",
    "cancel_requested",
    "current_job",
    "job_complete_tx",
    "record_output",
    "set_metadata",
]

#: The private module that defines each public name, as in the imports above: what
#: ``__getattr__`` imports on first use.
_EXPORTS_BY_MODULE: dict[str, tuple[str, ...]] = {
    "river._admin": ("JobListParams", "JobListResult"),
    "river._args": ("JobArgs", "Worker", "Workers"),
    "river._client": ("AsyncClient", "InsertManyItem", "PeriodicJobs", "QueueInfo", "QueueManager"),
    "river._complete": ("job_complete_tx",),
    "river._config": ("Config", "QueueConfig"),
    "river._driver": ("QueueRow",),
    "river._queue_override": ("QueueOverride",),
    "river._ratelimit": ("RateLimit",),
    "river._errors": (
        "DatabaseUnavailableError",
        "DuplicateUniqueKeyInBatchError",
        "InvalidConfigError",
        "JobCancel",
        "JobNotFoundError",
        "JobNotRunningError",
        "JobRunningError",
        "JobSnooze",
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
    ),
    "river._events": ("Event", "EventKind", "JobStatistics", "Subscription"),
    "river._gotypes": ("GoDuration",),
    "river._executor": ("cancel_requested", "current_job", "record_output", "set_metadata"),
    "river._joblog": ("JobLogConfig",),
    "river._maintenance": ("PeriodicJob",),
    "river._middleware": ("Middleware",),
    "river._schedule": ("Cron", "PeriodicInterval", "Schedule"),
    "river._supervisor": ("ClientHealth", "ServiceHealth"),
    "river._sync_client": ("Client",),
    "river._types": (
        "AttemptError",
        "InsertOpts",
        "InsertResult",
        "Job",
        "JobRow",
        "JobState",
        "UniqueOpts",
    ),
    "river._migrate_types": ("MigrateResult", "Migration"),
    "river.migrate": ("AsyncMigrator", "Migrator"),
}
_EXPORTS = {name: module for module, names in _EXPORTS_BY_MODULE.items() for name in names}

#: ``river.migrate`` was reachable after a bare ``import river`` (docs/getting-started.md).
_SUBMODULES = frozenset({"migrate"})

if not TYPE_CHECKING:
    # Hidden from type checkers: a module ``__getattr__`` would make every misspelt
    # ``river.Name`` type-check as Any.

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif name in _SUBMODULES:
            value = importlib.import_module(f"{__name__}.{name}")
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
