"""The ``river`` command: River (Go)'s ``river`` CLI for this library (PROTOCOL.md section 14).

Same subcommands, flags and output lines as River (Go)'s, so operators can use either tool::

    river migrate-up --database-url postgres://localhost/app
    river migrate-down --target-version 0      # all the way down
    river migrate-get --all --up > river.sql   # SQL for a migration tool of your own
    river migrate-list
    river validate || echo "migrations pending"
    river version
    river dev start|stop|status|url            # the embedded Postgres of river.dev
    river job list|get|retry|cancel|delete     # job administration (river/_cli_admin.py)
    river queue list|pause|resume|update       # queue administration

Exit status: 0 on success; 1 on a flag or command error (one line ``Error: ...`` on stderr, then
the usage for flag errors) and when ``validate`` finds unapplied migrations; ``dev status`` exits 1
when the embedded server is stopped. The ``job`` and ``queue`` commands exit 2 for bad input and
flag errors and 3 when some of the jobs or queues named were not found (docs/cli.md). No
traceback is printed unless ``--debug`` is given. On a terminal, ``migrate-up``/``-down`` show
per-version progress on stderr.

The CLI only parses flags and renders results; the work happens in :mod:`river.migrate` and
:mod:`river.dev`.

Adding commands: a *command group* is a function taking a :class:`Commands` and calling
:meth:`Commands.add` (or :meth:`Commands.group` for nested commands) once per subcommand. Each
command's handler receives the parsed ``argparse.Namespace`` and returns the exit status; it
prints results to ``sys.stdout`` and raises :class:`CommandError` (or any
:class:`~river.RiverError`) for failures. List the group in :data:`COMMAND_GROUPS`. Use
:func:`add_database_flags` and :func:`connect` for commands that need the database; the global
flags (``--debug``, ``-v/--verbose``, ``--statement-timeout``) are on every command already.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo

from river import dev
from river._cli_admin import DatabaseAccess, register_admin_commands
from river._commands import CommandError, Commands, Handler, Parser, UsageError, help_handler
from river._duration import parse_go_duration
from river._errors import (
    DatabaseUnavailableError,
    MigrationFailedError,
    RiverError,
    redact_secrets,
)
from river._progress import Progress
from river._schema import validate_schema
from river._version import __version__
from river.migrate import (
    MAIN_LINE,
    Direction,
    MigrateResult,
    Migration,
    MigrationVersionResult,
    Migrator,
    get_sql,
    load_migrations,
)
from river.worker import register_worker_commands

__all__ = [
    "COMMAND_GROUPS",
    "CommandError",
    "Commands",
    "Handler",
    "add_database_flags",
    "build_parser",
    "connect",
    "connection_params",
    "format_duration",
    "main",
    "parse_duration",
]

#: ``application_name`` of CLI connections unless the URL (or ``PGAPPNAME``) sets one.
APPLICATION_NAME = "river CLI"
#: Statement timeout of CLI connections unless ``--statement-timeout`` or the URL sets one.
DEFAULT_STATEMENT_TIMEOUT_MS = 10_000
#: ``idle_in_transaction_session_timeout`` of CLI connections unless the URL sets one.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 11_000
#: Seconds to wait for a connection unless the URL (or ``PGCONNECT_TIMEOUT``) sets a limit.
CONNECT_TIMEOUT_S = 10

_log = logging.getLogger("river.cli")

# --------------------------------------------------------------------------------------------
# Durations (Go's syntax, for flags and output that match River (Go)'s CLI)
# --------------------------------------------------------------------------------------------


def parse_duration(text: str) -> int:
    """Parse a Go duration (``300ms``, ``1.5s``, ``1m30s``, ``0``) into nanoseconds.

    The same parser as cron's ``@every`` (Go's syntax and rounding). Raises ValueError for
    anything else (a bare number other than 0 has no unit).
    """
    try:
        return parse_go_duration(text.strip())
    except ValueError:
        raise ValueError(f"invalid duration {text!r} (examples: 500ms, 10s, 1m30s)") from None


def _frac(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + str(rest).rjust(digits, "0").rstrip("0")


def format_duration(seconds: float) -> str:
    """Render a migration's duration like River (Go)'s CLI: Go's duration syntax, truncated.

    Truncation: to 10 ms above 1 s (``1.23s``), to 10 ns below 1 ms (``523.45µs``), else to
    10 µs (``12.34ms``). Units: ``ns``, ``µs`` (micro sign), ``ms``, ``s``, ``m``, ``h``.
    """
    ns = round(seconds * 1e9)
    negative, ns = ns < 0, abs(ns)
    if ns > 1_000_000_000:
        ns -= ns % 10_000_000
    elif ns < 1_000_000:
        ns -= ns % 10
    else:
        ns -= ns % 10_000
    if ns == 0:
        text = "0s"
    elif ns < 1_000:
        text = f"{ns}ns"
    elif ns < 1_000_000:
        text = _frac(ns, 1_000) + "µs"
    elif ns < 1_000_000_000:
        text = _frac(ns, 1_000_000) + "ms"
    else:
        hours, rest = divmod(ns, 3_600_000_000_000)
        minutes, rest = divmod(rest, 60_000_000_000)
        text = _frac(rest, 1_000_000_000) + "s"
        if hours:
            text = f"{hours}h{minutes}m{text}"
        elif minutes:
            text = f"{minutes}m{text}"
    return "-" + text if negative else text


def _statement_timeout(text: str) -> int:
    """``--statement-timeout``: a Go duration of at least 1 ms, returned in milliseconds."""
    try:
        ns = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if ns < 1_000_000:
        raise argparse.ArgumentTypeError(f"must be at least 1ms, got {text!r}")
    return ns // 1_000_000


# --------------------------------------------------------------------------------------------
# Database connections
# --------------------------------------------------------------------------------------------


def add_database_flags(parser: argparse.ArgumentParser, *, schema: bool = True) -> None:
    """Add ``--database-url`` (default ``$DATABASE_URL``) and, with ``schema``, ``--schema``."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or None,
        metavar="URL",
        help="postgres:// or postgresql:// URL (default: $DATABASE_URL, else the libpq PG* "
        "variables, PGDATABASE at least)",
    )
    if schema:
        parser.add_argument(
            "--schema",
            default=None,
            help="schema of the River tables (default: the connection's search_path)",
        )


def _libpq_keywords() -> frozenset[str]:
    return frozenset(opt.keyword.decode() for opt in psycopg.pq.Conninfo.get_defaults())


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _split_url(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """libpq parameters of ``url`` and its other query parameters (server settings).

    River (Go)'s URLs may carry server settings as query parameters
    (``?statement_timeout=5000``), which pgx passes to the server; libpq rejects them, so they are
    moved into ``options``.
    """
    settings: dict[str, str] = {}
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        if scheme not in ("postgres", "postgresql"):
            raise CommandError(
                f"unsupported database URL scheme {scheme + '://'!r}: "
                "use postgres:// or postgresql://"
            )
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise CommandError(f"invalid database URL: {redact_secrets(str(exc))}") from None
        known = _libpq_keywords()
        query = parse_qsl(parts.query, keep_blank_values=True)
        settings = {k: v for k, v in query if k not in known}
        kept = [(k, v) for k, v in query if k in known]
        url = urlunsplit(parts._replace(query=urlencode(kept, quote_via=quote)))
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise CommandError(f"invalid database URL: {redact_secrets(_one_line(exc))}") from None
    return {k: str(v) for k, v in params.items() if v is not None}, settings


def _escape_option(value: str) -> str:
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def connection_params(args: argparse.Namespace) -> dict[str, str]:
    """The libpq parameters :func:`connect` uses for ``args`` (no connection is made).

    Adds ``application_name`` ``river CLI``, a 10 s ``statement_timeout`` and an 11 s
    ``idle_in_transaction_session_timeout`` unless the URL sets them; ``--statement-timeout``
    overrides the URL.
    """
    url = getattr(args, "database_url", None)
    if not url:
        if not os.environ.get("PGDATABASE"):
            raise CommandError(
                "no database given: pass --database-url, or set DATABASE_URL "
                "(or the libpq PG* variables, PGDATABASE at least)"
            )
        url = ""
    params, settings = _split_url(url)
    if "application_name" not in params and not os.environ.get("PGAPPNAME"):
        params["application_name"] = APPLICATION_NAME
    if "connect_timeout" not in params and not os.environ.get("PGCONNECT_TIMEOUT"):
        params["connect_timeout"] = str(CONNECT_TIMEOUT_S)
    # The options libpq would use: the URL's, else (and only then) PGOPTIONS.
    existing = params.get("options") or os.environ.get("PGOPTIONS", "")
    timeout_flag: int | None = getattr(args, "statement_timeout", None)
    if timeout_flag is not None:
        settings["statement_timeout"] = str(timeout_flag)
    elif "statement_timeout" not in settings and "statement_timeout" not in existing:
        settings["statement_timeout"] = str(DEFAULT_STATEMENT_TIMEOUT_MS)
    idle = "idle_in_transaction_session_timeout"
    if idle not in settings and idle not in existing:
        settings[idle] = str(IDLE_IN_TRANSACTION_TIMEOUT_MS)
    # Later -c options win over earlier ones, so the flag beats an options= of the URL. An
    # options parameter makes libpq ignore PGOPTIONS, so without one in the URL the
    # environment's come first (a search_path there was dropped, and a statement_timeout
    # there counted as set while it was dropped too).
    extra = [f"-c {name}={_escape_option(value)}" for name, value in settings.items()]
    params["options"] = " ".join(p for p in [existing, *extra] if p)
    return params


def connect(args: argparse.Namespace) -> psycopg.Connection[Any]:
    """An autocommit connection for a command's ``args`` (see :func:`connection_params`).

    Raises :class:`CommandError` with a one-line reason when the URL is malformed or the
    server cannot be reached.
    """
    params = connection_params(args)
    try:
        # Nothing prepared on the server: the commands run few statements each, and a
        # connection through PgBouncer in transaction mode must not carry prepared statements.
        return psycopg.connect(
            conninfo.make_conninfo("", **params), autocommit=True, prepare_threshold=None
        )
    except psycopg.Error as exc:
        # The wording every client and command shares ("cannot connect to the database: ...").
        raise CommandError(str(DatabaseUnavailableError(exc))) from None


# --------------------------------------------------------------------------------------------
# Migration commands
# --------------------------------------------------------------------------------------------


def _add_line_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--line", default=MAIN_LINE, help=f"migration line (default: {MAIN_LINE})")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _version_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid version list {text!r}") from None


def _precheck(args: argparse.Namespace) -> None:
    """Reject a bad schema or line before connecting (and so before any SQL)."""
    validate_schema(args.schema, field="--schema")
    load_migrations(args.line)


def _print_versions(
    versions: Sequence[MigrationVersionResult], *, dry_run: bool, show_sql: bool, line: str
) -> None:
    width = max((len(v.name) for v in versions), default=0)
    for v in versions:
        if dry_run:
            print(f"migration {v.version:03d} [{v.direction}] [DRY RUN]")
        else:
            print(
                f"applied migration {v.version:03d} [{v.direction}] {v.name:<{width}} "
                f"[{format_duration(v.duration)}]"
            )
        if show_sql:
            print("-" * 80)
            print(f"-- River {line} migration {v.version:03d} [{v.direction}]")
            print(v.sql.rstrip())
            print()


def _print_result(result: MigrateResult, args: argparse.Namespace) -> None:
    if not result.versions:
        print("no migrations to apply")
        return
    _print_versions(result.versions, dry_run=result.dry_run, show_sql=args.show_sql, line=args.line)
    if args.max_steps and len(result.versions) < args.max_steps:
        print("no more migrations to apply")


class _StepProgress:
    """Per-version progress of migrate-up/down on stderr, when it is a terminal (on anything
    else nothing is written, so River (Go)-compatible output is unchanged)."""

    def __init__(self, direction: str) -> None:
        self._direction = direction
        self._progress: Progress | None = None

    def __call__(self, position: int, total: int, migration: Migration) -> None:
        if self._progress is None:
            self._progress = Progress(total, "migrations")
        self._progress.done = position
        self._progress.show(f"{migration.version:03d} [{self._direction}] {migration.name}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()


def _migrate(args: argparse.Namespace, direction: str) -> int:
    _precheck(args)
    max_steps = args.max_steps or None
    progress = _StepProgress(direction)
    with connect(args) as conn:
        migrator = Migrator(conn, schema=args.schema, line=args.line)
        try:
            if direction == "up":
                result = migrator.migrate_up(
                    target_version=args.target_version or 0,
                    max_steps=max_steps,
                    dry_run=args.dry_run,
                    on_step=progress,
                )
            else:
                result = migrator.migrate_down(
                    target_version=args.target_version,
                    max_steps=max_steps,
                    dry_run=args.dry_run,
                    on_step=progress,
                )
        except MigrationFailedError as exc:
            progress.close()
            # What ran before the failure stays applied: show it before the error line.
            _print_versions(exc.applied, dry_run=False, show_sql=args.show_sql, line=args.line)
            raise
        finally:
            progress.close()
    _print_result(result, args)
    return 0


def _cmd_migrate_up(args: argparse.Namespace) -> int:
    return _migrate(args, "up")


def _cmd_migrate_down(args: argparse.Namespace) -> int:
    return _migrate(args, "down")


def _cmd_migrate_get(args: argparse.Namespace) -> int:
    if args.database_url and "://" in args.database_url:
        # Only a dialect hint, as in River (Go): nothing connects.
        scheme = args.database_url.split("://", 1)[0].lower()
        if scheme not in ("postgres", "postgresql"):
            raise CommandError(
                f"unsupported database URL scheme {scheme + '://'!r}: "
                "use postgres:// or postgresql://"
            )
    validate_schema(args.schema, field="--schema")
    known = [m.version for m in load_migrations(args.line)]
    wanted = known if args.all else [v for group in args.version or [] for v in group]
    excluded = {v for group in args.exclude_version or [] for v in group}
    wanted = [v for v in wanted if v not in excluded]
    if wanted:
        direction: Direction = "up" if args.up else "down"
        print(get_sql(wanted, direction, line=args.line, schema=args.schema), end="")
    return 0


def _cmd_migrate_list(args: argparse.Namespace) -> int:
    _precheck(args)
    with connect(args) as conn:
        migrator = Migrator(conn, schema=args.schema, line=args.line)
        applied = set(migrator.applied_versions())
    known = migrator.available()
    # Recorded versions this library does not know (River (Go)'s 8) cannot be listed; the
    # marker goes on the highest applied version among those it lists.
    current = max((m.version for m in known if m.version in applied), default=None)
    for m in known:
        marker = "" if current is None else ("* " if m.version == current else "  ")
        print(f"{marker}{m.version:03d} {m.name}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    _precheck(args)
    with connect(args) as conn:
        result = Migrator(conn, schema=args.schema, line=args.line).validate()
    for message in result.messages:
        _log.info(message)
    return 0 if result.ok else 1


def _add_migrate_flags(parser: argparse.ArgumentParser, *, down: bool) -> None:
    add_database_flags(parser)
    _add_line_flag(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would run without running it"
    )
    parser.add_argument(
        "--show-sql", action="store_true", help="print the SQL of each migration as well"
    )
    parser.add_argument(
        "--max-steps",
        type=_non_negative,
        default=0,
        metavar="N",
        help="apply at most N migrations (0: no limit"
        + ("; without a target, down applies 1)" if down else ")"),
    )
    parser.add_argument(
        "--target-version",
        type=int,
        default=None,
        metavar="N",
        help=(
            "migrate down to version N (0 or -1: all the way down; default: one step)"
            if down
            else "migrate up to version N (default: all pending)"
        ),
    )


def register_migrate_commands(commands: Commands) -> None:
    """``migrate-up``, ``migrate-down``, ``migrate-get``, ``migrate-list`` and ``validate``."""
    up = commands.add(
        "migrate-up", help="apply pending migrations (default: all)", handler=_cmd_migrate_up
    )
    _add_migrate_flags(up, down=False)
    down = commands.add(
        "migrate-down",
        help="revert applied migrations (default: one step)",
        handler=_cmd_migrate_down,
    )
    _add_migrate_flags(down, down=True)

    get = commands.add(
        "migrate-get",
        help="print the SQL of migrations (no database needed)",
        handler=_cmd_migrate_get,
    )
    get.add_argument(
        "--database-url",
        default="postgres://",
        metavar="URL",
        help="only selects the dialect; nothing connects (default: postgres://)",
    )
    get.add_argument("--schema", default=None, help="qualify object names with this schema")
    _add_line_flag(get)
    which = get.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--version",
        type=_version_list,
        action="append",
        metavar="V[,V...]",
        help="version(s) to print; repeatable",
    )
    which.add_argument("--all", action="store_true", help="every version")
    get.add_argument(
        "--exclude-version",
        type=_version_list,
        action="append",
        metavar="V[,V...]",
        help="version(s) to leave out; repeatable",
    )
    direction = get.add_mutually_exclusive_group(required=True)
    direction.add_argument("--up", action="store_true", help="the up migrations, ascending")
    direction.add_argument("--down", action="store_true", help="the down migrations, descending")

    listing = commands.add(
        "migrate-list",
        help="list migrations, marking the current version with '*'",
        handler=_cmd_migrate_list,
    )
    add_database_flags(listing)
    _add_line_flag(listing)

    validate = commands.add(
        "validate",
        help="exit 1 when migrations are unapplied (details with -v)",
        handler=_cmd_validate,
    )
    add_database_flags(validate)
    _add_line_flag(validate)


# --------------------------------------------------------------------------------------------
# version and dev
# --------------------------------------------------------------------------------------------


def _version_text() -> str:
    return f"River version {__version__}\nBuilt with Python {platform.python_version()}"


def _cmd_version(args: argparse.Namespace) -> int:
    print(_version_text())
    return 0


def register_version_command(commands: Commands) -> None:
    """``version``."""
    commands.add("version", help="print the version", handler=_cmd_version)


def _cmd_dev_start(args: argparse.Namespace) -> int:
    print(dev.start(args.dir).url)
    return 0


def _cmd_dev_stop(args: argparse.Namespace) -> int:
    print("stopped" if dev.stop(args.dir) else "not running")
    return 0


def _cmd_dev_status(args: argparse.Namespace) -> int:
    server = dev.status(args.dir)
    if server is None:
        print("stopped")
        return 1
    print(f"running {server.url}")
    return 0


def register_dev_commands(commands: Commands) -> None:
    """``dev start|stop|status|url``: the private Postgres of :mod:`river.dev`."""
    group = commands.group(
        "dev",
        help="a private Postgres for development and tests",
        description="Manage the embedded Postgres kept in ./.river (or $RIVER_DEV_DIR). "
        "'start' and 'url' print its URL (starting it if needed), 'stop' prints 'stopped' or "
        "'not running', 'status' prints 'running <url>' (exit 0) or 'stopped' (exit 1).",
    )
    for name, handler, help_text in [
        ("start", _cmd_dev_start, "start the server (or reuse it) and print its URL"),
        ("url", _cmd_dev_start, "print the server's URL, starting it if needed"),
        ("stop", _cmd_dev_stop, "stop the server"),
        ("status", _cmd_dev_status, "print 'running <url>' (exit 0) or 'stopped' (exit 1)"),
    ]:
        parser = group.add(name, help=help_text, handler=handler)
        parser.add_argument(
            "--dir",
            default=None,
            help="directory holding the cluster (default: $RIVER_DEV_DIR, else ./.river)",
        )


# --------------------------------------------------------------------------------------------
# Parser and entry point
# --------------------------------------------------------------------------------------------


#: Command groups, in the order their commands appear in ``river --help``.
def register_bench_command(commands: Commands) -> None:
    """``bench``: River (Go)'s benchmark command (implemented in :mod:`river._bench`)."""
    from river import _bench

    parser = commands.add(
        "bench", help=_bench.HELP, description=_bench.DESCRIPTION, handler=_bench.run_bench
    )
    _bench.add_flags(parser)


def register_job_and_queue_commands(commands: Commands) -> None:
    """``job ...`` and ``queue ...``: job and queue administration (:mod:`river._cli_admin`)."""
    register_admin_commands(commands, DatabaseAccess(add_database_flags, connect))


def register_ui_command(commands: Commands) -> None:
    """``ui``: the dashboard (:mod:`river._cli_ui`; Starlette and uvicorn load when it runs)."""
    from river._cli_ui import add_ui_command

    add_ui_command(commands, add_database_flags)


COMMAND_GROUPS: list[Callable[[Commands], None]] = [
    register_migrate_commands,
    register_version_command,
    register_dev_commands,
    register_job_and_queue_commands,
    register_bench_command,
    register_worker_commands,
    register_ui_command,
]


def _global_flags(*, suppress: bool) -> Parser:
    # The root parser holds the defaults; subcommands repeat the flags with SUPPRESS defaults so
    # that `river migrate-up --debug` works like `river --debug migrate-up` without resetting them.
    parser = Parser(add_help=False)
    levels = parser.add_mutually_exclusive_group()
    levels.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="log at debug level (with tracebacks of errors)",
    )
    levels.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="log at info level",
    )
    parser.add_argument(
        "--statement-timeout",
        type=_statement_timeout,
        default=argparse.SUPPRESS if suppress else None,
        metavar="DURATION",
        help="statement timeout of database connections, e.g. 30s (at least 1ms; default: the "
        "URL's statement_timeout, else 10s)",
    )
    return parser


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(_version_text())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    """The ``river`` argument parser with every group of :data:`COMMAND_GROUPS`."""
    parser = Parser(
        prog="river",
        description="River job queue: migrations, development database, and more.",
        parents=[_global_flags(suppress=False)],
        allow_abbrev=False,
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    parser.set_defaults(handler=help_handler(parser))
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    commands = Commands(subparsers, (_global_flags(suppress=True),))
    for register in COMMAND_GROUPS:
        register(commands)
    return parser


def _configure_logging(args: argparse.Namespace) -> Callable[[], None]:
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("river")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    return undo


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``river`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Never raises for expected failures: they print ``Error: ...`` on stderr and return 1 (the
    ``job`` and ``queue`` commands: 2 for bad input, 3 for ids or queues not found).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.debug and args.verbose:
            raise UsageError("--debug and --verbose cannot be used together", parser)
    except UsageError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        print(exc.parser.format_usage().rstrip(), file=sys.stderr)
        return exc.parser.usage_status if isinstance(exc.parser, Parser) else 1
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    undo_logging = _configure_logging(args)
    try:
        handler: Handler = args.handler
        return handler(args)
    except (CommandError, RiverError, psycopg.Error, OSError) as exc:
        _log.debug("command failed", exc_info=True)
        print(f"Error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
    finally:
        undo_logging()


if __name__ == "__main__":
    sys.exit(main())
