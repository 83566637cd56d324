"""Config reload: POST /api/admin/reload and SIGHUP swap the config with no restart."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from structlog.testing import capture_logs

from app.config.reload import ConfigFile, changes, restart_key
from app.config.schema import parse_config
from app.factory import create_app
from tests.conftest import ADMIN_TOKEN, CID, PID, TEST_CONFIG, error
from tests.served import Served

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PAUSED = TEST_CONFIG.replace(f'pid = "{PID}"\n', f'pid = "{PID}"\nactive = false\n', 1)
NEW_CAMPAIGN = TEST_CONFIG + """
[[campaigns]]
cid = "cmp_added"

[[campaigns.events]]
event_id = "signed_up"
"""


def write_config(path: Path, text: str, db: Path) -> None:
    path.write_text(text.replace("[server]\n", f'[server]\ndb = "{db}"\n', 1))


@asynccontextmanager
async def serving(tmp_path: Path, text: str) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    """The app started from a config file, as ``serve --config`` starts it."""
    path = tmp_path / "config.toml"
    write_config(path, text, tmp_path / "events.db")
    config_file = ConfigFile(path)
    app = create_app(config_file.read(), config_file=config_file)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, path


async def reload(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/api/admin/reload", headers=AUTH)


async def click(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    return await client.post("/api/click", json={"cid": CID, "pid": PID, **fields})


async def test_deactivating_a_source_takes_effect_on_the_next_request(tmp_path: Path) -> None:
    async with serving(tmp_path, TEST_CONFIG) as (client, path):
        assert (await click(client)).status_code == 200
        write_config(path, PAUSED, tmp_path / "events.db")
        with capture_logs() as logs:
            response = await reload(client)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["changes"] == {"sources_changed": [PID]}
        refused = await click(client)
        assert refused.status_code == 403
        assert refused.json() == error(403, "Source Inactive")
    [line] = [entry for entry in logs if entry["event"] == "config_reloaded"]
    assert line["sources_changed"] == [PID]


async def test_added_campaign_serves_and_a_removed_one_is_gone(tmp_path: Path) -> None:
    async with serving(tmp_path, TEST_CONFIG) as (client, path):
        assert (await client.post("/api/click", json={"cid": "cmp_added"})).status_code == 400
        write_config(path, NEW_CAMPAIGN, tmp_path / "events.db")
        response = await reload(client)
        assert response.json()["data"]["changes"] == {
            "campaigns_added": ["cmp_added"], "events_added": ["cmp_added/signed_up"]}
        created = await client.post("/api/click", json={"cid": "cmp_added"})
        assert created.status_code == 200, created.text
        transaction_id = created.json()["data"]["transaction_id"]
        fired = await client.post("/api/event/trigger", json={
            "cid": "cmp_added", "event_id": "signed_up", "transaction_id": transaction_id})
        assert fired.status_code == 200, fired.text

        write_config(path, TEST_CONFIG, tmp_path / "events.db")
        assert (await reload(client)).json()["data"]["changes"] == {
            "campaigns_removed": ["cmp_added"], "events_removed": ["cmp_added/signed_up"]}
        gone = await client.post("/api/click", json={"cid": "cmp_added"})
        assert gone.json() == error(400, "Invalid cid")


async def test_broken_config_is_refused_and_the_old_one_keeps_serving(tmp_path: Path) -> None:
    async with serving(tmp_path, TEST_CONFIG) as (client, path):
        write_config(path, PAUSED + "\n[[sources]]\npid = 42\n", tmp_path / "events.db")
        response = await reload(client)
        assert response.status_code == 400
        message = response.json()["message"]
        assert message.startswith(f"{path}: sources[3].pid: Expected `str`")
        assert "\n" not in message
        # The source was not paused: nothing of the broken file took effect.
        assert (await click(client)).status_code == 200


async def test_a_changed_db_is_refused_naming_the_key(tmp_path: Path) -> None:
    async with serving(tmp_path, TEST_CONFIG) as (client, path):
        write_config(path, PAUSED, tmp_path / "elsewhere.db")
        response = await reload(client)
        assert response.status_code == 400
        assert response.json() == error(
            400, f"{path}: server.db: changed, and only a restart applies it")
        assert (await click(client)).status_code == 200


async def test_reload_needs_the_admin_token(tmp_path: Path) -> None:
    async with serving(tmp_path, TEST_CONFIG) as (client, path):
        write_config(path, PAUSED, tmp_path / "events.db")
        assert (await client.post("/api/admin/reload")).status_code == 401
        assert (await click(client)).status_code == 200


async def test_without_a_config_file_there_is_nothing_to_reload(tmp_path: Path) -> None:
    config = parse_config(TEST_CONFIG.replace("[server]\n", f'[server]\ndb = '
                                              f'"{tmp_path / "x.db"}"\n', 1), origin="test")
    async with LifespanManager(create_app(config)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await reload(client)
    assert response.json() == error(
        400, "no config file was given at start-up: nothing to reload")


def test_only_run_time_keys_may_change() -> None:
    old = parse_config(TEST_CONFIG, origin="old")
    for changed, key in (
        (TEST_CONFIG.replace("[server]\n", "[server]\nport = 9\n"), "server.port"),
        (TEST_CONFIG.replace("[server]\n", "[server]\ndurability = \"write-behind\"\n"),
         "server.durability"),
        (TEST_CONFIG.replace("[server]\n", "[server]\nmax_actors = 5\n"), "server.max_actors"),
        ("[delivery]\nconcurrency = 9\n" + TEST_CONFIG, "delivery.concurrency"),
    ):
        assert restart_key(old, parse_config(changed, origin="new")) == key
    runtime = ("[delivery]\nmax_attempts = 3\n" + TEST_CONFIG).replace(
        ADMIN_TOKEN, "rotated-token")
    new = parse_config(runtime, origin="new")
    assert restart_key(old, new) is None
    assert changes(old, new) == {"sections_changed": ["server", "delivery"]}


async def test_sighup_reloads_a_served_process_while_requests_are_in_flight(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    write_config(path, TEST_CONFIG, tmp_path / "served.db")
    server = Served(tmp_path, "--config", str(path))
    statuses: Counter[int] = Counter()
    stop = asyncio.Event()

    async def keep_clicking(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            response = await client.post("/api/click", json={"cid": CID, "pid": PID})
            statuses[response.status_code] += 1
            if response.status_code == 403:
                stop.set()

    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            workers = [asyncio.create_task(keep_clicking(client)) for _ in range(8)]
            while sum(statuses.values()) < 50:
                await asyncio.sleep(0.01)
            write_config(path, PAUSED, tmp_path / "served.db")
            server.signal(signal.SIGHUP)
            await asyncio.wait_for(stop.wait(), 20)
            await asyncio.gather(*workers)
            # A broken file: refused at error level, the paused config stays in force.
            path.write_text("this is not toml")
            server.signal(signal.SIGHUP)
            await asyncio.sleep(0.5)
            still = await client.post("/api/click", json={"cid": CID, "pid": PID})
            assert still.status_code == 403
            assert (await client.get("/healthz")).status_code == 200
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert set(statuses) == {200, 403}, statuses
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()
             if line.startswith("{")]
    [reloaded] = [line for line in lines if line["event"] == "config_reloaded"]
    assert reloaded["sources_changed"] == [PID]
    [refused] = [line for line in lines if line["event"] == "config_reload_refused"]
    assert refused["level"] == "error"
    assert "TOML syntax" in refused["error"]
