"""The worker's configuration file, its validation, and the reload bookkeeping (no processes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from worker_apps.basic import Sleep, make_config, workers

import river
from river._config import DEFAULT_FETCH_COOLDOWN
from river.cli import build_parser, main
from river.worker import WorkerConfigError, load_file
from river.worker._cli import _child_argv, _overrides
from river.worker._config import QueueSpec, build_plan, parse_seconds
from river.worker._health import relabel_metrics
from river.worker._reconcile import diff_queues, restart_required

URL = "postgresql://localhost/app"


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "river.toml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> WorkerConfigError:
    with pytest.raises(WorkerConfigError) as info:
        build_plan(load_file(_file(tmp_path, text)), make_config())
    return info.value


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("1m30s", 90.0), (2, 2.0), (0.25, 0.25), ("1.5", 1.5), ("2h", 7200.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize(
    ("text", "key", "rule"),
    [
        ("[queues.default]\nmax_worker = 3\n", "queues.default.max_worker", "unknown key"),
        ("[queues.default]\nmax_workers = 0\n", "queues.default.max_workers", "greater than"),
        ("[queues.default]\nmax_workers = '3'\n", "queues.default.max_workers", "integer"),
        ("[queues.Bad]\n", "queues.Bad", "lowercase"),
        ("[client]\nfetch_cooldown = 'soon'\n", "client.fetch_cooldown", "invalid duration"),
        ("[client]\njob_timeout = 0\n", "client.job_timeout", "must be positive, or -1 for no"),
        ("[client]\njob_timeout = '0s'\n", "client.job_timeout", "must be positive, or -1 for"),
        ("[client]\njob_timeout = -2\n", "client.job_timeout", "must be positive, or -1 for"),
        ("[client]\njob_timeout = 1e300\n", "client.job_timeout", "at most 100 years"),
        (
            "[client]\ncompleted_job_retention = -2\n",
            "client.completed_job_retention",
            "must be 0 or more, or -1 to keep forever",
        ),
        (
            "[client]\ncompleted_job_retention = 1e300\n",
            "client.completed_job_retention",
            "at most 100 years",
        ),
        (
            "[client]\nrescue_stuck_jobs_after = '1000000h'\n",
            "client.rescue_stuck_jobs_after",
            "100 years",
        ),
        ("[worker]\nshutdown_timeout = 1e300\n", "worker.shutdown_timeout", "at most 100 years"),
        ("[worker]\nhealth_addr = 'localhost'\n", "worker.health_addr", "HOST:PORT"),
        ("[worker]\nshutdown_timeout = -1\n", "worker.shutdown_timeout", "0 or more"),
        ("[database]\nurl = 'x'\nurl_env = 'Y'\n", "database", "not both"),
        ("[database]\nschema = 'no-dash'\n", "database.schema", "must start with a letter"),
        ("[[periodic_jobs]]\nkind = 'sleep'\n", "periodic_jobs[0]", "exactly one of cron"),
        ("unknown = 1\n", "unknown", "unknown key"),
    ],
)
def test_file_errors_name_the_key_and_the_rule(
    tmp_path: Path, text: str, key: str, rule: str
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(WorkerConfigError) as info:
        load_file(path)
    assert info.value.field == key
    assert rule in info.value.rule
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_durations_up_to_100_years_and_minus_one_for_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    century = 100 * 365.25 * 86400
    text = (
        f"[client]\njob_timeout = {century}\nrescue_stuck_jobs_after = {century}\n"
        f"discarded_job_retention = {century}\ncompleted_job_retention = -1\n"
    )
    plan = build_plan(load_file(_file(tmp_path, text)), make_config())
    assert plan.config.job_timeout == century
    assert plan.config.completed_job_retention == -1
    for none in ("-1", "-1.0", "'-1'", "'none'"):
        file = load_file(_file(tmp_path, f"[client]\njob_timeout = {none}\n"))
        assert file.client.job_timeout == -1
    with pytest.raises(ValueError, match="at most 100 years"):
        parse_seconds(century * 1.01)


def test_a_file_that_is_not_utf8_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "river.toml"
    path.write_bytes(b"[client]\n# caf\xe9\nmax_workers = 2\n")
    with pytest.raises(WorkerConfigError) as info:
        load_file(path)
    assert str(info.value).startswith(f"{path}: not UTF-8 text (at byte offset 14:")
    monkeypatch.setenv("DATABASE_URL", URL)
    app = "worker_apps.basic:workers"
    assert main(["worker", app, "--config", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"Error: {path}: not UTF-8 text"), err


def test_plan_errors_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    cases = {
        "[[periodic_jobs]]\nkind = 'nope'\ninterval = 1\n": ("periodic_jobs[0].kind", "nope"),
        "[[periodic_jobs]]\nkind = 'sleep'\ninterval = 1\nargs = {seconds = 'x'}\n": (
            "periodic_jobs[0].args.seconds",
            "number",
        ),
        "[[periodic_jobs]]\nkind = 'sleep'\ncron = '61 * * * *'\n": ("periodic_jobs[0].cron", ""),
        # Checked as the leader's insert checks them: at load, not at every run.
        "[[periodic_jobs]]\nkind = 'sleep'\ninterval = 1\ntags = ['a,b']\n": (
            "periodic_jobs[0].tags",
            "no commas",
        ),
        "[[periodic_jobs]]\nkind = 'sleep'\ninterval = 1\nargs = {seconds = nan}\n": (
            "periodic_jobs[0].args.seconds",
            "NaN",
        ),
        "[queues.q]\nfetch_cooldown = 2\nfetch_poll_interval = 1\n": (
            "queues.q.fetch_poll_interval",
            "at least fetch_cooldown",
        ),
        "[client]\njob_timeout = '2h'\nrescue_stuck_jobs_after = '1h'\n": (
            "client.rescue_stuck_jobs_after",
            "at least job_timeout",
        ),
    }
    for text, (key, rule) in cases.items():
        error = _error(tmp_path, text)
        assert error.field == key, str(error)
        assert rule in error.rule


def test_database_url_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    error = _error(tmp_path, "")
    assert error.field == "database.url"
    assert "$DATABASE_URL is not set" in error.rule
    monkeypatch.setenv("MY_DB", URL)
    plan = build_plan(load_file(_file(tmp_path, "[database]\nurl_env = 'MY_DB'\n")), make_config())
    assert plan.database_url == URL
    # A --database-url flag wins over the file's url_env.
    flagged = load_file(
        _file(tmp_path, "[database]\nurl_env = 'MY_DB'\n"), {"database": {"url": "postgres://x/y"}}
    )
    assert build_plan(flagged, make_config()).database_url == "postgres://x/y"


def test_precedence_flags_file_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    base = make_config()  # default queue: max_workers 4; fetch_poll_interval 0.2
    # No [queues]: the app's queues, resolved explicitly.
    plan = build_plan(load_file(None), base)
    assert plan.queues == {
        "default": QueueSpec(
            river.QueueConfig(
                max_workers=4, fetch_cooldown=DEFAULT_FETCH_COOLDOWN, fetch_poll_interval=0.2
            )
        )
    }
    text = "[client]\nmax_workers = 7\njob_timeout = 5\n[queues.a]\n[queues.b]\nmax_workers = 2\n"
    plan = build_plan(load_file(_file(tmp_path, text), {"queues": {"c": {"max_workers": 9}}}), base)
    assert {n: q.config.max_workers for n, q in plan.queues.items()} == {"a": 7, "b": 2, "c": 9}
    assert plan.config.job_timeout == 5
    assert plan.config.fetch_poll_interval == 0.2  # from the app
    flagged = load_file(_file(tmp_path, text), {"client": {"max_workers": 3}})
    assert build_plan(flagged, base).queues["a"].config.max_workers == 3
    # Only a Workers registry: one queue "default" with the library's defaults.
    plan = build_plan(load_file(None), river.Config(workers=workers))
    assert list(plan.queues) == ["default"]


def test_periodic_jobs_resolve_through_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    text = (
        "[[periodic_jobs]]\nkind = 'sleep'\ncron = '*/5 * * * *'\nargs = {seconds = 1.5}\n"
        "queue = 'slow'\npriority = 2\n"
        "[[periodic_jobs]]\nid = 'tick'\nkind = 'sleep'\ninterval = '30s'\nrun_on_start = true\n"
    )
    plan = build_plan(load_file(_file(tmp_path, text)), make_config())
    assert sorted(plan.periodic) == ["sleep", "tick"]
    args, opts = plan.periodic["sleep"].job.construct()  # type: ignore[misc]
    assert isinstance(args, Sleep)
    assert args.seconds == 1.5
    assert opts is not None
    assert (opts.queue, opts.priority) == ("slow", 2)
    assert plan.periodic["tick"].job.run_on_start
    assert [j.id for j in plan.config.periodic_jobs] == ["sleep", "tick"]
    error = _error(tmp_path, text.replace("id = 'tick'\n", ""))
    assert "two jobs have id 'sleep'" in str(error)


def test_reload_bookkeeping() -> None:
    q1 = QueueSpec(river.QueueConfig(max_workers=1))
    q2 = QueueSpec(river.QueueConfig(max_workers=2))
    changes = diff_queues(
        {"same": q1, "resized": q1, "gone": q1, "flag": q1},
        {"same": q1, "resized": q2, "new": q1, "flag": QueueSpec(q1.config, paused=True)},
    )
    assert (changes.added, changes.updated, changes.removed, changes.unchanged) == (
        ["new"],
        ["flag", "resized"],
        ["gone"],
        ["same"],
    )
    assert changes.summary(3) == (
        "reload generation=3 added=[new] updated=[flag,resized] removed=[gone] unchanged=[same]"
    )
    # Dropping the flag (paused = unset) stops managing it: nothing to do.
    assert diff_queues({"q": QueueSpec(q1.config, True)}, {"q": q1}).unchanged == ["q"]
    assert restart_required({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["b", "c"]


def test_metrics_merge_keeps_families_grouped() -> None:
    child = '# HELP m A.\n# TYPE m gauge\nm{q="x"} 1\nm 2\n# TYPE n counter\nn 3\n'
    lines = relabel_metrics([({"process": "0"}, child), ({"process": "1"}, child)])
    assert lines == [
        "# HELP m A.",
        "# TYPE m gauge",
        'm{process="0",q="x"} 1',
        'm{process="0"} 2',
        'm{process="1",q="x"} 1',
        'm{process="1"} 2',
        "# TYPE n counter",
        'n{process="0"} 3',
        'n{process="1"} 3',
    ]


def test_cli_reports_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    path = _file(tmp_path, "[queues.default]\nmax_workers = 0\n")
    app = "worker_apps.basic:workers"
    tests_dir = str(Path(__file__).resolve().parent)  # already on sys.path: nothing is added
    assert main(["worker", app, "--config", str(path), "--app-dir", tests_dir]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"Error: {path}: queues.default.max_workers: Input should be greater than or equal "
        "to 1 (got 0)"
    ]
    assert main(["worker", "worker_apps.nope:workers", "--app-dir", tests_dir]) == 1
    assert "no module named 'worker_apps.nope'" in capsys.readouterr().err
    assert main(["worker", "worker_apps.basic", "--app-dir", tests_dir]) == 1
    assert "APP must be module:attribute" in capsys.readouterr().err
    assert main(["worker", "worker_apps.basic:EXEC_TABLE", "--app-dir", tests_dir]) == 1
    assert "must be a river.Workers" in capsys.readouterr().err
    assert main(["worker", app, "--shutdown-timeout", "soon"]) == 1
    assert "argument --shutdown-timeout: invalid duration" in capsys.readouterr().err


@pytest.mark.anyio
async def test_source_polling_without_watchfiles(tmp_path: Path) -> None:
    import anyio

    from river.worker._watch import watch_sources

    (tmp_path / "app.py").write_text("x = 1\n")
    (tmp_path / ".hidden").mkdir()
    seen: list[set[str]] = []
    changed = anyio.Event()

    def on_change(paths: set[str]) -> None:
        seen.append(paths)
        changed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: watch_sources([str(tmp_path)], 0.05, on_change, use_watchfiles=False))
        # Keep changing files until the watcher (whose first snapshot runs in a thread) reports.
        with anyio.fail_after(5):
            for n in range(1000):
                (tmp_path / ".hidden" / "ignored.py").write_text(f"y = {n}\n")
                (tmp_path / "notes.txt").write_text(f"not python {n}\n")
                (tmp_path / "app.py").write_text(f"x = {n}{'0' * n}\n")
                with anyio.move_on_after(0.1):
                    await changed.wait()
                if changed.is_set():
                    break
        tg.cancel_scope.cancel()
    assert seen
    assert all(paths == {str(tmp_path / "app.py")} for paths in seen)


def test_telemetry_settings_in_the_client_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    text = "[client]\nqueue_depth_interval = '30s'\notel_work_span = 'link'\n"
    plan = build_plan(load_file(_file(tmp_path, text)), make_config())
    assert plan.config.queue_depth_interval == 30.0
    assert plan.config.otel_work_span == "link"
    assert plan.restart_only["client.otel_work_span"] == "link"
    off = build_plan(
        load_file(_file(tmp_path, "[client]\nqueue_depth_interval = false\n")), make_config()
    )
    assert off.config.queue_depth_interval is None
    error = _error(tmp_path, "[client]\notel_work_span = 'parent'\n")
    assert error.field == "client.otel_work_span"
    error = _error(tmp_path, "[client]\nqueue_depth_interval = true\n")
    assert error.field.startswith("client.queue_depth_interval")


def test_completer_stop_timeout_in_the_client_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    plan = build_plan(
        load_file(_file(tmp_path, "[client]\ncompleter_stop_timeout = '2m'\n")), make_config()
    )
    assert plan.config.completer_stop_timeout_seconds == 120.0
    assert plan.restart_only["client.completer_stop_timeout"] == 120.0
    forever = build_plan(
        load_file(_file(tmp_path, "[client]\ncompleter_stop_timeout = false\n")), make_config()
    )
    assert forever.config.completer_stop_timeout is None
    assert (
        build_plan(load_file(_file(tmp_path, "")), make_config()).config.completer_stop_timeout
        == 60.0
    )
    error = _error(tmp_path, "[client]\ncompleter_stop_timeout = 'soon'\n")
    assert error.field.startswith("client.completer_stop_timeout")


def test_autoscale_and_rate_limit_per_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    text = (
        "[queues.api]\nmax_workers = 20\nmin_workers = 2\nrate_limit = '50/1s'\n"
        "[queues.tenant]\nrate_limit = {jobs = 10, per = '1m', burst = 2}\n"
    )
    plan = build_plan(load_file(_file(tmp_path, text)), make_config())
    api = plan.queues["api"].config
    assert (api.min_workers, api.max_workers) == (2, 20)
    assert api.rate_limit == river.RateLimit(jobs=50, per=1.0)
    assert plan.queues["tenant"].config.rate_limit == river.RateLimit(jobs=10, per=60.0, burst=2)
    for bad in [
        "rate_limit = '50'",
        "rate_limit = {jobs = 0}",
        "rate_limit = 5",
        "min_workers = 0",
    ]:
        error = _error(tmp_path, f"[queues.api]\n{bad}\n")
        assert error.field.startswith("queues.api."), (bad, error)
    error = _error(tmp_path, "[queues.api]\nmax_workers = 3\nmin_workers = 5\n")
    assert error.field == "queues.api.min_workers"
    # An app's QueueConfig keeps its autoscale and rate limit under river worker.
    app = dataclasses.replace(
        make_config(),
        queues={"x": river.QueueConfig(min_workers=1, rate_limit=river.RateLimit(jobs=5))},
    )
    plan = build_plan(load_file(_file(tmp_path, "")), app)
    assert plan.queues["x"].config.min_workers == 1
    assert plan.queues["x"].config.rate_limit == river.RateLimit(jobs=5)


#: Every flag a supervisor forwards to its children, in the forms a user may give them.
FORWARDED_FLAGS = [
    ["--schema", "app", "--connect-timeout", "1m30s", "--max-workers", "7"],
    ["--fetch-cooldown", "0.5", "--fetch-poll-interval", "250ms", "--job-timeout", "-1"],
    ["--job-timeout", "none", "--max-attempts", "3", "--poll-only", "--pooler", "transaction"],
    ["--job-timeout", "1e3", "--shutdown-timeout", "0", "--log-format", "json"],
    ["--shutdown-timeout", "2m", "--log-level", "debug", "--log-handler", "never"],
    ["--log-level", "15", "--queue", "default", "--queue", "email=3", "--watch-config"],
    ["--watch-config", "--watch-interval", "100ms", "--config", "river.toml", "--debug"],
    ["--watch-config", "--watch-interval", "2", "-v", "--database-url", "postgresql://u:pw@db/a"],
]


@pytest.mark.parametrize("flags", FORWARDED_FLAGS)
def test_children_accept_every_flag_the_supervisor_forwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    parent = build_parser().parse_args(["worker", "app:workers", "--processes", "2", *flags])
    argv = _child_argv(parent)(1, 9466)
    assert not any("postgresql:" in arg for arg in argv), argv  # the URL goes in the environment
    child = build_parser().parse_args(["worker", *argv])  # raises on a flag it refuses
    expected = _overrides(parent)
    expected.get("database", {}).pop("url", None)
    expected["worker"] = {**expected.get("worker", {}), "health_addr": "127.0.0.1:9466"}
    expected["worker"].pop("processes")
    got = _overrides(child)
    assert got.get("worker", {}).pop("processes") == 1
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}
    for name in ("watch_config", "debug", "verbose", "app"):
        assert getattr(child, name) == getattr(parent, name), name
    if parent.watch_config:
        assert child.watch_interval == parent.watch_interval


def test_health_port_range_is_checked_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    app = "worker_apps.basic:workers"
    flags = ["--processes", "2", "--health-addr", "127.0.0.1:65534"]
    assert main(["worker", app, *flags]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "Error: --health-addr: port 65534 leaves no room for 2 worker process(es): child i "
        "serves PORT+1+i, so PORT must be at most 65533"
    ]
    path = _file(tmp_path, "[worker]\nprocesses = 3\nhealth_addr = '127.0.0.1:65533'\n")
    assert main(["worker", app, "--config", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"Error: {path}: worker.health_addr: port 65533 leaves no room for 3 worker process(es): "
        "child i serves PORT+1+i, so PORT must be at most 65532"
    ]


def test_help_lists_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status 0 after a clean stop; 1 on an error" in text
    assert "3 when the worker stopped because a background service kept failing" in text


@pytest.mark.anyio
async def test_source_watching_with_watchfiles_stops_at_once(tmp_path: Path) -> None:
    import anyio

    from river.worker._watch import watch_sources

    pytest.importorskip("watchfiles")
    (tmp_path / "app.py").write_text("x = 1\n")
    # watchfiles' thread waits up to its timeout (5 s by default) unless asked to stop: the
    # cancellation must reach it (a supervisor's Ctrl-C waited those 5 s).
    with anyio.fail_after(2.5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: watch_sources([str(tmp_path)], 0.05, lambda paths: None))
            await anyio.sleep(0.3)  # let its thread start waiting
            tg.cancel_scope.cancel()
