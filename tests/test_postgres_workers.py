"""``serve --workers N``: N processes on one port and one PostgreSQL database."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CID, TEST_CONFIG
from tests.served import EXECUTABLE, Served

# Two workers and their database on two busy cores: start-up may take a while.
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def served(tmp_path: Path, pg_url: str) -> Iterator[Served]:
    config = tmp_path / "pg.toml"
    config.write_text(TEST_CONFIG)
    server = Served(tmp_path, "--config", str(config), "--db", pg_url, "--workers", "2",
                    ready_timeout=60)
    yield server
    server.kill()


def _children(pid: int) -> list[int]:
    """The workers of the server ``pid`` (not multiprocessing's resource tracker)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def test_workers_need_postgresql(tmp_path: Path) -> None:
    done = subprocess.run([str(EXECUTABLE), "serve", "--db", str(tmp_path / "one.db"),
                           "--workers", "2"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr == ("--workers needs a postgresql:// database: an SQLite file is "
                           "served by one process\n")


async def test_two_workers_serve_one_port_under_the_same_rules(served: Served) -> None:
    assert len(_children(served.process.pid)) == 2
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=served.url, limits=limits, timeout=30) as client:
        clicks = await asyncio.gather(*(client.post("/api/click", json={"cid": CID})
                                        for _ in range(200)))
        transaction_ids = [click.json()["data"]["transaction_id"] for click in clicks]

        def event(transaction_id: str) -> dict[str, str]:
            return {"cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id}

        same = await asyncio.gather(*(client.post("/api/event/trigger",
                                                  json=event(transaction_ids[0]))
                                      for _ in range(100)))
        codes = [response.status_code for response in same]
        assert codes.count(200) == 1
        assert set(codes) <= {200, 400, 403}
        distinct = await asyncio.gather(*(client.post("/api/event/trigger", json=event(t))
                                          for t in transaction_ids[1:]))
        assert [response.status_code for response in distinct] == [200] * 199


def test_workers_stop_when_their_parent_is_killed(served: Served) -> None:
    # A parent killed with SIGKILL passes nothing on; orphaned workers would go on
    # serving the port beside the ones a restart starts.
    workers = _children(served.process.pid)
    served.signal(signal.SIGKILL)
    served.process.wait(10)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)]


def _alive(pid: int) -> bool:
    """Running, not merely a zombie nobody has reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_sigterm_stops_every_worker_and_exits_0(served: Served) -> None:
    workers = _children(served.process.pid)
    served.signal(signal.SIGTERM)
    assert served.wait() == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()


def test_a_second_server_on_a_port_in_use_refuses_to_start(
        served: Served, tmp_path: Path, pg_url: str) -> None:
    """Each worker's socket may share the port (SO_REUSEPORT), so without a check a
    second multi-worker server (an old deployment left running) would silently take half
    of the first one's traffic."""
    config = tmp_path / "pg.toml"
    second = subprocess.run(
        [str(EXECUTABLE), "serve", "--config", str(config), "--db", pg_url, "--workers", "2",
         "--port", str(served.port)], capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{served.port}" in second.stderr
    assert "in use" in second.stderr
    assert httpx.get(f"{served.url}/healthz").status_code == 200
