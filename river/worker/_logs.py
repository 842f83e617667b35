"""Where a worker process's log lines go: ``--log-format``, ``--log-level``, ``--log-handler``.

The ``river`` command puts a plain handler on the ``river`` logger before any command runs. A
worker replaces it, once the app is imported (so that the app's own logging configuration, done
at import or by its factory, is known), following ``--log-handler``:

- ``auto`` (default): when the app configured logging (the root logger has handlers, or the
  ``river`` logger has handlers that the command did not install), the app's handlers print
  river's lines: the worker installs nothing and sets levels only when a level was asked for
  explicitly (``--log-level``, ``worker.log_level``, ``--debug``, ``-v``). Otherwise the worker
  installs its own handler (stderr, ``--log-format``) on the ``river`` logger, which steps
  aside as soon as the root logger gets a handler later (the app configured logging after
  import): each line is printed once either way.
- ``always``: the worker's handler, and river's lines stop there (the ``river`` logger no
  longer propagates to the root logger's handlers), so each line is printed once, in the
  worker's format, whatever the app configured.
- ``never``: no handler from the worker (river's lines reach whatever the app configured, or
  Python's last-resort handler: WARNING and above, bare messages).

With its own handler, the worker also gives it to the ``psycopg`` logger when the root logger
has no handler (else the root's handlers print psycopg's lines already), so that psycopg's
warnings show their level and logger name, once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from river._logfmt import JsonFormatter, TextFormatter

__all__ = ["INFO_LOGGERS", "LogHandlerMode", "LogSettings", "command_handlers", "setup_logging"]

LogHandlerMode = Literal["auto", "always", "never"]
LogFormat = Literal["text", "json"]

#: Loggers a worker shows at INFO although the command logs warnings only by default: its
#: lifecycle lines (started, reload summaries, stopped), leadership changes and the job lines
#: at the levels Config.job_log chose are what operators read.
INFO_LOGGERS = ("river.worker", "river.elector", "river.job")


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The effective logging options of one worker process (flags over the config file)."""

    format: LogFormat = "text"
    handler: LogHandlerMode = "auto"
    #: ``--log-level`` / ``worker.log_level``; None: the command's level (``--debug``, ``-v``,
    #: else WARNING, with :data:`INFO_LOGGERS` at INFO).
    level: int | None = None
    debug: bool = False
    verbose: bool = False
    #: The ``--processes`` child's index (shown in every line), None for a lone process.
    process_index: int | None = None


class _RootUnconfigured(logging.Filter):
    """Passes records only while the root logger has no handler."""

    def __init__(self, root: logging.Logger) -> None:
        super().__init__()
        self._root = root

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._root.handlers


def command_handlers() -> list[logging.Handler]:
    """The handlers on the ``river`` logger now: called before the app is imported, they are
    the ones the ``river`` command installed (the worker replaces them)."""
    return list(logging.getLogger("river").handlers)


def _explicit_level(settings: LogSettings) -> int | None:
    if settings.level is not None:
        return settings.level
    if settings.debug:
        return logging.DEBUG
    if settings.verbose:
        return logging.INFO
    return None


def setup_logging(
    settings: LogSettings, installed: list[logging.Handler], installed_level: int
) -> Callable[[], None]:
    """Apply ``settings`` after the app was imported; return the function that undoes it.

    ``installed`` are the handlers the ``river`` command put on the ``river`` logger (see
    :func:`command_handlers`) and ``installed_level`` the level it set there."""
    river_logger = logging.getLogger("river")
    root = logging.getLogger()
    psycopg_logger = logging.getLogger("psycopg")
    app_configured = bool(root.handlers) or any(h not in installed for h in river_logger.handlers)
    install = settings.handler == "always" or (settings.handler == "auto" and not app_configured)

    touched = [river_logger, *(logging.getLogger(name) for name in INFO_LOGGERS)]
    levels = [lg.level for lg in touched]
    propagate = river_logger.propagate
    removed = [h for h in installed if h in river_logger.handlers]
    for handler in removed:
        river_logger.removeHandler(handler)
    ours: logging.Handler | None = None
    borrowed = False

    if install:
        ours = logging.StreamHandler(sys.stderr)
        formatter_type = JsonFormatter if settings.format == "json" else TextFormatter
        ours.setFormatter(formatter_type(process_index=settings.process_index))
        river_logger.addHandler(ours)
        if settings.handler == "always":
            river_logger.propagate = False
        else:
            # auto: an app that configures logging later (a logging.warning() at module
            # level runs basicConfig, a worker configures it on first use) gets river's lines
            # through its own handlers from then on; ours steps aside instead of doubling them.
            ours.addFilter(_RootUnconfigured(root))
        if settings.level is not None:
            river_logger.setLevel(settings.level)
            for name in INFO_LOGGERS:
                logging.getLogger(name).setLevel(logging.NOTSET)
        elif not settings.debug:
            for name in INFO_LOGGERS:
                logging.getLogger(name).setLevel(logging.INFO)
        if not root.handlers and ours not in psycopg_logger.handlers:
            psycopg_logger.addHandler(ours)
            borrowed = True
    else:
        explicit = _explicit_level(settings)
        if explicit is not None:
            river_logger.setLevel(explicit)
        elif river_logger.level == installed_level:
            # The command's default level (WARNING) is not the app's choice: the app's
            # configuration decides (the root logger's level, unless it set river's).
            river_logger.setLevel(logging.NOTSET)

    def undo() -> None:
        if ours is not None:
            if borrowed:
                psycopg_logger.removeHandler(ours)
            river_logger.removeHandler(ours)
            ours.close()
        for handler in removed:
            river_logger.addHandler(handler)
        river_logger.propagate = propagate
        for lg, level in zip(touched, levels, strict=True):
            lg.setLevel(level)

    return undo
