"""Helpers shared by every bench script: result lines, timing, CPU of this process and of the
local Postgres server. Standard library and psycopg only, so that the peer scripts can import it
from the bench virtualenv (.venv-bench) where river is not installed.

A case script prints exactly one line ``RESULT {json}`` on stdout when it succeeds; run.py reads
it. Everything else a script prints is progress for humans.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

RESULT_PREFIX = "RESULT "


def emit(result: dict[str, Any]) -> None:
    """Print the case's result line (run.py parses it)."""
    print(RESULT_PREFIX + json.dumps(result, sort_keys=True), flush=True)


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    data = sorted(values)
    k = (len(data) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB; Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("case")
    parser.add_argument("--db", required=True, help="database URL")
    parser.add_argument("--n", type=int, default=1000, help="jobs")
    parser.add_argument("--batch", type=int, default=1000, help="batch size of bulk inserts")
    parser.add_argument("--concurrency", type=int, default=100, help="max concurrent jobs")
    parser.add_argument("--interval", type=float, default=0.01, help="latency: insert spacing")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed cases: duration")
    parser.add_argument("--sleep", type=float, default=0.01, help="timed cases: job sleep")
    parser.add_argument("--poll-only", action="store_true")
    return parser


# --------------------------------------------------------------------------------------------
# CPU
# --------------------------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""


class PgCpu:
    """CPU seconds of the local Postgres server that belong to one database's work.

    Counted: the postmaster, background processes (WAL writer, checkpointer, background writer,
    autovacuum launcher), autovacuum workers and client backends of this database. Not counted:
    backends of other databases (other test suites sharing the server). Same rules as
    river._bench.PostgresCpu. ``None`` from :meth:`locate` when the server is not local.
    """

    def __init__(self, postmaster: int, dbname: str) -> None:
        self.postmaster = postmaster
        self.dbname = dbname

    @classmethod
    def locate(cls, url: str) -> PgCpu | None:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_backend_pid(), current_database()").fetchone()
            assert row is not None
            pid, dbname = int(row[0]), str(row[1])
            stat = _proc_stat(pid)
            if (
                stat is None
                or "postgres" not in _cmdline(stat[0])
                or "postgres" not in _cmdline(pid)
            ):
                return None
        return cls(stat[0], dbname)

    def _counted(self, cmdline: str) -> bool:
        parts = cmdline.split()
        if len(parts) >= 4 and ("(" in parts[3] or parts[3] == "[local]"):
            return parts[2] == self.dbname
        if len(parts) >= 4 and parts[1:3] == ["autovacuum", "worker"]:
            return parts[3] == self.dbname
        return True

    def sample(self) -> dict[int, float]:
        out: dict[int, float] = {}
        main = _proc_stat(self.postmaster)
        if main is not None:
            out[self.postmaster] = main[1]
        with contextlib.suppress(OSError):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                stat = _proc_stat(int(entry.name))
                if stat is None or stat[0] != self.postmaster:
                    continue
                if self._counted(_cmdline(int(entry.name))):
                    out[int(entry.name)] = stat[1]
        return out

    @staticmethod
    def seconds(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class Meter:
    """Wall time, CPU of this process and Postgres CPU over a measured section."""

    def __init__(self, url: str) -> None:
        self.pg = PgCpu.locate(url)
        self.wall = self.cpu = 0.0
        self.pg_cpu: float | None = None

    def start(self) -> None:
        self._pg0 = self.pg.sample() if self.pg else None
        self._cpu0 = time.process_time()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._t0
        self.cpu = time.process_time() - self._cpu0
        if self.pg is not None and self._pg0 is not None:
            self.pg_cpu = PgCpu.seconds(self._pg0, self.pg.sample())

    def result(self, jobs: int, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "jobs": jobs,
            "seconds": self.wall,
            "jobs_per_s": jobs / self.wall if self.wall > 0 else 0.0,
            "cpu_us_per_job": self.cpu / jobs * 1e6 if jobs else None,
            "pg_cpu_us_per_job": (
                self.pg_cpu / jobs * 1e6 if self.pg_cpu is not None and jobs else None
            ),
            "rss_mb": peak_rss_mb(),
        }
        out.update(extra)
        return out


def latency_result(samples_ms: list[float], jobs: int, **extra: Any) -> dict[str, Any]:
    return {
        "jobs": jobs,
        "started": len(samples_ms),
        "p50_ms": percentile(samples_ms, 50),
        "p95_ms": percentile(samples_ms, 95),
        "p99_ms": percentile(samples_ms, 99),
        "max_ms": max(samples_ms) if samples_ms else float("nan"),
        "rss_mb": peak_rss_mb(),
        **extra,
    }
