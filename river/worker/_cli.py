"""``river worker APP``: flags, and the choice between one worker process and a supervisor."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from river._commands import Commands
from river._logfmt import LOG_FORMATS, parse_log_level
from river.worker._app import load_app
from river.worker._config import (
    DEFAULT_SHUTDOWN_TIMEOUT,
    WorkerConfigError,
    WorkerFile,
    build_plan,
    job_timeout_seconds,
    load_file,
    parse_host_port,
    parse_seconds,
)
from river.worker._logs import LogSettings, command_handlers, setup_logging
from river.worker._runner import RunnerOptions, WorkerRunner
from river.worker._supervisor import (
    ENV_DATABASE_URL,
    ENV_PROCESS_INDEX,
    ENV_SUPERVISOR_PID,
    ChildStatus,
    Supervisor,
    SupervisorOptions,
)
from river.worker._watch import file_signature

__all__ = ["register_worker_commands"]

logger = logging.getLogger("river.worker")

_DESCRIPTION = """\
Run the workers of APP until SIGTERM or SIGINT.

APP is module:attribute naming a river.Workers registry, a river.Config, or a factory (a
callable without arguments) returning one of them. Settings come from the flags, then the
--config file (TOML), then APP's Config. SIGTERM/SIGINT: soft stop bounded by
--shutdown-timeout, then running jobs are cancelled (they return to the queue); a second signal
stops at once. SIGHUP (or --watch-config) reloads the file: queues are added, updated and
removed live; an invalid file changes nothing. Exit status 0 after a clean stop; 1 on an error
(configuration, start-up, a worker process of --processes that cannot start); 3 when the worker
stopped because a background service kept failing, or gave up writing job outcomes (the
database was unreachable), or with --processes when a worker process last exited 3.
See docs/worker.md."""


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _int_range(low: int, high: int) -> Callable[[object], int]:
    def parse(text: object) -> int:
        try:
            value: int = int(text)  # type: ignore[call-overload]  # int() says what it takes
        except (TypeError, ValueError):
            raise ValueError(f"invalid integer {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be {low} to {high}, got {value}")
        return value

    return parse


def _shutdown_seconds(value: object) -> float:
    return parse_seconds(value, allow_zero=True)


#: The flags whose value is kept as the text given (checked by argparse, parsed where used):
#: the children of --processes/--reload get the same text, which they accept as this process
#: did (a parsed value written back, such as ``--job-timeout=-1.0``, may not round-trip).
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "connect_timeout": parse_seconds,
    "max_workers": _int_range(1, 10_000),
    "fetch_cooldown": parse_seconds,
    "fetch_poll_interval": parse_seconds,
    "job_timeout": job_timeout_seconds,
    "max_attempts": _int_range(1, 32767),
    "shutdown_timeout": _shutdown_seconds,
    "watch_interval": parse_seconds,
    "processes": _int_range(1, 256),
    "log_level": parse_log_level,
}


def _checked(dest: str) -> Callable[[str], str]:
    """An argparse ``type``: the flag's text, once ``_PARSERS[dest]`` accepts it."""
    parse = _PARSERS[dest]

    def convert(text: str) -> str:
        try:
            parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return convert


def _value(args: argparse.Namespace, dest: str) -> Any:
    """The parsed value of a flag of :data:`_PARSERS` (None when not given)."""
    text = getattr(args, dest, None)
    return None if text is None else _PARSERS[dest](text)


def _queue_flag(text: str) -> tuple[str, int | None]:
    name, sep, workers = text.partition("=")
    if not name:
        raise ValueError(f"expected NAME or NAME=MAX_WORKERS, got {text!r}")
    return name, (_int_range(1, 10_000)(workers) if sep else None)


def _add_flags(parser: argparse.ArgumentParser, *, app_optional: bool = False) -> None:
    # app_optional: for a framework's own command (manage.py river_worker), whose settings
    # name the app.
    parser.add_argument(
        "app",
        metavar="APP",
        nargs="?" if app_optional else None,
        help="module:attribute (registry, Config, factory)",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--app-dir",
        metavar="DIR",
        default=None,
        help="directory put first on sys.path to import APP (default: the current directory)",
    )
    db = parser.add_argument_group("database")
    db.add_argument(
        "--database-url",
        metavar="URL",
        default=None,
        help="postgres:// URL (default: the file's database.url, else $DATABASE_URL or the "
        "variable named by database.url_env)",
    )
    db.add_argument("--schema", default=None, help="schema of the River tables")
    db.add_argument(
        "--connect-timeout",
        type=_checked("connect_timeout"),
        metavar="DURATION",
        help="give up starting when the database does not answer within it (default: 10s)",
    )
    client = parser.add_argument_group("client defaults (override [client])")
    client.add_argument("--max-workers", type=_checked("max_workers"), metavar="N")
    client.add_argument("--fetch-cooldown", type=_checked("fetch_cooldown"), metavar="DURATION")
    client.add_argument(
        "--fetch-poll-interval", type=_checked("fetch_poll_interval"), metavar="DURATION"
    )
    client.add_argument(
        "--job-timeout",
        type=_checked("job_timeout"),
        metavar="DURATION",
        help="-1 or none: no timeout",
    )
    client.add_argument("--max-attempts", type=_checked("max_attempts"), metavar="N")
    client.add_argument(
        "--poll-only", action="store_true", default=None, help="no LISTEN (PgBouncer)"
    )
    client.add_argument(
        "--pooler",
        choices=["transaction"],
        default=None,
        help="connections go through a transaction-mode pooler (PgBouncer): no prepared "
        "statements (needs --poll-only)",
    )
    client.add_argument(
        "--queue",
        action="append",
        type=_arg(_queue_flag),
        metavar="NAME[=MAX_WORKERS]",
        help="work this queue (repeatable; merged into the file's [queues])",
    )
    run = parser.add_argument_group("process")
    run.add_argument(
        "--shutdown-timeout",
        type=_checked("shutdown_timeout"),
        metavar="DURATION",
        help=f"soft-stop budget before running jobs are cancelled (default: "
        f"{DEFAULT_SHUTDOWN_TIMEOUT:g}s)",
    )
    run.add_argument(
        "--health-addr",
        type=_arg(lambda t: (parse_host_port(t), t)[1]),
        metavar="HOST:PORT",
        help="serve /livez, /readyz and /metrics there",
    )
    run.add_argument(
        "--watch-config", action="store_true", help="reload when the --config file changes"
    )
    run.add_argument(
        "--watch-interval",
        type=_checked("watch_interval"),
        default="1s",
        metavar="DURATION",
        help="how often --watch-config (and --reload without watchfiles) polls (default: 1s)",
    )
    run.add_argument(
        "--processes",
        type=_checked("processes"),
        metavar="N",
        help="run N worker processes under a supervisor (default: the file's, else 1)",
    )
    run.add_argument(
        "--reload",
        action="store_true",
        help="development: restart the worker when a .py file under --reload-dir changes",
    )
    run.add_argument(
        "--reload-dir",
        action="append",
        metavar="DIR",
        help="directory to watch with --reload (repeatable; default: --app-dir)",
    )
    logs = parser.add_argument_group("logging (override [worker] log_*)")
    logs.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="text: timestamped lines with key=value fields; json: one object per line "
        "(default: text)",
    )
    logs.add_argument(
        "--log-level",
        type=_checked("log_level"),
        metavar="LEVEL",
        help="level of the river loggers: debug, info, warning, error, critical or a number "
        "(default: warning, with the worker's, leadership and job lines at info)",
    )
    logs.add_argument(
        "--log-handler",
        choices=["auto", "always", "never"],
        default=None,
        help="auto: install river's log handler unless the app configured logging; always: "
        "install it and keep river's lines from the app's root handlers; never (default: auto)",
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            out.setdefault(section, {})[key] = value

    put("database", "url", args.database_url)
    put("database", "schema", args.schema)
    put("database", "connect_timeout", _value(args, "connect_timeout"))
    for name in ("max_workers", "fetch_cooldown", "fetch_poll_interval", "job_timeout"):
        put("client", name, _value(args, name))
    put("client", "max_attempts", _value(args, "max_attempts"))
    put("client", "poll_only", args.poll_only)
    put("client", "pooler", args.pooler)
    for name, max_workers in args.queue or []:
        out.setdefault("queues", {}).setdefault(name, {})
        if max_workers is not None:
            out["queues"][name]["max_workers"] = max_workers
    put("worker", "shutdown_timeout", _value(args, "shutdown_timeout"))
    put("worker", "health_addr", args.health_addr)
    put("worker", "processes", _value(args, "processes"))
    put("worker", "log_format", args.log_format)
    put("worker", "log_level", _value(args, "log_level"))
    put("worker", "log_handler", args.log_handler)
    return out


def _child_argv(args: argparse.Namespace) -> Callable[[int, int | None], list[str]]:
    """A child's flags: this process's, as given (the database URL goes in the environment,
    ENV_DATABASE_URL, where ``ps`` does not show it)."""
    app_dir = os.path.abspath(args.app_dir or os.getcwd())

    def argv(index: int, health_port: int | None) -> list[str]:
        out = [args.app, "--processes", "1", "--app-dir", app_dir]
        if args.config:
            out += ["--config", os.path.abspath(args.config)]
        for flag, value in (
            ("--schema", args.schema),
            ("--connect-timeout", args.connect_timeout),
            ("--max-workers", args.max_workers),
            ("--fetch-cooldown", args.fetch_cooldown),
            ("--fetch-poll-interval", args.fetch_poll_interval),
            ("--job-timeout", args.job_timeout),
            ("--max-attempts", args.max_attempts),
            ("--pooler", args.pooler),
            ("--shutdown-timeout", args.shutdown_timeout),
            ("--log-format", args.log_format),
            ("--log-level", args.log_level),
            ("--log-handler", args.log_handler),
        ):
            if value is not None:
                out.append(f"{flag}={value}")
        for name, max_workers in args.queue or []:
            out.append(f"--queue={name}" + (f"={max_workers}" if max_workers is not None else ""))
        if args.poll_only:
            out.append("--poll-only")
        if args.watch_config:
            out += ["--watch-config", f"--watch-interval={args.watch_interval}"]
        if health_port is not None:
            out.append(f"--health-addr=127.0.0.1:{health_port}")
        if getattr(args, "debug", False):
            out.append("--debug")
        elif getattr(args, "verbose", False):
            out.append("--verbose")
        return out

    return argv


def _process_index() -> int | None:
    index = os.environ.get(ENV_PROCESS_INDEX)
    return int(index) if index is not None and index.isdigit() else None


class _Logging:
    """The worker's logging, set up once the app is imported (river/worker/_logs.py)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # Taken before the app is imported: what the river command installed.
        self.installed = command_handlers()
        self.installed_level = logging.getLogger("river").level
        self._undo: Callable[[], None] | None = None

    def setup(self, file: WorkerFile) -> None:
        section = file.worker
        settings = LogSettings(
            format=section.log_format or "text",
            handler=section.log_handler or "auto",
            level=section.log_level,
            debug=getattr(self.args, "debug", False),
            verbose=getattr(self.args, "verbose", False),
            process_index=_process_index(),
        )
        self._undo = setup_logging(settings, self.installed, self.installed_level)

    def undo(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None


def _supervisor_pid() -> int | None:
    text = os.environ.get(ENV_SUPERVISOR_PID)
    return int(text) if text and text.isdigit() else None


@dataclass(frozen=True, slots=True)
class WorkerHost:
    """What a framework's own worker command (``manage.py river_worker``, see
    river/contrib/django) changes in ``river worker``: the command line that starts a child of
    ``--processes``/``--reload`` (before its flags), and the database URL used when neither
    ``--database-url`` nor the config file names one (instead of ``$DATABASE_URL``). Each
    process computes that URL itself, so it never appears on a command line."""

    child_command: Sequence[str]
    default_url: Callable[[], str]


def _cmd_worker(args: argparse.Namespace, host: WorkerHost | None = None) -> int:
    logs = _Logging(args)
    # SIGHUP's default action kills the process: until the worker listens for it (once
    # started), a reload request (e.g. forwarded by a supervisor) must not end it. The file is
    # read after this point, so the version loaded is at least as new as the request.
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # A child of --processes/--reload: its supervisor forwards SIGHUP from now on.
    status = ChildStatus.from_env()
    status.send("started")
    try:
        return _run(_with_child_env(args), logs, host, status)
    finally:
        if _supervisor_pid() is None:
            # Run in-process (a framework's command, a test): give the caller its handler
            # back. A child of a supervisor exits next and keeps ignoring SIGHUP until then.
            signal.signal(signal.SIGHUP, previous)
        logs.undo()


def _with_child_env(args: argparse.Namespace) -> argparse.Namespace:
    """A child of --processes/--reload takes the supervisor's --database-url from
    ENV_DATABASE_URL (removed from the environment: the jobs' own subprocesses do not get it)."""
    if _supervisor_pid() is None:
        return args
    url = os.environ.pop(ENV_DATABASE_URL, None)
    if not url or args.database_url is not None:
        return args
    return argparse.Namespace(**{**vars(args), "database_url": url})


def _health_setting(args: argparse.Namespace) -> str:
    """Where the health address came from, as errors name it."""
    index = _process_index()
    if index is not None and _supervisor_pid() is not None:
        return f"the health address of worker process {index}"
    return "--health-addr" if args.health_addr is not None else "worker.health_addr"


def _run(
    args: argparse.Namespace,
    logs: _Logging,
    host: WorkerHost | None = None,
    status: ChildStatus | None = None,
) -> int:
    overrides = _overrides(args)
    signature = file_signature(args.config) if args.config else None
    file = load_file(args.config, overrides)
    if host is not None and file.database.url is None and file.database.url_env is None:
        database = {**overrides.get("database", {}), "url": host.default_url()}
        overrides = {**overrides, "database": database}
        file = load_file(args.config, overrides)
    if args.reload or file.worker.processes > 1:
        return _run_supervisor(args, file, logs, host)
    base = load_app(args.app, args.app_dir)
    # Only now: whether the app configured logging itself is known once it is imported.
    logs.setup(file)
    plan = build_plan(file, base, path=args.config)
    options = RunnerOptions(
        config_path=args.config,
        overrides=overrides,
        watch_config=args.watch_config,
        watch_interval=_value(args, "watch_interval"),
        supervisor_pid=_supervisor_pid(),
        config_signature=signature,
        health_setting=_health_setting(args),
        report=(status or ChildStatus(None)).send,
    )
    if args.watch_config and not args.config:
        logger.warning("--watch-config without --config: nothing to watch")
    runner = WorkerRunner(base, plan, options)
    return anyio.run(runner.run)


def _run_supervisor(
    args: argparse.Namespace, file: WorkerFile, logs: _Logging, host: WorkerHost | None = None
) -> int:
    health = file.worker.health_addr
    health_addr = parse_host_port(health) if health is not None else None
    processes = file.worker.processes
    if health_addr is not None:
        from_flag = args.health_addr is not None
        key, path = ("--health-addr", None) if from_flag else ("worker.health_addr", args.config)
        port = health_addr[1]
        if port == 0:
            raise WorkerConfigError(
                key,
                "needs a fixed port with --processes or --reload (child i serves PORT+1+i)",
                path=path,
            )
        if port + processes > 65535:
            raise WorkerConfigError(
                key,
                f"port {port} leaves no room for {processes} worker process(es): child i "
                f"serves PORT+1+i, so PORT must be at most {65535 - processes}",
                path=path,
            )
    if not args.reload:
        # Fail now, once, on an app that cannot load, rather than in a restart loop of children.
        # (--reload is exactly for code being edited, so there a broken app just waits.)
        build_plan(file, load_app(args.app, args.app_dir))
    # After the app's import (none with --reload): the children decide the same way.
    logs.setup(file)
    app_dir = os.path.abspath(args.app_dir or os.getcwd())
    options = SupervisorOptions(
        processes=processes,
        child_argv=_child_argv(args),
        reload=args.reload,
        reload_dirs=[os.path.abspath(d) for d in args.reload_dir or [app_dir]],
        watch_interval=min(_value(args, "watch_interval"), 0.5),
        shutdown_timeout=file.worker.shutdown_timeout,
        health_addr=health_addr,
        child_command=host.child_command if host is not None else None,
        health_setting=_health_setting(args),
        database_url=args.database_url,
    )
    return anyio.run(Supervisor(options).run)


def register_worker_commands(commands: Commands) -> None:
    """``worker``: run a worker process (or a supervisor of several)."""
    parser = commands.add(
        "worker",
        help="run workers: graceful stop, config reload, health, several processes",
        description=_DESCRIPTION,
        handler=_cmd_worker,
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _add_flags(parser)
