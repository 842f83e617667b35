"""A private Postgres for development, demos and tests (``river dev``).

:func:`start` starts, or reuses, a Postgres cluster kept in a project-local directory
(``.river/pg`` under the current directory, or ``$RIVER_DEV_DIR``), listening on 127.0.0.1 on a
free port with ``trust`` authentication, and returns its URL. :func:`database_url` is what the
demo, the test suite and the benchmarks call: a real ``DATABASE_URL`` always wins over the
embedded server.

Binaries are looked up in this order: ``$RIVER_PG_BINDIR``; ``initdb``/``pg_ctl`` on ``PATH``;
``pg_config --bindir``; ``/usr/lib/postgresql/<newest>/bin``; the ``pgserver`` wheel (the
``embedded`` extra). Postgres refuses to run as root, so when this process is root the server
runs as an unprivileged user (``$RIVER_DEV_USER``, else ``postgres`` when it exists, else
``nobody``) who owns the data directory.

The server is a daemon: it outlives the process that started it, so that a second test run or
demo starts in milliseconds. Stop it with :func:`stop` or ``river dev stop``.

The cluster keeps Postgres' defaults (fsync on), except ``max_connections = 300`` (test suites
and benchmarks open many pools) and ``listen_addresses``/``port``.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from river._errors import RiverError

__all__ = [
    "DevPostgresError",
    "DevServer",
    "bundled_bindir",
    "database_url",
    "find_bindir",
    "start",
    "status",
    "stop",
]

#: Database created in the embedded cluster on first start, used by the demo and ``river dev url``.
DEV_DATABASE = "river"
_SUPERUSER = "postgres"
_STATE_FILE = "dev.json"
_SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "300",
}


class DevPostgresError(RiverError):
    """The embedded Postgres could not be found, initialised, started or stopped."""


@dataclass(frozen=True)
class DevServer:
    """A running embedded Postgres."""

    #: Connection URL of the ``river`` database on this server.
    url: str
    #: Data directory of the cluster.
    data_dir: Path
    #: Directory holding ``initdb``, ``pg_ctl`` and ``postgres``.
    bindir: Path
    #: TCP port on 127.0.0.1.
    port: int

    def url_for(self, database: str) -> str:
        """The URL of another database on this server."""
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"


def _root_dir(directory: str | os.PathLike[str] | None) -> Path:
    if directory is not None:
        return Path(directory).resolve()
    env = os.environ.get("RIVER_DEV_DIR")
    return Path(env).resolve() if env else (Path.cwd() / ".river").resolve()


def _has_postgres(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def bundled_bindir() -> Path | None:
    """The ``bin`` directory of the Postgres bundled by the ``pgserver`` wheel (the
    ``embedded`` extra; PostgreSQL 16), or None when that wheel is not installed."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.origin:
        return None
    # Located without importing pgserver (its import has side effects and warnings).
    return Path(spec.origin).parent / "pginstall" / "bin"


def _bindir_major(bindir: Path) -> int | None:
    """The major version of the server in ``bindir`` (``pg_ctl --version``), or None."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [str(bindir / "pg_ctl"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        match = re.search(r"(\d+)(?:\.\d+)?", out)
        if match:
            return int(match.group(1))
    return None


def _data_major(data_dir: Path) -> int | None:
    """The major version a cluster was initialised by (its ``PG_VERSION``), or None."""
    try:
        return int((data_dir / "PG_VERSION").read_text().strip().split(".")[0])
    except (OSError, ValueError):
        return None


def find_bindir(*, bundled: bool = True, major: int | None = None) -> Path:
    """Return the directory of the Postgres server binaries to use.

    ``bundled=False`` leaves out the ``pgserver`` wheel: an installed PostgreSQL only.
    ``major``: only binaries of that major version (an existing cluster's). Raises
    :class:`DevPostgresError` naming every place searched when none has ``initdb``, ``pg_ctl``
    and ``postgres`` (of that version).
    """
    candidates: list[tuple[str, Path]] = []
    env = os.environ.get("RIVER_PG_BINDIR")
    if env:
        candidates.append(("$RIVER_PG_BINDIR", Path(env)))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(("PATH", Path(on_path).resolve().parent))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(("pg_config --bindir", Path(out)))
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        candidates.append(("/usr/lib/postgresql", Path(found)))
    wheel = bundled_bindir() if bundled else None
    if wheel is not None:
        candidates.append(("pgserver wheel", wheel))
    for _, path in candidates:
        if _has_postgres(path) and (major is None or _bindir_major(path) == major):
            return path
    searched = ", ".join(f"{where} ({path})" for where, path in candidates) or "nothing found"
    if major is not None:
        raise DevPostgresError(
            f"the development cluster was initialised by PostgreSQL {major}, and no binaries of "
            f"that version were found (searched: {searched}): install PostgreSQL {major}, set "
            "RIVER_PG_BINDIR to its bin directory, or delete the cluster (river dev stop, then "
            "remove the data directory) to start afresh"
        )
    embedded = "or the wheel with `pip install 'river-queue[embedded]'`, "
    if sys.version_info >= (3, 13):
        # The embedded extra installs pgserver only where it has wheels (pyproject.toml).
        embedded = (
            "or, on Python 3.12 or earlier, the wheel with "
            "`pip install 'river-queue[embedded]'` (pgserver has none for this Python), "
        )
    raise DevPostgresError(
        "no Postgres server binaries found (searched: "
        f"{searched}; also /usr/lib/postgresql/*/bin). Install PostgreSQL, {embedded}"
        "or set DATABASE_URL to an existing server."
    )


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit()) or (0,)


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int
    name: str


def _run_as() -> _RunAs | None:
    """The unprivileged user to run Postgres as, or None when this process is not root."""
    if os.geteuid() != 0:
        return None
    names = [os.environ.get("RIVER_DEV_USER", ""), "postgres", "nobody"]
    for name in names:
        if not name:
            continue
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return _RunAs(entry.pw_uid, entry.pw_gid, name)
    raise DevPostgresError(
        "running as root, and no unprivileged user (postgres, nobody) exists to run Postgres as; "
        "set RIVER_DEV_USER to one"
    )


def _traversable(path: Path, user: _RunAs) -> bool:
    """Whether ``user`` can reach ``path`` (execute permission on every ancestor)."""
    for ancestor in [path, *path.parents]:
        if not ancestor.exists():
            continue
        st = ancestor.stat()
        if st.st_uid == user.uid:
            bit = 0o100
        elif st.st_gid == user.gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def _run(
    args: list[str], user: _RunAs | None, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    kwargs: dict[str, object] = {}
    if user is not None:
        kwargs = {"user": user.uid, "group": user.gid, "extra_groups": []}
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    if user is not None:
        env["HOME"] = str(cwd)
        env["USER"] = env["LOGNAME"] = user.name
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "dev.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _port_free(port: int) -> bool:
    """Whether Postgres could listen on ``port``. It binds with SO_REUSEADDR, so connections
    of a server just stopped that linger in TIME_WAIT on the port do not count as in use (a
    probe without it saw the port as taken, and a restart moved to another port)."""
    if port <= 0:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> int:
    """The lowest port the kernel hands to outgoing connections, as Linux tells it; 32768
    (Linux's default) where it does not (the BSDs and macOS have ranges of their own)."""
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_port() -> int:
    """A free port for the server, below the kernel's ephemeral range when it leaves room
    (it starts above 20000), else any free one: a port of that range (what binding to port 0
    gives) can be taken by any outgoing connection in the moment between this choice and the
    server's own bind."""
    low = _ephemeral_low()
    if low > 20_000:
        for _ in range(100):
            port = secrets.randbelow(low - 15_000) + 15_000
            if _port_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_state(root: Path) -> dict[str, object] | None:
    try:
        data = json.loads((root / _STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _server_from_state(state: dict[str, object]) -> DevServer:
    port = int(str(state["port"]))
    return DevServer(
        url=f"postgresql://{_SUPERUSER}@127.0.0.1:{port}/{DEV_DATABASE}",
        data_dir=Path(str(state["data_dir"])),
        bindir=Path(str(state["bindir"])),
        port=port,
    )


def _accepts_connections(port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _owner(data_dir: Path, default: _RunAs | None) -> _RunAs | None:
    """Who runs the cluster's pg_ctl: as root, the data directory's owner (the user who
    initialised it, whatever RIVER_DEV_USER says now); else this process's user, which must
    own it (Postgres refuses any other)."""
    try:
        uid = data_dir.stat().st_uid
    except OSError:
        return default
    if os.geteuid() == 0:
        if uid == 0 or (default is not None and default.uid == uid):
            return default
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return default
        return _RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)
    if uid != os.geteuid():
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        raise DevPostgresError(
            f"the development cluster in {data_dir} belongs to user {name}: run river dev as "
            "that user (or as root), or set DATABASE_URL to another server"
        )
    return default


def _pid_alive(pid_file: Path) -> bool:
    """Whether the process a ``postmaster.pid`` names still exists (or cannot be checked)."""
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


def _is_running(server: DevServer, user: _RunAs | None) -> bool:
    if not (server.data_dir / "postmaster.pid").exists():
        return False
    result = _run(
        [str(server.bindir / "pg_ctl"), "status", "-D", str(server.data_dir)],
        user,
        server.data_dir,
    )
    return result.returncode == 0 and _accepts_connections(server.port)


def status(directory: str | os.PathLike[str] | None = None) -> DevServer | None:
    """Return the embedded server when it is running, else None. Starts nothing."""
    root = _root_dir(directory)
    state = _read_state(root)
    if state is None:
        return None
    server = _server_from_state(state)
    return server if _is_running(server, _owner(server.data_dir, _run_as())) else None


def _trusted_shared_dir(path: Path, owners: set[int]) -> None:
    """Refuse ``path`` (a directory of ours under /var/tmp, at a name anyone can compute) when
    another user could have made or changed it: it must be a real directory (not a symlink)
    owned by one of ``owners`` (root, the server's user) and writable by its owner alone.
    Otherwise a local user who created it first would have root run their ``initdb`` and
    ``pg_ctl`` as the server's user, or the cluster start in their data directory."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    import stat

    if not stat.S_ISDIR(info.st_mode) or info.st_uid not in owners or info.st_mode & 0o022:
        raise DevPostgresError(
            f"refusing {path}: it is not a directory that only root or the server's user can "
            f"write (owner uid {info.st_uid}, mode {stat.filemode(info.st_mode)}); remove it "
            "if you did not make it, then run river dev start again"
        )


def _data_dir_for(root: Path, user: _RunAs | None) -> Path:
    preferred = root / "pg"
    if user is None or _traversable(root, user):
        return preferred
    # The project sits below a directory the server's user cannot enter (e.g. /root): keep the
    # cluster in a per-project directory under the system temp dir instead.
    import hashlib

    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    shared = Path("/var/tmp") / f"river-dev-{digest}"
    owners = {os.geteuid(), user.uid}
    _trusted_shared_dir(shared, owners)
    _trusted_shared_dir(shared / "pg", owners)
    return shared / "pg"


def _binaries_copy(install: Path) -> Path:
    """Where :func:`_reachable_bindir` copies the Postgres installation ``install``: one
    directory per installation under the system temp dir."""
    import hashlib

    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"river-pg-{digest}"


def _reachable_bindir(bindir: Path, user: _RunAs | None) -> Path:
    """``bindir``, or, when the server's user cannot reach it (the ``pgserver`` wheel inside a
    virtualenv below a private directory such as ``mktemp -d``'s or /root), a copy of its
    installation under the system temp dir, made once per installation. The copy keeps the
    layout the binaries rely on: ``<package>/<install>/{bin,lib,share}`` and, beside the
    package, the ``<package>.libs`` directory of shared libraries a wheel's binaries find
    through their relative RPATH."""
    if user is None or _traversable(bindir, user):
        return bindir
    import shutil

    install = bindir.parent
    package = install.parent
    copy = _binaries_copy(install)
    target = copy / package.name / install.name
    done = copy / ".river-copied"
    # Only a copy this process's user made (root): the server's user runs its binaries.
    with contextlib.suppress(FileExistsError):
        copy.mkdir(mode=0o755)
    _trusted_shared_dir(copy, {os.geteuid()})
    if done.is_symlink() or (done.exists() and done.lstat().st_uid != os.geteuid()):
        raise DevPostgresError(f"refusing {copy}: its marker {done.name} is not root's")
    if not done.exists():
        shutil.copytree(install, target, symlinks=True, dirs_exist_ok=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy / libs.name, symlinks=True, dirs_exist_ok=True)
        for directory in (copy, copy / package.name):
            directory.chmod(0o755)
        done.touch()
    return target / bindir.name


def _initdb(bindir: Path, data_dir: Path, user: _RunAs | None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        for path in [data_dir, data_dir.parent]:
            if path.name.startswith("river-dev-") or path == data_dir:
                os.chown(path, user.uid, user.gid)
    data_dir.chmod(0o700)
    result = _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            _SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        user,
        data_dir,
    )
    if result.returncode != 0:
        raise DevPostgresError(
            f"initdb failed in {data_dir} (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-2000:]}"
        )


def _configure(data_dir: Path, port: int) -> None:
    settings = {**_SERVER_SETTINGS, "port": str(port)}
    conf = data_dir / "postgresql.auto.conf"
    lines = [
        line for line in conf.read_text().splitlines() if line.split("=")[0].strip() not in settings
    ]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    conf.write_text("\n".join(lines) + "\n")


def _pg_ctl_start(server: DevServer, user: _RunAs | None) -> subprocess.CompletedProcess[str]:
    return _run(
        [
            str(server.bindir / "pg_ctl"),
            "start",
            "-D",
            str(server.data_dir),
            "-l",
            str(server.data_dir / "server.log"),
            "-w",
            "-t",
            "60",
        ],
        user,
        server.data_dir,
        timeout=90,
    )


def _ensure_database(server: DevServer) -> None:
    # Imported here: river.dev itself needs neither psycopg nor the query catalog to import.
    import psycopg
    from psycopg import sql

    from river._driver import queries_for
    from river._sansio import Query, run_sync, single

    q = queries_for(None)
    exists = Query(q.dev_database_exists, {"name": DEV_DATABASE}, fetch="one")
    create = Query(
        q.compose("dev_database_create", database=sql.Identifier(DEV_DATABASE)), fetch="none"
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
                if not run_sync(conn, single(exists)):
                    run_sync(conn, single(create))
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise DevPostgresError(
                    f"embedded Postgres does not accept connections: {exc}"
                ) from exc
            time.sleep(0.1)


def start(directory: str | os.PathLike[str] | None = None) -> DevServer:
    """Start the embedded Postgres, or reuse it when it already runs; return it.

    Safe to call from several processes at once (a file lock serialises them). The first call
    initialises the cluster, which takes a few seconds; later calls take milliseconds.
    """
    root = _root_dir(directory)
    user = _run_as()
    with _locked(root):
        state = _read_state(root)
        previous_port = 0
        if state is not None:
            server = _server_from_state(state)
            user = _owner(server.data_dir, user)
            if _is_running(server, user):
                _ensure_database(server)  # someone may have dropped it since
                return server
            previous_port = server.port
            major = _data_major(server.data_dir)
            if not _has_postgres(server.bindir) or (
                major is not None and _bindir_major(server.bindir) != major
            ):
                # The binaries it used are gone (a moved venv, a cleaned /var/tmp): others of
                # the cluster's version.
                bindir = find_bindir(major=major)
                server = DevServer(server.url, server.data_dir, bindir, server.port)
        else:
            data_dir = _data_dir_for(root, user)
            server = DevServer("", data_dir, find_bindir(), 0)
        bindir = _reachable_bindir(server.bindir, user)
        if bindir != server.bindir:
            server = DevServer(server.url, server.data_dir, bindir, server.port)
        if not (server.data_dir / "PG_VERSION").exists():
            _initdb(server.bindir, server.data_dir, user)
        last_error = ""
        for attempt in range(3):
            # The previous port first, so that an exported DATABASE_URL stays valid.
            port = previous_port if attempt == 0 and _port_free(previous_port) else _free_port()
            server = DevServer(
                f"postgresql://{_SUPERUSER}@127.0.0.1:{port}/{DEV_DATABASE}",
                server.data_dir,
                server.bindir,
                port,
            )
            _configure(server.data_dir, port)
            # A stale pid file from a crash would make pg_ctl refuse to start.
            pid_file = server.data_dir / "postmaster.pid"
            if pid_file.exists() and not _is_running(server, user):
                if _pid_alive(pid_file):
                    raise DevPostgresError(
                        f"a server still runs from {server.data_dir} (see its postmaster.pid) "
                        "but does not answer on its port: stop it (river dev stop, or as its "
                        "owner pg_ctl stop -D <that directory>) and try again"
                    )
                with contextlib.suppress(OSError):
                    pid_file.unlink()
            result = _pg_ctl_start(server, user)
            if result.returncode == 0:
                break
            last_error = (result.stderr or result.stdout).strip()
            log = server.data_dir / "server.log"
            with contextlib.suppress(OSError):
                last_error += "\n" + log.read_text()[-2000:]
        else:
            raise DevPostgresError(f"could not start Postgres in {server.data_dir}: {last_error}")
        state = {
            "data_dir": str(server.data_dir),
            "bindir": str(server.bindir),
            "port": server.port,
            "user": user.name if user else None,
        }
        (root / _STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        _ensure_database(server)
        return server


def stop(directory: str | os.PathLike[str] | None = None) -> bool:
    """Stop the embedded Postgres (fast shutdown). Return whether a server was running."""
    root = _root_dir(directory)
    user = _run_as()
    with _locked(root):
        state = _read_state(root)
        if state is None:
            return False
        server = _server_from_state(state)
        user = _owner(server.data_dir, user)
        if not _is_running(server, user):
            return False
        result = _run(
            [str(server.bindir / "pg_ctl"), "stop", "-D", str(server.data_dir), "-m", "fast"],
            user,
            server.data_dir,
        )
        if result.returncode != 0:
            raise DevPostgresError(f"pg_ctl stop failed: {(result.stderr or result.stdout)}")
        return True


def database_url(directory: str | os.PathLike[str] | None = None) -> str:
    """``$DATABASE_URL`` when set, else the URL of the embedded server (started if needed)."""
    env = os.environ.get("DATABASE_URL")
    if env:
        return env
    return start(directory).url
