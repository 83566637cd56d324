"""Campaigns and sources managed through the API ([server] catalog = "database").

Every change is a new catalog version made on the one If-Match names; a file catalog
refuses changes; the TOML export loads back as the same catalog (both stores).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import tomli_w
from asgi_lifespan import LifespanManager
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from app.config.reload import ConfigFile
from app.config.schema import ConfigError, load_config
from app.config.tokens import hash_token
from app.factory import create_app
from app.observe.logs import merge_request_fields
from tests.conftest import (
    ADMIN_TOKEN,
    CID,
    PID,
    TEST_CONFIG,
    FakeClock,
    Harness,
    error,
    make_config,
    postgres_store,
    running_on,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OPERATOR_TOKEN = "operator-token-0123456789abcdef"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
TOKENS = f"""
[[tokens]]
name = "ops desk"
token = "{hash_token(OPERATOR_TOKEN)}"
role = "operator"
"""


def at(version: int) -> dict[str, str]:
    return {**ADMIN, "If-Match": f'"{version}"'}


@pytest.fixture
async def api(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[Harness]:
    """The test config with a database catalog, on SQLite or (both_stores) PostgreSQL."""
    async with running_on(request, make_config(db_path, catalog="database")) as harness:
        yield harness


@pytest.mark.both_stores
async def test_the_config_files_catalog_is_version_1_of_an_empty_database(
        api: Harness) -> None:
    versions = await api.client.get("/api/catalog/versions", headers=ADMIN)
    assert versions.status_code == 200
    [first] = versions.json()["data"]
    assert first["version"] == 1 and first["token"] == "config file"
    assert first["changes"]["campaigns_added"] == sorted([CID, "cmp_other"])
    campaigns = await api.client.get("/api/campaigns", headers=ADMIN)
    assert campaigns.headers["etag"] == '"1"'
    assert [campaign["cid"] for campaign in campaigns.json()["data"]] == [CID, "cmp_other"]
    health = (await api.client.get("/healthz")).json()["data"]
    assert health["catalog_version"] == 1
    metrics = (await api.client.get("/metrics", headers=ADMIN)).text
    assert "event_postback_catalog_version 1.0" in metrics


@pytest.mark.both_stores
async def test_a_source_created_through_the_api_takes_clicks_at_once(api: Harness) -> None:
    before = await api.client.post("/api/click", json={"cid": CID, "pid": "src_new"})
    assert before.status_code == 400
    created = await api.client.put("/api/sources/src_new", headers=at(1),
                                   json={"payout": {"type": "fixed", "value": "2.50"}})
    assert created.status_code == 201, created.text
    assert created.json()["message"] == "Source created"
    assert created.headers["etag"] == '"2"'
    assert created.json()["data"]["payout"] == {"type": "fixed", "value": "2.50"}
    click = await api.client.post("/api/click", json={"cid": CID, "pid": "src_new"})
    assert click.status_code == 200, click.text
    shown = await api.client.get("/api/sources/src_new", headers=ADMIN)
    assert shown.json()["data"] == created.json()["data"]
    assert shown.headers["etag"] == '"2"'

    replaced = await api.client.put("/api/sources/src_new", headers=at(2),
                                    json={"pid": "src_new", "active": False})
    assert replaced.status_code == 200 and replaced.json()["message"] == "Source replaced"
    refused = await api.client.post("/api/click", json={"cid": CID, "pid": "src_new"})
    assert refused.status_code == 403

    deleted = await api.client.delete("/api/sources/src_new", headers=at(3))
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"]["changes"] == {"sources_removed": ["src_new"]}
    gone = await api.client.get("/api/sources/src_new", headers=ADMIN)
    assert gone.status_code == 404 and gone.json() == error(404, "Source not found")
    again = await api.client.delete("/api/sources/src_new", headers=at(4))
    assert again.status_code == 404

    history = (await api.client.get("/api/catalog/versions", headers=ADMIN)).json()["data"]
    assert [(row["version"], row["token"]) for row in history] == [
        (4, "admin_token"), (3, "admin_token"), (2, "admin_token"), (1, "config file")]
    assert history[2]["changes"] == {"sources_added": ["src_new"]}
    assert history[1]["changes"] == {"sources_changed": ["src_new"]}


@pytest.mark.both_stores
async def test_a_stale_if_match_is_412_and_none_is_428(api: Harness) -> None:
    body = {"events": [{"event_id": "signup"}]}
    first = await api.client.put("/api/campaigns/cmp_new", headers=at(1), json=body)
    assert first.status_code == 201, first.text
    stale = await api.client.put("/api/campaigns/cmp_new", headers=at(1), json=body)
    assert stale.status_code == 412
    assert stale.json() == error(412, "Catalog changed since that version: read it again",
                                 code="catalog_changed")
    ahead = await api.client.put("/api/campaigns/cmp_new", headers=at(9), json=body)
    assert ahead.status_code == 412
    missing = await api.client.put("/api/campaigns/cmp_new", headers=ADMIN, json=body)
    assert missing.status_code == 428
    assert missing.json()["code"] == "if_match_required"
    weak = await api.client.put("/api/campaigns/cmp_new", json=body,
                                headers={**ADMIN, "If-Match": 'W/"2"'})
    assert weak.status_code == 200, weak.text


@pytest.mark.both_stores
async def test_two_writers_on_one_version_one_wins(api: Harness) -> None:
    answers = await asyncio.gather(*(
        api.client.put(f"/api/sources/src_{n}", headers=at(1), json={}) for n in range(4)))
    assert sorted(answer.status_code for answer in answers) == [201, 412, 412, 412]
    versions = (await api.client.get("/api/catalog/versions", headers=ADMIN)).json()["data"]
    assert [row["version"] for row in versions] == [2, 1]


@pytest.mark.both_stores
@pytest.mark.parametrize("campaign", [
    {"events": [{"event_id": "a", "approval": "manual"}]},
    {"events": [{"event_id": "a", "approval": "sometimes"}]},
    {"events": [{"event_id": "a", "conversion": True}], "caps": [{"limit": -1}]},
    {"postbacks": [{"url": "ftp://buyer.example/pb"}]},
])
async def test_a_wrong_campaign_gets_check_configs_diagnosis(
        api: Harness, tmp_path: Path, campaign: dict[str, Any]) -> None:
    answer = await api.client.put("/api/campaigns/cmp_new", headers=at(1), json=campaign)
    assert answer.status_code == 400
    assert answer.json()["code"] == "catalog_refused"
    file = tmp_path / "same.toml"
    file.write_text(TEST_CONFIG + "\n" + _as_toml({"cid": "cmp_new", **campaign}))
    with pytest.raises(ConfigError) as refused:
        load_config(file)
    place = str(refused.value).removeprefix(f"{file}: ")
    assert answer.json()["message"] == f"catalog: {place}"
    unchanged = await api.client.get("/api/campaigns/cmp_new", headers=ADMIN)
    assert unchanged.status_code == 404


@pytest.mark.both_stores
async def test_a_body_naming_another_campaign_than_its_path_is_refused(api: Harness) -> None:
    answer = await api.client.put("/api/campaigns/cmp_new", headers=at(1),
                                  json={"cid": "cmp_else"})
    assert answer.json() == error(
        400, "catalog: campaigns[2].cid: must be 'cmp_new', as in the path",
        code="catalog_refused")
    broken = await api.client.put("/api/campaigns/cmp_new", headers=at(1), content=b"[1]")
    assert broken.json()["message"] == "catalog: campaigns[2]: expected a JSON object"


def _as_toml(campaign: dict[str, Any]) -> str:
    """A campaign as a config file's table (nested tables inline: tomli_w's choice here)."""
    return "[[campaigns]]\n" + tomli_w.dumps(campaign)


@pytest.mark.both_stores
async def test_restore_brings_back_an_earlier_catalog_as_a_new_version(api: Harness) -> None:
    await api.client.put("/api/sources/src_new", headers=at(1), json={})
    await api.client.delete(f"/api/campaigns/{CID}", headers=at(2))
    assert (await api.client.post("/api/click", json={"cid": CID})).status_code == 400
    restored = await api.client.post("/api/catalog/versions/1/restore", headers=at(3))
    assert restored.status_code == 200, restored.text
    data = restored.json()["data"]
    assert data["version"] == 4 and data["token"] == "admin_token"
    assert data["changes"] == {"campaigns_added": [CID], "events_added": [
        f"{CID}/form_step", f"{CID}/quote_viewed", f"{CID}/sale_completed"],
        "sources_removed": ["src_new"], "restored": ["1"]}
    assert (await api.client.post("/api/click", json={"cid": CID})).status_code == 200
    first = (await api.client.get("/api/catalog/versions", headers=ADMIN)).json()["data"][-1]
    now = await api.client.get("/api/catalog", headers=ADMIN)
    assert now.headers["etag"] == '"4"' and first["version"] == 1
    assert (await api.client.post("/api/catalog/versions/9/restore", headers=at(4))
            ).json() == error(404, "Catalog version not found")


async def test_the_toml_export_imports_into_a_fresh_database_as_the_same_catalog(
        tmp_path: Path, db: str) -> None:
    file = tmp_path / "first.toml"
    file.write_text(TEST_CONFIG.replace("[server]\n", '[server]\ncatalog = "database"\n', 1))
    async with _app(ConfigFile(file, {"db": str(tmp_path / "first.db")})) as first:
        await first.put("/api/sources/src_new", headers=at(1), json={
            "payout": {"type": "fixed", "value": "2.50"}, "postback_url":
            "https://partner.example/pb?c={conversion_id}", "signing_secrets": None})
        await first.put("/api/campaigns/cmp_new", headers=at(2), json={
            "name": 'Quotes "new"', "events": [{
                "event_id": "sale", "conversion": True, "max_revenue": "123.456789012",
                "hold_revenue_above": 100}],
            "payouts": [{"pid": "src_new", "payout": {"type": "percent", "value": 12.5}}]})
        exported = await first.get("/api/catalog?format=toml", headers=ADMIN)
        assert exported.headers["content-type"] == "application/toml; charset=utf-8"
        assert exported.headers["etag"] == '"3"'
        before = (await first.get("/api/catalog", headers=ADMIN)).json()["data"]
    assert "cmp_new" in [campaign["cid"] for campaign in before["campaigns"]]
    imported = tmp_path / "imported.toml"
    imported.write_text(f'[server]\nadmin_token = "{ADMIN_TOKEN}"\ncatalog = "database"\n\n'
                        + exported.text)
    loaded = load_config(imported)
    assert msgspec.to_builtins(loaded.campaigns) == before["campaigns"]
    assert msgspec.to_builtins(loaded.sources) == before["sources"]
    async with _app(ConfigFile(imported, {"db": db})) as fresh:
        after = (await fresh.get("/api/catalog", headers=ADMIN)).json()["data"]
        versions = (await fresh.get("/api/catalog/versions", headers=ADMIN)).json()["data"]
    assert after == before
    assert [(row["version"], row["token"]) for row in versions] == [(1, "config file")]


@asynccontextmanager
async def _app(source: ConfigFile) -> AsyncIterator[httpx.AsyncClient]:
    """The app of a config file (reloads read it again), on its own store."""
    config = source.read()
    clock = FakeClock()
    store = (postgres_store(config.server.db, clock)
             if config.server.db.startswith("postgresql") else None)
    app = create_app(config, clock=clock, store=store, config_file=source,
                     metrics_registry=CollectorRegistry())
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_a_file_catalog_refuses_every_change_with_409(tmp_path: Path, db: str) -> None:
    file = tmp_path / "config.toml"
    file.write_text(TEST_CONFIG)
    async with _app(ConfigFile(file, {"db": db})) as client:
        answers = [
            await client.put("/api/sources/src_x", headers=at(0), json={}),
            await client.put(f"/api/campaigns/{CID}", headers=ADMIN, json={}),
            await client.delete(f"/api/campaigns/{CID}", headers=at(0)),
            await client.post("/api/catalog/versions/1/restore", headers=at(0)),
        ]
        for answer in answers:
            assert answer.json() == error(409, "Catalog is managed by the config file",
                                          code="catalog_in_file")
        # Reads show the file's catalog, as version 0.
        shown = await client.get("/api/sources", headers=ADMIN)
        assert shown.headers["etag"] == '"0"'
        assert PID in [source["pid"] for source in shown.json()["data"]]
        assert (await client.get("/healthz")).json()["data"]["catalog_version"] == 0


async def test_a_reload_takes_the_files_settings_and_keeps_the_database_catalog(
        tmp_path: Path, db: str) -> None:
    file = tmp_path / "config.toml"
    text = TEST_CONFIG.replace("[server]\n", '[server]\ncatalog = "database"\n', 1) + TOKENS
    file.write_text(text)
    async with _app(ConfigFile(file, {"db": db})) as client:
        created = await client.put("/api/sources/src_new", headers=at(1), json={})
        assert created.status_code == 201
        # The file loses a campaign and gains nothing: the catalog stays the database's.
        file.write_text(text.replace('max_revenue = 1000000000000', 'max_revenue = 5000'))
        reloaded = await client.post("/api/admin/reload", headers=ADMIN)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["data"]["changes"] == {"sections_changed": ["server"]}
        sources = (await client.get("/api/sources", headers=OPERATOR)).json()["data"]
        assert "src_new" in [source["pid"] for source in sources]
        health = (await client.get("/healthz")).json()["data"]
        assert health["catalog_version"] == 2
        # The new settings are in force: the catalog is checked against them.
        refused = await client.put(f"/api/campaigns/{CID}", headers=at(2), json={
            "events": [{"event_id": "sale", "conversion": True, "max_revenue": 6000}]})
        assert refused.status_code == 400
        assert "max_revenue" in refused.json()["message"]


async def test_catalog_reads_are_an_operators_and_writes_an_admins_named_in_the_log(
        tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text(TEST_CONFIG.replace("[server]\n", '[server]\ncatalog = "database"\n', 1)
                    + TOKENS)
    async with _app(ConfigFile(file, {"db": str(tmp_path / "roles.db")})) as client:
        assert (await client.get("/api/catalog", headers=OPERATOR)).status_code == 200
        denied = await client.put("/api/sources/src_x", json={},
                                  headers={**OPERATOR, "If-Match": '"1"'})
        assert denied.status_code == 403
        with capture_logs(processors=[merge_request_fields]) as logs:
            await client.put("/api/sources/src_x", headers=at(1), json={})
    [changed] = [line for line in logs if line["event"] == "catalog_changed"]
    assert changed["token"] == "admin_token" and changed["version"] == 2
    [line] = [line for line in logs if line["event"] == "request"]
    assert line["token"] == "admin_token" and line["outcome"] == "catalog_changed"
