"""``river worker`` as operators run it: a real subprocess, real signals, a real Postgres.

Each test waits on conditions (log lines, rows, HTTP answers) with deadlines; jobs record every
execution in a side table (``worker_exec``, see worker_apps/basic.py) so that a lost or
duplicated job shows up as a missing or extra row.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from worker_apps.basic import EXEC_TABLE, Sleep
from worker_apps.harness import (
    executions,
    free_port,
    http_get,
    insert,
    job_state,
    running_worker,
    wait_until,
    worker_env,
)

APP = "worker_apps.basic:make_config"


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(EXEC_TABLE)
    return worker_env(db_url)


def _started(db_url: str, job_id: int) -> bool:
    return any(j == job_id and e == "start" for j, _, _, e, _ in executions(db_url))


def test_sigterm_lets_the_running_job_finish(db_url: str, env: dict[str, str]) -> None:
    with running_worker([APP, "--shutdown-timeout", "20s"], env) as worker:
        worker.wait_for(r"worker started pid=\d+ generation=1 queues=\[default\]")
        (job,) = insert(db_url, (Sleep(seconds=1.0), "default"))
        wait_until(lambda: _started(db_url, job), message="job started")
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()
    assert job_state(db_url, job) == ("completed", 1)
    assert [e for j, _, _, e, _ in executions(db_url) if j == job] == ["start", "done"]
    assert "SIGTERM: stopping" in worker.output()
    assert "Error" not in worker.output()


def test_sigterm_past_the_timeout_returns_the_job(db_url: str, env: dict[str, str]) -> None:
    with running_worker([APP, "--shutdown-timeout", "300ms"], env) as worker:
        worker.wait_for("worker started")
        (job,) = insert(db_url, (Sleep(seconds=60), "default"))
        wait_until(lambda: _started(db_url, job), message="job started")
        began = time.monotonic()
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()
        assert time.monotonic() - began < 10
    state, attempt = job_state(db_url, job)
    assert (state, attempt) == ("available", 0)  # interrupted: attempt restored, runs again
    assert [e for j, _, _, e, _ in executions(db_url) if j == job] == ["start"]
    assert not [r for r in executions(db_url) if r[3] == "done"]


def test_second_sigint_stops_now(db_url: str, env: dict[str, str]) -> None:
    with running_worker([APP, "--shutdown-timeout", "5m"], env) as worker:
        worker.wait_for("worker started")
        (job,) = insert(db_url, (Sleep(seconds=60), "default"))
        wait_until(lambda: _started(db_url, job), message="job started")
        worker.send(signal.SIGINT)
        worker.wait_for("SIGINT: stopping")
        began = time.monotonic()
        worker.send(signal.SIGINT)
        assert worker.wait_exit() == 0, worker.output()
        assert time.monotonic() - began < 10
    worker_output = worker.output()
    assert "SIGINT again: stopping now" in worker_output
    assert job_state(db_url, job) == ("available", 0)
    assert query_running(db_url) == 0


def query_running(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM river_job WHERE state = 'running'").fetchone()
    assert row is not None
    return int(row[0])


def _write(path: Path, text: str) -> None:
    # Write-then-rename, as editors and config management do (the watcher sees one change).
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


CONFIG_V1 = """
[worker]
shutdown_timeout = "20s"

[queues.keep]
max_workers = 2

[queues.resize]
max_workers = 1

[queues.drop]
max_workers = 2
"""

CONFIG_V2 = """
[worker]
shutdown_timeout = "20s"

[queues.keep]
max_workers = 2

[queues.resize]
max_workers = 3

[queues.added]
max_workers = 2
"""


def test_sighup_adds_resizes_and_removes_queues_while_jobs_run(
    db_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "river.toml"
    config.write_text(CONFIG_V1)
    port = free_port()
    args = [APP, "--config", str(config), "--health-addr", f"127.0.0.1:{port}", "-v"]
    with running_worker(args, env) as worker:
        worker.wait_for(r"worker started .* queues=\[drop,keep,resize\]")
        before = insert(
            db_url,
            (Sleep(seconds=2.0, note="keep-long"), "keep"),
            (Sleep(seconds=2.0, note="keep-long"), "keep"),
            (Sleep(seconds=1.5, note="drop-long"), "drop"),
            (Sleep(seconds=0.3, note="resize"), "resize"),
            (Sleep(seconds=0.3, note="resize"), "resize"),
        )
        wait_until(
            lambda: (
                {n for _, _, _, e, n in executions(db_url) if e == "start"}
                >= {"keep-long", "drop-long"}
            ),
            message="long jobs started",
        )
        _write(config, CONFIG_V2)
        worker.send(signal.SIGHUP)
        # The drain of `drop` waits for its running job, so the summary comes after it.
        worker.wait_for(
            r"reload generation=2 added=\[added\] updated=\[resize\] removed=\[drop\] "
            r"unchanged=\[keep\]"
        )
        after = insert(
            db_url,
            *[(Sleep(seconds=0.5, note="resized"), "resize") for _ in range(3)],
            (Sleep(seconds=0.1, note="added"), "added"),
            (Sleep(seconds=0.1, note="keep-after"), "keep"),
        )
        (orphan,) = insert(db_url, (Sleep(seconds=0.1, note="orphan"), "drop"))
        wait_until(
            lambda: sum(1 for r in executions(db_url) if r[3] == "done") == len(before + after),
            message=lambda: f"all jobs done: {executions(db_url)}",
        )
        # Outcomes reach the metrics once the completer has written them (just after "done").
        _, metrics = wait_until(
            lambda: (
                (r := http_get(port, "/metrics"))[0] == 200
                and 'river_jobs_total{kind="sleep",queue="resize",outcome="completed"} 5' in r[1]
                and r
            ),
            message=lambda: http_get(port, "/metrics")[1],
        )
        assert "river_worker_config_generation 2" in metrics
        assert 'river_queue_max_workers{queue="resize"} 3' in metrics
        assert 'queue="drop"' not in metrics.split("river_jobs_running", 1)[1]
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()

    rows = executions(db_url)
    starts = Counter(j for j, _, _, e, _ in rows if e == "start")
    dones = Counter(j for j, _, _, e, _ in rows if e == "done")
    # No job lost, none run twice, none interrupted (every start has its done, attempt 1).
    assert set(starts) == set(before + after)
    assert all(n == 1 for n in starts.values()), starts
    assert starts == dones
    assert all(attempt == 1 for _, _, attempt, _, _ in rows)
    for job in before + after:
        assert job_state(db_url, job) == ("completed", 1)
    # The resized queue ran its three new jobs at once (max_workers went from 1 to 3).
    resized = [e for _, _, _, e, n in rows if n == "resized"]
    assert resized[:3] == ["start", "start", "start"], resized
    # A queue no longer configured is not worked: its new job waits for some other worker.
    assert job_state(db_url, orphan) == ("available", 0)
    # The unchanged queue was never touched (no add/update/remove/pause of it was logged).
    output = worker.output()
    assert not worker.matches(r"queue keep (added|removed|updated|paused|resumed)"), output
    assert worker.matches(r"queue resize updated \(max_workers=3")
    assert worker.matches(r"queue drop removed \(drain\)")
    assert worker.matches(r"queue added added")


def test_invalid_file_on_reload_keeps_the_old_config(
    db_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "river.toml"
    config.write_text("[queues.default]\nmax_workers = 2\n")
    port = free_port()
    args = [APP, "--config", str(config), "--health-addr", f"127.0.0.1:{port}"]
    with running_worker(args, env) as worker:
        worker.wait_for("worker started")
        _write(config, "[queues.default]\nmax_workers = 0\n[queues.other]\n")
        worker.send(signal.SIGHUP)
        line = worker.wait_for(r"reload rejected .*").group(0)
        assert "queues.default.max_workers" in line
        assert "greater than or equal to 1" in line
        assert "still running generation 1" in line
        _write(config, "[queues.default]\nmax_workers = 2\nfetch_cooldown = true\n")
        worker.send(signal.SIGHUP)
        line = worker.wait_for(r"reload rejected .*", count=2).group(0)
        assert "queues.default.fetch_cooldown" in line
        _write(config, "not toml = = =\n")
        worker.send(signal.SIGHUP)
        line = worker.wait_for(r"reload rejected .*", count=3).group(0)
        assert "invalid TOML" in line

        # The old configuration still runs, unchanged.
        (job,) = insert(db_url, (Sleep(seconds=0.1), "default"))
        wait_until(lambda: job_state(db_url, job)[0] == "completed", message="job completed")
        metrics = http_get(port, "/metrics")[1]
        assert "river_worker_config_generation 1" in metrics
        assert "river_worker_reload_failures_total 3" in metrics
        assert 'river_queue_max_workers{queue="default"} 2' in metrics
        assert http_get(port, "/readyz")[0] == 200
        assert not worker.matches("reload generation=")
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()


def test_a_file_that_is_not_utf8_on_reload_is_a_rejected_reload(
    db_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "river.toml"
    config.write_text("[queues.default]\nmax_workers = 2\n")
    port = free_port()
    args = [APP, "--config", str(config), "--health-addr", f"127.0.0.1:{port}"]
    with running_worker(args, env) as worker:
        worker.wait_for("worker started")
        tmp = config.with_suffix(".tmp")
        tmp.write_bytes(b"[queues.default]\nmax_workers = 3 # caf\xe9\n")
        tmp.replace(config)
        # More reloads than the crashes after which a failing service stops the process.
        for n in range(1, 7):
            worker.send(signal.SIGHUP)
            line = worker.wait_for(r"reload rejected .*", count=n).group(0)
            assert f"{config}: not UTF-8 text" in line, line
            assert "still running generation 1" in line
        metrics = http_get(port, "/metrics")[1]
        assert "river_worker_reload_failures_total 6" in metrics
        assert "river_worker_config_generation 1" in metrics
        assert http_get(port, "/readyz")[0] == 200
        assert not worker.matches("crashed"), worker.output()
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()


def test_watch_config_reloads_on_change_and_reports_restart_only_settings(
    db_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "river.toml"
    config.write_text("[queues.default]\n")
    args = [APP, "--config", str(config), "--watch-config", "--watch-interval", "100ms"]
    with running_worker(args, env) as worker:
        worker.wait_for("worker started")
        _write(
            config,
            "[client]\njob_timeout = '2m'\n[queues.default]\npaused = true\n[queues.extra]\n",
        )
        worker.wait_for(
            r"reload generation=2 added=\[extra\] updated=\[default\] removed=\[\] unchanged=\[\]"
        )
        warning = worker.wait_for(r"WARNING .*only take effect on a restart").group(0)
        assert "client.job_timeout" in warning
        # paused = true is applied: the queue is paused in the database for every client.
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT paused_at IS NOT NULL FROM river_queue WHERE name = 'default'"
            ).fetchone()
        assert row == (True,)
        (job,) = insert(db_url, (Sleep(seconds=0.1), "extra"))
        wait_until(lambda: job_state(db_url, job)[0] == "completed", message="extra job done")
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()


def test_health_endpoints_through_a_stop(db_url: str, env: dict[str, str]) -> None:
    port = free_port()
    args = [APP, "--health-addr", f"127.0.0.1:{port}", "--shutdown-timeout", "20s"]
    with running_worker(args, env) as worker:
        worker.wait_for("worker started")
        assert http_get(port, "/livez") == (200, "ok\n")
        wait_until(lambda: http_get(port, "/readyz")[0] == 200, message="ready")
        assert http_get(port, "/nope")[0] == 404
        done, running = insert(
            # Long enough for the checks below before and after the SIGTERM, on a busy machine.
            db_url,
            (Sleep(seconds=0.0), "default"),
            (Sleep(seconds=6.0), "default"),
        )
        wait_until(lambda: _started(db_url, running), message="long job started")
        _, metrics = wait_until(
            lambda: (
                (r := http_get(port, "/metrics"))[0] == 200
                and 'river_jobs_total{kind="sleep",queue="default",outcome="completed"} 1' in r[1]
                and r
            ),
            message="metrics count the completed job",
        )
        assert 'river_jobs_running{queue="default"} 1' in metrics
        assert "river_leader " in metrics
        assert "# TYPE river_jobs_total counter" in metrics
        assert "# TYPE river_job_duration_seconds histogram" in metrics
        assert (
            'river_job_duration_seconds_bucket{kind="sleep",queue="default",le="+Inf"} 1' in metrics
        )
        assert 'river_job_duration_seconds_count{kind="sleep",queue="default"} 1' in metrics
        # The leader's queue depth sample (every 0.2 s in this app) sees the long job running.
        wait_until(
            lambda: (
                'river_queue_depth{queue="default",state="running"} 1'
                in http_get(port, "/metrics")[1]
            ),
            message=lambda: http_get(port, "/metrics")[1],
        )

        worker.send(signal.SIGTERM)
        worker.wait_for("SIGTERM: stopping")
        # While the long job finishes: not ready, but alive, and metrics say stopping.
        assert http_get(port, "/readyz")[0] == 503
        assert http_get(port, "/livez")[0] == 200
        assert "river_worker_stopping 1" in http_get(port, "/metrics")[1]
        assert worker.wait_exit() == 0, worker.output()
    assert http_get(port, "/livez")[0] == 0  # the server is gone with the process
    assert job_state(db_url, running) == ("completed", 1)
    assert job_state(db_url, done) == ("completed", 1)


def test_periodic_jobs_from_the_file(db_url: str, env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "river.toml"
    config.write_text(
        "[queues.default]\n"
        "[[periodic_jobs]]\nid = 'tick'\nkind = 'sleep'\ninterval = '200ms'\nrun_on_start = true\n"
        "args = { note = 'tick' }\n"
    )
    with running_worker([APP, "--config", str(config)], env) as worker:
        worker.wait_for("worker started")
        wait_until(
            lambda: sum(1 for r in executions(db_url) if r[4] == "tick" and r[3] == "done") >= 2,
            message="periodic job ran twice",
        )
        # Removing it from the file stops it on reload.
        _write(config, "[queues.default]\n")
        worker.send(signal.SIGHUP)
        worker.wait_for(r"reload periodic jobs added=\[\] replaced=\[\] removed=\[tick\]")
        worker.wait_for(r"reload generation=2 .* unchanged=\[default\]")
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()
