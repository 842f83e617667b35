"""Docs are tests: every code block of README.md and docs/*.md runs (issue 18).

Blocks are read by tests/docblocks.py, following the annotation convention of
docs/contributing.md. Each program (a block, or the blocks of one ``group``) runs in a
subprocess (tests/doc_runner.py, or pytest for a ``prelude=pytest`` program) with
``DATABASE_URL`` pointing at a fresh database of its own (migrated, or empty with
``db=empty``) and a timeout; the programs a session selects start side by side in a thread
pool as the session begins, and each test waits for its own program's result only (so a test's
time limit never covers other programs). A program fails when it exits non-zero,
times out, prints something else than its ``output`` block, or leaves a job that failed an
attempt in its database (a worker that raised: the way a broken example hides).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from doc_runner import MARKER
from docblocks import (
    KEYS,
    PRELUDES,
    REPO_ROOT,
    URL_PATTERN,
    Block,
    DocSyntaxError,
    Program,
    pages,
    parse_page,
    programs,
)
from psycopg import conninfo, sql

#: Programs running at once (each mostly waits: on its subprocess start-up, on Postgres).
PARALLEL = 4
RUNNER = Path(__file__).resolve().parent / "doc_runner.py"


def _collect() -> tuple[list[Program], list[Block], list[str]]:
    found: list[Program] = []
    skipped: list[Block] = []
    errors: list[str] = []
    for path in pages():
        try:
            blocks = parse_page(path)
            found.extend(programs(blocks))
            # Preludes are resolved now so that an unknown name is reported as an error.
            for program in found:
                _ = program.preludes
        except DocSyntaxError as exc:
            errors.append(str(exc))
            continue
        skipped.extend(b for b in blocks if b.runnable and b.skip_reason is not None)
    return found, skipped, errors


PROGRAMS, SKIPPED, ERRORS = _collect()


# --- the convention itself -----------------------------------------------------------------


def test_annotations_follow_the_convention() -> None:
    assert not ERRORS, "\n".join(ERRORS)


def test_the_convention_is_documented() -> None:
    text = (REPO_ROOT / "docs" / "contributing.md").read_text()
    missing = [key for key in KEYS if not re.search(rf"<!-- doc: [^`]*\b{key}\b", text)]
    assert not missing, f"docs/contributing.md does not describe: {missing}"
    missing = [name for name in PRELUDES if f"`{name}`" not in text]
    assert not missing, f"docs/contributing.md does not describe the preludes: {missing}"


def test_every_page_is_covered() -> None:
    covered = {p.relative_to(REPO_ROOT).as_posix() for p in pages()}
    on_disk = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "docs").glob("*.md")}
    assert on_disk <= covered
    assert "README.md" in covered
    # Sanity: the reader finds the blocks (a broken parser would run nothing and pass).
    assert len(PROGRAMS) >= 40


# --- running the programs --------------------------------------------------------------------


@dataclass
class Outcome:
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str
    seconds: float
    failed_jobs: list[tuple[int, str, str, str]]


def _uri(server_url: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(server_url)
    user = params.get("user", "")
    password = params.get("password")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = params.get("port")
    host = params.get("host", "localhost")
    return f"postgresql://{auth}{host}{':' + str(port) if port else ''}/{dbname}"


class _Databases:
    """Creates and drops the programs' databases, one statement at a time (two CREATE
    DATABASE from one template at once may fail: the template is "being accessed")."""

    def __init__(self, server_url: str, template: str) -> None:
        self.server_url = server_url
        self.template = template
        self.lock = threading.Lock()

    def create(self, empty: bool) -> tuple[str, str]:
        name = f"rq_doc_{uuid.uuid4().hex[:12]}"
        template = "template0" if empty else self.template
        with self.lock, psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        return name, _uri(self.server_url, name)

    def drop(self, name: str) -> None:
        with self.lock, psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _chunks(program: Program, url: str) -> list[dict[str, object]]:
    """What doc_runner.py runs: preludes, each block's hidden set-up, the block, then the
    preludes' clean-up (in reverse order)."""
    chunks: list[dict[str, object]] = []
    preludes = program.preludes
    for name in preludes:
        before, _ = PRELUDES[name]
        if before.strip():
            chunks.append({"kind": "python", "source": before, "file": f"<prelude {name}>"})
    for index, block in enumerate(program.blocks):
        for line, code in block.setup:
            chunks.append({"kind": "python", "source": code, "file": block.page, "line": line})
        source = block.code
        if block.kind == "shell":
            source = block.shell_commands()
        source = URL_PATTERN.sub(url, source)
        chunks.append({"kind": block.kind, "source": source, "file": block.page})
        chunks[-1].update(line=block.line, block=index)
    for name in reversed(preludes):
        _, after = PRELUDES[name]
        if after.strip():
            chunks.append(
                {"kind": "python", "source": after, "file": f"<prelude {name}>", "finally": True}
            )
    for chunk in chunks:
        chunk.setdefault("line", 1)
        chunk["timeout"] = program.timeout
    return chunks


def _pytest_files(program: Program, url: str, workdir: Path) -> None:
    """A ``prelude=pytest`` program as a test project: blocks starting with ``# conftest.py``
    make conftest.py, the others (after the hidden set-up) the test module."""
    conftest: list[str] = []
    module: list[str] = []
    for block in program.blocks:
        for _, code in block.setup:
            module.append(code)
        code = URL_PATTERN.sub(url, block.code)
        (conftest if code.startswith("# conftest.py") else module).append(code)
    (workdir / "conftest.py").write_text("\n\n".join(conftest))
    (workdir / "test_doc_page.py").write_text("\n\n".join(module))


def _failed_jobs(url: str) -> list[tuple[int, str, str, str]]:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT id, kind, state::text, errors[array_length(errors, 1)]->>'error' "
                "FROM river_job WHERE array_length(errors, 1) > 0 ORDER BY id LIMIT 5"
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return []  # the program migrated the schema away
    return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def _run(program: Program, databases: _Databases) -> Outcome:
    name, url = databases.create(program.empty_db)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="rq-doc-") as tmp:
            workdir = Path(tmp)
            # Relative paths of the docs (python examples/quickstart.py) resolve; anything a
            # block writes lands in the temporary directory, not in the checkout.
            (workdir / "examples").symlink_to(REPO_ROOT / "examples")
            bindir = str(Path(sys.executable).parent)
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            }
            env.pop("PYTEST_CURRENT_TEST", None)
            if program.pytest:
                _pytest_files(program, url, workdir)
                argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            else:
                spec = workdir / ".doc-program.json"
                spec.write_text(json.dumps({"chunks": _chunks(program, url)}))
                argv = [sys.executable, str(RUNNER), str(spec)]
            try:
                result = subprocess.run(
                    argv,
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=program.timeout,
                    check=False,
                )
                returncode: int | None = result.returncode
                stdout, stderr = result.stdout, result.stderr
            except subprocess.TimeoutExpired as exc:
                returncode = None
                stdout = _text(exc.stdout)
                stderr = _text(exc.stderr)
        failed = [] if "jobs-may-fail" in program.options else _failed_jobs(url)
        return Outcome(returncode, stdout, stderr, time.monotonic() - started, failed)
    finally:
        databases.drop(name)


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


@pytest.fixture(scope="session")
def doc_databases(server_url: str, _template_db: str) -> _Databases:
    return _Databases(server_url, _template_db)


@pytest.fixture(scope="session")
def doc_outcomes(request: pytest.FixtureRequest, doc_databases: _Databases) -> Iterator[_Outcomes]:
    """Outcomes by program id. The programs this session selected start at once, side by side
    in a thread pool, and each test waits for its own (all of them in the first test's setup
    ran past pytest-timeout's 120 s on a busy machine); under pytest-xdist (whose workers each
    run a share of the tests) each test runs its program when it asks for it."""
    outcomes = _Outcomes(doc_databases)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        yield outcomes
        return
    selected = {
        item.callspec.params["program"].id
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_program" and hasattr(item, "callspec")
    }
    todo = [p for p in PROGRAMS if p.id in selected and _missing_tool(p) is None]
    with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="doc-program") as pool:
        outcomes.started = {p.id: pool.submit(_run, p, doc_databases) for p in todo}
        try:
            yield outcomes
        finally:
            for future in outcomes.started.values():  # the session ended early (-x)
                future.cancel()


class _Outcomes(dict[str, Outcome]):
    """A program's outcome: waited for when it was started with the session, else run when
    its test asks for it."""

    def __init__(self, databases: _Databases) -> None:
        super().__init__()
        self.databases = databases
        self.by_id = {p.id: p for p in PROGRAMS}
        self.started: dict[str, Future[Outcome]] = {}

    def __missing__(self, key: str) -> Outcome:
        future = self.started.pop(key, None)
        outcome = self[key] = (
            future.result() if future is not None else _run(self.by_id[key], self.databases)
        )
        return outcome


def _missing_tool(program: Program) -> str | None:
    tool = program.options.get("requires")
    return tool if tool and shutil.which(tool) is None else None


def _block_output(stdout: str, index: int) -> str:
    """What block ``index`` of a program printed (up to the next block's marker); all of
    stdout for a program without markers (pytest)."""
    if MARKER not in stdout:
        return stdout
    for part in stdout.split(MARKER)[1:]:
        number, _, text = part.partition("\n")
        if number == str(index):
            return text
    return ""


def _labelled(stdout: str, program: Program) -> str:
    """stdout with each block's marker replaced by the block's page and line."""
    first, *rest = stdout.split(MARKER)
    out = [first]
    for part in rest:
        number, _, text = part.partition("\n")
        out.append(f"[{program.blocks[int(number)].where}]\n{text}")
    return "".join(out)


def _normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.id)
def test_program(program: Program, doc_outcomes: dict[str, Outcome]) -> None:
    tool = _missing_tool(program)
    if tool is not None:
        pytest.skip(f"{program.id} needs {tool}, which is not installed")
    outcome = doc_outcomes[program.id]
    where = ", ".join(b.where for b in program.blocks)
    stdout = _labelled(outcome.stdout, program)
    report = (
        f"\n{program.describe()}\n--- stdout ---\n{stdout[-4000:]}"
        f"\n--- stderr ---\n{outcome.stderr[-6000:]}"
    )
    if outcome.returncode is None:
        pytest.fail(f"{where}: timed out after {program.timeout:g}s{report}", pytrace=False)
    if outcome.returncode != 0:
        pytest.fail(f"{where}: exited {outcome.returncode}{report}", pytrace=False)
    if outcome.failed_jobs:
        jobs = "\n".join(f"  job {i} ({k}) {s}: {e}" for i, k, s, e in outcome.failed_jobs)
        pytest.fail(
            f"{where}: jobs failed an attempt (a worker raised; annotate jobs-may-fail if "
            f"that is the point):\n{jobs}{report}",
            pytrace=False,
        )
    if program.pytest:
        # Plain pytest skips nothing silently, but make sure tests ran and none was skipped
        # (an async test without its plugin, say).
        summary = outcome.stdout.strip().splitlines()[-1] if outcome.stdout.strip() else ""
        if " passed" not in summary or any(w in summary for w in ("skipped", "xfail", "error")):
            pytest.fail(f"{where}: pytest did not pass every test: {summary!r}{report}")
    expected = program.expected_output
    if expected is not None and _normalized(
        _block_output(outcome.stdout, program.output_of)
    ) != _normalized(expected.code):
        pytest.fail(
            f"{where}: the output differs from the block at {expected.where}:\n"
            f"--- expected ---\n{expected.code}{report}",
            pytrace=False,
        )


@pytest.mark.parametrize("block", SKIPPED, ids=lambda b: b.where)
def test_skipped_block(block: Block) -> None:
    pytest.skip(f"docs block not run: {block.skip_reason}")


# --- the harness itself ----------------------------------------------------------------------

PAGE = """
Intro.

<!-- doc: group=demo prelude=url -->
```python
import os
```

<!-- doc: setup
greeting = "hello"
-->
<!-- doc: group=demo -->
```python
print(greeting, url == os.environ["DATABASE_URL"])
```

<!-- doc: output -->
```text
hello True
```

<!-- doc: skip reason="needs systemd" -->
```sh
systemctl start river
```

```sh
river migrate-list
```

```toml
[client]
```
"""


def test_the_reader_follows_the_annotations() -> None:
    blocks = parse_page(Path("page.md"), PAGE)
    assert [(b.line, b.kind) for b in blocks] == [
        (6, "python"),
        (14, "python"),
        (19, "text"),
        (24, "shell"),
        (28, "shell"),
        (32, "text"),
    ]
    assert blocks[1].setup == [(10, 'greeting = "hello"\n')]
    assert blocks[3].skip_reason == "needs systemd"
    demo, alone = programs(blocks)
    assert (demo.id, [b.line for b in demo.blocks], demo.preludes) == (
        "page.md:demo",
        [6, 14],
        ["url"],
    )
    assert demo.expected_output is blocks[2]
    assert demo.output_of == 1
    assert alone.id == "page.md:line 28"


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ("<!-- doc: skip -->", "skip needs a reason"),
        ('<!-- doc: skip reason="" -->', "'reason' needs a value"),
        ("<!-- doc: grup=x -->", "unknown annotation key 'grup'"),
        ("<!-- doc: group -->", "needs a value"),
        ("<!-- doc: db=other -->", "db= is"),
        ("<!-- doc: timeout=soon -->", "timeout= takes seconds"),
        ("<!-- doc: group=a -->\nSome prose.\n", "must come right before a fenced block"),
    ],
)
def test_annotations_that_break_the_convention_are_errors(annotation: str, message: str) -> None:
    with pytest.raises(DocSyntaxError, match=message):
        parse_page(Path("page.md"), f"{annotation}\n```python\npass\n```\n")


def test_an_unknown_prelude_is_an_error() -> None:
    [program] = programs(parse_page(Path("p.md"), "<!-- doc: prelude=nope -->\n```py\n1\n```\n"))
    with pytest.raises(DocSyntaxError, match="unknown prelude 'nope'"):
        _ = program.preludes


#: docs/getting-started.md before issue 18: a worker using a name nobody defined. The program
#: exits 0 and prints nothing on stdout; only the job's row knows.
BROKEN_WORKER = """
```python
import asyncio
from typing import ClassVar

import river


class SendEmail(river.JobArgs):
    kind: ClassVar[str] = "send_email"
    to: str


class SendEmailWorker(river.Worker[SendEmail]):
    async def work(self, job: river.Job[SendEmail]) -> None:
        await mailer.send(job.args.to)


async def main() -> None:
    workers = river.Workers()
    workers.add(SendEmailWorker())
    config = river.Config(queues={"default": river.QueueConfig()}, workers=workers)
    async with river.AsyncClient("postgresql://localhost/app", config) as client:
        await client.insert(SendEmail(to="ada@example.com"))
        await asyncio.sleep(0.5)


asyncio.run(main())
```
"""


def test_a_worker_that_raises_fails_its_program(doc_databases: _Databases) -> None:
    [program] = programs(parse_page(Path("broken.md"), BROKEN_WORKER))
    outcome = _run(program, doc_databases)
    assert outcome.returncode == 0, outcome.stderr  # what made the bug invisible
    assert [(kind, error) for _, kind, _, error in outcome.failed_jobs] == [
        ("send_email", "NameError: name 'mailer' is not defined")
    ]


# --- links -----------------------------------------------------------------------------------

_LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)\s]+)\)")


def test_relative_links_point_at_files_that_exist() -> None:
    broken: list[str] = []
    for path in pages():
        text = path.read_text()
        for match in _LINK.finditer(text):
            target = match.group(1).split("#", 1)[0]
            if target and not (path.parent / target).exists():
                line = text.count("\n", 0, match.start()) + 1
                broken.append(f"{path.relative_to(REPO_ROOT)}:{line}: {match.group(1)}")
    assert not broken, "\n".join(broken)


def test_django_users_are_sent_to_the_django_page() -> None:
    # Issue 18: the README and inserting.md offered insert_tx(conn, ...) to Django users
    # without saying which connection.
    for page in ("README.md", "docs/inserting.md", "docs/getting-started.md"):
        assert "django.md" in (REPO_ROOT / page).read_text(), page
