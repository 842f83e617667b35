"""What tests/test_django*.py share: the test project set up in the test process, pointed at
each test's own database, and ``manage.py`` run in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from worker_apps.harness import WorkerProcess

PROJECT = Path(__file__).resolve().parent
SETTINGS = "djproject.settings"
if str(PROJECT) not in sys.path:  # the project's modules (notes.args needs no Django)
    sys.path.insert(0, str(PROJECT))


def setup_django() -> None:
    """Set the test project up in this process (once; Django's settings are global)."""
    import django
    from django.apps import apps

    if not apps.ready:
        os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
        django.setup()


def point_at(url: str) -> None:
    """Make Django's ``default`` database the one at ``url`` (every connection is closed)."""
    from django.db import connections

    connections.close_all()
    params = conninfo_to_dict(url)
    # The wrappers keep a reference to this dict: they reconnect with the new values.
    connections.settings["default"].update(
        NAME=params.get("dbname", ""),
        USER=params.get("user", ""),
        PASSWORD=params.get("password", ""),
        HOST=params.get("host", ""),
        PORT=params.get("port", ""),
    )


@contextmanager
def django_on(db_url: str) -> Iterator[str]:
    """The test project set up in this process, on ``db_url``, migrated with ``manage.py
    migrate``'s code; every connection closed afterwards."""
    setup_django()
    from django.core.management import call_command
    from django.db import connections

    point_at(db_url)
    call_command("migrate", verbosity=0)
    # Content types are cached per process, by id: each test has a database of its own.
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()
    try:
        yield db_url
    finally:
        connections.close_all()


def project_env(db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``manage.py`` subprocess on ``db_url``."""
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1", **extra}
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    for name in ("RIVER_WORKER_SUPERVISOR_PID", "RIVER_WORKER_PROCESS", "RIVER_DJANGO_APP"):
        env.pop(name, None)
    return env


def manage(
    args: Sequence[str], db_url: str, *, check: bool = True, **extra: str
) -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS`` (warnings are errors, as in the test process)."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "manage.py", *args],
        cwd=PROJECT,
        env=project_env(db_url, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"manage.py {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


class ManageProcess(WorkerProcess):
    """``python manage.py ARGS`` running, its output read line by line (see WorkerProcess)."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        self.args = list(args)
        self.proc = subprocess.Popen(
            [sys.executable, "-W", "error", "manage.py", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=PROJECT,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="manage-output", daemon=True)
        self._thread.start()


@contextmanager
def running_manage(args: Sequence[str], env: dict[str, str]) -> Iterator[ManageProcess]:
    process = ManageProcess(args, env)
    try:
        yield process
    finally:
        process.close()
