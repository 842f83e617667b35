"""river.dev: the embedded Postgres (fresh clusters in temporary directories)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from river import cli, dev


@pytest.fixture
def dev_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for a private cluster, stopped and removed after the test (also when the
    cluster had to live elsewhere because the server's user cannot enter tmp_path)."""
    root = tmp_path / ".river"
    data_dirs: list[Path] = []
    yield root
    server = dev.status(root)
    if server is not None:
        data_dirs.append(server.data_dir)
    dev.stop(root)
    state = dev._read_state(root)
    if state is not None:
        data_dirs.append(Path(str(state["data_dir"])))
    for data_dir in data_dirs:
        if not data_dir.is_relative_to(tmp_path):
            shutil.rmtree(data_dir.parent, ignore_errors=True)


def _select_one(url: str) -> int:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


def test_start_reuse_status_stop(dev_dir: Path) -> None:
    assert dev.status(dev_dir) is None
    server = dev.start(dev_dir)
    assert _select_one(server.url) == 1
    assert server.url.endswith(f"/{dev.DEV_DATABASE}")
    # A second start reuses the running server.
    again = dev.start(dev_dir)
    assert (again.port, again.data_dir) == (server.port, server.data_dir)
    status = dev.status(dev_dir)
    assert status is not None
    assert status.port == server.port
    if os.geteuid() == 0:
        # Postgres refuses root: the data directory belongs to the unprivileged user.
        assert server.data_dir.stat().st_uid != 0
    assert dev.stop(dev_dir) is True
    assert dev.status(dev_dir) is None
    assert dev.stop(dev_dir) is False
    # Started again from the same data directory, on the same port while it is free: an
    # exported DATABASE_URL stays valid.
    restarted = dev.start(dev_dir)
    assert restarted.data_dir == server.data_dir
    assert restarted.url == server.url
    assert _select_one(restarted.url) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to pick the server's user")
def test_a_port_whose_connections_linger_in_time_wait_is_free_to_reuse() -> None:
    # A stopped server closes its connections first: they stay in TIME_WAIT on its port for
    # a minute. Postgres binds with SO_REUSEADDR and can listen there again, but the probe
    # saw the port as taken, so a restart moved to another port (a CI flake of the test above).
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        assert not dev._port_free(port)  # listening: taken
        accepted.close()  # the server side closes first: its end goes to TIME_WAIT
        assert client.recv(1) == b""
        client.close()
    assert dev._port_free(port)


def test_a_new_server_port_is_chosen_below_the_ephemeral_range(tmp_path: Path) -> None:
    # Binding to port 0 gives a port of the range outgoing connections take theirs from: one
    # of them could take it while the server starts (seconds), and the start then failed.
    low = dev._ephemeral_low()
    assert low >= 1024
    if low > 20_000:
        ports = {dev._free_port() for _ in range(20)}
        assert all(15_000 <= port < low and dev._port_free(port) for port in ports)
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("40000\t60999\n")
    assert dev._ephemeral_low(str(ranges)) == 40000
    assert dev._ephemeral_low(str(tmp_path / "missing")) == 32768  # not Linux: the usual


def test_a_cluster_started_as_another_user_is_still_seen_and_stopped(
    dev_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Started with RIVER_DEV_USER=nobody, then used without it: status said "stopped", and the
    # next start deleted the live server's postmaster.pid. pg_ctl now runs as the data
    # directory's owner.
    monkeypatch.setenv("RIVER_DEV_USER", "nobody")
    server = dev.start(dev_dir)
    monkeypatch.delenv("RIVER_DEV_USER")
    status = dev.status(dev_dir)
    assert status is not None
    assert status.port == server.port
    again = dev.start(dev_dir)
    assert again.port == server.port
    assert (server.data_dir / "postmaster.pid").exists()
    assert dev.stop(dev_dir) is True
    assert dev.status(dev_dir) is None


def test_a_live_process_in_a_stale_pid_file_is_not_deleted(dev_dir: Path) -> None:
    # A postmaster.pid whose process exists (a server that does not answer, or a pid reused)
    # was deleted before starting: now a clear error, the file left alone.
    server = dev.start(dev_dir)
    dev.stop(dev_dir)
    pid_file = server.data_dir / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{server.data_dir}\n")
    try:
        with pytest.raises(dev.DevPostgresError, match="still runs"):
            dev.start(dev_dir)
        assert pid_file.exists()
    finally:
        pid_file.unlink()


def test_database_url_prefers_the_environment(
    monkeypatch: pytest.MonkeyPatch, dev_dir: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://example.invalid/app")
    assert dev.database_url(dev_dir) == "postgresql://example.invalid/app"
    assert dev.status(dev_dir) is None  # nothing was started


def test_pgserver_binaries(monkeypatch: pytest.MonkeyPatch, dev_dir: Path) -> None:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        pytest.skip("the embedded extra (pgserver) is not installed")
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    monkeypatch.setenv("RIVER_PG_BINDIR", str(bindir))
    assert dev.find_bindir() == bindir
    server = dev.start(dev_dir)
    # The wheel's installation itself, or, when Postgres's user cannot reach it (a virtualenv
    # below a private directory, as mktemp -d makes), a copy of it.
    assert server.bindir == bindir or server.bindir == dev._reachable_bindir(bindir, dev._run_as())
    assert _select_one(server.url) == 1


def _private_bindir(tmp_path: Path) -> tuple[dev._RunAs, Path]:
    """The server's user, and a Postgres installation's bin directory below a directory that
    user cannot enter (what ``mktemp -d`` makes); skips unless root."""
    user = dev._run_as()
    if user is None:
        pytest.skip("only root runs Postgres as another user")
    private = tmp_path / "private"
    bindir = private / "venv" / "pginstall" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "initdb").write_text("#!/bin/sh\n")
    (bindir.parent / "share").mkdir()
    private.chmod(0o700)
    return user, bindir


def test_binaries_the_server_user_cannot_reach_are_copied(tmp_path: Path) -> None:
    user, bindir = _private_bindir(tmp_path)
    reachable = dev._reachable_bindir(bindir, user)
    assert reachable != bindir
    assert (reachable / "initdb").read_text() == "#!/bin/sh\n"
    assert (reachable.parent / "share").is_dir()  # the whole installation
    assert dev._traversable(reachable, user)
    assert dev._reachable_bindir(bindir, user) == reachable  # copied once
    shutil.rmtree(reachable.parents[2])  # /var/tmp/river-pg-<digest>


def test_a_copy_made_by_another_user_is_refused(tmp_path: Path) -> None:
    """The copy's path under /var/tmp is computed from the installation's path: a local user
    who made that directory first (with binaries of their own) had root run them as the
    server's user."""
    user, bindir = _private_bindir(tmp_path)
    planted = dev._binaries_copy(bindir.parent)
    planted.mkdir()
    try:
        (planted / ".river-copied").touch()
        os.chown(planted, user.uid, user.gid)  # another user's
        with pytest.raises(dev.DevPostgresError, match="refusing"):
            dev._reachable_bindir(bindir, user)
        os.chown(planted, 0, 0)
        planted.chmod(0o777)  # anyone's to change
        with pytest.raises(dev.DevPostgresError, match="refusing"):
            dev._reachable_bindir(bindir, user)
    finally:
        shutil.rmtree(planted)
    link = tmp_path / "elsewhere"
    link.mkdir()
    planted.symlink_to(link)
    try:
        with pytest.raises(dev.DevPostgresError, match="refusing"):
            dev._reachable_bindir(bindir, user)
    finally:
        planted.unlink()


def test_no_binaries_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RIVER_PG_BINDIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_ctl, no pg_config
    monkeypatch.setattr(dev.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(dev.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(dev.DevPostgresError) as info:
        dev.find_bindir()
    message = str(info.value)
    assert "no Postgres server binaries found" in message
    assert "river-queue[embedded]" in message
    assert "DATABASE_URL" in message


def test_cli_status_and_url(dev_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dev", "status", "--dir", str(dev_dir)]) == 1
    assert capsys.readouterr().out.strip() == "stopped"
    assert cli.main(["dev", "url", "--dir", str(dev_dir)]) == 0
    url = capsys.readouterr().out.strip()
    assert _select_one(url) == 1
    assert cli.main(["dev", "status", "--dir", str(dev_dir)]) == 0
    assert capsys.readouterr().out.strip() == f"running {url}"
    assert cli.main(["dev", "stop", "--dir", str(dev_dir)]) == 0
    assert capsys.readouterr().out.strip() == "stopped"
