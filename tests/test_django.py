"""``river.contrib.django``: migrations through ``manage.py migrate`` (subprocesses), and the
``*_tx`` calls on Django's connection (in this process, on the test project of
tests/django_project pointed at each test's own database).

The workers (``manage.py river_worker``) are tested in test_django_worker.py, the
``django.tasks`` backend in test_django_tasks.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django_project.harness import django_on, manage

import river
from river.migrate import Migrator, load_migrations

LATEST = [m.version for m in load_migrations()]


def _count(db_url: str, sql: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _versions(db_url: str, schema: str | None = None) -> list[int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return Migrator(conn, schema=schema).applied_versions()


# --------------------------------------------------------------------------------------------
# manage.py migrate and river's migrator
# --------------------------------------------------------------------------------------------


def test_manage_py_migrate_brings_the_schema_to_the_latest_version(empty_db_url: str) -> None:
    out = manage(["migrate"], empty_db_url).stdout
    assert "Applying river.0001_create_river_migration... OK" in out
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert Migrator(conn).validate().ok  # what `river validate` checks
    assert _versions(empty_db_url) == LATEST
    again = manage(["migrate"], empty_db_url).stdout
    assert "No migrations to apply." in again
    assert _versions(empty_db_url) == LATEST


def test_manage_py_migrate_after_river_migrate_up(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        Migrator(conn).migrate_up()
        before = Migrator(conn).applied()
    out = manage(["migrate"], empty_db_url).stdout
    assert "Applying river.0007" in out  # recorded by Django, nothing re-applied
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert Migrator(conn).applied() == before
    assert _count(empty_db_url, "SELECT count(*) FROM notes_note") == 0  # the app's own table


def test_migrating_river_back_maps_to_migrate_down(empty_db_url: str) -> None:
    manage(["migrate"], empty_db_url)
    manage(["migrate", "river", "0004"], empty_db_url)
    assert _versions(empty_db_url) == [1, 2, 3, 4]
    # river migrate-up behind Django's back, then Django's 0005-0007 find nothing to do.
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        Migrator(conn).migrate_up()
    manage(["migrate"], empty_db_url)
    assert _versions(empty_db_url) == LATEST
    manage(["migrate", "river", "zero"], empty_db_url)
    assert _count(empty_db_url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'river%'") == 0
    manage(["migrate"], empty_db_url)
    assert _versions(empty_db_url) == LATEST


def test_manage_py_migrate_in_the_configured_schema(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA jobs")
    manage(["migrate"], empty_db_url, RIVER_SCHEMA="jobs")
    assert _versions(empty_db_url, "jobs") == LATEST
    assert _count(empty_db_url, "SELECT count(*) FROM pg_tables WHERE tablename = 'river_job'") == 1
    assert _count(empty_db_url, "SELECT count(*) FROM jobs.river_job") == 0


def test_manage_py_migrate_creates_a_missing_schema(empty_db_url: str) -> None:
    manage(["migrate"], empty_db_url, RIVER_SCHEMA="new_place")
    assert _versions(empty_db_url, "new_place") == LATEST
    out = manage(["sqlmigrate", "river", "0001"], empty_db_url, RIVER_SCHEMA="new_place").stdout
    assert 'CREATE SCHEMA IF NOT EXISTS "new_place"' in out


def test_manage_py_test_gets_rivers_tables_in_the_configured_schema(
    empty_db_url: str, server_url: str
) -> None:
    # Django's test runner creates a fresh test_<NAME> database and migrates it: River's
    # schema is created there (tests/django_project/notes/tests.py inserts a job).
    from psycopg.conninfo import conninfo_to_dict

    test_db = f"test_{conninfo_to_dict(empty_db_url)['dbname']}"
    try:
        result = manage(
            ["test", "notes", "--noinput"], empty_db_url, check=False, RIVER_SCHEMA="myriver"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Ran 1 test" in result.stderr
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(test_db)
                )
            )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RIVER_SCHEMA": "bad-name"}, "RIVER['SCHEMA'] 'bad-name' must start"),
        ({"RIVER_DATABASE": "nope"}, "RIVER['DATABASE'] must be an alias"),
    ],
)
def test_manage_py_check_reports_a_bad_river_setting(
    empty_db_url: str, env: dict[str, str], message: str
) -> None:
    # Not a crash of every command as Django starts (the models read RIVER["SCHEMA"]).
    result = manage(["check"], empty_db_url, check=False, **env)
    assert result.returncode == 1
    assert "river.E001" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_manage_py_check_database_reports_rivers_schema(empty_db_url: str) -> None:
    check = ["check", "--database", "default", "--fail-level", "WARNING"]
    # Pending migrations are Django's to report (and migrate runs these checks first).
    assert "river." not in manage(check, empty_db_url, RIVER_SCHEMA="jobs").stderr
    assert manage(["migrate", "--check"], empty_db_url, check=False).returncode == 1
    # With MIGRATE = False, Django's migrate does not apply them: reported.
    unmanaged = manage(check, empty_db_url, check=False, RIVER_MIGRATE="0").stderr
    assert "river.W002" in unmanaged
    assert "bring River's schema up to date with river migrate-up" in unmanaged
    manage(["migrate"], empty_db_url, RIVER_SCHEMA="jobs")
    assert "river." not in manage(check, empty_db_url, RIVER_SCHEMA="jobs").stderr
    # Behind Django's back, which records River's migrations as applied: a dropped schema,
    # versions reverted. Database checks run with --database only, as Django's own.
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        Migrator(conn, schema="jobs").migrate_down(target_version=4)
    assert "river." not in manage(["check"], empty_db_url, RIVER_SCHEMA="jobs").stderr
    reverted = manage(check, empty_db_url, check=False, RIVER_SCHEMA="jobs")
    assert reverted.returncode == 1
    assert "river.W002" in reverted.stderr
    assert (
        "River's migrations are not all applied to database 'default' in schema 'jobs': "
        "Unapplied migrations: [5 6 7]"
    ) in reverted.stderr
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA jobs CASCADE")
    dropped = manage(check, empty_db_url, check=False, RIVER_SCHEMA="jobs").stderr
    assert "river.W001" in dropped
    assert "RIVER['SCHEMA'] 'jobs' does not exist in database 'default'" in dropped


def test_sqlmigrate_names_river_migrate_get(empty_db_url: str) -> None:
    out = manage(["sqlmigrate", "river", "0004"], empty_db_url).stdout
    assert "River schema version 4 (pending and more)" in out
    assert "river migrate-get --version 4 --up" in out


def test_one_django_migration_per_river_version() -> None:
    directory = Path(river.__file__).parent / "contrib" / "django" / "migrations"
    names = sorted(p.stem for p in directory.glob("0*.py"))
    expected = [f"{m.version:04d}_{m.name.replace(' ', '_')}" for m in load_migrations()]
    assert names == expected
    for path in directory.glob("0*.py"):
        version = int(path.stem[:4])
        assert f"RiverSchemaVersion({version})" in path.read_text(), path.name


# --------------------------------------------------------------------------------------------
# *_tx calls on Django's connection (in this process)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def django_db(db_url: str) -> Iterator[str]:
    """The test project on this test's database (migrated by manage.py migrate's code)."""
    with django_on(db_url):
        yield db_url


def _note_and_job(db_url: str) -> tuple[int, int]:
    return (
        _count(db_url, "SELECT count(*) FROM notes_note"),
        _count(db_url, "SELECT count(*) FROM river_job WHERE kind = 'create_note'"),
    )


def test_insert_tx_inside_atomic_commit_keeps_row_and_job(django_db: str) -> None:
    from django.db import connection, transaction
    from notes.jobs import CreateNote
    from notes.models import Note

    client = river.Client()
    with transaction.atomic():
        Note.objects.create(text="hello")
        result = client.insert_tx(connection, CreateNote(text="hello"))
        assert _note_and_job(django_db) == (0, 0)  # not committed yet
    assert _note_and_job(django_db) == (1, 1)
    assert result.job.kind == "create_note"
    assert result.job.args == {"text": "hello"}


def test_insert_tx_inside_atomic_rollback_keeps_neither(django_db: str) -> None:
    from django.db import connection, transaction
    from notes.jobs import CreateNote
    from notes.models import Note

    client = river.Client()

    def view() -> None:
        with transaction.atomic():
            Note.objects.create(text="hello")
            client.insert_tx(connection, CreateNote(text="hello"))
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        view()
    assert _note_and_job(django_db) == (0, 0)


def test_insert_tx_in_a_savepoint_rolled_back(django_db: str) -> None:
    from django.db import connection, transaction
    from notes.jobs import CreateNote

    client = river.Client()
    with transaction.atomic():
        client.insert_tx(connection, CreateNote(text="kept"))
        with transaction.atomic():
            client.insert_tx(connection, CreateNote(text="dropped"))
            transaction.set_rollback(True)  # the savepoint only
    texts = _count(django_db, "SELECT count(*) FROM river_job WHERE args->>'text' = 'kept'")
    assert (texts, _note_and_job(django_db)[1]) == (1, 1)


def test_insert_tx_outside_atomic_commits_at_once(django_db: str) -> None:
    from django.db import connection
    from notes.jobs import CreateNote

    assert connection.get_autocommit()
    river.Client().insert_tx(connection, CreateNote(text="now"))
    assert _note_and_job(django_db) == (0, 1)  # visible from another connection


def test_insert_tx_before_any_query(django_db: str) -> None:
    from django.db import connection, connections, transaction
    from notes.jobs import CreateNote

    connections.close_all()
    assert connection.connection is None  # what `connection.connection` gives before a query
    river.Client().insert_tx(connection, CreateNote(text="first"))
    assert _note_and_job(django_db) == (0, 1)
    connections.close_all()
    with transaction.atomic():
        river.Client().insert_tx(connections["default"], CreateNote(text="second"))
    assert _note_and_job(django_db) == (0, 2)


def test_insert_many_tx_and_copy_follow_the_transaction(django_db: str) -> None:
    from django.db import connection, transaction
    from notes.jobs import CreateNote

    client = river.Client()
    with transaction.atomic():
        client.insert_many_tx(connection, [CreateNote(text="a"), CreateNote(text="b")])
        assert client.insert_many_fast_tx(connection, [CreateNote(text="c")]) == 1
        transaction.set_rollback(True)
    assert _note_and_job(django_db) == (0, 0)
    with transaction.atomic():
        results = client.insert_many_tx(connection, [CreateNote(text="a"), CreateNote(text="b")])
        assert client.insert_many_fast_tx(connection, [CreateNote(text="c")]) == 1
    assert [r.job.args["text"] for r in results] == ["a", "b"]
    assert _note_and_job(django_db) == (0, 3)


def test_admin_tx_calls_on_djangos_connection(django_db: str) -> None:
    from django.db import connection, transaction
    from notes.jobs import CreateNote

    client = river.Client()
    job = client.insert_tx(connection, CreateNote(text="x")).job
    with transaction.atomic():
        assert client.job_get_tx(connection, job.id).id == job.id
        assert client.job_cancel_tx(connection, job.id).state == river.JobState.CANCELLED
        listed = client.job_list_tx(connection, river.JobListParams(kinds=["create_note"]))
        assert [j.id for j in listed.jobs] == [job.id]
        transaction.set_rollback(True)
    assert client.job_get_tx(connection, job.id).state == river.JobState.AVAILABLE


def test_use_tz_false_and_djangos_adapters(django_db: str) -> None:
    # Django's psycopg adapters load jsonb as text and, without USE_TZ, timestamps naive;
    # river's statements read them as psycopg does by default all the same.
    from django.db import connection, connections
    from django.test import override_settings
    from notes.jobs import CreateNote

    with override_settings(USE_TZ=False, TIME_ZONE="America/Chicago"):
        connections.close_all()
        client = river.Client()
        job = client.insert_tx(
            connection, CreateNote(text="tz"), river.InsertOpts(metadata={"a": [1]})
        ).job
        again = client.job_get_tx(connection, job.id)
        with connection.cursor() as cur:  # Django's own cursor still gets Django's loaders
            cur.execute("SELECT created_at, metadata FROM river_job WHERE id = %s", [job.id])
            created, metadata = cur.fetchone()
    connections.close_all()
    assert job.created_at.tzinfo is not None
    assert again.created_at == job.created_at
    assert again.metadata == {"a": [1]}
    assert created.tzinfo is None
    assert isinstance(metadata, str)


def test_broken_transaction_is_refused_as_django_does(django_db: str) -> None:
    from django.db import connection, transaction
    from django.db.transaction import TransactionManagementError
    from notes.jobs import CreateNote

    with transaction.atomic():
        transaction.set_rollback(True)
        with pytest.raises(TransactionManagementError):
            river.Client().insert_tx(connection, CreateNote(text="x"))


def test_get_client_runs_on_djangos_connection(django_db: str) -> None:
    from django.db import transaction
    from notes.jobs import CreateNote

    from river.contrib.django import DjangoClient, get_client

    client = get_client()
    assert isinstance(client, DjangoClient)
    assert get_client() is client
    assert client.using == "default"
    with transaction.atomic():
        client.insert(CreateNote(text="a"))
        client.insert_many_fast([CreateNote(text="b"), CreateNote(text="c")])  # a savepoint
        transaction.set_rollback(True)
    assert _note_and_job(django_db) == (0, 0)
    client.insert(CreateNote(text="autocommit"))
    assert _note_and_job(django_db) == (0, 1)
    assert client.insert_many_fast([CreateNote(text="b"), CreateNote(text="c")]) == 2
    assert _note_and_job(django_db) == (0, 3)
    assert [q.name for q in client.queue_list()] == []  # admin calls too


def _terminate(db_url: str, pid: int) -> None:
    """Terminate a backend and wait until it is gone."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the backend did not exit"
            time.sleep(0.01)


def test_a_dropped_persistent_connection_recovers_like_djangos_own(django_db: str) -> None:
    """With CONN_MAX_AGE and CONN_HEALTH_CHECKS, a connection the server dropped (a restart, a
    failover, a pooler's idle kill) is replaced at the next request, as for the ORM: river's
    statements go through Django's health check, and a failure marks the connection for
    close_old_connections()."""
    from django.db import close_old_connections, connection
    from notes.jobs import CreateNote

    from river.contrib.django import get_client

    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = 600
    connection.settings_dict["CONN_HEALTH_CHECKS"] = True
    try:
        close_old_connections()
        get_client().insert(CreateNote(text="before"))
        _terminate(django_db, connection.connection.info.backend_pid)
        # The next request: the health check replaces the dead connection before river's
        # statement runs on it.
        close_old_connections()
        get_client().insert(CreateNote(text="after a restart"))
        # Without health checks a statement fails once, and the connection is discarded at
        # the end of that request, as Django does after an error.
        connection.settings_dict["CONN_HEALTH_CHECKS"] = False
        connection.close()  # read at connect time
        get_client().insert(CreateNote(text="on a connection without health checks"))
        _terminate(django_db, connection.connection.info.backend_pid)
        close_old_connections()
        with pytest.raises(psycopg.OperationalError):
            get_client().insert(CreateNote(text="lost"))
        assert connection.errors_occurred
        close_old_connections()  # request finished: the broken connection is closed
        get_client().insert(CreateNote(text="recovered"))
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = 0
        connection.settings_dict["CONN_HEALTH_CHECKS"] = False
        connection.close()
    assert _note_and_job(django_db)[1] == 4


def test_a_connection_kept_by_a_job_is_closed_when_its_thread_ends(
    django_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a positive CONN_MAX_AGE a job's Django connection stays open in its worker thread
    for the next job; when that thread ends (here with the private event loop of work_job, in
    the worker with the client's), the connection is closed there instead of being collected
    open (a ResourceWarning from psycopg, unraisable in a thread's teardown)."""
    import sys

    from django.db import connection
    from notes.args import CreateNote

    from river.contrib.django._app import worker_config
    from river.testing import work_job

    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(repr(u.exc_value)))
    connection.settings_dict["CONN_MAX_AGE"] = 600
    try:
        registered = worker_config().workers.get("create_note")  # wrapped for the hygiene
        assert registered is not None
        with psycopg.connect(django_db, autocommit=True) as conn:
            result = work_job(conn, registered.worker, CreateNote(text="kept"))
            assert result.state == river.JobState.COMPLETED
            pid = conn.execute("SELECT backend_pid FROM notes_note").fetchone()
            assert pid is not None
            deadline = time.monotonic() + 10
            sql = "SELECT 1 FROM pg_stat_activity WHERE pid = %s"
            while conn.execute(sql, pid).fetchone():
                assert time.monotonic() < deadline, "the worker thread's connection is open"
                time.sleep(0.01)
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = 0
    assert unraisable == []


def test_the_testing_kit_takes_djangos_connection(django_db: str) -> None:
    """require_inserted and work_job on Django's own connection, inside a test's transaction
    (as a TestCase runs): they called ``cursor(row_factory=...)`` on it, which Django's
    cursor() does not take (TypeError), though Client.*_tx accepts that connection."""
    from django.db import connection, transaction
    from notes.args import CreateNoteAsync
    from notes.jobs import CreateNote

    from river.testing import RequireInsertedOpts, require_inserted, work_job

    class Done(river.Worker[CreateNote]):
        def work(self, job: river.Job[CreateNote]) -> None:
            pass

    client = river.Client()
    with transaction.atomic():
        client.insert_tx(connection, CreateNote(text="kit"))
        job = require_inserted(connection, CreateNote, RequireInsertedOpts(queue="default"))
        assert job.args.text == "kit"
        result = work_job(connection, Done(), CreateNote(text="worked"))
        assert result.state == river.JobState.COMPLETED
        with pytest.raises(AssertionError):
            require_inserted(connection, CreateNoteAsync)
        transaction.set_rollback(True)
    assert _note_and_job(django_db) == (0, 0)


def test_get_client_uses_the_apps_workers(django_db: str) -> None:
    # RIVER["APP"] registers create_note and create_note_async (and TASKS adds django_task):
    # like the worker, the client refuses a kind nobody works.
    from typing import ClassVar

    from river.contrib.django import get_client

    class Unknown(river.JobArgs):
        kind: ClassVar[str] = "nobody_works_this"

    with pytest.raises(river.UnknownJobKindError):
        get_client().insert(Unknown())


def test_sqlite_connection_is_refused(django_db: str) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections
    from notes.jobs import CreateNote

    with pytest.raises(ImproperlyConfigured, match=r"PostgreSQL backend with psycopg 3.*sqlite"):
        river.Client().insert_tx(connections["sqlite"], CreateNote(text="x"))


@pytest.mark.parametrize(
    ("river_setting", "check_id", "message"),
    [
        ({"DATABASE": "sqlite"}, "river.E002", "database 'sqlite' uses django.db.backends.sqlite3"),
        ({"DATABASE": "nope"}, "river.E001", "RIVER['DATABASE'] must be an alias"),
        ({"SCHEMA": "bad-name"}, "river.E001", "RIVER['SCHEMA'] 'bad-name' must start"),
        ({"QUEUES": []}, "river.E001", "unknown key(s) 'QUEUES'"),
        ({"APP": "no_colon"}, "river.E001", "RIVER['APP'] must be 'module:attribute'"),
        ({"ADMIN": "no"}, "river.E001", "RIVER['ADMIN'] must be True or False"),
        ({"APP": "nowhere.jobs:workers"}, "river.E004", "'nowhere.jobs:workers' cannot be"),
        ({"APP": "notes.jobs:nothing"}, "river.E004", "'notes.jobs' has no attribute"),
    ],
)
def test_system_checks_name_the_problem(
    django_db: str, river_setting: dict[str, object], check_id: str, message: str
) -> None:
    from django.core.checks import run_checks
    from django.test import override_settings

    with override_settings(RIVER=river_setting):
        # Once: the tasks backend's check does not repeat river's own.
        (error,) = [e for e in run_checks() if e.id.startswith("river.")]
        assert error.id == check_id
        assert message in error.msg
    assert [e for e in run_checks() if e.id.startswith("river.")] == []


@pytest.mark.anyio
async def test_async_client_refuses_a_django_connection(django_db: str) -> None:
    from django.db import connection
    from notes.jobs import CreateNote

    with pytest.raises(river.RiverError, match="a Django connection is synchronous"):
        await river.AsyncClient().insert_tx(connection, CreateNote(text="x"))  # type: ignore[arg-type]


def test_a_failed_copy_marks_djangos_connection(django_db: str) -> None:
    # As a failed statement does (see the dropped-connection test above): Django's end of
    # request then checks the connection.
    from django.db import connection
    from notes.jobs import CreateNote

    with psycopg.connect(django_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused by a trigger'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON river_job"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    connection.ensure_connection()
    assert not connection.errors_occurred
    try:
        with pytest.raises(psycopg.errors.RaiseException, match="refused by a trigger"):
            river.Client().insert_many_fast_tx(connection, [CreateNote(text="x")])
        assert connection.errors_occurred
    finally:
        connection.close()
