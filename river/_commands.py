"""How ``river`` subcommands are registered: :class:`Commands`, :data:`Handler`,
:class:`CommandError` (all re-exported by :mod:`river.cli`, whose docstring explains adding a
command group).

Only argparse here, so that command groups living in other packages (``river.worker``) can
name these types without importing :mod:`river.cli`, which imports every command group.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

__all__ = ["CommandError", "Commands", "Handler", "Parser", "UsageError", "help_handler"]

#: A command's handler: parsed flags in, exit status out.
Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A command failed; :func:`river.cli.main` prints ``Error: <message>`` and exits 1."""


class UsageError(Exception):
    """A flag error: :func:`river.cli.main` prints it with ``parser``'s usage and exits with
    the parser's :attr:`Parser.usage_status` (1 unless its group says otherwise)."""

    def __init__(self, message: str, parser: argparse.ArgumentParser) -> None:
        super().__init__(message)
        self.parser = parser


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors return to :func:`river.cli.main` (exit status
    :attr:`usage_status`) instead of exiting with status 2."""

    #: Exit status of this parser's flag errors: 1, as River (Go)'s commands; a group given
    #: ``usage_status`` (``job``, ``queue``: 2) sets it on its parsers.
    usage_status: int = 1

    def parse_known_args(  # type: ignore[override]  # typeshed's overloads, same behaviour
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self.usage_status != 1:
            # Left to the root parser, unknown flags would exit with the root's status.
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self)


@dataclass(frozen=True)
class Commands:
    """Where a command group adds its subcommands (see :mod:`river.cli`)."""

    _subparsers: argparse._SubParsersAction[Parser]
    _parents: tuple[Parser, ...]
    _usage_status: int = 1

    def add(
        self, name: str, *, help: str, handler: Handler, description: str | None = None
    ) -> argparse.ArgumentParser:
        """Add subcommand ``name`` running ``handler``; return its parser for flags."""
        parser = self._subparsers.add_parser(
            name,
            help=help,
            description=description or help,
            parents=list(self._parents),
            allow_abbrev=False,
        )
        parser.usage_status = self._usage_status
        parser.set_defaults(handler=handler)
        return parser

    def group(
        self,
        name: str,
        *,
        help: str,
        description: str | None = None,
        usage_status: int | None = None,
    ) -> Commands:
        """Add subcommand ``name`` with subcommands of its own (``river dev start``).

        Without a subcommand it prints its help and exits 0. ``usage_status``: exit status of
        flag errors in the group (default: this one's, 1 at the top).
        """
        status = self._usage_status if usage_status is None else usage_status
        parser = self._subparsers.add_parser(
            name,
            help=help,
            description=description or help,
            parents=list(self._parents),
            allow_abbrev=False,
        )
        parser.usage_status = status
        parser.set_defaults(handler=help_handler(parser))
        subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
        return Commands(subparsers, self._parents, status)


def help_handler(parser: argparse.ArgumentParser) -> Handler:
    """A handler that prints ``parser``'s help and exits 0 (a group given no subcommand)."""

    def handler(args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return handler
