"""At most max_concurrent_reports reports run at once; the next one is told to come back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from storage.postgres.store import PostgresStore
from storage.sqlite.store import Store
from tests.conftest import ADMIN_TOKEN, PID, Harness, error
from tests.test_reload import reload, serving_on

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
QUERY = {"from": "2026-11-01", "to": "2026-11-30"}
CONFIG = f"""
[server]
admin_token = "{ADMIN_TOKEN}"
{{server}}

[[sources]]
pid = "{PID}"

[[campaigns]]
cid = "c"
"""


class Held:
    """Makes the store's report queries wait until released, counting those waiting."""

    def __init__(self, store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = asyncio.Event()
        self.waiting = 0
        real = store.report_rows

        async def held(span: Any) -> Any:
            self.waiting += 1
            await self.release.wait()
            return await real(span)

        monkeypatch.setattr(store, "report_rows", held)

    async def until(self, count: int) -> None:
        while self.waiting < count:
            await asyncio.sleep(0.01)


@pytest.mark.both_stores
async def test_a_report_past_the_bound_is_refused_at_once(
        api: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    held = Held(api.services.store, monkeypatch)
    running = [asyncio.ensure_future(api.client.get("/api/reports", params=QUERY,
                                                    headers=AUTH)) for _ in range(2)]
    await asyncio.wait_for(held.until(2), 5)
    refused = await api.client.get("/api/reports", params=QUERY, headers=AUTH)
    assert (refused.status_code, refused.json()) == (503, error(503, "Server busy"))
    assert refused.headers["retry-after"] == "1"
    held.release.set()
    assert [(await answer).status_code for answer in running] == [200, 200]
    # Places are given back: the next report runs.
    assert (await api.client.get("/api/reports", params=QUERY, headers=AUTH)).status_code == 200
    assert api.services.report_gate.running == 0


@pytest.mark.both_stores
async def test_a_failed_report_gives_its_place_back(
        api: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(span: Any) -> Any:
        raise OSError("disk I/O error")

    monkeypatch.setattr(api.services.store, "report_rows", broken)
    for _ in range(3):  # more than the bound: each failure gave its place back
        failed = await api.client.get("/api/reports", params=QUERY, headers=AUTH)
        # An I/O error of the store is its unavailability: 503, like a lost connection.
        assert failed.status_code == 503
    assert api.services.report_gate.running == 0


async def test_a_reload_moves_the_bound(tmp_path: Path, db: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    release, waiting = asyncio.Event(), []
    for kind in (Store, PostgresStore):
        real = kind.report_rows

        async def held(self: Any, span: Any, real: Any = real) -> Any:
            waiting.append(span)
            await release.wait()
            return await real(self, span)

        monkeypatch.setattr(kind, "report_rows", held)
    async with serving_on(tmp_path, CONFIG.replace("{server}", "max_concurrent_reports = 1"),
                          db) as (client, path):
        async def report() -> Any:
            return await client.get("/api/reports", params=QUERY, headers=AUTH)

        first = asyncio.ensure_future(report())
        while not waiting:
            await asyncio.sleep(0.01)
        assert (await report()).status_code == 503
        path.write_text(CONFIG.replace("{server}", "max_concurrent_reports = 3"))
        assert (await reload(client)).status_code == 200
        more = [asyncio.ensure_future(report()) for _ in range(2)]
        while len(waiting) < 3:
            await asyncio.sleep(0.01)
        release.set()
        answers = [await first, *[await answer for answer in more]]
        assert [answer.status_code for answer in answers] == [200, 200, 200]
