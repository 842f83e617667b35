"""`river bench` (river/_bench.py) and the bench/ suite still run. Smoke tests: no timing
assertions, tiny sizes."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from river import _bench
from river._logfmt import TextFormatter
from river.migrate import Migrator

ROOT = Path(__file__).resolve().parent.parent
PROGRESS = re.compile(
    r"^bench: jobs worked \[ +\d+ \], inserted \[ +\d+ \], job/sec \[ +\d+\.\d \] \[[\d.]+m?s\]$"
)
TOTAL = re.compile(
    r"^bench: total jobs worked \[ +(\d+) \], total jobs inserted \[ +(\d+) \], "
    r"overall job/sec \[ +\d+\.\d \], running [\d.]+m?s$"
)


def _bench_run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    args = _bench.build_parser().parse_args(list(argv))
    status = _bench.run_bench(args, out=out)
    return status, out.getvalue()


def _count(url: str, schema: str, where: str = "TRUE") -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.river_job WHERE " + where).format(
                sql.Identifier(schema)
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


def _insert_foreign_job(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.river_job (args, kind, max_attempts, priority, queue, state)"
                " VALUES ('{{}}', 'send_email', 25, 1, 'default', 'available')"
            ).format(sql.Identifier(schema))
        )


def test_burn_down_prints_progress_and_summary(db_url: str) -> None:
    status, out = _bench_run("--database-url", db_url, "-n", "200", "--max-workers", "50")
    assert status == 0, out
    lines = out.splitlines()
    progress = [ln for ln in lines if ln.startswith("bench: jobs worked")]
    assert progress, out
    assert all(PROGRESS.match(ln) for ln in progress), out
    totals = [m for ln in lines if (m := TOTAL.match(ln))]
    assert len(totals) == 1, out
    assert totals[0].groups() == ("200", "200")
    assert "summary:" in lines
    assert re.search(r"cpu +\d+\.\d+ s of this process while working: [\d.,]+ us/job", out)
    assert _count(db_url, _bench.DEFAULT_SCHEMA, "state = 'completed'") == 200


def test_duration_mode_keeps_a_backlog(db_url: str) -> None:
    status, out = _bench_run(
        "--database-url", db_url, "--duration", "1s", "--backlog", "300", "--queues", "3"
    )
    assert status == 0, out
    (total,) = [m for ln in out.splitlines() if (m := TOTAL.match(ln))]
    worked, inserted = int(total.group(1)), int(total.group(2))
    assert inserted >= 300
    assert worked > 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        queues = conn.execute(
            "SELECT DISTINCT queue FROM river_bench.river_job ORDER BY 1"
        ).fetchall()
    assert [q for (q,) in queues] == ["bench_0", "bench_1", "bench_2"]


def test_refuses_a_schema_with_other_jobs_unless_forced(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA theirs")
        Migrator(conn, schema="theirs").migrate_up()
    _insert_foreign_job(db_url, "theirs")

    status, out = _bench_run("--database-url", db_url, "--schema", "theirs", "-n", "20")
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: schema theirs holds jobs that are not benchmark jobs")
    assert "'send_email' (1)" in err
    assert "--force" in err
    assert _count(db_url, "theirs") == 1  # untouched

    status, out = _bench_run("--database-url", db_url, "--schema", "theirs", "-n", "20", "--force")
    assert status == 0, out
    assert _count(db_url, "theirs", "kind = 'send_email'") == 0
    assert _count(db_url, "theirs", "kind = 'benchmark'") == 20


def test_clears_only_its_own_schema(db_url: str) -> None:
    # db_url is migrated in public: a job there must survive a bench in river_bench.
    _insert_foreign_job(db_url, "public")
    status, out = _bench_run("--database-url", db_url, "-n", "30")
    assert status == 0, out
    assert "migrated schema river_bench" in out
    assert _count(db_url, "public") == 1
    # A second run reuses (and empties) the bench schema only.
    status, out = _bench_run("--database-url", db_url, "-n", "10")
    assert status == 0, out
    assert "migrated" not in out
    assert _count(db_url, "river_bench") == 10
    assert _count(db_url, "public") == 1


def test_needs_a_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    status, _ = _bench_run("-n", "10")
    assert status == 1
    assert "pass --database-url or set DATABASE_URL" in capsys.readouterr().err


def test_flags() -> None:
    assert _bench.parse_seconds("1m30s") == 90.0
    assert _bench.parse_seconds("250ms") == 0.25
    assert _bench.parse_seconds("2.5") == 2.5
    parser = _bench.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["-n", "10", "--duration", "5"])  # one mode at a time
    with pytest.raises(SystemExit):
        parser.parse_args(["--duration", "soon"])


def test_river_bench_is_a_cli_command(capsys: pytest.CaptureFixture[str]) -> None:
    from river import cli

    assert cli.main(["bench", "--help"]) == 0
    assert "--num-total-jobs" in capsys.readouterr().out


def test_module_entry_point(db_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "river._bench", "--database-url", db_url, "-n", "50"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bench: total jobs worked [         50 ]" in result.stdout


def test_suite_smoke(server_url: str) -> None:
    """Every case of bench/ once at tiny size (no peers, docs untouched)."""
    prefix = f"rq_bench_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": server_url}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--db-prefix", prefix],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "13 cases, 0 with failures" in result.stdout
    assert "floor / psycopg / " in result.stdout  # the single insert's ceiling
    for group in ["insert", "burndown", "latency", "timed", "many-queues", "floor"]:
        assert f"{group} / " in result.stdout


def test_faults_smoke() -> None:
    """bench/faults.py's fast scenarios at smoke scale, in their own private Postgres (they
    restart and kill it, never the test server): every one meets its invariants (exit 0) and
    the report table is printed."""
    fast = "bad-input,crashing-service,leader-sigterm,leader-kill9,pg-restart-fast"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "faults.py"), "--smoke", "--only", fast],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert "| scenario | what happened | figures | command |" in result.stdout
    for name in fast.split(","):
        assert f"| `{name}` |" in result.stdout


def test_rate_is_measured_to_the_last_job_worked(db_url: str) -> None:
    """The printed rate is jobs / (last job worked - start): it once ran to the next 2 s
    report tick (every burn-down showed 2.00 s, 4.00 s...). Against the table's own clock
    (first attempted_at to last finalized_at), the two agree; the window the bench reports
    can only be a little longer (it includes the client's start)."""
    status, out = _bench_run("--database-url", db_url, "-n", "3000", "--max-workers", "200")
    assert status == 0, out
    match = re.search(
        r"worked +([\d,]+) jobs: +([\d,]+) jobs/s \((\d+\.\d+)s from start to the last job worked",
        out,
    )
    assert match, out
    assert int(match.group(1).replace(",", "")) == 3000
    seconds = float(match.group(3))
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM max(finalized_at) - min(attempted_at))::float8"
            " FROM river_bench.river_job"
        ).fetchone()
    assert row is not None
    table_seconds = row[0]
    assert table_seconds <= seconds + 0.05  # the table's span lies inside the bench's window
    assert seconds - table_seconds < 1.0  # ...and not up to a 2 s report tick


def load_faults(monkeypatch: pytest.MonkeyPatch) -> Any:
    """bench/faults.py as a module (it is a script, not a package's)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # as when run as a script
    spec = importlib.util.spec_from_file_location("bench_faults", ROOT / "bench" / "faults.py")
    assert spec is not None
    assert spec.loader is not None
    faults = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_faults", faults)  # its dataclasses look it up
    spec.loader.exec_module(faults)
    return faults


def test_faults_counts_the_workers_warning_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault scenarios count the worker's WARNING/ERROR lines, in the worker's own text
    format (a UTC time first): a format the pattern missed made every count 0."""
    faults = load_faults(monkeypatch)
    formatter = TextFormatter()

    def line(level: int) -> str:
        record = logging.LogRecord("river.notifier", level, __file__, 1, "lost", None, None)
        return formatter.format(record)

    assert [bool(faults._WARNING_LINE.match(line(level))) for level in LEVELS] == [
        False,
        False,
        True,
        True,
        True,
    ]


LEVELS = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]


def test_faults_refuses_docs_that_would_drop_other_scenarios(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--only X --write-docs`` rebuilds the docs table from the saved results: without the
    other scenarios' results (a fresh clone has none) it would silently drop their rows. It
    refuses before running anything, naming them; with their results saved it goes ahead."""
    faults = load_faults(monkeypatch)
    results = tmp_path / "results" / "faults.json"
    monkeypatch.setattr(faults, "RESULTS_FILE", results)
    monkeypatch.setattr(faults, "ROOT", tmp_path)
    with pytest.raises(SystemExit) as exited:
        faults.main(["--only", "bad-input", "--write-docs"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--write-docs would drop the rows of kill9-worker" in err
    assert "bad-input" not in err.split("drop the rows of", 1)[1].split(":", 1)[0]
    assert faults.saved_scenarios() == set()
    results.parent.mkdir()
    others = {name: {} for name in faults.SCENARIOS if name != "bad-input"}
    results.write_text(json.dumps({"info": {}, "outcomes": others}))
    assert faults.saved_scenarios() == set(others)
    ran: list[list[str]] = []

    async def run_all(opts: object, names: list[str]) -> int:  # the scenarios, stubbed
        ran.append(names)
        return 0

    monkeypatch.setattr(faults, "run_all", run_all)
    assert faults.main(["--only", "bad-input", "--write-docs"]) == 0
    assert ran == [["bad-input"]]
