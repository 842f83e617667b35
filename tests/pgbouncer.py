"""A private PgBouncer (Debian's ``pgbouncer`` package) in front of the test server.

``.ci/run`` installs the package; elsewhere the tests that need it skip when the binary is
missing, except under CI (``CI`` set), where a missing PgBouncer fails them. One PgBouncer per
test session, listening on a free loopback port, routes every database name to the test server
(``* = host=... port=...``), so per-test databases work through it as they do directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import conninfo
from worker_apps.harness import free_port

from river import dev


def binary() -> str | None:
    """The pgbouncer executable, or None."""
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )


def version(exe: str) -> tuple[int, ...]:
    """PgBouncer's version, e.g. (1, 18, 0)."""
    first = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    text = first.stdout.split()[1]
    return tuple(int(p) for p in text.split(".") if p.isdigit())


@contextmanager
def running(server_url: str, *, pool_mode: str = "transaction", **settings: str) -> Iterator[str]:
    """Start PgBouncer in front of ``server_url``; yield a URL template with ``{dbname}``."""
    exe = binary()
    assert exe is not None
    params = conninfo.conninfo_to_dict(server_url)
    user = str(params.get("user") or "postgres")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="river-pgbouncer-"))
    run_as = dev._run_as()
    (workdir / "userlist.txt").write_text(f'"{user}" ""\n', encoding="utf-8")
    options = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": str(workdir / "userlist.txt"),
        "pool_mode": pool_mode,
        "max_client_conn": "500",
        "default_pool_size": "20",
        "logfile": str(workdir / "pgbouncer.log"),
        "pidfile": str(workdir / "pgbouncer.pid"),
        "ignore_startup_parameters": "extra_float_digits,options",
        **settings,
    }
    ini = "[databases]\n"
    ini += f"* = host={params.get('host', '127.0.0.1')} port={params.get('port', 5432)}\n"
    ini += "[pgbouncer]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
    (workdir / "pgbouncer.ini").write_text(ini, encoding="utf-8")
    argv = [exe, str(workdir / "pgbouncer.ini")]
    if run_as is not None:
        # PgBouncer refuses to run as root: it switches to this user itself.
        os.chown(workdir, run_as.uid, run_as.gid)
        for f in workdir.iterdir():
            os.chown(f, run_as.uid, run_as.gid)
        argv[1:1] = ["-u", run_as.name]
    output = (workdir / "output.log").open("wb")
    proc = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
    url = f"postgresql://{user}@127.0.0.1:{port}/{{dbname}}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(url.format(dbname="postgres"), connect_timeout=2) as c:
                    c.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    logs = [workdir / "output.log", workdir / "pgbouncer.log"]
                    text = "".join(f.read_text() for f in logs if f.exists())
                    raise RuntimeError(f"pgbouncer did not start: {text}") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        output.close()
        shutil.rmtree(workdir, ignore_errors=True)
