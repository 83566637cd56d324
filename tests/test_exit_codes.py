"""Each exit code of the command line means one thing, with one line on stderr.

0 ok, 1 partly done or failed, 2 usage/config/not found, 3 an SQLite file another process
serves, 4 a database that cannot be reached (docs/configuration.md, Command line).
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import (
    BACKENDS,
    PID,
    TEST_CONFIG,
    FakeClock,
    make_config_for,
    postgres_store,
    running,
)
from tests.served import EXECUTABLE, free_port

REPORT = ("report", "--from", "2026-11-28", "--to", "2026-11-30")


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXECUTABLE), *argv], capture_output=True, text=True,
                          timeout=90, cwd=cwd)


def test_commands_that_read_a_database_refuse_one_that_does_not_exist_and_create_none(
    tmp_path: Path,
) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text("conversion_id\nconv_1\n")
    for argv in (REPORT, ("conversions", "reverse", "--file", str(ids))):
        # The default database of a directory that has none, then a mistyped --db.
        default = _run(*argv, cwd=tmp_path)
        assert (default.returncode, default.stderr, default.stdout) == (
            2, "event-postback.db: no such database\n", "")
        typo = _run(*argv, "--db", "evnets.db", cwd=tmp_path)
        assert (typo.returncode, typo.stderr) == (2, "evnets.db: no such database\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ids.csv"]


def test_a_file_that_is_not_a_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(TEST_CONFIG)
    for argv in (REPORT, ("serve", "--port", str(free_port()))):
        refused = _run(*argv, "--db", str(config), cwd=tmp_path)
        assert (refused.returncode, refused.stderr, refused.stdout) == (
            2, f"{config}: not an SQLite database\n", "")
    assert config.read_text() == TEST_CONFIG
    nowhere = _run("serve", "--db", str(tmp_path / "missing" / "events.db"), cwd=tmp_path)
    assert (nowhere.returncode, nowhere.stderr) == (
        2, f"{tmp_path / 'missing' / 'events.db'}: no such directory\n")


def test_conversions_refuses_a_csv_that_does_not_exist(tmp_path: Path) -> None:
    refused = _run("conversions", "reverse", "--file", "returns.csv", cwd=tmp_path)
    assert (refused.returncode, refused.stderr) == (2, "returns.csv: no such file\n")


def _database(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return str(tmp_path / "events.db")
    url: str = request.getfixturevalue("pg_url")
    return url


def _conversions(db: str, count: int) -> list[str]:
    """``count`` conversions stored in ``db`` by the app, which is closed again after."""
    async def play() -> list[str]:
        clock = FakeClock()
        store = postgres_store(db, clock) if db.startswith("postgresql") else None
        async with running(make_config_for(db), clock, store) as api:
            ids = []
            for _ in range(count):
                transaction_id = await api.click(pid=PID)
                fired = await api.fire(transaction_id, "sale_completed", pid=PID,
                                       revenue="10")
                assert fired.status_code == 200, fired.text
                ids.append(fired.json()["data"]["conversion_id"])
            return ids
    return asyncio.run(play())


@pytest.mark.parametrize("backend", BACKENDS)
def test_conversions_changes_the_known_ids_then_exits_1_naming_the_unknown(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path,
) -> None:
    db = _database(request, backend, tmp_path)
    known = _conversions(db, 2)
    config = tmp_path / "config.toml"
    config.write_text(TEST_CONFIG)
    returns = tmp_path / "returns.csv"
    returns.write_text(f"{known[0]}\nconv_missing\n{known[1]}\nconv_gone\nconv_missing\n")
    reverse = ("conversions", "reverse", "--file", str(returns), "--config", str(config),
               "--db", db)
    first = _run(*reverse, cwd=tmp_path)
    assert first.returncode == 1
    assert first.stderr == "unknown conversion ids: conv_missing, conv_gone\n"
    assert first.stdout.splitlines()[-1] == "2 changed, 0 already, 3 unknown"
    again = _run(*reverse, cwd=tmp_path)
    assert (again.returncode, again.stdout.splitlines()[-1]) == (
        1, "0 changed, 2 already, 3 unknown")
    returns.write_text(f"{known[0]}\n")
    only_known = _run(*reverse, cwd=tmp_path)
    assert (only_known.returncode, only_known.stderr) == (0, "")
    # The known ids were changed on the first run, once each.
    assert _changes(db) == [(known[0], "reversed", "cli"), (known[1], "reversed", "cli")]


def _changes(db: str) -> list[tuple[str, str, str]]:
    query = "SELECT conversion_id, to_status, source FROM conversion_changes ORDER BY id"
    if not db.startswith("postgresql"):
        with closing(sqlite3.connect(db)) as conn:
            return conn.execute(query).fetchall()

    async def read() -> list[tuple[str, str, str]]:
        conn = await asyncpg.connect(db)
        try:
            return [(row[0], row[1], row[2]) for row in await conn.fetch(query)]
        finally:
            await conn.close()
    return asyncio.run(read())


def _nobody_answers() -> tuple[str, str]:
    """A PostgreSQL URL with a password on a port nobody listens on, and how it is shown."""
    port = free_port()
    return (f"postgresql://event:s3cret@127.0.0.1:{port}/events",
            f"postgresql://event:***@127.0.0.1:{port}/events")


@pytest.mark.parametrize("argv", [
    ("serve", "--port", "0"),
    ("serve", "--port", "0", "--workers", "2"),
    REPORT,
    ("conversions", "reverse", "--file", "ids.csv"),
], ids=["serve", "serve-workers", "report", "conversions"])
def test_a_postgresql_nobody_answers_exits_4_with_one_line_without_its_password(
    argv: tuple[str, ...], tmp_path: Path,
) -> None:
    (tmp_path / "ids.csv").write_text("conv_1\n")
    url, shown = _nobody_answers()
    refused = _run(*argv, "--db", url, cwd=tmp_path)
    assert refused.returncode == 4
    assert refused.stderr.startswith(f"{shown}: cannot connect: ")
    assert refused.stderr.count("\n") == 1 and refused.stderr.endswith("\n")
    assert "s3cret" not in refused.stderr
    assert refused.stdout == ""


def test_a_postgresql_database_that_does_not_exist_exits_2(
    postgres_url: str, tmp_path: Path,
) -> None:
    missing = postgres_url.rpartition("/")[0] + "/no_such_database"
    refused = _run(*REPORT, "--db", missing, cwd=tmp_path)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == f"{missing}: no such database\n"


def test_serve_on_a_port_in_use_exits_1_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = _run("serve", "--port", str(port), "--db", str(tmp_path / "events.db"),
                       cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr == f"cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_a_start_up_that_fails_past_the_checks_exits_1_not_3(tmp_path: Path) -> None:
    # A damaged file: an SQLite header, then nothing SQLite can read.
    db = tmp_path / "damaged.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)
    failed = _run("serve", "--port", str(free_port()), "--db", str(db), cwd=tmp_path)
    assert failed.returncode == 1
