"""Start-up errors: an unreachable database fails fast with the driver's reason, and a schema
that is missing or behind says which version it found and what to run.

Everything is real: the test Postgres, a closed local port, a listening socket that never
answers (a host that does not respond), ``river worker`` in a subprocess. Each case asserts the
error and that it came within the configured bound (``connect_timeout`` 2 s here, asserted
against a generous 8 s: a behavioural bound, not a benchmark).
"""

from __future__ import annotations

import re
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg import conninfo, sql
from worker_apps.harness import (
    free_port,
    run_with_worker_logging,
    running_worker,
    worker_env,
)

import river
from river.migrate import Migrator

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 2.0
BOUND = 8.0
APP = "worker_apps.basic:make_config"


class Ping(river.JobArgs):
    kind: ClassVar[str] = "startup_ping"


class PingWorker(river.Worker[Ping]):
    async def work(self, job: river.Job[Ping]) -> None:
        pass


def _workers() -> river.Workers:
    workers = river.Workers()
    workers.add(PingWorker())
    return workers


def _config(**overrides: Any) -> river.Config:
    settings: dict[str, Any] = {
        "queues": {"default": river.QueueConfig()},
        "workers": _workers(),
        "connect_timeout": TIMEOUT,
    }
    settings.update(overrides)
    return river.Config(**settings)


def _with(url: str, **changes: str) -> str:
    params = conninfo.conninfo_to_dict(url)
    params.update(changes)
    return conninfo.make_conninfo("", **params)


@pytest.fixture
def silent_socket() -> Iterator[socket.socket]:
    """A listening socket that takes TCP connections and never answers (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s


@pytest.fixture
def silent_port(silent_socket: socket.socket) -> int:
    return int(silent_socket.getsockname()[1])


def _unreachable(server_url: str, case: str, silent_port: int) -> tuple[str, str]:
    """(URL, expected fragment of the reason) for each way of not reaching the database."""
    if case == "unknown host":
        return _with(server_url, host="nope.invalid"), "failed to resolve host 'nope.invalid'"
    if case == "refused port":
        return _with(server_url, host="127.0.0.1", port=str(free_port())), "Connection refused"
    if case == "unknown role":
        return _with(server_url, user="river_no_such_role"), 'role "river_no_such_role"'
    if case == "missing database":
        return _with(server_url, dbname="river_no_such_db"), 'database "river_no_such_db"'
    assert case == "no answer"
    return _with(server_url, host="127.0.0.1", port=str(silent_port)), ""


CASES = ["unknown host", "refused port", "unknown role", "missing database", "no answer"]


def _timed(call: Callable[[], Any]) -> tuple[BaseException, float]:
    began = time.monotonic()
    with pytest.raises(river.RiverError) as info:
        call()
    return info.value, time.monotonic() - began


def _check_unavailable(error: BaseException, expected: str, elapsed: float, case: str) -> None:
    assert isinstance(error, river.DatabaseUnavailableError), repr(error)
    text = str(error)
    assert text.startswith("cannot connect to the database: "), text
    assert "\n" not in text
    assert expected in text, text
    if case == "no answer":
        assert elapsed >= TIMEOUT - 0.5, elapsed  # it did wait for the bound...
    assert elapsed < BOUND, f"{case}: {elapsed:.1f}s"  # ...and not much longer


# --------------------------------------------------------------------------------------------
# Unreachable database
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES)
async def test_async_start_fails_fast_with_the_reason(
    server_url: str, silent_port: int, case: str
) -> None:
    url, expected = _unreachable(server_url, case, silent_port)
    client = river.AsyncClient(url, _config())
    began = time.monotonic()
    try:
        with pytest.raises(river.DatabaseUnavailableError) as info:
            await client.start()
        elapsed = time.monotonic() - began
    finally:
        await client.close()
    _check_unavailable(info.value, expected or "no answer within 2s", elapsed, case)
    assert not client.running


@pytest.mark.anyio
async def test_async_insert_without_start_fails_fast(server_url: str, silent_port: int) -> None:
    url, expected = _unreachable(server_url, "refused port", silent_port)
    client = river.AsyncClient(url, river.Config(connect_timeout=TIMEOUT))
    try:
        began = time.monotonic()
        with pytest.raises(river.DatabaseUnavailableError) as info:
            await client.insert(Ping())
        _check_unavailable(info.value, expected, time.monotonic() - began, "refused port")
        with pytest.raises(river.DatabaseUnavailableError):
            await client.queue_list()
        with pytest.raises(river.DatabaseUnavailableError):  # async with opens the pool
            async with client:
                pass
    finally:
        await client.close()


@pytest.mark.parametrize("case", CASES)
def test_sync_first_call_fails_fast_with_the_reason(
    server_url: str, silent_port: int, case: str
) -> None:
    url, expected = _unreachable(server_url, case, silent_port)
    with river.Client(url, river.Config(connect_timeout=TIMEOUT)) as client:
        error, elapsed = _timed(lambda: client.insert(Ping()))
    _check_unavailable(error, expected or "timeout expired", elapsed, case)


def test_bad_password(server_url: str) -> None:
    bad = _with(server_url, password="river-wrong-password")
    try:
        psycopg.connect(bad).close()
    except psycopg.OperationalError:
        pass
    else:
        pytest.skip("the test server accepts any password (trust authentication)")
    with river.Client(bad, river.Config(connect_timeout=TIMEOUT)) as client:
        error, elapsed = _timed(lambda: client.queue_list())
    _check_unavailable(error, "password", elapsed, "bad password")


def test_sync_client_tries_again_after_a_failure(server_url: str) -> None:
    name = f"rq_test_{uuid.uuid4().hex[:12]}"
    url = _with(server_url, dbname=name)
    with river.Client(url, river.Config(connect_timeout=TIMEOUT)) as client:
        with pytest.raises(river.DatabaseUnavailableError, match="does not exist"):
            client.queue_list()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                Migrator(conn).migrate_up()
            assert client.queue_list() == []
        finally:
            client.close()
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_connect_timeout_is_validated() -> None:
    with pytest.raises(river.InvalidConfigError, match="connect_timeout"):
        river.Config(connect_timeout=0)
    assert river.Config().connect_timeout_seconds == 10.0


# --------------------------------------------------------------------------------------------
# Schema missing or behind
# --------------------------------------------------------------------------------------------


def _migrate(url: str, version: int, schema: str | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        if schema is not None:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        if version:
            Migrator(conn, schema=schema).migrate_up(target_version=version)


def _check_not_ready(error: BaseException, found: int | None, schema: str | None = None) -> None:
    assert isinstance(error, river.SchemaNotReadyError), repr(error)
    text = str(error)
    assert "\n" not in text
    assert f"found version {'none' if found is None else found}" in text, text
    assert "this library needs version 7" in text, text
    flag = f" --schema {schema}" if schema else ""
    assert text.endswith(f"run 'river migrate-up{flag}'"), text
    assert error.found_version == found
    assert error.required_version == 7


@pytest.mark.anyio
@pytest.mark.parametrize("version", [0, 5])
async def test_start_on_a_schema_not_migrated(empty_db_url: str, version: int) -> None:
    _migrate(empty_db_url, version)
    client = river.AsyncClient(empty_db_url, _config())
    try:
        with pytest.raises(river.SchemaNotReadyError) as info:
            await client.start()
    finally:
        await client.close()
    _check_not_ready(info.value, version or None)
    if not version:
        assert "(no river_migration table)" in str(info.value)


@pytest.mark.anyio
async def test_a_schema_from_search_path_obeys_the_schema_rules(empty_db_url: str) -> None:
    """The schema a client resolves through search_path (here set by the URL's options) is held
    to the 46-character rule of Config(schema=): <schema>.river_leadership must be a valid
    channel name, or the client could not notify on it."""
    long_name = "s" * 47
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {long_name}")
    url = f"{empty_db_url}?options=-csearch_path%3D{long_name}"
    client = river.AsyncClient(url, _config())
    try:
        with pytest.raises(river.ValidationError) as info:
            await client.start()
    finally:
        await client.close()
    assert info.value.field == "schema (the current schema of search_path)"
    assert "at most 46 characters (got 47)" in str(info.value)


@pytest.mark.anyio
async def test_start_names_the_configured_schema(empty_db_url: str) -> None:
    client = river.AsyncClient(empty_db_url, _config(schema="app"))
    try:
        with pytest.raises(river.SchemaNotReadyError) as info:
            await client.start()
        assert str(info.value) == (
            'River schema not ready: schema "app" does not exist; create it (CREATE SCHEMA app), '
            "then run 'river migrate-up --schema app'"
        )
        _migrate(empty_db_url, 3, schema="app")
        with pytest.raises(river.SchemaNotReadyError) as info:
            await client.start()
        _check_not_ready(info.value, 3, schema="app")
    finally:
        await client.close()


@pytest.mark.anyio
async def test_start_with_a_callers_pool_is_checked_too(empty_db_url: str) -> None:
    from psycopg_pool import AsyncConnectionPool

    async with AsyncConnectionPool(empty_db_url, min_size=1, open=False) as pool:
        client = river.AsyncClient(pool, _config())
        with pytest.raises(river.SchemaNotReadyError) as info:
            await client.start()
        _check_not_ready(info.value, None)
        async with pool.connection() as conn:  # no transaction left open on it
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.parametrize("version", [0, 3, 5])
def test_sync_insert_only_client_maps_the_error(empty_db_url: str, version: int) -> None:
    _migrate(empty_db_url, version)
    with river.Client(empty_db_url) as client:
        error, _ = _timed(lambda: client.insert(Ping()))
        _check_not_ready(error, version or None)
        assert isinstance(
            error.__cause__, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn
        )
        error, _ = _timed(lambda: client.job_list())
        _check_not_ready(error, version or None)
        error, _ = _timed(lambda: client.insert_many_fast([Ping()]))
        _check_not_ready(error, version or None)
        # The pool's connection was handed back clean: the next call works as usual.
        with pytest.raises(river.SchemaNotReadyError):
            client.insert(Ping())


def test_sync_insert_tx(empty_db_url: str) -> None:
    client = river.Client(config=river.Config())
    # Autocommit: the version is read on the caller's connection.
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        error, _ = _timed(lambda: client.insert_tx(conn, Ping()))
        _check_not_ready(error, None)
    # In the caller's transaction: never touched, so the error goes by the message alone.
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("SELECT 1")
        error, _ = _timed(lambda: client.insert_tx(conn, Ping()))
        assert isinstance(error, river.SchemaNotReadyError)
        assert str(error) == (
            'River schema not ready: relation "river_job" does not exist, this library needs '
            "version 7; run 'river migrate-up'"
        )
        assert error.found_version is None
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()


@pytest.mark.anyio
async def test_async_insert_only_client_maps_the_error(empty_db_url: str) -> None:
    _migrate(empty_db_url, 5)
    async with river.AsyncClient(empty_db_url) as client:
        with pytest.raises(river.SchemaNotReadyError) as info:
            await client.insert(Ping())
        _check_not_ready(info.value, 5)
        with pytest.raises(river.SchemaNotReadyError):
            await client.insert_many_fast([Ping()])
        assert await client.queue_list() == []  # river_queue exists at version 5


def test_other_undefined_table_errors_are_left_alone(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM not_river")
        from river._preflight import schema_error_sync

        exc = psycopg.errors.UndefinedTable('relation "not_river" does not exist')
        assert schema_error_sync(conn, None, exc, own=False) is None
    with psycopg.connect(db_url, autocommit=True) as conn:
        # Complete schema: whatever the table, it is not a migration problem.
        exc = psycopg.errors.UndefinedTable('relation "river_job" does not exist')
        assert schema_error_sync(conn, None, exc, own=False) is None


# --------------------------------------------------------------------------------------------
# river worker
# --------------------------------------------------------------------------------------------


def _run_worker(args: list[str], env: dict[str, str]) -> tuple[int, list[str], float]:
    began = time.monotonic()
    with running_worker(args, env) as worker:
        status = worker.wait_exit(timeout=30)
        lines = worker.output().splitlines()
    return status, lines, time.monotonic() - began


@pytest.mark.parametrize("case", ["unknown host", "refused port", "no answer"])
def test_worker_unreachable_database(server_url: str, silent_port: int, case: str) -> None:
    url, expected = _unreachable(server_url, case, silent_port)
    args = [APP, "--database-url", url, "--connect-timeout", "2s"]
    status, lines, elapsed = _run_worker(args, worker_env(server_url))
    assert status == 1, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: cannot connect to the database: "), lines
    assert (expected or "no answer within 2s") in lines[0]
    assert elapsed < BOUND + 3, f"{case}: {elapsed:.1f}s"  # + interpreter start-up


def test_worker_connect_timeout_from_the_file(
    server_url: str, silent_port: int, tmp_path: Any
) -> None:
    config = tmp_path / "river.toml"
    config.write_text(
        f"[database]\nurl = 'postgresql://postgres@127.0.0.1:{silent_port}/river'\n"
        "connect_timeout = '1s'\n"
    )
    status, lines, elapsed = _run_worker([APP, "--config", str(config)], worker_env(server_url))
    assert status == 1
    assert lines == ["Error: cannot connect to the database: no answer within 1s (connect_timeout)"]
    assert elapsed < BOUND + 3  # + interpreter start-up, as above


@pytest.mark.parametrize("version", [0, 5])
def test_worker_schema_not_ready(empty_db_url: str, version: int) -> None:
    _migrate(empty_db_url, version)
    status, lines, _ = _run_worker([APP], worker_env(empty_db_url))
    assert status == 1
    assert len(lines) == 1, lines
    found = "none" if not version else str(version)
    assert lines[0].startswith(f"Error: River schema not ready: found version {found}"), lines
    assert lines[0].endswith("run 'river migrate-up'"), lines


def test_worker_schema_not_ready_names_the_schema(empty_db_url: str) -> None:
    _migrate(empty_db_url, 0, schema="app")
    status, lines, _ = _run_worker([APP, "--schema", "app"], worker_env(empty_db_url))
    assert status == 1
    assert len(lines) == 1, lines
    assert lines[0].endswith("run 'river migrate-up --schema app'"), lines


def test_worker_sigterm_during_start_up_exits_at_once(
    server_url: str, silent_socket: socket.socket
) -> None:
    port = silent_socket.getsockname()[1]
    url = f"postgresql://postgres@127.0.0.1:{port}/river"
    args = [APP, "--database-url", url, "--connect-timeout", "60s"]
    silent_socket.settimeout(20)
    with running_worker(args, worker_env(server_url)) as worker:
        # The worker's connection arrives: it now waits for an answer that never comes.
        connection, _ = silent_socket.accept()
        with connection:
            assert worker.proc.poll() is None, worker.output()
            began = time.monotonic()
            worker.send(signal.SIGTERM)
            status = worker.wait_exit(timeout=10)
            elapsed = time.monotonic() - began
    assert status == 0, worker.output()
    assert elapsed < 3, f"{elapsed:.1f}s"
    assert "SIGTERM during start-up: stopping before the worker started" in worker.output()
    assert "Error" not in worker.output()


def test_worker_shows_psycopg_logger_names() -> None:
    # A psycopg.pool warning (e.g. a reconnect failing) printed through the worker's logging:
    # with its level and logger name, once.
    proc = run_with_worker_logging(
        "logging.getLogger('psycopg.pool').warning(\"error connecting in 'river-x': boom\")\n"
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
        r"WARNING psycopg\.pool: error connecting in 'river-x': boom",
        line,
    ), line
