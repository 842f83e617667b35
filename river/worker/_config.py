"""The worker's configuration: the TOML file, validated with pydantic, and the plan built from it.

Loading happens in two stages, both run in full before anything changes (at start-up and on
every reload):

1. :func:`load_file` parses the TOML, merges the command-line overrides into it and validates
   the whole document (:class:`WorkerFile`). It needs no application code, so the supervisor of
   ``--reload`` and ``--processes`` can use it without importing the app.
2. :func:`build_plan` combines the file with the application's base :class:`river.Config` (from
   ``APP``): database URL, effective queue settings, periodic jobs resolved through the app's
   worker registry, and :class:`river.Config`'s own validation.

Every error is a :class:`WorkerConfigError` naming the key as a dotted path
(``queues.email.max_workers``) and the rule it broke.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator

from river._args import Workers
from river._config import MAX_WORKERS_LIMIT, Config, QueueConfig
from river._duration import DurationError, parse_duration
from river._errors import InvalidConfigError, ValidationError
from river._insert import InsertDefaults, build_batch, validate_queue_name
from river._joblog import JobLogConfig, check_level
from river._logfmt import parse_log_level
from river._maintenance import PeriodicJob
from river._ratelimit import RateLimit, parse_rate_limit, rate_limit_from_json
from river._schedule import Cron, PeriodicInterval, Schedule
from river._schema import validate_schema
from river._types import InsertOpts

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_URL_ENV",
    "PeriodicSpec",
    "Plan",
    "QueueSpec",
    "WorkerConfigError",
    "WorkerFile",
    "build_plan",
    "load_file",
    "parse_host_port",
    "parse_seconds",
]

#: Seconds a soft stop (and a queue's drain on reload) may take before running jobs are
#: cancelled.
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
#: Environment variable read for the database URL when the file names none.
DEFAULT_URL_ENV = "DATABASE_URL"
#: The longest duration any setting takes: 100 years. Postgres computes ``now() - retention``
#: and ``now() + timeout``; far larger values leave timestamptz's range ("timestamp out of
#: range" on every maintenance pass) or overflow the event loop's clock.
MAX_DURATION = 100 * 365.25 * 86_400.0


class WorkerConfigError(InvalidConfigError):
    """The worker's configuration is invalid. ``field`` is the dotted key of the first problem
    (``queues.email.max_workers``), ``rule`` what is wrong; ``str()`` is one line listing every
    problem, prefixed with the file name when there is one."""

    def __init__(
        self, field: str, rule: str, *, path: str | None = None, more: Sequence[str] = ()
    ) -> None:
        super().__init__(field, rule)
        self.path = path
        self.problems = [f"{field}: {rule}" if field else rule, *more]
        text = "; ".join(self.problems)
        self.args = (f"{path}: {text}" if path else text,)

    def __str__(self) -> str:
        return str(self.args[0])


# --------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------


def parse_seconds(value: object, *, allow_zero: bool = False) -> float:
    """A duration in seconds from a number (seconds) or a Go duration string (``"500ms"``,
    ``"1m30s"``) or a string of seconds (``"2.5"``). Raises ValueError naming the rule."""
    try:
        seconds = parse_duration(value, text="go_or_seconds", timedeltas=False)
    except DurationError as exc:
        if exc.problem == "syntax":
            raise ValueError(
                f"invalid duration {value!r} (examples: 500ms, 30s, 1m30s, or seconds)"
            ) from None
        if exc.problem == "bool":
            raise ValueError(
                "must be a duration (seconds, or a string such as '30s'), not a boolean"
            ) from None
        raise ValueError(
            f"must be a duration (seconds, or a string such as '30s'), got {value!r}"
        ) from None
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"must be a finite duration, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"must be {'0 or more' if allow_zero else 'positive'}, got {value!r}")
    if seconds > MAX_DURATION:
        raise ValueError(f"must be at most 100 years ({MAX_DURATION:.0f}s), got {value!r}")
    return seconds


def _seconds(value: object) -> float:
    return parse_seconds(value)


def _seconds_or_zero(value: object) -> float:
    return parse_seconds(value, allow_zero=True)


def _is_minus_one(value: object) -> bool:
    return value == -1 and not isinstance(value, bool)


def _retention(value: object) -> float:
    # -1 keeps forever, as in river.Config.
    if _is_minus_one(value):
        return -1.0
    try:
        return parse_seconds(value, allow_zero=True)
    except ValueError as exc:
        if "0 or more" in str(exc):
            raise ValueError(f"must be 0 or more, or -1 to keep forever, got {value!r}") from None
        raise


def job_timeout_seconds(value: object) -> float:
    """``client.job_timeout`` / ``--job-timeout``: positive seconds, or -1 (also ``"-1"`` and
    ``"none"``) for no timeout, as river.Config takes it."""
    if _is_minus_one(value) or (isinstance(value, str) and value.strip() in ("-1", "none")):
        return -1.0
    try:
        return parse_seconds(value)
    except ValueError as exc:
        if "positive" in str(exc):
            raise ValueError(f"must be positive, or -1 for no timeout, got {value!r}") from None
        raise


def parse_host_port(value: object) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6; an empty host means all interfaces)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string HOST:PORT, got {value!r}")
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"must be HOST:PORT (e.g. 127.0.0.1:9464), got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0 to 65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", port


def _host_port(value: object) -> str:
    parse_host_port(value)
    assert isinstance(value, str)
    return value


def _queue_name(value: str) -> str:
    try:
        validate_queue_name(value, "queue name")
    except ValidationError as exc:
        raise ValueError(exc.rule) from None
    return value


def _schema_name(value: str | None) -> str | None:
    try:
        return validate_schema(value)
    except ValidationError as exc:
        raise ValueError(exc.rule) from None


def _log_level(value: object) -> object:
    try:
        check_level(value)
    except ValidationError as exc:
        raise ValueError(exc.rule) from None
    return value


def _worker_log_level(value: object) -> int:
    return parse_log_level(value)


def _max_lines(value: object) -> object:
    if value == "unlimited":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be an integer >= 1 or 'unlimited', got {value!r}")
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]
SecondsOrZero = Annotated[float, BeforeValidator(_seconds_or_zero)]
Retention = Annotated[float, BeforeValidator(_retention)]
JobTimeout = Annotated[float, BeforeValidator(job_timeout_seconds)]
StrictInt = Annotated[int, Field(strict=True)]
StrictBool = Annotated[bool, Field(strict=True)]
MaxWorkers = Annotated[int, Field(strict=True, ge=1, le=MAX_WORKERS_LIMIT)]
MaxAttempts = Annotated[int, Field(strict=True, ge=1, le=32767)]
QueueName = Annotated[str, AfterValidator(_queue_name)]
LogLevel = Annotated[int | str, BeforeValidator(_log_level)]


def _rate_limit_spec(value: object) -> object:
    try:
        if isinstance(value, str):
            return parse_rate_limit(value)
        if isinstance(value, dict):
            spec = dict(value)
            if isinstance(spec.get("per"), str):
                spec["per"] = parse_duration(spec["per"], text="go_or_seconds")
            return rate_limit_from_json(spec)
    except DurationError:
        raise ValueError(f"invalid duration {value!r}") from None
    except InvalidConfigError as exc:
        raise ValueError(str(exc)) from None
    if isinstance(value, RateLimit):
        return value
    raise ValueError('must be "JOBS/PERIOD" (e.g. "50/1s") or {jobs = 50, per = "1s"}')


RateLimitSpec = Annotated[RateLimit, BeforeValidator(_rate_limit_spec)]


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------


class _Section(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSection(_Section):
    """``[database]``: where the River tables are. Every key needs a restart to change."""

    #: A postgres:// URL. Prefer ``url_env`` so that passwords stay out of the file.
    url: str | None = None
    #: Environment variable holding the URL (default DATABASE_URL) when ``url`` is not set.
    url_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    schema_name: Annotated[str | None, AfterValidator(_schema_name)] = Field(
        default=None, alias="schema"
    )
    #: Bound on reaching the database at start-up (``Config.connect_timeout``, default 10s).
    connect_timeout: Seconds | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DatabaseSection:
        if self.url is not None and self.url_env is not None:
            raise ValueError("set url or url_env, not both")
        if self.url is not None and not (
            self.url.startswith(("postgres://", "postgresql://")) or "=" in self.url
        ):
            raise ValueError("url must be a postgres:// or postgresql:// URL")
        return self


class JobLogSection(_Section):
    """``[client.job_log]``: river.JobLogConfig (restart to change). Unset keys keep the app's
    values (or the defaults); ``enabled = false`` logs no job lines (``Config(job_log=None)``)."""

    enabled: StrictBool | None = None
    failure_level: LogLevel | None = None
    discard_level: LogLevel | None = None
    cancel_level: LogLevel | None = None
    tracebacks: Literal["discard", "always", "never"] | None = None
    #: Lines per kind, queue and outcome per interval, or "unlimited".
    max_lines: Annotated[int | str, BeforeValidator(_max_lines)] | None = None
    interval: Seconds | None = None


class ClientSection(_Section):
    """``[client]``: client defaults. ``max_workers``, ``fetch_cooldown`` and
    ``fetch_poll_interval`` are inherited by queues and change live on reload; the others take
    effect on the next start."""

    id: Annotated[str, Field(pattern=r"^\S{1,100}$")] | None = None
    max_workers: MaxWorkers | None = None
    fetch_cooldown: Seconds | None = None
    fetch_poll_interval: Seconds | None = None
    job_timeout: JobTimeout | None = None
    max_attempts: MaxAttempts | None = None
    poll_only: StrictBool | None = None
    pooler: Literal["transaction"] | None = None
    max_encoded_size: Annotated[int, Field(strict=True, ge=2, le=255 * 1024 * 1024)] | None = None
    leader_election: StrictBool | None = None
    sync_worker_threads: Annotated[int, Field(strict=True, ge=1, le=10_000)] | None = None
    rescue_stuck_jobs_after: Seconds | None = None
    completed_job_retention: Retention | None = None
    cancelled_job_retention: Retention | None = None
    discarded_job_retention: Retention | None = None
    #: Seconds between the leader's queue depth samples, or ``false``: none.
    queue_depth_interval: Seconds | Literal[False] | None = None
    #: How long a stop retries outcome writes that fail (60 s), or ``false``: for ever.
    completer_stop_timeout: Seconds | Literal[False] | None = None
    otel_work_span: Literal["child", "link", "none"] | None = None
    job_log: JobLogSection | None = None


class QueueSection(_Section):
    """``[queues.NAME]``: one queue. Unset fields inherit ``[client]``, then the app's Config."""

    max_workers: MaxWorkers | None = None
    fetch_cooldown: Seconds | None = None
    fetch_poll_interval: Seconds | None = None
    #: Below max_workers: the queue is autoscaled between the two.
    min_workers: MaxWorkers | None = None
    #: "50/1s", or {jobs = 50, per = "1s", burst = 10}.
    rate_limit: RateLimitSpec | None = None
    #: true: pause the queue (for every client on the database); false: resume it; unset: leave
    #: its pause state alone. Enforced at start and whenever a reload changes it.
    paused: StrictBool | None = None


class PeriodicJobSection(_Section):
    """``[[periodic_jobs]]``: a job of a registered kind, inserted on a schedule by the leader."""

    kind: str
    #: Stable name (default: the kind); reloads match periodic jobs by it.
    id: Annotated[str, Field(min_length=1, max_length=127)] | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = None
    interval: Seconds | None = None
    run_on_start: StrictBool = False
    queue: QueueName | None = None
    priority: Annotated[int, Field(strict=True, ge=1, le=4)] | None = None
    max_attempts: MaxAttempts | None = None
    tags: list[str] | None = None

    @model_validator(mode="after")
    def _one_schedule(self) -> PeriodicJobSection:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("set exactly one of cron or interval")
        return self

    @property
    def job_id(self) -> str:
        return self.id or self.kind


class WorkerSection(_Section):
    """``[worker]``: the process itself."""

    #: Soft-stop budget; also bounds the drain of a queue removed by a reload.
    shutdown_timeout: SecondsOrZero = DEFAULT_SHUTDOWN_TIMEOUT
    #: HOST:PORT of /livez, /readyz and /metrics (restart to change).
    health_addr: Annotated[str, AfterValidator(_host_port)] | None = None
    #: Worker processes (restart to change).
    processes: Annotated[int, Field(strict=True, ge=1, le=256)] = 1
    #: Log line format of the worker's handler (restart to change; docs/observability.md).
    log_format: Literal["text", "json"] | None = None
    #: Level of the ``river`` logger (a name or a number; restart to change). Unset: WARNING,
    #: with the worker's own, leadership and job lines at INFO.
    log_level: Annotated[int, BeforeValidator(_worker_log_level)] | None = None
    #: Whether the worker installs its log handler: auto (unless the app configured logging),
    #: always, never (restart to change).
    log_handler: Literal["auto", "always", "never"] | None = None


class WorkerFile(_Section):
    """The whole configuration file (docs/worker.md shows an example)."""

    database: DatabaseSection = Field(default_factory=DatabaseSection)
    client: ClientSection = Field(default_factory=ClientSection)
    #: None when the file has no [queues] table: the app's Config.queues apply then.
    queues: dict[QueueName, QueueSection] | None = None
    periodic_jobs: list[PeriodicJobSection] = Field(default_factory=list)
    worker: WorkerSection = Field(default_factory=WorkerSection)

    @model_validator(mode="after")
    def _unique_periodic_ids(self) -> WorkerFile:
        seen: set[str] = set()
        for job in self.periodic_jobs:
            if job.job_id in seen:
                raise ValueError(
                    f"periodic_jobs: two jobs have id {job.job_id!r} (give each an explicit id)"
                )
            seen.add(job.job_id)
        return self


def _key(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _rule(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "is required"
    if "input" in error and kind not in ("value_error", "model_type", "dict_type"):
        value = error["input"]
        if isinstance(value, str | int | float | bool):
            message += f" (got {value!r})"
    return message


def _from_pydantic(
    exc: pydantic.ValidationError, *, prefix: str = "", path: str | None = None
) -> WorkerConfigError:
    problems = []
    for error in exc.errors():
        key = _key(error["loc"])
        full = f"{prefix}.{key}" if prefix and key else (prefix or key)
        problems.append((full, _rule(error)))
    first_key, first_rule = problems[0]
    more = [f"{k}: {r}" if k else r for k, r in problems[1:]]
    return WorkerConfigError(first_key, first_rule, path=path, more=more)


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_file(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> WorkerFile:
    """Read and validate the configuration file (None: no file) with ``overrides`` (the
    command-line flags, as a nested mapping shaped like the file) merged on top.

    Raises :class:`WorkerConfigError` for an unreadable file, bad TOML, or any invalid key.
    """
    shown = str(path) if path is not None else None
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as exc:
            raise WorkerConfigError("", f"cannot read: {exc.strerror or exc}", path=shown) from None
        except tomllib.TOMLDecodeError as exc:
            raise WorkerConfigError("", f"invalid TOML: {exc}", path=shown) from None
        except UnicodeDecodeError as exc:
            # TOML files are UTF-8 (tomllib decodes the whole file before parsing it).
            raise WorkerConfigError(
                "", f"not UTF-8 text (at byte offset {exc.start}: {exc.reason})", path=shown
            ) from None
    merged = _merge(raw, overrides or {})
    database = merged.get("database")
    if isinstance(database, dict) and (overrides or {}).get("database", {}).get("url"):
        # --database-url beats the file's url_env as much as its url.
        database.pop("url_env", None)
    try:
        return WorkerFile.model_validate(merged)
    except pydantic.ValidationError as exc:
        raise _from_pydantic(exc, path=shown) from None


# --------------------------------------------------------------------------------------------
# The plan: file + app
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue as the worker wants it: every setting explicit, plus the pause flag."""

    config: QueueConfig
    paused: bool | None = None


@dataclass(frozen=True, slots=True)
class PeriodicSpec:
    """A periodic job from the file; ``fingerprint`` tells whether a reload changed it."""

    id: str
    fingerprint: str
    job: PeriodicJob


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything the worker runs with, from one validated file (one *generation*)."""

    database_url: str
    #: The client's Config (used at start; later changes go through client.queues).
    config: Config
    queues: dict[str, QueueSpec]
    periodic: dict[str, PeriodicSpec]
    shutdown_timeout: float
    health_addr: tuple[str, int] | None
    processes: int
    #: Settings that only a restart changes: dotted key -> effective value.
    restart_only: dict[str, object]


_STATIC_CLIENT_FIELDS = (
    "id",
    "max_attempts",
    "job_timeout",
    "poll_only",
    "pooler",
    "max_encoded_size",
    "leader_election",
    "sync_worker_threads",
    "rescue_stuck_jobs_after",
    "completed_job_retention",
    "cancelled_job_retention",
    "discarded_job_retention",
    "queue_depth_interval",
    "otel_work_span",
    "completer_stop_timeout",
)


def _job_log(section: JobLogSection, base: JobLogConfig | None) -> JobLogConfig | None:
    given: dict[str, Any] = section.model_dump(exclude_none=True)
    enabled = given.pop("enabled", None)
    if enabled is False or (enabled is None and base is None and not given):
        return None
    if given.get("max_lines") == "unlimited":
        given["max_lines"] = None
    try:
        return dataclasses.replace(base or JobLogConfig(), **given)
    except InvalidConfigError as exc:
        raise WorkerConfigError(f"client.{exc.field}", exc.rule) from None


def _config_field_key(field: str) -> str:
    match = re.fullmatch(r"queues\['([^']*)'\](.*)", field)
    if match:
        return f"queues.{match.group(1)}{match.group(2)}"
    return f"client.{field}"


def _effective_queue(
    name: str, given: QueueConfig | QueueSection, client: ClientSection, base: Config
) -> QueueConfig:
    def pick(field: str) -> Any:
        value = getattr(given, field)
        if value is None:
            value = getattr(client, field)
        if value is None:
            value = getattr(base, field)
        return value

    # Not inherited: neither [client] nor Config has them.
    return QueueConfig(
        max_workers=pick("max_workers"),
        fetch_cooldown=pick("fetch_cooldown"),
        fetch_poll_interval=pick("fetch_poll_interval"),
        min_workers=given.min_workers,
        rate_limit=given.rate_limit,
    )


def _schedule(section: PeriodicJobSection, key: str) -> Schedule:
    try:
        if section.cron is not None:
            return Cron(section.cron)
        assert section.interval is not None
        return PeriodicInterval(section.interval)
    except ValidationError as exc:
        field = "cron" if section.cron is not None else "interval"
        raise WorkerConfigError(f"{key}.{field}", exc.rule) from None


def _periodic(
    section: PeriodicJobSection, index: int, workers: Workers, max_encoded_size: int
) -> PeriodicSpec:
    key = f"periodic_jobs[{index}]"
    registered = workers.get(section.kind)
    if registered is None:
        known = ", ".join(workers.kinds()) or "none"
        raise WorkerConfigError(
            f"{key}.kind", f"no worker is registered for kind {section.kind!r} (known: {known})"
        )
    try:
        args = registered.args_type.model_validate(section.args)
    except pydantic.ValidationError as exc:
        raise _from_pydantic(exc, prefix=f"{key}.args") from None
    opts = None
    if any(v is not None for v in (section.queue, section.priority, section.max_attempts)) or (
        section.tags is not None
    ):
        opts = InsertOpts(
            queue=section.queue,
            priority=section.priority,
            max_attempts=section.max_attempts,
            tags=section.tags,
        )
    try:
        # Validated as the leader's insert will be (tags, args Go can read, their size), so
        # that a bad value is this file's error, not a failed insert at every run.
        build_batch([(args, opts)], InsertDefaults(max_encoded_size=max_encoded_size), None)
    except ValidationError as exc:
        raise WorkerConfigError(f"{key}.{exc.field}", exc.rule) from None
    schedule = _schedule(section, key)

    def construct() -> tuple[Any, InsertOpts | None]:
        return args, opts

    return PeriodicSpec(
        id=section.job_id,
        fingerprint=json.dumps(section.model_dump(mode="json", by_alias=True), sort_keys=True),
        job=PeriodicJob(
            schedule=schedule,
            construct=construct,
            run_on_start=section.run_on_start,
            id=section.job_id,
        ),
    )


def build_plan(file: WorkerFile, base: Config, *, path: str | Path | None = None) -> Plan:
    """Combine a validated file with the app's base Config (which has the workers).

    Precedence for each setting: command line (already merged into ``file``), then the file,
    then the app's Config. Queues: the file's [queues] when it has that table, else the app's
    Config.queues, else one queue ``default``. Raises :class:`WorkerConfigError`.
    """
    shown = str(path) if path is not None else None
    try:
        return _build_plan(file, base)
    except WorkerConfigError as exc:
        if exc.path is None and shown is not None:
            raise WorkerConfigError(
                exc.field, exc.rule, path=shown, more=exc.problems[1:]
            ) from None
        raise


def _build_plan(file: WorkerFile, base: Config) -> Plan:
    workers = base.workers
    if workers is None or len(workers) == 0:
        raise WorkerConfigError("APP", "the app registers no workers")
    db = file.database
    url = db.url
    if url is None:
        env = db.url_env or DEFAULT_URL_ENV
        url = os.environ.get(env) or None
        if url is None:
            raise WorkerConfigError(
                "database.url",
                f"no database URL: ${env} is not set (pass --database-url, set ${env}, or set "
                "database.url or database.url_env in the config file)",
            )
    client = file.client
    if file.queues is not None:
        given: Mapping[str, QueueConfig | QueueSection] = file.queues
        paused = {name: q.paused for name, q in file.queues.items()}
    elif base.queues:
        given, paused = base.queues, {}
    else:
        given, paused = {"default": QueueConfig()}, {}
    queue_configs = {
        name: _effective_queue(name, qc, client, base) for name, qc in sorted(given.items())
    }
    max_encoded_size = (
        client.max_encoded_size if client.max_encoded_size is not None else base.max_encoded_size
    )
    periodic = {
        spec.id: spec
        for spec in (
            _periodic(p, i, workers, max_encoded_size) for i, p in enumerate(file.periodic_jobs)
        )
    }
    taken = {job.id for job in base.periodic_jobs if job.id is not None} & set(periodic)
    if taken:
        raise WorkerConfigError(
            "periodic_jobs", f"id {sorted(taken)[0]!r} is already used by the app's Config"
        )
    changes: dict[str, Any] = {
        name: getattr(client, name)
        for name in _STATIC_CLIENT_FIELDS
        if getattr(client, name) is not None
    }
    for name in ("queue_depth_interval", "completer_stop_timeout"):
        if changes.get(name) is False:
            changes[name] = None
    if client.job_log is not None:
        changes["job_log"] = _job_log(client.job_log, base.job_log)
    try:
        config = dataclasses.replace(
            base,
            schema=db.schema_name if db.schema_name is not None else base.schema,
            connect_timeout=(
                db.connect_timeout if db.connect_timeout is not None else base.connect_timeout
            ),
            queues=queue_configs,
            periodic_jobs=[*base.periodic_jobs, *(spec.job for spec in periodic.values())],
            **changes,
        )
    except InvalidConfigError as exc:
        raise WorkerConfigError(_config_field_key(exc.field), exc.rule) from None
    health = None
    if file.worker.health_addr is not None:
        health = parse_host_port(file.worker.health_addr)
    restart_only: dict[str, object] = {
        "database.url": url,
        "database.schema": config.schema,
        "database.connect_timeout": config.connect_timeout_seconds,
        **{f"client.{name}": getattr(config, name) for name in _STATIC_CLIENT_FIELDS},
        "client.job_log": config.job_log,
        "worker.health_addr": health,
        "worker.processes": file.worker.processes,
        "worker.log_format": file.worker.log_format or "text",
        "worker.log_level": file.worker.log_level,
        "worker.log_handler": file.worker.log_handler or "auto",
    }
    return Plan(
        database_url=url,
        config=config,
        queues={
            name: QueueSpec(config=qc, paused=paused.get(name))
            for name, qc in queue_configs.items()
        },
        periodic=periodic,
        shutdown_timeout=file.worker.shutdown_timeout,
        health_addr=health,
        processes=file.worker.processes,
        restart_only=restart_only,
    )
