"""``river worker --processes N`` and ``--reload``: a supervisor with child worker processes."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import psycopg
import pytest
from anyio.abc import Process
from helpers import wait_for
from worker_apps.basic import EXEC_TABLE, Crash, Sleep
from worker_apps.exit_at_stop import Hold
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

from river.worker._supervisor import Supervisor, SupervisorOptions, _Child

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


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _started(db_url: str, job_id: int) -> bool:
    return any(j == job_id and e == "start" for j, _, _, e, _ in executions(db_url))


def test_a_reload_that_raises_the_shutdown_timeout_reaches_the_supervisor(
    db_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    # The supervisor kills children still running shutdown timeout + outcome timeout + 10 s
    # after a stop: with the timeout each child runs with, which a reload changes, not the one
    # it started with.
    config = tmp_path / "river.toml"
    # (Outcomes are written within 1 s: the kill would come 11 s after the stop.)
    head = '[client]\ncompleter_stop_timeout = "1s"\n[worker]\nprocesses = 2\n'
    config.write_text(head + 'shutdown_timeout = "0s"\n')
    with running_worker([APP, "--config", str(config)], env) as sup:
        sup.wait_for(r"worker started pid=\d+", count=2)
        _write(config, head + 'shutdown_timeout = "40s"\n')
        sup.send(signal.SIGHUP)
        sup.wait_for(r"reload generation=2", count=2)
        (job,) = insert(db_url, (Sleep(seconds=12.0), "default"))
        wait_until(lambda: _started(db_url, job), message="job started")
        sup.send(signal.SIGTERM)
        assert sup.wait_exit(timeout=40) == 0, sup.output()
    assert not sup.matches("killing it"), sup.output()
    assert job_state(db_url, job) == ("completed", 1)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_children_get_the_flags_as_given_and_the_url_out_of_argv(
    db_url: str, env: dict[str, str]
) -> None:
    # A password the server does not ask for (trust authentication): it must stay out of ps.
    url = db_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2secret@", 1)
    assert "hunter2secret" in url
    # Not the database: the children start only if they get the --database-url.
    env = {**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nowhere"}
    args = [APP, "--processes", "2", "--database-url", url, "--job-timeout", "-1"]
    args += ["--shutdown-timeout", "5s", "--queue", "default=2"]
    with running_worker(args, env) as sup:
        sup.wait_for(r"worker started pid=\d+", count=2)
        for match in sup.matches(r"worker process \d started \(pid (\d+)\)"):
            pid = int(match.group(1))
            cmdline = _cmdline(pid)
            assert "--job-timeout=-1 " in cmdline, cmdline
            assert "hunter2secret" not in cmdline, cmdline
            assert "--database-url" not in cmdline, cmdline
        sup.send(signal.SIGTERM)
        assert sup.wait_exit() == 0, sup.output()
    assert not sup.matches("exited with status [^0]"), sup.output()
    assert "hunter2secret" not in sup.output()


def test_sighup_while_children_start_does_not_kill_them(db_url: str, env: dict[str, str]) -> None:
    with running_worker([APP, "--processes", "2"], env) as sup:
        sup.wait_for(r"worker process 1 started")
        # Reload requests all through the children's start: none may end a child.
        while len(sup.matches(r"worker started pid=")) < 2 and not sup.matches("exited with"):
            assert sup.proc.poll() is None, sup.output()
            sup.send(signal.SIGHUP)
            time.sleep(0.02)
        sup.wait_for(r"worker started pid=\d+", count=2)
        sup.send(signal.SIGHUP)  # once they run, a SIGHUP reloads (no file: nothing to do)
        sup.wait_for("SIGHUP: no --config file, nothing to reload", count=2)
        sup.send(signal.SIGTERM)
        assert sup.wait_exit() == 0, sup.output()
    assert not sup.matches(r"exited with status -?[1-9]"), sup.output()
    assert len(sup.matches(r"worker process \d started")) == 2, sup.output()


@contextmanager
def _taken_port(port: int) -> Iterator[None]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        yield


def test_a_health_port_in_use_is_one_error_line(
    db_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port(span=3)
    config = tmp_path / "river.toml"
    config.write_text(f"[worker]\nhealth_addr = '127.0.0.1:{port}'\n")
    cases = [
        ([APP, "--processes", "2", "--health-addr", f"127.0.0.1:{port}"], "--health-addr"),
        ([APP, "--health-addr", f"127.0.0.1:{port}"], "--health-addr"),
        ([APP, "--config", str(config), "--processes", "2"], "worker.health_addr"),
        ([APP, "--config", str(config)], "worker.health_addr"),
    ]
    with _taken_port(port):
        for args, setting in cases:
            with running_worker(args, env) as worker:
                assert worker.wait_exit() == 1, worker.output()
            assert worker.lines == [
                f"Error: cannot listen on {setting} 127.0.0.1:{port}: Address already in use"
            ], args


def test_a_child_that_cannot_start_fails_the_supervisor(db_url: str, env: dict[str, str]) -> None:
    port = free_port(span=3)
    args = [APP, "--processes", "2", "--health-addr", f"127.0.0.1:{port}"]
    with _taken_port(port + 2), running_worker(args, env) as sup:  # child 1's port
        sup.wait_for(
            f"Error: cannot listen on the health address of worker process 1 127.0.0.1:{port + 2}"
        )
        sup.wait_for(r"worker process 1 \(pid \d+\) exited with status 1 before it was ready")
        sup.wait_for(r"worker started pid=")  # child 0
        sup.send(signal.SIGTERM)
        assert sup.wait_exit() == 1, sup.output()
    assert sup.matches(r"supervisor stopped \(exit statuses \[0, 1\]\)"), sup.output()


def test_a_child_that_never_starts_leaves_the_working_one_alone(
    db_url: str, env: dict[str, str]
) -> None:
    # Child 1's health port is taken: it fails every start. Child 0 works, so the supervisor
    # keeps it and goes on trying child 1 (it stopped child 0 and exited: an outage for one
    # process that could not start).
    port = free_port(span=3)
    args = [APP, "--processes", "2", "--health-addr", f"127.0.0.1:{port}"]
    with _taken_port(port + 2), running_worker(args, env) as sup:
        line = sup.wait_for(r"worker process 1 failed to start (\d+) times in a row", timeout=60)
        assert line.group(1) == "5"
        assert "the other worker processes go on" in line.group(0) or sup.matches(
            "the other worker processes go on"
        ), sup.output()
        assert sup.proc.poll() is None
        assert not sup.matches(r"worker stopped pid="), sup.output()  # child 0 still works
        sup.send(signal.SIGTERM)
        assert sup.wait_exit() == 1, sup.output()  # one process never worked
    assert sup.matches(r"worker stopped pid="), sup.output()  # child 0 stopped gracefully
    assert len(sup.matches(r"worker process 0 started")) == 1


def test_the_supervisor_gives_up_when_no_child_can_start(db_url: str, env: dict[str, str]) -> None:
    port = free_port(span=3)
    args = [APP, "--processes", "2", "--health-addr", f"127.0.0.1:{port}"]
    with _taken_port(port + 1), _taken_port(port + 2), running_worker(args, env) as sup:
        sup.wait_for(
            r"failed to start 5 times in a row \(last exit status \d+\): giving up", timeout=60
        )
        assert sup.wait_exit() == 1, sup.output()


def test_a_child_that_exits_3_makes_the_supervisor_exit_3(db_url: str, env: dict[str, str]) -> None:
    args = ["worker_apps.exit_at_stop:workers", "--processes", "2", "--shutdown-timeout", "0s"]
    with running_worker(args, env) as sup:
        sup.wait_for(r"worker started pid=\d+", count=2)
        (job,) = insert(db_url, (Hold(), "default"))
        wait_until(lambda: job_state(db_url, job)[0] == "running", message="job running")
        sup.send(signal.SIGTERM)
        assert sup.wait_exit() == 3, sup.output()
    assert sup.matches(r"exited with status 3"), sup.output()


def test_sighup_during_the_stop_never_kills_a_process(db_url: str, env: dict[str, str]) -> None:
    # A reload request that follows a stop: the supervisor used to forward it to children that
    # had closed their signal receiver, which put SIGHUP back to its default action (a kill):
    # a child then ended by SIGHUP (status -1) instead of exiting 0.
    with running_worker([APP, "--processes", "2"], env) as sup:
        sup.wait_for(r"worker started pid=\d+", count=2)
        started = [int(m.group(1)) for m in sup.matches(r"worker started pid=(\d+)")]
        assert len(started) == 2
        sup.send(signal.SIGTERM)
        sup.wait_for(r"SIGTERM: stopping the worker processes")
        sup.send(signal.SIGHUP)
        sup.wait_for(r"river\.worker: SIGHUP: stopping, reload ignored")
        # Reload requests straight to the children, all through their shutdown to their exit.
        alive = set(started)
        deadline = time.monotonic() + 20
        while alive and time.monotonic() < deadline and sup.proc.poll() is None:
            for pid in list(alive):
                try:
                    os.kill(pid, signal.SIGHUP)
                except ProcessLookupError:
                    alive.discard(pid)
            time.sleep(0.001)
        assert sup.wait_exit() == 0, sup.output()
    exits = sup.matches(r"worker process \d \(pid \d+\) exited with status (-?\d+)")
    assert [m.group(1) for m in exits] == ["0", "0"], sup.output()


_SLEEP = ["-c", "import time; time.sleep(60)"]  # a child that never says it is ready
_FAIL = ["-c", "import sys; sys.exit(1)"]  # a child that cannot start


class _AtSpawn(Supervisor):
    """Acts as its n-th child is spawned: ``"stop"``, a stop signal lands as it is spawned;
    ``"reload"``, a source change restarts it as soon as it runs. Its children run ``runs``
    in turn, then sleep."""

    def __init__(self, events: dict[int, str], runs: list[list[str]]) -> None:
        following = iter(runs)
        super().__init__(
            SupervisorOptions(
                processes=1,
                child_argv=lambda index, port: next(following, _SLEEP),
                child_command=[sys.executable],
                shutdown_timeout=60,
            )
        )
        self.events = events
        self.spawns = 0

    async def _spawn(self, child: _Child, status_fd: int) -> Process:
        self.spawns += 1
        event = self.events.get(self.spawns)
        if event == "stop":
            self._begin_stop(signal.SIGTERM)
        process = await super()._spawn(child, status_fd)
        if event == "reload":
            child.process = process  # as the caller records it next
            self._sources_changed({"app.py"})
        return process


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("events", "runs", "status"),
    [
        # Unsignalled, the child would sleep its 60 s.
        pytest.param({1: "stop"}, [], 0, id="a child spawned during a stop is stopped"),
        # Caught in its restart backoff, a child failing to start made the supervisor exit 1;
        # caught in its next try (killed before it was ready), it exited 0.
        pytest.param(
            {2: "stop"}, [_FAIL], 1, id="the retry of a child failing to start keeps its failure"
        ),
        # The failed start came before the source changed: the run the stop ended owes it
        # nothing.
        pytest.param(
            {2: "reload", 3: "stop"}, [_FAIL], 0, id="a reload forgets the failed start before it"
        ),
    ],
)
async def test_a_stop_as_a_child_is_spawned(
    events: dict[int, str], runs: list[list[str]], status: int
) -> None:
    supervisor = _AtSpawn(events, runs)
    with anyio.fail_after(20):
        assert await supervisor.run() == status
    assert supervisor.spawns == max(events)
    assert supervisor.children[0].last_status == status


_SLOW_WRITER = """
import os, signal, sys, time
fd = int(os.environ["RIVER_WORKER_STATUS_FD"])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))  # before it says ready, as river's
os.write(fd, b"started\\nshutdown_timeout 0.0\\noutcome_timeout %s\\nready\\n")
while not stop:
    time.sleep(0.01)
if %s:
    os.write(fd, b"draining\\n")  # its jobs have ended: it goes on writing their outcomes
time.sleep(1.5)
sys.exit(0)
"""


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reported", "draining", "killed"),
    [
        ("2.0", True, False),
        ("None", True, False),
        ("0.0", True, True),
        ("2.0", False, True),  # still in a job (a sync thread): no extension
    ],
)
async def test_a_stopping_child_has_its_outcome_timeout_before_the_kill(
    monkeypatch: pytest.MonkeyPatch, reported: str, draining: bool, killed: bool
) -> None:
    """A stopping child may go on writing outcomes (the database away) for its
    completer_stop_timeout once its jobs have ended; the supervisor killed it at its
    shutdown timeout + 10 s (completed jobs then ran again after a rescue). One whose jobs
    have not ended is killed at that deadline still."""
    from river.worker import _supervisor

    monkeypatch.setattr(_supervisor, "_KILL_GRACE", 0.5)
    options = SupervisorOptions(
        processes=1,
        child_argv=lambda index, port: ["-c", _SLOW_WRITER % (reported, draining)],
        child_command=[sys.executable],
        shutdown_timeout=0,
    )
    supervisor = Supervisor(options)

    async def stop_when_ready() -> None:
        await wait_for(lambda: supervisor.children[0].ready, message="child ready")
        supervisor._begin_stop(signal.SIGTERM)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_when_ready)
            status = await supervisor.run()
    assert supervisor.children[0].last_status == (-signal.SIGKILL if killed else 0)
    assert status == (1 if killed else 0)


_HEALTHY_OR_BROKEN = """
import os, signal, sys, time
if sys.argv[1] == "1":
    sys.exit(1)  # cannot start (a config file broken since the others started)
fd = int(os.environ["RIVER_WORKER_STATUS_FD"])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))  # before it says ready, as river's
os.write(fd, b"started\\nready\\n")
while not stop:
    time.sleep(0.01)
"""


@pytest.mark.anyio
async def test_one_process_that_cannot_start_does_not_stop_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Five failed starts of one child stopped every healthy sibling (an outage for one
    process that cannot start); it is now tried again while the others go on. With no other
    process working, the supervisor still gives up."""
    from river.worker import _supervisor

    monkeypatch.setattr(_supervisor, "_BACKOFF_FIRST", 0.01)
    monkeypatch.setattr(_supervisor, "_BACKOFF_MAX", 0.05)
    options = SupervisorOptions(
        processes=2,
        child_argv=lambda index, port: ["-c", _HEALTHY_OR_BROKEN, str(index)],
        child_command=[sys.executable],
        shutdown_timeout=5,
    )
    supervisor = Supervisor(options)
    healthy, broken = supervisor.children

    async def stop_later() -> None:
        await wait_for(lambda: broken.start_failures >= 8, message="failed starts")
        assert healthy.ready
        assert not supervisor._stopping.is_set()
        supervisor._begin_stop(signal.SIGTERM)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_later)
            status = await supervisor.run()
    assert healthy.last_status == 0
    assert status == 1  # one process never worked
    said = [r.getMessage() for r in caplog.records if "in a row" in r.getMessage()]
    assert len(said) == 1, said
    assert "the other worker processes go on" in said[0]


def test_the_signal_receiver_gives_every_handler_back() -> None:
    # anyio's receiver (asyncio's remove_signal_handler) left SIG_DFL behind, which for
    # SIGHUP is a kill; this one receives the signals and then restores what it found.
    from river.worker._signals import signal_receiver

    def own_hup(signum: int, frame: object) -> None:
        raise AssertionError("the receiver should have taken SIGHUP")

    received: list[signal.Signals] = []

    async def main() -> None:
        with signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGTERM)
            with anyio.fail_after(5):
                async for signum in signals:
                    received.append(signum)
                    if len(received) == 2:
                        break

    previous_hup = signal.signal(signal.SIGHUP, own_hup)
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        anyio.run(main)
        assert sorted(received) == [signal.SIGHUP, signal.SIGTERM]
        assert signal.getsignal(signal.SIGHUP) is own_hup
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous_hup)
        signal.signal(signal.SIGTERM, previous_term)
