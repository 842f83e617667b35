"""``river ui``: serve the dashboard (river/ui) with uvicorn.

Kept out of :mod:`river.ui` so that ``river --help`` and every other command work without the
``ui`` extra: Starlette and uvicorn are imported only when the command runs, and their absence
is reported as a one-line error naming ``pip install 'river-queue[ui]'``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from river._commands import CommandError, Commands
from river._names import validate_schema

__all__ = ["add_ui_command", "normalize_base_path"]

_log = logging.getLogger("river.cli")

DESCRIPTION = """\
Serve the dashboard: jobs, queues and periodic jobs of a River database in the browser, and
its JSON API (docs/ui.md). Listens on 127.0.0.1:8080 unless told otherwise.

Authentication comes from the environment: RIVER_UI_TOKEN (a bearer token; the browser signs
in with a form) or RIVER_UI_BASIC_AUTH (user:password). Without either, the dashboard listens
only on a loopback address and answers only loopback host names (localhost, 127.0.0.1, [::1]),
so that no other machine, and no web page on another domain (DNS rebinding), can use it; to
listen elsewhere without authentication, pass --insecure-no-auth, and --allowed-host for each
host name the browsers use."""


def normalize_base_path(text: str) -> str:
    """``--base-path``: ``""`` for the root, else ``/a/b`` (leading slash, none trailing)."""
    path = "/" + text.strip().strip("/")
    if path == "/":
        return ""
    if any(c in path for c in "?#%\\ ") or "//" in path or "/../" in path + "/":
        raise CommandError(f"--base-path: {text!r} is not a plain URL path")
    return path


def add_ui_command(
    commands: Commands, add_database_flags: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register ``ui`` on ``commands`` (``add_database_flags``: the CLI's
    ``--database-url``/``--schema``)."""
    parser = commands.add(
        "ui", help="serve the dashboard (web UI and JSON API)", description=DESCRIPTION,
        handler=_run,
    )  # fmt: skip
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_database_flags(parser)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    parser.add_argument(
        "--base-path", default="", metavar="PATH",
        help="serve under this path, e.g. /jobs behind a reverse proxy (default: the root)",
    )  # fmt: skip
    parser.add_argument(
        "--read-only", action="store_true",
        help="show everything, change nothing (no buttons; every POST is refused)",
    )  # fmt: skip
    parser.add_argument(
        "--title", default="River", help="name shown in the page title (default: River)"
    )
    parser.add_argument(
        "--allowed-host", action="append", default=[], metavar="NAME",
        help="a host name (or name:port) the browsers use to reach the dashboard, besides the "
        "loopback names; repeatable; '*' accepts any (default: any with authentication, else "
        "the loopback names and the --host address)",
    )  # fmt: skip
    parser.add_argument(
        "--insecure-no-auth", action="store_true",
        help="listen on a non-loopback --host without RIVER_UI_TOKEN or RIVER_UI_BASIC_AUTH: "
        "anyone who reaches the port can read every job, and change them unless --read-only",
    )  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import RedirectResponse, Response
        from starlette.routing import Mount, Route

        from river.ui import auth_from_env, create_app
        from river.ui._hosts import is_loopback
    except ImportError as exc:
        raise CommandError(
            f"river ui needs the dashboard's dependencies ({exc.name or exc}): "
            "pip install 'river-queue[ui]'"
        ) from None
    from river import cli

    schema = validate_schema(args.schema, field="--schema")
    base = normalize_base_path(args.base_path)
    if not 0 < args.port < 65536:
        raise CommandError(f"--port: {args.port} is not a port number")
    params = cli.connection_params(args)
    if params.get("application_name") == cli.APPLICATION_NAME:  # absent: PGAPPNAME is set
        params["application_name"] = "river ui"
    # The dashboard sets its own timeout in every transaction (SET LOCAL), over the
    # connection's: the flag goes there.
    timeout_ms: int | None = getattr(args, "statement_timeout", None)
    statement_timeout = 10.0 if timeout_ms is None else timeout_ms / 1000
    if not 0.1 <= statement_timeout <= 3600:
        raise CommandError(
            "--statement-timeout: river ui takes 100ms to 1h (each dashboard request's "
            f"statements), got {timeout_ms}ms"
        )
    from psycopg import conninfo

    try:
        auth = auth_from_env()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    loopback = is_loopback(args.host)
    if auth is None and not loopback and not args.insecure_no_auth:
        raise CommandError(
            f"--host {args.host} without authentication would let anyone who reaches the port "
            "read every job" + ("" if args.read_only else " and retry, cancel or delete them")
            + ": set RIVER_UI_TOKEN or RIVER_UI_BASIC_AUTH, or pass --insecure-no-auth "
            "(with --allowed-host for the host names the browsers use)"
        )  # fmt: skip
    # Without auth only loopback names are answered (DNS rebinding), and with --allowed-host
    # only those: the address listened on (not a wildcard) is one more a browser may use.
    allowed: list[str] | None = list(args.allowed_host) or None
    if (allowed is not None or auth is None) and not loopback:
        own = [] if args.host in ("0.0.0.0", "::") else [args.host]
        allowed = [*(allowed or []), *own]
    if auth is None and not loopback:
        sys.stderr.write(
            f"warning: listening on {args.host} without authentication: anyone who reaches "
            "the port can read every job"
            + ("" if args.read_only else " and retry, cancel and delete them") + "\n"
        )  # fmt: skip
    dashboard = create_app(
        conninfo.make_conninfo("", **params),
        schema=schema,
        read_only=args.read_only,
        auth=auth,
        allowed_hosts=allowed,
        title=args.title,
        statement_timeout=statement_timeout,
    )
    app: Any = dashboard
    if base:

        async def to_base(request: Request) -> Response:
            return RedirectResponse(base + "/", status_code=307)

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            # A mount gets no lifespan events of its own: close the dashboard's pool here.
            try:
                yield
            finally:
                await dashboard.close()

        app = Starlette(routes=[Route("/", to_base), Mount(base, app=dashboard)], lifespan=lifespan)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    mode = " (read-only)" if args.read_only else ""
    sys.stdout.write(f"river ui: serving on http://{shown}:{args.port}{base}/{mode}\n")
    sys.stdout.flush()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="debug" if args.debug else "info" if args.verbose else "warning",
        access_log=bool(args.verbose or args.debug),
        lifespan="on",
    )
    return 0
