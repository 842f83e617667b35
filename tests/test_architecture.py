"""The package's shape (issue 12): no import cycles, pure-data modules that stay light, a pinned
public API, and a test suite that reads nothing outside the repository.

Nothing here needs a database.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import river
from tests.conftest import DATA, REPO_ROOT

PACKAGE = REPO_ROOT / "river"
TESTS = REPO_ROOT / "tests"

# --------------------------------------------------------------------------------------------
# Import graph
# --------------------------------------------------------------------------------------------


def _module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: Iterable[ast.stmt], *, type_checking: bool) -> Iterator[ast.stmt]:
    """The statements of ``body`` that run when the module is imported: module level, inside
    if/try/with blocks and class bodies, but not in functions. ``if TYPE_CHECKING:`` blocks are
    followed only when ``type_checking`` (their ``else`` always)."""
    for node in body:
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            if type_checking:
                yield from _import_time_statements(node.body, type_checking=type_checking)
            yield from _import_time_statements(node.orelse, type_checking=type_checking)
            continue
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                yield from _import_time_statements(block, type_checking=type_checking)
        for handler in getattr(node, "handlers", []):
            yield from _import_time_statements(handler.body, type_checking=type_checking)


def _imports(name: str, path: Path, modules: set[str], *, type_checking: bool) -> set[str]:
    """The river modules that importing ``name`` imports directly."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in _import_time_statements(tree.body, type_checking=type_checking):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules:
                    found.add(submodule)
                elif base == "river" and alias.name in river._EXPORTS:
                    # `from river import Job` imports what river/__init__.py imports lazily.
                    found.add(river._EXPORTS[alias.name])
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def import_graph(*, type_checking: bool) -> dict[str, set[str]]:
    """river module -> the river modules it imports at import time (plus, with
    ``type_checking``, under ``if TYPE_CHECKING:``)."""
    modules = _module_names()
    return {
        name: _imports(name, path, set(modules), type_checking=type_checking)
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _describe(graph: dict[str, set[str]], component: frozenset[str]) -> str:
    edges = [f"{a} -> {b}" for a in sorted(component) for b in sorted(graph[a] & component)]
    return "{" + ", ".join(sorted(component)) + "}: " + "; ".join(edges)


def test_import_graph_sees_the_imports() -> None:
    # A scanner that finds nothing would pass every test below.
    runtime = import_graph(type_checking=False)
    typing = import_graph(type_checking=True)
    assert "river._errors" in runtime["river.migrate"]
    assert "river._commands" in runtime["river.worker._cli"]
    assert "river.dev" in runtime["river.cli"]  # from river import dev
    assert "river.worker" in runtime["river.cli"]
    assert "river._migrate_types" in typing["river._errors"]
    assert "river._migrate_types" not in runtime["river._errors"]
    # The package imports its public names lazily, so only for type checkers.
    assert runtime["river"] == {"river._version"}
    assert "river._client" in typing["river"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_no_import_cycles_at_import_time() -> None:
    graph = import_graph(type_checking=False)
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_describe(graph, c) for c in found)


def test_no_import_cycles_with_type_checking_imports() -> None:
    """TYPE_CHECKING imports do not run, but a cycle through them still ties two layers
    together (a pure-data module naming the runtime, the producer naming the runtime that
    starts it): none is allowed. The producer names what it needs of the runtime as a
    Protocol (river/_producer.py ProducerHost) for that reason."""
    graph = import_graph(type_checking=True)
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_describe(graph, c) for c in found)


# --------------------------------------------------------------------------------------------
# Light modules
# --------------------------------------------------------------------------------------------

#: Top-level packages a pure-data module must not load: the database driver, the telemetry API
#: and the event loop belong to the runtime.
HEAVY = ("psycopg", "psycopg_pool", "opentelemetry", "anyio")

LIGHT_MODULES = [
    "river",
    "river._types",
    "river._args",
    "river._errors",
    "river._migrate_types",
    "river._commands",
    "river._config",
    "river._names",
]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_pure_data_modules_load_no_driver_or_telemetry(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    loaded = {name.partition(".")[0] for name in json.loads(result.stdout)}
    assert not loaded & set(HEAVY), f"import {module} loaded {sorted(loaded & set(HEAVY))}"


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

#: river.__all__, sorted. Adding or removing a public name is a deliberate change: update this
#: list, the CHANGELOG and the docs together.
PUBLIC_NAMES = [
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


def test_public_names_are_pinned() -> None:
    assert sorted(river.__all__) == PUBLIC_NAMES
    assert len(set(river.__all__)) == len(river.__all__)


def test_every_public_name_resolves_to_its_module() -> None:
    assert set(river._EXPORTS) | {"__version__"} == set(river.__all__)
    for name, module in river._EXPORTS.items():
        value = getattr(river, name)
        assert value is getattr(sys.modules[module], name), name
    assert set(river.__all__) <= set(dir(river))
    with pytest.raises(AttributeError, match="no attribute 'AsyncClinet'"):
        _ = river.AsyncClinet  # type: ignore[attr-defined]


def test_every_public_name_and_member_has_a_docstring() -> None:
    """Docs with every feature: each exported name, and each public method or property of an
    exported class, says what it does (a type alias's own, not typing's generic text)."""
    missing = []
    for name in river.__all__:
        if name == "__version__":
            continue
        value = getattr(river, name)
        doc = value.__dict__.get("__doc__") if isinstance(value, type) else value.__doc__
        if not doc or not doc.strip() or doc.startswith("Runtime representation"):
            missing.append(name)
        if not isinstance(value, type):
            continue
        for attr, member in vars(value).items():
            if attr.startswith("_"):
                continue
            func = member.fget if isinstance(member, property) else member
            func = getattr(func, "__func__", func)
            if callable(func) and not (getattr(func, "__doc__", None) or "").strip():
                missing.append(f"{name}.{attr}")
    assert missing == []


def test_type_checkers_see_the_lazy_exports() -> None:
    """The imports under TYPE_CHECKING in river/__init__.py (what mypy and editors read) name
    the same modules as _EXPORTS (what the interpreter imports)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    seen: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.dump(stmt)
                assert stmt.module, ast.dump(stmt)
                for alias in stmt.names:
                    if stmt.module != "river":  # `from river import migrate as migrate`
                        seen[alias.name] = stmt.module
    assert seen == river._EXPORTS


# --------------------------------------------------------------------------------------------
# Test data
# --------------------------------------------------------------------------------------------

#: Ways a test could reach the shared directory outside the repository.
_OUTSIDE = re.compile(r"""/\s*["']shared["']|\.\./shared|/work/shared""")


def test_tests_read_nothing_outside_the_repository() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == Path(__file__).resolve() or DATA in path.parents:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not offenders, "read tests/data instead:\n" + "\n".join(offenders)


#: What scopes a query on the server's activity view to the test's own database or backends.
_SCOPED = ("current_database()", "pid = %s", "pid IN", "pid = ANY")


def test_tests_read_server_activity_of_their_own_database_only() -> None:
    """pytest-xdist workers share one server: a count over ``pg_stat_activity`` that is not
    scoped to the test's database (or to known pids) counts other workers' sessions too, and
    fails, or passes, by chance."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == Path(__file__).resolve():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            if "FROM pg_stat_activity" in node.value and not any(k in node.value for k in _SCOPED):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not offenders, "filter on datname = current_database():\n" + "\n".join(offenders)


def test_data_readme_names_every_file() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    files = [
        path.relative_to(DATA).as_posix()
        for path in sorted(DATA.rglob("*"))
        if path.is_file() and path.name != "README.md" and "__pycache__" not in path.parts
    ]
    assert files
    missing = [f for f in files if f"`{f}`" not in readme]
    assert not missing, f"tests/data/README.md does not describe {missing}"
