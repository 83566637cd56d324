"""Each event's check plan is worked out when the config is loaded, and again on a reload.

What checks 4-10 read of the config (a money bound, a source's payout, whether the source
is active) is computed once per campaign and event; these prove a reload replaces it,
even for a source that has already been priced under the old config.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

from app.config.reload import ConfigFile
from app.factory import create_app
from tests.conftest import ADMIN_TOKEN, CID, PID, TEST_CONFIG, error

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PERCENT = 'payout = { type = "percent", value = 50 }'
LOWER_BOUND_AND_FIXED_PAYOUT = TEST_CONFIG.replace(
    'event_id = "sale_completed"\nconversion = true\n',
    'event_id = "sale_completed"\nconversion = true\nmax_revenue = 50\n', 1,
).replace(PERCENT, 'payout = { type = "fixed", value = 7 }', 1)
SOURCE_PAUSED = TEST_CONFIG.replace(PERCENT, PERCENT + "\nactive = false", 1)


@asynccontextmanager
async def serving_on(tmp_path: Path, db: str) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    """The app as ``serve --config FILE --db DB`` starts it."""
    path = tmp_path / "config.toml"
    path.write_text(TEST_CONFIG)
    config_file = ConfigFile(path, {"db": db})
    app = create_app(config_file.read(), config_file=config_file)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, path


async def _lead(client: httpx.AsyncClient) -> str:
    clicked = await client.post("/api/click", json={"cid": CID, "pid": PID})
    assert clicked.status_code == 200, clicked.text
    transaction_id: str = clicked.json()["data"]["transaction_id"]
    return transaction_id


async def _sale(client: httpx.AsyncClient, transaction_id: str) -> httpx.Response:
    return await client.post("/api/event/trigger", json={
        "cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
        "pid": PID, "revenue": "100.00"})


async def _payout(client: httpx.AsyncClient, fired: httpx.Response) -> str:
    assert fired.status_code == 200, fired.text
    conversion_id = fired.json()["data"]["conversion_id"]
    found = await client.get(f"/api/conversions/{conversion_id}", headers=AUTH)
    payout: str = found.json()["data"]["payout"]
    return payout


async def _reload(client: httpx.AsyncClient, path: Path, text: str) -> None:
    path.write_text(text)
    reloaded = await client.post("/api/admin/reload", headers=AUTH)
    assert reloaded.status_code == 200, reloaded.text


async def test_a_reload_replaces_the_bound_and_the_payout_of_a_source_already_priced(
        tmp_path: Path, db: str) -> None:
    async with serving_on(tmp_path, db) as (client, path):
        before, after, bounded = [await _lead(client) for _ in range(3)]
        assert await _payout(client, await _sale(client, before)) == "50.00"

        await _reload(client, path, LOWER_BOUND_AND_FIXED_PAYOUT)
        refused = await _sale(client, after)
        assert refused.json() == error(400, "Invalid revenue",
                                       invalidFields={"revenue": "Expected a number <= 50"})
        fired = await client.post("/api/event/trigger", json={
            "cid": CID, "event_id": "sale_completed", "transaction_id": bounded,
            "pid": PID, "revenue": "40.00"})
        assert await _payout(client, fired) == "7.00"


async def test_a_source_paused_by_a_reload_is_refused_though_it_fired_before(
        tmp_path: Path, db: str) -> None:
    async with serving_on(tmp_path, db) as (client, path):
        before, after = [await _lead(client) for _ in range(2)]
        assert (await _sale(client, before)).status_code == 200

        await _reload(client, path, SOURCE_PAUSED)
        assert (await _sale(client, after)).json() == error(403, "Source Inactive")
