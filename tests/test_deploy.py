"""What docs/operations.md's deploy sections rely on: the systemd unit and proxy headers."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
from importlib import resources
from pathlib import Path

import httpx
import pytest

import app.serve.cli
from app.config.schema import ServerConfig, demo_config, with_server_overrides
from app.serve.cli import GRACEFUL_SHUTDOWN_SECONDS, _parser, _run
from tests.demo_visit import CID, demo_visit
from tests.served import Served

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "examples" / "event-postback.service"


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    return unit


def test_the_unit_restarts_on_failure_as_its_own_user() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert service["User"] == service["Group"] == "event-postback"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    # The server reloads its config on SIGHUP (tests/test_reload.py serves it so).
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_the_unit_runs_a_command_line_the_server_accepts() -> None:
    service = _unit()["Service"]
    program, *argv = shlex.split(service["ExecStart"])
    assert program == "/usr/local/bin/event-postback"
    args = _parser().parse_args(argv)
    assert (args.command, args.config) == ("serve", "/etc/event-postback.toml")
    # The database sits in the state directory systemd creates for the user.
    state = Path("/var/lib") / service["StateDirectory"]
    assert Path(args.db).parent == state == Path(service["WorkingDirectory"])


def test_the_unit_the_manual_and_the_server_agree_on_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the server is given: the graceful-shutdown bound the unit and manual state.
    given: list[float | None] = []

    class Server:
        started = True

        def __init__(self, config: object) -> None:
            given.append(getattr(config, "timeout_graceful_shutdown", None))

        def run(self, sockets: object = None) -> None:
            pass

    monkeypatch.setattr(app.serve.cli.uvicorn, "Server", Server)
    monkeypatch.setattr(app.serve.cli, "_tune_garbage_collector", lambda: None)
    monkeypatch.setattr(signal, "signal", lambda *_: None)
    config = with_server_overrides(demo_config(), "test", db=str(tmp_path / "stop.db"))
    assert _run(_parser().parse_args(["serve"]), config, None) == 0
    assert given == [GRACEFUL_SHUTDOWN_SECONDS]

    write = ServerConfig().write_timeout_seconds
    total = GRACEFUL_SHUTDOWN_SECONDS + write
    unit = UNIT.read_text()
    assert re.search(rf"in flight \(up to {GRACEFUL_SHUTDOWN_SECONDS} s\)", unit)
    assert re.search(rf"write_timeout_seconds, {write:g} s by default\)", unit)
    assert re.search(rf"about {total:g} s at most", unit)
    # systemd sends SIGKILL after TimeoutStopSec: it must outlast the whole stop.
    assert int(_unit()["Service"]["TimeoutStopSec"]) > total
    manual = " ".join((ROOT / "docs" / "operations.md").read_text().split())
    assert f"flight up to {GRACEFUL_SHUTDOWN_SECONDS} s to finish" in manual
    assert f"`write_timeout_seconds` ({write:g} s by default)" in manual
    assert f"within about {total:g} s even then" in manual
    assert f"the unit allows {_unit()['Service']['TimeoutStopSec']} s" in manual


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not found (Debian: apt-get install systemd)")
    # verify insists that the program exists; everything else is checked as written.
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/event-postback", "/bin/true"))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def _recorded_ip(tmp_path: Path, env: dict[str, str]) -> str:
    server = Served(tmp_path, env=env)
    try:
        click = httpx.post(f"{server.url}/api/click", json={"cid": CID}, timeout=10,
                           headers={"X-Forwarded-For": "198.51.100.9"})
        assert click.status_code == 200, click.text
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()
    with sqlite3.connect(tmp_path / "event-postback.db") as db:
        [(ip,)] = db.execute("SELECT ip FROM leads").fetchall()
    return str(ip)


def test_forwarded_for_is_trusted_from_a_local_proxy_only(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if name != "FORWARDED_ALLOW_IPS"}
    (tmp_path / "local").mkdir()
    assert _recorded_ip(tmp_path / "local", env) == "198.51.100.9"
    (tmp_path / "elsewhere").mkdir()
    assert _recorded_ip(tmp_path / "elsewhere",
                        {**env, "FORWARDED_ALLOW_IPS": "192.0.2.1"}) == "127.0.0.1"


def test_an_online_backup_through_the_service_holds_what_was_acknowledged(
    tmp_path: Path,
) -> None:
    # Write-behind with a long flush interval: the backup must flush what was acknowledged.
    config = tmp_path / "slow.toml"
    demo = resources.files("app").joinpath("demo.toml").read_text()
    config.write_text(demo.replace("[server]", '[server]\ndurability = "write-behind"\n'
                                               "flush_ms = 60000"))
    server = Served(tmp_path, "--config", str(config))
    try:
        transaction_id = demo_visit(server.url)
        taken = httpx.post(f"{server.url}/api/admin/backup",
                           headers={"Authorization": "Bearer change-me"}, timeout=30)
        assert taken.status_code == 201, taken.text
        data = taken.json()["data"]
        backup = Path(data["path"])
        assert backup.parent == tmp_path / "backups"
        assert backup.stat().st_size == data["bytes"]
        # The service goes on serving while and after the backup is taken.
        assert demo_visit(server.url) != transaction_id
        assert httpx.post(f"{server.url}/api/admin/backup").status_code == 401
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()
    with sqlite3.connect(backup) as db:
        events = db.execute("SELECT event_id FROM events WHERE transaction_id = ? ORDER BY id",
                            (transaction_id,)).fetchall()
        assert db.execute("SELECT count(*) FROM leads").fetchone() == (1,)
    assert events == [("quote_viewed",), ("sale_completed",)]
