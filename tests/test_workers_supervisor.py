"""``serve --workers 2`` on PostgreSQL under its supervisor: SIGHUP and the reload API
restart every worker on the file as it is, a killed worker is replaced, every worker logs
its own lines, SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, CID, TEST_CONFIG
from tests.served import Served

# Two workers, their restarts and their database on two busy cores.
pytestmark = pytest.mark.timeout(180)

NEW_PID = "src_added_later"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "workers.toml"
    path.write_text(TEST_CONFIG)
    return path


@pytest.fixture
def served(tmp_path: Path, config_path: Path, pg_url: str) -> Iterator[Served]:
    server = Served(tmp_path, "--config", str(config_path), "--db", pg_url,
                    "--workers", "2", ready_timeout=60)
    yield server
    server.kill()


def _children(pid: int) -> list[int]:
    """The workers of the server ``pid`` (not multiprocessing's resource tracker)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return sorted(int(child) for child in text.split() if _is_worker(int(child)))


def _is_worker(pid: int) -> bool:
    try:
        return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


def _add_source(config_path: Path) -> None:
    config_path.write_text(TEST_CONFIG + f'\n[[sources]]\npid = "{NEW_PID}"\n')


async def _clicks(served: Served, pid: str, count: int = 20) -> list[int]:
    """Status codes of ``count`` clicks at once, each on a connection of its own, so
    that they reach every worker."""
    async def click() -> int:
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
            response = await client.post("/api/click", json={"cid": CID, "pid": pid})
            return response.status_code

    return list(await asyncio.gather(*(click() for _ in range(count))))


def _log_lines(served: Served) -> list[dict[str, object]]:
    lines = []
    for raw in served.log_path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return lines


def _wait_for(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


async def test_sighup_restarts_every_worker_on_the_file_as_it_is(
        served: Served, config_path: Path) -> None:
    before = _children(served.process.pid)
    _add_source(config_path)
    served.signal(signal.SIGHUP)
    # The old workers stop once their replacements serve.
    _wait_for(lambda: served.process.poll() is not None
              or (not set(_children(served.process.pid)) & set(before)
                  and len(_children(served.process.pid)) == 2), "both workers replaced")
    assert served.process.poll() is None
    assert await _clicks(served, NEW_PID) == [200] * 20
    assert any(line.get("event") == "config_reloaded" for line in _log_lines(served))


async def test_sighup_with_a_broken_file_keeps_every_worker(
        served: Served, config_path: Path) -> None:
    before = _children(served.process.pid)
    config_path.write_text(TEST_CONFIG + "\n[[sources]]\npid = \n")
    served.signal(signal.SIGHUP)
    _wait_for(lambda: any(line.get("event") == "config_reload_refused"
                          for line in _log_lines(served)), "the refusal logged")
    refused = next(line for line in _log_lines(served)
                   if line.get("event") == "config_reload_refused")
    assert str(config_path) in str(refused["error"])
    assert _children(served.process.pid) == before
    assert await _clicks(served, "src_fixed") == [200] * 20


async def test_reload_api_answers_once_every_worker_serves_the_new_config(
        served: Served, config_path: Path) -> None:
    assert set(await _clicks(served, NEW_PID)) == {400}
    _add_source(config_path)
    answer = httpx.post(f"{served.url}/api/admin/reload", headers=ADMIN, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["changes"] == {"sources_added": [NEW_PID]}
    assert await _clicks(served, NEW_PID) == [200] * 20
    # Every worker exports the same config, the new one.
    digests = {httpx.get(f"{served.url}/healthz").json()["data"]["config_sha256"]
               for _ in range(10)}
    assert len(digests) == 1
    metrics = httpx.get(f"{served.url}/metrics", headers=ADMIN).text
    assert f'event_postback_config_info{{sha256="{digests.pop()}"}} 1.0' in metrics


async def test_reload_api_refuses_a_broken_file_and_changes_no_worker(
        served: Served, config_path: Path) -> None:
    before = _children(served.process.pid)
    config_path.write_text(TEST_CONFIG + "\n[[sources]]\npid = \n")
    answer = httpx.post(f"{served.url}/api/admin/reload", headers=ADMIN, timeout=120)
    assert answer.status_code == 400
    assert answer.json()["message"].startswith(str(config_path))
    assert _children(served.process.pid) == before


async def test_a_killed_worker_is_replaced(served: Served) -> None:
    victim, survivor = _children(served.process.pid)
    os.kill(victim, signal.SIGKILL)
    _wait_for(lambda: len(_children(served.process.pid)) == 2
              and victim not in _children(served.process.pid), "a replacement")
    assert survivor in _children(served.process.pid)
    assert served.process.poll() is None
    _wait_for(lambda: _healthy(served, 10), "every worker answering")
    assert await _clicks(served, "src_fixed") == [200] * 20


def _healthy(served: Served, count: int) -> bool:
    try:
        return all(httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200
                   for _ in range(count))
    except httpx.TransportError:
        return False


async def test_every_worker_logs_its_requests_with_its_pid(served: Served) -> None:
    workers = _children(served.process.pid)
    _wait_for(lambda: len({line.get("process_id") for line in _log_lines(served)
                           if line.get("event") == "serving"}) == 2, "both serving")
    for _ in range(5):
        await _clicks(served, "src_fixed", 40)
        # Info lines reach the log within the writer's flush interval.
        _wait_for(lambda: any(line.get("event") == "request"
                              for line in _log_lines(served)), "request lines")
        pids = {line.get("process_id") for line in _log_lines(served)
                if line.get("event") == "request"}
        if pids == set(workers):
            break
    assert pids == set(workers)


async def test_sigterm_drains_every_worker_and_exits_0(served: Served) -> None:
    workers = _children(served.process.pid)
    assert await _clicks(served, "src_fixed") == [200] * 20
    served.signal(signal.SIGTERM)
    assert served.wait() == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()
    # Each worker committed what it held and wrote its last lines on the way out.
    closed = {line.get("process_id") for line in _log_lines(served)
              if line.get("event") == "store_closed"}
    assert closed == set(workers)


async def test_ttin_adds_a_worker_and_ttou_removes_one(served: Served) -> None:
    served.signal(signal.SIGTTIN)
    _wait_for(lambda: len(_children(served.process.pid)) == 3, "a third worker")
    _wait_for(lambda: _healthy(served, 10), "every worker answering")
    served.signal(signal.SIGTTOU)
    _wait_for(lambda: len(_children(served.process.pid)) == 2, "back to two workers")
    assert await _clicks(served, "src_fixed") == [200] * 20
