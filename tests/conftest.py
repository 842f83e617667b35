"""Test harness: a real Postgres for every test (no fakes).

The server is ``$DATABASE_URL`` when set, else the embedded one from :mod:`river.dev`. Each test
that asks for a database gets its own, created for it and dropped after it:

- ``empty_db_url``: a new empty database (no River schema), for migration tests;
- ``db_url``: a new database already migrated to the latest version (cloned from a template
  migrated once per session), for everything else.

Async tests run on asyncio through anyio's pytest plugin (``@pytest.mark.anyio``).

Also under pytest-xdist (``pytest -n 2``): the workers share the embedded server (started once,
under a file lock), each migrates a template of its own (named by its pid), and every database
a test uses is its own. A test that acts on the server as a whole (``pg_stat_activity``,
``pg_terminate_backend``) must filter on ``current_database()``.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import psycopg
import pytest
from psycopg import conninfo, sql

from river import dev

# No per-example deadline for hypothesis (its default is 200 ms): on a busy CI machine an
# example descheduled for a moment failed with DeadlineExceeded, or "Unreliable test timings"
# on replay. The suite bounds whole tests instead (pytest-timeout).
hypothesis.settings.register_profile("river", deadline=None)
hypothesis.settings.load_profile("river")

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Copies of the shared cross-language data the tests use (River's conformance fixtures, the
#: schema catalog and its tool), so that a clone of the repository tests itself alone.
DATA = REPO_ROOT / "tests" / "data"
CONFORMANCE = DATA / "river-conformance"
TEMPLATE_DB = "river_test_template_v7"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # psycopg's async API is asyncio-only, so the whole library runs on asyncio.
    return "asyncio"


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of a database on the test server (used to create and drop per-test databases).

    ``$DATABASE_URL`` when set; else the private server of :mod:`river.dev`, whose binaries
    ``$RIVER_TEST_PG`` may choose: ``system`` (an installed PostgreSQL) or ``pgserver`` (the
    wheel's), each in a data directory of its own (``.river/test-<choice>``, or
    ``$RIVER_DEV_DIR``). The support matrix (``make matrix``) runs one of each, with
    ``$RIVER_TEST_PG_MAJOR`` naming the major version the server must have.
    """
    choice = os.environ.get("RIVER_TEST_PG", "")
    url = _chosen_server(choice) if choice and not os.environ.get("DATABASE_URL") else None
    url = url or dev.database_url()
    # RIVER_TEST_PG_MAJOR=16: fail unless the server is that major version (make matrix).
    major = os.environ.get("RIVER_TEST_PG_MAJOR")
    if major:
        with psycopg.connect(url) as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
        version = int(row[0]) if row else 0
        if str(version // 10000) != major:
            raise pytest.UsageError(f"RIVER_TEST_PG_MAJOR={major}, but the server is {version}")
    return url


def _chosen_server(choice: str) -> str:
    if choice == "pgserver":
        bindir = dev.bundled_bindir()
        if bindir is None:
            raise pytest.UsageError(
                "RIVER_TEST_PG=pgserver, but the pgserver wheel (the embedded extra) is not "
                "installed in this environment"
            )
    elif choice == "system":
        bindir = dev.find_bindir(bundled=False)
    else:
        raise pytest.UsageError(f"RIVER_TEST_PG must be 'system' or 'pgserver', not {choice!r}")
    directory = os.environ.get("RIVER_DEV_DIR") or str(REPO_ROOT / ".river" / f"test-{choice}")
    # For this process and its children (subprocesses of tests that call river.dev themselves).
    os.environ["RIVER_PG_BINDIR"] = str(bindir)
    os.environ["RIVER_DEV_DIR"] = directory
    server = dev.start(directory)
    # A cluster left by other binaries would be reused as it is: refuse to test the wrong one.
    wanted = _major_version(bindir)
    running = (server.data_dir / "PG_VERSION").read_text().strip()
    if running != wanted:
        raise pytest.UsageError(
            f"RIVER_TEST_PG={choice} wants PostgreSQL {wanted} ({bindir}), but {directory} "
            f"holds a PostgreSQL {running} cluster; stop it (river dev stop --dir {directory}) "
            "and remove the directory"
        )
    return server.url


def _major_version(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout  # "postgres (PostgreSQL) 16.2"
    return out.split()[2].split(".")[0]


def _url_with_db(url: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return conninfo.make_conninfo("", **params)


def _uri_with_db(url: str, dbname: str) -> str:
    """Same as _url_with_db but as a postgresql:// URI (what the CLI and tools expect)."""
    params = conninfo.conninfo_to_dict(url)
    user = params.get("user", "")
    password = params.get("password")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = params.get("host", "localhost")
    port = params.get("port")
    hostport = f"{host}:{port}" if port else str(host)
    return f"postgresql://{auth}{hostport}/{dbname}"


def _create_database(server_url: str, name: str, template: str = "template0") -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )


def _drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A fresh, empty database for this test only (dropped afterwards)."""
    name = f"rq_test_{uuid.uuid4().hex[:12]}"
    _create_database(server_url, name)
    try:
        yield _uri_with_db(server_url, name)
    finally:
        _drop_database(server_url, name)


@pytest.fixture(scope="session")
def _template_db(server_url: str) -> Iterator[str]:
    from river.migrate import Migrator

    name = f"{TEMPLATE_DB}_{os.getpid()}"
    _drop_database(server_url, name)
    _create_database(server_url, name)
    with psycopg.connect(_url_with_db(server_url, name), autocommit=True) as conn:
        Migrator(conn).migrate_up()
    try:
        yield name
    finally:
        _drop_database(server_url, name)


@pytest.fixture
def db_url(server_url: str, _template_db: str) -> Iterator[str]:
    """A fresh database migrated to the latest version, for this test only."""
    name = f"rq_test_{uuid.uuid4().hex[:12]}"
    _create_database(server_url, name, template=_template_db)
    try:
        yield _uri_with_db(server_url, name)
    finally:
        _drop_database(server_url, name)


@pytest.fixture(scope="session")
def shared_db_url(server_url: str, _template_db: str) -> Iterator[str]:
    """One migrated database for the whole session (per xdist worker): only for tests that
    leave nothing behind, through ``tx`` / ``atx``."""
    name = f"rq_shared_{uuid.uuid4().hex[:12]}"
    _create_database(server_url, name, template=_template_db)
    try:
        yield _uri_with_db(server_url, name)
    finally:
        _drop_database(server_url, name)


@pytest.fixture
def tx(shared_db_url: str) -> Iterator[psycopg.Connection]:
    """A connection inside a transaction that is rolled back after the test: for storage-only
    tests (what an insert or an admin call writes), with no database of their own to create.
    Use the client's ``*_tx`` methods with it and read back on it."""
    with psycopg.connect(shared_db_url) as c:
        try:
            yield c
        finally:
            c.rollback()


@pytest.fixture
async def atx(shared_db_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """``tx`` for async tests."""
    async with await psycopg.AsyncConnection.connect(shared_db_url) as c:
        try:
            yield c
        finally:
            await c.rollback()


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to ``db_url``."""
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture(autouse=True)
def _loop_watch_for_real_blocks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients' loop watch warns when their event loop ran a second late: on a busy CI
    machine a stall of the whole process does that too, and tests that assert "no warning from
    river" failed by chance. Tests see it only for blocks of 30 s or more; the loop watch's own
    test sets the product's threshold back."""
    import river._runtime

    monkeypatch.setattr(river._runtime, "LOOP_BLOCKED", 30.0)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread of its own running (pools, workers, notifiers)."""
    before = set(threading.enumerate())
    yield
    deadline_threads = [
        t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
    ]
    for t in deadline_threads:
        t.join(timeout=5)
    leaked = [t.name for t in deadline_threads if t.is_alive()]
    assert not leaked, f"threads left running after the test: {leaked}"


@pytest.fixture
def otel() -> Iterator[tuple[Any, Any]]:
    """OpenTelemetry SDK providers with in-memory exporters for one test: (span exporter,
    metric reader). Set as the API's globals (which ``set_*_provider`` allows only once per
    process), then the previous ones are put back."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    saved = (trace._TRACER_PROVIDER, metrics._internal._METER_PROVIDER)
    trace._TRACER_PROVIDER = tracer_provider
    metrics._internal._METER_PROVIDER = meter_provider
    try:
        yield exporter, reader
    finally:
        trace._TRACER_PROVIDER, metrics._internal._METER_PROVIDER = saved
        tracer_provider.shutdown()
        meter_provider.shutdown()
