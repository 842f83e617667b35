"""Release readiness: ``python -m build`` makes an sdist and a wheel (the wheel built from the
sdist, as a release does), the wheel ships the migrations and the migrator finds them there
(not only in a checkout), and the wheel installed alone in a fresh virtualenv migrates a
database and works a job end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

import river

REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = REPO_ROOT / "migrations"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build``'s output: the sdist, and the wheel built from it."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO_ROOT)],
        check=True,
        capture_output=True,
        timeout=110,
    )
    return out


def _wheel(dist: Path) -> Path:
    [wheel] = list(dist.glob("river_queue-*.whl"))
    return wheel


def test_build_makes_an_sdist_and_a_wheel_of_this_version(dist: Path) -> None:
    version = river.__version__
    assert _wheel(dist).name == f"river_queue-{version}-py3-none-any.whl"
    [sdist] = list(dist.glob("river_queue-*.tar.gz"))
    assert sdist.name == f"river_queue-{version}.tar.gz"
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    # What a build from the sdist alone needs, and what users read.
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "river/_version.py"} <= names
    assert {
        f"migrations/{p.relative_to(MIGRATIONS).as_posix()}" for p in MIGRATIONS.rglob("*.sql")
    } <= names
    with zipfile.ZipFile(_wheel(dist)) as zf:
        metadata = zf.read(f"river_queue-{version}.dist-info/METADATA").decode()
    assert "Requires-Python: >=3.11" in metadata
    for minor in (11, 12, 13):
        assert f"Classifier: Programming Language :: Python :: 3.{minor}" in metadata


def test_wheel_contains_migrations_and_finds_them(dist: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(_wheel(dist)) as zf:
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


#: Run by the fresh virtualenv's Python, far from the checkout: migrate an empty database with
#: the migrations inside the wheel, then insert a job and work it with a client.
END_TO_END = textwrap.dedent(
    """
    import asyncio
    import os
    import sys
    from typing import ClassVar

    import psycopg

    import river
    from river.migrate import Migrator

    assert river.__file__.startswith(sys.prefix), river.__file__
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        print("migrated", [v.version for v in Migrator(conn).migrate_up().versions])


    class Ping(river.JobArgs):
        kind: ClassVar[str] = "ping"
        n: int


    class PingWorker(river.Worker[Ping]):
        async def work(self, job: river.Job[Ping]) -> None:
            river.record_output({"pong": job.args.n})


    async def main() -> None:
        workers = river.Workers()
        workers.add(PingWorker())
        config = river.Config(queues={"default": river.QueueConfig()}, workers=workers)
        async with river.AsyncClient(url, config) as client:
            job = (await client.insert(Ping(n=7))).job
            for _ in range(1000):
                row = await client.job_get(job.id)
                if row.state is river.JobState.COMPLETED:
                    print("completed", row.metadata["output"])
                    return
                await asyncio.sleep(0.01)
            raise SystemExit(f"job not completed: {row.state}")


    asyncio.run(main())
    """
)


@pytest.mark.timeout(400)
def test_wheel_in_a_fresh_virtualenv_works_a_job(
    dist: Path, empty_db_url: str, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bindir = env_dir / "bin"
    # Dependencies come from the package index (or pip's cache): what a user's install does.
    subprocess.run(
        [bindir / "python", "-m", "pip", "install", "--quiet", str(_wheel(dist))],
        check=True,
        capture_output=True,
        timeout=360,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["DATABASE_URL"] = empty_db_url
    script = tmp_path / "end_to_end.py"
    script.write_text(END_TO_END)
    result = subprocess.run(
        [bindir / "python", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "migrated [1, 2, 3, 4, 5, 6, 7]",
        "completed {'pong': 7}",
    ]
    # The installed command: same version as the package, and it reads the migrations too.
    version = subprocess.run(
        [bindir / "river", "--version"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert version.splitlines()[0] == f"River version {river.__version__}"
    listing = subprocess.run(
        [bindir / "river", "migrate-list"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert listing.splitlines()[-1].startswith("* 007 ")


def test_river_version_agrees_with_the_package() -> None:
    bindir = Path(sys.executable).parent
    for argv in (["--version"], ["version"]):
        out = subprocess.run(
            [bindir / "river", *argv], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        assert out.splitlines()[0] == f"River version {river.__version__}"
