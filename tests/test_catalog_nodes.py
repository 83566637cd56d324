"""A catalog change made through one process is served by every process on one PostgreSQL:
two nodes, one of them ``serve --workers 2``, each polling the newest catalog version."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, CID, TEST_CONFIG
from tests.served import Served

# Three server processes and their database on two busy cores.
pytestmark = pytest.mark.timeout(180)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def nodes(tmp_path: Path, pg_url: str) -> Iterator[list[Served]]:
    config = tmp_path / "pg.toml"
    config.write_text(TEST_CONFIG.replace("[server]\n", '[server]\ncatalog = "database"\n', 1))
    started = [Served(tmp_path, "--config", str(config), "--db", pg_url, "--workers", "2",
                      name="workers", ready_timeout=60),
               Served(tmp_path, "--config", str(config), "--db", pg_url, name="single",
                      ready_timeout=60)]
    yield started
    for server in started:
        server.kill()


def _versions_by_process(node: Served, processes: int, version: int) -> dict[int, int]:
    """Each process's catalog version, asked of /healthz until ``processes`` answered at
    ``version`` or later (new connections, so the port's workers take turns)."""
    seen: dict[int, int] = {}
    for _ in range(2000):
        health = httpx.get(f"{node.url}/healthz", headers={"Connection": "close"}).json()
        seen[health["data"]["process_id"]] = health["data"]["catalog_version"]
        if len(seen) == processes and min(seen.values()) >= version:
            break
    return seen


def test_a_source_created_through_one_node_takes_events_on_every_process(
        nodes: list[Served]) -> None:
    workers, single = nodes
    assert set(_versions_by_process(workers, 2, 1).values()) == {1}
    assert set(_versions_by_process(single, 1, 1).values()) == {1}
    created = httpx.put(f"{single.url}/api/sources/src_new", json={},
                        headers={**ADMIN, "If-Match": '"1"'})
    assert created.status_code == 201, created.text
    started = time.monotonic()
    reached = {**_versions_by_process(workers, 2, 2), **_versions_by_process(single, 1, 2)}
    took = time.monotonic() - started
    assert set(reached.values()) == {2} and len(reached) == 3, reached
    # The promise is a second; the wait is reported rather than asserted (timings belong
    # in the benchmarks), and every process then takes the new source's events.
    print(f"catalog version 2 in force on every process after {took:.2f} s")
    for node in (workers, single):
        for _ in range(6):
            click = httpx.post(f"{node.url}/api/click", json={"cid": CID, "pid": "src_new"},
                               headers={"Connection": "close"})
            assert click.status_code == 200, click.text
            fired = httpx.post(f"{node.url}/api/event/trigger", json={
                "cid": CID, "event_id": "quote_viewed", "pid": "src_new",
                "transaction_id": click.json()["data"]["transaction_id"]},
                headers={"Connection": "close"})
            assert fired.status_code == 200, fired.text
    stale = httpx.put(f"{workers.url}/api/sources/src_new", json={},
                      headers={**ADMIN, "If-Match": '"1"'})
    assert stale.status_code == 412
