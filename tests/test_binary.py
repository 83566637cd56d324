"""The single-file executable of `make binary`, run with an empty environment (`env -i`).

Building it takes a minute or two, so the suite builds it only when asked:
EVENT_POSTBACK_BINARY=build (as .ci/run does) runs `make binary` first. Without it, a
dist/event-postback newer than every source file is tested as it is; otherwise the tests
are skipped and say how to run them.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import pytest

from app.config.schema import demo_config
from app.config.summary import summary
from app.events.senders import exposure_warnings
from tests.demo_visit import demo_visit
from tests.served import Served

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "dist" / "event-postback"
SOURCES = ("app", "actors", "storage", "pyproject.toml")
# The first start unpacks the interpreter and libraries into a temp dir.
READY_SECONDS = 60.0

# Longer than the suite's per-test bound: PyInstaller's build takes a minute or two.
pytestmark = [pytest.mark.binary, pytest.mark.timeout(900)]


def _newest_source() -> tuple[float, Path]:
    files = [path for name in SOURCES for path in
             ([ROOT / name] if (ROOT / name).is_file() else (ROOT / name).rglob("*"))
             if path.is_file() and "__pycache__" not in path.parts]
    return max((path.stat().st_mtime, path) for path in files)


@pytest.fixture(scope="module")
def binary() -> Path:
    if os.environ.get("EVENT_POSTBACK_BINARY") == "build":
        built = subprocess.run(["make", "binary"], cwd=ROOT, capture_output=True, text=True,
                               timeout=900)
        assert built.returncode == 0, f"make binary failed:\n{built.stdout}\n{built.stderr}"
        return BINARY
    if not BINARY.is_file():
        pytest.skip("no dist/event-postback: run `make binary`, or set "
                    "EVENT_POSTBACK_BINARY=build to build it here")
    newest, path = _newest_source()
    if BINARY.stat().st_mtime < newest:
        pytest.skip(f"dist/event-postback is older than {path.relative_to(ROOT)}: run "
                    "`make binary`, or set EVENT_POSTBACK_BINARY=build to build it here")
    return BINARY


def _project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def _run(binary: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, cwd=cwd,
                          env={}, timeout=READY_SECONDS)


def test_the_binary_serves_the_demo_and_stops_cleanly_on_sigterm(
    binary: Path, tmp_path: Path
) -> None:
    server = Served(tmp_path, executable=binary, env={}, ready_timeout=READY_SECONDS)
    try:
        transaction_id = demo_visit(server.url)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.log_path.read_text()
    finally:
        server.kill()
    with sqlite3.connect(tmp_path / "event-postback.db") as db:
        stored = db.execute("SELECT count(*) FROM events WHERE transaction_id = ?",
                            (transaction_id,)).fetchone()
    assert stored == (2,)


def test_the_binary_checks_and_serves_a_config_file(binary: Path, tmp_path: Path) -> None:
    version = _run(binary, "--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (
        0, f"event-postback {_project_version()}\n")

    config = tmp_path / "etc" / "event-postback.toml"
    config.parent.mkdir()
    config.write_text((ROOT / "app" / "demo.toml").read_text())
    checked = _run(binary, "check-config", str(config), cwd=tmp_path)
    assert (checked.returncode, checked.stdout, checked.stderr) == (
        0, f"{config}: ok ({summary(demo_config())})\n"
        + "".join(f"{line}\n" for line in exposure_warnings(demo_config())), "")

    data = tmp_path / "var"
    data.mkdir()
    server = Served(tmp_path, "--config", str(config), "--db", str(data / "ep.db"),
                    executable=binary, env={}, ready_timeout=READY_SECONDS)
    try:
        demo_visit(server.url)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.log_path.read_text()
    finally:
        server.kill()
    assert (data / "ep.db").is_file()
