"""Running ``river worker`` in a real subprocess from a test: output read by a thread into a list
of lines that tests wait on (with deadlines), signals, exit status, database reads."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

import river
from river import dev

APPS_DIR = Path(__file__).resolve().parent
TESTS_DIR = APPS_DIR.parent


class WorkerProcess:
    """``python -m river.worker ARGS`` with stdout+stderr captured line by line."""

    def __init__(self, args: Sequence[str], env: dict[str, str], cwd: str | Path) -> None:
        self.args = list(args)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "river.worker", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="worker-output", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def matches(self, pattern: str) -> list[re.Match[str]]:
        regex = re.compile(pattern)
        with self._cond:
            return [m for line in self.lines if (m := regex.search(line))]

    def wait_for(self, pattern: str, timeout: float = 20.0, count: int = 1) -> re.Match[str]:
        """Wait until ``count`` output lines match ``pattern``; return the last match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for line in self.lines if (m := regex.search(line))]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._thread.is_alive()):
                    raise AssertionError(
                        f"no {count} line(s) matching {pattern!r} within {timeout}s "
                        f"(exit status {self.proc.poll()}); output:\n" + "\n".join(self.lines)
                    )
                self._cond.wait(min(left, 0.1))

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker still running after {timeout}s; output:\n{self.output()}"
            ) from None
        self._thread.join(5)
        return status

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def running_worker(
    args: Sequence[str], env: dict[str, str], cwd: str | Path = TESTS_DIR
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(args, env, cwd)
    try:
        yield worker
    finally:
        worker.close()


def worker_env(db_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1", **extra}
    for name in (
        "RIVER_WORKER_SUPERVISOR_PID",
        "RIVER_WORKER_PROCESS",
        "RIVER_WORKER_STATUS_FD",
        "RIVER_WORKER_DATABASE_URL",
    ):
        env.pop(name, None)
    return env


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, message: str | Callable[[], str] = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s: {text}")
        time.sleep(0.05)


def query(db_url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def executions(db_url: str) -> list[tuple[int, str, int, str, str]]:
    """``(job_id, queue, attempt, event, note)`` rows of worker_exec, in order."""
    return [
        (r[0], r[1], r[2], r[3], r[4])
        for r in query(
            db_url, "SELECT job_id, queue, attempt, event, note FROM worker_exec ORDER BY id"
        )
    ]


def job_state(db_url: str, job_id: int) -> tuple[str, int]:
    (row,) = query(db_url, "SELECT state::text, attempt FROM river_job WHERE id = %s", [job_id])
    return row[0], row[1]


def insert(db_url: str, *jobs: tuple[river.JobArgs, str]) -> list[int]:
    """Insert ``(args, queue)`` pairs; return the job ids."""
    with river.Client(db_url) as client:
        return [client.insert(args, river.InsertOpts(queue=queue)).job.id for args, queue in jobs]


def free_port(span: int = 1) -> int:
    """A port P such that P..P+span-1 are free on 127.0.0.1 right now, below the kernel's
    ephemeral range: a port of that range (what binding to port 0 gives) can be taken by an
    outgoing connection of either xdist worker before the process under test binds it."""
    low = dev._ephemeral_low()
    for _ in range(200):
        port = random.randrange(15_000, max(low, 20_000) - span)
        try:
            for offset in range(span):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port range")


def http_get(port: int, path: str, timeout: float = 3.0) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:port/path; (0, error) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        body = exc.read().decode()
        exc.close()
        return exc.code, body
    except OSError as exc:
        return 0, str(exc)


#: What ``river worker`` does to logging before the app is imported: the CLI's setup, then the
#: worker's (``setup_logging`` with the settings named ``settings``); the code of
#: :func:`run_with_worker_logging` runs after it.
_WORKER_LOGGING_PRELUDE = (
    "import argparse, logging\n"
    "from river import cli\n"
    "from river.worker import _logs\n"
    "cli._configure_logging(argparse.Namespace(debug=False, verbose=False))\n"
    "level = logging.getLogger('river').level\n"
    "_logs.setup_logging({settings}, _logs.command_handlers(), level)\n"
)


def run_with_worker_logging(
    code: str, settings: str = "_logs.LogSettings()"
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter whose logging ``river worker`` set up (``settings``:
    a ``LogSettings`` expression); its stderr is what the worker would print."""
    return run_python(_WORKER_LOGGING_PRELUDE.format(settings=settings) + code)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (from tests/, 30 s at most); the caller asserts."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=TESTS_DIR
    )
