"""Every example runs against a real database (each in a fresh one) and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if p.name != "demo.py")


def _run(args: list[str], db_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_every_example_is_tested() -> None:
    assert set(SCRIPTS) >= {
        "quickstart.py",
        "transactional_enqueue_sync.py",
        "transactional_enqueue_async.py",
        "fastapi_app.py",
    }


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script: str, empty_db_url: str) -> None:
    # On a database River was never migrated in, as a new user's: each example migrates it.
    result = _run([str(EXAMPLES / script)], empty_db_url)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{script} printed nothing"


def test_demo_small(empty_db_url: str) -> None:
    result = _run([str(EXAMPLES / "demo.py"), "--jobs", "600"], empty_db_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary: 600 jobs finished" in result.stdout
    assert "completed" in result.stdout
