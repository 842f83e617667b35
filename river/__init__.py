"""river-queue: durable Postgres-backed jobs that speak River (Go)'s database protocol.

Start with :class:`AsyncClient` (work jobs, insert, admin) or :class:`Client` (sync insert and
admin), :class:`JobArgs` and :class:`Worker`. The documentation lives in ``docs/``.
"""

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
    UnknownJobKindError,
    UnknownMigrationLineError,
    ValidationError,
)
from river._events import Event, EventKind, JobStatistics, Subscription
from river._executor import cancel_requested, current_job, record_output, set_metadata
from river._joblog import JobLogConfig
from river._maintenance import PeriodicJob
from river._middleware import Middleware
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
from river._version import __version__
from river.migrate import AsyncMigrator, MigrateResult, Migration, Migrator

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
    "QueueRow",
    "RiverError",
    "Schedule",
    "SchemaNotReadyError",
    "ServiceHealth",
    "Subscription",
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
