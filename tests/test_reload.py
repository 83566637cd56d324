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
import msgspec
from asgi_lifespan import LifespanManager
from structlog.testing import capture_logs

from app.config.reload import ConfigFile, changes, digest, refusal, restart_key
from app.config.schema import demo_config, parse_config
from app.factory import create_app
from tests.conftest import ADMIN_TOKEN, CID, OTHER_CID, PID, TEST_CONFIG, error
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


QUOTES = "https://quotes.example.com"
PARTNER = "https://partner.example.net"
NO_TOKEN = TEST_CONFIG.replace(f'admin_token = "{ADMIN_TOKEN}"\n', "", 1)
# Every campaign renamed: none of the ones in force is left.
REPLACED = TEST_CONFIG.replace(f'cid = "{CID}"', 'cid = "cmp_new"', 1).replace(
    f'cid = "{OTHER_CID}"', 'cid = "cmp_newer"', 1)


def allowing(origin: str) -> str:
    """The test config with both campaigns open to pages on ``origin`` only."""
    text = TEST_CONFIG
    for cid in (CID, OTHER_CID):
        text = text.replace(f'cid = "{cid}"\n',
                            f'cid = "{cid}"\nallowed_origins = ["{origin}"]\n')
    return text


@asynccontextmanager
async def serving_on(tmp_path: Path, text: str,
                     db: str) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    """The app as ``serve --config FILE --db DB`` starts it: the file holds no db."""
    path = tmp_path / "config.toml"
    path.write_text(text)
    config_file = ConfigFile(path, {"db": db})
    app = create_app(config_file.read(), config_file=config_file)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, path


def preflight(origin: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}


async def test_reload_changes_which_pages_get_cors_headers(tmp_path: Path, db: str) -> None:
    async with serving_on(tmp_path, allowing(QUOTES), db) as (client, path):
        before = await client.options("/api/click", headers=preflight(PARTNER))
        assert "access-control-allow-origin" not in before.headers
        path.write_text(allowing(PARTNER))
        assert (await reload(client)).status_code == 200

        added = await client.options("/api/click", headers=preflight(PARTNER))
        assert added.status_code == 200
        assert added.headers["access-control-allow-origin"] == PARTNER
        removed = await client.options("/api/click", headers=preflight(QUOTES))
        assert "access-control-allow-origin" not in removed.headers

        answered = await click(client)
        clicked = await client.post("/api/click", json={"cid": CID, "pid": PID},
                                    headers={"Origin": PARTNER})
        assert clicked.status_code == 200, clicked.text
        assert clicked.headers["access-control-allow-origin"] == PARTNER
        refused = await client.post("/api/click", json={"cid": CID, "pid": PID},
                                    headers={"Origin": QUOTES})
        assert refused.json() == error(403, "Origin not allowed for this campaign")
        assert "access-control-allow-origin" not in refused.headers
        assert "access-control-allow-origin" not in answered.headers


def refused_because(path: Path, reason: str) -> dict[str, object]:
    return error(400, f"{path}: refused: {reason} "
                      "(POST /api/admin/reload?force=true applies it anyway)")


async def force(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/api/admin/reload", params={"force": "true"}, headers=AUTH)


async def test_an_empty_file_is_refused_unless_forced(tmp_path: Path, db: str) -> None:
    async with serving_on(tmp_path, TEST_CONFIG, db) as (client, path):
        path.write_text("")
        with capture_logs() as logs:
            response = await reload(client)
        assert response.json() == refused_because(path, "the new config has no campaigns")
        assert not any(entry["event"] == "config_reloaded" for entry in logs)
        # Campaigns and the admin API are still there.
        assert (await click(client)).status_code == 200
        assert (await client.post("/api/admin/reload", params={"force": "false"},
                                  headers=AUTH)).status_code == 400

        with capture_logs() as logs:
            forced = await force(client)
        assert forced.status_code == 200, forced.text
        assert forced.json()["data"]["changes"]["campaigns_removed"] == [CID, OTHER_CID]
        [line] = [entry for entry in logs if entry["event"] == "config_reloaded"]
        assert line["forced"] == "the new config has no campaigns"
        assert line["log_level"] == "warning"
        assert (await click(client)).json() == error(400, "Invalid cid")
        # No admin token any more: the read and admin API are off.
        assert (await reload(client)).status_code == 404


async def test_replacing_every_campaign_is_refused_unless_forced(
    tmp_path: Path, db: str,
) -> None:
    async with serving_on(tmp_path, TEST_CONFIG, db) as (client, path):
        path.write_text(REPLACED)
        response = await reload(client)
        assert response.json() == refused_because(
            path, "the new config removes every campaign")
        assert (await click(client)).status_code == 200

        forced = await force(client)
        assert forced.status_code == 200, forced.text
        assert (await click(client)).json() == error(400, "Invalid cid")
        created = await client.post("/api/click", json={"cid": "cmp_new", "pid": PID})
        assert created.status_code == 200, created.text


async def test_removing_the_admin_token_is_refused_unless_forced(
    tmp_path: Path, db: str,
) -> None:
    async with serving_on(tmp_path, TEST_CONFIG, db) as (client, path):
        path.write_text(NO_TOKEN)
        response = await reload(client)
        assert response.json() == refused_because(
            path, "the new config removes the admin token")
        assert (await client.get("/api/postbacks", headers=AUTH)).status_code == 200

        assert (await force(client)).status_code == 200
        assert (await client.get("/api/postbacks", headers=AUTH)).status_code == 404


async def test_a_bad_force_value_is_a_400_naming_it(tmp_path: Path) -> None:
    db = str(tmp_path / "events.db")
    async with serving_on(tmp_path, TEST_CONFIG, db) as (client, path):
        path.write_text("")
        response = await client.post("/api/admin/reload", params={"force": "maybe"},
                                     headers=AUTH)
        assert response.json() == error(400, "Invalid force",
                                        invalidFields={"force": "Expected `bool`, got `str`"})
        assert (await click(client)).status_code == 200


def test_what_a_reload_refuses_unless_forced() -> None:
    old = parse_config(TEST_CONFIG, origin="old")
    for text, reason in (
        ("", "the new config has no campaigns"),
        (f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n', "the new config has no campaigns"),
        (REPLACED, "the new config removes every campaign"),
        (NO_TOKEN, "the new config removes the admin token"),
    ):
        assert refusal(old, parse_config(text, origin="new")) == reason
    kept_one = TEST_CONFIG.replace(f'cid = "{CID}"', 'cid = "cmp_new"', 1)
    rotated = TEST_CONFIG.replace(ADMIN_TOKEN, "rotated-token")
    for text in (TEST_CONFIG, kept_one, rotated, NEW_CAMPAIGN):
        assert refusal(old, parse_config(text, origin="new")) is None
    # Without a token in force there is none to lose.
    assert refusal(parse_config(NO_TOKEN, origin="old"),
                   parse_config(NO_TOKEN, origin="new")) is None


async def test_start_up_takes_a_file_with_no_campaigns(tmp_path: Path) -> None:
    # Starting is not a reload: nothing was in force to lose.
    async with serving_on(tmp_path, "", str(tmp_path / "events.db")) as (client, _):
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.post("/api/click", json={"cid": CID})).json() == error(
            400, "Invalid cid")


def log_lines(server: Served) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.log_path.read_text().splitlines()
            if line.startswith("{")]


async def test_sighup_changes_cors_and_never_forces(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(allowing(QUOTES))
    server = Served(tmp_path, "--config", str(path), "--db", str(tmp_path / "served.db"))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            path.write_text(allowing(PARTNER))
            server.signal(signal.SIGHUP)
            # The signal is handled between requests: wait for the first answer after it.
            while "access-control-allow-origin" not in (
                    await client.options("/api/click", headers=preflight(PARTNER))).headers:
                await asyncio.sleep(0.02)
            removed = await client.options("/api/click", headers=preflight(QUOTES))
            assert "access-control-allow-origin" not in removed.headers

            path.write_text("")
            server.signal(signal.SIGHUP)
            while not any(line["event"] == "config_reload_refused"
                          for line in log_lines(server)):
                await asyncio.sleep(0.02)
            clicked = await client.post("/api/click", json={"cid": CID, "pid": PID},
                                        headers={"Origin": PARTNER})
            assert clicked.status_code == 200, clicked.text
            assert clicked.headers["access-control-allow-origin"] == PARTNER
            assert (await reload(client)).json() == refused_because(
                path, "the new config has no campaigns")
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    [refused] = [line for line in log_lines(server) if line["event"] == "config_reload_refused"]
    assert refused["error"] == refused_because(path, "the new config has no campaigns")["message"]


def test_the_public_config_digest_leaves_every_secret_out() -> None:
    config = demo_config()
    campaign = config.campaigns[0]
    secrets = msgspec.structs.replace(
        config, server=msgspec.structs.replace(config.server, admin_token="another-token",
                                               dedupe_secret="another-secret-0123"),
        campaigns=[msgspec.structs.replace(
            campaign, event_tokens=["another-event-token-01"],
            postbacks=[msgspec.structs.replace(postback, secret="another")
                       for postback in campaign.postbacks])])
    assert digest(secrets) == digest(config)
    renamed = msgspec.structs.replace(
        config, campaigns=[msgspec.structs.replace(campaign, name="renamed")])
    assert digest(renamed) != digest(config)
