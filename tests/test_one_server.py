"""One server per database file, and no file outside the process can crash it."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from storage.sqlite.claim import Claim, DatabaseInUse
from tests.conftest import CID, make_config, running
from tests.served import EXECUTABLE, Served, free_port


def test_a_second_serve_on_a_served_database_exits_3_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "one.db"
    first = Served(tmp_path, "--db", str(db))
    try:
        second = subprocess.run(
            [str(EXECUTABLE), "serve", "--db", str(db), "--port", str(free_port())],
            capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert second.returncode == 3
        assert second.stderr == (f"{db}: already served by another event-postback process "
                                 f"(pid {first.process.pid})\n")
        assert second.stdout == ""
        assert httpx.get(f"{first.url}/healthz").status_code == 200
    finally:
        first.signal(signal.SIGKILL)
        first.wait()
    # The lock died with its holder: a kill -9 leaves nothing stale behind.
    restarted = Served(tmp_path, "--db", str(db))
    try:
        assert httpx.get(f"{restarted.url}/healthz").status_code == 200
    finally:
        restarted.kill()


def test_no_shared_memory_file_exists_to_be_truncated(tmp_path: Path) -> None:
    db = tmp_path / "heap.db"
    server = Served(tmp_path, "--db", str(db))
    try:
        with httpx.Client(base_url=server.url) as client:
            for _ in range(20):
                assert client.post("/api/click", json={"cid": CID}).status_code == 200
            # The WAL index is in the server's heap: there is no -shm file whose truncation
            # would kill the process with SIGBUS; one made and emptied beside it is ignored.
            assert not Path(f"{db}-shm").exists()
            Path(f"{db}-shm").write_bytes(b"")
            assert client.post("/api/click", json={"cid": CID}).status_code == 200
            assert client.get("/healthz").status_code == 200
        assert server.process.poll() is None
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_no_other_program_can_open_a_served_file(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    server = Served(tmp_path, "--db", str(db))
    try:
        reader = subprocess.run(
            ["python3", "-c", "import sqlite3, sys; sqlite3.connect(sys.argv[1], timeout=0.2)"
             ".execute('SELECT count(*) FROM leads')", str(db)],
            capture_output=True, text=True, timeout=30)
        assert reader.returncode != 0
        assert "database is locked" in reader.stderr
    finally:
        server.kill()


async def test_a_second_app_on_the_same_file_is_refused_in_process(db_path: Path) -> None:
    async with running(make_config(db_path)):
        with pytest.raises(DatabaseInUse, match="already served by another"):
            Claim(db_path)
    Claim(db_path).release()  # free again once the first closed
