"""The ``river`` CLI's migration, version and dev commands (PROTOCOL.md section 14)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from river import cli
from river.migrate import Migrator, get_sql

REPO_ROOT = Path(__file__).resolve().parent.parent
RIVER = Path(sys.executable).parent / "river"

NAMES = {
    1: "create river migration",
    2: "initial schema",
    3: "river job tags non null",
    4: "pending and more",
    5: "migration unique client",
    6: "bulk unique",
    7: "notification outbox sqlite jsonb and sql cleanup",
}
DURATION = r"\d+(\.\d+)?(ns|µs|ms|s)"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def applied(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as c:
        return Migrator(c).applied_versions()


def assert_one_error_line(code: int, out: str, err: str) -> str:
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------------------------
# migrate-up / migrate-down output
# --------------------------------------------------------------------------------------------


def test_migrate_up_output(capsys: pytest.CaptureFixture[str], empty_db_url: str) -> None:
    code, out, err = run(capsys, "migrate-up", "--database-url", empty_db_url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 7
    width = max(len(n) for n in NAMES.values())
    for version, line in enumerate(lines, start=1):
        prefix = f"applied migration {version:03d} [up] {NAMES[version].ljust(width)} ["
        assert line.startswith(prefix), line
        assert re.fullmatch(DURATION, line[len(prefix) : -1]), line
        assert line.endswith("]")
    code, out, _ = run(capsys, "migrate-up", "--database-url", empty_db_url)
    assert (code, out) == (0, "no migrations to apply\n")


def test_max_steps_and_no_more_migrations(
    capsys: pytest.CaptureFixture[str], empty_db_url: str
) -> None:
    code, out, _ = run(capsys, "migrate-up", "--database-url", empty_db_url, "--max-steps", "2")
    assert code == 0
    # Padding is to the longest name of this run only.
    assert re.fullmatch(
        rf"applied migration 001 \[up\] create river migration \[{DURATION}\]\n"
        rf"applied migration 002 \[up\] initial schema         \[{DURATION}\]\n",
        out,
    ), out
    code, out, _ = run(capsys, "migrate-up", "--database-url", empty_db_url, "--max-steps", "9")
    lines = out.splitlines()
    assert [line[:35] for line in lines[:-1]] == [
        f"applied migration {v:03d} [up] {NAMES[v][:8]}" for v in range(3, 8)
    ]
    assert lines[-1] == "no more migrations to apply"
    code, out, _ = run(capsys, "migrate-up", "--database-url", empty_db_url, "--max-steps", "9")
    assert out == "no migrations to apply\n"


def test_target_version(capsys: pytest.CaptureFixture[str], empty_db_url: str) -> None:
    code, out, _ = run(
        capsys, "migrate-up", "--database-url", empty_db_url, "--target-version", "3"
    )
    assert code == 0
    assert len(out.splitlines()) == 3
    assert applied(empty_db_url) == [1, 2, 3]
    code, out, _ = run(
        capsys, "migrate-down", "--database-url", empty_db_url, "--target-version", "1"
    )
    assert [line[:28] for line in out.splitlines()] == [
        "applied migration 003 [down]",
        "applied migration 002 [down]",
    ]
    assert applied(empty_db_url) == [1]


def test_migrate_down_defaults_to_one_step_and_zero_means_all(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    code, out, _ = run(capsys, "migrate-down", "--database-url", db_url)
    assert code == 0
    assert re.fullmatch(rf"applied migration 007 \[down\] {NAMES[7]} \[{DURATION}\]\n", out)
    assert applied(db_url) == [1, 2, 3, 4, 5, 6]
    code, out, _ = run(capsys, "migrate-down", "--database-url", db_url, "--target-version", "0")
    assert code == 0
    assert [int(line[18:21]) for line in out.splitlines()] == [6, 5, 4, 3, 2, 1]
    assert applied(db_url) == []
    code, out, _ = run(capsys, "migrate-down", "--database-url", db_url)
    assert out == "no migrations to apply\n"


def test_dry_run_and_show_sql(capsys: pytest.CaptureFixture[str], empty_db_url: str) -> None:
    code, out, _ = run(
        capsys, "migrate-up", "--database-url", empty_db_url, "--dry-run", "--max-steps", "2"
    )
    assert code == 0
    assert out == "migration 001 [up] [DRY RUN]\nmigration 002 [up] [DRY RUN]\n"
    assert applied(empty_db_url) == []

    code, out, _ = run(
        capsys, "migrate-up", "--database-url", empty_db_url, "--show-sql", "--max-steps", "2"
    )
    blocks = out.split("applied migration ")[1:]
    assert len(blocks) == 2
    for version, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        assert lines[1] == "-" * 80
        assert lines[2] == f"-- River main migration {version:03d} [up]"
        body = "\n".join(lines[3:])
        assert body.startswith(get_sql([version]).split("\n", 1)[1].rstrip() + "\n\n")
    assert out.endswith("\n\n")
    assert applied(empty_db_url) == [1, 2]

    code, out, _ = run(
        capsys, "migrate-down", "--database-url", empty_db_url, "--dry-run", "--show-sql"
    )
    assert out.startswith(
        "migration 002 [down] [DRY RUN]\n" + "-" * 80 + "\n-- River main migration 002 [down]\n"
    )
    assert applied(empty_db_url) == [1, 2]


def test_failed_version_prints_what_ran_then_the_error(
    capsys: pytest.CaptureFixture[str], empty_db_url: str
) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        Migrator(c).migrate_up(target_version=2)
        c.execute("CREATE TABLE river_queue (name text)")
    code, out, err = run(capsys, "migrate-up", "--database-url", empty_db_url)
    assert code == 1
    assert out.startswith("applied migration 003 [up] river job tags non null [")
    assert len(out.splitlines()) == 1
    assert err.startswith("Error: migration 004 [up] pending and more failed: ")
    assert len(err.splitlines()) == 1
    assert applied(empty_db_url) == [1, 2, 3]


# --------------------------------------------------------------------------------------------
# migrate-list, validate, migrate-get
# --------------------------------------------------------------------------------------------


def test_migrate_list(capsys: pytest.CaptureFixture[str], empty_db_url: str) -> None:
    code, out, _ = run(capsys, "migrate-list", "--database-url", empty_db_url)
    assert code == 0
    assert out.splitlines() == [f"{v:03d} {n}" for v, n in NAMES.items()]
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        Migrator(c).migrate_up(target_version=3)
    code, out, _ = run(capsys, "migrate-list", "--database-url", empty_db_url)
    assert out.splitlines() == [f"{'* ' if v == 3 else '  '}{v:03d} {n}" for v, n in NAMES.items()]


def test_migrate_list_with_version_8(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("INSERT INTO river_migration (line, version) VALUES ('main', 8)")
    code, out, _ = run(capsys, "migrate-list", "--database-url", db_url)
    assert code == 0
    assert out.splitlines()[-1] == f"* 007 {NAMES[7]}"
    assert run(capsys, "validate", "--database-url", db_url)[0] == 0


def test_validate_exit_codes(capsys: pytest.CaptureFixture[str], empty_db_url: str) -> None:
    assert run(capsys, "validate", "--database-url", empty_db_url) == (1, "", "")
    code, out, err = run(capsys, "validate", "--database-url", empty_db_url, "-v")
    assert (code, out) == (1, "")
    assert "Unapplied migrations: [1 2 3 4 5 6 7]" in err
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        Migrator(c).migrate_up(target_version=5)
    code, _, err = run(capsys, "-v", "validate", "--database-url", empty_db_url)
    assert code == 1
    assert "Unapplied migrations: [6 7]" in err
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        Migrator(c).migrate_up()
    assert run(capsys, "validate", "--database-url", empty_db_url, "-v") == (0, "", "")


def test_migrate_get(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "migrate-get", "--version", "2", "--up")
    assert (code, err) == (0, "")
    assert out == get_sql([2], "up")
    assert out.startswith("-- River main migration 002 [up]\n")

    code, out, _ = run(capsys, "migrate-get", "--all", "--down")
    headers = [line for line in out.splitlines() if line.startswith("-- River main migration")]
    assert headers == [f"-- River main migration {v:03d} [down]" for v in range(7, 0, -1)]
    assert out == get_sql(None, "down")

    code, out, _ = run(
        capsys,
        "migrate-get",
        "--version",
        "1,2",
        "--version",
        "4",
        "--exclude-version",
        "2",
        "--up",
        "--schema",
        "my_schema",
    )
    assert out == get_sql([1, 4], "up", schema="my_schema")
    assert "\n\n-- River main migration 004 [up]\n" in out
    assert 'CREATE TABLE "my_schema".river_queue' in out

    code, out, _ = run(capsys, "migrate-get", "--all", "--exclude-version", "1,2,3,4,5,6,7", "--up")
    assert (code, out) == (0, "")


@pytest.mark.parametrize(
    "argv",
    [
        ["migrate-get", "--up"],
        ["migrate-get", "--all"],
        ["migrate-get", "--all", "--up", "--down"],
        ["migrate-get", "--version", "x", "--up"],
        ["migrate-up", "--target-version", "abc"],
        ["migrate-up", "--max-steps", "-1"],
        ["migrate-up", "--statement-timeout", "10"],
        ["migrate-up", "--statement-timeout", "500us"],
        ["migrate-up", "--no-such-flag"],
        ["--debug", "migrate-up", "-v"],
        ["no-such-command"],
    ],
)
def test_flag_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert out == ""
    assert err.startswith("Error: ")
    assert "usage: river" in err
    assert "Traceback" not in err


def test_migrate_get_errors(capsys: pytest.CaptureFixture[str]) -> None:
    line = assert_one_error_line(*run(capsys, "migrate-get", "--version", "9", "--up"))
    assert "9" in line
    line = assert_one_error_line(
        *run(capsys, "migrate-get", "--all", "--up", "--database-url", "sqlite://x.db")
    )
    assert "sqlite://" in line
    assert_one_error_line(*run(capsys, "migrate-get", "--all", "--up", "--line", "pro"))


# --------------------------------------------------------------------------------------------
# Bad input: one line, exit 1, database unchanged
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["migrate-up", "--schema", "bad-name"], "--schema"),
        (["migrate-up", "--schema", "x" * 47], "46"),
        (["migrate-up", "--line", "pro"], "pro"),
        (["migrate-list", "--line", "pro"], "pro"),
        (["validate", "--schema", "1x"], "--schema"),
        (["migrate-up", "--target-version", "8"], "target version 8"),
        (["migrate-down", "--target-version", "-2"], "target version -2"),
        (["migrate-up", "--schema", "missing_schema"], "does not exist"),
    ],
)
def test_bad_input_leaves_database_unchanged(
    capsys: pytest.CaptureFixture[str], db_url: str, argv: list[str], needle: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        Migrator(c).migrate_down(target_version=4)
    line = assert_one_error_line(*run(capsys, *argv, "--database-url", db_url))
    assert needle in line
    assert applied(db_url) == [1, 2, 3, 4]
    with psycopg.connect(db_url, autocommit=True) as c:
        assert c.execute("SELECT to_regclass('river_notification')").fetchone() == (None,)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/nothing",
        "postgres://user@host:notaport/db",
        "postgresql://[::1/x",
        "mysql://localhost/db",
        "not a url",
    ],
)
def test_connection_errors(capsys: pytest.CaptureFixture[str], url: str) -> None:
    assert_one_error_line(*run(capsys, "migrate-up", "--database-url", url))


@pytest.mark.parametrize(
    "url",
    [
        # A "%" not percent-encoded in the password: libpq quotes the token it could not
        # decode, here the password itself.
        "postgresql://app:My%Secret99@127.0.0.1:1/db",
        # A malformed host: libpq quotes the whole URL.
        "postgresql://app:Secret99@[::1/db",
        "postgresql://app:Secret99@[::1/db?statement_timeout=5",
        "host=127.0.0.1 port=1 password=Secret99 dbname=x user",
    ],
)
def test_connection_errors_never_print_the_password(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    line = assert_one_error_line(*run(capsys, "migrate-list", "--database-url", url))
    assert "Secret99" not in line


def test_redact_secrets() -> None:
    from river._errors import DatabaseUnavailableError, redact_secrets

    assert (
        redact_secrets('in URI: "postgres://u:p@ss@h:5432/d"')
        == 'in URI: "postgres://u:***@h:5432/d"'
    )
    assert redact_secrets("password='a b' host=x") == "password=*** host=x"
    assert redact_secrets("no secret here: host=x port=1") == "no secret here: host=x port=1"
    # What libpq and psycopg quote of a password with a blank or an unencoded @.
    assert "secret" not in redact_secrets('missing "=" after "secret" in connection info string')
    assert redact_secrets("failed to resolve host 'ss@127.0.0.1': x") == (
        "failed to resolve host '***@127.0.0.1': x"
    )
    error = DatabaseUnavailableError('invalid percent-encoded token: "pw%zz"')
    assert "pw%zz" not in str(error)
    assert "%25" in error.reason


def test_no_database_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("PGDATABASE", raising=False)
    line = assert_one_error_line(*run(capsys, "migrate-list"))
    assert "--database-url" in line


def test_subprocess_error_has_no_traceback() -> None:
    proc = subprocess.run(
        [str(RIVER), "migrate-up", "--database-url", "postgresql://postgres@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("Error: cannot connect to the database: ")
    assert len(proc.stderr.splitlines()) == 1


def test_subprocess_migrate_up(empty_db_url: str) -> None:
    proc = subprocess.run(
        [str(RIVER), "migrate-up", "--database-url", empty_db_url, "--max-steps", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("applied migration 001 [up] create river migration [")


# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------


def _settings(url: str, *argv: str) -> tuple[str, str, str]:
    args = cli.build_parser().parse_args([*argv, "migrate-list", "--database-url", url])
    with cli.connect(args) as conn:
        row = conn.execute(
            "SELECT current_setting('application_name'), current_setting('statement_timeout'), "
            "current_setting('idle_in_transaction_session_timeout')"
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_connection_settings(db_url: str) -> None:
    assert _settings(db_url) == ("river CLI", "10s", "11s")
    assert _settings(db_url, "--statement-timeout", "2m") == ("river CLI", "2min", "11s")
    url = db_url + "?application_name=mine&statement_timeout=5000"
    assert _settings(url) == ("mine", "5s", "11s")
    # The flag beats the URL.
    assert _settings(url, "--statement-timeout", "1500ms") == ("mine", "1500ms", "11s")
    url = db_url + "?options=-c%20idle_in_transaction_session_timeout%3D3s"
    assert _settings(url) == ("river CLI", "10s", "3s")


def test_pgoptions_are_kept(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq reads PGOPTIONS only when no options parameter is given, and the CLI always gives
    one: the environment's settings were dropped (a search_path, a statement_timeout)."""
    monkeypatch.setenv(
        "PGOPTIONS", "-c statement_timeout=4s -c idle_in_transaction_session_timeout=5s"
    )
    assert _settings(db_url) == ("river CLI", "4s", "5s")
    assert _settings(db_url, "--statement-timeout", "2m") == ("river CLI", "2min", "5s")
    # Options in the URL win over the environment's, as in libpq.
    url = db_url + "?options=-c%20idle_in_transaction_session_timeout%3D3s"
    assert _settings(url) == ("river CLI", "10s", "3s")


# --------------------------------------------------------------------------------------------
# Durations, version, dev, help
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.000000123, "120ns"),  # truncated to 10 ns
        (0.000523456, "523.45µs"),
        (0.000001, "1µs"),
        (0.0123456789, "12.34ms"),
        (0.5, "500ms"),
        (1.0, "1s"),
        (1.23456, "1.23s"),
        (61.5, "1m1.5s"),
        (3600.0, "1h0m0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert cli.format_duration(seconds) == text


def test_parse_duration() -> None:
    assert cli.parse_duration("1m30s") == 90_000_000_000
    assert cli.parse_duration("1.5s") == 1_500_000_000
    assert cli.parse_duration("250us") == cli.parse_duration("250µs") == 250_000
    assert cli.parse_duration("0") == 0
    for bad in ["10", "s", "1x", ""]:
        with pytest.raises(ValueError, match="invalid duration"):
            cli.parse_duration(bad)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from river._version import __version__

    code, out, _ = run(capsys, "version")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"River version {__version__}"
    assert lines[1].startswith("Built with Python ")
    assert run(capsys, "--version") == (0, out, "")


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ["migrate-up", "migrate-down", "migrate-get", "migrate-list", "validate"]:
        assert command in out
    code, out, _ = run(capsys)
    assert code == 0
    assert "usage: river" in out


def test_dev_status_and_stop_without_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "dev", "status", "--dir", str(tmp_path)) == (1, "stopped\n", "")
    assert run(capsys, "dev", "stop", "--dir", str(tmp_path)) == (0, "not running\n", "")
    code, out, _ = run(capsys, "dev")
    assert code == 0
    assert "status" in out


def test_global_flags_after_the_command(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    code, _, err = run(capsys, "validate", "--database-url", db_url, "--debug")
    assert (code, err) == (0, "")
    code, out, err = run(capsys, "migrate-down", "--database-url", db_url, "--verbose")
    assert code == 0
    assert out.startswith("applied migration 007 [down]")
    assert "INFO river.migrate: applied migration 007 [down]" in err


def test_new_command_group_can_be_registered(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def register(commands: cli.Commands) -> None:
        def handler(args: Any) -> int:
            print(f"hello {args.name}")
            return 3

        parser = commands.add("hello", help="say hello", handler=handler)
        parser.add_argument("--name", default="world")

    monkeypatch.setattr(cli, "COMMAND_GROUPS", [*cli.COMMAND_GROUPS, register])
    assert run(capsys, "hello", "--name", "river") == (3, "hello river\n", "")


def test_a_schema_from_search_path_obeys_the_schema_rules(
    capsys: pytest.CaptureFixture[str], empty_db_url: str
) -> None:
    """A schema taken from search_path (here through the URL's options) is held to the same
    46-character rule as --schema: <schema>.river_leadership must fit a channel name."""
    long_name = "s" * 47
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {long_name}")
        c.execute("CREATE SCHEMA s46_" + "x" * 42)
    url = f"{empty_db_url}?options=-csearch_path%3D{long_name}"
    line = assert_one_error_line(*run(capsys, "migrate-up", "--database-url", url))
    assert "schema (the current schema of search_path)" in line
    assert "at most 46 characters (got 47)" in line
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute("SELECT to_regclass('river_migration')").fetchone() == (None,)
    # 46 characters are fine.
    ok = f"{empty_db_url}?options=-csearch_path%3Ds46_{'x' * 42}"
    code, _, err = run(capsys, "migrate-up", "--database-url", ok)
    assert (code, err) == (0, "")
    assert applied(ok) == [1, 2, 3, 4, 5, 6, 7]
