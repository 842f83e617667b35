"""The code blocks of README.md and docs/*.md as programs that tests/test_docs.py runs.

Every fenced block is read; what runs, and how, follows the annotation convention documented
in docs/contributing.md ("Docs are tests"): an HTML comment ``<!-- doc: ... -->`` just above a
block (invisible once rendered). In short:

- Python (``python``, ``py``; a block starting with ``>>>`` is a doctest), shell (``sh``,
  ``bash``, ``shell``, ``console``) and SQL (``sql``) blocks run; other blocks (output, TOML,
  YAML, ...) are text, except an output block marked ``<!-- doc: output -->``, which is the
  expected standard output of the program before it.
- Each runnable block is a program of its own, run in a subprocess on a fresh migrated
  database (``DATABASE_URL``), unless ``group=NAME`` joins blocks of one page into one program,
  in page order.
- ``skip reason="..."`` (the reason is mandatory) keeps a block from running.
- Fragments get names from hidden set-up: ``prelude=NAME,...`` (the named preludes below) and
  a multi-line ``<!-- doc: setup ... -->`` comment holding Python code of the page's own.

``python tests/docblocks.py`` prints every block with what the test does with it.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Languages of the blocks that run, by kind.
PYTHON_LANGS = frozenset({"python", "py", "python3", "pycon"})
SHELL_LANGS = frozenset({"sh", "bash", "shell", "console"})
SQL_LANGS = frozenset({"sql"})

#: Every annotation key, and whether it takes a value (typos fail the test).
KEYS: dict[str, bool] = {
    "skip": False,
    "reason": True,
    "group": True,
    "prelude": True,
    "db": True,
    "timeout": True,
    "output": False,
    "jobs-may-fail": False,
    "requires": True,
    "setup": False,
}

#: Seconds a program may take unless its annotation says ``timeout=``.
DEFAULT_TIMEOUT = 60.0

#: Any Postgres URL written in a block that runs is replaced by the test database's URL.
URL_PATTERN = re.compile(r"postgres(?:ql)?://[^\s\"'`)]+")

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
_ANNOTATION = re.compile(r"^\s*<!--\s*doc:(?P<body>.*?)-->\s*$")
_SETUP_START = re.compile(r"^\s*<!--\s*doc:\s*setup\s*$")


class DocSyntaxError(Exception):
    """An annotation that breaks the convention (unknown key, skip without a reason...)."""


#: Hidden set-up shared by the pages, by name: (code before the block, code after it, run
#: even when the block fails). Python, run in the program's namespace; top-level ``await``
#: is allowed. ``url`` first: the others use it.
PRELUDES: dict[str, tuple[str, str]] = {
    "url": (
        """
import os

url = database_url = DATABASE_URL = URL = os.environ["DATABASE_URL"]
""",
        "",
    ),
    "jobs": (
        """
import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import psycopg

import river


class SendEmail(river.JobArgs):
    kind: ClassVar[str] = "send_email"
    to: str


class SendEmailWorker(river.Worker[SendEmail]):
    async def work(self, job: river.Job[SendEmail]) -> None:
        pass


workers = river.Workers()
workers.add(SendEmailWorker())
""",
        "",
    ),
    # A started AsyncClient on the test database, working the default queue and "email".
    "client": (
        """
client = river.AsyncClient(
    url,
    river.Config(
        queues={"default": river.QueueConfig(), "email": river.QueueConfig()},
        workers=workers,
        fetch_poll_interval=0.05,
    ),
)
await client.__aenter__()
""",
        """
await client.__aexit__(None, None, None)
""",
    ),
    # An AsyncClient without workers, not started: inserts (of any kind) and admin calls.
    "insert-client": (
        """
client = river.AsyncClient(url)
""",
        """
await client.close()
""",
    ),
    # A pytest test module: the program is run by pytest (see Program.pytest).
    "pytest": ("", ""),
}

#: Which preludes a prelude needs first.
PRELUDE_NEEDS: dict[str, tuple[str, ...]] = {
    "jobs": (),
    "url": (),
    "client": ("url", "jobs"),
    "insert-client": ("url", "jobs"),
    "pytest": (),
}


@dataclass
class Block:
    """One fenced block of a page."""

    page: str  # relative to the repository root, e.g. "docs/cli.md"
    line: int  # 1-based line of the first line of code (after the fence)
    lang: str
    code: str
    options: dict[str, str] = field(default_factory=dict)
    setup: list[tuple[int, str]] = field(default_factory=list)  # (line, code) hidden set-up

    @property
    def kind(self) -> str:
        """``python``, ``doctest``, ``shell``, ``sql``, or ``text`` (not run)."""
        lang = self.lang.lower()
        if lang in PYTHON_LANGS:
            return "doctest" if self.code.lstrip().startswith(">>>") else "python"
        if lang in SHELL_LANGS:
            return "shell"
        if lang in SQL_LANGS:
            return "sql"
        if not lang and any(ln.startswith("$ ") for ln in self.code.splitlines()):
            return "shell"  # an untagged terminal transcript: its commands are shell
        return "text"

    @property
    def runnable(self) -> bool:
        return self.kind != "text"

    @property
    def skip_reason(self) -> str | None:
        if "skip" in self.options:
            return self.options["reason"]
        return None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def shell_commands(self) -> str:
        """The script of a shell block: a transcript's ``$ `` lines (with their ``\\``
        continuations), else the block as written."""
        lines = self.code.splitlines()
        if not any(ln.startswith("$ ") for ln in lines):
            return self.code
        out: list[str] = []
        continuing = False
        for ln in lines:
            if ln.startswith("$ "):
                out.append(ln[2:])
                continuing = ln.rstrip().endswith("\\")
            elif continuing:
                out.append(ln)
                continuing = ln.rstrip().endswith("\\")
            else:
                out.append("")  # output: keeps line numbers aligned
        return "\n".join(out) + "\n"


@dataclass
class Program:
    """Blocks run together in one subprocess, in page order."""

    page: str
    name: str
    blocks: list[Block]
    #: An ``output`` block: what the block of index ``output_of`` must print.
    expected_output: Block | None = None
    output_of: int = -1

    @property
    def options(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for block in self.blocks:
            merged.update(block.options)
        return merged

    @property
    def id(self) -> str:
        return f"{self.page}:{self.name}"

    @property
    def preludes(self) -> list[str]:
        names: list[str] = []

        def need(name: str) -> None:
            if name not in PRELUDES:
                raise DocSyntaxError(f"{self.id}: unknown prelude {name!r}")
            for dep in PRELUDE_NEEDS[name]:
                need(dep)
            if name not in names:
                names.append(name)

        for block in self.blocks:
            for name in filter(None, block.options.get("prelude", "").split(",")):
                need(name.strip())
        return names

    @property
    def pytest(self) -> bool:
        return "pytest" in self.preludes

    @property
    def timeout(self) -> float:
        return float(self.options.get("timeout", DEFAULT_TIMEOUT))

    @property
    def empty_db(self) -> bool:
        return self.options.get("db") == "empty"

    def describe(self) -> str:
        """The program's blocks with page line numbers, for failure messages."""
        parts: list[str] = []
        for block in self.blocks:
            parts.append(f"--- {block.where} ({block.lang or 'untagged'}) ---")
            for i, text in enumerate(block.code.splitlines()):
                parts.append(f"{block.line + i:5d} | {text}")
        return "\n".join(parts)


def pages() -> list[Path]:
    """Every page the test covers: README.md and docs/*.md (new pages included)."""
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def _parse_options(body: str, where: str) -> dict[str, str]:
    try:
        tokens = shlex.split(body)
    except ValueError as exc:
        raise DocSyntaxError(f"{where}: cannot read the annotation {body!r}: {exc}") from None
    options: dict[str, str] = {}
    for token in tokens:
        key, eq, value = token.partition("=")
        if key not in KEYS:
            raise DocSyntaxError(f"{where}: unknown annotation key {key!r} (known: {list(KEYS)})")
        if KEYS[key] and not (eq and value):
            raise DocSyntaxError(f"{where}: annotation {key!r} needs a value ({key}=...)")
        if not KEYS[key] and eq:
            raise DocSyntaxError(f"{where}: annotation {key!r} takes no value")
        options[key] = value
    if "skip" in options and not options.get("reason", "").strip():
        raise DocSyntaxError(f'{where}: skip needs a reason: <!-- doc: skip reason="..." -->')
    if "db" in options and options["db"] not in ("empty", "migrated"):
        raise DocSyntaxError(f"{where}: db= is 'empty' or 'migrated'")
    if "timeout" in options:
        try:
            float(options["timeout"])
        except ValueError:
            raise DocSyntaxError(f"{where}: timeout= takes seconds") from None
    return options


def parse_page(path: Path, text: str | None = None) -> list[Block]:
    """The fenced blocks of one page, with the annotations above each (``text``: the page's
    content, instead of reading ``path``)."""
    page = path.relative_to(REPO_ROOT).as_posix() if path.is_absolute() else str(path)
    lines = (path.read_text() if text is None else text).splitlines()
    blocks: list[Block] = []
    pending: dict[str, str] = {}
    pending_setup: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        where = f"{page}:{i + 1}"
        if _SETUP_START.match(line):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "-->"), None)
            if end is None:
                raise DocSyntaxError(f"{where}: <!-- doc: setup without a closing --> line")
            pending_setup.append((i + 2, "\n".join(lines[i + 1 : end]) + "\n"))
            i = end + 1
            continue
        annotation = _ANNOTATION.match(line)
        if annotation:
            pending.update(_parse_options(annotation.group("body"), where))
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            indent, marker, info = fence.group("indent", "fence", "info")
            close = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not close.match(lines[j]):
                text = lines[j]
                body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
                j += 1
            blocks.append(Block(page, i + 2, info, "\n".join(body) + "\n", pending, pending_setup))
            pending, pending_setup = {}, []
            i = j + 1
            continue
        if line.strip() and (pending or pending_setup):
            raise DocSyntaxError(
                f"{where}: a doc annotation must come right before a fenced block "
                "(blank lines may separate them)"
            )
        i += 1
    if pending or pending_setup:
        raise DocSyntaxError(f"{page}: a doc annotation at the end of the page has no block")
    return blocks


def programs(blocks: Iterable[Block]) -> Iterator[Program]:
    """Group a page's runnable blocks into programs (``group=`` joins them, in page order)."""
    by_group: dict[str, Program] = {}
    ordered: list[Program] = []
    last: Program | None = None
    for block in blocks:
        if "output" in block.options:
            if block.runnable:
                raise DocSyntaxError(f"{block.where}: output marks the expected output block")
            if last is None:
                raise DocSyntaxError(f"{block.where}: output block with no program before it")
            if last.expected_output is not None:
                raise DocSyntaxError(f"{block.where}: {last.id} already has an output block")
            last.expected_output = block
            last.output_of = len(last.blocks) - 1
            continue
        if not block.runnable:
            if block.options or block.setup:
                raise DocSyntaxError(f"{block.where}: annotation on a block that does not run")
            continue
        if block.skip_reason is not None:
            continue
        group = block.options.get("group")
        if group is None:
            program = Program(block.page, f"line {block.line}", [block])
            ordered.append(program)
        elif group in by_group:
            program = by_group[group]
            program.blocks.append(block)
        else:
            program = Program(block.page, group, [block])
            by_group[group] = program
            ordered.append(program)
        last = program
    yield from ordered


def all_blocks() -> list[Block]:
    return [block for path in pages() for block in parse_page(path)]


def all_programs() -> list[Program]:
    out: list[Program] = []
    for path in pages():
        out.extend(programs(parse_page(path)))
    return out


def main() -> None:
    """Print every block: run (and in which program), skipped (why), or text."""
    counts = {"run": 0, "skipped": 0, "text": 0}
    for path in pages():
        blocks = parse_page(path)
        program_of = {id(b): p for p in programs(blocks) for b in p.blocks}
        for block in blocks:
            if not block.runnable:
                counts["text"] += 1
                state = "output of the program above" if "output" in block.options else "text"
            elif block.skip_reason is not None:
                counts["skipped"] += 1
                state = f"skipped: {block.skip_reason}"
            else:
                counts["run"] += 1
                state = f"runs in {program_of[id(block)].id}"
            print(f"{block.where:32s} {block.kind:8s} {state}")
    print(counts)


if __name__ == "__main__":
    sys.exit(main())
