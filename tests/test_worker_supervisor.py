"""``river worker --processes N`` and ``--reload``: a supervisor with child worker processes."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import pytest
from worker_apps.basic import EXEC_TABLE, Crash, Sleep
from worker_apps.harness import (
    free_port,
    http_get,
    insert,
    job_state,
    running_worker,
    wait_until,
    worker_env,
)

APP = "worker_apps.basic:workers"


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(EXEC_TABLE)
    return worker_env(db_url)


def test_processes_restart_a_crashed_child(db_url: str, env: dict[str, str]) -> None:
    port = free_port(span=3)
    args = [APP, "--processes", "2", "--health-addr", f"127.0.0.1:{port}", "--queue", "default=2"]
    with running_worker(args, env) as sup:
        first = {
            int(sup.wait_for(r"worker process (\d+) started", count=n).group(1)) for n in (1, 2)
        }
        assert first == {0, 1}
        sup.wait_for(r"worker started pid=\d+", count=2)
        wait_until(lambda: http_get(port, "/readyz")[0] == 200, message="both children ready")

        (crash,) = insert(db_url, (Crash(), "default"))
        line = sup.wait_for(
            r"worker process (\d) \(pid \d+\) exited with status 3; restarting in ([0-9.]+)s"
        )
        assert line.group(2) == "0.5"
        sup.wait_for(r"worker process \d started", count=3)
        sup.wait_for(r"worker started pid=\d+", count=3)
        wait_until(lambda: http_get(port, "/readyz")[0] == 200, message="ready again")

        jobs = insert(db_url, *[(Sleep(seconds=0.05), "default") for _ in range(4)])
        wait_until(
            lambda: all(job_state(db_url, j)[0] == "completed" for j in jobs),
            message="jobs completed after the restart",
        )
        status, metrics = http_get(port, "/metrics")
        assert status == 200
        assert 'river_worker_process_restarts_total{process="' + line.group(1) + '"} 1' in metrics
        assert 'river_worker_process_up{process="0"} 1' in metrics
        assert 'river_worker_process_up{process="1"} 1' in metrics
        # Children's metrics merged under a process label, one HELP/TYPE per family.
        assert metrics.count("# TYPE river_jobs_running gauge") == 1
        assert 'river_jobs_running{process="0",queue="default"}' in metrics
        assert 'river_jobs_running{process="1",queue="default"}' in metrics

        sup.send(signal.SIGHUP)  # forwarded: every child handles it
        sup.wait_for("SIGHUP: no --config file, nothing to reload", count=2)

        sup.send(signal.SIGTERM)
        assert http_get(port, "/readyz")[0] in (503, 0)
        assert sup.wait_exit() == 0, sup.output()
    # The crashed child's job stays `running` until the rescuer returns it (a crash, not a stop).
    assert job_state(db_url, crash)[0] == "running"
    assert len(sup.matches(r"worker stopped pid=")) == 2


DEV_APP = """
from typing import ClassVar

import river


class Job(river.JobArgs):
    kind: ClassVar[str] = "{kind}"


class JobWorker(river.Worker[Job]):
    async def work(self, job: river.Job[Job]) -> None:
        pass


workers = river.Workers()
workers.add(JobWorker())
"""


def test_reload_restarts_on_a_source_change(
    db_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "devapp.py"
    source.write_text(DEV_APP.format(kind="dev_one"))
    args = ["devapp:workers", "--reload", "--app-dir", str(tmp_path), "--shutdown-timeout", "5s"]
    with running_worker(args, env, cwd=tmp_path) as sup:
        sup.wait_for(r"worker started .* kinds=\[dev_one\]")
        source.write_text(DEV_APP.format(kind="dev_two_"))
        sup.wait_for(r"change in devapp.py: restarting")
        sup.wait_for(r"worker started .* kinds=\[dev_two_\]")
        assert sup.matches(r"worker stopped pid=")  # the old child stopped gracefully

        # A syntax error: the child cannot start; the supervisor waits for the next change.
        source.write_text("def broken(:\n")
        sup.wait_for(r"Error: cannot import APP 'devapp:workers': SyntaxError")
        sup.wait_for(r"exited with status 1; waiting for a source change")
        source.write_text(DEV_APP.format(kind="dev_three"))
        sup.wait_for(r"worker started .* kinds=\[dev_three\]")

        sup.send(signal.SIGTERM)
        assert sup.wait_exit() == 0, sup.output()
    assert len(sup.matches(r"worker process 0 started")) == 4
