"""The benchmark suite: ``make bench`` (or ``.venv/bin/python bench/run.py``).

Runs every case of river-queue (bench/river_cases.py) and of the peers, PgQueuer and
procrastinate (bench/peer_*.py, in their own virtualenv .venv-bench), each case in a fresh
process, on the same Postgres (the embedded one of ``river.dev``, or $DATABASE_URL's server),
each library in a database of its own created here. Every case runs ``--runs`` times (default 3)
and is reported as median, min and max. Writes docs/performance.md, the chart
docs/performance-throughput.png (matplotlib, from .venv-bench) and bench/results/latest.json.

Options::

    --smoke            tiny sizes, 1 run, no peers, docs untouched (unless --write-docs)
    --runs N           repetitions per case (default 3; smoke 1)
    --no-peers         river-queue only
    --only A,B         only these groups: floor, insert, burndown, latency, timed, many-queues
    --size KEY=VALUE   override a size (repeatable; also $RIVER_BENCH_SIZES="k=v,k=v")
    --write-docs       write docs/performance.md (+ chart) even in smoke mode
    --no-docs          do not write docs
    --json PATH        raw results file (default bench/results/latest.json; smoke: none)
    --db-prefix NAME   prefix of the databases created (default river_bench)
    --keep-databases   do not drop them at the end
    --from-json PATH   only re-render docs/performance.md and the chart from saved results

Sizes (KEY: full / smoke): see SIZES below.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import conninfo, sql

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DOCS = ROOT / "docs"
BENCH_VENV = ROOT / ".venv-bench"
BENCH_PY = BENCH_VENV / "bin" / "python"
PEER_PACKAGES = ["procrastinate", "pgqueuer", "asyncpg", "matplotlib"]

#: The psycopg-alone insert case (bench/river_cases.py insert-psycopg).
PSYCOPG_ALONE = "insert's statement, psycopg alone"
#: Cases run by this project's interpreter, in its own database (the rest are peers').
OWN_LIBS = ("river-queue", "postgres", "psycopg")
#: name: (full, smoke)
SIZES: dict[str, tuple[float, float]] = {
    "insert_one_n": (10_000, 200),
    "insert_many_n": (100_000, 2_000),
    "insert_many_batch": (1_000, 500),
    "insert_fast_n": (100_000, 2_000),
    "insert_fast_batch": (5_000, 1_000),
    "burndown_n": (100_000, 1_000),
    "burndown_n_c10": (20_000, 500),  # concurrency 10 is slow for everyone
    "latency_n": (1_000, 50),
    "latency_interval": (0.01, 0.01),
    "timed_seconds": (10, 0.5),
    "timed_backlog_seconds": (5, 0.2),
    "many_queues": (2_000, 20),
    "many_jobs": (1_000_000, 1_000),
    "many_idle_seconds": (30, 1),
    "many_runs": (1, 1),
    # Slower peers get smaller sizes (rates are per job, so comparable).
    "procrastinate_insert_one_n": (2_000, 100),
    "procrastinate_insert_many_n": (20_000, 1_000),
    "procrastinate_burndown_n": (1_500, 200),
}
#: The server settings recorded with the results (``SHOW`` of each) and shown in the report.
PG_SETTINGS = [
    "shared_buffers",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "max_wal_size",
    "checkpoint_timeout",
    "max_connections",
    "work_mem",
]
GROUPS = ["floor", "insert", "burndown", "latency", "timed", "many-queues"]
CONCURRENCY = [10, 100, 1000]
TIMED_SLOTS = [32, 128]


@dataclass
class Case:
    group: str
    library: str
    name: str  # variant label used in tables
    script: str
    argv: list[str]
    runs: int
    timeout: float
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


def ensure_bench_venv(upgrade: bool) -> bool:
    """Create .venv-bench with the peers and matplotlib (never in the main venv)."""
    stamp = BENCH_VENV / ".bench-installed"
    if stamp.exists() and not upgrade:
        return True
    try:
        if not BENCH_PY.exists():
            log(f"creating {BENCH_VENV} for the peers")
            subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
            subprocess.run(
                [str(BENCH_PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True
            )
        log(f"installing the latest {', '.join(PEER_PACKAGES)} into {BENCH_VENV}")
        subprocess.run(
            [str(BENCH_PY), "-m", "pip", "install", "--quiet", "--upgrade", *PEER_PACKAGES],
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        log(f"cannot set up {BENCH_VENV}: {exc}; running without peers")
        return False
    stamp.write_text(" ".join(PEER_PACKAGES) + "\n")
    return True


def url_for(url: str, dbname: str) -> str:
    """A postgresql:// URI of another database on the same server (asyncpg wants a URI)."""
    params = conninfo.conninfo_to_dict(url)
    user = quote(str(params.pop("user", "") or ""), safe="")
    password = params.pop("password", None)
    auth = f"{user}:{quote(str(password), safe='')}@" if password else (f"{user}@" if user else "")
    host = str(params.pop("host", "localhost"))
    port = params.pop("port", None)
    params.pop("dbname", None)
    hostport = f"{host}:{port}" if port else host
    query = ("?" + urlencode({k: str(v) for k, v in params.items()})) if params else ""
    return f"postgresql://{auth}{hostport}/{quote(dbname)}{query}"


def recreate_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def machine_info(server_url: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    settings = ["server_version", *PG_SETTINGS]
    with psycopg.connect(server_url, autocommit=True) as conn:
        info["postgres"] = {}
        for name in settings:
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            info["postgres"][name] = row[0] if row else None
    return info


def peer_versions() -> dict[str, str]:
    if not BENCH_PY.exists():
        return {}
    code = (
        "import importlib.metadata as m, json;"
        f"print(json.dumps({{p: m.version(p) for p in {PEER_PACKAGES!r}}}))"
    )
    out = subprocess.run([str(BENCH_PY), "-c", code], capture_output=True, text=True, check=False)
    try:
        return dict(json.loads(out.stdout))
    except ValueError:
        return {}


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


def build_cases(
    s: dict[str, float], runs: int, groups: list[str], peers: bool, levels: list[int]
) -> list[Case]:
    i = int
    cases: list[Case] = []

    def add(group: str, lib: str, name: str, script: str, argv: list[str], **kw: Any) -> None:
        if group in groups and (lib in OWN_LIBS or peers):
            cases.append(
                Case(group, lib, name, script, argv, kw.get("runs", runs), kw.get("timeout", 600))
            )

    rc, pq, pc = "river_cases.py", "peer_pgqueuer.py", "peer_procrastinate.py"

    def one(case: str, n_key: str) -> list[str]:
        return [case, "--n", str(i(s[n_key]))]

    def batches(case: str, n_key: str, batch_key: str) -> list[str]:
        return [case, "--n", str(i(s[n_key])), "--batch", str(i(s[batch_key]))]

    single, many = "insert (one at a time)", "insert_many (batches)"
    add("floor", "postgres", "one-row INSERT per commit", rc, one("pg-floor", "insert_one_n"))
    add("floor", "psycopg", PSYCOPG_ALONE, rc, one("insert-psycopg", "insert_one_n"))
    add("insert", "river-queue", single, rc, one("insert-one", "insert_one_n"))
    add(
        "insert",
        "river-queue",
        many,
        rc,
        batches("insert-many", "insert_many_n", "insert_many_batch"),
    )
    add(
        "insert",
        "river-queue",
        "insert_many_fast (COPY)",
        rc,
        batches("insert-fast", "insert_fast_n", "insert_fast_batch"),
    )
    add("insert", "pgqueuer", single, pq, one("insert-one", "insert_one_n"))
    add(
        "insert", "pgqueuer", many, pq, batches("insert-many", "insert_many_n", "insert_many_batch")
    )
    add("insert", "procrastinate", single, pc, one("insert-one", "procrastinate_insert_one_n"))
    add(
        "insert",
        "procrastinate",
        many,
        pc,
        batches("insert-many", "procrastinate_insert_many_n", "insert_many_batch"),
    )
    for c in levels:
        n = str(i(s["burndown_n_c10"] if c <= 10 else s["burndown_n"]))
        add("burndown", "river-queue", str(c), rc, ["burndown", "--n", n, "--concurrency", str(c)])
        add(
            "burndown",
            "pgqueuer",
            str(c),
            pq,
            ["burndown", "--n", n, "--concurrency", str(max(c, 20))],
        )
        add(
            "burndown",
            "procrastinate",
            str(c),
            pc,
            ["burndown", "--n", str(i(s["procrastinate_burndown_n"])), "--concurrency", str(c)],
        )
    lat = ["--n", str(i(s["latency_n"])), "--interval", str(s["latency_interval"])]
    add("latency", "river-queue", "LISTEN/NOTIFY", rc, ["latency", *lat])
    add("latency", "river-queue", "poll_only", rc, ["latency", *lat, "--poll-only"])
    add("latency", "pgqueuer", "LISTEN/NOTIFY", pq, ["latency", *lat])
    add("latency", "procrastinate", "LISTEN/NOTIFY", pc, ["latency", *lat])
    for slots in TIMED_SLOTS:
        add(
            "timed",
            "river-queue",
            str(slots),
            rc,
            [
                "timed",
                "--concurrency",
                str(slots),
                "--sleep",
                "0.01",
                "--seconds",
                str(s["timed_seconds"]),
                "--backlog-seconds",
                str(s["timed_backlog_seconds"]),
            ],
        )
    queues, jobs, idle = str(i(s["many_queues"])), str(i(s["many_jobs"])), s["many_idle_seconds"]
    add(
        "many-queues",
        "river-queue",
        queues,
        rc,
        ["many-queues", "--queues", queues, "--n", jobs, "--seconds", str(idle)],
        runs=i(s["many_runs"]),
        timeout=2400,
    )
    return cases


LOAD_SAMPLES: list[float] = []


def run_case(case: Case, url: str) -> None:
    python = sys.executable if case.library in OWN_LIBS else str(BENCH_PY)
    cmd = [python, str(BENCH / case.script), *case.argv, "--db", url]
    for n in range(case.runs):
        LOAD_SAMPLES.append(os.getloadavg()[0])
        log(f"{case.group} / {case.library} / {case.name}: run {n + 1} of {case.runs}")
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=case.timeout, cwd=ROOT, check=False
            )
        except subprocess.TimeoutExpired:
            case.errors.append(f"timed out after {case.timeout:.0f}s")
            log(f"  timed out: {shlex.join(cmd)}")
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            case.errors.append(" | ".join(tail) or f"exit {proc.returncode}")
            log(f"  failed (exit {proc.returncode}): {shlex.join(cmd)}\n    " + "\n    ".join(tail))
            continue
        result = json.loads(lines[-1][len("RESULT ") :])
        case.results.append(result)
        log("  " + _short(result))


def _short(result: dict[str, Any]) -> str:
    keys = [
        "jobs_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "cpu_us_per_job",
        "pg_cpu_us_per_job",
        "capacity_jobs_per_s",
        "steady_jobs_per_s",
        "idle_queries_per_s",
    ]
    return ", ".join(f"{k}={result[k]:.1f}" for k in keys if isinstance(result.get(k), float))


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def stats(case: Case, key: str) -> tuple[float, float, float] | None:
    values = [
        float(r[key])
        for r in case.results
        if isinstance(r.get(key), int | float) and r[key] == r[key]
    ]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def cell(case: Case | None, key: str, digits: int = 0, spread: bool = True) -> str:
    if case is None:
        return "-"
    st = stats(case, key)
    if st is None:
        return "failed" if case.errors and not case.results else "n/a"
    med, lo, hi = st
    if not spread or len(case.results) < 2:
        return fmt(med, digits)
    return f"{fmt(med, digits)} ({fmt(lo, digits)}–{fmt(hi, digits)})"


def find(cases: list[Case], group: str, library: str, name: str) -> Case | None:
    for c in cases:
        if (c.group, c.library, c.name) == (group, library, name):
            return c
    return None


def _jobs(case: Case | None) -> str:
    if case is None or not case.results:
        return "-"
    return f"{int(case.results[0].get('jobs', 0)):,}"


def report(
    cases: list[Case],
    info: dict[str, Any],
    sizes: dict[str, float],
    runs: int,
    command: str,
    elapsed: float,
    chart: bool,
    levels: list[int],
) -> str:
    libs = ["river-queue", "pgqueuer", "procrastinate"]
    out: list[str] = []
    add = out.append
    intro = (BENCH / "performance_intro.md").read_text()
    add(intro.rstrip() + "\n")
    add("## Results\n")
    generated = info.get("generated", time.strftime("%Y-%m-%d %H:%M %Z"))
    add(
        f"Generated by `{command}` on {generated} in "
        f"{elapsed / 60:.1f} minutes. Each cell: median (min–max) of {runs} runs unless noted; "
        "CPU figures are microseconds per job: *client* = CPU time of the benchmark process "
        "(library + driver + asyncio) / jobs, *Postgres* = CPU of the server processes serving "
        "that database plus its background processes (read from /proc) / jobs.\n"
    )
    load = info.get("load", {})
    add(
        f"Machine load (1-minute load average) at the start: {load.get('start', 'n/a')}, at the "
        f"end: {load.get('end', 'n/a')}, highest before a run: {load.get('max', 'n/a')}. A load "
        "above 2 means other processes (other test suites) competed for the 2 cores during the "
        "run (see *Noise* above).\n"
    )

    add("### Inserts (jobs/s)\n")
    add("| library | method | jobs | jobs/s | client CPU µs/job | Postgres CPU µs/job |")
    add("|---|---|---:|---:|---:|---:|")
    floor = find(cases, "floor", "postgres", "one-row INSERT per commit")
    if floor:
        add(
            f"| Postgres alone | one-row INSERT per commit (the fsync floor) | {_jobs(floor)} | "
            f"{cell(floor, 'jobs_per_s')} | {cell(floor, 'cpu_us_per_job', 0, False)} | "
            f"{cell(floor, 'pg_cpu_us_per_job', 0, False)} |"
        )
    alone = find(cases, "floor", "psycopg", PSYCOPG_ALONE)
    if alone:
        add(
            f"| psycopg alone | `insert`'s statement and parameters, no library (its ceiling) | "
            f"{_jobs(alone)} | {cell(alone, 'jobs_per_s')} | "
            f"{cell(alone, 'cpu_us_per_job', 0, False)} | "
            f"{cell(alone, 'pg_cpu_us_per_job', 0, False)} |"
        )
    for lib in libs:
        for name in ["insert (one at a time)", "insert_many (batches)", "insert_many_fast (COPY)"]:
            c = find(cases, "insert", lib, name)
            if c is None:
                continue
            batch = c.results[0].get("batch") if c.results else None
            label = name + (f", {batch:,}/batch" if batch else "")
            add(
                f"| {lib} | {label} | {_jobs(c)} | {cell(c, 'jobs_per_s')} | "
                f"{cell(c, 'cpu_us_per_job', 1, False)} | "
                f"{cell(c, 'pg_cpu_us_per_job', 1, False)} |"
            )
    add("")

    add("### No-op burn-down (jobs/s)\n")
    add(
        "All jobs inserted first, then one worker process works them down; jobs/s = jobs / time "
        "from the worker's start until every job is recorded as done.\n"
    )
    add("| library | concurrency | jobs | jobs/s | client CPU µs/job | Postgres CPU µs/job |")
    add("|---|---:|---:|---:|---:|---:|")
    for lib in libs:
        for level in [str(x) for x in levels]:
            c = find(cases, "burndown", lib, level)
            if c is None:
                continue
            actual = c.results[0].get("concurrency") if c.results else None
            label = level if actual in (None, int(level)) else f"{level} (ran {actual})"
            add(
                f"| {lib} | {label} | {_jobs(c)} | {cell(c, 'jobs_per_s')} | "
                f"{cell(c, 'cpu_us_per_job', 1)} | {cell(c, 'pg_cpu_us_per_job', 1)} |"
            )
    add("")
    if chart:
        add("![Burn-down throughput vs concurrency](performance-throughput.png)\n")

    add("### Insert → start latency (ms)\n")
    add(
        "An idle worker (max 100 concurrent jobs); a second client in the same process inserts "
        "one job every 10 ms. Latency = the worker's `time.time()` when the job starts minus "
        "`time.time()` just *before* the insert call (so the insert's own round trip is "
        "included). *p50 after* measures from just after the insert call returned.\n"
    )
    add("| library | mode | jobs | p50 | p95 | p99 | p50 after |")
    add("|---|---|---:|---:|---:|---:|---:|")
    for lib in libs:
        for mode in ["LISTEN/NOTIFY", "poll_only"]:
            c = find(cases, "latency", lib, mode)
            if c is None:
                continue
            add(
                f"| {lib} | {mode} | {_jobs(c)} | {cell(c, 'p50_ms', 2)} | "
                f"{cell(c, 'p95_ms', 2)} | "
                f"{cell(c, 'p99_ms', 2)} | {cell(c, 'p50_after_ms', 2, False)} |"
            )
    add("")

    add("### Timed work: 10 ms jobs (river-queue)\n")
    add(
        "Jobs sleep 10 ms (`asyncio.sleep`). *Capacity*: a backlog of slots × 100 × "
        f"{sizes['timed_backlog_seconds']:g} jobs burned down (ideal: slots / 10 ms). *Steady*: "
        f"then for {sizes['timed_seconds']:g} s a second client inserts (COPY, every 10 ms) at 70% "
        "of the measured capacity; throughput = completed / (last finalized_at − first "
        "created_at), latency = finalized_at − created_at of the rows.\n"
    )
    add(
        "| slots | ideal jobs/s | capacity jobs/s | client CPU µs/job | steady offered jobs/s | "
        "steady jobs/s | created→finalized p50 ms | p95 ms | p99 ms |"
    )
    add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for slots in TIMED_SLOTS:
        c = find(cases, "timed", "river-queue", str(slots))
        if c is None:
            continue
        add(
            f"| {slots} | {slots * 100:,} | {cell(c, 'capacity_jobs_per_s')} | "
            f"{cell(c, 'capacity_cpu_us_per_job', 0, False)} | "
            f"{cell(c, 'offered_jobs_per_s', 0, False)} | {cell(c, 'steady_jobs_per_s')} | "
            f"{cell(c, 'p50_ms', 1)} | {cell(c, 'p95_ms', 1)} | {cell(c, 'p99_ms', 1)} |"
        )
    add("")

    mq = [c for c in cases if c.group == "many-queues"]
    if mq:
        c = mq[0]
        add(f"### Many queues: {c.name} queues (river-queue)\n")
        add(
            f"A running client gets {c.name} queues added with `client.queues.add` (max_workers "
            f"100 each); with it stopped, {int(sizes['many_jobs']):,} no-op jobs go in by COPY, "
            "spread round robin over the queues (each fetch then touches rows scattered over "
            "the table); the client starts again and drains them all while, on the side, a "
            "queue is added and removed every 100 ms (the latency of each under load). Then, "
            "with the client running and every queue empty, the database's transactions per "
            f"second over {sizes['many_idle_seconds']:g} s (pg_stat_database xact_commit + "
            "xact_rollback, read from another database, so the measurement itself is not "
            "counted; each statement of the client is one transaction); then every queue is "
            f"removed. Runs: {len(c.results)}.\n"
        )
        add("| measure | value |")
        add("|---|---:|")
        rows = [
            ("add every queue to the running client, s", "add_all_s", 2),
            ("add one queue (idle client), p50 / p99 ms", ("add_p50_ms", "add_p99_ms"), 2),
            ("insert (COPY) jobs/s", "insert_jobs_per_s", 0),
            ("client start() with all queues and the backlog, s", "start_s", 2),
            ("drain jobs/s", "jobs_per_s", 0),
            ("client CPU µs/job while draining", "cpu_us_per_job", 1),
            ("Postgres CPU µs/job while draining", "pg_cpu_us_per_job", 1),
            (
                "add a queue while draining, p50 / p99 ms",
                ("load_add_p50_ms", "load_add_p99_ms"),
                1,
            ),
            (
                "remove a queue while draining, p50 / p99 ms",
                ("load_remove_p50_ms", "load_remove_p99_ms"),
                1,
            ),
            ("idle queries/s (all queues empty)", "idle_queries_per_s", 1),
            ("remove every queue (client.queues.remove), s", "remove_all_s", 2),
            ("peak RSS of the process, MiB", "rss_mb", 0),
        ]
        for label, key, digits in rows:
            if isinstance(key, tuple):
                value = " / ".join(cell(c, k, digits, spread=False) for k in key)
            else:
                value = cell(c, key, digits)
            add(f"| {label} | {value} |")
        add("")

    add("### Targets\n")
    add("| measure | target | measured (median) |")
    add("|---|---|---:|")

    def med(group: str, lib: str, name: str, key: str, digits: int = 0) -> str:
        return cell(find(cases, group, lib, name), key, digits, spread=False)

    best_burn = max(
        (
            (stats(c, "jobs_per_s") or (0.0, 0.0, 0.0))[0]
            for c in cases
            if c.group == "burndown" and c.library == "river-queue"
        ),
        default=0.0,
    )
    add(f"| no-op burn-down, worked jobs/s (best concurrency) | >= 24,000 | {fmt(best_burn)} |")
    add(
        f"| `insert_many_fast` (COPY), jobs/s | >= 75,000 | "
        f"{med('insert', 'river-queue', 'insert_many_fast (COPY)', 'jobs_per_s')} |"
    )
    add(
        f"| `insert_many` (returning rows), jobs/s | >= 50,000 | "
        f"{med('insert', 'river-queue', 'insert_many (batches)', 'jobs_per_s')} |"
    )
    add(
        f"| single `insert`, jobs/s | >= 2,700 | "
        f"{med('insert', 'river-queue', 'insert (one at a time)', 'jobs_per_s')} "
        f"(the same statement through psycopg alone: "
        f"{med('floor', 'psycopg', PSYCOPG_ALONE, 'jobs_per_s')}; Postgres floor: "
        f"{med('floor', 'postgres', 'one-row INSERT per commit', 'jobs_per_s')}) |"
    )
    add(
        f"| insert→start latency p50 / p99, LISTEN | <= 2.0 / 4.0 ms | "
        f"{med('latency', 'river-queue', 'LISTEN/NOTIFY', 'p50_ms', 2)} / "
        f"{med('latency', 'river-queue', 'LISTEN/NOTIFY', 'p99_ms', 2)} |"
    )
    cpu_cells = [
        cell(find(cases, "burndown", "river-queue", str(x)), "cpu_us_per_job", 1, False)
        for x in levels
    ]
    add(
        "| library CPU per no-op job (concurrency "
        + " / ".join(str(x) for x in levels)
        + ") | <= 60 / 30 / 20 µs | "
        + " / ".join(cpu_cells)
        + " |"
    )
    if mq:
        add(
            f"| {mq[0].name} idle queues, queries/s | <= 10 | "
            f"{cell(mq[0], 'idle_queries_per_s', 1, False)} |"
        )
        drain = stats(mq[0], "jobs_per_s")
        if drain is not None and best_burn:
            add(
                f"| {mq[0].name}-queue drain, share of the best single-queue burn-down | "
                f">= 80 % | {drain[0] / best_burn:.0%} ({fmt(drain[0])} / {fmt(best_burn)}) |"
            )
    add("")

    failures = [c for c in cases if c.errors]
    if failures:
        add("### Failures\n")
        for c in failures:
            add(f"- {c.group} / {c.library} / {c.name}: {'; '.join(c.errors)}")
        add("")

    add("## Machine and Postgres\n")
    pg = info.get("postgres", {})
    add("| | |")
    add("|---|---|")
    add(f"| CPU | {info.get('cpu', 'n/a')}, {info.get('nproc')} cores (nproc) |")
    add(f"| RAM | {info.get('ram_gib', 'n/a')} GiB |")
    add(f"| OS | {info.get('platform')} |")
    add(f"| Python | {info.get('python')} |")
    add(f"| Postgres | {pg.get('server_version')} |")
    for key in PG_SETTINGS:
        add(f"| `SHOW {key}` | {pg.get(key)} |")
    versions = info.get("versions", {})
    add("| libraries | " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + " |")
    add("")
    add("## Exact commands\n")
    add("```")
    add(f"{command}")
    add("# which ran, per case and run (DATABASE URL elided):")
    for c in cases:
        runner = "python" if c.library in OWN_LIBS else ".venv-bench/bin/python"
        add(f"{runner} bench/{c.script} {shlex.join(c.argv)} --db URL   # x{c.runs}")
    add("```")
    add("")
    return "\n".join(out)


def write_chart(cases: list[Case], path: Path) -> bool:
    data: dict[str, list[tuple[int, float, float, float]]] = {}
    for c in cases:
        if c.group != "burndown":
            continue
        st = stats(c, "jobs_per_s")
        if st is None:
            continue
        actual = int(c.results[0].get("concurrency", c.name)) if c.results else int(c.name)
        data.setdefault(c.library, []).append((actual, *st))
    if not data or not BENCH_PY.exists():
        return False
    payload = json.dumps({lib: sorted(points) for lib, points in data.items()})
    proc = subprocess.run(
        [str(BENCH_PY), str(BENCH / "chart.py"), str(path)],
        input=payload,
        text=True,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        log(f"chart failed: {proc.stderr.strip()}")
        return False
    return True


def render_from_json(path: Path) -> int:
    """Rewrite docs/performance.md and the chart from a saved results file (no benchmark)."""
    data = json.loads(path.read_text())
    cases = [Case(**c) for c in data["cases"]]
    chart = write_chart(cases, DOCS / "performance-throughput.png")
    text = report(
        cases,
        data["info"],
        data["sizes"],
        data["runs"],
        data.get("command", "make bench"),
        float(data.get("elapsed", 0.0)),
        chart,
        list(data.get("levels", CONCURRENCY)),
    )
    (DOCS / "performance.md").write_text(text)
    log(f"wrote {DOCS / 'performance.md'} from {path}")
    return 0


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_sizes(smoke: bool, overrides: list[str]) -> dict[str, float]:
    sizes = {k: (v[1] if smoke else v[0]) for k, v in SIZES.items()}
    env = os.environ.get("RIVER_BENCH_SIZES", "")
    for item in [x for x in env.split(",") if x.strip()] + overrides:
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in sizes:
            raise SystemExit(f"unknown size {key!r}; known: {', '.join(sizes)}")
        sizes[key] = float(value)
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--upgrade-peers", action="store_true")
    parser.add_argument("--only", default="")
    parser.add_argument("--size", action="append", default=[])
    parser.add_argument("--concurrency", default=",".join(str(x) for x in CONCURRENCY))
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument("--write-docs", action="store_true")
    docs.add_argument("--no-docs", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--db-prefix", default="river_bench")
    parser.add_argument("--keep-databases", action="store_true")
    parser.add_argument(
        "--from-json", default=None, help="only re-render the docs from a results file"
    )
    opts = parser.parse_args(argv)
    if opts.from_json:
        return render_from_json(Path(opts.from_json))

    started = time.monotonic()
    runs = opts.runs or (1 if opts.smoke else 3)
    sizes = parse_sizes(opts.smoke, opts.size)
    groups = [g.strip() for g in opts.only.split(",") if g.strip()] or GROUPS
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; known: {', '.join(GROUPS)}")
    levels = [int(x) for x in opts.concurrency.split(",") if x.strip()]
    peers = not opts.no_peers and not opts.smoke
    if peers:
        peers = ensure_bench_venv(opts.upgrade_peers)
    write_docs = opts.write_docs or (not opts.smoke and not opts.no_docs)
    default_json = BENCH / "results" / "latest.json"
    json_path = Path(opts.json) if opts.json else (None if opts.smoke else default_json)

    sys.path.insert(0, str(ROOT))
    from river import __version__ as river_version
    from river import dev

    server_url = dev.database_url()
    dbs = {
        "river-queue": f"{opts.db_prefix}_river",
        "postgres": f"{opts.db_prefix}_river",
        "psycopg": f"{opts.db_prefix}_river",
        "pgqueuer": f"{opts.db_prefix}_pgqueuer",
        "procrastinate": f"{opts.db_prefix}_procrastinate",
    }
    for name in sorted(set(dbs.values())):
        recreate_database(server_url, name)
    info = machine_info(server_url)
    info["load"] = {"start": f"{os.getloadavg()[0]:.2f}"}
    versions = {"river-queue": river_version}
    if peers:
        versions.update(peer_versions())
    info["versions"] = versions
    log(f"server {info['postgres'].get('server_version')}; load {info['load']['start']}")

    cases = build_cases(sizes, runs, groups, peers, levels)
    try:
        for case in cases:
            run_case(case, url_for(server_url, dbs[case.library]))
    finally:
        if not opts.keep_databases:
            for name in sorted(set(dbs.values())):
                drop_database(server_url, name)
    info["load"]["end"] = f"{os.getloadavg()[0]:.2f}"
    info["generated"] = time.strftime("%Y-%m-%d %H:%M %Z")
    if LOAD_SAMPLES:
        info["load"]["max"] = f"{max(LOAD_SAMPLES):.2f}"
    elapsed = time.monotonic() - started

    command = (
        "make bench"
        if not argv and not sys.argv[1:]
        else shlex.join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    )
    chart = False
    if write_docs:
        chart = write_chart(cases, DOCS / "performance-throughput.png")
        text = report(cases, info, sizes, runs, command, elapsed, chart, levels)
        (DOCS / "performance.md").write_text(text)
        log(f"wrote {DOCS / 'performance.md'}" + (" and the chart" if chart else ""))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(
            json.dumps(
                {
                    "command": command,
                    "elapsed": elapsed,
                    "levels": levels,
                    "info": info,
                    "sizes": sizes,
                    "runs": runs,
                    "cases": [{k: v for k, v in c.__dict__.items()} for c in cases],
                },
                indent=1,
            )
        )
    failed = [c for c in cases if c.errors]
    log(f"done in {elapsed / 60:.1f} min; {len(cases)} cases, {len(failed)} with failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
