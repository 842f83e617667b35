"""The wheel ships the migrations and the migrator finds them there (not only in a checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = REPO_ROOT / "migrations"


def test_wheel_contains_migrations_and_finds_them(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO_ROOT)],
        check=True,
        capture_output=True,
        timeout=110,
    )
    [wheel] = list(out.glob("river_queue-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        expected = {
            f"river/migrations/{path.relative_to(MIGRATIONS).as_posix()}"
            for path in MIGRATIONS.rglob("*.sql")
        }
        assert len(expected) == 14
        assert expected <= names
        assert "river/_sql/river_migration.sql" in names
        for name in sorted(expected):
            source = MIGRATIONS / name.removeprefix("river/migrations/")
            assert zf.read(name) == source.read_bytes()
        zf.extractall(tmp_path / "site")

    # Import the unpacked wheel (not the checkout) from a directory without migrations/ nearby.
    probe = (
        "import river, river.migrate as m; "
        "print(river.__file__); print(len(m.load_migrations())); print(m._migrations_root())"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    river_file, count, root = result.stdout.splitlines()
    assert river_file.startswith(str(tmp_path / "site"))
    assert count == "7"
    assert root == str(tmp_path / "site" / "river" / "migrations")
